"""floq_jax.analysis.seed_tests: the tests over seeds behind the verdicts (docs/experiments.md)."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from floq_jax.analysis import seed_tests


def test_welch_matches_scipy_and_summary_form():
    x, y = [0.06, 0.10, 0.13, 0.20], [0.01, 0.03, 0.02, 0.05]
    ref = stats.ttest_ind(x, y, equal_var=False)
    got = seed_tests.welch(x, y)
    assert got['p'] == pytest.approx(ref.pvalue, rel=1e-9) and got['t'] == pytest.approx(ref.statistic, rel=1e-9)
    s = seed_tests.welch_from_summary(np.mean(x), np.std(x, ddof=1), 4, np.mean(y), np.std(y, ddof=1), 4)
    assert s['p'] == pytest.approx(ref.pvalue, rel=1e-9)
    assert math.isnan(seed_tests.welch_from_summary(0.0, 0.0, 4, 0.0, 0.0, 4)['p'])


def test_permutation_tests_are_exact():
    # Fully separated 4 vs 4: only the observed split and its mirror are as extreme.
    assert seed_tests.permutation([5, 6, 7, 8], [1, 2, 3, 4]) == pytest.approx(2 / 70)
    assert seed_tests.permutation([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    # Paired: 4 positive differences give the smallest p a sign-flip test over 4 pairs allows, 2/16.
    assert seed_tests.paired_permutation([2, 3, 4, 5], [1, 1, 1, 1]) == pytest.approx(0.125)
    assert seed_tests.smallest_p(4) == 0.125 and seed_tests.smallest_p(4, 4) == pytest.approx(2 / 70)
    assert seed_tests.paired_permutation([1, -1, 1, -1], [0, 0, 0, 0]) == 1.0


def test_welch_contrast_reduces_to_welch_for_two_groups():
    x, y = [0.06, 0.10, 0.13, 0.20], [0.01, 0.03, 0.02, 0.05]
    summary = [(np.mean(v), np.std(v, ddof=1), 4) for v in (x, y)]
    c = seed_tests.welch_contrast(summary, (1, -1))
    assert c['p'] == pytest.approx(stats.ttest_ind(x, y, equal_var=False).pvalue, rel=1e-9)
    # Equal changes in two agents: the difference of differences is 0, p = 1.
    same = seed_tests.welch_contrast(summary + summary, (1, -1, -1, 1))
    assert same['estimate'] == pytest.approx(0.0) and same['p'] == pytest.approx(1.0)


def test_power_is_the_noncentral_t():
    """seeds_per_arm and detectable_difference against the two-sample t test's power written out with scipy's
    noncentral t: at the returned seeds the power is 0.8; one seed fewer (rounded down) it is below."""
    def power(diff, sd, n):
        df, nc = 2 * n - 2, diff / sd * math.sqrt(n / 2)
        crit = stats.t.ppf(0.975, df)
        return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)

    n = seed_tests.seeds_per_arm(0.05, 0.10)
    assert power(0.05, 0.10, n) == pytest.approx(0.8, abs=1e-4) and power(0.05, 0.10, math.floor(n)) < 0.8
    assert seed_tests.seeds_per_arm(-0.05, 0.10) == pytest.approx(n)
    d = seed_tests.detectable_difference(0.10, 8)
    assert power(d, 0.10, 8) == pytest.approx(0.8, abs=1e-4)
    assert seed_tests.seeds_per_arm(d, 0.10) == pytest.approx(8, rel=1e-4)
    assert math.isinf(seed_tests.seeds_per_arm(0.0, 0.10)) and seed_tests.seeds_per_arm(0.1, 0.0) == 2.0
    # Paired (one-sample t on the differences): df n - 1, noncentrality d / sd * sqrt(n).
    dp = seed_tests.detectable_paired_difference(0.04, 8)
    crit = stats.t.ppf(0.975, 7)
    nc = dp / 0.04 * math.sqrt(8)
    assert stats.nct.sf(crit, 7, nc) + stats.nct.cdf(-crit, 7, nc) == pytest.approx(0.8, abs=1e-4)


def test_verdict_tests_recompute_the_committed_csvs():
    """experiments/verdict_tests.py on the committed result sets: its Welch p of main_table's cube cell is scipy's
    from results.csv's mean, std and n, and a result set without the variant is an error."""
    import os

    import pandas as pd

    from experiments import verdict_tests
    from tests.conftest import REPO

    root = os.path.join(REPO, 'docs', 'results')
    md = verdict_tests.build(root)
    r = pd.read_csv(os.path.join(root, 'main_table', 'results.csv')).set_index(['env_name', 'variant'])
    a, b = (r.loc[(verdict_tests.CUBE, v)] for v in ('floq', 'fql'))
    p = stats.ttest_ind_from_stats(a['mean'], a['std'], a['num_seeds'], b['mean'], b['std'], b['num_seeds'],
                                   equal_var=False).pvalue
    line = next(x for x in md.splitlines() if x.startswith('| main_table: cube floq vs FQL |'))
    assert f'| Welch | {verdict_tests.fmt_p(p)} |' in line, line
    # Against the paper's size (floq = 2 x FQL): the Welch-Satterthwaite t of floq - 2 x FQL, written out here.
    var = a['std'] ** 2 / a['num_seeds'] + 4 * b['std'] ** 2 / b['num_seeds']
    df = var ** 2 / ((a['std'] ** 2 / a['num_seeds']) ** 2 / (a['num_seeds'] - 1)
                     + (4 * b['std'] ** 2 / b['num_seeds']) ** 2 / (b['num_seeds'] - 1))
    p2x = 2 * stats.t.sf(abs(a['mean'] - 2 * b['mean']) / math.sqrt(var), df)
    line = next(x for x in md.splitlines() if x.startswith("| main_table: cube floq vs FQL, against the paper's size"))
    assert f'| Welch contrast | {verdict_tests.fmt_p(p2x)} |' in line, line
    # Power: the cube row's pooled SD and the seeds a 2x effect would take.
    sd = math.sqrt((a['std'] ** 2 + b['std'] ** 2) / 2)
    line = next(x for x in md.splitlines() if x.startswith('| main_table: cube floq vs FQL | 8 |'))
    assert f'| {sd:.3f} |' in line and line.rstrip(' |').endswith(str(math.ceil(seed_tests.seeds_per_arm(b['mean'], sd)))), line
    with pytest.raises(ValueError, match='no single mean row'):
        verdict_tests.success_stats(root, 'main_table', verdict_tests.CUBE, 'no_such_variant')
    # A held-out test from per-seed values: utd_to128's floq at UTD 128 vs 16, paired by seed, is scipy's paired t.
    h = pd.read_csv(os.path.join(root, 'utd_to128', 'heldout_q_per_seed.csv'))
    x128, x16 = (h[h['variant'] == f'floq_utd{u}'].sort_values('seed')['q_centered_error'] for u in (128, 16))
    p = stats.ttest_rel(x128.to_numpy(), x16.to_numpy()).pvalue
    line = next(x for x in md.splitlines() if x.startswith('| utd_to128: floq centered error, UTD 128 vs 16, paired'))
    assert f'| paired t | {verdict_tests.fmt_p(p)} |' in line, line
    with pytest.raises(ValueError, match='no single row per seed'):
        verdict_tests.heldout_per_seed(root, 'utd_to128', verdict_tests.CUBE, 'no_such_variant')
    # Between the agents the rule pairs by seed too: utd's floq vs FQL at UTD 16, paired, is scipy's paired t.
    u = pd.read_csv(os.path.join(root, 'utd', 'heldout_q_per_seed.csv'))
    xf, xq = (u[u['variant'] == v].sort_values('seed')['q_centered_error'].to_numpy() for v in ('floq_utd16', 'fql_utd16'))
    line = next(x for x in md.splitlines() if x.startswith('| utd: centered error at UTD 16, floq vs FQL, paired by seed'))
    assert f'| paired t | {verdict_tests.fmt_p(stats.ttest_rel(xf, xq).pvalue)} |' in line, line
    # A seed with two rows (e.g. two invocations written into one file) is refused, not averaged or picked from.
    twice = pd.concat([h, h[h['variant'] == 'floq_utd1'].head(1)])
    with pytest.raises(ValueError, match='x.csv: no single row per seed for floq_utd1'):
        verdict_tests.one_row_per_seed(twice, 'floq_utd1', 'q_centered_error', 'x.csv')
    assert len(verdict_tests.one_row_per_seed(h, 'floq_utd1', 'q_centered_error', 'x.csv')) == 4
    # The late freeze: each frozen seed against its unfrozen twin (the same seed index in resnet_flops), paired.
    frozen, twin = (pd.read_csv(os.path.join(root, rs, 'per_seed.csv')) for rs in ('freeze_features_late', 'resnet_flops'))
    xa = frozen[frozen['variant'] == 'floq_frozen'].set_index('seed')['last_eval_success']
    xb = twin[twin['variant'] == 'floq'].set_index('seed')['last_eval_success'].loc[xa.index]
    p = stats.ttest_rel(xa.to_numpy(), xb.to_numpy()).pvalue
    line = next(x for x in md.splitlines() if x.startswith('| freeze at 45k, 60k evaluation, the one after the freeze: '
                                                            'floq frozen vs unfrozen'))
    assert f'| paired t | {verdict_tests.fmt_p(p)} |' in line, line
    # main_table at 8 seeds: floq vs FQL on scene paired by seed is scipy's paired t on per_seed.csv, and the note
    # names the smallest sign-flip p of 8 pairs (2 / 2^8), not 4 pairs'.
    d = pd.read_csv(os.path.join(root, 'main_table', 'per_seed.csv'))
    xa, xb = (d[(d['env_name'] == verdict_tests.SCENE) & (d['variant'] == v)].sort_values('seed')['success']
              for v in ('floq', 'fql'))
    assert len(xa) == len(xb) == 8
    p = stats.ttest_rel(xa.to_numpy(), xb.to_numpy()).pvalue
    line = next(x for x in md.splitlines() if x.startswith('| main_table: scene floq vs FQL, paired by seed |'))
    assert f'| paired t | {verdict_tests.fmt_p(p)} |' in line and 'sign-flip p >= 0.008' in line, line
    # noise_width's curvature per seed: the widest vs no noise, paired by seed, is scipy's paired t.
    m = pd.read_csv(os.path.join(root, 'noise_width', 'metrics_per_seed.csv'))
    xa, xb = (m[m['variant'] == v].sort_values('seed')['straightness'] for v in ('cov1', 'cov0'))
    p = stats.ttest_rel(xa.to_numpy(), xb.to_numpy()).pvalue
    line = next(x for x in md.splitlines() if x.startswith('| noise_width: straightness, cov1 vs cov0, paired by seed'))
    assert f'| paired t | {verdict_tests.fmt_p(p)} |' in line, line


