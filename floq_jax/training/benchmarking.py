"""Timing helpers for ``experiments/benchmark.py``: compile time, steady-state time, memory, matmul rate.

Conventions: every timed call is preceded by a warm-up (compile) call and ends with
``jax.block_until_ready``; we report the median of the timed calls.  On a shared machine compare
ratios measured side by side in one run, not absolute times across runs.
"""

import dataclasses
import resource
import statistics
import time
from typing import Any, Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class Timing:
    """Seconds of each timed call (after warm-up); ``median_s`` is what we report."""

    times_s: List[float]

    @property
    def median_s(self) -> float:
        return float(statistics.median(self.times_s))

    @property
    def min_s(self) -> float:
        return float(min(self.times_s))


def time_calls(fn: Callable[[], Any], iters: int, warmup: int = 1) -> Timing:
    """Call ``fn()`` ``warmup`` times, then time ``iters`` calls (each blocked until ready)."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return Timing(times)


def time_compile(jitted, *args, **kwargs):
    """(compiled, seconds to lower, seconds to compile) of a ``jax.jit``-wrapped function for ``args``."""
    t0 = time.perf_counter()
    lowered = jitted.lower(*args, **kwargs)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return compiled, t1 - t0, t2 - t1


def xla_flops(compiled) -> Optional[float]:
    """XLA's cost-analysis FLOPs of a compiled executable (a ``lax.scan`` body counts once)."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - backends without cost analysis
        return None
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get('flops')
    return None if flops is None else float(flops)


def compiled_memory_bytes(compiled) -> Optional[Dict[str, int]]:
    """XLA's static memory analysis of an executable (arguments, outputs, temporaries), when available."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        return None
    if m is None:
        return None
    keys = ('argument_size_in_bytes', 'output_size_in_bytes', 'temp_size_in_bytes', 'generated_code_size_in_bytes')
    return {k: int(getattr(m, k)) for k in keys if hasattr(m, k)}


def device_peak_bytes(device=None) -> Optional[int]:
    """Peak device memory from ``device.memory_stats()`` (GPU/TPU); None on CPU."""
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001
        return None
    peak = stats.get('peak_bytes_in_use')
    return None if peak is None else int(peak)


def process_peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux: ru_maxrss is in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def process_rss_bytes() -> Optional[int]:
    try:
        import psutil
        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001
        return None


def peak_memory() -> Dict[str, Any]:
    """Device peak bytes where the backend reports them, else the process's peak RSS (monotonic)."""
    peak = device_peak_bytes()
    if peak is not None:
        return {'peak_memory_bytes': peak, 'memory_source': 'device.memory_stats peak_bytes_in_use'}
    return {'peak_memory_bytes': process_peak_rss_bytes(), 'memory_source': 'process peak RSS (cumulative)'}


def matmul_flops_per_s(n: int = 2048, iters: int = 10, dtype=jnp.float32, warmup: int = 2) -> Dict[str, float]:
    """Achieved FLOP/s of an n x n @ n x n matmul in jax (2 n^3 FLOPs), median of ``iters`` calls."""
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (n, n), dtype)
    b = jax.random.normal(key_b, (n, n), dtype)
    f = jax.jit(jnp.matmul)
    timing = time_calls(lambda: f(a, b), iters, warmup=warmup)
    flops = 2.0 * n ** 3
    return {'n': n, 'median_s': timing.median_s, 'flops_per_s': flops / timing.median_s,
            'best_flops_per_s': flops / timing.min_s}


# ----------------------------------------------------------------------------- evaluation


