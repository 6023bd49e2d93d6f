"""JAX's persistent compilation cache, on by default for the entrypoints.

A run whose programs were compiled before (same config, shapes, devices, XLA flags and JAX version) loads them from
the cache instead of compiling again: the second run of a config skips most of its start-up compilation (timing:
docs/benchmark.md, "The measurements behind the code's defaults").  The entries are keyed by JAX itself; a stale or
foreign entry is never used.

    enable(resolve(None))   # $FLOQ_COMPILE_CACHE, else ~/.cache/floq_jax/jax_cache
    enable(resolve(''))     # off
"""

from __future__ import annotations

import os
import warnings
from typing import Optional

ENV_VAR = 'FLOQ_COMPILE_CACHE'


def default_dir() -> str:
    """``$FLOQ_COMPILE_CACHE``, else ``~/.cache/floq_jax/jax_cache``."""
    return os.environ.get(ENV_VAR) or os.path.join(os.path.expanduser('~'), '.cache', 'floq_jax', 'jax_cache')


def resolve(flag_value: Optional[str]) -> Optional[str]:
    """The directory for a ``--compile_cache_dir`` value: None -> :func:`default_dir`; '' -> None (off)."""
    if flag_value is None:
        return default_dir()
    return os.path.expanduser(flag_value) or None


def enable(cache_dir: Optional[str]) -> Optional[str]:
    """Turns the cache on at ``cache_dir`` (every compiled program is stored, however fast it compiled); returns the
    absolute directory, or None when ``cache_dir`` is empty or cannot be created (a warning: the run then compiles
    as usual)."""
    if not cache_dir:
        return None
    import jax

    path = os.path.abspath(cache_dir)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        warnings.warn(f'compilation cache {path} cannot be created ({e}); compiling without it')
        return None
    jax.config.update('jax_compilation_cache_dir', path)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
    return path
