"""The benchmark's targets (ratios between cases timed in the same run) and its markdown table."""

from __future__ import annotations


from absl import flags


from floq_jax.training import benchmarking as bm

from experiments import end_to_end

FLAGS = flags.FLAGS


def targets(results, matmul):
    rate = matmul['flops_per_s']
    ups = {u['name']: u for u in results['updates']}
    t = {}
    if 'floq_K8' in ups:
        frac = ups['floq_K8'].get('fraction_of_adjacent_matmul', ups['floq_K8']['achieved_flops_per_s'] / rate)
        t['floq_default_matmul_fraction'] = dict(goal='>= 0.75 of measured matmul FLOP/s (paired, median)',
                                                 value=frac, met=frac >= 0.75)
    if 'floq_K1' in ups and 'floq_K16' in ups:
        r = ups['floq_K16']['compile_total_s'] / ups['floq_K1']['compile_total_s']
        t['compile_K16_over_K1'] = dict(goal='<= 1.5', value=r, met=r <= 1.5)
    if results.get('compile_check'):
        r = results['compile_check']['K16_over_K1_median']
        t['compile_K16_over_K1_repeated'] = dict(goal='<= 1.5 (median of alternating compiles)', value=r, met=r <= 1.5)
    if results['loop']:
        r = results['loop']['speedup']
        t['device_loop_over_host_loop_small'] = dict(goal='>= 2.0', value=r, met=r >= 2.0)
    if results['seeds']:
        r = results['seeds']['vmapped_over_sequential']
        t['vmapped8_over_sequential8_small'] = dict(goal='>= 1.5 (--num_seeds=8 path: sharded when >1 device)',
                                                    value=r, met=r >= 1.5,
                                                    ceiling=results['seeds'].get('ratio_ceiling'))
    if results['evaluation']:
        r = results['evaluation']['speedup']
        t['eval_parallel_over_sequential'] = dict(goal='>= 2.0', value=r, met=r >= 2.0)
    if (results.get('end_to_end') or {}).get('ratio') is not None:
        r = results['end_to_end']['ratio']
        t['end_to_end_published_over_floq_jax'] = dict(goal='>= 1.5 (whole run, same protocol)', value=r, met=r >= 1.5)
    return t


