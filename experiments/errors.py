"""How an entrypoint ends on bad input or an expected error: ONE line on stderr naming the flag or file and what is
accepted, exit code 2 (usage) or 1 (found while running), and nothing written before the inputs are validated.
``run_cli(body)`` is every entrypoint's main."""

from __future__ import annotations

import difflib
import os
import sys


class UsageError(ValueError):
    """A bad flag value (reported as one line, exit code 2)."""


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


def quiet_logs() -> None:
    """Hide orbax's INFO chatter (warnings, e.g. skipped corrupt checkpoints, still show)."""
    from absl import logging as absl_logging

    from floq_jax.console import quiet_setup

    absl_logging.set_verbosity(absl_logging.WARNING)
    quiet_setup()  # headless MuJoCo backend (no GLFW 'DISPLAY missing'), no gymnasium Box-precision warnings


def _quiet_closed_loops(previous):
    """An unraisable-exception hook that drops 'Event loop is closed' (orbax's / tensorstore's background writers
    report every pending callback of a failed checkpoint write so, dozens of times, after the error itself has been
    reported) and passes anything else on.  :func:`run_cli` installs it only once its body has failed: a process
    whose body ended normally reports every unraisable exception."""
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

    from experiments import distributed

    timing.TIMES.mark_main()  # the time since the process started: imports and start-up
    try:
        try:
            body()
        except BaseException:
            sys.unraisablehook = _quiet_closed_loops(sys.unraisablehook)  # the error is reported once, below
            raise
        distributed.done()  # a normal end: the other processes must not report this one as lost
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
        distributed.done()  # every process stops here together: none is lost
        print(one_line(e), file=sys.stderr, flush=True)
        sys.exit(Preempted.EXIT_CODE)
    except Interrupted as e:
        sys.stdout.flush()
        print(interrupted_message(e.step, e.checkpoint), file=sys.stderr, flush=True)
        os._exit(130)  # the run is closed; skip interpreter-exit hooks (worker joins), seen to hang after Ctrl-C
    except KeyboardInterrupt:
        print('interrupted before training started; nothing was trained', file=sys.stderr)
        sys.exit(130)
