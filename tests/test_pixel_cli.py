"""The pixel flags' bad values: one line naming the flag and what is accepted, exit code 2, nothing written."""

import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY_VISUAL, subprocess_env
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


def test_encoder_must_match_the_observations(save_dir, tiny_npz, tiny_visual_dataset):  # noqa: F811 - the fixture
    """An encoder reads frames, a network without one state vectors: either mismatch is one line naming
    --agent.encoder (both crashed in the agent's create with a traceback, after the run directories were made)."""
    state = run([f'--env_name={ENV}', f'--dataset_path={tiny_npz}', '--agent.encoder=impala_debug',
                 '--offline_steps=2', f'--save_dir={save_dir}'])
    assert state.returncode == 2 and error_line(state).startswith(
        f"error: --agent.encoder='impala_debug': {ENV} observes state vectors and an encoder reads frames; "
        'accepted: no --agent.encoder, or a visual-* env'), error_line(state)
    task = TINY_VISUAL['task']
    pixels = run([f'--env_name={task}', '--agent=agents/fql.py', f'--dataset_path={tiny_visual_dataset}',
                  '--offline_steps=2', f'--save_dir={save_dir}'])
    assert pixels.returncode == 2 and error_line(pixels).startswith(
        f'error: --agent.encoder=None: {task} observes frames, which a network without an encoder cannot read; '
        'accepted: --agent.encoder=impala'), error_line(pixels)


def test_pixel_run_where_mujoco_cannot_render(save_dir, tiny_visual_dataset):  # noqa: F811 - the fixture
    """The dataset loads without rendering; the run's evaluation would render: one line before anything is written."""
    task = TINY_VISUAL['task']
    out = subprocess.run([sys.executable, '-m', 'experiments.train_offline', f'--env_name={task}',
                          f'--dataset_path={tiny_visual_dataset}', '--agent.encoder=impala_debug', '--offline_steps=2',
                          f'--save_dir={save_dir}'], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env=subprocess_env(MUJOCO_GL='bogus'))
    assert out.returncode == 2 and error_line(out).startswith(
        f"error: --env_name={task}: evaluating {task} needs offscreen rendering: MUJOCO_GL='bogus'"), error_line(out)


def test_frame_stack_from_a_sweep_must_be_a_whole_number():
    """A sweep's options reach RunOptions without absl's integer parsing: 2.5, 3.0 or True is refused in one line (2.5
    used to pass validation and fail later in range())."""
    import numpy as np

    from floq_jax.training.options import OptionError, RunOptions

    for bad in (2.5, 3.0, 0, True):
        with pytest.raises(OptionError, match='frame_stack=.*accepted: a positive integer'):
            RunOptions(env_name='cube-single-play-singletask-task1-v0', frame_stack=bad).validate()
    RunOptions(env_name='cube-single-play-singletask-task1-v0', frame_stack=3).validate()
    RunOptions(env_name='cube-single-play-singletask-task1-v0', frame_stack=np.int64(3)).validate()
