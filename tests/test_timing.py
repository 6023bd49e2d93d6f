"""Where a run's time goes (floq_jax.training.timing) and the benchmark's end-to-end section at toy scale."""

import json
import os
import time

import pytest

from floq_jax.training import timing


def test_nested_phases_count_once_and_unknown_phase_is_refused(tmp_path):
    t = timing.PhaseTimes()
    with t.phase('evaluation'):
        time.sleep(0.05)
        with t.phase('compile'):
            time.sleep(0.1)
    assert 0.09 <= t.seconds['compile'] < 0.5
    assert 0.04 <= t.seconds['evaluation'] < 0.09  # the nested compile is not counted again
    with pytest.raises(ValueError, match='unknown phase'):
        with t.phase('bogus'):
            pass
    t.mark_main()
    assert 0 < t.seconds['imports'] < 3600  # since this process started
    path = t.write(str(tmp_path))
    record = json.load(open(path))
    assert set(record['seconds']) == {'evaluation', 'compile', 'imports'} and record['counts']['evaluation'] == 1
    assert timing.read(str(tmp_path)) == record and timing.read(str(tmp_path / 'none')) is None
    assert abs(record['process_start'] - time.time()) < 24 * 3600


@pytest.mark.subprocess
def test_end_to_end_tiny_run_breaks_down_its_wall_clock(tmp_path):
    """A toy train_offline run timed from outside: every phase of the run is there and the phases add up to the
    wall-clock (the rest is 'other', small at this scale); no published checkout: no ratio."""
    from experiments import end_to_end
    from tests.conftest import subprocess_env

    result = end_to_end.measure('tiny', work_dir=str(tmp_path / 'e2e'), env=subprocess_env(), log=lambda *a: None,
                                cache_dir=str(tmp_path / 'data'))
    fj = result['floq_jax']
    phases = fj['phases']
    for name in ('imports', 'data', 'setup', 'compile', 'training', 'logging', 'evaluation', 'checkpointing',
                 'closing'):
        assert phases.get(name, 0) > 0, (name, phases)
    assert fj['counts']['evaluation'] == 2  # steps 0 and 20
    assert abs(sum(phases.values()) - fj['wall_s']) < 0.05 * fj['wall_s'] + 0.5
    assert phases['other'] < 0.25 * fj['wall_s'], phases
    assert 'ratio' not in result and 'published' not in result
    text = end_to_end.table(result)
    assert '| compile |' in text and '**total (wall-clock)**' in text and 'Ratio' not in text
    run_dir = os.path.join(str(tmp_path / 'e2e'), 'floq_jax', 'end_to_end', end_to_end.SCALES['tiny']['task'], 'floq')
    assert all(os.path.isfile(os.path.join(run_dir, f'seed{s}', 'timings.json')) for s in (0, 1))
