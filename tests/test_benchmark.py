"""Smoke test of the benchmark's code paths at a toy size (not a timed test: no assertion on speed).

The full paths (floq/FQL updates, seeds, loop, evaluation) are exercised by
``python -m experiments.benchmark --tiny``; compiling a floq update takes ~20-30 s on the shared
2-core CPU, so here we run the timing helpers on toy functions and build the table and targets
from a synthetic results dict.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import benchmark
from experiments.bench import memory
from floq_jax.training import devices
from floq_jax.training import benchmarking as bm


def test_timing_helpers_toy():
    f = jax.jit(lambda x: x @ x.T)
    x = jnp.ones((8, 8))
    compiled, lower_s, compile_s = bm.time_compile(f, x)
    assert lower_s >= 0 and compile_s >= 0
    timing = bm.time_calls(lambda: compiled(x), iters=3)
    assert len(timing.times_s) == 3 and timing.median_s >= timing.min_s > 0
    assert bm.xla_flops(compiled) is None or bm.xla_flops(compiled) >= 2 * 8 ** 3 * 0.9
    mem = bm.compiled_memory_bytes(compiled)
    assert mem is None or all(v >= 0 for v in mem.values())
    assert bm.peak_memory()['peak_memory_bytes'] > 0
    mm = bm.matmul_flops_per_s(n=32, iters=2)
    assert mm['flops_per_s'] > 0
    data = bm.fake_dataset(100, 3, 2)
    b = bm.host_batch(data, np.random.default_rng(0), 7)
    assert b['observations'].shape == (7, 3) and b['actions'].shape == (7, 2)


def test_table_and_targets_synthetic():
    upd = lambda name, K, s, c: dict(name=name, agent='floq', K=K, small=False, compile_total_s=c,
                                     updates_per_s=1 / s, ms_per_update=1e3 * s, analytic_flops=1e9,
                                     xla_flops=5e8, achieved_flops_per_s=1e9 / s, compiled_memory=None,
                                     peak_memory_bytes=2 ** 30)
    mm = dict(n=2048, flops_per_s=4e10)
    results = dict(
        device=devices.device_info(), device_note='toy', mode='tiny', matmul=mm, matmul_start=mm, matmul_end=mm,
        updates=[upd('floq_K1', 1, 0.1, 10.0), upd('floq_K8', 8, 0.05, 11.0), upd('floq_K16', 16, 0.2, 12.0)],
        seeds=dict(num_seeds=8, one_seed=dict(seed_updates_per_s=10.0), vmapped=dict(seed_updates_per_s=40.0),
                   sequential=dict(seed_updates_per_s=10.0, achieved_flops_per_s=1e10), vmapped_over_sequential=4.0,
                   analytic_flops_per_seed_update=1e9, adjacent_matmul_flops_per_s=4e10, ratio_ceiling=4.0),
        loop=dict(steps_per_call=100, device_resident=dict(updates_per_s=10.0),
                  host_per_step=dict(updates_per_s=9.0, host_sample_ms=0.1, device_put_ms=0.1), speedup=10 / 9,
                  host_overhead_fraction=0.0018),
        evaluation=dict(num_episodes=10, vector_mode='chunked', num_envs=10, parallel_s=1.0, sequential_s=3.0,
                        speedup=3.0),
        profile={'velocity_fwd': dict(ms=1.0, flops=1e9, flops_per_s=1e12), 'actor': dict(ms=2.0, flops=None,
                                                                                          flops_per_s=None)})
    t = benchmark.targets(results, mm)
    assert t['floq_default_matmul_fraction']['value'] == 0.5 and not t['floq_default_matmul_fraction']['met']
    assert t['compile_K16_over_K1']['met'] and not t['device_loop_over_host_loop_small']['met']
    assert t['vmapped8_over_sequential8_small']['met'] and t['eval_parallel_over_sequential']['met']
    results['targets'] = t
    text = benchmark.table(results)
    assert '| floq_K8 |' in text and 'toy' in text and '| NO |' in text
    assert '| >= 2.0 | 1.11 | NO | - |' in text and '| 4.00 | yes | 4.00 |' in text  # seeds row: same-run ceiling
    assert 'beat x4.00 of sequential' in text and 'take 0.2% of its time per update' in text


@pytest.mark.subprocess
def test_eval_seeds_table_sections_and_rss(capsys):
    """The eval_seeds section's table rows, --sections / --skip / --eval_pools checks, and the RSS sampler."""
    mib = 2 ** 20
    row = dict(num_seeds=4, pool=2, live_envs=4, slots_per_seed=1, waves=10, create_s=4.0, eval_s=20.0,
               episodes_per_s=2.0, peak_rss_bytes=1500 * mib, peak_over_base_per_env_bytes=170 * mib)
    mm = dict(n=2048, flops_per_s=4e10)
    results = dict(device=devices.device_info(), device_note='toy', mode='tiny', matmul=mm, matmul_start=mm,
                   matmul_end=mm, updates=[], seeds={}, loop={}, evaluation=None, profile={}, targets={},
                   eval_seeds=dict(rows=[row], num_episodes=10, vector_mode='chunked'))
    text = benchmark.table(results)
    assert '| S = 4, pool 2 | 4 | 1 | 10 | 4.0 | 20.0 | 2.00 | 1500 MiB | 170 MiB |' in text, text
    assert benchmark.skipped_sections(['eval_seeds'], []) == set(benchmark.SECTIONS) - {'eval_seeds'}
    assert benchmark.skipped_sections([], ['eval']) == {'eval'}
    assert benchmark.positive_ints('eval_pools', ['2', '8']) == [2, 8]
    for call, flag in ((lambda: benchmark.skipped_sections(['evals'], []), 'sections'),
                       (lambda: benchmark.skipped_sections([], ['x']), 'skip'),
                       (lambda: benchmark.positive_ints('eval_pools', ['0']), 'eval_pools'),
                       (lambda: benchmark.positive_ints('eval_num_seeds', ['two']), 'eval_num_seeds')):
        with pytest.raises(SystemExit) as e:
            call()
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and err.startswith(f'error: --{flag}: '), err
    # The sampler on a process of its own (this process's tree holds other tests' env workers, which come and go):
    # it waits for 'go', touches 64 MiB and holds it until its stdin closes.
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, '-c', 'import sys, numpy as np; sys.stdin.readline(); '
                              'b = np.ones(64 * 2**20 // 8); print("held", flush=True); sys.stdin.read()'],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        with memory.PeakRss(interval=0.01, pid=child.pid) as peak:
            base = memory.tree_rss_bytes(child.pid)
            child.stdin.write('go\n')
            child.stdin.flush()
            assert child.stdout.readline().strip() == 'held'
            deadline = time.monotonic() + 10  # the sampler thread may wait for a core on a loaded machine
            while peak.bytes < base + 48 * mib and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    assert base > 0 and peak.bytes >= base + 48 * mib


