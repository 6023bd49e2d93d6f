"""The devices of a process: setting them up before JAX starts, and describing them.

**JAX starts only after the device flags.**  XLA fixes its devices when JAX initialises its backends, which happens at
the first array, the first ``jax.devices()`` or the first compilation, not at ``import jax``.  So everything that
shapes the devices (``--cpu_devices``: how many XLA devices a CPU-only host is split into; the persistent compilation
cache; ``--distributed``: ``jax.distributed.initialize``) must run before anything makes an array.  :func:`start` is
that first step for every entrypoint and sweep; other docstrings point here instead of repeating the rule.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional


def start(num_seeds: int, cpu_devices: Optional[int] = None, distributed: bool = False,
          compile_cache_dir: Optional[str] = None, cache: bool = True) -> int:
    """Sets the devices up before JAX starts (see the module docstring): ``cpu_devices`` XLA CPU devices (None: the
    largest divisor of ``num_seeds`` at most the core count, floq_jax.training.parallel.configure_cpu_devices), then
    (``cache``) the persistent compilation cache at ``compile_cache_dir`` (None: ``$FLOQ_COMPILE_CACHE`` or the default
    directory; '': off, floq_jax.training.compile_cache.resolve).

    Returns the number of CPU devices in effect (1: nothing changed).  Raises a one-line ValueError naming
    ``--cpu_devices`` for a count below 1.
    """
    from floq_jax.training import compile_cache, parallel

    count = parallel.configure_cpu_devices(num_seeds, cpu_devices, distributed)
    if cache:
        compile_cache.enable(compile_cache.resolve(compile_cache_dir))
    return count


def device_info() -> Dict[str, Any]:
    """The devices JAX trains on (starts JAX): platform, device kind, device count, JAX version, visible CPU cores."""
    import jax

    d = jax.devices()[0]
    return {'platform': d.platform, 'device_kind': getattr(d, 'device_kind', str(d)),
            'num_devices': jax.device_count(), 'jax_version': jax.__version__, 'cpu_cores': os.cpu_count()}


def device_description(info: Optional[Dict[str, Any]] = None) -> str:
    """:func:`device_info` in one line, e.g. 'cpu (2 device(s), 2 CPU cores visible)'."""
    info = device_info() if info is None else info
    return f'{info["platform"]} ({info["num_devices"]} device(s), {info["cpu_cores"]} CPU cores visible)'
