"""The experiment sweeps' smoke runs (tests/test_experiments.py, tests/test_experiments_regimes.py): every
``--scale=smoke`` entrypoint runs end to end and writes its table (md + csv) and plots with finite numbers.

The smoke runs of one test file share one small generated dataset (module-scoped cache) and the session's persistent
JAX compilation cache (tests/conftest.py: identical configs across experiments compile once).  Each entrypoint runs
in a subprocess with XLA's cheapest CPU optimisation level (compile time dominates a few hundred tiny updates).  The
six experiments are split over two files so that pytest-xdist's two workers (``--dist loadfile``) share them.
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd

from floq_jax import sweeps
from floq_jax.training import parallel
from tests.conftest import REPO, subprocess_env

# Per experiment: extra (file, numeric columns that must be finite) beyond results.{md,csv}, learning_curves.png.
EXTRA = {
    'main_table': [],
    'scale_k': [('scale_k_grid.csv', ['q_abs_error', 'q_bias', 'q_centered_error', 'success']),
                ('q_error_grid.png', None), ('q_rank_corr_grid.png', None),
                ('success_grid.png', None)],
    'noise_width': [('noise_width_diagnostics.csv', ['success', 'straightness', 'velocity_spread', 'q_change']),
                    ('curvature_vs_success.png', None)],
    'freeze_features': [('plasticity.csv', ['success', 'feature_norm', 'effective_rank', 'dormant_0']),
                        ('plasticity_vs_success.png', None)],
    'utd': [('utd.csv', ['success', 'q_abs_error', 'q_centered_error', 'steps_to_threshold',
                                'reached_fraction']), ('utd.png', None)],
    'mechanisms': [('mechanisms.csv', ['success', 'q_abs_error', 'q_centered_error']), ('mechanisms.png', None),
                   ('mechanisms_q_error.png', None)],
    'resnet_flops': [('resnet_flops.csv', ['critic_row_flops', 'flops_vs_floq', 'success'])],
}

# Extra flags of a smoke run: a subset of the variants that still runs every agent class and every kind of change
# once (the sweep machinery is the same for every variant; each training switch's update is unit-tested in
# tests/test_variants.py and tests/test_agents.py).  mechanisms: baseline FQL, the IQN agent, a floq training switch;
# freeze_features: floq and FQL-ResNet (FQL's class) frozen; utd: floq at UTD 1 and FQL at UTD 4.
EXTRA_FLAGS = {'mechanisms': ['--variants=fql,fql_iqn,floq_stale1'],
               'freeze_features': ['--variants=floq_frozen,fql_resnet_frozen'],
               'utd': ['--variants=floq_utd1,fql_utd4'],
               'resnet_flops': ['--variants=floq,fql_resnet_matched']}

# The experiment that runs with the default --cpu_devices (its 2 seeds sharded over min(2, cores) XLA CPU devices);
# the others pass --cpu_devices=1: with pytest-xdist's 2 workers the cores are busy already, and sharded programs
# made the sequential smoke runs ~4 minutes slower.
AUTO_DEVICES = 'main_table'

# The experiment whose smoke run is run a second time: every run is finished, so it is reused, not retrained.
RERUN = 'freeze_features'


def run(name, dirs, extra=()):
    cmd = [sys.executable, '-m', f'experiments.{name}', '--scale=smoke', f'--save_dir={dirs["save_dir"]}',
           f'--cache_dir={dirs["data"]}']  # the compilation cache: the session's (tests/conftest.py)
    if name != AUTO_DEVICES:
        cmd.append('--cpu_devices=1')
    cmd += [*EXTRA_FLAGS.get(name, []), *extra]
    return subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=900)


def check_finite_csv(path, columns):
    df = pd.read_csv(path)
    assert len(df), path
    for col in columns:
        assert col in df.columns, (path, col, list(df.columns))
        values = pd.to_numeric(df[col], errors='coerce').to_numpy(float)
        assert np.isfinite(values).all(), (path, col, values)


def check_smoke_run(name, dirs):
    """Runs experiment ``name`` at the smoke scale and checks what it wrote."""
    out = run(name, dirs)
    assert out.returncode == 0, out.stderr[-3000:]
    root = os.path.join(dirs['save_dir'], name)
    for f in ('results.md', 'results.csv', 'learning_curves.png'):
        assert os.path.getsize(os.path.join(root, f)) > 0, f
    check_finite_csv(os.path.join(root, 'results.csv'), ['mean', 'ci_low', 'ci_high'])
    md = open(os.path.join(root, 'results.md')).read()
    assert 'nan' not in md.lower().replace('nan ', 'x'), md
    assert 'generated' in md and 'smoke' in md
    # The measured time: the command as typed, the device, and one wall time per (variant, env) run.
    assert f'`python -m experiments.{name} --scale=smoke' in md and '## Measured time' in md, md
    with open(os.path.join(root, 'commands.json')) as f:  # the header names the devices the runs trained on
        assert f'device: {json.load(f)[0]["device"]} (training, commands.json).' in md, md
    with open(os.path.join(root, 'wall_times.json')) as f:
        times = json.load(f)
    assert times and all(v > 0 for v in times.values()), times
    with open(os.path.join(root, 'datasets.json')) as f:  # the content digest of the data every env trained on
        datasets = json.load(f)
    assert datasets and all(len(v) == 1 and len(v[0]['sha256']) == 64 for v in datasets.values()), datasets
    for f, cols in EXTRA[name]:
        path = os.path.join(root, f)
        assert os.path.getsize(path) > 0, f
        if cols:
            check_finite_csv(path, cols)
    # Standard run-directory layout with the sweep's flags.
    seeds = [os.path.join(dp) for dp, _, files in os.walk(root) if 'flags.json' in files]
    check_per_seed_files(name, root, seeds)
    check_report_selects_its_variants(name, dirs['save_dir'], seeds)
    if name == RERUN:
        check_rerun_reuses_finished_runs(name, dirs, times)
    assert len(seeds) >= 2 and all(os.path.basename(d).startswith('seed') for d in seeds)
    # Default --cpu_devices: the smoke preset's 2 seeds are split over min(2, cores) XLA CPU devices.
    with open(os.path.join(seeds[0], 'flags.json')) as f:
        assert json.load(f)['cpu_devices'] == (parallel.cpu_devices_for(2) if name == AUTO_DEVICES else 1)


def check_report_selects_its_variants(name, save_dir, seed_dirs):
    """A sweep's report reads only the runs of its own variants and envs from a root that holds others too."""
    flags = []
    for d in seed_dirs:
        with open(os.path.join(d, 'flags.json')) as f:
            flags.append(json.load(f))
    variants = sorted({f['variant'] for f in flags})
    envs = sorted({f['env_name'] for f in flags})

    def loaded(names, env_names):
        sweep = sweeps.Sweep(name, [sweeps.Variant(n) for n in names], env_names, save_dir=save_dir)
        return sorted((str(r.get('variant')), r.env_name) for r in sweeps.load_sweep_runs(sweep))

    assert loaded(variants, envs) == sorted((f['variant'], f['env_name']) for f in flags)
    assert loaded(variants[:1], envs) == sorted((f['variant'], f['env_name']) for f in flags
                                               if f['variant'] == variants[0])
    assert loaded(variants, ['no-such-env-v0']) == []


