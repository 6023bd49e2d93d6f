"""The one cadence loop of a run: phases (offline, then online) are step functions; the loop around them logs,
evaluates, saves, checks for non-finite metrics, applies the config schedule, moves the progress bar and calls
the caller's callbacks, the same way for every phase.

    stopped = train(run, [OfflinePhase(...), OnlinePhase(...)], callbacks=[my_callback])

A phase has ``end`` (the absolute step it ends at), ``schedule(start)`` ([(step, n)] pieces), ``step(state, i,
start, n)`` (runs one piece on device, returns its infos {name: (S,)}), ``log_extra(state)`` (extra train.csv
columns), ``begin(state)`` / ``close()``, and: ``check_every_step`` (fetch the infos and check them after every
piece, not only at log steps), ``bar_every`` (steps between progress-bar redraws), ``first_note`` (the bar's label
while the first piece compiles).  A callback ``callback(run)`` runs after every piece (after its log / eval /
save); returning True stops the run there (as if it were killed after its save).

SIGTERM (preemption): every process stops at one common step (:class:`~floq_jax.training.multihost.PreemptionWatch`),
saves a checkpoint there and the run ends with :class:`~floq_jax.training.options.Preempted`; the same command
resumes from that step (offline: exactly the uninterrupted run's computation; online: episodes restart).
"""

from __future__ import annotations

import faulthandler
import os
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

import jax
import numpy as np

from floq_jax import storage
from floq_jax.training import multihost, parallel, timing
from floq_jax.training.sinks import say
from floq_jax.training.options import (CLOSE_GRACE_S, DiskFull, Interrupted, NonFiniteMetric, Preempted, RunOptions,
                                       disk_full_message, interrupted_message)


