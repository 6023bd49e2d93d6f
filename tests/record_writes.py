"""Test helper: run ``python -m <module> <args>`` and record every file it opens for writing.

    python tests/record_writes.py <log file> <module> [args...]

An audit hook (``sys.addaudithook``) appends the path of every ``open`` in a writing mode (Python's ``open`` and
``os.open``; files written by C++ libraries such as orbax's tensorstore are not seen) to ``<log file>``, one per line,
as it happens (so a process that is killed or leaves with ``os._exit`` leaves its log complete).
"""

import os
import runpy
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _writes(mode, flags) -> bool:
    if isinstance(mode, str):
        return any(c in mode for c in 'wax+')
    return isinstance(flags, int) and bool(flags & WRITE_FLAGS)


def main() -> None:
    log_path, module, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # before the hook: not recorded

    def hook(event, event_args):
        if event != 'open' or not event_args or not isinstance(event_args[0], (str, bytes, os.PathLike)):
            return
        mode = event_args[1] if len(event_args) > 1 else None
        flags = event_args[2] if len(event_args) > 2 else None
        if _writes(mode, flags):
            os.write(log_fd, (os.path.abspath(os.fsdecode(event_args[0])) + '\n').encode())

    sys.addaudithook(hook)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name='__main__', alter_sys=True)


if __name__ == '__main__':
    main()
