"""The experiment sweeps: the offline experiments' smoke runs (main_table, scale_k, noise_width; the others are in
tests/test_experiments_regimes.py; both use tests/sweep_smoke.py), plus fast checks of the shared sweep machinery
(config layering, options, CIs).
"""

import math
import os

import pytest

import agents
from floq_jax.analysis import report
from floq_jax import sweeps
from tests import sweep_smoke


@pytest.mark.subprocess
@pytest.mark.parametrize('name', ['main_table', 'scale_k', 'noise_width', 'resnet_flops'])
def test_smoke_preset_writes_finite_table_and_plots(name, smoke_dirs):
    sweep_smoke.check_smoke_run(name, smoke_dirs)


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
    from floq_jax.training import devices

    assert sweeps.seed_count(sweep) == 2
    with pytest.raises(ValueError, match='--cpu_devices=0'):
        devices.start(sweeps.seed_count(sweep), 0, cache=False)
    assert devices.start(sweeps.seed_count(sweep), cache=False) == 1  # JAX already started (conftest sets a count)


def test_mean_ci_and_suite():
    m, lo, hi = report.mean_ci([0.2, 0.4, 0.6])
    assert math.isclose(m, 0.4) and lo <= m <= hi and lo >= 0.2 and hi <= 0.6
    assert report.mean_ci([0.5]) == (0.5, 0.5, 0.5)
    assert all(math.isnan(x) for x in report.mean_ci([]))
    assert len(sweeps.SUITE) == 50 and len(set(sweeps.SUITE)) == 50


def test_grouped_mean_ci_columns():
    """Per-group tables: one row per group in sorted order, num_seeds, and each value's mean with its CI columns
    (the same numbers as mean_ci on that group's values)."""
    import pandas as pd
    frame = pd.DataFrame({'env_name': ['b', 'a', 'a', 'b', 'a'], 'K': [1, 2, 2, 1, 2],
                          'err': [1.0, 2.0, 4.0, 3.0, 9.0], 'corr': [0.5, 0.1, 0.2, 0.5, 0.3]})
    table = report.grouped_mean_ci(frame, ['env_name', 'K'], ('err', 'corr'))
    assert list(table.columns) == ['env_name', 'K', 'num_seeds', 'err', 'err_ci_low', 'err_ci_high', 'corr',
                                   'corr_ci_low', 'corr_ci_high']
    assert table['env_name'].tolist() == ['a', 'b'] and table['num_seeds'].tolist() == [3, 2]
    a = table.iloc[0]
    assert (a['err'], a['err_ci_low'], a['err_ci_high']) == report.mean_ci([2.0, 4.0, 9.0])
    assert a['err_ci_low'] < a['err'] < a['err_ci_high']
    b = table.iloc[1]  # no spread: the point estimate three times
    assert (b['corr'], b['corr_ci_low'], b['corr_ci_high']) == (0.5, 0.5, 0.5)
    assert report.mean_ci_columns('x', [0.2, 0.4, 0.6]) == dict(zip(('x', 'x_ci_low', 'x_ci_high'),
                                                                    report.mean_ci([0.2, 0.4, 0.6])))
    single = report.grouped_mean_ci(frame, ['env_name'], ('err',))  # one group column: scalar keys
    assert single['env_name'].tolist() == ['a', 'b'] and single['err'].tolist() == [5.0, 2.0]


@pytest.mark.parametrize('scale', ['paper', 'cpu'])
def test_every_variant_of_a_scale_builds_a_config(scale):
    """The paper and cpu scales' variants (published per-env values, the scale's sizes, variant overrides) are valid
    agent configs."""
    from experiments import freeze_features, mechanisms, noise_width, scale_k, utd

    paper = scale == 'paper'
    variants = (mechanisms.variants({'a', 'b', 'c', 'd'}, mechanisms.STALE_STEPS[scale],
                                    mechanisms.TARGET_NOISE[scale], paper)
                + scale_k.variants(scale_k.TRAIN_KS[scale]) + noise_width.variants(noise_width.COVERAGES[scale])
                + utd.variants(['floq', 'fql'], utd.UTDS[scale]) + freeze_features.variants(250_000, True))
    envs = ('cube-double-play-singletask-task2-v0', 'antmaze-giant-navigate-singletask-task1-v0') if paper else \
        (sweeps.CPU_ENV, 'scene-play-singletask-task1-v0')
    for env in envs:
        for v in variants:
            config = sweeps.make_config(v, env, scale, agents)
            for key, value in v.overrides.items():
                assert config[key] == value
    stale = [v for v in variants if v.name == f'floq_stale{max(mechanisms.STALE_STEPS[scale])}'][0]
    assert sweeps.make_config(stale, envs[1], scale, agents).critic_flow_steps == (8 if paper else 4)


