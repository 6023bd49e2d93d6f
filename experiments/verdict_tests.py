"""Tests over seeds behind docs/experiments.md's verdicts, recomputed from the committed result sets' CSVs.

    python -m experiments.verdict_tests --results_dir=docs/results [--out=docs/results/verdict_tests.md]

Per comparison: the two means, Welch's t test (unpaired) or the paired t test (the same seed's checkpoint measured two
ways, or two variants' runs with the same seed index), and the exact permutation test (sign-flip where paired)
where per-seed values are committed (floq_jax.analysis.seed_tests).  Success comparisons use each variant's mean,
standard deviation and seed count from results.csv (a Welch test needs no more); the permutation and paired tests
need per-seed values (per_seed.csv).  A result set whose later seeds were committed as a directory of their own (a
seed batch, SEED_BATCHES) is read with its batches: its figures come from the per-seed rows of every directory,
and a comparison uses the directories that hold both variants.  A set's seed batches, and the set a freeze
directory takes its unfrozen twins from, are checked to name its protocol (results.csv's protocol columns), the
twins' set also its data where both record datasets.json (check_same_protocol); the sets of 2026-12-03 compared
with each other (CROSS) predate those columns.  A
comparison whose per-seed values are not committed (the held-out measures of the sets written before the sweeps
wrote heldout_q_per_seed.csv: mechanisms_2026-12-03's part a, utd_2026-12-03; the feature metrics of
freeze_features of 2026-12-03) is listed with 'no per-seed data' and no p.  Result sets written since then commit
per-seed values: utd and utd_to128 (the held-out critic measures per seed: paired tests between UTD ratios, Welch
between agents), resnet_flops (claim (e)), the freeze sets (each frozen run against its unfrozen twin, paired by
seed: resnet_flops' run, or for a seed batch the twin it trained itself; feature metrics per seed), main_table (8
seeds) and noise_width (the curvature measures per seed, metrics_per_seed.csv) and mechanisms (parts b, c, d at 8
seeds, against claim (e)'s floq and FQL runs copied into the set), with mechanisms_part_a (part a at 4 seeds with
its own floq and FQL baselines, trained on its own dataset file: a variant is compared only with the baseline of its
own set; part a's rows come from mechanisms_2026-12-03 where mechanisms_part_a is not committed).  The sets of
2026-12-03 that were re-run are kept under a dated name (main_table_2026-12-03, noise_width_2026-12-03,
utd_2026-12-03, mechanisms_2026-12-03: another evaluation protocol).  At the end, the power of every success
comparison (planning figures, not tests).
"""

import functools
import os

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The entrypoint's flags, defined only when it runs as a program: tests import :func:`build` beside other
    entrypoints that define a flag of the same name (--out) in the same process."""
    flags.DEFINE_string('results_dir', 'docs/results', 'Directory of the result sets (<dir>/<experiment>/...).')
    flags.DEFINE_string('out', '', 'Also write the markdown here.')

CUBE = 'cube-single-play-singletask-task2-v0'
SCENE = 'scene-play-singletask-task1-v0'
# The freeze at 15k of 2026-12-03 (that day's protocol; no per-seed files), kept beside its re-run.
FREEZE_0312 = 'freeze_features_2026-12-03'

# The mechanisms sets: the re-run (published protocol, per-seed files, 8 seeds; its baselines floq and FQL are claim
# (e)'s resnet_flops runs, copied into it as finished runs: the same config, seeds and dataset file), part a's run
# (the same protocol, 4 seeds, its two variants and its own baselines on its own dataset file) and the set of
# 2026-12-03 (older protocol, 4 seeds, no per-seed files).  Each part's comparisons come from the first of these sets
# that holds the part's variant, against the baseline committed in that same set (mechanisms_set).
MECH, MECH_A, MECH_0312 = 'mechanisms', 'mechanisms_part_a', 'mechanisms_2026-12-03'
MECH_SETS = (MECH, MECH_A, MECH_0312)
# (part, variant, its baseline, what the comparison tests)
MECHANISM_PAIRS = (('a', 'floq_distributional', 'floq', 'distributional floq vs floq'),
                   ('a', 'fql_iqn', 'fql', 'FQL-IQN vs FQL'),
                   ('b', 'floq_predict_final', 'floq', 'predict_final vs floq'),
                   ('c', 'floq_stale2', 'floq', 'stale2 vs floq'),
                   ('d', 'floq_noise8', 'floq', 'floq_noise8 vs floq'),
                   ('d', 'fql_noise8', 'fql', 'fql_noise8 vs FQL'))


def variants_in(root, result_set):
    """The variants of a result set's results.csv (empty if the set is not committed)."""
    path = os.path.join(root, result_set, 'results.csv')
    return frozenset(read_csv(path)['variant']) if os.path.exists(path) else frozenset()


def mechanisms_set(root, variant, base=None):
    """The first mechanisms set (MECH_SETS) that holds ``variant``, the set of 2026-12-03 if none does.  With
    ``base``: raises unless that set holds the baseline too (a variant is compared only with the baseline committed
    beside it, trained on the same dataset file: generated files differ between hosts)."""
    rs = next((rs for rs in MECH_SETS if variant in variants_in(root, rs)), MECH_0312)
    if base is not None and variant in variants_in(root, rs) and base not in variants_in(root, rs):
        raise ValueError(f'{rs}/results.csv: {variant} has no {base} beside it; a variant is compared only with the '
                         'baseline of its own set (the same dataset file)')
    return rs


def mechanisms_label(result_set, part, what):
    where = {MECH: '', MECH_0312: 'of 2026-12-03 (older protocol, 4 seeds): ',
             MECH_A: 'of mechanisms_part_a (4 seeds; its own baselines): '}[result_set]
    return f'({part}) {where}{what}'


def per_seed_part_d(root):
    """Whether part d's runs (both noisy variants) are in the re-run with its per-seed files."""
    return mechanisms_set(root, 'floq_noise8') == mechanisms_set(root, 'fql_noise8') == MECH and all(
        os.path.exists(os.path.join(root, MECH, f)) for f in ('per_seed.csv', 'heldout_q_per_seed.csv'))


def success_comparisons(root):
    """Every success comparison as (result set, env, a, b, label): SUCCESS and the mechanisms parts', each from the
    set that holds its variant and baseline (mechanisms_set)."""
    out = list(SUCCESS)
    for part, variant, base, what in MECHANISM_PAIRS:
        rs = mechanisms_set(root, variant, base)
        out.append((rs, CUBE, variant, base, mechanisms_label(rs, part, f'success {what}')))
    return out


