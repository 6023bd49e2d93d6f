"""Multi-process runs (several hosts, or several processes on one host): start-up, global arrays, a lost process.

Every process runs the same program on its own devices; ``jax.devices()`` lists the devices of all processes and
the ('seeds', 'batch') mesh of :mod:`floq_jax.training.parallel` spans them, so each process holds only its shard of the
seed-stacked agents.  Host-side work (checkpoints, logs, evaluation) reads :func:`floq_jax.training.parallel.to_host` copies,
which every process must fetch together (a collective); arrays go back onto the mesh with :func:`put_global`.

A process that stops (killed, crashed, preempted) cannot be replaced inside a run: its peers see the next
collective fail (gloo on CPU: "Connection closed by peer") and end with :class:`ProcessLost`; re-running the same
command on every process resumes from the newest checkpoint.  :class:`PeerWatch` notices a lost process at once,
even while this process computes instead of waiting in a collective.
"""

from __future__ import annotations

from typing import Optional

import jax
import numpy as np

# Substrings of the errors a collective raises when a peer process has gone (gloo on CPU, the coordination
# service of jax.distributed on every backend).
LOST_PEER_SIGNS = ('Connection closed by peer', 'Connection reset by peer', 'heartbeat', 'unhealthy',
                   'Socket closed', 'Broken pipe')


class ProcessLost(RuntimeError):
    """Another process of this multi-process run stopped; this one cannot go on."""


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, heartbeat_timeout_seconds: Optional[int] = None) -> None:
    """``jax.distributed.initialize`` with JAX's own argument names; None leaves JAX's default (or auto-detection:
    TPU pods, SLURM and other clusters JAX knows need no arguments).

    CPU collectives use gloo, so processes on CPU-only hosts (or several on one host) form one mesh.
    ``heartbeat_timeout_seconds``: how long the coordinator waits for a silent process before declaring it lost.
    """
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id,
                  heartbeat_timeout_seconds=heartbeat_timeout_seconds)
    jax.distributed.initialize(**{k: v for k, v in kwargs.items() if v is not None})


class PreemptionWatch:
    """Has this run been asked to stop (SIGTERM, as preemptible / spot machines get before they are taken back)?

    :meth:`reached` is called by every process after every piece of the schedule, with the same steps. With
    jax.distributed started, JAX's preemption sync point answers it (its coordination service catches SIGTERM on any
    process and picks one step that every process reaches: all answer True at that same step). In a single process
    a Python SIGTERM handler sets a flag, and :meth:`reached` is True at the next piece. :meth:`close` puts back the
    previous handler.
    """

    def __init__(self):
        import signal
        import threading

        from jax._src import distributed

        self.signal = signal
        self.requested = False
        self._calls = 0
        self._previous = None
        self._jax = jax.process_count() > 1 and distributed.global_state.preemption_sync_manager is not None
        if not self._jax and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        del signum, frame
        self.requested = True

    def reached(self, step: int) -> bool:
        """Called after every piece (``step``: the absolute step reached, for the caller's records)."""
        del step
        if self._jax:
            from jax.experimental import multihost_utils

            # JAX's sync point is 'the largest id any process reported + 1', so the ids must count calls one by one
            # (the absolute steps jump by a chunk); every process makes the same calls from the same start.
            self._calls += 1
            return bool(multihost_utils.reached_preemption_sync_point(self._calls))
        return self.requested

    def close(self) -> None:
        if self._previous is not None:
            self.signal.signal(self.signal.SIGTERM, self._previous)
            self._previous = None


def put_global(tree, sharding):
    """Host arrays (the same values on every process) -> global jax arrays laid out by ``sharding``.

    Each process materialises only the shards on its own devices (``jax.make_array_from_callback``), so this works
    for a sharding that spans the devices of several processes; on one process it equals ``jax.device_put``.
    """
    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree_util.tree_map(put, tree)


