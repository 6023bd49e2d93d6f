"""Flags shared by the training entrypoints (FQL's names), their validation, and one-line error reporting.

Every bad input ends the program with exit code 2 (or 1 for errors found while running) and ONE line on
stderr naming the flag and what is accepted; nothing is written before the inputs are validated.
"""

from __future__ import annotations

import difflib
import os
import sys
import tempfile

from absl import flags
from ml_collections import config_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS


class UsageError(ValueError):
    """A bad flag value (reported as one line, exit code 2)."""


CPU_DEVICES_HELP = ('CPU-only hosts: split the CPU into this many XLA devices so seeds train concurrently, one device '
                    'per core (default: the largest divisor of --num_seeds (a sweep: of its seed count) that is at most '
                    'the core count; 1 for one seed). No effect on GPU/TPU backends.')


def define_cpu_devices_flag(default=None, help_text: str = CPU_DEVICES_HELP) -> None:
    """--cpu_devices, for every entrypoint that trains (defined here only; once per process)."""
    if 'cpu_devices' not in FLAGS:
        flags.DEFINE_integer('cpu_devices', default, help_text)


def define_compile_cache_flag() -> None:
    """--compile_cache_dir, for every entrypoint that compiles programs (defined here only; once per process)."""
    from floq_jax.training import compile_cache

    if 'compile_cache_dir' not in FLAGS:
        flags.DEFINE_string('compile_cache_dir', None, "JAX's persistent compilation cache: a config compiled before "
                            f"loads its programs instead of compiling them again (default: ${compile_cache.ENV_VAR}, "
                            "else ~/.cache/floq_jax/jax_cache; '' turns it off).")


def define_eval_protocol_flag() -> None:
    """--eval_protocol, for every entrypoint that evaluates a policy (defined here only; once per process)."""
    from floq_jax import presets

    if 'eval_protocol' not in FLAGS:
        flags.DEFINE_enum('eval_protocol', presets.DEFAULT_EVAL_PROTOCOL, list(presets.EVAL_PROTOCOLS),
                          "Evaluation actions. 'published': the one-step policy with noise N(0, I), clipped to "
                          "[-1, 1], as the published code evaluates (its sample_actions ignores the temperature); "
                          "'deterministic': the one-step policy at zero noise (lower-variance success estimates, "
                          "not comparable to published numbers).")


def _define_string_once(name: str, default: str, help_text: str) -> None:
    """A string flag shared by several entrypoints, defined by whichever of them asks first (once per process)."""
    if name not in FLAGS:
        flags.DEFINE_string(name, default, help_text)


def define_success_timing_flag(default: str | None = None) -> None:
    """--success_timing, for every entrypoint that makes envs (defined here only; once per process).  ``default``
    None: the published runs' ('post'); experiments.evaluate passes '' (the run's own)."""
    from floq_jax import presets

    _define_string_once('success_timing', presets.DEFAULT_SUCCESS_TIMING if default is None else default,
                        "OGBench's success timing of the single-task envs (its success_timing argument): "
                        "'post', reward, termination and success from the next state s' (ogbench < 1.2, which "
                        "the published runs used); 'pre', from the current state s (ogbench 1.2's default). "
                        'Recorded in flags.json; a run dir is continued only with its own value.')


def define_eval_seeding_flag(default: str | None = None) -> None:
    """--eval_seeding, for every entrypoint that evaluates during training (defined here only; once per process)."""
    from floq_jax import presets

    _define_string_once('eval_seeding', presets.DEFAULT_EVAL_SEEDING if default is None else default,
                        "Episode reset seeds and action noise of the evaluations. 'per_evaluation': fresh at "
                        'each evaluation, derived from (seed, step), as the published loop draws new ones; '
                        "'fixed': the seed's same episodes at every evaluation (runs written before flags.json "
                        'recorded this). Recorded in flags.json; a run dir is continued only with its own value.')


