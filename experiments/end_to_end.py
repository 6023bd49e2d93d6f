"""Whole runs timed from outside: floq-jax's ``train_offline`` and, given a checkout, the published code, at the
same config and protocol (``experiments.benchmark --sections=end_to_end``).

floq-jax trains all seeds in one process; the published code runs one process per seed, all at once (one per core
at the demo scale, the way its users run seeds).  Each side's time is the wall-clock from launching its processes
to the last one's exit.  floq-jax's run also writes where its time went (``floq_jax.training.timing``:
imports, data, setup, compile, training, logging, diagnostics, evaluation, checkpointing, closing); the rest of
the wall-clock (flag checks, interpreter exit) is ``other``.

Both sides read the same generated dataset (made once, cached, and not timed).  floq-jax starts from an empty
compilation cache unless ``warm_cache`` is set, so its compile phase is what a first run pays.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import Dict, List, Optional

from experiments import side_by_side

# Scales: 'demo' is experiments/demo.py's run (issue 17's comparison); 'quick' a short one; 'tiny' checks the
# machinery in the test suite (the tests' 'tiny' scale of floq_jax.scaling over the demo's networks; numbers
# meaningless).  ``agent_scale``: a floq_jax.scaling scale whose sizes are passed as --agent.<key> flags.
SCALES: Dict[str, dict] = {
    'demo': dict(task='cube-single-play-singletask-task2-v0', agent='floq', num_seeds=2, steps=70_000,
                 eval_interval=10_000, eval_episodes=50, dataset_episodes=100, extra=()),
    'quick': dict(task='cube-single-play-singletask-task2-v0', agent='floq', num_seeds=2, steps=10_000,
                  eval_interval=5_000, eval_episodes=10, dataset_episodes=100, extra=()),
    'tiny': dict(task='cube-single-play-singletask-task2-v0', agent='floq', num_seeds=2, steps=20,
                 eval_interval=20, eval_episodes=2, dataset_episodes=2, agent_scale='tiny',
                 extra=('--steps_per_call=10',)),
}
PHASE_ORDER = ('imports', 'data', 'setup', 'compile', 'training', 'logging', 'diagnostics', 'evaluation',
               'checkpointing', 'closing', 'other')


def agent_scale_flags(spec: dict) -> List[str]:
    """The ``--agent.<key>=<value>`` flags of ``spec``'s ``agent_scale`` (none without one): the keys the scale
    changes in the agent's defaults."""
    if not spec.get('agent_scale'):
        return []
    import agents
    from experiments import parity_harness
    from floq_jax.scaling import scaled_sizes

    return parity_harness.agent_flags(spec['agent'], scaled_sizes(agents.get_config(spec['agent']),
                                                                  spec['agent_scale']))[1:]


def dataset_for(spec: dict, cache_dir: Optional[str] = None) -> str:
    from floq_jax.data import ensure_generated_dataset, parse_name

    return ensure_generated_dataset(parse_name(spec['task']).dataset_name, spec['dataset_episodes'], seed=0,
                                    cache_dir=cache_dir, max_episode_steps=30 if spec['dataset_episodes'] <= 2 else None,
                                    num_workers=1 if spec['dataset_episodes'] <= 4 else None)


def run_floq_jax(spec: dict, dataset: str, work_dir: str, env: Optional[dict] = None, warm_cache: bool = False,
                 extra: List[str] = ()) -> dict:
    """One ``train_offline`` run of every seed in one process; its wall-clock and phase breakdown."""
    from floq_jax.training import timing

    save_dir = os.path.join(work_dir, 'floq_jax')
    shutil.rmtree(save_dir, ignore_errors=True)  # a fresh run, never a resumed one
    cache = [] if warm_cache else [f'--compile_cache_dir={os.path.join(work_dir, "jax_cache_empty")}']
    shutil.rmtree(os.path.join(work_dir, 'jax_cache_empty'), ignore_errors=True)
    cmd = side_by_side.floq_jax_command(spec['task'], dataset, spec['agent'], spec['num_seeds'], spec['steps'],
                                        spec['eval_interval'], spec['eval_episodes'], save_dir, 'end_to_end',
                                        extra=[*agent_scale_flags(spec), *spec['extra'], *cache, *extra])
    start = time.time()
    out = subprocess.run(cmd, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env,
                         capture_output=True, text=True)
    wall = time.time() - start
    if out.returncode != 0:
        raise RuntimeError(f'floq-jax run failed (exit {out.returncode}): {out.stderr[-2000:]}')
    run_dir = os.path.join(save_dir, 'end_to_end', spec['task'], spec['agent'], 'seed0')
    record = timing.read(run_dir)
    if record is None:
        raise RuntimeError(f'floq-jax run wrote no {timing.FILE} in {run_dir}')
    phases = dict(record['seconds'])
    # imports: from launch (here) to main, measured from the launch time rather than the process's start tick.
    phases['imports'] = max(record['process_start'] - start, 0.0) + phases.get('imports', 0.0)
    phases['other'] = max(wall - sum(phases.values()), 0.0)
    return dict(wall_s=wall, phases=phases, counts=record['counts'], command=' '.join(cmd[1:]),
                warm_cache=warm_cache)


