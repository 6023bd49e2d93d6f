"""Console output of the runs (issue 14): warnings silenced at their source, online episode metrics, summaries."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from tests.conftest import REPO



def test_online_episode_metrics_per_seed():
    from floq_jax.training.online import online_episode_metrics

    m = online_episode_metrics([[(-200.0, 0.0), (-50.0, 1.0)], []])
    np.testing.assert_array_equal(m['online/episodes'], [2, 0])
    assert m['online/episode_return'][0] == -125.0 and m['online/episode_success'][0] == 0.5
    assert np.isnan(m['online/episode_return'][1]) and np.isnan(m['online/episode_success'][1])


def test_quiet_setup_filters_only_box_precision_warnings():
    from floq_jax.console import quiet_setup

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        quiet_setup()
        warnings.warn("\x1b[33mWARN: Box low's precision lowered by casting to float32, current low.dtype=float64\x1b[0m")
        warnings.warn('something useful')
    assert [str(w.message) for w in caught] == ['something useful']


@pytest.mark.subprocess
def test_env_creation_is_quiet_without_display():
    """No GLFW 'DISPLAY environment variable is missing' and no gymnasium Box-precision warnings on stderr."""
    env = {k: v for k, v in os.environ.items() if k not in ('DISPLAY', 'WAYLAND_DISPLAY', 'MUJOCO_GL')}
    script = ('from floq_jax.console import quiet_setup\nquiet_setup()\nimport os\nfrom floq_jax.envs.envs import make_env\n'
              "make_env('cube-single-play-singletask-task1-v0')\nprint(os.environ['MUJOCO_GL'])\n")
    out = subprocess.run([sys.executable, '-c', script], cwd=REPO, env=dict(env, PYTHONPATH=REPO), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() in ('egl', 'osmesa', 'disable')
    assert 'DISPLAY' not in out.stderr and 'precision lowered' not in out.stderr, out.stderr[-2000:]