def check_choice(name: str, value, accepted) -> None:
    """--<name>=<value> must be one of ``accepted`` (UsageError naming the flag otherwise)."""
    if value not in accepted:
        raise UsageError(f'--{name}={value}: accepted: {", ".join(accepted)}')


def define_common_flags(offline_steps: int | None = None) -> None:
    """The training entrypoints' flags.  Nothing here reads the command line: --agent is checked and defined when the
    flags are parsed (:func:`flags_parser`)."""
    from floq_jax import presets
    from floq_jax.training.parallel import SEED_LOOPS  # imports jax, which starts no backend (--cpu_devices is set later)

    flags.DEFINE_string('env_name', 'cube-single-play-singletask-task2-v0', 'OGBench single-task dataset name.')
    flags.DEFINE_string('dataset_dir', None, 'Directory holding <dataset>.npz (default: ~/.ogbench/data).')
    flags.DEFINE_string('dataset_path', None, 'Explicit path of the training .npz file.')
    flags.DEFINE_integer('seed', 0, 'First seed.')
    flags.DEFINE_integer('num_seeds', 1, 'Seeds seed..seed+num_seeds-1, trained together (vmapped).')
    if offline_steps is None:
        offline_steps = presets.PUBLISHED_PROTOCOL['offline_steps']
    flags.DEFINE_integer('offline_steps', offline_steps, 'Offline updates (default: the published main.py\'s).')
    flags.DEFINE_integer('steps_per_call', 1000, 'Updates per host call (chunks are clipped at log/eval/save steps).')
    flags.DEFINE_integer('log_interval', 5000, 'Training-metric logging interval (steps).')
    flags.DEFINE_integer('eval_interval', 20000, 'Evaluation interval (steps).')
    flags.DEFINE_integer('save_interval', 100000, 'Checkpoint interval (steps); the final step is always saved.')
    flags.DEFINE_integer('eval_episodes', 50, 'Episodes per evaluation.')
    flags.DEFINE_integer('eval_num_envs', None, 'Live envs per evaluation: one pool shared by all seeds (each seed '
                         'gets eval_num_envs // num_seeds, at least 1, and runs its episodes on them in waves; '
                         'an OGBench cube env holds ~160 MB). Default: as many as fit in half the available '
                         'memory, at most num_seeds x eval_episodes. The episodes do not depend on it (the noise of a step is '
                         'keyed by seed, episode and step).')
    define_eval_protocol_flag()  # --eval_protocol=published|deterministic (also experiments.evaluate, demo, sweeps)
    define_video_flags()  # --video_episodes, --video_frame_skip (also experiments.evaluate)
    define_success_timing_flag()  # --success_timing=post|pre (also experiments.evaluate, sweeps)
    define_eval_seeding_flag()  # --eval_seeding=per_evaluation|fixed (also the sweeps)
    flags.DEFINE_enum('reward_range', presets.DEFAULT_REWARD_RANGE, list(presets.REWARD_RANGES),
                      "r_min / r_max behind floq's noise interval and value support. 'published': the rewards' "
                      "min / max and 0 (the published code computes them over its zero-padded replay buffer); "
                      "'dataset': the dataset's rewards only (for all -1 rewards the noise interval is a point).")
    flags.DEFINE_string('eval_num_steps', '', 'Comma list of extra critic K values to log Q estimates at, e.g. 1,4,8.')
    flags.DEFINE_bool('eval_at_start', True, 'Evaluate the untrained policy at step 0.')
    flags.DEFINE_string('save_dir', 'runs', 'Root of the run directories.')
    flags.DEFINE_string('run_group', 'default', 'Run group (a directory level under save_dir).')
    flags.DEFINE_bool('resume', True, 'Continue an existing run dir from its newest intact checkpoint.')
    flags.DEFINE_string('preset', None, "'published': the published per-environment hyperparameters (the agent's "
                        "own table; the offline-to-online one for train_offline_to_online) and run lengths "
                        "(offline: 2M steps; offline-to-online: 1M + 2M; evaluation every 20k steps over 50 "
                        "episodes) for every flag not given on the command line; or none.")
    flags.DEFINE_bool('wandb', False, 'Also log to Weights & Biases (offline mode unless WANDB_MODE is set).')
    flags.DEFINE_bool('tensorboard', True, 'Write TensorBoard events.')
    flags.DEFINE_bool('distributed', False, 'Multi-process run (several hosts, or several processes on one host): '
                      'call jax.distributed.initialize with the three flags below (JAX\'s own names; on TPU pods and '
                      'clusters JAX detects, none is needed). See docs/training.md.')
    flags.DEFINE_string('coordinator_address', None, '--distributed: host:port of process 0 (every process passes '
                        'the same value), e.g. 10.0.0.1:1234.')
    flags.DEFINE_integer('num_processes', None, '--distributed: how many processes take part.')
    flags.DEFINE_integer('process_id', None, '--distributed: this process\'s index, 0 .. num_processes - 1.')
    flags.DEFINE_integer('heartbeat_timeout_seconds', None, '--distributed: seconds without a heartbeat after which '
                         'a process counts as lost and the others stop (default: JAX\'s, 100).')
    define_cpu_devices_flag()
    define_compile_cache_flag()
    flags.DEFINE_bool('host_sampling', None, 'Sample batches on the host with prefetch instead of keeping the dataset '
                      'on the device (default: only when it exceeds half the free device memory).')
    flags.DEFINE_enum('seed_loop', 'auto', list(SEED_LOOPS), "How each device runs its seeds: 'vmap' "
                      "batches them (GPU/TPU), 'map' runs them one by one as plain matmuls; 'auto': 'map' on CPU when "
                      "each device holds one seed or for large matmuls (batch x noise_samples x widest layer >= 2^18).")
    flags.DEFINE_integer('max_checkpoints', 3, 'Newest checkpoints kept per seed.')
    flags.DEFINE_bool('progress', True, 'tqdm progress bar.')
    _AGENT_FLAG['wanted'] = True


