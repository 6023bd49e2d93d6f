"""The entrypoints' shared absl flags (FQL's names), each defined here only, once per process.  The values are read
and checked in experiments.common (the training entrypoints) and by the entrypoints themselves."""

from __future__ import annotations

from absl import flags

from experiments import agent_flag

FLAGS = flags.FLAGS


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


def define_video_flags() -> None:
    """--video_episodes and --video_frame_skip, as the published main.py names them."""
    flags.DEFINE_integer('video_episodes', 0, 'Per seed and evaluation, extra episodes rendered into one grid video '
                         '(videos/step<N>.mp4 in the run dir, and TensorBoard / W&B); they do not count in the '
                         'success statistics, as published. Rendering is slow on a CPU (~0.2-0.3 s a frame).')
    flags.DEFINE_integer('video_frame_skip', 3, 'Keep every n-th rendered frame (and the last), as published.')


def define_common_flags(offline_steps: int | None = None) -> None:
    """The training entrypoints' flags.  Nothing here reads the command line: --agent is checked and defined when the
    flags are parsed (:func:`flags_parser`)."""
    from floq_jax import presets
    from floq_jax.training.parallel import SEED_LOOPS  # import jax only: floq_jax.training.devices

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
    flags.DEFINE_integer('frame_stack', None, 'Pixels: frames per observation, stacked on the channel axis (as '
                         'published: a batch row\'s frame and the ones before it, never reaching before its '
                         'episode\'s start; the evaluation env stacks the same way). Recorded in flags.json; default: '
                         'none.')
    flags.DEFINE_float('p_aug', None, 'Pixels: probability that a batch is randomly cropped (as published: edge '
                       'padding 3, one offset per row shared by observation and next observation). Recorded in '
                       'flags.json; default: none.')
    flags.DEFINE_bool('host_sampling', None, 'Sample batches on the host with prefetch instead of keeping the dataset '
                      'on the device (default: only when it exceeds half the free device memory).')
    flags.DEFINE_enum('seed_loop', 'auto', list(SEED_LOOPS), "How each device runs its seeds: 'vmap' "
                      "batches them (GPU/TPU), 'map' runs them one by one as plain matmuls; 'auto': 'map' on CPU when "
                      "each device holds one seed or for large matmuls (batch x noise_samples x widest layer >= 2^18).")
    flags.DEFINE_integer('max_checkpoints', 3, 'Newest checkpoints kept per seed.')
    flags.DEFINE_bool('progress', True, 'tqdm progress bar.')
    agent_flag.want_agent_flag()
