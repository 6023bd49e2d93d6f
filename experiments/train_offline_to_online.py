"""Offline training, then online fine-tuning in the environment (dataset = initial replay buffer).

    python -m experiments.train_offline_to_online --env_name=cube-single-play-singletask-task2-v0 \
        --offline_steps=1000000 --online_steps=2000000 --utd_ratio=1 --buffer_size=2000000   # the defaults
    python -m experiments.train_offline_to_online --env_name=... --preset=published   # the published O2O protocol

One env per seed, one batched policy call (temperature 1) across seeds per env step, then ``utd_ratio``
updates sampled from the device replay buffer (insertion inside jit).  Checkpoints hold the replay buffer
too; a resumed online phase restarts its episodes (env state is not checkpointed).  ``--preset=published``
applies the published offline-to-online values (floq_jax.presets.PUBLISHED_O2O / FQL_PUBLISHED_O2O by agent) and
run lengths (1M offline + 2M online steps, buffer 2M; PUBLISHED_O2O_PROTOCOL) to every flag not given on the
command line.  See docs/training.md.
"""

from absl import app, flags

from experiments import agent_flag, cli_flags, common, errors
from floq_jax import presets

# Defaults: the published README's offline-to-online commands (1M offline + 2M online steps).
cli_flags.define_common_flags(offline_steps=presets.PUBLISHED_O2O_PROTOCOL['offline_steps'])
flags.adopt_module_key_flags(cli_flags)  # --help lists the common flags (and --agent's keys), not only --helpfull
flags.DEFINE_integer('online_steps', presets.PUBLISHED_O2O_PROTOCOL['online_steps'],
                     'Online env steps (default: the published README\'s).')
flags.DEFINE_integer('utd_ratio', 1, 'Updates per env step.')
flags.DEFINE_integer('buffer_size', 2_000_000, 'Replay capacity (at least the dataset size + 1); the published '
                     '2M keeps a 1M-transition dataset in the buffer through the first 1M online steps.')
flags.DEFINE_bool('balanced_sampling', False, 'Online phase: half of each batch from the dataset, half from a '
                  'replay buffer of online transitions only (--buffer_size rows), as the published '
                  '--balanced_sampling; off (the default, as published): the buffer starts as the dataset.')
FLAGS = flags.FLAGS


def main(_):
    errors.quiet_logs()

    def body():
        import agents
        from floq_jax.training import compose

        config, data, options = common.prepare()  # its online flags are RunOptions too (common.option_values)
        common.maybe_wandb(options, config)
        for d in compose.train(agents.agent_class(config.agent_name), config, data, options,
                               mode='offline_to_online'):
            print(d)

    errors.run_cli(body)


if __name__ == '__main__':
    app.run(main, flags_parser=agent_flag.flags_parser)