@pytest.mark.subprocess
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


def test_cpu_scale_config_and_per_experiment_defaults():
    """The cpu scale: demo-size networks over the published per-env values, 4 seeds, and every experiment has its
    own defaults at every scale."""
    from experiments import main_table, mechanisms, noise_width, scale_k, utd

    c = sweeps.make_config(sweeps.Variant('floq'), sweeps.CPU_ENV, 'cpu', agents)
    assert (c.block_width, c.critic_flow_steps, c.noise_samples, c.batch_size, c.alpha) == (128, 4, 2, 64, 300.0)
    resnet = sweeps.make_config(sweeps.Variant('r', 'fql_resnet'), sweeps.CPU_ENV, 'cpu', agents)
    assert resnet.critic_resnet_width == 128
    sweep = sweeps.Sweep('s', [], [sweeps.CPU_ENV], preset='cpu', save_dir='/tmp/x')
    o = sweeps.run_options(sweep, sweeps.Variant('floq'), sweeps.CPU_ENV)
    assert o.num_seeds >= 4 and o.offline_steps == sweeps.CPU_STEPS and o.eval_episodes == 50
    for table in (scale_k.TRAIN_KS, noise_width.COVERAGES, utd.UTDS, mechanisms.STALE_STEPS, mechanisms.TARGET_NOISE):
        assert set(table) == set(sweeps.PRESETS), table
    assert 16 in utd.UTDS['cpu'] and 8 in scale_k.TRAIN_KS['cpu'] and sweeps.CPU_ENV in main_table.CPU_ENVS


@pytest.mark.parametrize('scale', ['cpu', 'paper'])
def test_resnet_flops_matched_critic_is_the_closest_block_count(scale):
    """Claim (e)'s matched ResNet: of all block counts, its per-row critic FLOPs are the closest to floq's K velocity-net
    passes at the scale's sizes; the published-shape ResNet has 4 blocks of depth 2."""
    from experiments import resnet_flops

    sweep = sweeps.Sweep(name='resnet_flops', variants=[], envs=[sweeps.CPU_ENV], preset=scale, registry=agents)
    by_name = {v.name: v for v in resnet_flops.variants(sweep)}
    assert list(by_name) == ['floq', 'fql_resnet_matched', 'fql_resnet', 'fql']
    ob_dim, action_dim = 28, 5  # cube-single

    def flops(variant):
        return resnet_flops.critic_row_flops(sweeps.make_config(variant, sweeps.CPU_ENV, scale, agents), ob_dim,
                                             action_dim)

    # floq on cube at this scale (2 x W velocity net, K passes; input: s, a, the 50-bin value embedding, t):
    width, k = {'cpu': (128, 4), 'paper': (512, 8)}[scale]
    floq = flops(by_name['floq'])
    assert floq == k * 2 * ((ob_dim + action_dim + 50 + 1) * width + width * width + width)
    matched = by_name['fql_resnet_matched'].overrides
    blocks = matched['critic_resnet_blocks']
    assert matched['critic_resnet_block_depth'] == 2 and blocks >= 1

    def resnet(b):
        return flops(sweeps.Variant('r', 'fql_resnet', {'critic_resnet_blocks': b, 'critic_resnet_block_depth': 2}))

    assert abs(resnet(blocks) - floq) <= min(abs(resnet(blocks + 1) - floq), abs(resnet(max(1, blocks - 1)) - floq))
    published = by_name['fql_resnet'].overrides
    assert (published['critic_resnet_blocks'], published['critic_resnet_block_depth']) == (4, 2)


def test_per_seed_success_scores_the_last_evaluations_and_the_last_alone():
    """per_seed.csv's ``success`` is the mean of the scale's last_n evaluations (cpu: 2) and ``last_eval_success`` the
    last evaluation alone (after a late freeze, the only evaluation of the frozen critic)."""
    import pandas as pd

    from floq_jax import sweeps
    from floq_jax.analysis.report import Run

    sweep = sweeps.Sweep('freeze_features', [sweeps.Variant('floq_frozen', 'floq')], ['cube'], preset='cpu')
    runs = [Run(path=f'r{s}', flags=dict(env_name='cube', variant='floq_frozen', sweep_agent='floq', seed=s),
                eval=pd.DataFrame({'step': [15000, 45000, 30000, 60000], 'evaluation/success': [0.0, 0.2, 0.1, v]}))
            for s, v in ((0, 0.4), (1, 0.0))]
    df = sweeps.per_seed_success(sweep, runs)
    assert df['success'].tolist() == pytest.approx([0.3, 0.1]) and df['last_eval_success'].tolist() == [0.4, 0.0]
    assert df['last_eval_step'].tolist() == [60000, 60000]