# config_flags applies the --agent.<key> overrides it finds on the command line when --agent is defined, so the
# entrypoints that take an agent config have it defined by flags_parser, once the command line is known and checked.
_AGENT_FLAG = {'wanted': False}
DEFAULT_AGENT_FILE = os.path.join(REPO, 'agents', 'floq.py')


def define_agent_flag(argv) -> None:
    """--agent=<file>[:<variant>] with its --agent.<key> overrides from ``argv``; listed by the entrypoint's --help
    with the selected file's keys."""
    config_flags.DEFINE_config_file('agent', DEFAULT_AGENT_FILE, agent_help(argv), lock_config=False, sys_argv=argv)
    FLAGS.register_key_flag_for_module(argv[0], FLAGS['agent'])


def quiet_logs() -> None:
    """Hide orbax's INFO chatter (warnings, e.g. skipped corrupt checkpoints, still show)."""
    from absl import logging as absl_logging

    from floq_jax.console import quiet_setup

    absl_logging.set_verbosity(absl_logging.WARNING)
    quiet_setup()  # headless MuJoCo backend (no GLFW 'DISPLAY missing'), no gymnasium Box-precision warnings


def one_line(message, limit: int = 2000) -> str:
    """The message on one line; a (very) long one is cut at a word boundary, never mid-word."""
    text = ' '.join(str(message).split())
    if len(text) <= limit:
        return text
    cut = text.rfind(' ', 0, limit - 4)
    return text[:cut if cut > 0 else limit - 4].rstrip(',;') + ' ...'


