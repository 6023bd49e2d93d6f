"""Tests over seeds for the sweeps' verdicts (docs/experiments.md, "What our runs show": the rule for verdicts).

A percentile bootstrap over 4 seeds under-covers, so two CIs apart are suggestive only; a verdict also needs a test
over seeds at p < 0.05.  Three tests, all two-sided:

- ``welch``: Welch's unequal-variance t test of two independent samples (per-seed values), and ``welch_from_summary``
  the same from each sample's mean, standard deviation (ddof 1) and size (what results.csv holds per variant);
- ``permutation``: the exact permutation test of the difference of means of two independent samples (every split of
  the pooled values; with 4 vs 4 seeds the smallest possible p is 2/70 = 0.029);
- ``paired_permutation``: the exact sign-flip test of the mean paired difference (the same seed's run measured two
  ways, e.g. one checkpoint's critic at two K'); with 4 pairs the smallest possible p is 2/16 = 0.125, so 4 paired
  seeds can never reach p < 0.05;
- ``equivalence``: two one-sided Welch tests (TOST) that two samples' means differ by less than a margin written
  down before the runs (docs/parity.md).

And power, for planning: ``seeds_per_arm`` (the seeds per variant a t test needs to detect a given difference 80% of
the time), ``detectable_difference`` (the smallest difference a given number of seeds detects 80% of the time) and
``detectable_paired_difference`` (the same for a paired design).
"""

from __future__ import annotations

import itertools
import math
from typing import Dict, Sequence

import numpy as np

def welch_from_summary(mean1: float, sd1: float, n1: int, mean2: float, sd2: float, n2: int) -> Dict[str, float]:
    """Welch's t test from summary statistics (``scipy.stats.ttest_ind_from_stats``, unequal variances):
    {'t', 'p'} (p NaN when both samples have zero spread and equal means; p 0 when they have zero spread and
    different means)."""
    from scipy import stats

    diff = mean1 - mean2
    if sd1 == 0 and sd2 == 0:
        return dict(t=math.nan if diff == 0 else math.copysign(math.inf, diff), p=math.nan if diff == 0 else 0.0)
    r = stats.ttest_ind_from_stats(mean1, sd1, n1, mean2, sd2, n2, equal_var=False)
    return dict(t=float(r.statistic), p=float(r.pvalue))


def equivalence(x: Sequence[float], y: Sequence[float], margin: float, alpha: float = 0.05) -> Dict[str, float]:
    """Two one-sided tests (TOST) of |mean(x) - mean(y)| < ``margin`` for independent samples, on Welch's
    standard error and degrees of freedom: {'diff', 'ci_low', 'ci_high', 'p', 'equivalent'}.  ``ci_*`` is the
    (1 - 2 alpha) CI of the difference (90% for alpha 0.05); equivalent iff it lies inside (-margin, margin), i.e.
    iff the larger one-sided p is below alpha."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    diff = float(x.mean() - y.mean())
    v1, v2 = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(v1 + v2)
    if se == 0:
        inside = abs(diff) < margin
        return dict(diff=diff, ci_low=diff, ci_high=diff, p=0.0 if inside else 1.0, equivalent=inside)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (x.size - 1) + v2 ** 2 / (y.size - 1))
    half = float(stats.t.ppf(1 - alpha, df)) * se
    p = max(float(stats.t.sf((diff + margin) / se, df)), float(stats.t.cdf((diff - margin) / se, df)))
    return dict(diff=diff, ci_low=diff - half, ci_high=diff + half, p=p, equivalent=p < alpha)


def welch_contrast(groups: Sequence[Sequence[float]], weights: Sequence[float]) -> Dict[str, float]:
    """Welch-Satterthwaite t test of a contrast sum_i w_i mean_i of independent groups, each given as
    (mean, sd (ddof 1), n): e.g. weights (1, -1, -1, 1) test whether one agent's change (a1 - a0) differs from another's
    (b1 - b0).  {'estimate', 't', 'df', 'p'}."""
    from scipy import stats

    estimate = float(sum(w * m for w, (m, _, _) in zip(weights, groups)))
    var = [w ** 2 * sd ** 2 / n for w, (_, sd, n) in zip(weights, groups)]
    if sum(var) == 0:
        return dict(estimate=estimate, t=math.nan, df=math.nan, p=math.nan if estimate == 0 else 0.0)
    t = estimate / math.sqrt(sum(var))
    df = sum(var) ** 2 / sum(v ** 2 / (n - 1) for v, (_, _, n) in zip(var, groups) if n > 1)
    return dict(estimate=estimate, t=float(t), df=float(df), p=float(2 * stats.t.sf(abs(t), df)))


def welch(x: Sequence[float], y: Sequence[float]) -> Dict[str, float]:
    """Welch's t test of two independent samples of per-seed values."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return welch_from_summary(x.mean(), x.std(ddof=1), x.size, y.mean(), y.std(ddof=1), y.size)