# (result set, env, variant a, variant b, what the comparison tests); success from results.csv, or for a set with seed
# batches from its per-seed rows (comparison_stats)
SUCCESS = [
    ('scale_k', CUBE, 'K8', 'K1', 'scale_k: success K = 8 vs 1'),
    ('scale_k', CUBE, 'K4', 'K1', 'scale_k: success K = 4 vs 1'),
    ('main_table', CUBE, 'floq', 'fql', 'main_table: cube floq vs FQL'),
    ('main_table', SCENE, 'floq', 'fql', 'main_table: scene floq vs FQL'),
    ('main_table_2026-12-03', CUBE, 'floq', 'fql', 'main_table of 2026-12-03 (4 seeds, older protocol): cube'),
    ('main_table_2026-12-03', SCENE, 'floq', 'fql', 'main_table of 2026-12-03 (4 seeds, older protocol): scene'),
    ('noise_width', CUBE, 'cov0.25', 'cov0', 'noise_width: success 0.25 vs 0'),
    ('noise_width', CUBE, 'cov0.25', 'cov1', 'noise_width: success 0.25 vs 1'),
    ('noise_width', CUBE, 'cov0.1', 'cov1', 'noise_width: success 0.1 vs 1'),
    ('noise_width', CUBE, 'cov0.1', 'cov0', 'noise_width: success 0.1 vs 0'),
    ('noise_width', CUBE, 'cov1', 'cov0', 'noise_width: success 1 vs 0'),
    ('noise_width_2026-12-03', CUBE, 'cov0.25', 'cov0', 'noise_width of 2026-12-03 (older protocol): success 0.25 vs 0'),
    ('noise_width_2026-12-03', CUBE, 'cov0.25', 'cov1', 'noise_width of 2026-12-03 (older protocol): success 0.25 vs 1'),
    ('noise_width_2026-12-03', CUBE, 'cov0.1', 'cov1', 'noise_width of 2026-12-03 (older protocol): success 0.1 vs 1'),
    ('freeze_features', CUBE, 'floq_frozen', 'fql_frozen', 'freeze at 15k: frozen floq vs frozen FQL'),
    ('freeze_features', CUBE, 'floq_frozen', 'fql_resnet_frozen', 'freeze at 15k: frozen floq vs frozen FQL-ResNet'),
    ('freeze_features', CUBE, 'floq_frozen', 'floq_t0_frozen', 'freeze at 15k: frozen floq vs frozen floq_t0'),
    (FREEZE_0312, CUBE, 'floq_frozen', 'fql_frozen', 'freeze at 15k of 2026-12-03 (older protocol): frozen floq vs frozen FQL'),
    (FREEZE_0312, CUBE, 'floq_frozen', 'fql_resnet_frozen',
     'freeze at 15k of 2026-12-03 (older protocol): frozen floq vs frozen FQL-ResNet'),
    ('utd', CUBE, 'floq_utd16', 'fql_utd16', 'utd: success at UTD 16, floq vs FQL'),
    ('utd_2026-12-03', CUBE, 'floq_utd16', 'fql_utd16', 'utd of 2026-12-03 (older protocol): success at UTD 16, floq vs FQL'),
    ('resnet_flops', CUBE, 'floq', 'fql_resnet_matched', 'claim (e): success floq vs FQL-ResNet at matched FLOPs'),
    ('resnet_flops', CUBE, 'floq', 'fql_resnet', 'claim (e): success floq vs FQL-ResNet, published shape'),
    ('resnet_flops', CUBE, 'floq', 'fql', 'claim (e): success floq vs FQL'),
    ('utd_to128', CUBE, 'floq_utd64', 'fql_utd64', 'utd_to128: success at UTD 64, floq vs FQL'),
    ('utd_to128', CUBE, 'floq_utd128', 'fql_utd128', 'utd_to128: success at UTD 128, floq vs FQL'),
    ('freeze_features_late', CUBE, 'floq_frozen', 'fql_frozen', 'freeze at 45k: frozen floq vs frozen FQL'),
]
# Success at the last evaluation alone (per_seed.csv's last_eval_success), where the two evaluations of the score move
# apart (main_table's scene: FQL falls from 45k to 60k, floq rises).
LAST_EVAL = [('main_table', SCENE, 'floq', 'fql', 'main_table: scene floq vs FQL, 60k evaluation alone'),
             ('freeze_features', CUBE, 'floq_frozen', 'fql_resnet_frozen',
              'freeze at 15k: frozen floq vs frozen FQL-ResNet, 60k evaluation alone')]
# The freeze at 45k of 60k against the same configuration unfrozen: resnet_flops' floq and fql (same config, seeds and
# data, so each frozen run is its unfrozen twin until step 45k: paired by seed).
LATE_FREEZE = (('floq_frozen', 'floq'), ('fql_frozen', 'fql'))
# utd_to128 (UTD 1..128 at 500 online env steps): the held-out centered error per seed (heldout_q_per_seed.csv).
UTD_SET, UTDS_TO128 = 'utd_to128', (1, 4, 16, 64, 128)
# The 2026-12-03 main table (4 seeds; the protocol of that day: 'pre' success timing, the same episodes at every
# evaluation), kept for the sets run beside it under that protocol.
MAIN_TABLE_0312 = 'main_table_2026-12-03'
# Success of a frozen critic against the same configuration unfrozen (the 2026-12-03 main table's cube runs: same
# config, seeds and protocol).
CROSS = [((FREEZE_0312, 'floq_frozen'), (MAIN_TABLE_0312, 'floq'), 'freeze of 2026-12-03: floq frozen vs unfrozen'),
         ((FREEZE_0312, 'fql_frozen'), (MAIN_TABLE_0312, 'fql'), 'freeze of 2026-12-03: FQL frozen vs unfrozen')]
# The freeze at 15k (re-run 2026-12-06) against the same configurations unfrozen (paired by seed; seeds 0-3: resnet_flops'
# runs, the seed batch's: its own, freeze_twin_frames); floq_t0 has no unfrozen runs.
EARLY_FREEZE = (('floq_frozen', 'floq'), ('fql_frozen', 'fql'), ('fql_resnet_frozen', 'fql_resnet'))
# noise_width: the widths in order and the curvature measures of metrics_per_seed.csv (noise_width_lines).
NOISE_WIDTHS = ('cov0', 'cov0.1', 'cov0.25', 'cov1')
NOISE_WIDTH_MEASURES = ('straightness', 'velocity_spread', 'q_change')
# Held-out measures whose per-seed values are not in the committed files.
NO_PER_SEED = ['utd of 2026-12-03: centered error at UTD 16, floq vs FQL', 'utd of 2026-12-03: FQL centered error UTD 16 vs 1',
               'freeze of 2026-12-03: feature metrics between critics']