def did_you_mean(word: str, choices, prefix: str = '') -> str:
    """" (did you mean <prefix><best>?)" for the closest choice (difflib), or ''."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean {prefix}{match[0]}?)' if match else ''


def fail(message, code: int = 2):
    """Print one error line to stderr and exit."""
    print(f'error: {one_line(message)}', file=sys.stderr)
    sys.exit(code)


def flags_parser(argv):
    """absl ``app.run`` flags parser whose errors are one line (the default prints usage hints).

    config_flags reads --agent/--agent.* lazily and needs --agent=<file> before the overrides: put it there (in
    place: ``argv`` is sys.argv), check the file (and variant) and the override keys, each failure as one line, and
    give --help the selected file's keys.
    """
    if _AGENT_FLAG['wanted'] and 'agent' not in FLAGS:
        normalize_agent_argv(argv)
        try:
            check_agent_argv(argv)
        except UsageError as e:
            fail(e)
        try:
            define_agent_flag(argv)
        except Exception as e:  # noqa: BLE001
            fail(f'--agent: {type(e).__name__}: {e}')
    try:
        return FLAGS(argv)
    except Exception as e:  # noqa: BLE001 - config_flags raises AttributeError/KeyError for unknown keys
        fail(f'{type(e).__name__}: {e}' if not isinstance(e, flags.Error) else e)


def _agent_spec(argv):
    """The last --agent=<file>[:<variant>] value in argv, or None."""
    spec = None
    for i, a in enumerate(argv[1:], 1):
        if a.startswith('--agent='):
            spec = a.split('=', 1)[1]
        elif a == '--agent' and i + 1 < len(argv):
            spec = argv[i + 1]
    return spec


def normalize_agent_argv(argv) -> None:
    """Moves --agent=<file> in front of the --agent.<key> overrides, in place (config_flags refuses the other order
    with a message that does not say which order it wants)."""
    first_override = next((i for i, a in enumerate(argv) if a.startswith('--agent.')), None)
    files = [i for i, a in enumerate(argv) if a.startswith('--agent=')]
    if first_override is None or not files or files[-1] < first_override:
        return
    spec = argv[files[-1]]
    for i in reversed(files):
        del argv[i]
    argv.insert(first_override, spec)


def agent_files() -> list:
    """The agent config files that ship with the repository (paths as --agent takes them from here)."""
    directory = os.path.join(REPO, 'agents')
    out = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.endswith('.py') and not name.startswith('_'):
            with open(path) as f:
                if 'def get_config' in f.read():
                    out.append(os.path.relpath(path))
    return out


def load_agent_config(spec: str):
    """get_config() of --agent=<file>[:<variant>] (ml_collections' rules); UsageError naming the file or variant."""
    import importlib.util
    import inspect

    path, _, variant = spec.partition(':')
    if not os.path.isfile(path):
        known = agent_files()
        raise UsageError(f'--agent={spec}: no such file {path!r}{did_you_mean(path, known)}; accepted: '
                         f'{", ".join(known)} (optionally <file>:<variant>, e.g. agents/fql.py:resnet)')
    try:
        module_spec = importlib.util.spec_from_file_location('_agent_cfg', path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001
        raise UsageError(f'--agent={spec}: cannot load {path} ({type(e).__name__}: {e})') from None
    if not callable(getattr(module, 'get_config', None)):
        raise UsageError(f'--agent={spec}: {path} defines no get_config(); accepted: {", ".join(agent_files())}')
    if variant and not inspect.signature(module.get_config).parameters:
        raise UsageError(f'--agent={spec}: {path} has no config variants; accepted: --agent={path}')
    try:
        return module.get_config(variant) if variant else module.get_config()
    except Exception as e:  # noqa: BLE001 - e.g. an unknown variant
        raise UsageError(f'--agent={spec}: {type(e).__name__}: {e}') from None


def agent_help(argv) -> str:
    """--help text of --agent: the shipped config files and every --agent.<key> of the selected one with its default."""
    spec = _agent_spec(argv) or os.path.relpath(os.path.join(REPO, 'agents', 'floq.py'))
    try:
        config = load_agent_config(spec)
    except UsageError:
        return 'Agent config file[:variant].'
    keys = '; '.join(f'--agent.{k}={config[k]!r}' for k in sorted(config.keys()))
    return (f'Agent config file[:variant]: {", ".join(agent_files())} (e.g. agents/fql.py:resnet). Every key of its '
            f'config is a flag --agent.<key>=<value>; for {spec} (key=default): {keys}')


def check_agent_argv(argv) -> None:
    """--agent=<file>[:<variant>] loads and every --agent.<key> names a key of its config (UsageError otherwise)."""
    spec = _agent_spec(argv)
    keys = [a[len('--agent.'):].split('=', 1)[0] for a in argv[1:] if a.startswith('--agent.')]
    if spec is None and not keys:
        return
    config = load_agent_config(spec or os.path.join(REPO, 'agents', 'floq.py'))
    known = sorted(config.keys())
    for key in keys:
        top = key.split('.')[0]
        if top not in known:
            raise UsageError(f'--agent.{key}: unknown agent config key{did_you_mean(top, known, "--agent.")}; '
                             f'accepted keys ({len(known)}): {", ".join(known)}')


def user_agent_keys() -> set:
    """Agent config keys set on the command line (they win over presets)."""
    try:
        return set(config_flags.get_override_values(FLAGS['agent']).keys())
    except Exception:  # noqa: BLE001
        return {a[len('--agent.'):].split('=', 1)[0] for a in sys.argv[1:] if a.startswith('--agent.')}


def parse_int_list(name: str, text: str):
    if not text:
        return ()
    try:
        values = tuple(int(x) for x in text.split(',') if x.strip())
    except ValueError:
        raise UsageError(f'--{name}={text!r}: expected a comma list of positive integers, e.g. 1,4,8') from None
    if any(v < 1 for v in values):
        raise UsageError(f'--{name}={text!r}: expected a comma list of positive integers, e.g. 1,4,8')
    return values


def define_video_flags() -> None:
    """--video_episodes and --video_frame_skip, as the published main.py names them."""
    flags.DEFINE_integer('video_episodes', 0, 'Per seed and evaluation, extra episodes rendered into one grid video '
                         '(videos/step<N>.mp4 in the run dir, and TensorBoard / W&B); they do not count in the '
                         'success statistics, as published. Rendering is slow on a CPU (~0.2-0.3 s a frame).')
    flags.DEFINE_integer('video_frame_skip', 3, 'Keep every n-th rendered frame (and the last), as published.')


def check_positive(**values) -> None:
    for name, v in values.items():
        if v is None or int(v) < 1:
            raise UsageError(f'--{name}={v}: must be a positive integer')


def check_env_name(env_name: str) -> None:
    from floq_jax.data import DatasetError, parse_name

    try:
        parsed = parse_name(env_name)
    except DatasetError as e:
        raise UsageError(f'--env_name: {e}') from None
    if not parsed.single_task:
        raise UsageError(f'--env_name={env_name!r} is not a single-task name; accepted: e.g. '
                         f'{parsed.single_task_name(1)!r} or {parsed.env_prefix}-{parsed.dataset_type}-singletask-'
                         f'{parsed.version} (default task)')


def check_writable(save_dir: str) -> None:
    """--save_dir must be creatable and writable: create it and a probe file, then remove both (nothing is left).

    Asking os.access is not enough: root passes it for e.g. /proc/x, where mkdir fails later.  A gs://bucket/...
    path gets a probe object instead (a missing bucket, missing credentials or an unreachable endpoint fail here).
    """
    from floq_jax import storage

    if storage.is_remote(save_dir):
        try:
            storage.check_writable(save_dir)
        except storage.StorageError as e:
            raise UsageError(f'--save_dir={save_dir!r}: {e}; accepted: a local directory, or gs://<bucket>/<path> '
                             f'in a bucket that exists and that your credentials may write') from None
        return
    path = os.path.abspath(os.path.expanduser(save_dir))
    created = []
    probe = path
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        created.append(probe)
        probe = os.path.dirname(probe)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix='.floq_write_probe'):
            pass
    except OSError as e:
        raise UsageError(f'--save_dir={save_dir!r} is not writable ({e.strerror or type(e).__name__}; nearest '
                         f'existing directory: {probe}); accepted: a directory you can create and write to') from None
    finally:
        for d in created:  # deepest first
            try:
                os.rmdir(d)
            except OSError:
                break


def check_readable(flag: str, path) -> None:
    """--<flag> on object storage can be asked (bucket, credentials, network); local paths: the callers' checks."""
    from floq_jax import storage

    if not path or not storage.is_remote(path):
        return
    try:
        storage.check_readable(path)
    except storage.StorageError as e:
        raise UsageError(f'--{flag}={path!r}: {e}; accepted: a local path, or gs://<bucket>/<path> that your '
                         f'credentials may read') from None


def check_dataset(env_name: str, dataset_dir, dataset_path) -> str:
    from floq_jax.data import DatasetError
    from floq_jax.data.ogbench_io import resolve_dataset_file

    try:
        return resolve_dataset_file(env_name, dataset_dir, dataset_path)
    except DatasetError as e:
        flag = '--dataset_path' if dataset_path else '--dataset_dir'
        raise UsageError(f'{flag}: {e}') from None


def configure_cpu_devices(num_seeds: int, cpu_devices=None, distributed: bool = False) -> int:
    """--cpu_devices: split the host CPU into XLA devices before JAX starts (see floq_jax.training.parallel.set_cpu_devices).

    Returns the number of CPU devices set (1: nothing changed).  Multi-process runs (--distributed) use one CPU
    device per process unless --cpu_devices asks for more.
    """
    from floq_jax.training import parallel

    try:
        return parallel.configure_cpu_devices(num_seeds, cpu_devices, distributed)
    except ValueError as e:
        raise UsageError(str(e)) from None


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


def validate(options) -> None:
    """RunOptions.validate (the one check of the run's options), its error as a UsageError naming the flags."""
    from floq_jax.training.options import OptionError

    try:
        options.validate()
    except OptionError as e:
        shown = [f'--{n}={v}' for n, v in zip(e.names, e.values) if n in FLAGS] or [f'{e.names[0]}={e.values[0]}']
        reason = e.reason
        if len(shown) == 1 < len(e.names):  # e.g. train_offline has --offline_steps but no --online_steps
            reason = reason.split(';')[0] + '; accepted: a positive integer'
        raise UsageError(f'{" ".join(shown)}: {reason}') from None


def common_options(**extra):
    """RunOptions from the common flags (validated; raises UsageError)."""
    from floq_jax.training.options import RunOptions

    apply_protocol_preset()
    if FLAGS.preset not in (None, '', 'none', 'published'):
        raise UsageError(f"--preset={FLAGS.preset!r}: accepted: 'published' or none")
    eval_num_steps = parse_int_list('eval_num_steps', FLAGS.eval_num_steps)
    options = RunOptions(
        env_name=FLAGS.env_name, seed=FLAGS.seed, num_seeds=FLAGS.num_seeds, offline_steps=FLAGS.offline_steps,
        steps_per_call=FLAGS.steps_per_call, log_interval=FLAGS.log_interval, eval_interval=FLAGS.eval_interval,
        save_interval=FLAGS.save_interval, eval_episodes=FLAGS.eval_episodes,
        eval_protocol=FLAGS.eval_protocol, success_timing=FLAGS.success_timing, eval_seeding=FLAGS.eval_seeding,
        eval_num_steps=eval_num_steps,
        eval_at_start=FLAGS.eval_at_start, eval_num_envs=FLAGS.eval_num_envs, save_dir=FLAGS.save_dir,
        run_group=FLAGS.run_group, resume=FLAGS.resume, tensorboard=FLAGS.tensorboard,
        video_episodes=FLAGS.video_episodes, video_frame_skip=FLAGS.video_frame_skip,
        max_checkpoints=FLAGS.max_checkpoints, progress=FLAGS.progress, host_sampling=FLAGS.host_sampling,
        seed_loop=FLAGS.seed_loop, **extra)
    validate(options)
    check_env_name(FLAGS.env_name)
    check_distributed()
    check_writable(FLAGS.save_dir)
    return options


def check_distributed() -> None:
    """--coordinator_address / --num_processes / --process_id / --heartbeat_timeout_seconds: only with
    --distributed, and consistent with each other (JAX's own checks come later and are less specific)."""
    given = [name for name in ('coordinator_address', 'num_processes', 'process_id', 'heartbeat_timeout_seconds')
             if FLAGS[name].value is not None]
    if given and not FLAGS.distributed:
        raise UsageError(f'--{given[0]} is a multi-process flag; accepted: together with --distributed')
    address = FLAGS.coordinator_address
    if address is not None:
        host, _, port = address.rpartition(':')
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f'--coordinator_address={address!r}: accepted: host:port of process 0, e.g. '
                             f'10.0.0.1:1234 or 127.0.0.1:1234')
    if FLAGS.num_processes is not None:
        check_positive(num_processes=FLAGS.num_processes)
    if FLAGS.heartbeat_timeout_seconds is not None:
        check_positive(heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds)
    process_id, count = FLAGS.process_id, FLAGS.num_processes
    if process_id is not None and (process_id < 0 or (count is not None and process_id >= count)):
        upper = f'{count - 1}' if count is not None else 'num_processes - 1'
        raise UsageError(f'--process_id={process_id}: accepted: 0 .. {upper}')


