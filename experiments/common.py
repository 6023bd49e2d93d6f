"""The training entrypoints' composition from flags: read the shared flags (experiments.cli_flags), check them
(one line, exit code 2, nothing written: experiments.errors), apply --preset, and turn them into the arguments of
the library's composition (floq_jax.training.compose), which the sweeps call too."""

from __future__ import annotations

import sys

from absl import flags

from experiments import agent_flag, distributed
from experiments.checks import check_dataset, check_env_name, check_writable, parse_int_list
from experiments.errors import UsageError

FLAGS = flags.FLAGS


# Flags --preset=published sets to the published run lengths (floq_jax.presets.PUBLISHED_PROTOCOL /
# PUBLISHED_O2O_PROTOCOL) unless given on the command line.
PROTOCOL_FLAGS = ('offline_steps', 'online_steps', 'eval_interval', 'eval_episodes', 'buffer_size', 'utd_ratio')


def preset_mode() -> str:
    """'offline_to_online' in the entrypoint that defines --online_steps, else 'offline'."""
    return 'offline_to_online' if 'online_steps' in FLAGS else 'offline'


def apply_protocol_preset() -> dict:
    """--preset=published: the published run lengths for every protocol flag not given on the command line (the
    user's flags win); sets those FLAGS and returns {flag: value} applied.  Idempotent.  Raises UsageError."""
    from floq_jax import presets

    values = {name: FLAGS[name].value for name in PROTOCOL_FLAGS if name in FLAGS}
    user_set = {name for name in values if FLAGS[name].present}
    try:
        applied = presets.protocol_overrides(FLAGS.preset, preset_mode(), values, user_set)
    except ValueError as e:
        raise UsageError(f'--preset={FLAGS.preset!r}: {e}') from None
    for name, value in applied.items():
        setattr(FLAGS, name, value)
    return applied


def option_usage_error(e) -> UsageError:
    """A RunOptions OptionError as a UsageError naming the flags."""
    shown = [f'--{n}={v}' for n, v in zip(e.names, e.values) if n in FLAGS] or [f'{e.names[0]}={e.values[0]}']
    reason = e.reason
    if len(shown) == 1 < len(e.names):  # e.g. train_offline has --offline_steps but no --online_steps
        reason = reason.split(';')[0] + '; accepted: a positive integer'
    return UsageError(f'{" ".join(shown)}: {reason}')


# The flags that are RunOptions of the same name: the common ones (--eval_num_steps is parsed first; --wandb is set
# by maybe_wandb once the package is found), then the offline-to-online entrypoint's own.
OPTION_FLAGS = ('seed', 'num_seeds', 'offline_steps', 'steps_per_call', 'log_interval', 'eval_interval',
                'save_interval', 'eval_episodes', 'eval_protocol', 'success_timing', 'eval_seeding', 'eval_at_start',
                'eval_num_envs', 'save_dir', 'run_group', 'resume', 'tensorboard', 'video_episodes',
                'video_frame_skip', 'max_checkpoints', 'progress', 'host_sampling', 'seed_loop', 'frame_stack',
                'p_aug')
ONLINE_OPTION_FLAGS = ('online_steps', 'utd_ratio', 'buffer_size', 'balanced_sampling')


def option_values(**extra) -> dict:
    """{RunOptions name: value} of the entrypoint's flags (:data:`OPTION_FLAGS`, --eval_num_steps parsed, and the
    :data:`ONLINE_OPTION_FLAGS` it defines), then ``extra``.  Raises UsageError."""
    values = {name: FLAGS[name].value for name in OPTION_FLAGS}
    values.update({name: FLAGS[name].value for name in ONLINE_OPTION_FLAGS if name in FLAGS})
    values['eval_num_steps'] = parse_int_list('eval_num_steps', FLAGS.eval_num_steps)
    values.update(extra)
    return values