# Success comparisons whose claim has a size in the paper: floq about 2x FQL (the main table; 59 vs 47 on average), so
# the difference to detect is FQL's own success here.
CLAIMED_2X = ('main_table: cube floq vs FQL', 'main_table: scene floq vs FQL', 'claim (e): success floq vs FQL')


def power_lines(root):
    """Power, for planning (not a test): per success comparison, the pooled seed-to-seed standard deviation, the
    smallest true difference detectable 80% of the time at the set's seeds and at 8 seeds (two-sided t test, 0.05),
    the seeds per variant that a difference the size of the observed one would take, and, where the paper gives the
    effect's size (about 2x FQL), the seeds that size would take here."""
    import math

    from floq_jax.analysis import seed_tests

    lines = ['| comparison | seeds | observed difference | pooled SD | detectable at these seeds | detectable at 8 seeds '
             '| seeds per variant for the observed difference | seeds per variant for 2x (paper) |',
             '|---|---|---|---|---|---|---|---|']

    def seeds(x):
        return 'never' if math.isinf(x) else f'{math.ceil(x)}'

    for rs, env, a, b, label in success_comparisons(root):
        (ma, sa, na), (mb, sb, nb), _, _ = comparison_stats(root, rs, env, a, b)
        sd, n = seed_tests.pooled_sd(sa, sb), min(na, nb)
        two_x = seeds(seed_tests.seeds_per_arm(mb, sd)) if label in CLAIMED_2X else ''
        lines.append(f'| {label} | {n} | {ma - mb:+.3f} | {sd:.3f} | {seed_tests.detectable_difference(sd, n):.3f} | '
                     f'{seed_tests.detectable_difference(sd, 8):.3f} | {seeds(seed_tests.seeds_per_arm(ma - mb, sd))} | '
                     f'{two_x} |')
    return lines


def fmt_p(p):
    return 'n/a' if p != p else (f'{p:.3f}' if p >= 0.001 else f'{p:.1e}')


def row(label, mean_a, mean_b, test, p_t, p_perm=float('nan'), note=''):
    return f'| {label} | {mean_a:.4g} | {mean_b:.4g} | {test} | {fmt_p(p_t)} | {fmt_p(p_perm)} | {note} |'


def welch_row(label, xa, xb, note=''):
    """The row of Welch's t and the exact permutation test for per-seed values ``xa`` / ``xb``."""
    from floq_jax.analysis import seed_tests

    return row(label, xa.mean(), xb.mean(), 'Welch', seed_tests.welch(xa, xb)['p'], seed_tests.permutation(xa, xb),
               note)


def paired_row(label, xa, xb, before='', after='', means=None):
    """The row of the paired t and sign-flip tests for per-seed values ``xa`` / ``xb`` ordered by seed; its note names
    the sign-flip floor for the pair count, between ``before`` and ``after``.  ``means``: the (a, b) means to print
    (default the samples')."""
    from scipy import stats

    from floq_jax.analysis import seed_tests

    ma, mb = means if means is not None else (xa.mean(), xb.mean())
    return row(label, ma, mb, 'paired t', float(stats.ttest_rel(xa, xb).pvalue), seed_tests.paired_permutation(xa, xb),
               f'{before}sign-flip p >= {seed_tests.smallest_p(len(xa)):.3f}{after}')


def unpaired_and_paired_rows(label, xa, xb):
    """Two rows for per-seed values ``xa`` / ``xb`` ordered by seed: :func:`welch_row`, and :func:`paired_row` as
    ``label + ', paired by seed'``."""
    return [welch_row(label, xa, xb), paired_row(label + ', paired by seed', xa, xb)]


# Seed batches: a result set's later seeds, run by a later invocation of the same command with --seed (its first
# batch's run directories not kept, so no report covers both) and committed as a directory of their own.  The set's
# per-seed files are read with its batches' rows appended (read_set_csv), its per-variant figures computed from them,
# and its comparisons made over the directories that hold both variants (comparison_samples).  A freeze batch holds
# its own unfrozen twins (--unfrozen_baselines), FREEZE_TWINS names where the other freeze directories find theirs.
SEED_BATCHES = {'freeze_features': ('freeze_features_seeds4-7',)}
# Where a freeze directory finds the unfrozen twins of its frozen runs (freeze_twin_frames): a set trained with the
# same config, seeds and protocol (checked: check_same_protocol).  A directory not named here holds its own.
FREEZE_TWINS = {'freeze_features': 'resnet_flops', 'freeze_features_late': 'resnet_flops'}
DIR = 'directory'  # read_set_csv's column: the directory a row comes from


def read_csv(path):
    """A committed CSV as a DataFrame: a fresh copy, parsed once while the file is unchanged (storage.local_stamp)."""
    from floq_jax import storage

    path = os.path.abspath(path)
    return _read_csv(path, storage.local_stamp(path)).copy()


@functools.lru_cache(maxsize=256)
def _read_csv(path, stamp):
    import pandas as pd

    if stamp is None:
        raise FileNotFoundError(path)
    return pd.read_csv(path)


def set_dirs(root, result_set):
    """The directories of a result set: its own and its seed batches' (SEED_BATCHES); raises if a batch is not
    there (the set's figures would silently cover fewer seeds)."""
    batches = SEED_BATCHES.get(result_set, ())
    missing = [b for b in batches if not os.path.isdir(os.path.join(root, b))]
    if missing:
        raise ValueError(f'{root}: {result_set}\'s seed batch {", ".join(missing)} (SEED_BATCHES) is missing; '
                         'commit it or take it out of SEED_BATCHES')
    return [result_set, *batches]


def seed_list(seeds):
    """'0-3' for consecutive seeds, else '0, 2, 5'."""
    seeds = sorted(int(s) for s in seeds)
    if not seeds:
        return 'none'
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1:
        return f'{seeds[0]}-{seeds[-1]}'
    return ', '.join(map(str, seeds))


# results.csv's columns that must agree between result sets whose runs are compared or pooled (one protocol, one kind
# of data); where both sets record datasets.json, the content digests of their data must agree too.
PROTOCOL_COLUMNS = ('data', 'eval_protocol', 'success_timing', 'eval_seeding')


