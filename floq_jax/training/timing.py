"""Where a run's wall-clock goes: seconds per phase, written to ``<run dir>/timings.json`` when the run closes.

The entrypoints, the runner and the cadence loop time their parts with :func:`phase`; one process-wide
:data:`TIMES` collects them (a process trains one run at a time).  ``experiments.benchmark --sections=end_to_end``
reads the file beside the run's wall-clock measured from outside.

Phases (seconds of wall-clock, each counted once):

* ``imports``: from the process's start (``/proc``; else this module's import) to the entrypoint's ``main``;
* ``data``: loading or generating the dataset; ``setup``: agents, device state, restore, run directories, loggers;
* ``compile``: the first piece of each training phase (compilation plus that piece's few updates);
* ``training``: the other pieces, up to their results being ready (the device work, not only its dispatch);
* ``logging``: train.csv / TensorBoard rows; ``diagnostics``: critic diagnostics at log steps;
* ``evaluation``: evaluation episodes (with the policy's compilation); ``checkpointing``: checkpoint saves;
* ``closing``: pending checkpoint writes, env workers and loggers at the end.

Anything else (e.g. the entrypoint's flag checks, Python's exit) is the difference between the total measured
from outside and the sum of the phases.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Dict, Iterator, Optional

from floq_jax import storage

PHASES = ('imports', 'data', 'setup', 'compile', 'training', 'logging', 'diagnostics', 'evaluation',
          'checkpointing', 'closing')
FILE = 'timings.json'

_IMPORTED_AT = time.time()


def process_start_time() -> float:
    """Epoch seconds at which this process started (Linux ``/proc``), else when this module was imported."""
    try:
        with open('/proc/self/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of proc(5): starttime, in clock ticks after boot
        with open('/proc/stat') as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith('btime'))
        return boot + start_ticks / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError, StopIteration):  # pragma: no cover - non-Linux
        return _IMPORTED_AT


class PhaseTimes:
    """Seconds per phase of one process's run (nested phases count in the inner one only)."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}
        self._stack: list = []

    def add(self, name: str, seconds: float, count: int = 1) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + float(seconds)
        self.counts[name] = self.counts.get(name, 0) + int(count)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Times the block as ``name``; time spent in a phase nested inside it is the inner phase's only."""
        if name not in PHASES:
            raise ValueError(f'unknown phase {name!r}; known: {", ".join(PHASES)}')
        start = time.perf_counter()
        self._stack.append([name, 0.0])  # [name, seconds of nested phases]
        try:
            yield
        finally:
            _, nested = self._stack.pop()
            elapsed = time.perf_counter() - start
            self.add(name, elapsed - nested)
            if self._stack:
                self._stack[-1][1] += elapsed

    def mark_main(self) -> None:
        """The entrypoint's ``main`` starts: ``imports`` is the time since the process started."""
        self.seconds['imports'] = max(time.time() - process_start_time(), 0.0)
        self.counts['imports'] = 1

    def record(self) -> dict:
        return {'seconds': {k: round(self.seconds[k], 3) for k in PHASES if k in self.seconds},
                'counts': {k: self.counts[k] for k in PHASES if k in self.counts},
                'total_seconds': round(sum(self.seconds.values()), 3),
                'process_start': round(process_start_time(), 3), 'written_at': round(time.time(), 3)}

    def write(self, directory: str) -> str:
        """Writes ``<directory>/timings.json`` (atomically); returns its path."""
        path = storage.join(directory, FILE)
        storage.write_text(path, json.dumps(self.record(), indent=1))
        return path

    def reset(self) -> None:
        self.seconds.clear()
        self.counts.clear()
        self._stack.clear()


TIMES = PhaseTimes()
phase = TIMES.phase


def read(directory: str) -> Optional[dict]:
    """A run directory's timings.json, or None."""
    path = storage.join(directory, FILE)
    if not storage.isfile(path):
        return None
    return json.loads(storage.read_text(path))
