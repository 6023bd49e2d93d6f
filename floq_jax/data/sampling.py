"""Batches for training: the dataset on device, indices drawn with ``jax.random`` inside jit.

A dataset here is a dict of arrays with a shared leading axis N (the transitions).  On device it is
replicated over the mesh (every seed samples from all of it).  When it does not fit in device memory
(:func:`fits_on_device`), :class:`HostSampler` draws batches with numpy on the host for a whole chunk of updates at
a time and prefetches the next chunk in a background thread.
"""

import concurrent.futures
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

BATCH_KEYS = ('observations', 'actions', 'rewards', 'masks', 'next_observations')


def batch_arrays(dataset: Dict[str, np.ndarray], keys=BATCH_KEYS) -> Dict[str, np.ndarray]:
    """The training keys of a dataset as float32 numpy arrays (N, ...), checked for a common length."""
    missing = [k for k in keys if k not in dataset]
    if missing:
        raise ValueError(f'dataset lacks the training keys {missing}; expected {list(keys)}')
    out = {k: np.asarray(dataset[k], dtype=np.float32) for k in keys}
    sizes = {k: v.shape[0] for k, v in out.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f'dataset keys have different lengths: {sizes}')
    return out


def nbytes(arrays: Dict[str, np.ndarray]) -> int:
    return int(sum(a.nbytes for a in arrays.values()))


def device_memory_bytes(device=None) -> Optional[int]:
    """Free bytes on ``device`` when the backend reports them (GPU/TPU), else None (CPU: host RAM)."""
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory stats
        return None
    if 'bytes_limit' in stats:
        return int(stats['bytes_limit'] - stats.get('bytes_in_use', 0))
    return None


def fits_on_device(arrays: Dict[str, np.ndarray], fraction: float = 0.5, device=None) -> bool:
    """Whether the dataset takes at most ``fraction`` of the device's free memory (True when unknown)."""
    free = device_memory_bytes(device)
    return free is None or nbytes(arrays) <= fraction * free


def samples_on_host(host_sampling: Optional[bool], arrays: Dict[str, np.ndarray]) -> bool:
    """Whether a run draws its batches on the host: as ``host_sampling`` asks, or (None) when the dataset takes more
    than half the free device memory (:func:`fits_on_device`)."""
    return host_sampling if host_sampling is not None else not fits_on_device(arrays)


def put_replicated(arrays: Dict[str, np.ndarray], sharding=None) -> Dict[str, jax.Array]:
    """Copy arrays to device(s); with a sharding (e.g. replicated over a multi-host mesh) build global arrays."""
    if sharding is None:
        return {k: jnp.asarray(v) for k, v in arrays.items()}
    return {k: jax.make_array_from_callback(v.shape, sharding, lambda idx, v=v: v[idx]) for k, v in arrays.items()}


def sample_batch(data: Dict[str, jax.Array], rng: jax.Array, batch_size: int) -> Dict[str, jax.Array]:
    """A batch of ``batch_size`` transitions drawn uniformly with replacement: {(B, ...)}.  Jittable."""
    size = jax.tree_util.tree_leaves(data)[0].shape[0]
    idx = jax.random.randint(rng, (batch_size,), 0, size)
    return jax.tree_util.tree_map(lambda x: jnp.take(x, idx, axis=0), data)


def balanced_batch(data: Dict[str, jax.Array], buffer, rng: jax.Array, batch_size: int) -> Dict[str, jax.Array]:
    """The published balanced batch: ``batch_size // 2`` dataset rows (``data``: {(N, ...)}, uniform) then
    ``batch_size // 2`` of the online replay buffer's filled rows (a ``floq_jax.core.replay.ReplayBuffer``,
    uniform): {(2 * (batch_size // 2), ...)}.  The buffer must hold a row (the online phase adds the transition
    before it samples).  Jittable."""
    from floq_jax.core import replay

    half = batch_size // 2
    data_key, buffer_key = jax.random.split(rng)
    offline, online = sample_batch(data, data_key, half), replay.sample(buffer, buffer_key, half)
    return {k: jnp.concatenate([offline[k], online[k]], axis=0) for k in buffer.data}


def host_chunk(arrays: Dict[str, np.ndarray], seeds, start: int, steps: int, batch_size: int) -> Dict[str, np.ndarray]:
    """Host-side batches for updates ``start .. start + steps - 1`` of each seed: {key: (S, steps, B, ...)}.

    Indices come from ``np.random.default_rng([seed, start])``, so the batches of a chunk depend only on the seed
    and the chunk's first step: a run resumed at a checkpoint draws exactly what the uninterrupted run drew.
    """
    size = next(iter(arrays.values())).shape[0]
    idx = np.stack([np.random.default_rng([int(s), int(start)]).integers(0, size, size=(steps, batch_size))
                    for s in seeds])
    return {k: v[idx] for k, v in arrays.items()}


class HostSampler:
    """Host-side sampling with prefetch, for datasets larger than device memory.

    ``get(start, steps)`` returns :func:`host_chunk` for that chunk; ``prefetch(start, steps)`` starts drawing a
    chunk in a background thread (numpy fancy indexing releases the GIL) while the device trains on the current one.
    """

    def __init__(self, arrays: Dict[str, np.ndarray], batch_size: int, seeds):
        self.arrays, self.batch_size, self.seeds = arrays, batch_size, list(seeds)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._pending: Dict[tuple, concurrent.futures.Future] = {}

    def prefetch(self, start: int, steps: int) -> None:
        key = (int(start), int(steps))
        if key not in self._pending:
            self._pending[key] = self._pool.submit(host_chunk, self.arrays, self.seeds, start, steps, self.batch_size)

    def get(self, start: int, steps: int) -> Dict[str, np.ndarray]:
        self.prefetch(start, steps)
        return self._pending.pop((int(start), int(steps))).result()

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)