def initialize_distributed() -> None:
    """--distributed: start jax.distributed (floq_jax.training.multihost.initialize); a failure is one line naming the flags.
    With more than one process, a PeerWatch ends this process with one line as soon as another one is lost."""
    global _PEER_WATCH
    import jax

    from floq_jax.training import multihost

    try:
        multihost.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                             FLAGS.heartbeat_timeout_seconds)
        if jax.process_count() > 1:
            _PEER_WATCH = multihost.PeerWatch(_exit_lost)
    except Exception as e:  # noqa: BLE001 - ValueError for missing values, RuntimeError/XlaRuntimeError for timeouts
        raise UsageError(f'--distributed: jax.distributed.initialize failed ({type(e).__name__}: {e}); accepted: '
                         f'--coordinator_address=host:port --num_processes=N --process_id=i on every process '
                         f'(none on TPU pods and clusters JAX detects)') from None


_PEER_WATCH = None  # --distributed: floq_jax.training.multihost.PeerWatch (ends this process when another one is lost)


def _exit_lost(process: int, reason: str) -> None:
    """PeerWatch's on_lost: one line, exit 1 at once (JAX would otherwise abort later with a fatal log)."""
    from floq_jax.training.multihost import lost_process_message

    exit_with_last_line(f'error: {one_line(lost_process_message(process, reason))}', 1)