def check_same_protocol(root, dirs, what, digests=True):
    """Raises (naming ``what``: which sets these are) unless the results.csv of the result sets ``dirs`` name the same
    protocol and kind of data (PROTOCOL_COLUMNS) and, with ``digests`` (runs paired by seed), where two of them commit
    datasets.json, the same training and -val digests for every env both name.  Sets written before the sweeps
    recorded datasets.json cannot be checked on their data's content.  A set and its seed batches are pooled, not
    paired, and need not share the file (freeze_features_seeds4-7: the same generator and seed on another host,
    docs/experiments.md): checked without ``digests``.  The CSVs come from read_csv's cache."""
    import json

    from floq_jax.sweeps.run import DATASETS_FILE

    protocols = {}
    for x in dirs:
        r = read_csv(os.path.join(root, x, 'results.csv'))
        absent = [c for c in PROTOCOL_COLUMNS if c not in r.columns]
        if absent:
            raise ValueError(f'{x}/results.csv: no column {", ".join(absent)}; cannot check that {what} share a protocol')
        protocols[x] = frozenset(tuple(v) for v in r[list(PROTOCOL_COLUMNS)].astype(str).itertuples(index=False))
    if len(set(protocols.values())) > 1:
        raise ValueError(f'{what} name other protocols or data ({", ".join(PROTOCOL_COLUMNS)}): '
                         + '; '.join(f'{x}: {sorted(v)}' for x, v in protocols.items()))
    recorded = {}
    for x in dirs if digests else ():
        path = os.path.join(root, x, DATASETS_FILE)
        if os.path.exists(path):
            with open(path) as f:
                recorded[x] = {env: {(e['sha256'], e['val_sha256']) for e in entries}
                               for env, entries in json.load(f).items()}
    for x, dx in recorded.items():
        for y, dy in recorded.items():
            for env in set(dx) & set(dy):
                if x < y and dx[env] != dy[env]:
                    raise ValueError(f'{what} trained on other data: {x}/{DATASETS_FILE} and {y}/{DATASETS_FILE} record other '
                                     f'sha256 for {env}')


def read_set_csv(root, result_set, name):
    """A per-seed CSV of a result set with its seed batches' rows appended, column DIR naming each row's directory;
    raises if a directory lacks the file, if the directories name other protocols or data (check_same_protocol), or
    if a variant's seed appears twice (naming them)."""
    import pandas as pd

    dirs = set_dirs(root, result_set)
    missing = [f'{x}/{name}' for x in dirs if not os.path.exists(os.path.join(root, x, name))]
    if missing:
        raise ValueError(f'{", ".join(missing)} missing' + ('; a seed batch commits the same files as its set'
                                                           if len(dirs) > 1 else ''))
    if len(dirs) > 1:
        check_same_protocol(root, dirs, f'{result_set} and its seed batches', digests=False)
    d = pd.concat([read_csv(os.path.join(root, x, name)).assign(**{DIR: x}) for x in dirs], ignore_index=True)
    twice = d[d.duplicated(['env_name', 'variant', 'seed'], keep=False)]
    if len(twice):
        raise ValueError(f'{result_set}/{name}: a seed appears more than once: ' + '; '.join(
            f'{r.variant} seed {r.seed} on {r.env_name} in {r.directory}' for r in twice.itertuples()))
    return d


def success_stats(root, result_set, env, variant):
    """(mean, standard deviation over seeds, seed count) of a variant's success: results.csv's, or for a set with
    seed batches, computed from its per-seed rows and its batches'."""
    if len(set_dirs(root, result_set)) > 1:
        return summary(per_seed_frame(root, result_set, env, variant)['success'], f'{result_set}: {variant} on {env}')
    r = read_csv(os.path.join(root, result_set, 'results.csv'))
    r = r[(r['env_name'] == env) & (r['variant'] == variant) & (r['stat'] == 'mean')]
    if len(r) != 1:
        raise ValueError(f'{result_set}/results.csv: no single mean row for {variant} on {env}')
    return float(r['mean'].iloc[0]), float(r['std'].iloc[0]), int(r['num_seeds'].iloc[0])


def summary(x, what):
    """(mean, standard deviation, count) of the per-seed values ``x``; raises naming ``what`` if there are none."""
    x = x.to_numpy(float)
    if not len(x):
        raise ValueError(f'{what}: no per-seed values')
    return float(x.mean()), float(x.std(ddof=1)), len(x)


def per_seed_frame(root, result_set, env, variant, batches=True):
    """per_seed.csv's rows of one variant on one env (with the set's seed batches' unless ``batches`` is false),
    indexed by seed, column DIR naming each row's directory."""
    d = read_set_csv(root, result_set, 'per_seed.csv') if batches else read_csv(
        os.path.join(root, result_set, 'per_seed.csv')).assign(**{DIR: result_set})
    return d[(d['env_name'] == env) & (d['variant'] == variant)].set_index('seed').sort_index()


def in_common_dirs(fa, fb, dirs):
    """Frames ``fa`` and ``fb`` (per-seed rows with column DIR) restricted to the directories that hold both, and a
    note naming those where the set has more (``dirs``): an unpaired test over all rows would set one batch (another
    invocation, possibly on another host's data file: generated files differ between hosts) against another."""
    in_a, in_b = set(fa[DIR]), set(fb[DIR])
    both = [x for x in dirs if x in in_a and x in in_b]
    note = '' if len(both) == len(in_a | in_b) else \
        f'over {", ".join(both)} only (the directories both variants have)'
    return fa[fa[DIR].isin(both)], fb[fb[DIR].isin(both)], note


def comparison_samples(root, result_set, env, a, b, col='success'):
    """(per-seed ``col`` of ``a``, of ``b``, a note) as Series indexed by seed, over the directories of the set that
    hold both (in_common_dirs); None where the set commits no per_seed.csv."""
    if not os.path.exists(os.path.join(root, result_set, 'per_seed.csv')):
        return None
    fa, fb, note = in_common_dirs(*(per_seed_frame(root, result_set, env, v) for v in (a, b)),
                                  set_dirs(root, result_set))
    return fa[col].astype(float), fb[col].astype(float), note


def comparison_stats(root, result_set, env, a, b):
    """((mean, sd, n) of ``a``, of ``b``, per-seed success of a and b or None, a note): results.csv's figures, or for a
    set with seed batches, the per-seed rows' over the directories both variants have (comparison_samples)."""
    samples = comparison_samples(root, result_set, env, a, b)
    if samples is not None and len(set_dirs(root, result_set)) > 1:
        xa, xb, note = samples
        return summary(xa, f'{result_set}: {a}'), summary(xb, f'{result_set}: {b}'), (xa, xb), note
    stats = tuple(success_stats(root, result_set, env, v) for v in (a, b))
    return stats + (samples[:2] if samples and all(len(x) for x in samples[:2]) else None, '')


