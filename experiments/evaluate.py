"""Evaluate a saved checkpoint: success over N episodes, and (floq) Q estimates at several critic K.

    python -m experiments.evaluate --run_dir=runs/default/<env>/floq/seed0 [--step=200000] \
        [--eval_episodes=50] [--num_steps=1,2,4,8] [--eval_protocol=published] [--video_episodes=2 --video_frame_skip=3]
        [--success_timing=post|pre]   # default: the run's own (flags.json)

Writes <run_dir>/evaluations/step<step>.json and .csv (and step<step>.mp4 with --video_episodes) and prints the
summary.  K is a test-time knob of the
critic only: the policy (FQL's one-step actor) never integrates the critic, so success does not depend on
K; the Q estimates on a fixed dataset batch do.  Evaluation actions follow --eval_protocol: 'published' (default)
samples the one-step policy with noise N(0, I) as the published code does; 'deterministic' uses zero noise.
"""

import json

from absl import app, flags

from experiments import agent_flag, checks, cli_flags, common, errors

flags.DEFINE_string('run_dir', None, 'A seed run directory (holding flags.json and checkpoints/).')
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the newest intact one).')
flags.DEFINE_integer('eval_episodes', 50, 'Episodes.')
flags.DEFINE_integer('eval_num_envs', None, 'Parallel sub-envs (default: eval_episodes).')
flags.DEFINE_string('num_steps', '', 'Comma list of critic K values for Q estimates (default: the trained K).')
flags.DEFINE_integer('eval_seed', None, 'Episode seed (default: the seed the run\'s own evaluation at that step '
                     'used, from the run seed and the step: the same episodes and noise).')
flags.DEFINE_string('dataset_path', None, 'Dataset file (default: the one in flags.json).')
FLAGS = flags.FLAGS
cli_flags.define_eval_protocol_flag()  # --eval_protocol: 'published' (noise N(0, I), the default) or 'deterministic'
cli_flags.define_compile_cache_flag()
cli_flags.define_video_flags()  # extra rendered episodes -> <run_dir>/evaluations/step<step>.mp4 (not counted)
cli_flags.define_success_timing_flag(default='')  # --success_timing: '' (default) the run's own, or 'post' / 'pre'


def main(_):
    errors.quiet_logs()

    def body():
        import agents
        from floq_jax import storage
        from floq_jax.data import DatasetError
        from floq_jax.training import evaluate

        checks.check_readable('run_dir', FLAGS.run_dir)
        if not FLAGS.run_dir or not storage.isfile(storage.join(FLAGS.run_dir, 'flags.json')):
            raise errors.UsageError(f'--run_dir={FLAGS.run_dir!r}: expected a seed run directory holding flags.json')
        checks.check_positive(eval_episodes=FLAGS.eval_episodes, video_frame_skip=FLAGS.video_frame_skip)
        if FLAGS.video_episodes < 0:
            raise errors.UsageError(f'--video_episodes={FLAGS.video_episodes}: must be >= 0')
        ckpt_dir = storage.join(FLAGS.run_dir, 'checkpoints')
        steps = sorted(int(n) for n in storage.listdir(ckpt_dir) if n.isdigit())
        if not steps:
            raise errors.UsageError(f'--run_dir={FLAGS.run_dir!r}: no checkpoints in {ckpt_dir}')
        if FLAGS.step is not None and FLAGS.step not in steps:
            raise errors.UsageError(f'--step={FLAGS.step}: no checkpoint at that step in {ckpt_dir}; accepted: '
                                    f'{", ".join(map(str, steps))} (or omit --step for the newest)')
        ks = checks.parse_int_list('num_steps', FLAGS.num_steps)
        if FLAGS.success_timing:
            from floq_jax import presets

            checks.check_choice('success_timing', FLAGS.success_timing, list(presets.SUCCESS_TIMINGS))
        common.start_devices()
        try:
            summary = evaluate.evaluate_checkpoint(FLAGS.run_dir, agents.agent_class, FLAGS.step, FLAGS.eval_episodes, ks, FLAGS.eval_protocol,
                                   FLAGS.video_episodes, FLAGS.eval_seed, FLAGS.eval_num_envs, FLAGS.dataset_path,
                                   video_frame_skip=FLAGS.video_frame_skip,
                                   success_timing=FLAGS.success_timing or None)
        except FileNotFoundError as e:
            raise errors.UsageError(f'--step: {e}') from None
        except DatasetError as e:  # e.g. a pixel run's env cannot be rendered here
            raise errors.UsageError(f'--run_dir={FLAGS.run_dir}: {e}') from None
        print(json.dumps(summary, indent=2))

    errors.run_cli(body)


if __name__ == '__main__':
    app.run(main, flags_parser=agent_flag.flags_parser)
