"""The pixel flags' bad values: one line naming the flag and what is accepted, exit code 2, nothing written."""

import pytest

from tests.test_cli import ENV, error_line, run, save_dir  # noqa: F401 - save_dir is a fixture

pytestmark = pytest.mark.subprocess  # starts entrypoints


@pytest.mark.parametrize('module,flags,expected', [
    ('experiments.train_offline', ['--frame_stack=0'], 'error: --frame_stack=0: accepted: a positive integer'),
    ('experiments.train_offline', ['--p_aug=1.5'], 'error: --p_aug=1.5: accepted: a probability in [0, 1]'),
    ('experiments.train_offline', ['--agent.encoder=resnet'], "error: --agent.encoder='resnet': accepted: one of"),
    ('experiments.train_offline_to_online', ['--frame_stack=3', '--online_steps=5'],
     'error: --frame_stack=3 --online_steps=5: pixel options train offline only'),
])
def test_pixel_flags_bad_values(save_dir, module, flags, expected):  # noqa: F811 - the fixture
    out = run([f'--env_name={ENV}', *flags, f'--save_dir={save_dir}'], module=module)
    assert out.returncode == 2 and error_line(out).startswith(expected), error_line(out)
