"""A fixed-size replay buffer that lives on the device: insertion and sampling run inside jit.

    buffer = from_dataset(arrays, capacity_for(len(arrays['observations']), buffer_size))
    buffer = add(buffer, transition)                 # transition: {key: (...)} one row, jittable
    batch = sample(buffer, rng, batch_size)          # uniform over the filled rows, jittable

The offline dataset fills the first rows (FQL's ``create_from_initial_dataset``); new transitions go to
``pointer`` and wrap around once the buffer is full (overwriting the oldest rows, dataset rows included).
A buffer is a pytree, so it vmaps over seeds, scans, and checkpoints like the agents.

Balanced sampling (the published ``--balanced_sampling``): the buffer starts :func:`empty` (``buffer_size`` rows,
online transitions only) and each batch is half a uniform draw from the dataset, half from the buffer's filled rows
(``floq_jax.data.sampling.balanced_batch``), dataset rows first, as the published main loop concatenates them.
"""

from typing import Dict

import flax
import jax
import jax.numpy as jnp
import numpy as np


class ReplayBuffer(flax.struct.PyTreeNode):
    data: Dict[str, jax.Array]  # {key: (C, ...)}
    size: jax.Array             # int32 scalar: filled rows
    pointer: jax.Array          # int32 scalar: the next row to write

    @property
    def capacity(self) -> int:
        return jax.tree_util.tree_leaves(self.data)[0].shape[0]


def capacity_for(dataset_size: int, buffer_size: int) -> int:
    """At least the dataset plus one row (as FQL does)."""
    return max(int(buffer_size), int(dataset_size) + 1)


def from_dataset(arrays: Dict[str, np.ndarray], capacity: int) -> ReplayBuffer:
    """A buffer of ``capacity`` rows holding ``arrays`` (N rows, N < capacity) in its first N rows."""
    n = len(next(iter(arrays.values())))
    if n >= capacity:
        raise ValueError(f'buffer capacity {capacity} must exceed the dataset size {n}')
    data = {k: np.concatenate([np.asarray(v, np.float32), np.zeros((capacity - n, *v.shape[1:]), np.float32)])
            for k, v in arrays.items()}
    return ReplayBuffer(data={k: jnp.asarray(v) for k, v in data.items()}, size=jnp.int32(n), pointer=jnp.int32(n))


def empty(example: Dict[str, np.ndarray], capacity: int) -> ReplayBuffer:
    """A buffer of ``capacity`` zero rows shaped like ``example``'s rows ({key: (N, ...)}), nothing filled."""
    data = {k: jnp.zeros((int(capacity), *np.shape(v)[1:]), jnp.float32) for k, v in example.items()}
    return ReplayBuffer(data=data, size=jnp.int32(0), pointer=jnp.int32(0))


def add(buffer: ReplayBuffer, transition: Dict[str, jax.Array]) -> ReplayBuffer:
    """Writes one transition at ``pointer`` (jittable)."""
    capacity = jax.tree_util.tree_leaves(buffer.data)[0].shape[0]
    data = {k: jax.lax.dynamic_update_index_in_dim(v, jnp.asarray(transition[k], v.dtype), buffer.pointer, 0)
            for k, v in buffer.data.items()}
    return buffer.replace(data=data, size=jnp.minimum(buffer.size + 1, capacity),
                          pointer=(buffer.pointer + 1) % capacity)


def sample(buffer: ReplayBuffer, rng: jax.Array, batch_size: int) -> Dict[str, jax.Array]:
    """``batch_size`` rows drawn uniformly with replacement from the filled rows (jittable)."""
    idx = jax.random.randint(rng, (batch_size,), 0, buffer.size)
    return {k: jnp.take(v, idx, axis=0) for k, v in buffer.data.items()}

