"""What a run is asked to do (:class:`RunOptions`), the one builder of it (:func:`build_run_options`) and how a run
can end early (the run's exceptions).

    options = build_run_options('cube-single-play-singletask-task2-v0', {'num_seeds': 3, 'offline_steps': ...})
    # = RunOptions(env_name=..., num_seeds=3, ...), validated: a one-line OptionError naming the option (the CLI
    # maps it to exit code 2)
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from floq_jax import presets
from floq_jax.training import parallel

CLOSE_GRACE_S = 60.0  # seconds a Ctrl-C'd run may take to close before the watchdog exits the process


class RunDirConflict(RuntimeError):
    """The run directory belongs to another run (different env / agent / config) or resume is off."""


class NonFiniteMetric(RuntimeError):
    """A training metric became NaN or inf."""


class OptionError(ValueError):
    """A bad RunOptions value: ``names`` / ``values`` of the options involved, ``reason`` and what is accepted.

    ``str()`` is one line, e.g. ``num_seeds=0: must be a positive integer``; the CLI prints the same with ``--``.
    """

    def __init__(self, names: Sequence[str], values: Sequence[Any], reason: str):
        self.names, self.values, self.reason = tuple(names), tuple(values), reason
        super().__init__(' '.join(f'{n}={v}' for n, v in zip(self.names, self.values)) + f': {reason}')


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run: ``step`` reached, ``checkpoint`` the newest saved step (None: none yet)."""

    def __init__(self, step: int, checkpoint: Optional[int]):
        super().__init__(step, checkpoint)
        self.step, self.checkpoint = step, checkpoint


def interrupted_message(step: int, checkpoint: Optional[int]) -> str:
    """The one line a Ctrl-C'd run ends with."""
    where = (f'from its checkpoint at step {checkpoint}' if checkpoint is not None
             else 'from step 0: no checkpoint was saved yet')
    return f'interrupted at step {step}; re-run the same command to resume ({where})'


class Preempted(RuntimeError):
    """SIGTERM (a preemptible / spot machine about to be taken back): every process stopped at the same step
    ``step`` and saved a checkpoint there; ``where`` names the run directories."""

    EXIT_CODE = 143  # as a process ended by SIGTERM (not 0: the run is not finished, a retry loop should re-run it)

    def __init__(self, step: int, where: str):
        super().__init__(preempted_message(step, where))
        self.step, self.where = step, where


def preempted_message(step: int, where: str) -> str:
    """The one line a preempted run ends with."""
    return (f'preempted (SIGTERM) at step {step}: checkpoint {step} saved in {where}; re-run the same command to '
            f'resume from step {step}')


class DiskFull(RuntimeError):
    """The disk (or bucket) holding the run directories is full; the run stopped at its newest complete checkpoint."""


def disk_full_message(run_dir: str, what: str, detail: str, resume_step: Optional[int]) -> str:
    where = f'step {resume_step} (its newest complete checkpoint)' if resume_step is not None else \
        'step 0 (no complete checkpoint)'
    return (f'{what} is full ({detail}); run dir {run_dir}; the same command resumes from {where} once there is '
            f'space: free some, or pass another --save_dir')