def common_options(**extra):
    """RunOptions from the entrypoint's flags (floq_jax.training.options.build_run_options, which the sweeps call
    too; validated; raises UsageError)."""
    from floq_jax.training.options import OptionError, build_run_options

    apply_protocol_preset()
    if FLAGS.preset not in (None, '', 'none', 'published'):
        raise UsageError(f"--preset={FLAGS.preset!r}: accepted: 'published' or none")
    try:
        options = build_run_options(FLAGS.env_name, option_values(**extra))
    except OptionError as e:
        raise option_usage_error(e) from None
    check_env_name(FLAGS.env_name)
    distributed.check_distributed()
    check_writable(FLAGS.save_dir)
    return options


def start_devices(num_seeds: int = 1, cpu_devices=None, distributed: bool = False) -> int:
    """--cpu_devices and --compile_cache_dir, before JAX starts (floq_jax.training.devices.start, where the rule is
    written); returns the number of CPU devices in effect.  Multi-process runs (--distributed) use one CPU device per
    process unless --cpu_devices asks for more.  Raises UsageError naming --cpu_devices."""
    from floq_jax.training import devices

    cache_dir = FLAGS.compile_cache_dir if 'compile_cache_dir' in FLAGS else None
    try:
        return devices.start(num_seeds, cpu_devices, distributed, cache_dir)
    except ValueError as e:
        raise UsageError(str(e)) from None


def prepare(**extra):
    """Validate flags, load the data, apply the preset; returns (config, data, options) for
    floq_jax.training.compose.train. Raises UsageError."""
    from floq_jax.data import DatasetError
    from floq_jax.training import compose, runner, timing

    options = common_options(**extra)
    cpu_devices = start_devices(FLAGS.num_seeds, FLAGS.cpu_devices, FLAGS.distributed)
    config = FLAGS.agent
    if 'agent_name' not in config:
        raise UsageError(f'--agent={FLAGS["agent"].config_filename}: the config has no agent_name')
    import agents  # noqa: F401 - registers the project's agents
    from floq_jax import agent_registry

    try:
        agent_registry.load_agent_file(FLAGS['agent'].config_filename, config)
        applied = compose.agent_config(config, FLAGS.env_name, FLAGS.preset, preset_mode(),
                                       agent_flag.user_agent_keys())
    except ValueError as e:
        raise UsageError(e) from None
    check_dataset(FLAGS.env_name, FLAGS.dataset_dir, FLAGS.dataset_path)
    try:
        compose.check_rendering(FLAGS.env_name, options.eval_episodes + options.video_episodes)
    except DatasetError as e:
        raise UsageError(f'--env_name={FLAGS.env_name}: {e}') from None
    if FLAGS.distributed:
        distributed.initialize_distributed()
    try:
        with timing.phase('data'):
            data = compose.load_data(FLAGS.env_name, compose.DataSource(FLAGS.dataset_dir, FLAGS.dataset_path))
    except DatasetError as e:
        raise UsageError(f"{'--dataset_path' if FLAGS.dataset_path else '--env_name/--dataset_dir'}: {e}") from None
    runner.set_reward_range(config, data, FLAGS.reward_range)
    options.flags = recorded_flags()
    options.flags['preset_applied'] = applied
    options.flags.update(agent_registry.file_record(FLAGS['agent'].config_filename))  # evaluate finds the file again
    options.flags['preset_protocol_applied'] = apply_protocol_preset()  # what --preset=published set (idempotent)
    options.flags['cpu_devices'] = cpu_devices  # the effective value (auto resolved)
    options.console = True  # start-up / final summaries on stderr
    return config, data, options


def recorded_flags() -> dict:
    """flags.json's record of the command line: every flag the entrypoint and this module define (not absl's own,
    not --agent: the agent config is recorded in full), with its value."""
    # absl files the entrypoint's own flags under sys.argv[0] (its path) when it runs as __main__.
    ours = lambda module: module in ('__main__', sys.argv[0]) or module.split('.')[0] == 'experiments'
    return {f.name: f.value for module, module_flags in FLAGS.flags_by_module_dict().items() if ours(module)
            for f in module_flags if f.name != 'agent'}


def maybe_wandb(options, config) -> None:
    """--wandb: the run also logs its train/eval scalars to an offline-mode W&B run (needs the wandb package)."""
    del config
    if not FLAGS.wandb:
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise UsageError('--wandb: the wandb package is not installed (pip install wandb), or pass --nowandb') from None
    options.wandb = True
