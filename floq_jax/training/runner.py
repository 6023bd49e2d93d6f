"""The entry points of training as library functions (no flags): offline training, then optional online fine-tuning.

    import agents
    run_dirs = run_offline(agents.agent_class(config.agent_name), config, data,
                           RunOptions(env_name=..., seed=0, num_seeds=3, offline_steps=...))

Seeds ``seed .. seed + num_seeds - 1`` train together (vmapped or ``lax.map``'ed, see
``floq_jax.training.parallel``); each gets its own run directory
``<save_dir>/<run_group>/<env_name>/<agent_name>/seed<k>/`` (``floq_jax.training.rundirs``) with ``flags.json``,
``train.csv``, ``eval.csv``, TensorBoard events (``tb/``) and orbax checkpoints (``checkpoints/<step>/``) holding
that seed's full agent state (params, target params, optimizer state, rng, step) and its data-sampling rng.

The pieces, one job each: ``options`` (RunOptions, the run's exceptions), ``rundirs`` (identity, flags.json),
``state`` (device state, checkpoints, restore), ``sinks`` (CSV / TensorBoard / W&B, progress bar; process 0 only),
``evaluate`` (evaluation episodes, Q estimates, diagnostics), ``offline`` / ``online`` (the phases as step
functions) and ``loop`` (the one cadence: log / eval / save / finite check / config schedule / callbacks).

Schedule: updates run in jitted chunks of at most ``steps_per_call`` updates, clipped at every log / eval /
save boundary, so the chunk schedule is a function of the absolute step only and a run resumed from a
checkpoint repeats the uninterrupted run's computation exactly (bitwise on CPU).  ``train.csv`` holds only
deterministic values (chunk means of the losses); wall-clock rates go to TensorBoard.

Resume: with ``resume=True`` an existing run directory continues from the newest step for which every seed has
an intact checkpoint (corrupt ones are skipped with a warning); CSV rows after that step are dropped.  A run
directory written for another env / agent / config is refused (:class:`RunDirConflict`), never overwritten.
A non-finite training metric stops the run with :class:`NonFiniteMetric` (the last good checkpoint stays).

``callbacks``: functions ``callback(run)`` called after every chunk / env step (after its log, eval and save), on
every process; one returning True stops the run there.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

from floq_jax import presets, storage
from floq_jax.data import sampling
from floq_jax.training import parallel, rundirs, runlock, timing
from floq_jax.training.evaluate import CriticDiagnostics, SeedEvaluation
from floq_jax.training.loop import Run, train
from floq_jax.training.offline import OfflinePhase
from floq_jax.training.online import OnlinePhase, replay_buffers
from floq_jax.training.options import OptionError, RunOptions
from floq_jax.training.sinks import Progress, RunSinks
from floq_jax.training.state import RunState

Callback = Callable[[Run], Optional[bool]]


def run_training(agent_cls, config, data, options: RunOptions, online: bool = False,
                 callbacks: Sequence[Callback] = ()) -> List[str]:
    """Offline steps, then (``online``) the online phase; returns the run directories (one per seed)."""
    options.validate()
    with timing.phase('setup'):
        run, phases = _build_run(agent_cls, config, data, options, online)
    return train(run, phases, callbacks)


def _build_run(agent_cls, config, data, options: RunOptions, online: bool):
    """The run's device state (restored when resuming), run directories, loggers and phases."""
    batch_size = config.batch_size
    config = rundirs.canonical_config(config)
    dirs = [rundirs.run_dir(options, config.agent_name, s) for s in options.seeds]
    records = [rundirs.flags_record(config, data, options, s) for s in options.seeds]
    resuming = [rundirs.check_run_dir(d, r, options.resume) for d, r in zip(dirs, records)]
    if online and options.balanced_sampling and sampling.samples_on_host(options.host_sampling,
                                                                          sampling.batch_arrays(data.train)):
        raise OptionError(['balanced_sampling', 'host_sampling'], [True, options.host_sampling],
                          'balanced sampling draws its dataset half on the device, and this run samples on the host '
                          '(asked, or the dataset takes more than half the free device memory); accepted: '
                          '--nohost_sampling with a dataset that fits, or no --balanced_sampling')
    # Multi-host: every process trains and checkpoints (orbax coordinates them); only process 0 takes the run's
    # lock and writes flags.json, the CSV logs and TensorBoard events, so the files are written once.
    primary = parallel.is_primary_process()
    lock = runlock.RunLock(dirs).acquire() if primary else None  # one live run per run directory
    try:
        state = RunState(agent_cls, config, data, options, dirs, replay_buffers(options) if online else None)
        restored = any(resuming) and state.restore()
        if primary:
            for d, r in zip(dirs, records):
                rundirs.write_json(storage.join(d, 'flags.json'), r)
        sinks = RunSinks(dirs, state.seeds, options, config, state.step if restored else None, primary)
        state.apply_config_schedule()
        progress = Progress(options.total_steps, state.step, options.progress and primary,
                            options.console and primary)
        run = Run(options, state, dirs, restored, sinks, SeedEvaluation(options, data),
                  CriticDiagnostics(options, data), progress, primary)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    run.lock = lock
    phases = [OfflinePhase(options, batch_size)]
    if online and options.online_steps > 0:
        phases.append(OnlinePhase(options, batch_size))
    return run, phases


def run_offline(agent_cls, config, data, options: RunOptions, callbacks: Sequence[Callback] = ()) -> List[str]:
    """Offline training of ``agent_cls`` (e.g. ``agents.agent_class(config.agent_name)``) at ``config`` on ``data``
    (an OfflineData); returns the run dirs."""
    return run_training(agent_cls, config, data, options, callbacks=callbacks)


def run_offline_to_online(agent_cls, config, data, options: RunOptions,
                          callbacks: Sequence[Callback] = ()) -> List[str]:
    """``options.offline_steps`` offline updates, then ``options.online_steps`` env steps of fine-tuning with
    the dataset as the initial (device) replay buffer, ``options.utd_ratio`` updates per env step."""
    return run_training(agent_cls, config, data, options, online=True, callbacks=callbacks)


def set_reward_range(config, data, mode: str = presets.DEFAULT_REWARD_RANGE) -> None:
    """config.r_min / r_max from the training rewards (the agents need them).

    ``mode='published'`` (default): the range includes 0, as the published code's range over its zero-padded
    replay buffer; ``'dataset'``: the rewards' own min / max (floq_jax.presets.reward_range).
    """
    config.r_min, config.r_max = presets.reward_range(data.train['rewards'], mode)
