"""The experiment sweeps: every --scale=smoke entrypoint runs end to end and writes its table (md + csv) and plots
with finite numbers; plus fast checks of the shared sweep machinery (config layering, options, CIs).

The smoke runs share one small generated dataset (module-scoped cache) and the session's persistent JAX
compilation cache (tests/conftest.py: identical configs across experiments compile once).  Each entrypoint runs in
a subprocess with XLA's cheapest CPU optimisation level (compile time dominates a few hundred tiny updates).
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import agents
from floq_jax.analysis import report
from floq_jax import sweeps
from floq_jax.training import parallel
from tests.conftest import subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Per experiment: extra (file, numeric columns that must be finite) beyond results.{md,csv}, learning_curves.png.
EXTRA = {
    'main_table': [],
    'scale_k': [('scale_k_grid.csv', ['q_abs_error', 'q_bias', 'success']), ('q_error_grid.png', None),
                ('success_grid.png', None)],
    'noise_width': [('noise_width_diagnostics.csv', ['success', 'straightness', 'velocity_spread', 'q_change']),
                    ('curvature_vs_success.png', None)],
    'freeze_features': [('plasticity.csv', ['success', 'feature_norm', 'effective_rank', 'dormant_0']),
                        ('plasticity_vs_success.png', None)],
    'utd': [('utd.csv', ['success', 'steps_to_threshold', 'reached_fraction']), ('utd.png', None)],
    'mechanisms': [('mechanisms.csv', ['success']), ('mechanisms.png', None)],
}


@pytest.fixture(scope='module')
def smoke_dirs(tmp_path_factory):
    return dict(save_dir=str(tmp_path_factory.mktemp('sweeps')), data=str(tmp_path_factory.mktemp('data_cache')))


# The experiment that runs with the default --cpu_devices (its 2 seeds sharded over min(2, cores) XLA CPU devices);
# the others pass --cpu_devices=1: with pytest-xdist's 2 workers the cores are busy already, and sharded programs
# made this file's sequential smoke runs ~4 minutes slower.
AUTO_DEVICES = 'main_table'


def _run(name, dirs):
    env = subprocess_env()
    cmd = [sys.executable, '-m', f'experiments.{name}', '--scale=smoke', f'--save_dir={dirs["save_dir"]}',
           f'--cache_dir={dirs["data"]}']  # the compilation cache: the session's (tests/conftest.py)
    if name != AUTO_DEVICES:
        cmd.append('--cpu_devices=1')
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def _check_finite_csv(path, columns):
    df = pd.read_csv(path)
    assert len(df), path
    for col in columns:
        assert col in df.columns, (path, col, list(df.columns))
        values = pd.to_numeric(df[col], errors='coerce').to_numpy(float)
        assert np.isfinite(values).all(), (path, col, values)


@pytest.mark.parametrize('name', list(EXTRA))
def test_smoke_preset_writes_finite_table_and_plots(name, smoke_dirs):
    out = _run(name, smoke_dirs)
    assert out.returncode == 0, out.stderr[-3000:]
    root = os.path.join(smoke_dirs['save_dir'], name)
    for f in ('results.md', 'results.csv', 'learning_curves.png'):
        assert os.path.getsize(os.path.join(root, f)) > 0, f
    _check_finite_csv(os.path.join(root, 'results.csv'), ['mean', 'ci_low', 'ci_high'])
    md = open(os.path.join(root, 'results.md')).read()
    assert 'nan' not in md.lower().replace('nan ', 'x'), md
    assert 'generated' in md and 'smoke' in md
    for f, cols in EXTRA[name]:
        path = os.path.join(root, f)
        assert os.path.getsize(path) > 0, f
        if cols:
            _check_finite_csv(path, cols)
    # Standard run-directory layout with the sweep's flags.
    seeds = [os.path.join(dp) for dp, _, files in os.walk(root) if 'flags.json' in files]
    assert len(seeds) >= 2 and all(os.path.basename(d).startswith('seed') for d in seeds)
    # Default --cpu_devices: the smoke preset's 2 seeds are split over min(2, cores) XLA CPU devices.
    with open(os.path.join(seeds[0], 'flags.json')) as f:
        assert json.load(f)['cpu_devices'] == (parallel.cpu_devices_for(2) if name == AUTO_DEVICES else 1)


# ----------------------------------------------------------------------------- fast checks of the machinery


def test_make_config_layers_preset_sizes_and_variant_overrides():
    v = sweeps.Variant('K4', 'floq', {'critic_flow_steps': 4})
    c = sweeps.make_config(v, sweeps.SMOKE_ENV, 'smoke', agents)
    assert c.critic_flow_steps == 4 and c.block_width == 32 and c.batch_size == 32
    paper = sweeps.make_config(sweeps.Variant('floq'), 'puzzle-4x4-play-singletask-task1-v0', 'paper', agents)
    assert paper.alpha == 1000.0 and paper.noise_coverage == 0.25 and paper.block_width == 512
    # the variant wins over the published preset
    mine = sweeps.make_config(sweeps.Variant('c', 'floq', {'noise_coverage': 0.5}),
                              'puzzle-4x4-play-singletask-task1-v0', 'paper', agents)
    assert mine.noise_coverage == 0.5
    fql = sweeps.make_config(sweeps.Variant('fql', 'fql_resnet'), sweeps.SMOKE_ENV, 'smoke', agents)
    assert fql.agent_name == 'fql_resnet' and fql.critic_resnet_width == 32
    with pytest.raises(ValueError, match='no key'):
        sweeps.make_config(sweeps.Variant('x', 'fql', {'critic_flow_steps': 2}), sweeps.SMOKE_ENV, 'smoke', agents)


def test_run_options_group_flags_and_overrides():
    sweep = sweeps.Sweep('s', [], [sweeps.SMOKE_ENV], preset='smoke', options={'num_seeds': 3}, save_dir='/tmp/x')
    v = sweeps.Variant('u4', 'floq', options={'utd_ratio': 4}, tags={'utd': 4})
    o = sweeps.run_options(sweep, v, sweeps.SMOKE_ENV)
    assert o.run_group == 's/u4' and o.num_seeds == 3 and o.utd_ratio == 4 and o.offline_steps == 100
    assert o.flags == {'variant': 'u4', 'sweep': 's', 'preset': 'smoke', 'sweep_agent': 'floq', 'cpu_devices': 1,
                       'utd': 4}


def test_sweep_cpu_devices_validation():
    sweep = sweeps.Sweep(name='x', variants=[sweeps.Variant('floq')], envs=['e'], options=dict(num_seeds=2))
    with pytest.raises(ValueError, match='--cpu_devices=0'):
        sweeps.configure_cpu_devices(sweep, 0)
    assert sweeps.configure_cpu_devices(sweep) == 1  # JAX already started here (and conftest sets a device count)


def test_mean_ci_and_suite():
    m, lo, hi = report.mean_ci([0.2, 0.4, 0.6])
    assert math.isclose(m, 0.4) and lo <= m <= hi and lo >= 0.2 and hi <= 0.6
    assert report.mean_ci([0.5]) == (0.5, 0.5, 0.5)
    assert all(math.isnan(x) for x in report.mean_ci([]))
    assert len(sweeps.SUITE) == 50 and len(set(sweeps.SUITE)) == 50


def test_every_paper_variant_builds_a_config():
    """The paper presets' variants (published per-env values + variant overrides) are valid agent configs."""
    from experiments import freeze_features, mechanisms, noise_width, scale_k, utd

    variants = (mechanisms.variants({'a', 'b', 'c', 'd'}, (2, 4, 6, 8), (4.0, 8.0, 16.0), True)
                + scale_k.variants(scale_k.PAPER_KS) + noise_width.variants(noise_width.PAPER)
                + utd.variants(['floq', 'fql'], utd.PAPER) + freeze_features.variants(250_000, True))
    for env in ('cube-double-play-singletask-task2-v0', 'antmaze-giant-navigate-singletask-task1-v0'):
        for v in variants:
            config = sweeps.make_config(v, env, 'paper', agents)
            for key, value in v.overrides.items():
                assert config[key] == value
    stale = [v for v in variants if v.name == 'floq_stale8'][0]
    assert sweeps.make_config(stale, 'antmaze-giant-navigate-singletask-task1-v0', 'paper', agents).critic_flow_steps == 8


def test_sweep_variants_flag_and_report_only_without_runs(tmp_path):
    """--variants is checked against the experiment's variants (freeze_features builds them from the run length:
    it used to accept none), and bad input is one line with exit code 2, before anything trains."""
    from tests.test_cli import error_line, run

    line = error_line(run(['--scale=smoke', '--variants=bogus', f'--save_dir={tmp_path}'],
                          module='experiments.freeze_features'))
    assert line == 'error: --variants: unknown bogus; accepted: floq_frozen, floq_t0_frozen, fql_frozen, fql_resnet_frozen'
    out = run(['--scale=smoke', '--variants=floq_frozen,fql_frozen', '--report_only', f'--save_dir={tmp_path}'],
              module='experiments.freeze_features')
    assert out.returncode == 2 and error_line(out).startswith('error: --report_only: '), out.stderr[-2000:]
    assert os.listdir(tmp_path) == []