def exit_with_last_line(line: str, code: int) -> None:
    """Ends the process at once with ``line`` as the last line on stderr: native threads (jax.distributed's
    coordination agent logs its own copy of a lost peer from a background thread) write to /dev/null from here on,
    and interpreter-exit hooks (jax.distributed's exit barrier, which waits for a lost process) are skipped."""
    sys.stdout.flush()
    sys.stderr.flush()
    own = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.write(own, (line.rstrip('\n') + '\n').encode())
    os._exit(code)


def enable_compile_cache() -> None:
    """--compile_cache_dir (after --cpu_devices, before the first compilation)."""
    from floq_jax.training import compile_cache

    compile_cache.enable(compile_cache.resolve(FLAGS.compile_cache_dir))


def prepare(**extra):
    """Validate flags, load the data, apply the preset; returns (config, data, options). Raises UsageError."""
    from floq_jax import presets
    from floq_jax.training import runner
    from floq_jax.data import DatasetError, load_offline_data
    from floq_jax.training import timing

    options = common_options(**extra)
    cpu_devices = configure_cpu_devices(FLAGS.num_seeds, FLAGS.cpu_devices, FLAGS.distributed)
    enable_compile_cache()
    config = FLAGS.agent
    if 'agent_name' not in config:
        raise UsageError(f'--agent={FLAGS["agent"].config_filename}: the config has no agent_name')
    import agents  # noqa: F401 - registers the project's agents
    from floq_jax import agent_registry

    try:
        entry = agent_registry.load_agent_file(FLAGS['agent'].config_filename, config)
        applied = presets.apply_preset(config, FLAGS.env_name, FLAGS.preset, user_agent_keys(), mode=preset_mode())
        agent_registry.check_config(config, entry.ranges)
    except ValueError as e:
        raise UsageError(e) from None
    check_dataset(FLAGS.env_name, FLAGS.dataset_dir, FLAGS.dataset_path)
    if FLAGS.distributed:
        initialize_distributed()
    try:
        with timing.phase('data'):
            data = load_offline_data(FLAGS.env_name, FLAGS.dataset_dir, FLAGS.dataset_path)
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


