"""Evaluation videos a person can watch: the rendered episodes of one evaluation tiled into one grid video, written
as an MP4 file (imageio with its ffmpeg plugin, ``imageio-ffmpeg``) and encoded as an animated GIF for TensorBoard.

    frames = tile(videos)                  # videos: list of uint8 (T_i, H, W, 3) -> uint8 (T, rows*(H+2), cols*(W+2), 3)
    write_mp4('run/seed0/videos/step20000.mp4', frames, fps=15)
    data = gif_bytes(frames, fps=15)       # an animated GIF (TensorBoard's image dashboard plays it)

As the published logger does, shorter episodes are held on their last frame at half brightness until the longest one
ends, and every episode gets a 1-pixel black border.
"""

from __future__ import annotations

import io
import math
import os
from typing import Sequence

import numpy as np

FPS = 15  # the published logger's frame rate


def tile(videos: Sequence[np.ndarray], n_cols: int | None = None) -> np.ndarray:
    """uint8 (T, rows * (H + 2), cols * (W + 2), 3) from a list of uint8 (T_i, H, W, 3) episodes of equal frame size;
    ``n_cols`` defaults to ceil(sqrt(len(videos))); empty grid cells stay black."""
    if not videos:
        raise ValueError('no videos to tile')
    shapes = {v.shape[1:] for v in videos}
    if len(shapes) != 1 or any(v.dtype != np.uint8 or v.ndim != 4 or len(v) == 0 for v in videos):
        raise ValueError(f'expected non-empty uint8 (T, H, W, 3) videos of one frame size, got '
                         f'{[(v.shape, str(v.dtype)) for v in videos]}')
    length = max(len(v) for v in videos)
    padded = []
    for v in videos:
        hold = (v[-1].astype(np.uint16) // 2).astype(np.uint8)  # the last frame at half brightness
        v = np.concatenate([v, np.repeat(hold[None], length - len(v), axis=0)])
        padded.append(np.pad(v, ((0, 0), (1, 1), (1, 1), (0, 0))))
    n_cols = n_cols or math.ceil(math.sqrt(len(padded)))
    n_rows = math.ceil(len(padded) / n_cols)
    blank = np.zeros_like(padded[0])
    padded += [blank] * (n_rows * n_cols - len(padded))
    rows = [np.concatenate(padded[r * n_cols:(r + 1) * n_cols], axis=2) for r in range(n_rows)]
    return np.concatenate(rows, axis=1)


def _even(frames: np.ndarray) -> np.ndarray:
    """Pads height and width to even sizes (H.264's yuv420p needs them)."""
    _, h, w, _ = frames.shape
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))


def write_mp4(path: str, frames: np.ndarray, fps: int = FPS) -> str:
    """Writes uint8 (T, H, W, 3) ``frames`` to the H.264 MP4 ``path``, local or ``gs://`` (encoded into a local
    temporary file, then written in one piece through :mod:`floq_jax.storage`)."""
    import tempfile

    import imageio.v2 as imageio

    from floq_jax import storage

    with tempfile.TemporaryDirectory(prefix='floq_video_') as tmp:
        local = os.path.join(tmp, 'video.mp4')
        with imageio.get_writer(local, format='FFMPEG', fps=fps, codec='libx264', pixelformat='yuv420p',
                                macro_block_size=1) as writer:
            for frame in _even(frames):
                writer.append_data(frame)
        storage.makedirs(storage.dirname(path))
        with open(local, 'rb') as f:
            storage.write_bytes(path, f.read())
    return path


def gif_bytes(frames: np.ndarray, fps: int = FPS) -> bytes:
    """An animated GIF (looping) of uint8 (T, H, W, 3) ``frames``."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    out = io.BytesIO()
    images[0].save(out, format='GIF', save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return out.getvalue()
