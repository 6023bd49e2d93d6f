"""Generate an OGBench-format dataset with OGBench's scripted oracles.

    python -m experiments.make_dataset --env_name=cube-single-play-v0 --num_episodes=1000 --seed=0 \
        --dataset_dir=~/.ogbench/data [--num_workers=N] [--report]
    MUJOCO_GL=egl python -m experiments.make_dataset --env_name=visual-cube-single-play-v0 ...   # 64x64 uint8 frames
"""
import os
import sys
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string('env_name', 'cube-single-play-v0', "Dataset name (e.g. 'cube-single-play-v0'); a "
                    "'-singletask-taskN' name is accepted and mapped to its dataset.")
flags.DEFINE_integer('num_episodes', 1000, 'Training episodes (validation gets num_episodes // 10, at least 1).')
flags.DEFINE_integer('seed', 0, 'Random seed (each episode gets its own seed derived from it).')
flags.DEFINE_string('dataset_dir', '~/.ogbench/data', 'Output directory.')
flags.DEFINE_integer('num_workers', None, 'Worker processes (default: one per CPU core).')
flags.DEFINE_integer('max_episode_steps', None, "Episode length override (default: OGBench's, e.g. 1001).")
flags.DEFINE_bool('report', False, 'Print per-task dataset success fractions and oracle success rates.')
flags.DEFINE_integer('report_episodes', 3, 'Oracle episodes per task for --report.')
flags.DEFINE_bool('overwrite', False, 'Replace an existing <dataset_dir>/<name>.npz (refused by default).')


def _fail(msg):
    print(f'make_dataset: error: {msg}', file=sys.stderr)
    sys.exit(2)


def main(_):
    from floq_jax.console import quiet_setup

    quiet_setup()
    from floq_jax.data import DatasetError, generate_dataset, generation_config, parse_name
    from floq_jax.data.oracles import dataset_success, oracle_success

    try:
        name = parse_name(FLAGS.env_name).dataset_name
        cfg = generation_config(name, FLAGS.max_episode_steps)
    except DatasetError as e:
        _fail(f'--env_name: {e}')
    if FLAGS.num_episodes <= 0:
        _fail(f'--num_episodes must be positive, got {FLAGS.num_episodes}')
    if FLAGS.num_workers is not None and FLAGS.num_workers <= 0:
        _fail(f'--num_workers must be positive, got {FLAGS.num_workers}')
    if cfg.visual:  # before anything is written: one line saying what is missing and how to install it
        from floq_jax.data.rendering import require_rendering

        try:
            require_rendering(f'--env_name={name}')
        except DatasetError as e:
            _fail(str(e))
    out_dir = os.path.abspath(os.path.expanduser(FLAGS.dataset_dir))
    try:
        os.makedirs(out_dir, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as e:
        _fail(f'--dataset_dir {out_dir} is not writable ({e.strerror or e})')

    existing = [p for p in (os.path.join(out_dir, f'{name}.npz'), os.path.join(out_dir, f'{name}-val.npz'))
                if os.path.exists(p)]
    if existing and not FLAGS.overwrite:
        _fail(f'{existing[0]} already exists; pass --overwrite to replace it, or another --dataset_dir')

    start = time.time()
    try:
        path = generate_dataset(name, FLAGS.num_episodes, FLAGS.seed, out_dir, num_workers=FLAGS.num_workers,
                                max_episode_steps=FLAGS.max_episode_steps, progress=True)
    except DatasetError as e:
        _fail(str(e))
    elapsed = time.time() - start
    import numpy as np

    steps = len(np.load(path)['terminals']) + len(np.load(path.replace('.npz', '-val.npz'))['terminals'])
    rate = f'{steps / elapsed:.1f} frames/s' if cfg.visual else f'{steps / elapsed:.0f} steps/s'
    print(f'wrote {path} (+ -val.npz, .generator.json): {steps} steps in {elapsed:.1f}s ({rate})')
    if FLAGS.report:
        frac = dataset_success(name, path)
        print('task  dataset_episodes_reaching_goal  oracle_success')
        for task, f in frac.items():
            o = oracle_success(name, task, FLAGS.report_episodes, FLAGS.seed)
            print(f'task{task}  {f:.3f}  {"n/a" if o is None else f"{o:.3f}"}')


if __name__ == '__main__':
    app.run(main)