def run_published(ref: dict, spec: dict, dataset: str, work_dir: str) -> dict:
    """The published ``main.py``, one process per seed, all started together; wall-clock until the last exits."""
    from experiments import parity_harness

    env = parity_harness.environment(os.path.join(work_dir, 'reference_env'), [dataset])
    overrides = side_by_side.agent_overrides(spec['agent'], spec['task'], 'published')
    procs, logs = [], []
    start = time.time()
    for seed in range(spec['num_seeds']):
        save = os.path.join(work_dir, 'published', f'seed{seed}')
        shutil.rmtree(save, ignore_errors=True)
        os.makedirs(save)
        cmd = parity_harness.main_command(ref['python'], spec['task'], spec['agent'], overrides, seed, spec['steps'],
                                     spec['eval_interval'], spec['eval_episodes'], save)
        log = open(os.path.join(save, 'stdout.log'), 'w')
        logs.append(log)
        procs.append((subprocess.Popen(cmd, cwd=ref['dir'], env=env, stdout=log, stderr=subprocess.STDOUT), cmd))
    ends = []
    for proc, _cmd in procs:
        if proc.wait() != 0:
            raise RuntimeError(f'published run failed (exit {proc.returncode}); see {work_dir}/published/*/stdout.log')
        ends.append(time.time() - start)
    for log in logs:
        log.close()
    return dict(wall_s=time.time() - start, per_process_s=ends, processes=len(procs),
                command=' '.join(procs[0][1][1:]), commit=ref.get('commit', ''))


def measure(scale: str, reference_dir: Optional[str] = None, reference_python: Optional[str] = None,
            work_dir: Optional[str] = None, warm_cache: bool = False, log=print, env: Optional[dict] = None,
            cache_dir: Optional[str] = None) -> dict:
    """Both codes at ``scale`` (published only when ``reference_dir`` is given); the result and its ratio."""
    from experiments import parity_harness

    spec = SCALES[scale]
    work_dir = work_dir or tempfile.mkdtemp(prefix='floq_end_to_end_')
    os.makedirs(work_dir, exist_ok=True)
    ref = parity_harness.check_reference(reference_dir, reference_python) if reference_dir else None
    dataset = dataset_for(spec, cache_dir)
    out = dict(scale=scale, spec={k: v for k, v in spec.items() if k != 'extra'}, work_dir=work_dir)
    log(f'[end_to_end] floq-jax: {spec["num_seeds"]} seeds x {spec["steps"]} updates in one process')
    out['floq_jax'] = run_floq_jax(spec, dataset, work_dir, env=env, warm_cache=warm_cache)
    log(f'[end_to_end] floq-jax: {out["floq_jax"]["wall_s"]:.1f} s')
    if ref is not None:
        log(f'[end_to_end] published: {spec["num_seeds"]} processes x {spec["steps"]} updates')
        out['published'] = run_published(ref, spec, dataset, work_dir)
        out['ratio'] = out['published']['wall_s'] / out['floq_jax']['wall_s']
        log(f'[end_to_end] published: {out["published"]["wall_s"]:.1f} s; ratio {out["ratio"]:.2f}')
    return out


def table(result: dict) -> str:
    """Markdown: the phase breakdown of floq-jax's run, the published run's wall-clock and the ratio."""
    s, fj = result['spec'], result['floq_jax']
    lines = [f"End to end ({result['scale']}): {s['task']}, {s['agent']}, {s['num_seeds']} seeds x {s['steps']} "
             f"updates, {s['eval_episodes']} evaluation episodes every {s['eval_interval']} (and at the start), "
             f"published evaluation protocol; compilation cache {'warm' if fj['warm_cache'] else 'empty'}", '',
             '| phase (floq-jax, all seeds in one process) | seconds | share | count |', '|---|---|---|---|']
    for name in PHASE_ORDER:
        if name in fj['phases']:
            v = fj['phases'][name]
            lines.append(f"| {name} | {v:.1f} | {100 * v / fj['wall_s']:.0f}% | {fj['counts'].get(name, '')} |")
    lines.append(f"| **total (wall-clock)** | **{fj['wall_s']:.1f}** | 100% | |")
    lines.append('')
    if 'published' in result:
        p = result['published']
        lines += ['| code | processes | wall-clock (s) |', '|---|---|---|',
                  f"| published ({p['commit'][:7] or 'checkout'}), one process per seed | {p['processes']} "
                  f"| {p['wall_s']:.1f} |",
                  f"| floq-jax | 1 | {fj['wall_s']:.1f} |", '',
                  f"Ratio (published / floq-jax wall-clock): **{result['ratio']:.2f}x**", '']
    return '\n'.join(lines)