def test_vector_mode_rows_and_table():
    """The vector_modes section: one timed pool per (n, mode), the mode 'auto' picks, and its table rows."""
    from floq_jax.envs import envs as envs_lib

    rows = benchmark.vector_mode_rows('cube-single-play-singletask-task2-v0', [1], modes=('sync',), evaluations=1,
                                      max_episode_steps=3)
    assert [(r['n'], r['mode'], r['auto']) for r in rows] == [(1, 'sync', 'sync')]
    assert rows[0]['total_s'] >= rows[0]['build_s'] + rows[0]['eval_s'] > 0
    assert envs_lib.idle_env_count() == 0  # the section leaves no idle envs behind
    n = envs_lib.AUTO_CHUNKED_MIN_ENVS
    synthetic = [dict(n=n, mode=m, auto='chunked', build_s=1.0, eval_s=2.0, total_s=3.0) for m in ('sync', 'chunked')]
    mm = dict(n=8, flops_per_s=1e9)
    text = benchmark.table(dict(device=devices.device_info(), device_note='', mode='tiny', matmul=mm,
                                matmul_start=mm, matmul_end=mm, updates=[], seeds={}, loop={}, evaluation={},
                                profile={}, targets={}, vector_modes=dict(env_name='cube', evaluations=3,
                                                                         rows=synthetic)))
    assert f'| n = {n} | sync | 1.0 | 2.0 | 3.0 | chunked |' in text and f'| n = {n} | chunked |' in text
