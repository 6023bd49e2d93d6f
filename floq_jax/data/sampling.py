"""Batches for training: the dataset on device, indices drawn with ``jax.random`` inside jit.

A dataset here is a dict of arrays with a shared leading axis N (the transitions).  On device it is
replicated over the mesh (every seed samples from all of it).  When it does not fit in device memory
(:func:`fits_on_device`), :class:`HostSampler` draws batches with numpy on the host for a whole chunk of updates at
a time and prefetches the next chunk in a background thread.

Pixel observations (uint8 frames (N, H, W, C)) stay uint8 here, on the device and in every batch: the agent's
encoder divides by 255.  :class:`Pixels` holds the published ``--frame_stack`` and ``--p_aug``: a batch's
observation is its row's frame with the ``frame_stack - 1`` frames before it, concatenated on the channel axis and
never reaching back before its episode's first row (the first frame repeats there), its next observation the same
window one step later (the published FQL ``Dataset.sample``); with probability ``p_aug`` (one draw per batch) every
row of the batch is randomly cropped (edge padding of ``CROP_PADDING`` pixels, one offset per row shared by the
observation and the next observation; the published ``Dataset.augment``).  Both on the device (:func:`sample_batch`,
inside the jitted chunk) and on the host (:func:`host_chunk`).
"""

import concurrent.futures
import dataclasses
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

BATCH_KEYS = ('observations', 'actions', 'rewards', 'masks', 'next_observations')
PIXEL_KEYS = ('observations', 'next_observations')
EPISODE_STARTS = 'episode_starts'  # with frame stacking: each row's episode's first row (N,) int32; not a batch key
CROP_PADDING = 3  # the published random crop's edge padding (offsets 0 .. 2 * padding)


@dataclasses.dataclass(frozen=True)
class Pixels:
    """The published ``--frame_stack`` (frames per observation, None: no stacking) and ``--p_aug`` (probability
    of a batch being randomly cropped, None: never).  Hashable: the jitted chunks are cached per value."""

    frame_stack: Optional[int] = None
    p_aug: Optional[float] = None

    @property
    def active(self) -> bool:
        return self.frame_stack is not None or self.p_aug is not None


def batch_arrays(dataset: Dict[str, np.ndarray], keys=BATCH_KEYS, frame_stack: Optional[int] = None
                 ) -> Dict[str, np.ndarray]:
    """The training keys of a dataset as numpy arrays (N, ...), checked for a common length: float32, except
    uint8 observations (pixels), which stay uint8.  With ``frame_stack`` also :data:`EPISODE_STARTS`, from the
    dataset's ``terminals`` (1 on each episode's last row, as OGBench's files)."""
    missing = [k for k in keys if k not in dataset]
    if missing:
        raise ValueError(f'dataset lacks the training keys {missing}; expected {list(keys)}')
    keep_uint8 = lambda k: k in PIXEL_KEYS and np.asarray(dataset[k]).dtype == np.uint8
    out = {k: np.asarray(dataset[k], dtype=np.uint8 if keep_uint8(k) else np.float32) for k in keys}
    sizes = {k: v.shape[0] for k, v in out.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f'dataset keys have different lengths: {sizes}')
    if frame_stack is not None:
        if 'terminals' not in dataset:
            raise ValueError("frame stacking needs the dataset's 'terminals' (episode ends)")
        out[EPISODE_STARTS] = episode_starts(np.asarray(dataset['terminals']))
    return out


def episode_starts(terminals: np.ndarray) -> np.ndarray:
    """Each row's episode's first row (N,) int32, episodes ending where ``terminals`` > 0 (the published
    ``initial_locs`` looked up per row)."""
    ends = np.nonzero(np.asarray(terminals).reshape(-1) > 0)[0]
    firsts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    rows = np.arange(len(terminals))
    return firsts[np.searchsorted(firsts, rows, side='right') - 1].astype(np.int32)


def example_observations(arrays: Dict[str, np.ndarray], frame_stack: Optional[int] = None) -> np.ndarray:
    """One observation (1, ...) as the agent sees it (frames stacked on the last axis with ``frame_stack``)."""
    first = arrays['observations'][:1]
    return first if frame_stack is None else np.concatenate([first] * frame_stack, axis=-1)


def stack_frames(data, idx, frame_stack: int, xp=jnp):
    """(observations, next_observations) of rows ``idx`` (any shape) with ``frame_stack`` frames each, oldest first
    on the channel axis, clamped at each row's episode start (``data`` holds :data:`EPISODE_STARTS`).  ``xp``: jnp
    (on the device) or np (on the host)."""
    starts = data[EPISODE_STARTS][idx]
    frames = [data['observations'][xp.maximum(idx - i, starts)] for i in reversed(range(frame_stack))]
    next_frames = frames[1:] + [data['next_observations'][idx]]
    return xp.concatenate(frames, axis=-1), xp.concatenate(next_frames, axis=-1)


def random_crop(images: jax.Array, offsets: jax.Array, padding: int = CROP_PADDING) -> jax.Array:
    """Images (B, H, W, C) padded by ``padding`` (edge values) and cropped back to (H, W) at ``offsets`` (B, 2)."""
    def one(image, offset):
        padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode='edge')
        return jax.lax.dynamic_slice(padded, (offset[0], offset[1], 0), image.shape)

    return jax.vmap(one)(images, offsets)