@dataclasses.dataclass
class RunOptions:
    """Everything the loop needs besides the agent config and the data (the entrypoints map flags onto it)."""

    env_name: str
    seed: int = 0
    num_seeds: int = 1
    offline_steps: int = presets.PUBLISHED_PROTOCOL['offline_steps']  # the published main.py's 2M
    online_steps: int = 0
    steps_per_call: int = 1000
    log_interval: int = 5000
    eval_interval: int = 20000
    save_interval: int = 100000
    eval_episodes: int = 50
    # 'published': the one-step policy at noise N(0, I), clipped (the published code's evaluation);
    # 'deterministic': at zero noise.  See floq_jax.presets.EVAL_PROTOCOLS.
    eval_protocol: str = 'published'
    # OGBench's success timing of every env the run makes (evaluation and online phase): 'post' (the published runs,
    # ogbench < 1.2) or 'pre' (ogbench 1.2's default).  See floq_jax.presets.SUCCESS_TIMINGS.
    success_timing: str = presets.DEFAULT_SUCCESS_TIMING
    # 'per_evaluation': fresh episode seeds and action noise at each evaluation (from seed and step, as published);
    # 'fixed': the same at every evaluation.  See floq_jax.presets.EVAL_SEEDINGS.
    eval_seeding: str = presets.DEFAULT_EVAL_SEEDING
    eval_num_steps: Sequence[int] = ()   # extra critic K values at which to log Q estimates
    eval_at_start: bool = True           # evaluate the untrained policy at step 0
    eval_num_envs: Optional[int] = None  # live envs per evaluation, all seeds together (default: from memory)
    # per seed and evaluation, extra rendered episodes (not in the statistics, as published) -> videos/step<N>.mp4
    video_episodes: int = 0
    video_frame_skip: int = 3            # keep every n-th rendered frame (and the last), as published
    save_dir: str = 'runs'
    run_group: str = 'default'
    resume: bool = True
    tensorboard: bool = True
    wandb: bool = False                  # also log to W&B (offline mode unless WANDB_MODE is set)
    max_checkpoints: Optional[int] = 3
    utd_ratio: int = 1                   # online: updates per env step
    buffer_size: int = 2_000_000         # online: replay capacity (at least the dataset size + 1); published 2M
    # online: half of each batch from the dataset, half from a buffer of online transitions only (published
    # --balanced_sampling; off by default, as published)
    balanced_sampling: bool = False
    use_mesh: Optional[bool] = None      # None: shard over devices when there is more than one
    # None: sample on the host (numpy, prefetched) only when the dataset exceeds half the free device memory.
    host_sampling: Optional[bool] = None
    # Pixels (published --frame_stack / --p_aug): frames per observation (None: no stacking) and the probability of
    # a batch being randomly cropped (None: never); floq_jax.data.sampling.Pixels.
    frame_stack: Optional[int] = None
    p_aug: Optional[float] = None
    # How each device runs its seeds (offline and online): 'vmap' batches them, 'map' runs them one by one (plain
    # GEMMs), 'auto' maps on CPU with one seed per device or large matmuls (floq_jax.training.parallel.use_seed_map).
    seed_loop: str = 'auto'
    progress: bool = True                # tqdm bar
    console: bool = False                # CLI: start-up / final summaries and 'compiling' notes on stderr
    flags: Dict[str, Any] = dataclasses.field(default_factory=dict)  # recorded in flags.json
    # [(step, {agent config key: value})]: from ``step`` on the agents train with those config values (static
    # config, so one recompile per entry), e.g. [(250_000, {'freeze_critic_trunk': True})].
    config_schedule: Sequence[Tuple[int, Dict[str, Any]]] = ()
    log_diagnostics: bool = True         # diagnostics.critic_diagnostics at every log interval ('diagnostics/...')
    eval_kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)  # extra Evaluator args (max_episode_steps)

    def validate(self) -> None:
        """The one check of the options (the CLI maps its :class:`OptionError` to one line and exit code 2)."""
        positive = ['num_seeds', 'steps_per_call', 'log_interval', 'eval_interval', 'save_interval', 'eval_episodes',
                    'utd_ratio', 'buffer_size', 'video_frame_skip']
        positive += [n for n in ('max_checkpoints', 'eval_num_envs') if getattr(self, n) is not None]
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise OptionError([name], [getattr(self, name)], 'must be a positive integer')
        for name in ('offline_steps', 'online_steps', 'video_episodes'):
            if int(getattr(self, name)) < 0:
                raise OptionError([name], [getattr(self, name)], 'must be >= 0')
        if self.offline_steps + self.online_steps < 1:
            raise OptionError(['offline_steps', 'online_steps'], [self.offline_steps, self.online_steps],
                              'nothing to train; accepted: at least one of them positive')
        if self.eval_protocol not in presets.EVAL_PROTOCOLS:
            raise OptionError(['eval_protocol'], [self.eval_protocol],
                              f'accepted: {", ".join(presets.EVAL_PROTOCOLS)}')
        if self.success_timing not in presets.SUCCESS_TIMINGS:
            raise OptionError(['success_timing'], [self.success_timing],
                              f'accepted: {", ".join(presets.SUCCESS_TIMINGS)}')
        if self.eval_seeding not in presets.EVAL_SEEDINGS:
            raise OptionError(['eval_seeding'], [self.eval_seeding], f'accepted: {", ".join(presets.EVAL_SEEDINGS)}')
        if self.seed_loop not in parallel.SEED_LOOPS:
            raise OptionError(['seed_loop'], [self.seed_loop], "accepted: 'auto', 'map' or 'vmap'")
        for k in self.eval_num_steps:
            if int(k) < 1:
                raise OptionError(['eval_num_steps'], [','.join(map(str, self.eval_num_steps))],
                                  'expected a comma list of positive integers, e.g. 1,4,8')
        if self.frame_stack is not None and (isinstance(self.frame_stack, bool) or not isinstance(self.frame_stack, numbers.Integral)
                                             or self.frame_stack < 1):
            raise OptionError(['frame_stack'], [self.frame_stack], 'accepted: a positive integer (or unset)')
        if self.p_aug is not None and not 0.0 <= float(self.p_aug) <= 1.0:
            raise OptionError(['p_aug'], [self.p_aug], 'accepted: a probability in [0, 1] (or unset)')
        pixel_options = [n for n in ('frame_stack', 'p_aug') if getattr(self, n) is not None]
        if pixel_options and self.online_steps > 0:
            raise OptionError(pixel_options + ['online_steps'], [getattr(self, n) for n in pixel_options] +
                              [self.online_steps], 'pixel options train offline only (the published main.py has no '
                              'online fine-tuning on visual environments)')
        for entry in self.config_schedule:
            if len(entry) != 2 or int(entry[0]) < 0 or not isinstance(entry[1], dict):
                raise OptionError(['config_schedule'], [entry], 'entries must be (step >= 0, dict of config values)')

    @property
    def total_steps(self) -> int:
        return self.offline_steps + self.online_steps

    @property
    def seeds(self):
        return [self.seed + k for k in range(self.num_seeds)]