def chunk_schedule(start: int, end: int, steps_per_call: int, intervals: Sequence[int], boundaries: Sequence[int] = ()):
    """[(step, n)] chunks from ``start`` to ``end``: at most steps_per_call long, never crossing an interval multiple
    or one of ``boundaries`` (e.g. config_schedule steps)."""
    out, step = [], start
    while step < end:
        nxt = min([end, step + steps_per_call] + [(step // i + 1) * i for i in intervals]
                  + [int(b) for b in boundaries if int(b) > step])
        out.append((step, nxt - step))
        step = nxt
    return out


def check_finite(infos: Dict[str, np.ndarray], step: int, seeds: Sequence[int], last_good: Optional[int]) -> None:
    for key, values in infos.items():
        values = np.asarray(values)
        bad = ~np.isfinite(values)
        if bad.any():
            k = int(np.argmax(bad))
            where = f'checkpoint step {last_good}' if last_good is not None else 'no checkpoint'
            raise NonFiniteMetric(f'training metric {key} is {values[k]} at step {step} (seed {seeds[k]}); '
                                  f'stopping; the last good checkpoint is kept ({where})')


class Run:
    """What the loop drives: the device state, the sinks, the metric sources and the progress bar of one run."""

    def __init__(self, options: RunOptions, state, dirs: List[str], restored: bool, sinks, evaluation, diagnostics,
                 progress, primary: bool):
        self.options, self.state, self.dirs, self.restored = options, state, dirs, restored
        self.sinks, self.evaluation, self.diagnostics, self.progress = sinks, evaluation, diagnostics, progress
        self.primary = primary
        self.seeds = state.seeds
        self.config, self.data = state.config, state.data
        self.last_eval: List[dict] = []
        self.preemption = None  # a multihost.PreemptionWatch while train() runs
        self.lock = None  # the run directories' runlock.RunLock (process 0)

    @property
    def step(self) -> int:
        return self.state.step

    def evaluate(self) -> List[dict]:
        """Evaluates every seed at the current step; logs the rows (eval.csv, TensorBoard)."""
        with timing.phase('evaluation'):
            rows = self.evaluation(self.state)
        with timing.phase('logging'):
            self.sinks.log_eval(self.state.step, rows)
            if self.evaluation.videos:
                self.sinks.log_videos(self.state.step, self.evaluation.videos)
        self.last_eval = rows
        return rows

    def close(self) -> None:
        try:
            self.progress.close()
            self.state.close()
            self.sinks.close()
            self.evaluation.close()
        finally:
            if self.lock is not None:
                self.lock.release()


def _at(step: int, interval: int) -> bool:
    return step % interval == 0


def run_phase(run: Run, phase, callbacks: Sequence[Callable[[Run], Optional[bool]]] = ()) -> bool:
    """Runs ``phase`` from the current step to ``phase.end`` on the cadence; True if a callback stopped the run."""
    o, state = run.options, run.state
    boundaries = [int(s) for s, _ in o.config_schedule]
    phase.begin(state)
    try:
        pending = 0  # steps not yet shown on the bar
        for i, (start, n) in enumerate(phase.schedule(state.step)):
            if start in boundaries:
                state.apply_config_schedule()
            if i == 0 and phase.first_note:
                run.progress.note(phase.first_note)
            t0 = time.perf_counter()
            end = start + n
            log_now = _at(end, o.log_interval)
            eval_now = _at(end, o.eval_interval) or end == phase.end
            save_now = _at(end, o.save_interval) or end == phase.end
            with timing.phase('compile' if i == 0 else 'training'):
                infos = phase.step(state, i, start, n)
                state.step = end
                if phase.check_every_step or log_now:
                    infos = parallel.to_host(infos)
                    check_finite(infos, state.step, state.seeds, state.last_good)
                if i == 0 or log_now or eval_now or save_now:
                    # The device work dispatched so far is training's (or the first piece's), not the next part's.
                    jax.block_until_ready(state.agents)
            pending += n
            if pending >= phase.bar_every or state.step == phase.end or i == 0:
                run.progress.update(pending, label='training' if i == 0 else None)
                pending = 0
            if log_now:
                rate = n / max(time.perf_counter() - t0, 1e-9)
                with timing.phase('diagnostics'):
                    extra = {**phase.log_extra(state), **run.diagnostics(state)}
                with timing.phase('logging'):
                    run.sinks.log_train(state.step, infos, extra, rate=rate)
            if eval_now:
                rows = run.evaluate()
                run.progress.postfix(success=f'{np.mean([r["evaluation/success"] for r in rows]):.2f}')
            if save_now:
                with timing.phase('checkpointing'):
                    state.save()
            if any([bool(cb(run)) for cb in callbacks]):
                return True
            # (every process takes this branch alike: one step, one schedule; a run at its last step just ends)
            if (run.preemption is not None and state.step < run.options.total_steps
                    and run.preemption.reached(state.step)):
                _stop_preempted(run, saved=save_now)
    finally:
        phase.close()
    return False


def _disk_full(run: Run, error: BaseException) -> DiskFull:
    """The one-line :class:`DiskFull` of a run whose disk (or bucket) filled up: what filled, the run dir, the step
    a re-run resumes from (the newest step every seed has a finalised checkpoint of)."""
    try:
        steps = set.intersection(*[set(c.all_steps()) for c in run.state.checkpointers])
    except Exception:  # noqa: BLE001
        steps = set()
    detail = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    if 'No space left on device' in str(error) and len(detail) > 160:
        detail = 'No space left on device'
    run_dir = f'{storage.dirname(run.dirs[0])}/seed<k>'
    return DiskFull(disk_full_message(run_dir, storage.full_what(run.dirs[0]), detail[:200],
                                      max(steps) if steps else None))


def _stop_preempted(run: Run, saved: bool) -> None:
    """SIGTERM: every process is at this step (the sync point): save it (unless just saved), wait until the
    checkpoint is durable, stop with :class:`Preempted`."""
    state = run.state
    with timing.phase('checkpointing'):
        if not saved:
            state.save()
        for c in state.checkpointers:
            c.wait_until_finished()
    raise Preempted(state.step, f'{storage.dirname(run.dirs[0])}/seed<k>/checkpoints')


def train(run: Run, phases: Sequence, callbacks: Sequence[Callable[[Run], Optional[bool]]] = ()) -> List[str]:
    """The evaluation at step 0 (unless resumed or ``eval_at_start`` is off), every phase in turn, the console
    summaries; Ctrl-C becomes :class:`Interrupted` (a watchdog ends a process whose closing hangs).  Closes the run.
    Returns the run directories (one per seed)."""
    o = run.options
    console = o.console and run.primary
    if console:
        say(startup_summary(run))
    interrupted = lost = False
    watchdog = None
    run.preemption = multihost.PreemptionWatch()
    try:
        if not run.restored and o.eval_at_start:
            run.progress.note('evaluating step 0')
            run.evaluate()
        for phase in phases:
            if run_phase(run, phase, callbacks):
                return run.dirs
        if console:
            run.progress.close()
            say(final_summary(run))
        return run.dirs
    except KeyboardInterrupt:
        interrupted = True
        # Closing (env workers, checkpointer threads) was seen to hang after Ctrl-C in rare cases: a daemon
        # watchdog ends the process with the same line after CLOSE_GRACE_S; saved checkpoints are atomic.
        watchdog = threading.Timer(CLOSE_GRACE_S, _exit_interrupted, args=(run.step, run.state.last_good))
        watchdog.daemon = True
        watchdog.start()
        # A last resort that needs no GIL (a close stuck in native code holding it would block the Timer): after
        # another 30 s, faulthandler prints every thread's stack and ends the process (exit code 1).
        faulthandler.dump_traceback_later(CLOSE_GRACE_S + 30, exit=True)
        raise Interrupted(run.step, run.state.last_good) from None
    except Exception as e:
        if storage.is_full_error(e):
            lost = True  # closing would wait on the failed checkpoint writes: leave at once
            raise _disk_full(run, e) from None
        if not multihost.is_lost_peer_error(e):
            raise
        lost = True  # closing would wait on the lost process (checkpoint barriers): leave at once
        raise multihost.ProcessLost(multihost.lost_process_message(None, e)) from None
    finally:
        run.preemption.close()
        if not lost:
            try:
                _close(run, interrupted)
            except Exception as e:  # a background checkpoint write that failed for want of space shows here
                if not storage.is_full_error(e):
                    raise
                raise _disk_full(run, e) from None
        elif run.lock is not None:
            run.lock.release()
        if watchdog is not None:  # closed in time: a library caller that catches Interrupted carries on
            watchdog.cancel()
            faulthandler.cancel_dump_traceback_later()


def _close(run: Run, interrupted: bool) -> None:
    """Closes the run; a second Ctrl-C while the checkpoints are finalised would only leave a traceback (and a
    half-closed run), so SIGINT is ignored meanwhile after an interruption."""
    import signal

    mask = interrupted and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if mask else None
    try:
        with timing.phase('closing'):
            run.close()
        if run.primary:  # where this process's time went since its start (or its previous run's end)
            for d in run.dirs:
                timing.TIMES.write(d)
        timing.TIMES.reset()
    finally:
        if mask:
            signal.signal(signal.SIGINT, previous)


def _exit_interrupted(step: int, checkpoint: Optional[int]) -> None:
    import sys

    print(interrupted_message(step, checkpoint), file=sys.stderr, flush=True)
    os._exit(130)


def _seed_range(seeds: Sequence[int]) -> str:
    return str(seeds[0]) if len(seeds) == 1 else f'{seeds[0]}..{seeds[-1]}'


def startup_summary(run: Run) -> str:
    """Two lines: what trains on what, where, and from which step."""
    o, devices = run.options, jax.devices()
    total = o.offline_steps + o.online_steps
    state = (f'resuming from step {run.step} (checkpoint) of {total}' if run.restored
             else f'starting at step 0 of {total}')
    phases = f'{o.offline_steps} offline' + (f' + {o.online_steps} online' if o.online_steps else '')
    return (f'floq-jax: env {o.env_name} | agent {run.config.agent_name} | data {run.data.source} '
            f'({run.data.dataset_file}) | devices {len(devices)} x {devices[0].platform} | '
            f'seeds {_seed_range(run.seeds)} | {phases} steps | {state}\n'
            f'floq-jax: run dirs {os.path.dirname(run.dirs[0])}/seed{{{",".join(map(str, run.seeds))}}}')


def final_summary(run: Run) -> str:
    """One line: the step reached, the last evaluation per seed, where the results are."""
    o = run.options
    if run.last_eval:
        values = [r['evaluation/success'] for r in run.last_eval]
        per_seed = ', '.join(f'seed{s} {v:.2f}' for s, v in zip(run.seeds, values))
        result = f'final success {per_seed} (mean {np.mean(values):.2f})'
    else:
        result = 'no evaluation in this session'
    return (f'floq-jax: done at step {run.step}: {result}; results in {os.path.dirname(run.dirs[0])}/seed<k>/ '
            f'(eval.csv, train.csv, tb/, checkpoints/); table: python -m experiments.report '
            f'--runs={os.path.join(o.save_dir, o.run_group)}')
