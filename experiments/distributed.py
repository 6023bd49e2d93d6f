"""Distributed start-up (--distributed and JAX's three flags): their checks, ``jax.distributed.initialize``, and the
watch that ends this process with one line as soon as another process of the run is lost."""

from __future__ import annotations

from absl import flags

from experiments.checks import check_positive
from experiments.errors import UsageError, exit_with_last_line, one_line

FLAGS = flags.FLAGS


def check_distributed() -> None:
    """--coordinator_address / --num_processes / --process_id / --heartbeat_timeout_seconds: only with
    --distributed, and consistent with each other (JAX's own checks come later and are less specific)."""
    given = [name for name in ('coordinator_address', 'num_processes', 'process_id', 'heartbeat_timeout_seconds')
             if FLAGS[name].value is not None]
    if given and not FLAGS.distributed:
        raise UsageError(f'--{given[0]} is a multi-process flag; accepted: together with --distributed')
    address = FLAGS.coordinator_address
    if address is not None:
        host, _, port = address.rpartition(':')
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f'--coordinator_address={address!r}: accepted: host:port of process 0, e.g. '
                             f'10.0.0.1:1234 or 127.0.0.1:1234')
    if FLAGS.num_processes is not None:
        check_positive(num_processes=FLAGS.num_processes)
    if FLAGS.heartbeat_timeout_seconds is not None:
        check_positive(heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds)
    process_id, count = FLAGS.process_id, FLAGS.num_processes
    if process_id is not None and (process_id < 0 or (count is not None and process_id >= count)):
        upper = f'{count - 1}' if count is not None else 'num_processes - 1'
        raise UsageError(f'--process_id={process_id}: accepted: 0 .. {upper}')


def initialize_distributed() -> None:
    """--distributed: start jax.distributed (floq_jax.training.multihost.initialize); a failure is one line naming the flags.
    With more than one process, a PeerWatch ends this process with one line as soon as another one is lost."""
    global _PEER_WATCH
    import jax

    from floq_jax.training import multihost

    try:
        multihost.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                             FLAGS.heartbeat_timeout_seconds)
        if jax.process_count() > 1:
            _PEER_WATCH = multihost.PeerWatch(_exit_lost)
    except Exception as e:  # noqa: BLE001 - ValueError for missing values, RuntimeError/XlaRuntimeError for timeouts
        raise UsageError(f'--distributed: jax.distributed.initialize failed ({type(e).__name__}: {e}); accepted: '
                         f'--coordinator_address=host:port --num_processes=N --process_id=i on every process '
                         f'(none on TPU pods and clusters JAX detects)') from None


_PEER_WATCH = None  # --distributed: floq_jax.training.multihost.PeerWatch (ends this process when another one is lost)


def done() -> None:
    """This process ends as the others do (a normal end, or a preemption all processes stop at): the other
    processes must not report it as lost."""
    if _PEER_WATCH is not None:
        _PEER_WATCH.done()


def _exit_lost(process: int, reason: str) -> None:
    """PeerWatch's on_lost: one line, exit 1 at once (JAX would otherwise abort later with a fatal log)."""
    from floq_jax.training.multihost import lost_process_message

    exit_with_last_line(f'error: {one_line(lost_process_message(process, reason))}', 1)