def permutation(x: Sequence[float], y: Sequence[float]) -> float:
    """Exact two-sided permutation p of mean(x) - mean(y) over every split of the pooled values (independent
    samples)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    pooled, n = np.concatenate([x, y]), x.size
    observed = abs(x.mean() - y.mean())
    total = pooled.sum()
    count = splits = 0
    for idx in itertools.combinations(range(pooled.size), n):
        s = pooled[list(idx)].sum()
        d = abs(s / n - (total - s) / y.size)
        count += d >= observed - 1e-12
        splits += 1
    return count / splits


def paired_permutation(x: Sequence[float], y: Sequence[float]) -> float:
    """Exact two-sided sign-flip p of the mean of the paired differences x_i - y_i."""
    d = np.asarray(x, float) - np.asarray(y, float)
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    return float(np.mean(np.abs((signs * d).mean(axis=1)) >= observed - 1e-12))


def smallest_p(n1: int, n2: int = 0) -> float:
    """The smallest two-sided p an exact permutation test can give: paired (n2 = 0) 2 / 2^n1, else
    2 / C(n1 + n2, n1)."""
    return 2.0 / (2 ** n1 if n2 == 0 else math.comb(n1 + n2, n1))


def pooled_sd(sd1: float, sd2: float) -> float:
    """The pooled standard deviation of two variants with equal seed counts, sqrt((sd1^2 + sd2^2) / 2): the ``sd`` of
    :func:`seeds_per_arm` and :func:`detectable_difference`."""
    return math.sqrt((sd1 ** 2 + sd2 ** 2) / 2)


def seeds_per_arm(diff: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Seeds per variant (equal numbers) a two-sided two-sample t test at ``alpha`` needs to detect a true difference of
    means ``diff`` with probability ``power``, the seeds' standard deviation being ``sd`` in both variants
    (statsmodels' ``TTestIndPower``, the noncentral t).  inf when ``diff`` is 0 or ``sd`` is NaN; 2 (the least a t
    test takes) when ``sd`` is 0 and ``diff`` is not.  A planning figure: it says how many seeds a difference of that
    size would take, not how likely the observed one is."""
    from statsmodels.stats.power import TTestIndPower

    if diff == 0 or sd != sd:
        return math.inf
    if sd == 0:
        return 2.0
    return max(2.0, float(TTestIndPower().solve_power(effect_size=abs(diff) / sd, alpha=alpha, power=power)))


def detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference of means that ``n`` seeds per variant detect with probability ``power`` by a
    two-sided two-sample t test at ``alpha``, the seeds' standard deviation being ``sd`` (the inverse of
    :func:`seeds_per_arm`)."""
    from statsmodels.stats.power import TTestIndPower

    return float(sd * TTestIndPower().solve_power(nobs1=n, alpha=alpha, power=power))


def detectable_paired_difference(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean paired difference that ``n`` pairs detect with probability ``power`` by a two-sided
    paired t test at ``alpha``, the per-pair differences having standard deviation ``sd_diff`` (statsmodels'
    ``TTestPower``, the one-sample noncentral t)."""
    from statsmodels.stats.power import TTestPower

    return float(sd_diff * TTestPower().solve_power(nobs=n, alpha=alpha, power=power))
