"""Batches for training: the dataset on device, indices drawn with ``jax.random`` inside jit.

A dataset here is a dict of arrays with a shared leading axis N (the transitions).  On device it is
replicated over the mesh (every seed samples from all of it).  When it does not fit in device memory,
:class:`HostSampler` draws batches with numpy on the host for a whole chunk of updates at a time and
prefetches the next chunk in a background thread.
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


class HostSampler:
    """Host-side sampling for datasets larger than device memory.

    ``next_chunk()`` returns {key: (num_seeds, steps, B, ...)} numpy batches for one chunk of updates;
    the following chunk is prepared in a background thread while the device trains on this one.
    """

    def __init__(self, arrays: Dict[str, np.ndarray], batch_size: int, steps: int, num_seeds: int, seed: int):
        self.arrays, self.batch_size, self.steps, self.num_seeds = arrays, batch_size, steps, num_seeds
        self.rng = np.random.default_rng(seed)
        self.size = next(iter(arrays.values())).shape[0]
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._next = self._pool.submit(self._draw)

    def _draw(self):
        idx = self.rng.integers(0, self.size, size=(self.num_seeds, self.steps, self.batch_size))
        return {k: v[idx] for k, v in self.arrays.items()}

    def next_chunk(self):
        chunk = self._next.result()
        self._next = self._pool.submit(self._draw)
        return chunk

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)
