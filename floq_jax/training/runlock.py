"""One live run per run directory: ``seed<k>/lock.json`` names the run that holds it (host, pid, start time) and a
heartbeat that a background thread refreshes every ``HEARTBEAT_S`` seconds while the run lives.

A second run of the same directory is refused (:class:`RunDirLocked`, naming the holder) before it writes anything.
A lock left behind by a killed run does not block its resume:

- on the same host (local disk or bucket): the holder's pid is gone, or belongs to another process (its start
  time differs), so the lock is stale at once;
- from another host (a bucket shared by several machines, where no pid can be checked): the lock is stale once its
  heartbeat is older than ``STALE_S`` seconds (``$FLOQ_LOCK_STALE_S``), i.e. at most that long after the kill.

Taking a lock: a local lock file is created with O_EXCL; on object storage (no exclusive create through the path
layer) the lock is written, then read back after ``SETTLE_S``: of two runs started within that window the last
writer keeps it and the other is refused.  Multi-process runs: process 0 holds the locks for the whole run.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import List, Optional

from floq_jax import storage
from floq_jax.training.options import RunDirConflict

NAME = 'lock.json'
HEARTBEAT_S = 15.0
SETTLE_S = 1.0


def stale_after_s() -> float:
    return float(os.environ.get('FLOQ_LOCK_STALE_S', 120))


class RunDirLocked(RunDirConflict):
    """Another live run holds the run directory (a usage error: exit code 2)."""


def _process_start(pid: int) -> Optional[str]:
    """The start time of process ``pid`` (clock ticks since boot, /proc), or None if there is no such process."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive_here(record: dict) -> bool:
    """The holder runs on this host and is still the same process."""
    pid = int(record.get('pid', -1))
    start = _process_start(pid)
    return start is not None and start == record.get('pid_start')


def holder_text(record: dict) -> str:
    age = time.time() - float(record.get('heartbeat', 0))
    started = time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(float(record.get('started', 0))))
    return (f"host {record.get('host')} pid {record.get('pid')} (started {started}, heartbeat {age:.0f} s ago)")


def is_stale(record: dict) -> bool:
    if record.get('host') == socket.gethostname():
        return not _alive_here(record)
    return time.time() - float(record.get('heartbeat', 0)) > stale_after_s()


class RunLock:
    """Holds ``<dir>/lock.json`` for every directory of a run; :meth:`release` removes them."""

    def __init__(self, dirs: List[str]):
        self.dirs = list(dirs)
        self.paths = [storage.join(d, NAME) for d in self.dirs]
        me = os.getpid()
        self.record = dict(host=socket.gethostname(), pid=me, pid_start=_process_start(me), started=time.time(),
                           token=uuid.uuid4().hex)
        self._held: List[str] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _read(self, path: str) -> Optional[dict]:
        try:
            return json.loads(storage.read_text(path))
        except FileNotFoundError:
            return None
        except OSError as e:
            if storage.is_remote(path):  # a bucket that answered with an error says nothing about the holder
                raise RunDirLocked(f'run dir {storage.dirname(path)}: its lock {path} could not be read ({e}); '
                                   f'retry once the bucket answers') from None
            return {}  # unreadable local file: treated as stale
        except ValueError:
            return {}  # not a lock record (e.g. a corrupted object): treated as stale

    def _refuse(self, path: str, record: dict) -> None:
        self.release()
        raise RunDirLocked(f'run dir {storage.dirname(path)} is in use by another live run: {holder_text(record)} '
                           f'(lock {path}); wait for it to end, or pass another --run_group or --save_dir (a lock '
                           f'from another host counts as left behind once its heartbeat is {stale_after_s():.0f} s '
                           f'old)')

    def _write(self, path: str, exclusive: bool) -> bool:
        data = json.dumps({**self.record, 'heartbeat': time.time()}, indent=1)
        if storage.is_remote(path) or not exclusive:
            storage.write_text(path, data)
            return True
        # Complete before it is visible: written to a private file, then hard-linked into place, which fails if a
        # lock exists (so a second starter never reads a half-written lock and takes it for a stale one).
        tmp = f'{path}.{os.getpid()}.tmp'
        with open(tmp, 'w') as f:
            f.write(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: an exclusive create instead
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, 'w') as f:
                f.write(data)
        finally:
            os.remove(tmp)
        return True

    def acquire(self) -> 'RunLock':
        """Takes every directory's lock or none (raises :class:`RunDirLocked` naming the holder)."""
        for d, path in zip(self.dirs, self.paths):
            existing = self._read(path)
            if existing is not None:
                if existing and not is_stale(existing):
                    self._refuse(path, existing)
                storage.remove(path)  # left behind by a killed run
            storage.makedirs(d)
            if not self._write(path, exclusive=True):
                self._refuse(path, self._read(path) or {})
            self._held.append(path)
        if any(storage.is_remote(p) for p in self._held):
            time.sleep(SETTLE_S)
            for path in self._held:
                record = self._read(path) or {}
                if record.get('token') != self.record['token']:
                    self._held.remove(path)
                    self._refuse(path, record)
        self._thread = threading.Thread(target=self._beat, daemon=True, name='run-lock-heartbeat')
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            for path in list(self._held):
                try:
                    self._write(path, exclusive=False)
                except Exception:  # noqa: BLE001 - a missed heartbeat is retried at the next one
                    pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        for path in self._held:
            record = self._read(path) or {}
            if record.get('token') == self.record['token']:
                storage.remove(path)
        self._held = []