def freeze_twin_frames(root, result_set, frozen, unfrozen):
    """(frozen runs, their unfrozen twins, where the twins come from) of a freeze set, per_seed.csv rows indexed by
    seed: each directory's twins from the set FREEZE_TWINS names for it (the same config, seeds and protocol:
    check_same_protocol), else from the directory itself (a seed batch's, trained by the same invocation on the same
    dataset file: generated files differ between hosts).  Raises unless every frozen run has a twin."""
    import pandas as pd

    dirs = set_dirs(root, result_set)
    fa, fb, sources = [], [], []
    for d in dirs:
        a = per_seed_frame(root, d, CUBE, frozen, batches=False)
        if not len(a):
            raise ValueError(f'{d}/per_seed.csv: no rows of {frozen} on {CUBE}')
        source = FREEZE_TWINS.get(d, d)
        if source != d:
            check_same_protocol(root, (d, source), f'{d} and {source} (the set of its unfrozen twins)')
        twins = common_seeds(a, per_seed_frame(root, source, CUBE, unfrozen, batches=False))[1]
        if len(twins) != len(a):
            lost = sorted(set(a.index) - set(twins.index))
            raise ValueError(f'{d}/{frozen}: not every seed has an unfrozen twin in {source}/{unfrozen} (seeds '
                             f'{seed_list(lost)} have none)')
        fa.append(a)
        fb.append(twins)
        sources.append(f'{source} (seeds {seed_list(a.index)})' if len(dirs) > 1 else source)
    return pd.concat(fa), pd.concat(fb), ', '.join(sources)


def common_seeds(a, b):
    """Per-seed Series (or frames) ``a`` and ``b`` (indexed by seed) restricted to the seeds both have, in seed
    order."""
    seeds = a.index.intersection(b.index).sort_values()
    return a.loc[seeds], b.loc[seeds]


def heldout_per_seed(root, result_set, env, variant, col='q_centered_error'):
    """A variant's per-seed held-out measure ``col`` at its own K (heldout_q_per_seed.csv), ordered by seed."""
    d = read_csv(os.path.join(root, result_set, 'heldout_q_per_seed.csv'))
    d = d[d['env_name'] == env]
    if 'eval_K' in d.columns and 'train_K' in d.columns:
        d = d[d['eval_K'] == d['train_K']]
    return one_row_per_seed(d, variant, col, f'{result_set}/heldout_q_per_seed.csv on {env}')


def one_row_per_seed(d, variant, col, source):
    """Column ``col`` of ``variant``'s rows in the per-seed frame ``d``, ordered by seed; raises naming ``source``
    unless the variant has exactly one row per seed."""
    return by_seed(d, variant, col, source).to_numpy(float)


def utd_heldout_lines(root, result_set=UTD_SET, utds=UTDS_TO128):
    """A utd set (``utds``: its UTD ratios, ascending): does more updates per env step degrade a critic's centered
    error, and floq's less than FQL's?  Per agent, UTD u vs 1 paired by seed (the same seed index starts from the
    same parameters and data), and past UTD 16 vs 16; between agents at each UTD, Welch and paired; and the difference in
    differences (floq's change from UTD 1 minus FQL's, and past UTD 16 from 16), Welch and paired on the per-seed
    changes.  No lines for a set without
    heldout_q_per_seed.csv."""
    if not os.path.exists(os.path.join(root, result_set, 'heldout_q_per_seed.csv')):
        return []
    x = {(a, u): heldout_per_seed(root, result_set, CUBE, f'{a}_utd{u}') for a in ('floq', 'fql') for u in utds}
    lines = []
    # against UTD 1, and past the largest UTD of the first utd set (16): does the error rise again?
    for a in ('floq', 'fql'):
        for u, base in [(u, 1) for u in utds[1:]] + [(16, 4)] * (4 in utds and 16 in utds) + \
                [(u, 16) for u in utds if u > 16]:
            lines.append(paired_row(f'{result_set}: {a} centered error, UTD {u} vs {base}, paired by seed', x[(a, u)],
                                    x[(a, base)]))
    # Between the agents: Welch, and paired by seed (the same seed index shares the dataset order and env resets, and
    # the two agents' per-seed values move together), as the rule for verdicts asks where per-seed values exist.
    for u in utds:
        lines += unpaired_and_paired_rows(f'{result_set}: centered error at UTD {u}, floq vs FQL', x[('floq', u)],
                                          x[('fql', u)])
    # floq's change minus FQL's, from UTD 1, and past UTD 16 from 16 (does floq's error rise more than FQL's there?)
    for u, base in [(u, 1) for u in utds[1:]] + [(u, 16) for u in utds if u > 16]:
        da, db = x[('floq', u)] - x[('floq', base)], x[('fql', u)] - x[('fql', base)]
        lines += unpaired_and_paired_rows(f'{result_set}: change in centered error from UTD {base} to {u}, floq vs FQL '
                                          '(difference in differences)', da, db)
    return lines


