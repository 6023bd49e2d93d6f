"""experiments.parity_harness's tests over seeds (the parity report's): the verdict by the margin written before the runs (docs/parity.md)."""

import pandas as pd

from experiments import parity_harness as parity


def _frame(ours, theirs):
    rows = [dict(env_name='cube', agent_name='floq', code=code, seed=i, success=v, q=-47.0 + v)
            for code, values in (('floq-jax', ours), ('published', theirs)) for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def _verdict(rows):
    assert len(rows) == 3, rows   # header, rule, one (task, agent) row
    return rows[-1].rstrip(' |').rsplit('| ', 1)[-1]


def test_equivalent_different_undecided():
    base = [0.10, 0.12, 0.14, 0.11, 0.13, 0.12, 0.10, 0.14]
    assert _verdict(parity.tests_over_seeds(_frame(base, base[::-1]), 'success', 5.0, 100.0)) == 'equivalent'
    shifted = [v + 0.15 for v in base]
    assert _verdict(parity.tests_over_seeds(_frame(shifted, base), 'success', 5.0, 100.0)) == 'different'
    wide = [0.0, 0.3, 0.0, 0.3]
    assert _verdict(parity.tests_over_seeds(_frame(wide, wide[::-1]), 'success', 5.0, 100.0)) == 'undecided'
    # A difference of 2 points, tight seeds: inside +-5 and also detected by Welch.
    near = [v + 0.02 for v in base]
    assert _verdict(parity.tests_over_seeds(_frame(near, base), 'success', 5.0, 100.0)) == 'equivalent and different'
    # The row reports the difference in points and the margin used.
    row = parity.tests_over_seeds(_frame(near, base), 'success', 5.0, 100.0)[-1]
    assert '| +2.00 |' in row and '| ±5 |' in row
    # The critic column in Q units.
    assert _verdict(parity.tests_over_seeds(_frame(base, base[::-1]), 'q', 1.0, 1.0)) == 'equivalent'