def random_crop_host(images: np.ndarray, offsets: np.ndarray, padding: int = CROP_PADDING) -> np.ndarray:
    """:func:`random_crop` in numpy: images (..., H, W, C), offsets (..., 2); the rows of each offset are sliced
    together (a copy of each, no per-pixel index arrays)."""
    h, w = images.shape[-3:-1]
    flat, flat_offsets = images.reshape(-1, *images.shape[-3:]), offsets.reshape(-1, 2)
    padded = np.pad(flat, [(0, 0), (padding, padding), (padding, padding), (0, 0)], mode='edge')
    out = np.empty_like(flat)
    codes = flat_offsets[:, 0] * (2 * padding + 1) + flat_offsets[:, 1]
    for code in np.unique(codes):
        rows = np.nonzero(codes == code)[0]
        i, j = divmod(int(code), 2 * padding + 1)
        out[rows] = padded[rows, i:i + h, j:j + w]
    return out.reshape(images.shape)


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


def sample_batch(data: Dict[str, jax.Array], rng: jax.Array, batch_size: int, pixels: Optional[Pixels] = None
                 ) -> Dict[str, jax.Array]:
    """A batch of ``batch_size`` transitions drawn uniformly with replacement: {(B, ...)}, frames stacked and
    cropped as ``pixels`` says (the crop's draws come from ``rng``'s own stream, so the rows drawn are the same
    with or without it).  Jittable."""
    size = jax.tree_util.tree_leaves(data)[0].shape[0]
    idx = jax.random.randint(rng, (batch_size,), 0, size)
    stacked = pixels is not None and pixels.frame_stack is not None
    batch = {k: jnp.take(x, idx, axis=0) for k, x in data.items()
             if k != EPISODE_STARTS and not (stacked and k in PIXEL_KEYS)}
    if pixels is None or not pixels.active:
        return batch
    if pixels.frame_stack is not None:
        batch['observations'], batch['next_observations'] = stack_frames(data, idx, pixels.frame_stack)
    if pixels.p_aug is not None:
        coin_key, offset_key = jax.random.split(jax.random.fold_in(rng, CROP_STREAM))
        apply = jax.random.uniform(coin_key) < pixels.p_aug
        offsets = jax.random.randint(offset_key, (batch_size, 2), 0, 2 * CROP_PADDING + 1)
        for k in PIXEL_KEYS:
            if batch[k].ndim == 4:  # frames only, as published
                batch[k] = jnp.where(apply, random_crop(batch[k], offsets), batch[k])
    return batch


CROP_STREAM = 7  # fold_in salt of the crop's draws


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


def host_chunk(arrays: Dict[str, np.ndarray], seeds, start: int, steps: int, batch_size: int,
               pixels: Optional[Pixels] = None) -> Dict[str, np.ndarray]:
    """Host-side batches for updates ``start .. start + steps - 1`` of each seed: {key: (S, steps, B, ...)}, frames
    stacked and cropped here, on the host, as ``pixels`` says.

    Indices come from ``np.random.default_rng([seed, start])``, so the batches of a chunk depend only on the seed
    and the chunk's first step: a run resumed at a checkpoint draws exactly what the uninterrupted run drew (the
    crop's draws from ``np.random.default_rng([seed, start, CROP_STREAM])``).
    """
    size = next(iter(arrays.values())).shape[0]
    idx = np.stack([np.random.default_rng([int(s), int(start)]).integers(0, size, size=(steps, batch_size))
                    for s in seeds])
    stacked = pixels is not None and pixels.frame_stack is not None
    batch = {k: v[idx] for k, v in arrays.items() if k != EPISODE_STARTS and not (stacked and k in PIXEL_KEYS)}
    if pixels is None or not pixels.active:
        return batch
    if pixels.frame_stack is not None:
        batch['observations'], batch['next_observations'] = stack_frames(arrays, idx, pixels.frame_stack, np)
    if pixels.p_aug is not None:
        aug = [np.random.default_rng([int(s), int(start), CROP_STREAM]) for s in seeds]
        apply = np.stack([g.uniform(size=steps) < pixels.p_aug for g in aug])  # (S, steps): one draw per batch
        offsets = np.stack([g.integers(0, 2 * CROP_PADDING + 1, size=(steps, batch_size, 2)) for g in aug])
        for k in PIXEL_KEYS:
            if batch[k].ndim == 6:  # (S, steps, B, H, W, C): frames only; only the batches that drew a crop
                batch[k][apply] = random_crop_host(batch[k][apply], offsets[apply])
    return batch


class HostSampler:
    """Host-side sampling with prefetch, for datasets larger than device memory.

    ``get(start, steps)`` returns :func:`host_chunk` for that chunk; ``prefetch(start, steps)`` starts drawing a
    chunk in a background thread (numpy fancy indexing releases the GIL) while the device trains on the current one.
    """

    def __init__(self, arrays: Dict[str, np.ndarray], batch_size: int, seeds, pixels: Optional[Pixels] = None):
        self.arrays, self.batch_size, self.seeds, self.pixels = arrays, batch_size, list(seeds), pixels
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._pending: Dict[tuple, concurrent.futures.Future] = {}

    def prefetch(self, start: int, steps: int) -> None:
        key = (int(start), int(steps))
        if key not in self._pending:
            self._pending[key] = self._pool.submit(host_chunk, self.arrays, self.seeds, start, steps, self.batch_size,
                                                   self.pixels)

    def get(self, start: int, steps: int) -> Dict[str, np.ndarray]:
        self.prefetch(start, steps)
        return self._pending.pop((int(start), int(steps))).result()

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)