def freeze_lines(root, result_set='freeze_features_late', when='45k', twins=LATE_FREEZE,
                 last_eval='60k evaluation, the one after the freeze'):
    """A freeze set: each critic frozen at ``when`` against its unfrozen twin (the same config, seeds and data:
    freeze_twin_frames), paired by seed; and does floq lose less than each other critic (Welch on the per-seed drops)?  No lines
    for a set without per_seed.csv."""
    import numpy as np

    from floq_jax.analysis import seed_tests

    if not os.path.exists(os.path.join(root, result_set, 'per_seed.csv')):
        return []
    lines = []
    for col, what in (('success', 'score (45k and 60k)'), ('last_eval_success', last_eval)):
        drops = {}
        for frozen, unfrozen in twins:
            fa, fb, source = freeze_twin_frames(root, result_set, frozen, unfrozen)
            xa, xb = common_seeds(fa[col].astype(float), fb[col].astype(float))
            drops[unfrozen] = (xb - xa).round(12)  # success is a multiple of 1/episodes: no float dust
            xa, xb = xa.to_numpy(), xb.to_numpy()
            detectable = seed_tests.detectable_paired_difference(float(np.std(xb - xa, ddof=1)), len(xa))
            lines.append(paired_row(f'freeze at {when}, {what}: {unfrozen} frozen vs unfrozen, paired by seed', xa, xb,
                                    f'unfrozen: {source}; ', f'; a drop detectable 80% of the time: {detectable:.3f}'))
            lines.append(welch_row(f'freeze at {when}, {what}: {unfrozen} frozen vs unfrozen', xa, xb,
                                   f'unfrozen: {source}; the pairing ignored'))
        for other in [u for _, u in twins if u != 'floq']:
            da, db = common_seeds(drops['floq'], drops[other])
            fewer = f'; the {len(da)} seeds both have' if len(da) < max(len(drops['floq']), len(drops[other])) else ''
            da, db = da.to_numpy(), db.to_numpy()
            name = {'fql': 'FQL', 'fql_resnet': 'FQL-ResNet'}.get(other, other)
            sd = seed_tests.pooled_sd(float(np.std(da, ddof=1)), float(np.std(db, ddof=1)))
            lines.append(welch_row(f'freeze at {when}, {what}: floq drop vs {name} drop', da, db,
                                   f'per-seed drops; a difference detectable 80% of the time: '
                                   f'{seed_tests.detectable_difference(sd, len(da)):.3f}{fewer}'))
            lines.append(paired_row(f'freeze at {when}, {what}: floq drop vs {name} drop, paired by seed', da, db,
                                    'per-seed drops; ', fewer))
    return lines


def freeze_feature_lines(root, result_set, when):
    """A freeze set's final feature measures (metrics_per_seed.csv) between the frozen critics: floq against each other
    critic on the effective rank and the feature norm, and floq against floq_t0 on the critic loss after the freeze
    (both flow matching: the one like-for-like loss comparison); Welch over every seed of the directories both
    variants have (in_common_dirs), and paired by seed (the same seed index shares the data order) over the seeds
    both have.  No lines for a set without the file."""
    if not os.path.exists(os.path.join(root, result_set, 'metrics_per_seed.csv')):
        return []
    d = read_set_csv(root, result_set, 'metrics_per_seed.csv')
    d = d[d['env_name'] == CUBE]
    present = set(d['variant'])
    lines = []
    for other in ('floq_t0_frozen', 'fql_frozen', 'fql_resnet_frozen'):
        if other not in present:
            continue
        fa, fb, note = in_common_dirs(d[d['variant'] == 'floq_frozen'], d[d['variant'] == other],
                                      set_dirs(root, result_set))
        cols = ('effective_rank', 'feature_norm') + (('critic/critic_loss',) if other == 'floq_t0_frozen' else ())
        for col in cols:
            x = [by_seed(f, v, col, f'{result_set}/metrics_per_seed.csv') for f, v in ((fa, 'floq_frozen'), (fb, other))]
            lines += all_and_common_seed_rows(f'freeze at {when}: {col}, floq_frozen vs {other}', *x, note=note)
    return lines


def noise_width_lines(root):
    """noise_width (2026-12-06): do the paths curve more as the noise widens?  The final curvature measures
    per seed (metrics_per_seed.csv) between neighbouring widths and between the widest and none: Welch, and paired by
    seed (the same seed index shares the data order).  No lines for a set without the per-seed file."""
    path = os.path.join(root, 'noise_width', 'metrics_per_seed.csv')
    if not os.path.exists(path):
        return []
    d = read_csv(path)
    d = d[d['env_name'] == CUBE]
    lines = []
    for col in NOISE_WIDTH_MEASURES:
        x = {v: one_row_per_seed(d, v, col, 'noise_width/metrics_per_seed.csv') for v in NOISE_WIDTHS}
        for a, b in list(zip(NOISE_WIDTHS[1:], NOISE_WIDTHS[:-1])) + [(NOISE_WIDTHS[-1], NOISE_WIDTHS[0])]:
            lines += unpaired_and_paired_rows(f'noise_width: {col}, {a} vs {b}', x[a], x[b])
    return lines


def by_seed(d, variant, col, source):
    """Column ``col`` of ``variant``'s rows in the per-seed frame ``d`` as a Series indexed by seed; raises naming
    ``source`` unless the variant has exactly one row per seed."""
    d = d[d['variant'] == variant]
    if d.empty or d['seed'].duplicated().any():
        raise ValueError(f'{source}: no single row per seed for {variant}')
    return d.set_index('seed').sort_index()[col].astype(float)


def all_and_common_seed_rows(label, a, b, note=''):
    """Per-seed Series ``a`` / ``b`` (indexed by seed): Welch over every seed of each, and paired by seed over the
    seeds both have (named in the note when fewer than either has); ``note`` opens both rows' notes."""
    ca, cb = common_seeds(a, b)
    subset = len(ca) < max(len(a), len(b))
    return [welch_row(label, a.to_numpy(), b.to_numpy(), note),
            paired_row(label + ', paired by seed', ca.to_numpy(), cb.to_numpy(), before=f'{note}; ' if note else '',
                       after=f'; the {len(ca)} seeds both have' if subset else '')]


def mechanisms_lines(root):
    """The mechanisms parts' held-out critic measures (centered error, Spearman, mean abs error) per variant against its baseline,
    from the set that holds the variant: Welch and paired by seed where heldout_q_per_seed.csv is committed, a
    'no per-seed data' row where not.  Part d in the re-run: does floq lose less success and accuracy under noisy
    targets than FQL?  Per-seed drops (baseline - noisy, the same seed), Welch and paired."""
    lines, missing = [], []
    for part, variant, base, what in MECHANISM_PAIRS:
        rs = mechanisms_set(root, variant, base)
        path = os.path.join(root, rs, 'heldout_q_per_seed.csv')
        if not os.path.exists(path):
            missing.append(mechanisms_label(rs, part, f'centered error / Spearman, {what}'))
            continue
        d = read_csv(path)
        d = d[d['env_name'] == CUBE]
        for col in ('q_centered_error', 'q_rank_corr', 'q_abs_error'):  # the last: the critic's offset too
            x = [by_seed(d, v, col, f'{rs}/heldout_q_per_seed.csv') for v in (variant, base)]
            lines += all_and_common_seed_rows(mechanisms_label(rs, part, f'{col}, {what}'), *x)
    if per_seed_part_d(root):
        succ = read_csv(os.path.join(root, MECH, 'per_seed.csv'))
        held = read_csv(os.path.join(root, MECH, 'heldout_q_per_seed.csv'))
        for frame, col, name in ((succ, 'success', 'success'), (held, 'q_centered_error', 'centered error')):
            frame = frame[frame['env_name'] == CUBE]
            drops = []
            for agent in ('floq', 'fql'):
                noisy, clean = (by_seed(frame, v, col, f'{MECH}: {col}') for v in (f'{agent}_noise8', agent))
                noisy, clean = common_seeds(noisy, clean)
                drops.append((clean - noisy).round(12))
            lines += all_and_common_seed_rows(f'(d) {name}: floq drop vs FQL drop under noise 8 (baseline - noisy, '
                                              'per seed)', *drops)
    return lines + [f'| {label} | | | | n/a | n/a | no per-seed data committed: inconclusive by the rule |'
                    for label in missing]