def check_rerun_reuses_finished_runs(name, dirs, times):
    """The same command again (for one of its variants: the last --variants wins): the finished run is found and
    reused, not retrained; the recorded wall times and commands stay those of the training, and the report is written
    again, of that variant only."""
    variant = sorted(times)[0].split('/')[0]
    root = os.path.join(dirs['save_dir'], name)
    with open(os.path.join(root, 'commands.json')) as f:
        commands = json.load(f)
    out = run(name, dirs, extra=[f'--variants={variant}'])
    assert out.returncode == 0, out.stderr[-3000:]
    with open(os.path.join(root, 'commands.json')) as f:  # an invocation that only reused is not a measurement
        assert json.load(f) == commands
    assert out.stdout.count('finished run reused') == 1 and f'{variant} on ' in out.stdout, out.stdout[-3000:]
    with open(os.path.join(root, 'wall_times.json')) as f:
        assert json.load(f) == times
    assert set(pd.read_csv(os.path.join(root, 'results.csv'))['variant']) == {variant}


# The sweeps whose critics are scored on held-out states: they also write the data-only baselines, and (except
# scale_k, whose scale_k_per_seed.csv has one row per seed and K') the per-seed critic measures.
HELDOUT = {'scale_k': 'scale_k_per_seed.csv', 'utd': sweeps.HELDOUT_PER_SEED_FILE,
           'mechanisms': sweeps.HELDOUT_PER_SEED_FILE}


