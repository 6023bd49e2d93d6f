"""Memory of the benchmark's processes: the resident set of a process tree and its peak over a section."""

from __future__ import annotations

import os
import threading

from absl import flags

FLAGS = flags.FLAGS




def _proc_rss_bytes(pid: int) -> int:
    """VmRSS of one process (0 if it is gone)."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int):
    try:
        tasks = os.listdir(f'/proc/{pid}/task')
    except OSError:
        return []
    kids = []
    for tid in tasks:
        try:
            with open(f'/proc/{pid}/task/{tid}/children') as f:
                kids += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return kids


def tree_rss_bytes(pid: int = None) -> int:
    """RSS of a process plus all its descendants (env worker processes, the forkserver), from /proc (Linux)."""
    pid = os.getpid() if pid is None else pid
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _proc_rss_bytes(p)
        todo += _children(p)
    return total


class PeakRss:
    """Context manager sampling :func:`tree_rss_bytes` of process ``pid`` (default: this one) every ``interval``
    seconds in a thread; ``.bytes`` = peak."""

    def __init__(self, interval: float = 0.05, pid: int = None):
        self.interval, self.bytes, self.pid = interval, 0, pid
        self._stop = threading.Event()

    def _run(self):
        while True:
            self.bytes = max(self.bytes, tree_rss_bytes(self.pid))
            if self._stop.wait(self.interval):
                return

    def __enter__(self):
        self.bytes = tree_rss_bytes(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