def is_lost_peer_error(error: BaseException) -> bool:
    """True for an error raised because another process of a multi-process run stopped."""
    return jax.process_count() > 1 and any(s in str(error) for s in LOST_PEER_SIGNS)


def lost_process_message(lost: Optional[int], detail: str) -> str:
    """The one line a surviving process ends with: which process stopped (None: unknown), and what to do."""
    me, count = jax.process_index(), jax.process_count()
    if lost is None and count == 2:
        lost = 1 - me
    who = f'process {lost} of {count}' if lost is not None else f'another of the {count} processes'
    detail = ' '.join(str(detail).split())[:160]
    return (f'process {me}: lost {who} ({detail}); this process stops too: check the lost process\'s log, then '
            f're-run the same command on every process to resume from the newest checkpoint')


class PeerWatch:
    """Notices at once that another process of the run has gone, without waiting for a collective or for
    jax.distributed's heartbeat timeout (at which JAX ends the survivors with a fatal log of its own).

    Process 0 listens on a TCP port (published in jax.distributed's key-value store); every other process connects
    and keeps the connection open.  A process that dies closes its sockets, so the peer's reading thread wakes up:
    process 0 names the lost process, tells the others ('lost <i>') and calls ``on_lost(i, detail)``; a process that
    loses its connection to process 0 reports process 0.  :meth:`done` (a normal end) says 'done' first, so a process
    that finishes earlier than its peers is not reported.  ``on_lost`` runs on a daemon thread and should end the
    process (e.g. print one line and ``os._exit(1)``).
    """

    KEY = 'floq_jax/peer_watch'

    def __init__(self, on_lost, host: Optional[str] = None, timeout_s: float = 300.0):
        import socket
        import threading

        from jax._src import distributed

        self._on_lost, self._done, self._lock = on_lost, False, threading.Lock()
        client = distributed.global_state.client
        me, count = jax.process_index(), jax.process_count()
        self._conns = {}
        if me == 0:
            server = socket.create_server(('', 0))
            host = host or (distributed.global_state.coordinator_address or '127.0.0.1').rpartition(':')[0]
            client.key_value_set(self.KEY, f'{host}:{server.getsockname()[1]}')
            server.settimeout(timeout_s)
            for _ in range(count - 1):
                conn, _ = server.accept()
                peer = int(conn.recv(16).decode().strip())
                self._conns[peer] = conn
            server.close()
        else:
            address = client.blocking_key_value_get(self.KEY, int(timeout_s * 1000))
            host, _, port = address.rpartition(':')
            conn = socket.create_connection((host, int(port)), timeout=timeout_s)
            conn.settimeout(None)
            conn.sendall(f'{me}\n'.encode())
            self._conns[0] = conn
        for peer, conn in self._conns.items():
            threading.Thread(target=self._watch, args=(peer, conn), daemon=True, name=f'peer-watch-{peer}').start()

    def _watch(self, peer: int, conn) -> None:
        data = b''
        while True:
            try:
                chunk = conn.recv(256)
            except OSError as e:
                chunk, reason = b'', f'connection to it failed: {e}'
            else:
                reason = 'its connection closed'
            if not chunk:
                self._lost(peer, reason)
                return
            data += chunk
            for line in data.decode(errors='replace').splitlines():
                if line == 'done':
                    return  # a normal end: stop watching this peer
                if line.startswith('lost '):
                    self._lost(int(line.split()[1]), 'reported by process 0')
                    return

    def _lost(self, peer: int, reason: str) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            for other, conn in self._conns.items():  # process 0 tells the others which process went
                if other != peer:
                    try:
                        conn.sendall(f'lost {peer}\n'.encode())
                    except OSError:
                        pass
        self._on_lost(peer, reason)

    def done(self) -> None:
        """A normal end: tell the peers, stop watching."""
        with self._lock:
            self._done = True
            for conn in self._conns.values():
                try:
                    conn.sendall(b'done\n')
                except OSError:
                    pass
