"""Data pipeline tests: generation in OGBench's format, loading via OGBench, validation errors, caching, CLI flags."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import ogbench
from floq_jax.data import (DatasetError, FAMILIES, OfflineData, ensure_generated_dataset, generate_dataset,
                           load_offline_data)
from floq_jax.data import generate as gen
from floq_jax.data.oracles import dataset_success, oracle_success
from tests.conftest import REPO

CUBE = 'cube-single-play-v0'


@pytest.fixture(scope='session')
def cube_file(tmp_path_factory):
    """5 train + 1 val episodes of 400 steps (seed 0 gives successes for several tasks)."""
    d = tmp_path_factory.mktemp('cube')
    return generate_dataset(CUBE, 5, 0, str(d), num_workers=2, max_episode_steps=400, progress=False)


def test_generated_file_has_ogbench_format(cube_file):
    f = np.load(cube_file)
    assert sorted(f.files) == ['actions', 'floq_generator', 'observations', 'qpos', 'qvel', 'terminals']
    assert f['observations'].dtype == np.float32 and f['actions'].dtype == np.float32
    assert f['terminals'].dtype == bool and f['qpos'].dtype == np.float32
    assert f['observations'].shape == (2000, 28) and f['actions'].shape == (2000, 5)
    ends = np.flatnonzero(f['terminals'])
    np.testing.assert_array_equal(ends, np.arange(399, 2000, 400))
    assert np.all(np.abs(f['actions']) <= 1)
    assert np.load(cube_file.replace('.npz', '-val.npz'))['observations'].shape == (400, 28)
    side = json.load(open(cube_file.replace('.npz', '.generator.json')))
    assert side['method'] == 'plan_oracle' and side['seed'] == 0 and side['episodes'] == 5


def test_loads_through_ogbench_and_load_offline_data(cube_file):
    name = 'cube-single-play-singletask-task3-v0'
    env, train, val = ogbench.make_env_and_datasets(name, dataset_path=cube_file)
    assert train['observations'].shape == (2000 - 5, 28)
    assert set(np.unique(train['rewards'])) <= {-1.0, 0.0}
    data = load_offline_data(name, dataset_path=cube_file)
    assert isinstance(data, OfflineData)
    assert data.source == 'generated' and data.generator['seed'] == 0
    assert data.dataset_file == os.path.abspath(cube_file)
    assert set(data.train) == {'observations', 'actions', 'rewards', 'masks', 'next_observations', 'terminals'}
    assert all(v.dtype == np.float32 for v in data.train.values())
    np.testing.assert_array_equal(data.train['rewards'], train['rewards'])
    np.testing.assert_array_equal(data.train['masks'], train['masks'])
    assert np.abs(data.train['actions']).max() <= 1 - 1e-5
    assert data.val['observations'].shape == (399, 28)
    assert data.reward_range == (float(train['rewards'].min()), float(train['rewards'].max()))
    assert data._eval_env is None  # built on first use only
    assert data.env is not data.eval_env and data.eval_env is data.eval_env
    assert data.eval_env.observation_space.shape == data.env.observation_space.shape


def test_some_task_succeeds_in_dataset(cube_file):
    frac = dataset_success(CUBE, cube_file)
    assert set(frac) == {1, 2, 3, 4, 5}
    assert max(frac.values()) > 0, frac
    best = max(frac, key=frac.get)
    data = load_offline_data(f'cube-single-play-singletask-task{best}-v0', dataset_path=cube_file)
    assert data.reward_range == (-1.0, 0.0)
    assert (data.train['masks'] == 0).any()
    assert oracle_success(CUBE, best, num_episodes=1) == 1.0  # the noise-free Markov oracle solves the task


def test_without_val_file(cube_file, tmp_path):
    path = tmp_path / 'x.npz'
    path.write_bytes(open(cube_file, 'rb').read())
    data = load_offline_data('cube-single-play-singletask-task1-v0', dataset_path=str(path))
    # A copy of a generated file is still generated (provenance is in the content, not beside the file).
    assert data.val is None and data.source == 'generated' and data.train['rewards'].shape == (1995,)


def test_provenance_from_content_not_path(cube_file, tmp_path):
    """Issue 14.8: a generated file reached through a symlink (no sidecar beside the link) is 'generated'; a file
    without the generator record (as OGBench's) is 'ogbench' even with a sidecar beside it."""
    name = 'cube-single-play-singletask-task1-v0'
    links = tmp_path / 'ogbench_data'
    links.mkdir()
    os.symlink(cube_file, links / f'{CUBE}.npz')
    os.symlink(cube_file.replace('.npz', '-val.npz'), links / f'{CUBE}-val.npz')
    data = load_offline_data(name, dataset_dir=str(links))
    assert data.source == 'generated' and data.generator['seed'] == 0 and data.generator['episodes'] == 5
    plain = tmp_path / 'plain'
    plain.mkdir()
    arrays = {k: v for k, v in np.load(cube_file).items() if k != 'floq_generator'}
    np.savez(plain / f'{CUBE}.npz', **arrays)
    (plain / f'{CUBE}.generator.json').write_text(open(cube_file.replace('.npz', '.generator.json')).read())
    data = load_offline_data(name, dataset_dir=str(plain))
    assert data.source == 'ogbench' and data.generator is None


def _files_equal(a, b):
    fa, fb = np.load(a), np.load(b)
    return fa.files == fb.files and all(np.array_equal(fa[k], fb[k]) for k in fa.files)


@pytest.mark.subprocess
def test_determinism_across_seeds_and_workers(tmp_path):
    kw = dict(max_episode_steps=60, progress=False)
    a = generate_dataset(CUBE, 2, 7, str(tmp_path / 'a'), num_workers=1, **kw)
    b = generate_dataset(CUBE, 2, 7, str(tmp_path / 'b'), num_workers=2, **kw)
    c = generate_dataset(CUBE, 2, 8, str(tmp_path / 'c'), num_workers=1, **kw)
    assert _files_equal(a, b)
    assert _files_equal(a.replace('.npz', '-val.npz'), b.replace('.npz', '-val.npz'))
    assert not _files_equal(a, c)


def _broken(cube_file, tmp_path, change):
    arrays = dict(np.load(cube_file))
    change(arrays)
    path = str(tmp_path / f'{CUBE}.npz')
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize('change,expected', [
    (lambda a: a.pop('qpos'), "missing key 'qpos'"),
    (lambda a: a.update(actions=a['actions'][:-3]), "'actions' has length 1997, expected 2000"),
    (lambda a: a['observations'].__setitem__((10, 2), np.nan), "'observations' has non-finite values"),
    (lambda a: a['actions'].__setitem__((5, 0), 1.5), "'actions' has values in"),
    (lambda a: a.update(observations=a['observations'][:, :20]), "'observations' has shape (20,)"),
])
def test_validation_errors(cube_file, tmp_path, change, expected):
    path = _broken(cube_file, tmp_path, change)
    with pytest.raises(DatasetError) as e:
        load_offline_data('cube-single-play-singletask-task1-v0', dataset_path=path)
    msg = str(e.value)
    assert expected in msg and '\n' not in msg, msg


def test_interrupted_generation_leaves_no_file(tmp_path, monkeypatch):
    calls = []

    def failing_save(fileobj, arrays):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt('simulated interruption')
        np.savez_compressed(fileobj, **arrays)

    monkeypatch.setattr(gen, '_save_npz', failing_save)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(CUBE, 1, 0, str(tmp_path), num_workers=1, max_episode_steps=20, progress=False)
    assert len(calls) == 2
    assert not (tmp_path / f'{CUBE}.npz').exists()
    assert os.listdir(tmp_path) == []


def test_pointmaze_oracle_and_generation(tmp_path):
    rates = [oracle_success('pointmaze-medium-navigate-v0', task, num_episodes=1) for task in range(1, 6)]
    assert np.mean(rates) >= 0.8, rates
    path = generate_dataset('pointmaze-medium-stitch-v0', 10, 0, str(tmp_path), num_workers=1, progress=False)
    f = np.load(path)
    assert f['observations'].shape == (10 * 201, 2) and f['qpos'].shape == (10 * 201, 2)
    data = load_offline_data('pointmaze-medium-stitch-singletask-task1-v0', dataset_path=path)
    assert set(np.unique(data.train['rewards'])) <= {-1.0, 0.0}
    assert data.val['observations'].shape == (200, 2)


def test_missing_file_is_fast_and_named(tmp_path):
    start = time.time()
    with pytest.raises(DatasetError) as e:
        load_offline_data('cube-double-play-singletask-task2-v0', dataset_dir=str(tmp_path))
    assert time.time() - start < 5
    msg = str(e.value)
    assert os.path.join(str(tmp_path), 'cube-double-play-v0.npz') in msg
    assert 'experiments.make_dataset' in msg and '--dataset_dir' in msg and '\n' not in msg


def test_unknown_env_and_unsupported_generation():
    with pytest.raises(DatasetError) as e:
        load_offline_data('walker-walk-singletask-task1-v0')
    assert all(f in str(e.value) for f in FAMILIES)
    with pytest.raises(DatasetError, match='expert policies'):
        generate_dataset('antmaze-medium-navigate-v0', 1, 0, '/tmp/unused')
    with pytest.raises(DatasetError, match='num_episodes'):
        generate_dataset(CUBE, 0, 0, '/tmp/unused')


@pytest.mark.subprocess
def test_ensure_generated_dataset_caches(tmp_path, monkeypatch):
    monkeypatch.setenv('FLOQ_DATA_CACHE', str(tmp_path))
    p1 = ensure_generated_dataset('pointmaze-medium-navigate-v0', 2, 3, max_episode_steps=50)
    assert p1.startswith(str(tmp_path)) and os.path.basename(p1) == 'pointmaze-medium-navigate-v0.npz'
    mtime = os.path.getmtime(p1)
    monkeypatch.setattr(gen, 'collect', lambda *a, **k: pytest.fail('regenerated a cached dataset'))
    assert ensure_generated_dataset('pointmaze-medium-navigate-v0', 2, 3, max_episode_steps=50) == p1
    assert os.path.getmtime(p1) == mtime


@pytest.mark.subprocess
@pytest.mark.parametrize('flags,name', [
    (['--env_name=walker-run-v0'], '--env_name'),
    (['--num_episodes=0'], '--num_episodes'),
    (['--dataset_dir={file}/sub'], '--dataset_dir'),
    (['--env_name=antmaze-large-navigate-v0'], 'expert'),
])
def test_make_dataset_bad_flags(tmp_path, flags, name):
    blocker = tmp_path / 'afile'
    blocker.write_text('x')
    flags = [f.format(file=blocker) for f in flags]
    r = subprocess.run([sys.executable, '-m', 'experiments.make_dataset', *flags], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0
    err_lines = [l for l in r.stderr.splitlines() if l.startswith('make_dataset: error:')]
    assert len(err_lines) == 1 and name in err_lines[0], r.stderr