@pytest.mark.subprocess
def test_critic_baselines_entrypoint_writes_the_table(tmp_path):
    """experiments/critic_baselines.py at the smoke scale: the baselines of the smoke data, on the held-out states the
    sweeps use, in <save_dir>/<sweep_name>/critic_baselines.csv."""
    import os
    import subprocess
    import sys

    import pandas as pd

    from floq_jax import sweeps
    from tests.conftest import REPO, subprocess_env

    out = subprocess.run([sys.executable, '-m', 'experiments.critic_baselines', '--scale=smoke', '--sweep_name=utd',
                          f'--save_dir={tmp_path}', f'--cache_dir={tmp_path / "data"}'], cwd=REPO,
                         env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    b = pd.read_csv(os.path.join(tmp_path, 'utd', sweeps.BASELINES_FILE)).set_index('predictor')
    assert list(b.index) == ['constant', 'ridge'] and (b['env_name'] == sweeps.SMOKE_ENV).all()
    assert np.isnan(b.loc['constant', 'q_rank_corr']) and np.isfinite(b.loc['ridge', 'q_centered_error'])
    assert '## Baselines for the critic measures' in out.stdout


def test_equivalence_is_two_one_sided_welch_tests():
    x = [0.10, 0.12, 0.14, 0.11, 0.13, 0.12, 0.10, 0.14]
    y = [v + 0.01 for v in x[::-1]]
    e = seed_tests.equivalence(x, y, margin=0.05)
    assert e['diff'] == pytest.approx(-0.01) and e['equivalent']
    # The TOST p is the larger of the two one-sided Welch p values against the shifted nulls.
    lower = stats.ttest_ind(np.add(x, 0.05), y, equal_var=False, alternative='greater').pvalue
    upper = stats.ttest_ind(np.subtract(x, 0.05), y, equal_var=False, alternative='less').pvalue
    assert e['p'] == pytest.approx(max(lower, upper), rel=1e-9)
    # Its 90% CI is Welch's: inside the margin iff equivalent; a tighter margin than the difference is not.
    assert -0.05 < e['ci_low'] < e['diff'] < e['ci_high'] < 0.05
    assert not seed_tests.equivalence(x, y, margin=0.005)['equivalent']
    # Wide spread with 2 seeds: undecided even though the means are equal.
    assert not seed_tests.equivalence([0.0, 0.3], [0.3, 0.0], margin=0.05)['equivalent']


def test_mechanisms_rows_come_from_the_set_that_holds_each_part(tmp_path):
    """verdict_tests' mechanisms rows: a part in the re-run (per-seed files) is tested paired by seed as scipy does,
    its held-out measures too; part a comes from its own set; a variant with fewer seeds than its baseline is paired
    on the seeds both have."""
    import os
    import shutil

    import pandas as pd

    from experiments import verdict_tests
    from tests.conftest import REPO

    root = os.path.join(REPO, 'docs', 'results')
    md = verdict_tests.build(root).splitlines()

    def line(prefix):
        return next(x for x in md if x.startswith(prefix))

    s = pd.read_csv(os.path.join(root, 'mechanisms', 'per_seed.csv'))
    xb, xf = (s[s['variant'] == v].sort_values('seed')['success'].to_numpy() for v in ('floq_predict_final', 'floq'))
    assert f'| paired t | {verdict_tests.fmt_p(stats.ttest_rel(xb, xf).pvalue)} |' in \
        line('| (b) success predict_final vs floq, paired by seed |')
    h = pd.read_csv(os.path.join(root, 'mechanisms', 'heldout_q_per_seed.csv'))
    xb, xf = (h[h['variant'] == v].sort_values('seed')['q_centered_error'].to_numpy() for v in ('floq_stale2', 'floq'))
    assert f'| paired t | {verdict_tests.fmt_p(stats.ttest_rel(xb, xf).pvalue)} |' in \
        line('| (c) q_centered_error, stale2 vs floq, paired by seed |')
    # Part a: its own set (run later, with its own baselines on its dataset file), per-seed rows for both halves.
    assert line("| (a) of mechanisms_part_a (4 seeds; its own baselines): success distributional floq vs floq, paired")
    assert line("| (a) of mechanisms_part_a (4 seeds; its own baselines): q_centered_error, FQL-IQN vs FQL, paired")
    assert not [x for x in md if x.startswith('| (a) of 2026-12-03')]
    # A variant run at 4 seeds beside 8-seed baselines: Welch over all seeds, paired over the 4 both have.
    shutil.copytree(os.path.join(root, 'mechanisms'), tmp_path / 'mechanisms')
    short = s[~((s['variant'] == 'floq_stale2') & (s['seed'] >= 4))]
    short.to_csv(tmp_path / 'mechanisms' / 'per_seed.csv', index=False)
    xs, xf = (short[short['variant'] == v].set_index('seed')['success'] for v in ('floq_stale2', 'floq'))
    rows = verdict_tests.all_and_common_seed_rows('x', xs, xf)
    assert f'| Welch | {verdict_tests.fmt_p(stats.ttest_ind(xs, xf, equal_var=False).pvalue)} |' in rows[0]
    assert rows[1].endswith('; the 4 seeds both have |') and \
        f'| {verdict_tests.fmt_p(stats.ttest_rel(xs, xf.loc[xs.index]).pvalue)} |' in rows[1]
    xs, xf, note = verdict_tests.comparison_samples(str(tmp_path), 'mechanisms', verdict_tests.CUBE, 'floq_stale2',
                                                    'floq')
    assert (len(xs), len(xf), note) == (4, 8, '')
    pa, pb = verdict_tests.common_seeds(xs, xf)
    assert list(pa.index) == list(pb.index) == [0, 1, 2, 3]


def _copy_results(tmp_path, leave_out=()):
    """docs/results' committed sets copied under ``tmp_path`` (less ``leave_out``); returns the copy's root."""
    import os
    import shutil

    from tests.conftest import REPO

    root = os.path.join(REPO, 'docs', 'results')
    for name in os.listdir(root):
        if os.path.isdir(os.path.join(root, name)) and name not in leave_out:
            shutil.copytree(os.path.join(root, name), tmp_path / name)
    return str(tmp_path)


def test_a_mechanisms_variant_is_compared_only_with_its_own_runs_baselines(tmp_path):
    """A mechanisms part run on its own (mechanisms_part_a) is tested against the floq and FQL trained beside it (the
    same dataset file), paired by seed; a part set without them is refused in one line instead of being paired with
    another run's baselines (generated files differ between hosts)."""
    import pandas as pd

    from experiments import verdict_tests

    root = _copy_results(tmp_path, leave_out=(verdict_tests.MECH_A,))
    # A stand-in for part a's run: the re-run's stale2 rows of seeds 0-3 named floq_distributional, without baselines.
    (tmp_path / verdict_tests.MECH_A).mkdir()
    for f in ('results.csv', 'per_seed.csv', 'heldout_q_per_seed.csv'):
        d = pd.read_csv(tmp_path / 'mechanisms' / f)
        part = d[d['variant'] == 'floq_stale2'].assign(variant='floq_distributional')
        if 'seed' in d.columns:
            part = part[part['seed'] < 4]
        part.to_csv(tmp_path / verdict_tests.MECH_A / f, index=False)
    with pytest.raises(ValueError, match='floq_distributional has no floq beside it'):
        verdict_tests.build(root)
    for f in ('results.csv', 'per_seed.csv', 'heldout_q_per_seed.csv'):  # its own baseline: floq's seeds 4-7 as 0-3
        d = pd.read_csv(tmp_path / 'mechanisms' / f)
        own = d[d['variant'] == 'floq']
        if 'seed' in own.columns:
            own = own[own['seed'] >= 4].assign(seed=own['seed'] - 4)
        pd.concat([pd.read_csv(tmp_path / verdict_tests.MECH_A / f), own]).to_csv(tmp_path / verdict_tests.MECH_A / f,
                                                                                 index=False)
    assert verdict_tests.mechanisms_set(root, 'floq_distributional', 'floq') == 'mechanisms_part_a'
    assert verdict_tests.mechanisms_set(root, 'fql_iqn', 'fql') == 'mechanisms_2026-12-03'
    md = verdict_tests.build(root).splitlines()
    s = pd.read_csv(tmp_path / 'mechanisms' / 'per_seed.csv')
    xd = s[(s['variant'] == 'floq_stale2') & (s['seed'] < 4)]['success'].to_numpy()
    xo = s[(s['variant'] == 'floq') & (s['seed'] >= 4)]['success'].to_numpy()
    label = '(a) of mechanisms_part_a (4 seeds; its own baselines): '
    paired = next(x for x in md if x.startswith(f'| {label}success distributional floq vs floq, paired by seed |'))
    assert f'| {verdict_tests.fmt_p(stats.ttest_rel(xd, xo).pvalue)} |' in paired
    assert 'seeds both have' not in paired
    h = pd.read_csv(tmp_path / 'mechanisms' / 'heldout_q_per_seed.csv')
    hd = h[(h['variant'] == 'floq_stale2') & (h['seed'] < 4)]['q_centered_error'].to_numpy()
    ho = h[(h['variant'] == 'floq') & (h['seed'] >= 4)]['q_centered_error'].to_numpy()
    held = next(x for x in md if x.startswith(f'| {label}q_centered_error, distributional floq vs floq |'))
    assert f'| Welch | {verdict_tests.fmt_p(stats.ttest_ind(hd, ho, equal_var=False).pvalue)} |' in held
    assert not any(x.startswith('| (a) of 2026-12-03 (older protocol, 4 seeds): success distributional') for x in md)
    assert any(x.startswith('| (a) of 2026-12-03 (older protocol, 4 seeds): success FQL-IQN vs FQL |') for x in md)


def test_a_seed_batch_extends_its_result_set_with_its_own_twins(tmp_path):
    """A result set's later seeds, committed as a batch directory (SEED_BATCHES), count as the set's own: success
    statistics, paired tests and feature metrics over all 8 seeds.  The batch's frozen runs are paired with the
    unfrozen twins the batch trained itself, the first seeds' with resnet_flops'; a seed in two batches is refused."""
    import pandas as pd

    from experiments import verdict_tests

    batch = verdict_tests.SEED_BATCHES['freeze_features'][0]
    root = _copy_results(tmp_path, leave_out=(batch,))
    # A stand-in for seeds 4-7: seeds 0-3's frozen rows with seeds shifted and success halved, and unfrozen twins
    # (resnet_flops' seeds 0-3 rows, success scaled by 0.75) trained by the batch itself.
    (tmp_path / batch).mkdir()
    first = {f: pd.read_csv(tmp_path / 'freeze_features' / f) for f in ('per_seed.csv', 'metrics_per_seed.csv')}
    twins = pd.read_csv(tmp_path / 'resnet_flops' / 'per_seed.csv')
    twins = twins[twins['variant'].isin(['floq', 'fql', 'fql_resnet']) & (twins['seed'] < 4)]
    # As committed, the batch has no floq_t0 (beyond reach at 8 seeds): its comparisons pair the 4 seeds both have.
    first = {f: d[d['variant'] != 'floq_t0_frozen'] for f, d in first.items()}
    pd.concat([first['per_seed.csv'].assign(seed=lambda d: d['seed'] + 4, success=lambda d: d['success'] / 2),
               twins.assign(seed=lambda d: d['seed'] + 4, success=lambda d: d['success'] * 0.75)]).to_csv(
        tmp_path / batch / 'per_seed.csv', index=False)
    first['metrics_per_seed.csv'].assign(seed=lambda d: d['seed'] + 4).to_csv(tmp_path / batch / 'metrics_per_seed.csv',
                                                                            index=False)
    # Its results.csv: its own variants (the frozen ones, and the twins' rows as resnet_flops has them), the same
    # protocol and data.
    results = pd.read_csv(tmp_path / 'freeze_features' / 'results.csv')
    resnet = pd.read_csv(tmp_path / 'resnet_flops' / 'results.csv')
    results = pd.concat([results[results['variant'] != 'floq_t0_frozen'],
                         resnet[resnet['variant'].isin(['floq', 'fql', 'fql_resnet'])]], ignore_index=True)
    results.to_csv(tmp_path / batch / 'results.csv', index=False)
    s = pd.concat([pd.read_csv(tmp_path / x / 'per_seed.csv') for x in ('freeze_features', batch)])
    xa, xb = (s[s['variant'] == v].sort_values('seed')['success'] for v in ('floq_frozen', 'fql_resnet_frozen'))
    assert len(xa) == len(xb) == 8
    assert verdict_tests.success_stats(root, 'freeze_features', verdict_tests.CUBE, 'floq_frozen') == \
        pytest.approx((xa.mean(), xa.std(ddof=1), 8))
    md = verdict_tests.build(root).splitlines()
    welch = next(x for x in md if x.startswith('| freeze at 15k: frozen floq vs frozen FQL-ResNet |'))
    assert f'| Welch | {verdict_tests.fmt_p(stats.ttest_ind(xa, xb, equal_var=False).pvalue)} |' in welch
    paired = next(x for x in md if x.startswith('| freeze at 15k: frozen floq vs frozen FQL-ResNet, paired by seed |'))
    assert f'| paired t | {verdict_tests.fmt_p(stats.ttest_rel(xa, xb).pvalue)} |' in paired
    m = pd.concat([pd.read_csv(tmp_path / x / 'metrics_per_seed.csv') for x in ('freeze_features', batch)])
    ea, eb = (m[m['variant'] == v].sort_values('seed')['effective_rank'] for v in ('floq_frozen', 'fql_frozen'))
    rank = next(x for x in md if x.startswith('| freeze at 15k: effective_rank, floq_frozen vs fql_frozen, paired'))
    assert f'| paired t | {verdict_tests.fmt_p(stats.ttest_rel(ea, eb).pvalue)} |' in rank
    # floq_t0 is not in the batch: its comparisons, unpaired too, use only the directory both variants have (the
    # batch is another invocation, maybe on another host's data file).
    t0 = s[s['variant'] == 'floq_t0_frozen'].sort_values('seed')['success']
    assert len(t0) == 4
    only = '| over freeze_features only (the directories both variants have)'
    welch = next(x for x in md if x.startswith('| freeze at 15k: frozen floq vs frozen floq_t0 |'))
    assert f'| Welch | {verdict_tests.fmt_p(stats.ttest_ind(xa.iloc[:4], t0, equal_var=False).pvalue)} |' in welch
    assert welch.endswith(f'{only} |')
    paired = next(x for x in md if x.startswith('| freeze at 15k: frozen floq vs frozen floq_t0, paired by seed |'))
    assert f'| paired t | {verdict_tests.fmt_p(stats.ttest_rel(xa.iloc[:4], t0).pvalue)} |' in paired
    assert f'{only}; sign-flip p >= 0.125 |' in paired
    power = next(x for x in md if x.startswith('| freeze at 15k: frozen floq vs frozen floq_t0 | 4 |'))
    assert f'| {xa.iloc[:4].mean() - t0.mean():+.3f} |' in power
    ra, rb = (m[m['variant'] == v].sort_values('seed')['effective_rank'] for v in ('floq_frozen', 'floq_t0_frozen'))
    rank = next(x for x in md if x.startswith('| freeze at 15k: effective_rank, floq_frozen vs floq_t0_frozen |'))
    assert f'| Welch | {verdict_tests.fmt_p(stats.ttest_ind(ra.iloc[:4], rb, equal_var=False).pvalue)} |' in rank
    loss = next(x for x in md if x.startswith('| freeze at 15k: critic/critic_loss, floq_frozen vs floq_t0_frozen, '
                                              'paired by seed |'))
    assert f'{only}; sign-flip p >= 0.125 |' in loss
    # The twins: resnet_flops' floq for seeds 0-3, the batch's own floq for seeds 4-7.
    r = pd.read_csv(tmp_path / 'resnet_flops' / 'per_seed.csv')
    unfrozen = pd.concat([r[(r['variant'] == 'floq') & (r['seed'] < 4)]['success'],
                          twins[twins['variant'] == 'floq'].sort_values('seed')['success'] * 0.75]).to_numpy()
    twin = next(x for x in md if x.startswith('| freeze at 15k, score (45k and 60k): floq frozen vs unfrozen, paired'))
    assert f'| paired t | {verdict_tests.fmt_p(stats.ttest_rel(xa.to_numpy(), unfrozen).pvalue)} |' in twin
    assert f'unfrozen: resnet_flops (seeds 0-3), {batch} (seeds 4-7); sign-flip p >= 0.008' in twin
    # Their figures over the 8 seeds, and the per-seed drops, with bootstrap CIs (the batches' section).
    twins_row = (f'| floq: the unfrozen twins of floq_frozen (resnet_flops (seeds 0-3), {batch} (seeds 4-7)) | 8 (0-7) | '
                 f'{verdict_tests.mean_ci_cell(unfrozen)} |')
    drops_row = (f'| floq: drop when frozen (twin - floq_frozen, per seed) | 8 (0-7) | '
                 f'{verdict_tests.mean_ci_cell(unfrozen - xa.to_numpy())} |')
    assert any(x.startswith(twins_row) for x in md) and any(x.startswith(drops_row) for x in md)
    # The set's figures over all its seeds (no single directory's report has them): mean [bootstrap CI] per variant.
    from floq_jax.analysis import report

    m, lo, hi = report.mean_ci(xa.to_numpy())
    assert any(x.startswith(f'| floq_frozen | 8 (0-7) | {m:.4g} [{lo:.4g}, {hi:.4g}] |') for x in md)
    assert any(x.startswith('| floq_t0_frozen | 4 (0-3) |') for x in md)
    assert not any(x.startswith('| floq | ') for x in md)  # the batch's own twins are not the set's variants
    last = next(x for x in md if x.startswith('| freeze at 15k: frozen floq vs frozen FQL-ResNet, 60k evaluation alone, '
                                              'paired by seed |'))
    la, lb = (s[s['variant'] == v].sort_values('seed')['last_eval_success'] for v in ('floq_frozen', 'fql_resnet_frozen'))
    assert f'| paired t | {verdict_tests.fmt_p(stats.ttest_rel(la, lb).pvalue)} |' in last
    power = next(x for x in md if x.startswith('| freeze at 15k: frozen floq vs frozen FQL-ResNet | 8 |'))
    assert f'| {xa.mean() - xb.mean():+.3f} |' in power
    # A batch is paired only with twins it trained itself, never with another run's (resnet_flops' seeds 4-7).
    full = pd.read_csv(tmp_path / batch / 'per_seed.csv')
    full[full['variant'] != 'fql_resnet'].to_csv(tmp_path / batch / 'per_seed.csv', index=False)
    with pytest.raises(ValueError, match=f'{batch}/fql_resnet_frozen: not every seed has an unfrozen twin in {batch}/'):
        verdict_tests.build(root)
    full.to_csv(tmp_path / batch / 'per_seed.csv', index=False)
    # A batch run under another protocol is refused.
    results.assign(success_timing='pre').to_csv(tmp_path / batch / 'results.csv', index=False)
    with pytest.raises(ValueError, match='other protocols or data'):
        verdict_tests.build(root)
    results.to_csv(tmp_path / batch / 'results.csv', index=False)
    # The data: a set and its batch are pooled, not paired, and may have trained on other hosts' files (as the
    # committed batch did); a freeze directory and the set of its twins, paired by seed, must record the same digests
    # where both record them.
    entry = {verdict_tests.CUBE: [dict(file='cube-single-play-v0.npz', sha256='a' * 64, val_sha256='b' * 64)]}
    for x in ('freeze_features', 'resnet_flops'):
        (tmp_path / x / 'datasets.json').write_text(json.dumps(entry))
    (tmp_path / batch / 'datasets.json').write_text(json.dumps({verdict_tests.CUBE: [dict(entry[verdict_tests.CUBE][0],
                                                                                          sha256='d' * 64)]}))
    assert verdict_tests.build(root).splitlines() == md
    entry[verdict_tests.CUBE][0]['sha256'] = 'c' * 64
    (tmp_path / 'resnet_flops' / 'datasets.json').write_text(json.dumps(entry))
    with pytest.raises(ValueError, match='trained on other data: freeze_features/datasets.json and resnet_flops/'):
        verdict_tests.freeze_lines(root, 'freeze_features', '15k', verdict_tests.EARLY_FREEZE)
    for x in ('freeze_features', 'resnet_flops', batch):
        (tmp_path / x / 'datasets.json').unlink()
    # The set of the first seeds' twins is checked too.
    resnet.assign(success_timing='pre').to_csv(tmp_path / 'resnet_flops' / 'results.csv', index=False)
    with pytest.raises(ValueError, match='freeze_features and resnet_flops .the set of its unfrozen twins. name other '
                                         'protocols'):
        verdict_tests.freeze_lines(root, 'freeze_features', '15k', verdict_tests.EARLY_FREEZE)
    resnet.to_csv(tmp_path / 'resnet_flops' / 'results.csv', index=False)
    # A file the set has and a batch lacks; a batch that is not there.
    (tmp_path / batch / 'metrics_per_seed.csv').rename(tmp_path / 'metrics.csv')
    with pytest.raises(ValueError, match=f'{batch}/metrics_per_seed.csv missing; a seed batch commits the same files'):
        verdict_tests.freeze_feature_lines(root, 'freeze_features', '15k')
    (tmp_path / 'metrics.csv').rename(tmp_path / batch / 'metrics_per_seed.csv')
    (tmp_path / batch).rename(tmp_path / 'elsewhere')
    with pytest.raises(ValueError, match=f'{batch} .SEED_BATCHES. is missing'):
        verdict_tests.set_dirs(root, 'freeze_features')
    (tmp_path / 'elsewhere').rename(tmp_path / batch)
    # A seed twice, in two directories or in one.
    pd.read_csv(tmp_path / 'freeze_features' / 'per_seed.csv').to_csv(tmp_path / batch / 'per_seed.csv', index=False)
    with pytest.raises(ValueError, match=f'appears more than once: floq_frozen seed 0 on {verdict_tests.CUBE} in '
                                         'freeze_features;'):
        verdict_tests.read_set_csv(root, 'freeze_features', 'per_seed.csv')
    pd.concat([full, full.iloc[:1]]).to_csv(tmp_path / batch / 'per_seed.csv', index=False)
    with pytest.raises(ValueError, match=f'appears more than once: {full.iloc[0]["variant"]} seed '
                                         f'{full.iloc[0]["seed"]} on {verdict_tests.CUBE} in {batch}'):
        verdict_tests.read_set_csv(root, 'freeze_features', 'per_seed.csv')
