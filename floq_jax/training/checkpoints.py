"""Orbax checkpointing with integrity checks and fallback to older checkpoints.

Each checkpoint ``<directory>/<step>/`` holds two orbax items:
``state`` (any pytree, via ``StandardSave``) and ``metadata`` (JSON).  Orbax's
``CheckpointManager`` writes into a temporary directory and renames it on
finalisation, so a killed save never leaves a step that ``all_steps`` lists.

On top of that, ``save`` stores a SHA-256 digest of every leaf's bytes (plus
shapes/dtypes) in the metadata; ``restore`` recomputes it and treats any
mismatch, or any error while reading, as corruption: the step is skipped with
a ``logging.warning`` and the next older one is tried.  A corrupt checkpoint is
never returned.

Typed PRNG keys (``jax.random.key``) are stored as their raw ``key_data``
(uint32) and re-wrapped on restore with the target leaf's key implementation.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Iterable

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp_lib

from floq_jax import storage

_DIGEST_KEY = '__floq_checkpoint_digest__'


def _is_typed_key(x) -> bool:
    dtype = getattr(x, 'dtype', None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _encode(tree):
    """Replaces typed PRNG key leaves by their uint32 key data."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_typed_key(x) else x, tree)


def _abstract_target(tree):
    """Target for StandardRestore: keys -> uint32 data; jax arrays keep their sharding."""

    def leaf(x):
        if _is_typed_key(x):
            if isinstance(x, jax.ShapeDtypeStruct):
                x = jax.eval_shape(jax.random.key_data, x)
                return jax.ShapeDtypeStruct(x.shape, x.dtype,
                                            sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))
            return jax.random.key_data(x)
        if isinstance(x, jax.ShapeDtypeStruct) and x.sharding is None:
            return jax.ShapeDtypeStruct(x.shape, x.dtype,
                                        sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))
        return x

    return jax.tree.map(leaf, tree)


def _decode(restored, target):
    """Re-wraps uint32 key data as typed keys where the target has typed keys."""

    def leaf(r, t):
        if _is_typed_key(t):
            impl = jax.random.key_impl(t) if not isinstance(t, jax.ShapeDtypeStruct) else None
            return jax.random.wrap_key_data(r, impl=impl) if impl is not None else jax.random.wrap_key_data(r)
        return r

    return jax.tree.map(leaf, restored, target)


def tree_digest(tree) -> str:
    """SHA-256 over the tree structure and each leaf's shape, dtype and bytes."""
    h = hashlib.sha256()
    leaves, treedef = jax.tree.flatten(_encode(tree))
    h.update(str(treedef).encode())
    for x in leaves:
        a = np.asarray(jax.device_get(x))
        h.update(f'{a.shape}|{a.dtype.str}|'.encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class CorruptCheckpointError(RuntimeError):
    """Raised by restore when no readable, intact checkpoint exists."""


class Checkpointer:
    """Keeps the last ``max_to_keep`` checkpoints plus every step in ``keep_steps``.

    Args:
        directory: root directory (created if missing).
        max_to_keep: newest checkpoints to keep (None: keep all).
        keep_steps: steps that are never garbage-collected.
        async_save: let orbax write in a background thread (``wait_until_finished``
            blocks until the pending save is durable).
        verify: store and check a content digest (costs one hash pass over the state).
    """

    def __init__(self, directory, max_to_keep: int | None = 3, keep_steps: Iterable[int] = (),
                 async_save: bool = True, verify: bool = True):
        # orbax needs an absolute path: a relative one (e.g. the default save_dir 'runs') fails at the first save.
        # gs://bucket/... is used as it is (orbax writes it through etils.epath, as floq_jax.storage does).
        self.directory = storage.absolute(str(directory))
        self.verify = verify
        self.async_save = async_save
        policies = [pp_lib.LatestN(max_to_keep)] if max_to_keep is not None else [pp_lib.PreserveAll()]
        keep_steps = sorted(int(s) for s in keep_steps)
        if keep_steps:
            policies.append(pp_lib.CustomSteps(keep_steps))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=pp_lib.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
            create=True,
            # Multi-process runs save several checkpointers at the same step: orbax's barriers (named after the
            # step) need a prefix of their own per directory, or the second save's barrier collides with the first.
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                barrier_sync_key_prefix='ckpt' + hashlib.sha256(self.directory.encode()).hexdigest()[:16]),
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=('state', 'metadata'))

    def save(self, step: int, state: Any, metadata: dict | None = None) -> None:
        """Saves ``state`` (pytree) and JSON-able ``metadata`` as checkpoint ``step``."""
        metadata = dict(metadata or {})
        if self.verify:
            metadata[_DIGEST_KEY] = tree_digest(state)
        state = _encode(state)
        if self.async_save:  # The caller may mutate NumPy leaves (e.g. a replay buffer) while we write.
            state = jax.tree.map(lambda x: np.array(x, copy=True) if isinstance(x, np.ndarray) else x, state)
        self._manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                    metadata=ocp.args.JsonSave(metadata)),
            force=True,
        )

    def latest_step(self) -> int | None:
        """Newest finalised step (not checked for corruption), or None."""
        self._manager.reload()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """All finalised steps, ascending."""
        self._manager.reload()
        return sorted(int(s) for s in self._manager.all_steps())

    def delete_after(self, step: int) -> None:
        """Removes every checkpoint newer than ``step`` (corrupt ones too, which orbax cannot read), then reloads."""
        for s in self.all_steps():
            if s > step:
                storage.rmtree(storage.join(self.directory, str(s)))
        self._manager.reload()

    def _restore_step(self, target, step: int):
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract_target(target)),
                                    metadata=ocp.args.JsonRestore()),
        )
        state = _decode(restored['state'], target)
        metadata = dict(restored['metadata'])
        expected = metadata.pop(_DIGEST_KEY, None)
        if self.verify:
            if expected is None:
                raise CorruptCheckpointError(f'checkpoint {step} has no content digest')
            actual = tree_digest(state)
            if actual != expected:
                raise CorruptCheckpointError(f'checkpoint {step} digest mismatch')
        return state, metadata

    def restore(self, target, step: int | None = None):
        """Restores a checkpoint into the structure of ``target``.

        Args:
            target: pytree with the saved structure; leaves concrete arrays or
                ``jax.ShapeDtypeStruct`` (restored leaves take their dtypes).
            step: a specific step (raises if it is corrupt), or None for the
                newest intact one (corrupt ones are skipped with a warning).

        Returns:
            (state, metadata, step).

        Raises:
            FileNotFoundError: no checkpoints.  CorruptCheckpointError: all
            candidates (or the requested step) are unreadable or corrupt.
        """
        self.wait_until_finished()
        steps = self.all_steps()
        if step is not None:
            if int(step) not in steps:
                raise FileNotFoundError(f'no checkpoint for step {step} in {self.directory}')
            candidates = [int(step)]
        else:
            candidates = sorted(steps, reverse=True)
        if not candidates:
            raise FileNotFoundError(f'no checkpoints in {self.directory}')
        for s in candidates:
            try:
                state, metadata = self._restore_step(target, s)
                return state, metadata, s
            except Exception as e:  # noqa: BLE001 - any read failure means "corrupt".
                logging.warning('Skipping corrupt or partial checkpoint %s/%d: %s: %s',
                                self.directory, s, type(e).__name__, str(e)[:300])
        raise CorruptCheckpointError(f'no intact checkpoint among steps {candidates} in {self.directory}')

    def wait_until_finished(self) -> None:
        """Blocks until any background save has been finalised."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases resources."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
