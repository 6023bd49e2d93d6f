"""`make demo`: generate a small OGBench dataset, train floq for a few CPU minutes, evaluate at several K, report.

    python -m experiments.demo                     # defaults below; ~11 min of training + evaluation on 2 CPU cores
    python -m experiments.demo --steps=2000        # a quicker smoke run

Steps:
  1. ``ensure_generated_dataset`` (cached under $FLOQ_DATA_CACHE or ~/.cache/floq_jax/datasets; no download);
  2. ``floq_jax.training.runner.run_offline`` with the small config :func:`floq_jax.presets.demo_config`: 2 seeds, 70k
     updates each, an
     evaluation every 10k; on a CPU-only host the seeds are sharded over 2 XLA CPU devices (one per core);
  3. evaluation of each seed's final checkpoint (success, and the flow critic's Q estimates at K = 1, 2, 4, 8);
     evaluation follows --eval_protocol ('published', the default: the one-step policy with noise N(0, I));
  4. ``floq_jax.analysis.report.write_report``: results table (printed) and learning-curve plot (path printed).
"""

import os
import time

from absl import app, flags

from experiments import agent_flag, checks, cli_flags, common, errors

cli_flags.define_eval_protocol_flag()  # --eval_protocol: 'published' (default) or 'deterministic'

flags.DEFINE_string('env_name', 'cube-single-play-singletask-task2-v0', 'Single-task name to train on.')
flags.DEFINE_integer('dataset_episodes', 100, 'Episodes of the generated dataset.')
flags.DEFINE_integer('steps', 70000, 'Offline updates (per seed).')
flags.DEFINE_integer('eval_interval', 10000, 'Evaluation (and checkpoint) interval; clipped to --steps.')
flags.DEFINE_integer('eval_episodes', 20, 'Episodes per evaluation.')
flags.DEFINE_string('num_steps', '1,2,4,8', 'Critic K values for the final Q estimates.')
flags.DEFINE_string('save_dir', 'runs', 'Root of the run directories.')
flags.DEFINE_string('run_group', 'demo', 'Run group.')
flags.DEFINE_string('cache_dir', None, 'Dataset cache (default: $FLOQ_DATA_CACHE or ~/.cache/floq_jax/datasets).')
flags.DEFINE_integer('seed', 0, 'First seed.')
flags.DEFINE_integer('num_seeds', 2, 'Seeds seed..seed+num_seeds-1, trained together (vmapped; on a CPU-only host '
                     'sharded over --cpu_devices XLA devices, one per core).')
cli_flags.define_cpu_devices_flag()
cli_flags.define_compile_cache_flag()
FLAGS = flags.FLAGS


def main(_):
    errors.quiet_logs()

    def body():
        from floq_jax import presets
        from floq_jax.analysis import report
        import agents
        from floq_jax.training import compose, evaluate, runner
        from floq_jax.data import ensure_generated_dataset, parse_name

        checks.check_env_name(FLAGS.env_name)
        checks.check_positive(steps=FLAGS.steps, dataset_episodes=FLAGS.dataset_episodes,
                              eval_episodes=FLAGS.eval_episodes, num_seeds=FLAGS.num_seeds,
                              eval_interval=FLAGS.eval_interval)
        cpu_devices = common.start_devices(FLAGS.num_seeds, FLAGS.cpu_devices)  # first (floq_jax.training.devices)
        ks = checks.parse_int_list('num_steps', FLAGS.num_steps)
        checks.check_writable(FLAGS.save_dir)
        t0 = time.time()
        parsed = parse_name(FLAGS.env_name)
        print(f'[1/4] dataset: {parsed.dataset_name}, {FLAGS.dataset_episodes} generated episodes (cached)', flush=True)
        path = ensure_generated_dataset(parsed.dataset_name, FLAGS.dataset_episodes, seed=0,
                                        cache_dir=FLAGS.cache_dir, progress=True)
        data = compose.load_data(FLAGS.env_name, compose.DataSource(dataset_path=path))
        print(f'      {path} ({len(data.train["observations"])} transitions, {time.time() - t0:.0f} s)', flush=True)

        config = presets.demo_config(agents.get_config('floq'))
        applied = compose.agent_config(config, FLAGS.env_name, 'published', 'offline', data=data,
                                       user_keys=('block_width', 'critic_flow_steps', 'noise_samples', 'batch_size'))
        interval = min(FLAGS.eval_interval, FLAGS.steps)
        options = runner.RunOptions(
            env_name=FLAGS.env_name, seed=FLAGS.seed, num_seeds=FLAGS.num_seeds, offline_steps=FLAGS.steps,
            steps_per_call=min(500, interval),
            log_interval=min(500, interval), eval_interval=interval, save_interval=interval,
            eval_episodes=FLAGS.eval_episodes, eval_protocol=FLAGS.eval_protocol, eval_at_start=False,
            save_dir=FLAGS.save_dir,
            run_group=FLAGS.run_group, flags={'demo': True, 'steps': FLAGS.steps, 'cpu_devices': cpu_devices})
        print(f'[2/4] training floq (2x128 nets, K=4, noise_samples 2, batch 64; published preset {applied}) '
              f'for {FLAGS.steps} steps, {FLAGS.num_seeds} seed(s) on {cpu_devices} XLA CPU device(s)', flush=True)
        t1 = time.time()
        run_dirs = compose.train(agents.agent_class(config.agent_name), config, data, options, mode='offline')
        print(f'      {os.path.dirname(run_dirs[0])} ({time.time() - t1:.0f} s)', flush=True)

        print(f'[3/4] evaluating the final checkpoints ({FLAGS.eval_episodes} episodes each, evaluation: '
              f'{presets.describe_eval_protocol(FLAGS.eval_protocol)}; Q at K={ks})', flush=True)
        for run_dir in run_dirs:
            summary = evaluate.evaluate_checkpoint(run_dir, agents.agent_class, None, FLAGS.eval_episodes, ks, FLAGS.eval_protocol)
            print(f'      {os.path.basename(run_dir)}: success {summary["success"]:.2f}, return '
                  f'{summary["return"]:.1f}; Q estimates by K: '
                  + ', '.join(f'K={k}: {q:.2f}' for k, q in summary['q_estimates'].items()), flush=True)

        print('[4/4] report', flush=True)
        root = os.path.join(FLAGS.save_dir, FLAGS.run_group)
        paths = report.write_report(root, os.path.join(root, 'report'), reps=500)
        print(open(paths['results.md']).read())
        print(f'learning curves: {paths["learning_curves.png"]}')
        print(f'total {time.time() - t0:.0f} s')

    errors.run_cli(body)


if __name__ == '__main__':
    app.run(main, flags_parser=agent_flag.flags_parser)