class UnknownOptions(ValueError):
    """Option names RunOptions does not have (``names``)."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        super().__init__(f'runner option(s) {self.names}, which this floq_jax.training.runner.RunOptions does not '
                         f'have')


def option_names() -> Tuple[str, ...]:
    """The fields of :class:`RunOptions`."""
    return tuple(f.name for f in dataclasses.fields(RunOptions))


def build_run_options(env_name: str, values: Optional[Mapping[str, Any]] = None,
                      flags: Optional[Mapping[str, Any]] = None, optional: Iterable[str] = (),
                      warn: Callable[[str], None] = warnings.warn) -> RunOptions:
    """The one builder of a run's :class:`RunOptions`, with no flags: the training entrypoints call it with their
    flags' values (experiments.common.common_options), the sweeps with their preset's, sweep's and variant's options
    (floq_jax.sweeps.run_options).  ``values`` {option: value} over RunOptions' defaults; ``flags`` what flags.json
    records besides.  A name RunOptions lacks raises :class:`UnknownOptions`, unless it is in ``optional`` (options
    a run can go without, e.g. a speed-up an older runner lacks): those are dropped with a ``warn``-ing.  Validated
    (:meth:`RunOptions.validate`: a one-line :class:`OptionError`)."""
    values = dict(values or {})
    values.pop('env_name', None)
    unknown = sorted(set(values) - set(option_names()))
    required = [name for name in unknown if name not in set(optional)]
    if required:
        raise UnknownOptions(required)
    if unknown:
        warn(f'runner has no option(s) {unknown}; running without them')
    known = {k: v for k, v in values.items() if k not in unknown}
    options = RunOptions(env_name=env_name, **{**known, 'flags': {**(known.get('flags') or {}), **(flags or {})}})
    options.validate()
    return options
