"""Test-only run hooks, installed through the training loop's callbacks (``runner.run_offline(..., callbacks=...)``).

``python -m tests.hooks <step> <entrypoint module> [flags...]`` runs an entrypoint (e.g. experiments.train_offline)
whose run blocks forever after ``<step>`` with its checkpoints durable, printing ``PAUSED <step>`` on stdout, so a
test can kill it there (SIGKILL, SIGINT).  ``python -m tests.hooks term:<step> <module> [flags...]`` instead sends the
process a SIGTERM of its own after ``<step>`` (a preemption notice arriving then).
"""

import runpy
import sys
import time


def stop_after(step: int):
    """A callback ending the run cleanly once it has reached ``step`` (as if killed right after that step's save)."""
    return lambda run: run.step >= step


def pause_at(step: int):
    """A callback blocking the run forever after ``step`` (its checkpoints finished), after printing 'PAUSED <step>'."""

    def pause(run):
        if run.step == step:
            for c in run.state.checkpointers:
                c.wait_until_finished()
            print(f'PAUSED {run.step}', flush=True)
            while True:
                time.sleep(1)

    return pause


def term_at(step: int):
    """A callback sending this process SIGTERM once, after ``step`` (what a preemptible machine gets)."""
    import os
    import signal

    def term(run):
        if run.step == step:
            os.kill(os.getpid(), signal.SIGTERM)

    return term


def install(callback) -> None:
    """Makes every run of this process (run_offline / run_offline_to_online) call ``callback`` after each step."""
    from floq_jax.training import runner

    original = runner.run_training

    def with_callback(*args, callbacks=(), **kwargs):
        return original(*args, callbacks=(*callbacks, callback), **kwargs)

    runner.run_training = with_callback


if __name__ == '__main__':
    when, module = sys.argv[1], sys.argv[2]
    install(term_at(int(when[len('term:'):])) if when.startswith('term:') else pause_at(int(when)))
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name='__main__', alter_sys=True)
