"""experiments/paired_timing.py: the paired, interleaved timing of one update in several source trees."""

import pytest

from experiments import paired_timing
from tests.conftest import REPO, scaled_flags


def test_ratios_are_paired_per_round_and_the_order_rotates():
    calls = []

    class Fake:
        def __init__(self, i, seconds):
            self.i, self.seconds = i, seconds

        def time(self, n):
            calls.append(self.i)
            s = self.seconds.pop(0)
            return dict(seconds=s, cpu_seconds=s / 2)

    workers = [Fake(0, [1.0, 4.0, 2.0]), Fake(1, [1.1, 4.4, 2.2])]  # tree 1 is 10% slower in every round
    times, cpu = paired_timing.paired_rounds(workers, 3, 1, log=lambda m: None)
    assert calls == [0, 1, 1, 0, 0, 1]
    out = paired_timing.summary(['a', 'b'], times, cpu)
    assert out['ratio_to_first'][0]['median'] == pytest.approx(1.1)
    assert out['ratio_to_first'][0]['min'] == pytest.approx(1.1) == out['ratio_to_first'][0]['max']
    assert out['cpu_ratio_to_first'][0]['median'] == pytest.approx(1.1)
    assert out['seconds'][0]['median'] == 2.0 and times == [[1.0, 4.0, 2.0], [1.1, 4.4, 2.2]]


@pytest.mark.parametrize('argv, flag', [([f'--tree={REPO}'], '--tree'),
                                        ([f'--tree={REPO}', '--tree=/nonexistent'], '--tree'),
                                        ([f'--tree={REPO}', f'--tree={REPO}', '--rounds=0'], '--rounds'),
                                        ([f'--tree={REPO}', f'--tree={REPO}', '--set=nokey'], '--set')])
def test_bad_flags_one_line_exit_2(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        paired_timing.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0], err


@pytest.mark.subprocess
def test_two_workers_time_the_same_tree(tmp_path):
    sets = [f'--set={flag[len("--agent."):]}' for flag in scaled_flags('floq', 'tiny')]
    out = paired_timing.main([f'--tree={REPO}', f'--tree={REPO}', '--rounds=2', *sets, f'--out={tmp_path / "t.json"}'])
    assert len(out['times']) == 2 and all(len(t) == 2 and min(t) > 0 for t in out['times'])
    assert out['workers'][0]['first_losses'] == out['workers'][1]['first_losses']  # the same tree computes the same
    assert (tmp_path / 't.json').exists()