def table(results) -> str:
    rate = results['matmul']['flops_per_s']
    lines = [f"Device: {results['device']['device_kind']} ({results['device']['platform']}, "
             f"{results['device']['num_devices']} device(s)); note: {results['device_note'] or '-'}; "
             f"jax {results['device']['jax_version']}; mode: {results['mode']}",
             f"Reference: {results['matmul']['n']}x{results['matmul']['n']} float32 matmul "
             f"{rate / 1e9:.1f} GFLOP/s (median; start {results['matmul_start']['flops_per_s'] / 1e9:.1f}, "
             f"end {results['matmul_end']['flops_per_s'] / 1e9:.1f})", '',
             '| case | compile (s) | updates/s | ms/update | analytic GFLOP/update | XLA GFLOP (scan body once) '
             '| achieved GFLOP/s | fraction of run matmul | fraction of adjacent matmul (paired median) '
             '| XLA temp memory | peak memory |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for u in results['updates']:
        temp = (u['compiled_memory'] or {}).get('temp_size_in_bytes')
        lines.append(f"| {u['name']} | {u['compile_total_s']:.1f} | {u['updates_per_s']:.3f} | {u['ms_per_update']:.1f} "
                     f"| {u['analytic_flops'] / 1e9:.2f} | {(u['xla_flops'] or 0) / 1e9:.2f} "
                     f"| {u['achieved_flops_per_s'] / 1e9:.1f} | {u['achieved_flops_per_s'] / rate:.2f} "
                     f"| {u.get('fraction_of_adjacent_matmul', float('nan')):.2f} "
                     f"| {bm.fmt_bytes(temp)} | {bm.fmt_bytes(u['peak_memory_bytes'])} |")
    lines.append('')
    s = results['seeds']
    if s:
        lines += [f"| seeds ({s.get('config', 'small')} config, floq) | seed-updates/s |", '|---|---|',
                  f"| 1 seed | {s['one_seed']['seed_updates_per_s']:.2f} |",
                  f"| {s['num_seeds']} seeds vmapped (one device) | {s['vmapped']['seed_updates_per_s']:.2f} |",
                  *([f"| {s['num_seeds']} seeds lax.map (one device) | {s['mapped']['seed_updates_per_s']:.2f} |"]
                    if 'mapped' in s else []),
                  *([f"| {s['num_seeds']} seeds sharded over {s['sharded']['devices']} devices "
                     f"(mesh {s['sharded']['mesh']}), seed loop {k['seed_loop']}"
                     f"{' (auto)' if k is s['sharded'] else ''} | {k['seed_updates_per_s']:.2f} |"
                     for k in (s['sharded'], s['sharded_other_loop'])] if 'sharded' in s else []),
                  f"| {s['num_seeds']} sequential runs | {s['sequential']['seed_updates_per_s']:.2f} |", '']
        if 'ratio_ceiling' in s:
            lines += [f"Compute ceiling: the sequential runs reach {s['sequential']['achieved_flops_per_s'] / 1e9:.1f} "
                      f"GFLOP/s ({s['analytic_flops_per_seed_update'] / 1e9:.2f} GFLOP per seed-update); a matmul timed "
                      f"right after them reached {s['adjacent_matmul_flops_per_s'] / 1e9:.1f} GFLOP/s, so no way of "
                      f"running the {s['num_seeds']} seeds together can beat x{s['ratio_ceiling']:.2f} of sequential here.",
                      '']
    lp = results['loop']
    if lp:
        lines += ['| loop (small config, floq, 1 seed) | updates/s |', '|---|---|',
                  f"| device-resident make_train_chunk, {lp['steps_per_call']} steps/call "
                  f"| {lp['device_resident']['updates_per_s']:.2f} |",
                  f"| one update per host call, host numpy sampling (sample "
                  f"{lp['host_per_step']['host_sample_ms']:.2f} ms + device_put {lp['host_per_step']['device_put_ms']:.2f} ms) "
                  f"| {lp['host_per_step']['updates_per_s']:.2f} |", '']
        if 'host_overhead_fraction' in lp:
            lines += [f"The host loop's numpy sampling + device_put take {100 * lp['host_overhead_fraction']:.1f}% of its "
                      f"time per update.", '']
    ev = results['evaluation']
    if ev:
        lines += [f"| evaluation ({ev['num_episodes']} episodes, {ev['vector_mode']}, {ev['num_envs']} envs) | seconds |",
                  '|---|---|', f"| parallel | {ev['parallel_s']:.1f} |", f"| one at a time | {ev['sequential_s']:.1f} |", '']
    es = results.get('eval_seeds')
    if es:
        lines += [f"| evaluation of S seeds together ({es['num_episodes']} episodes per seed, {es['vector_mode']}) "
                  "| live envs | per seed | waves | build envs (s) | evaluate all seeds (s) | episodes/s "
                  "| peak RSS, process + workers | peak - before, per env |", '|---|---|---|---|---|---|---|---|---|']
        for r in es['rows']:
            lines.append(f"| S = {r['num_seeds']}, pool {r['pool']} | {r['live_envs']} | {r['slots_per_seed']} "
                         f"| {r['waves']} | {r['create_s']:.1f} | {r['eval_s']:.1f} | {r['episodes_per_s']:.2f} "
                         f"| {bm.fmt_bytes(r['peak_rss_bytes'])} | {bm.fmt_bytes(r['peak_over_base_per_env_bytes'])} |")
        lines.append('')
    vm = results.get('vector_modes')
    if vm:
        lines += [f"| evaluation pool of n envs ({vm['env_name']}, build + {vm['evaluations']} evaluations of n "
                  "episodes, zero policy) | mode | build envs (s) | evaluations (s) | total (s) | 'auto' picks |",
                  '|---|---|---|---|---|---|']
        for r in vm['rows']:
            lines.append(f"| n = {r['n']} | {r['mode']} | {r['build_s']:.1f} | {r['eval_s']:.1f} | {r['total_s']:.1f} "
                         f"| {r['auto']} |")
        lines.append('')
    pr = results['profile']
    if pr:
        lines += ['| profile (floq default pieces) | ms | GFLOP/s |', '|---|---|---|']
        for k, v in pr.items():
            if isinstance(v, dict):
                rate_s = '' if v['flops_per_s'] is None else f"{v['flops_per_s'] / 1e9:.1f}"
                lines.append(f"| {k} | {v['ms']:.1f} | {rate_s} |")
        lines.append('')
    if results.get('end_to_end'):
        lines += [end_to_end.table(results['end_to_end'])]
    lines += ['| target | goal | measured | met | ceiling on this device (same run) |', '|---|---|---|---|---|']
    for k, v in results['targets'].items():
        ceiling = '-' if v.get('ceiling') is None else f"{v['ceiling']:.2f}"
        lines.append(f"| {k} | {v['goal']} | {v['value']:.2f} | {'yes' if v['met'] else 'NO'} | {ceiling} |")
    return '\n'.join(lines)
