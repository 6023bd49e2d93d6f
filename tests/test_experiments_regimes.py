"""The smoke runs of the experiments that change the training regime: freeze_features (a frozen critic trunk),
utd (offline-to-online at several update-to-data ratios) and mechanisms (tests/sweep_smoke.py)."""

import pytest

from tests import sweep_smoke


@pytest.mark.subprocess
@pytest.mark.parametrize('name', ['freeze_features', 'utd', 'mechanisms'])
def test_smoke_preset_writes_finite_table_and_plots(name, smoke_dirs):
    sweep_smoke.check_smoke_run(name, smoke_dirs)
