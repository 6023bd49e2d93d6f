"""Offline training of floq (or FQL) on an OGBench single-task dataset.

    python -m experiments.train_offline --env_name=cube-single-play-singletask-task2-v0 \
        --dataset_dir=~/.ogbench/data --num_seeds=3 --preset=published
    python -m experiments.train_offline --agent=agents/fql.py --agent.alpha=300 ...

Run dirs: <save_dir>/<run_group>/<env_name>/<agent_name>/seed<k>/ (flags.json, train.csv, eval.csv, tb/,
checkpoints/).  Re-running the same command continues from the newest intact checkpoint (--resume, default).
See docs/training.md.
"""

from absl import app, flags

from experiments import agent_flag, cli_flags, common, errors

cli_flags.define_common_flags()
flags.adopt_module_key_flags(cli_flags)  # --help lists the common flags (and --agent's keys), not only --helpfull
FLAGS = flags.FLAGS


def main(_):
    errors.quiet_logs()

    def body():
        import agents
        from floq_jax.training import compose

        config, data, options = common.prepare()
        common.maybe_wandb(options, config)
        dirs = compose.train(agents.agent_class(config.agent_name), config, data, options, mode='offline')
        for d in dirs:
            print(d)

    errors.run_cli(body)


if __name__ == '__main__':
    app.run(main, flags_parser=agent_flag.flags_parser)