def _quiet_closed_loops(previous):
    """An unraisable-exception hook that drops 'Event loop is closed' (orbax's / tensorstore's background writers
    report every pending callback of a failed checkpoint write so, dozens of times, after the error itself has been
    reported) and passes anything else on."""
    def hook(unraisable):
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and str(error) == 'Event loop is closed':
            return
        previous(unraisable)

    return hook


def run_cli(body) -> None:
    """Runs ``body()`` turning expected errors into one stderr line (exit 2 usage, 1 runtime)."""
    from floq_jax.training.multihost import ProcessLost
    from floq_jax.training.options import (DiskFull, Interrupted, NonFiniteMetric, OptionError, Preempted,
                                           RunDirConflict, interrupted_message)
    from floq_jax.training.runlock import RunDirLocked
    from floq_jax.training import timing

    timing.TIMES.mark_main()  # the time since the process started: imports and start-up
    sys.unraisablehook = _quiet_closed_loops(sys.unraisablehook)
    try:
        body()
        if _PEER_WATCH is not None:
            _PEER_WATCH.done()  # a normal end: the other processes must not report this one as lost
    except (UsageError, RunDirLocked) as e:
        fail(e, 2)
    except OptionError as e:  # an option that only the run's set-up can check (e.g. where it samples its batches)
        fail(UsageError(' '.join(f'--{n}={v}' for n, v in zip(e.names, e.values)) + f': {e.reason}'), 2)
    except (RunDirConflict, NonFiniteMetric) as e:
        fail(e, 1)
    except (ProcessLost, DiskFull) as e:
        # DiskFull: exit at once, skipping interpreter-exit hooks (orbax's threads would report the failed write again)
        exit_with_last_line(f'error: {one_line(e)}', 1)
    except Preempted as e:
        if _PEER_WATCH is not None:
            _PEER_WATCH.done()  # every process stops here together: none is lost
        print(one_line(e), file=sys.stderr, flush=True)
        sys.exit(Preempted.EXIT_CODE)
    except Interrupted as e:
        sys.stdout.flush()
        print(interrupted_message(e.step, e.checkpoint), file=sys.stderr, flush=True)
        os._exit(130)  # the run is closed; skip interpreter-exit hooks (worker joins), seen to hang after Ctrl-C
    except KeyboardInterrupt:
        print('interrupted before training started; nothing was trained', file=sys.stderr)
        sys.exit(130)