def check_per_seed_files(name, root, seed_dirs):
    """per_seed.csv: one row per seed run, whose means per (variant, env) are results.csv's; the held-out sweeps'
    per-seed critic measures (no machine paths) and the baselines (a constant Q: its centered error is the spread
    of the held-out returns, no rank correlation; a ridge regression: finite measures)."""
    per_seed = pd.read_csv(os.path.join(root, sweeps.PER_SEED_FILE))
    assert len(per_seed) == len(seed_dirs), (len(per_seed), seed_dirs)
    assert per_seed[['variant', 'env_name', 'seed']].drop_duplicates().shape[0] == len(per_seed)
    results = pd.read_csv(os.path.join(root, 'results.csv'))
    results = results[results['stat'] == 'mean'] if 'stat' in results.columns else results
    means = per_seed.groupby(['env_name', 'variant'])['success'].agg(['mean', 'std', 'size']).reset_index()
    merged = means.merge(results, on=['env_name', 'variant'], suffixes=('', '_results'))
    assert len(merged) == len(means), (means, results)
    np.testing.assert_allclose(merged['mean'], merged['mean_results'], atol=1e-9)
    np.testing.assert_array_equal(merged['size'], merged['num_seeds'])
    for (variant, env, seed), last in per_seed.set_index(['variant', 'env_name', 'seed'])['last_eval_success'].items():
        (path,) = glob.glob(os.path.join(root, variant, env, '*', f'seed{seed}', 'eval.csv'))
        np.testing.assert_allclose(last, pd.read_csv(path)['evaluation/success'].iloc[-1], err_msg=path)
    if name in ('noise_width', 'freeze_features'):  # their train.csv metrics per seed, averaging to their tables
        metrics = pd.read_csv(os.path.join(root, sweeps.METRICS_PER_SEED_FILE))
        table = pd.read_csv(os.path.join(root, EXTRA[name][0][0]))
        col = EXTRA[name][0][1][1]
        m = metrics.groupby(['env_name', 'variant'])[col].mean().reset_index().merge(
            table, on=['env_name', 'variant'], suffixes=('', '_table'))
        assert len(m) == len(table) and len(metrics) == len(seed_dirs), (metrics, table)
        np.testing.assert_allclose(m[col], m[col + '_table'], rtol=1e-9)
    if name not in HELDOUT:
        return
    q = pd.read_csv(os.path.join(root, HELDOUT[name]))
    assert 'run_dir' not in q.columns and len(q) >= len(seed_dirs)
    assert set(zip(q['env_name'], q['seed'])) <= set(zip(per_seed['env_name'], per_seed['seed']))
    b = pd.read_csv(os.path.join(root, sweeps.BASELINES_FILE)).set_index('predictor')
    assert set(b.index) == {'constant', 'ridge'}, b
    assert np.isnan(b.loc['constant', 'q_rank_corr'])
    assert np.isfinite(b.loc['ridge', ['q_centered_error', 'q_rank_corr', 'q_rank_corr_ci_low',
                                       'q_rank_corr_ci_high']].to_numpy(float)).all(), b
    assert b['mc_states'].iloc[0] == q['mc_states'].iloc[0]  # the critics' held-out states
    md = open(os.path.join(root, 'results.md')).read()
    assert '## Baselines for the critic measures' in md
