"""Multi-process runs (several hosts, or several processes on one host): start-up, global arrays, a lost process.

Every process runs the same program on its own devices; ``jax.devices()`` lists the devices of all processes and
the ('seeds', 'batch') mesh of :mod:`floq_jax.train` spans them, so each process holds only its shard of the
seed-stacked agents.  Host-side work (checkpoints, logs, evaluation) reads :func:`floq_jax.train.to_host` copies,
which every process must fetch together (a collective); arrays go back onto the mesh with :func:`put_global`.

A process that stops (killed, crashed, preempted) cannot be replaced inside a run: its peers see the next
collective fail (gloo on CPU: "Connection closed by peer") and end with :class:`ProcessLost`; re-running the same
command on every process resumes from the newest checkpoint.
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


def lost_process_message(error: BaseException, checkpoint: Optional[int]) -> str:
    """The one line a surviving process ends with: which process stopped, and what to do."""
    me, count = jax.process_index(), jax.process_count()
    if count == 2:
        who = f'process {1 - me} of 2'
    else:
        who = f'another of the {count} processes'
    where = f'its checkpoint at step {checkpoint}' if checkpoint is not None else 'step 0 (no checkpoint yet)'
    detail = ' '.join(str(error).split())[:160]
    return (f'process {me}: lost {who} ({detail}); this process stops too: check that process\'s log, then re-run '
            f'the same command on every process to resume from {where}')