def test_report_note_counts_the_seeds_it_reports():
    """A sweep directory written by two invocations (seeds 0-3, then ``--seed=4 --num_seeds=4``) reports 8 seeds, not
    the last invocation's 4; cells with different seed counts give the range.  The count is the results table's, the
    one its 'Seeds per cell' line gives."""
    import pandas as pd

    from floq_jax import sweeps
    from floq_jax.analysis import report
    from floq_jax.analysis.report import Run

    sweep = sweeps.Sweep('freeze_features', [sweeps.Variant('a', 'floq'), sweeps.Variant('b', 'fql')], ['cube'],
                         preset='cpu', options={'num_seeds': 4})

    def table(seeds_a, seeds_b):
        runs = [Run(path=f'{v}{s}', flags=dict(env_name='cube', variant=v, seed=s),
                    eval=pd.DataFrame({'step': [60000], 'evaluation/success': [0.1]}))
                for v, seeds in (('a', seeds_a), ('b', seeds_b)) for s in seeds]
        return report.results_table(runs, 'evaluation/success', last_n=1, group_by='variant', reps=10)

    assert ', 4 seeds,' in sweeps.run_length_note(sweep)
    assert ', 8 seeds,' in sweeps.run_length_note(sweep, table(range(8), range(8)))
    assert ', 4-8 seeds,' in sweeps.run_length_note(sweep, table(range(8), range(4)))


def test_sweep_records_the_digest_of_the_data_each_env_trained_on(tmp_path, monkeypatch):
    """datasets.json: one entry per distinct dataset of an env (content digests of the training and -val files);
    the same content again adds nothing, other content is added beside it with one logged line; an unchanged file is
    read once per process, a rewritten one (even at the same size) again."""
    import hashlib
    import json

    import numpy as np

    from floq_jax.sweeps import run as sweep_run

    reads = []
    monkeypatch.setattr(sweep_run, '_sha256', lambda path, read=sweep_run._sha256: reads.append(path) or read(path))

    sweep = sweeps.Sweep('s', [sweeps.Variant('floq', 'floq')], ['cube-single-play-singletask-task2-v0'],
                         save_dir=str(tmp_path), registry=agents)
    os.makedirs(sweep.root)
    data = tmp_path / 'data'
    data.mkdir()
    np.savez(data / 'cube-single-play-v0.npz', x=np.arange(3))
    np.savez(data / 'cube-single-play-v0-val.npz', x=np.arange(2))
    logged = []
    entry = sweeps.record_dataset(sweep, 'cube', str(data / 'cube-single-play-v0.npz'), logged.append)
    assert entry['sha256'] == hashlib.sha256((data / 'cube-single-play-v0.npz').read_bytes()).hexdigest()
    assert entry['val_sha256'] == hashlib.sha256((data / 'cube-single-play-v0-val.npz').read_bytes()).hexdigest()
    assert len(reads) == 2  # the training and -val files
    sweeps.record_dataset(sweep, 'cube', str(data / 'cube-single-play-v0.npz'), logged.append)
    assert not logged and len(json.load(open(os.path.join(sweep.root, sweeps.DATASETS_FILE)))['cube']) == 1
    assert len(reads) == 2  # unchanged: not read again
    np.savez(data / 'cube-single-play-v0.npz', x=np.arange(4))  # generated again, other content
    sweeps.record_dataset(sweep, 'cube', str(data / 'cube-single-play-v0.npz'), logged.append)
    recorded = json.load(open(os.path.join(sweep.root, sweeps.DATASETS_FILE)))['cube']
    assert len(recorded) == 2 and recorded[0]['sha256'] != recorded[1]['sha256']
    assert len(logged) == 1 and 'differs from the one earlier runs' in logged[0] and recorded[0]['sha256'][:12] in logged[0]
    size = os.path.getsize(data / 'cube-single-play-v0.npz')
    np.savez(data / 'cube-single-play-v0.npz', x=np.arange(4) + 1)  # rewritten at the same size: hashed again
    assert os.path.getsize(data / 'cube-single-play-v0.npz') == size
    entry = sweeps.record_dataset(sweep, 'cube', str(data / 'cube-single-play-v0.npz'), logged.append)
    assert entry['sha256'] == hashlib.sha256((data / 'cube-single-play-v0.npz').read_bytes()).hexdigest()
    assert len(json.load(open(os.path.join(sweep.root, sweeps.DATASETS_FILE)))['cube']) == 3
    assert reads.count(str(data / 'cube-single-play-v0-val.npz')) == 1  # never rewritten
