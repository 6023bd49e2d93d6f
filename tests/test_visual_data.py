"""Pixel datasets: OGBench's visual envs driven by its oracles, files in OGBench's visual format (uint8 frames),
loading them (ours and OGBench's own loader), validation, and the one-line error when MuJoCo cannot render."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import ogbench
from floq_jax.data import DatasetError, ensure_generated_dataset, generation_config, load_offline_data, parse_name
from floq_jax.data import generate as gen
from floq_jax.data.ogbench_io import validate_file
from floq_jax.data.oracles import dataset_success
from floq_jax.data.rendering import missing_backend
from tests.conftest import REPO, TINY_VISUAL, subprocess_env

TASK = TINY_VISUAL['task']
STEPS = TINY_VISUAL['max_episode_steps']
FRAME = (64, 64, 3)


def test_tiny_visual_dataset_is_in_ogbench_visual_format(tiny_visual_dataset):
    with np.load(tiny_visual_dataset) as f:
        assert sorted(f.files) == ['actions', 'floq_generator', 'observations', 'qpos', 'qvel', 'terminals']
        obs, terms, qpos = f['observations'], f['terminals'], f['qpos']
        assert obs.dtype == np.uint8 and obs.shape == (2 * STEPS,) + FRAME
        assert f['actions'].dtype == np.float32 and f['actions'].shape == (2 * STEPS, 5)
        assert qpos.dtype == np.float32 and f['qvel'].dtype == np.float32 and terms.dtype == bool
    np.testing.assert_array_equal(np.flatnonzero(terms), [STEPS - 1, 2 * STEPS - 1])
    with np.load(tiny_visual_dataset.replace('.npz', '-val.npz')) as f:
        assert f['observations'].dtype == np.uint8 and f['observations'].shape == (STEPS,) + FRAME
    validate_file(tiny_visual_dataset, 'cube', FRAME, 5, np.uint8)
    side = json.load(open(tiny_visual_dataset.replace('.npz', '.generator.json')))
    assert side['dataset'] == 'visual-cube-single-play-v0' and side['env'] == 'visual-cube-single-v0'
    assert side['method'] == 'plan_oracle' and side['mujoco_gl'] and 'uint8' in side['observations']
    assert obs.std() > 10 and np.abs(obs[0].astype(int) - obs[STEPS - 1]).max() > 0  # a scene, and the arm moves
    # The frames are the visual env's own: episode 0's first frame is what OGBench's visual env renders on a reset
    # with that episode's seed (camera 'front_pixels', 64x64), and its qpos is that state's.
    import gymnasium

    env = gymnasium.make('visual-cube-single-v0', terminate_at_goal=False, mode='data_collection',
                         max_episode_steps=STEPS)
    ob, info = env.reset(seed=gen.episode_seed(0, 0))
    np.testing.assert_array_equal(ob, obs[0])
    np.testing.assert_allclose(info['qpos'], qpos[0], atol=1e-6)
    env.close()
    # Cached: asking again returns the same file without generating it again.
    before = os.path.getmtime(tiny_visual_dataset)
    again = ensure_generated_dataset(TINY_VISUAL['dataset'], num_episodes=2, seed=0, max_episode_steps=STEPS,
                                     cache_dir=os.path.dirname(os.path.dirname(tiny_visual_dataset)))
    assert again == tiny_visual_dataset and os.path.getmtime(again) == before


@pytest.fixture(scope='module')
def loaded(tiny_visual_dataset):
    """The tiny pixel dataset through load_offline_data (building the visual env costs seconds: once per module)."""
    return load_offline_data(TASK, dataset_path=tiny_visual_dataset)


def test_load_offline_data_keeps_frames_uint8(tiny_visual_dataset, loaded):
    data = loaded
    n = 2 * (STEPS - 1)  # OGBench's regular layout: one transition fewer than rows per episode
    assert data.source == 'generated' and data.generator['dataset'] == 'visual-cube-single-play-v0'
    for k in ('observations', 'next_observations'):
        assert data.train[k].dtype == np.uint8 and data.train[k].shape == (n,) + FRAME, k
    for k in ('actions', 'rewards', 'masks', 'terminals'):
        assert data.train[k].dtype == np.float32, k
    np.testing.assert_array_equal(data.train['terminals'], np.tile(np.eye(STEPS - 1)[-1], 2))
    assert data.val['observations'].shape == (STEPS - 1,) + FRAME
    # OGBench's own loader reads the same file to the same arrays.
    _, train, val = ogbench.make_env_and_datasets(TASK, dataset_path=tiny_visual_dataset)
    for k in ('observations', 'next_observations', 'rewards', 'masks'):
        np.testing.assert_array_equal(data.train[k], train[k], err_msg=k)
    assert train['observations'].dtype == np.uint8 and val['observations'].shape == (STEPS - 1,) + FRAME
    # The per-task report relabels a pixel file from its qpos, like its state twin (no frames loaded).
    assert 0.0 <= dataset_success(TINY_VISUAL['dataset'], tiny_visual_dataset, tasks=(2,))[2] <= 1.0


def test_loading_a_visual_file_renders_nothing(tiny_visual_dataset, loaded, monkeypatch):
    """Loading an existing pixel file needs no GL backend: its frames are read from the file and its rewards come from
    qpos (relabelled by the state twin env, same task), so neither the rendering check nor a render runs (rendering
    is for generating frames and for evaluation).  Same arrays as the loader's (and OGBench's, checked above)."""
    from ogbench.manipspace.envs.manipspace_env import ManipSpaceEnv

    from floq_jax.data import rendering

    def never(*args, **kwargs):
        raise AssertionError('loading an existing pixel file rendered (or checked rendering)')

    monkeypatch.setattr(rendering, 'require_rendering', never)
    monkeypatch.setattr(rendering, 'probe_rendering', never)
    monkeypatch.setattr(ManipSpaceEnv, 'render', never)
    data = load_offline_data(TASK, dataset_path=tiny_visual_dataset)
    for split in ('train', 'val'):
        for k, v in getattr(loaded, split).items():
            np.testing.assert_array_equal(getattr(data, split)[k], v, err_msg=f'{split}/{k}')
            assert getattr(data, split)[k].dtype == v.dtype
    assert data.reward_range == loaded.reward_range


def test_ogbench_visual_files_load_untouched_from_dataset_dir(tiny_visual_dataset, loaded, tmp_path):
    """A file written exactly as OGBench writes its visual datasets (np.savez_compressed of observations uint8,
    actions, terminals bool, qpos, qvel; no generator record) is found in --dataset_dir and loaded as 'ogbench'."""
    for suffix in ('', '-val'):
        with np.load(tiny_visual_dataset.replace('.npz', f'{suffix}.npz')) as f:
            arrays = {k: f[k] for k in ('observations', 'actions', 'terminals', 'qpos', 'qvel')}
        np.savez_compressed(tmp_path / f'visual-cube-single-play-v0{suffix}.npz', **arrays)
    data = load_offline_data(TASK, dataset_dir=str(tmp_path))
    ours = loaded
    assert data.source == 'ogbench' and data.generator is None
    assert data.dataset_file == str(tmp_path / 'visual-cube-single-play-v0.npz')
    for k in ours.train:
        np.testing.assert_array_equal(data.train[k], ours.train[k], err_msg=k)
        assert data.train[k].dtype == ours.train[k].dtype


def _write(path, observations, n=6):
    terms = np.zeros(n, bool)
    terms[n // 2 - 1] = terms[-1] = True
    np.savez(path, observations=observations, actions=np.zeros((n, 5), np.float32), terminals=terms,
             qpos=np.zeros((n, 21), np.float32), qvel=np.zeros((n, 20), np.float32))
    return str(path)


def test_validate_file_checks_frame_dtype_and_shape(tmp_path):
    good = _write(tmp_path / 'good.npz', np.zeros((6,) + FRAME, np.uint8))
    validate_file(good, 'cube', FRAME, 5, np.uint8)
    floats = _write(tmp_path / 'floats.npz', np.zeros((6,) + FRAME, np.float32))
    with pytest.raises(DatasetError, match=r"floats.npz: key 'observations' has dtype float32, expected uint8 frames"):
        validate_file(floats, 'cube', FRAME, 5, np.uint8)
    small = _write(tmp_path / 'small.npz', np.zeros((6, 32, 32, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"has shape \(32, 32, 3\) per row, expected \(64, 64, 3\)"):
        validate_file(small, 'cube', FRAME, 5, np.uint8)
    # A state env (float observations) refuses frames, and still accepts float32 state files.
    with pytest.raises(DatasetError, match='has dtype uint8, expected float'):
        validate_file(good, 'cube', None, 5, np.float64)
    state = _write(tmp_path / 'state.npz', np.zeros((6, 28), np.float32))
    validate_file(state, 'cube', (28,), 5, np.float64)


def test_visual_names_and_generation_config():
    p = parse_name(TASK)
    assert (p.visual, p.family, p.env_prefix, p.dataset_name) == (True, 'cube', 'visual-cube-single',
                                                                  'visual-cube-single-play-v0')
    assert p.single_task_env_name(2) == 'visual-cube-single-singletask-task2-v0'
    assert p.state_name.dataset_name == 'cube-single-play-v0' and not p.state_name.visual
    assert parse_name('cube-single-play-v0').state_name == parse_name('cube-single-play-v0')
    for name in ('visual-cube-single-play-v0', 'visual-scene-noisy-v0', 'visual-puzzle-4x4-play-v0'):
        cfg = generation_config(name)
        assert cfg.visual and cfg.env_name == parse_name(name).env_name and cfg.max_episode_steps == 1001
    assert not generation_config('cube-single-play-v0').visual
    with pytest.raises(DatasetError, match="did you mean 'visual-cube-single-play-v0'"):
        parse_name('visual-cube-singel-play-v0')
    with pytest.raises(DatasetError, match="supported pixel environments are visual-cube-single"):
        generation_config('visual-puzzle-4x5-play-v0')
    with pytest.raises(DatasetError, match='expert policies'):
        generation_config('visual-antmaze-medium-navigate-v0')


def test_is_visual_is_the_one_prefix_test():
    from floq_jax.data.names import family_of, is_visual

    assert is_visual('visual-cube-single-play-v0') and is_visual('visual-scene-singletask-task1-v0')
    assert not is_visual('cube-single-play-v0') and not is_visual('scene-visual-v0')
    assert family_of('visual-puzzle-4x4-play-v0') == family_of('puzzle-4x4-play-v0') == 'puzzle'


def test_rendering_is_probed_once_per_process(monkeypatch):
    """A CLI pixel run asks twice (experiments.common.prepare for its usage error, compose.train before training):
    the one-frame render in a child process runs once, the second answer is remembered."""
    from floq_jax.data import rendering

    calls = []

    def fake_run(*args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, '', '')

    monkeypatch.setattr(rendering, '_PROBED', {})
    monkeypatch.setattr(rendering, 'missing_backend', lambda: None)
    monkeypatch.setattr(rendering.subprocess, 'run', fake_run)
    monkeypatch.setenv('MUJOCO_GL', 'egl')
    rendering.require_rendering('evaluating visual-cube-single-singletask-task2-v0')
    rendering.require_rendering('evaluating visual-cube-single-singletask-task2-v0')
    assert len(calls) == 1


def test_missing_backend_names_what_is_missing():
    def libs(*present):
        return lambda name: f'lib{name}.so.1' if name in present else None

    assert missing_backend({'MUJOCO_GL': 'egl'}, libs('EGL')) is None
    assert missing_backend({'MUJOCO_GL': 'osmesa'}, libs('OSMesa')) is None
    assert missing_backend({}, libs('EGL')) is None  # unset: quiet_setup picks EGL
    assert missing_backend({'MUJOCO_GL': 'glfw', 'DISPLAY': ':0'}, libs()) is None
    assert missing_backend({'MUJOCO_GL': 'osmesa'}, libs('EGL')) == 'MUJOCO_GL=osmesa but libOSMesa is not installed'
    assert missing_backend({'MUJOCO_GL': 'egl'}, libs('OSMesa')) == 'MUJOCO_GL=egl but libEGL is not installed'
    assert 'not a MuJoCo rendering backend' in missing_backend({'MUJOCO_GL': 'vulkan'}, libs('EGL'))
    assert 'neither libEGL nor libOSMesa' in missing_backend({}, libs())
    assert 'neither libEGL nor libOSMesa' in missing_backend({'MUJOCO_GL': 'disable'}, libs())
    assert 'turns rendering off' in missing_backend({'MUJOCO_GL': 'disable'}, libs('EGL'))
    assert 'needs a display' in missing_backend({'MUJOCO_GL': 'glfw'}, libs('EGL'))


# make_dataset as a user runs it; OSMesa forced missing by hiding the library from ctypes (this machine may have it).
_HIDE_OSMESA = ("import ctypes.util, runpy, sys; find = ctypes.util.find_library; "
                "ctypes.util.find_library = lambda n: None if n == 'OSMesa' else find(n); "
                "sys.argv = ['make_dataset'] + sys.argv[1:]; "
                "runpy.run_module('experiments.make_dataset', run_name='__main__', alter_sys=True)")


@pytest.mark.subprocess
@pytest.mark.parametrize('mujoco_gl', ['osmesa', 'bogus'])
def test_make_dataset_one_line_when_rendering_is_missing(tmp_path, mujoco_gl):
    out_dir = tmp_path / 'out'
    args = ['--env_name=visual-cube-single-play-v0', '--num_episodes=1', f'--dataset_dir={out_dir}']
    out = subprocess.run([sys.executable, '-c', _HIDE_OSMESA, *args], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env=subprocess_env(MUJOCO_GL=mujoco_gl))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    want = {'osmesa': 'MUJOCO_GL=osmesa but libOSMesa is not installed',
            'bogus': "MUJOCO_GL='bogus' is not a MuJoCo rendering backend"}[mujoco_gl]
    assert lines[0].startswith('make_dataset: error: --env_name=visual-cube-single-play-v0 needs offscreen '
                               f'rendering: {want}'), lines[0]
    assert 'make render-deps' in lines[0] and 'libosmesa6' in lines[0]
    assert not out_dir.exists()  # nothing written


@pytest.mark.subprocess
def test_make_dataset_cli_generates_a_visual_dataset(tmp_path):
    out = subprocess.run([sys.executable, '-m', 'experiments.make_dataset', '--env_name=visual-cube-single-play-v0',
                          '--num_episodes=1', '--max_episode_steps=4', '--num_workers=1', f'--dataset_dir={tmp_path}'],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(os.listdir(tmp_path)) == ['visual-cube-single-play-v0-val.npz', 'visual-cube-single-play-v0.generator.json',
                                            'visual-cube-single-play-v0.npz']
    with np.load(tmp_path / 'visual-cube-single-play-v0.npz') as f:
        assert f['observations'].dtype == np.uint8 and f['observations'].shape == (4,) + FRAME
    assert 'wrote' in out.stdout and 'frames/s' in out.stdout


def test_generate_dataset_checks_rendering_for_pixel_names_only(tmp_path, monkeypatch):
    """The library's check: a pixel name with MuJoCo unable to render raises the one-line DatasetError before anything
    is written; a state name never asks for rendering (its env draws nothing)."""
    from floq_jax.data import generate_dataset, rendering

    gl = os.environ.get('MUJOCO_GL', 'egl')
    monkeypatch.setenv('MUJOCO_GL', 'bogus')
    with pytest.raises(DatasetError, match=r"^generating visual-cube-single-play-v0 needs offscreen rendering: "
                                           r"MUJOCO_GL='bogus' is not a MuJoCo rendering backend"):
        generate_dataset('visual-cube-single-play-v0', 1, 0, str(tmp_path / 'pixels'), num_workers=1,
                         max_episode_steps=3, progress=False)
    assert not (tmp_path / 'pixels').exists()
    monkeypatch.setenv('MUJOCO_GL', gl)  # (MuJoCo itself refuses an invalid value once anything imports its GL layer)

    def never(what):
        raise AssertionError(f'{what}: a state dataset asked for rendering')

    monkeypatch.setattr(rendering, 'require_rendering', never)
    path = generate_dataset('cube-single-play-v0', 1, 0, str(tmp_path / 'states'), num_workers=1, max_episode_steps=3,
                            progress=False)
    with np.load(path) as f:
        assert f['observations'].dtype == np.float32 and f['observations'].shape == (3, 28)


def test_a_pixel_run_checks_rendering_before_it_writes(tmp_path, monkeypatch):
    """Rendering is asked for where frames are made: a pixel run that evaluates (compose.train, before anything is
    written) raises the one-line DatasetError when MuJoCo cannot render; no episodes, or a state env, never asks."""
    from floq_jax.data import rendering
    from floq_jax.training import compose
    from floq_jax.training.options import RunOptions

    gl = os.environ.get('MUJOCO_GL', 'egl')
    monkeypatch.setenv('MUJOCO_GL', 'bogus')
    options = RunOptions(env_name=TASK, offline_steps=1, eval_episodes=2, save_dir=str(tmp_path / 'runs'))
    with pytest.raises(DatasetError, match=rf"^evaluating {TASK} needs offscreen rendering: MUJOCO_GL='bogus' is not"):
        compose.train(None, None, None, options)
    assert not (tmp_path / 'runs').exists()
    monkeypatch.setenv('MUJOCO_GL', gl)

    def never(what):
        raise AssertionError(f'{what}: asked for rendering')

    monkeypatch.setattr(rendering, 'require_rendering', never)
    compose.check_rendering(TASK, 0)
    compose.check_rendering('cube-single-play-singletask-task2-v0', 50)
