"""floq_jax.analysis.seed_tests: the tests over seeds behind the verdicts (docs/experiments.md)."""

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