# The columns of a set with seed batches summarised over all of its seeds (seed_batch_lines): per_seed.csv's, then
# metrics_per_seed.csv's where every directory of the set has the file.
BATCH_COLUMNS = (('per_seed.csv', ('success', 'last_eval_success')),
                 ('metrics_per_seed.csv', ('feature_norm', 'effective_rank', 'dormant_0.025', 'critic/critic_loss')))
# A freeze set with seed batches: the (frozen, unfrozen) pairs whose twins and per-seed drops seed_batch_lines adds.
BATCH_TWINS = {'freeze_features': EARLY_FREEZE}


def mean_ci_cell(x):
    """'mean [lo, hi]' of the per-seed values ``x`` (95% bootstrap CI, floq_jax.analysis.report.mean_ci, as the
    sweeps' own tables); '' for none."""
    import numpy as np

    from floq_jax.analysis import report

    x = np.asarray(x, float)
    if not len(x):
        return ''
    m, lo, hi = report.mean_ci(x)
    return f'{m:.4g} [{lo:.4g}, {hi:.4g}]'


def seed_batch_lines(root):
    """Per result set with seed batches, per variant of the set's own directory (a batch's unfrozen twins are not the
    set's variants): the seeds and, per column of BATCH_COLUMNS, the mean over every seed of the set and its batches
    with its 95% bootstrap CI (mean_ci_cell): the set's figures that no single directory's report covers.  For a
    freeze set (BATCH_TWINS), the unfrozen twins' success (freeze_twin_frames: from another set and from the batches)
    and the per-seed drops (twin - frozen) too.  Raises if two files of a variant cover other seeds."""
    lines = []
    for result_set in SEED_BATCHES:
        dirs = set_dirs(root, result_set)
        frames = [(name, read_set_csv(root, result_set, name), cols) for name, cols in BATCH_COLUMNS
                  if all(os.path.exists(os.path.join(root, x, name)) for x in dirs)]
        header = [c for _, _, cols in frames for c in cols]
        lines += ['', f'### {result_set} with {", ".join(dirs[1:])}: mean over all seeds [95% bootstrap CI]', '',
                  '| variant | seeds | ' + ' | '.join(header) + ' |', '|---|---|' + '---|' * len(header)]
        own = read_csv(os.path.join(root, result_set, 'per_seed.csv'))
        for variant in sorted(set(own.loc[own['env_name'] == CUBE, 'variant'])):
            cells, seeds = [], None
            for name, d, cols in frames:
                d = d[(d['env_name'] == CUBE) & (d['variant'] == variant)]
                if seeds is not None and sorted(d['seed']) != seeds:
                    raise ValueError(f'{result_set}: {variant}\'s seeds in {name} ({seed_list(d["seed"])}) are not '
                                     f'those of {frames[0][0]} ({seed_list(seeds)})')
                seeds = sorted(d['seed'])
                cells += [mean_ci_cell(d[c]) for c in cols]
            lines.append(f'| {variant} | {len(seeds)} ({seed_list(seeds)}) | ' + ' | '.join(cells) + ' |')
        success_cols = dict(BATCH_COLUMNS)['per_seed.csv']
        blank = [''] * (len(header) - len(success_cols))
        for frozen, unfrozen in BATCH_TWINS.get(result_set, ()):
            fa, fb, source = freeze_twin_frames(root, result_set, frozen, unfrozen)
            seeds = seed_list(fb.index)
            twins = [mean_ci_cell(fb[c]) for c in success_cols]
            drops = []
            for c in success_cols:
                twin, frozen_run = common_seeds(fb[c].astype(float), fa[c].astype(float))
                drops.append(mean_ci_cell(twin - frozen_run))
            lines.append(f'| {unfrozen}: the unfrozen twins of {frozen} ({source}) | {len(fb)} ({seeds}) | '
                         + ' | '.join(twins + blank) + ' |')
            lines.append(f'| {unfrozen}: drop when frozen (twin - {frozen}, per seed) | {len(fa)} ({seeds}) | '
                         + ' | '.join(drops + blank) + ' |')
    return lines