def _cpu_seconds(env) -> float:
    """User+system CPU seconds of this process plus ``env``'s worker processes (if any)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = env.worker_cpu_seconds() if hasattr(env, 'worker_cpu_seconds') else 0.0
    return own.ru_utime + own.ru_stime + workers


def benchmark_evaluation(policy_fn: Callable, env_name: str, num_episodes: int = 50, seed: int = 0,
                         vector_mode: str = 'auto', num_envs: int | None = None, num_workers: int | None = None,
                         max_episode_steps: int | None = None) -> dict:
    """Wall-clock of a parallel vs a sequential ``num_episodes`` evaluation.

    Both are timed on already-created envs (training keeps its evaluator alive;
    FQL also builds its eval env once), after calling the policy once on both
    batch shapes so JIT compiles are excluded.  Env construction (~1 s per
    OGBench manipulation env: MJCF compile) is reported separately.

    ``*_cpu_s`` are CPU seconds of the timed call (this process + 'chunked'
    worker processes; gymnasium 'async' workers are not counted), useful on a
    shared machine where wall-clock depends on other load.

    Returns:
        dict(parallel_s, sequential_s, speedup, parallel_create_s, sequential_create_s,
        parallel_cpu_s, sequential_cpu_s,
        success_parallel, success_sequential, same_episode_success, same_episode_length,
        same_final_observation, vector_mode, num_envs).
    """
    from floq_jax.envs.evaluation import make_evaluator

    n_par = num_envs or num_episodes
    timings = {}
    results = {}
    for name, parallel in (('parallel', True), ('sequential', False)):
        evaluator = make_evaluator(env_name, num_episodes, seed, num_envs, parallel, vector_mode,
                                   max_episode_steps, num_workers=num_workers)
        try:
            t0 = time.perf_counter()
            env = evaluator.env
            if parallel:  # Make sure workers finished building their envs.
                env.reset(seed=list(range(env.num_envs)))
            timings[f'{name}_create_s'] = time.perf_counter() - t0
            space = env.single_observation_space if parallel else env.observation_space
            batch = env.num_envs if parallel else 1
            np.asarray(policy_fn(np.zeros((batch,) + space.shape, np.float32),
                                 jax.random.split(jax.random.PRNGKey(0), batch), 0.0))
            t0, c0 = time.perf_counter(), _cpu_seconds(env)
            results[name] = evaluator(policy_fn)
            timings[f'{name}_s'] = time.perf_counter() - t0
            timings[f'{name}_cpu_s'] = _cpu_seconds(env) - c0
        finally:
            evaluator.close()
    return {
        **timings,
        'speedup': timings['sequential_s'] / timings['parallel_s'],
        'success_parallel': results['parallel']['success'],
        'success_sequential': results['sequential']['success'],
        'same_episode_success': bool(np.array_equal(results['parallel']['episode_success'],
                                                    results['sequential']['episode_success'])),
        'same_episode_length': bool(np.array_equal(results['parallel']['episode_length'],
                                                   results['sequential']['episode_length'])),
        'same_final_observation': bool(np.array_equal(results['parallel']['episode_final_observation'],
                                                      results['sequential']['episode_final_observation'])),
        'vector_mode': vector_mode,
        'num_envs': n_par,
    }


def fake_dataset(num_transitions: int, ob_dim: int, action_dim: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """A synthetic float32 dataset with the training keys (throughput does not depend on the values)."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((num_transitions, ob_dim), dtype=np.float32)
    return {
        'observations': obs,
        'actions': rng.uniform(-1, 1, (num_transitions, action_dim)).astype(np.float32),
        'rewards': -rng.integers(0, 2, num_transitions).astype(np.float32),
        'masks': np.ones(num_transitions, np.float32),
        'next_observations': np.roll(obs, -1, axis=0),
    }


def host_batch(arrays: Dict[str, np.ndarray], rng: np.random.Generator, batch_size: int) -> Dict[str, np.ndarray]:
    """The published loop's sampling: numpy random indices on the host, fancy-indexed numpy batch."""
    size = next(iter(arrays.values())).shape[0]
    idx = rng.integers(0, size, size=batch_size)
    return {k: v[idx] for k, v in arrays.items()}


def fmt_bytes(n: Optional[int]) -> str:
    if n is None:
        return '-'
    return f'{n / 2 ** 20:.0f} MiB'