def build(root: str) -> str:
    from floq_jax.analysis import seed_tests

    lines = ['| comparison | mean a | mean b | test | p (t test) | p (exact permutation) | note |',
             '|---|---|---|---|---|---|---|']
    for rs, env, a, b, label in success_comparisons(root):
        (ma, sa, na), (mb, sb, nb), samples, where = comparison_stats(root, rs, env, a, b)
        w = seed_tests.welch_from_summary(ma, sa, na, mb, sb, nb)
        perm = seed_tests.permutation(*(x.to_numpy() for x in samples)) if samples else float('nan')
        note = where if samples else 'per-seed success not committed: Welch from mean, std, n'
        lines.append(row(label, ma, mb, 'Welch', w['p'], perm, note))
        if label in CLAIMED_2X:  # is the paper's size (floq = 2 x FQL) itself rejected here?
            def p_ratio(r):
                return seed_tests.welch_contrast([(ma, sa, na), (mb, sb, nb)], (1, -r))['p']

            note = 'mean b: 2 x FQL; H0: floq - 2 x FQL = 0'
            if p_ratio(2.0) < 0.05 <= p_ratio(1.0):  # the largest ratio floq / FQL the data do not reject
                from scipy import optimize

                note += f'; ratios up to {optimize.brentq(lambda r: p_ratio(r) - 0.05, 1.0, 2.0):.2f} not rejected at 0.05'
            lines.append(row(label + ', against the paper\'s size (floq = 2 x FQL)', ma, 2 * mb, 'Welch contrast',
                             p_ratio(2.0), note=note))
        if samples:  # the same seed index shares data order and evaluation resets: paired by seed as well
            pa, pb = common_seeds(*samples)
            subset = len(pa) < max(map(len, samples))
            lines.append(paired_row(label + ', paired by seed', pa.to_numpy(), pb.to_numpy(),
                                    before=f'{where}; ' if where else '', means=None if subset else (ma, mb),
                                    after=f'; the {len(pa)} seeds both have' if subset else ''))
    for result_set, env, a, b, label in LAST_EVAL:
        lines += all_and_common_seed_rows(label, *comparison_samples(root, result_set, env, a, b, 'last_eval_success'))
    for (set_a, var_a), (set_b, var_b), label in CROSS:
        ma, sa, na = success_stats(root, set_a, CUBE, var_a)
        mb, sb, nb = success_stats(root, set_b, CUBE, var_b)
        lines.append(row(label, ma, mb, 'Welch', seed_tests.welch_from_summary(ma, sa, na, mb, sb, nb)['p'],
                         note='per-seed success not committed: Welch from mean, std, n'))
    # Does floq lose less than FQL (under noisy targets; when frozen)?  The contrast (floq' - floq) - (FQL' - FQL) of
    # four independent groups.
    d_set = mechanisms_set(root, 'floq_noise8')
    contrasts = [] if per_seed_part_d(root) else [
        (mechanisms_label(d_set, 'd', 'floq drop - FQL drop under noise 8 (success)'),
         [(d_set, 'floq_noise8'), (d_set, 'floq'), (d_set, 'fql_noise8'), (d_set, 'fql')])]
    for label, pairs in contrasts + [('freeze of 2026-12-03: floq drop - FQL drop when frozen (success)',
                          [(FREEZE_0312, 'floq_frozen'), (MAIN_TABLE_0312, 'floq'),
                           (FREEZE_0312, 'fql_frozen'), (MAIN_TABLE_0312, 'fql')])]:
        groups = [success_stats(root, rs, CUBE, v) for rs, v in pairs]
        c = seed_tests.welch_contrast(groups, (1, -1, -1, 1))
        lines.append(row(label, groups[0][0] - groups[1][0], groups[2][0] - groups[3][0], 'Welch contrast', c['p'],
                         note='per-seed success not committed'))
    # scale_k held-out measures: per seed, at the run's own K (between train K: unpaired) and at K' = 1 vs 8 of the
    # same checkpoint (paired).
    d = read_csv(os.path.join(root, 'scale_k', 'scale_k_per_seed.csv'))
    d = d[d['env_name'] == CUBE]
    own = d[d['train_K'] == d['eval_K']]
    for col in ('q_centered_error', 'q_rank_corr'):
        for ka, kb in ((2, 1), (4, 2), (8, 4), (8, 1)):
            xa = own[own['train_K'] == ka].sort_values('seed')[col].to_numpy(float)
            xb = own[own['train_K'] == kb].sort_values('seed')[col].to_numpy(float)
            lines += unpaired_and_paired_rows(f'scale_k: {col}, train K = {ka} vs {kb} (own K)', xa, xb)
    eval_ks = sorted(d['eval_K'].unique())
    for k in sorted(d['train_K'].unique()):
        sel = d[d['train_K'] == k]
        lo, hi = (sel[sel['eval_K'] == e].sort_values('seed') for e in (eval_ks[-1], eval_ks[0]))
        for col in ('q_centered_error', 'q_rank_corr'):
            lines.append(paired_row(f"scale_k: {col}, train K = {k}, eval K' = {eval_ks[-1]} vs {eval_ks[0]}",
                                    lo[col].to_numpy(float), hi[col].to_numpy(float), 'paired by checkpoint; '))
    lines += utd_heldout_lines(root, 'utd', (1, 4, 16))
    lines += utd_heldout_lines(root)
    lines += freeze_lines(root)
    lines += freeze_lines(root, 'freeze_features', '15k', EARLY_FREEZE, '60k evaluation')
    lines += freeze_feature_lines(root, 'freeze_features', '15k')
    lines += freeze_feature_lines(root, 'freeze_features_late', '45k')
    lines += noise_width_lines(root)
    lines += mechanisms_lines(root)
    for label in NO_PER_SEED:
        lines.append(f'| {label} | | | | n/a | n/a | no per-seed data committed: inconclusive by the rule |')
    return ('Tests over seeds (two-sided) behind docs/experiments.md\'s verdicts, from the committed CSVs; written by '
            '`python -m experiments.verdict_tests --results_dir=docs/results --out=docs/results/verdict_tests.md`.  '
            'Success in fractions.  Runs of different variants with the same seed index are correlated (scale_k: seed 3 '
            'scores 0.25-0.31 at every train K, the other seeds 0.05-0.11), so where per-seed values are committed the '
            'paired tests are given too; Welch from summary statistics ignores that pairing (conservative when seeds '
            'are positively correlated).  An exact permutation test over 4 vs 4 seeds cannot give p below '
            f'{seed_tests.smallest_p(4, 4):.3f}, a sign-flip test over 4 pairs not below '
            f'{seed_tests.smallest_p(4):.3f} (8 vs 8 seeds: {seed_tests.smallest_p(8, 8):.4f}; 8 pairs: '
            f'{seed_tests.smallest_p(8):.4f}).\n\n' + '\n'.join(lines) + '\n\n'
            '## Power of the success comparisons (planning, not a test)\n\n'
            'Per success comparison above: the pooled seed-to-seed standard deviation of success (results.csv; a set '
            'with seed batches: its per-seed rows, over the directories both variants have), the '
            'smallest true difference a two-sided t test at 0.05 detects 80% of the time with the set\'s seeds and '
            'with 8 (floq_jax.analysis.seed_tests.detectable_difference), and the seeds per variant a true difference '
            'the size of the observed one would take (seeds_per_arm; "never" for no difference).  Where the paper '
            'gives a size (floq about 2x FQL), the last column is the seeds that size would take here (a difference '
            'equal to FQL\'s success).  Success in fractions.\n\n' + '\n'.join(power_lines(root)) + '\n' +
            ('\n## Result sets with seed batches\n\nA set whose later seeds were run by a later invocation and '
             'committed in a directory of their own (SEED_BATCHES): its figures over every seed, which no single '
             'directory\'s report covers; for a freeze set also its unfrozen twins and the per-seed drops when '
             'frozen.  Success in fractions; feature measures from metrics_per_seed.csv.\n' +
             '\n'.join(batch) + '\n' if (batch := seed_batch_lines(root)) else ''))


def main(_):
    md = build(FLAGS.results_dir)
    print(md)
    if FLAGS.out:
        with open(FLAGS.out, 'w') as f:
            f.write(md)


if __name__ == '__main__':
    define_flags()
    app.run(main)
