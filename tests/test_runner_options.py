"""Runner options: multi-host logging (process 0 only) and the host-sampling fallback (exact resume)."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import agents
from floq_jax.training import parallel, restore
from floq_jax.training.options import RunOptions
from tests.hooks import stop_after
from tests.conftest import read_csv

ENV = 'cube-single-play-singletask-task1-v0'


@pytest.fixture(scope='module')
def tiny_dataset(tmp_path_factory):
    from floq_jax.data import ensure_generated_dataset

    return ensure_generated_dataset('cube-single-play-v0', num_episodes=3, seed=0, max_episode_steps=100,
                                    cache_dir=str(tmp_path_factory.mktemp('data_cache')), num_workers=1)


def test_non_primary_process_writes_no_logs(tiny_dataset, tmp_path, monkeypatch):
    """Multi-host: a process other than 0 trains and checkpoints but writes no flags.json, CSV or TensorBoard files;
    process 0 writes them all (the second, 10-step run reuses the cached compiled chunk)."""
    from floq_jax.training import runner
    from floq_jax.data import load_offline_data
    from tests.conftest import scaled

    data = load_offline_data(ENV, dataset_path=tiny_dataset)
    config = scaled('floq', 'small')
    runner.set_reward_range(config, data)

    monkeypatch.setattr(parallel, 'is_primary_process', lambda: False)
    options = RunOptions(env_name=ENV, num_seeds=1, offline_steps=20, steps_per_call=10, log_interval=10,
                         eval_interval=20, save_interval=10, eval_episodes=1, eval_at_start=False,
                         save_dir=str(tmp_path), run_group='worker', tensorboard=True, progress=False, use_mesh=False,
                         eval_kwargs=dict(vector_mode='sync', max_episode_steps=5))
    (d,) = runner.run_offline(agents.agent_class(config.agent_name), config, data, options)
    assert sorted(os.listdir(d)) == ['checkpoints'] and '20' in os.listdir(os.path.join(d, 'checkpoints'))
    monkeypatch.setattr(parallel, 'is_primary_process', lambda: True)  # process 0 (every other test) writes them all
    (d,) = runner.run_offline(agents.agent_class(config.agent_name), config, data,
                              dataclasses.replace(options, run_group='chief', offline_steps=10))
    assert {'flags.json', 'train.csv', 'eval.csv', 'tb', 'checkpoints'} <= set(os.listdir(d))


def test_host_sampling_trains_and_resumes_exactly(tiny_dataset, tmp_path):
    """host_sampling=True (the fallback for datasets larger than device memory): batches drawn on the host with
    prefetch; a run stopped at its step-20 checkpoint and resumed logs the same rows and ends with the same params
    as an uninterrupted run."""
    import jax

    from floq_jax.training import runner
    from floq_jax.data import load_offline_data
    from tests.conftest import scaled

    data = load_offline_data(ENV, dataset_path=tiny_dataset)
    config = scaled('floq', 'small')
    runner.set_reward_range(config, data)

    def run(group, steps, stop=None):
        options = RunOptions(env_name=ENV, num_seeds=2, offline_steps=steps, steps_per_call=10, log_interval=10,
                             eval_interval=1000, save_interval=20, eval_episodes=1, eval_at_start=False,
                             save_dir=str(tmp_path), run_group=group, tensorboard=False, progress=False,
                             use_mesh=False, host_sampling=True,
                             eval_kwargs=dict(vector_mode='sync', max_episode_steps=5))
        return runner.run_offline(agents.agent_class(config.agent_name), config, data, options,
                                  callbacks=[stop_after(stop)] if stop is not None else [])

    full = run('full', 40)
    run('resumed', 40, stop=20)
    resumed = run('resumed', 40)
    for a, b in zip(full, resumed):
        rows_a, rows_b = read_csv(os.path.join(a, 'train.csv')), read_csv(os.path.join(b, 'train.csv'))
        assert [int(r['step']) for r in rows_a] == [10, 20, 30, 40]
        assert [r['training/critic/critic_loss'] for r in rows_a] == [r['training/critic/critic_loss'] for r in rows_b]
        pa, pb = (restore.load_run(d, agents.agent_class)[0].params for d in (a, b))
        jax.tree_util.tree_map(np.testing.assert_array_equal, pa, pb)
    seed0, seed1 = (read_csv(os.path.join(d, 'train.csv'))[0]['training/critic/critic_loss'] for d in full)
    assert seed0 != seed1  # each seed draws its own batches


@pytest.mark.subprocess
def test_seeds_sharded_over_cpu_devices_match_one_device(tiny_dataset, tmp_path):
    """--cpu_devices=2 splits the CPU into two XLA devices and shards the 2 seeds over them (one per core), here with
    --seed_loop=map (lax.map inside shard_map): the run finishes (diagnostics included: their partitioned program
    once hung on 2 CPU devices) and each seed's metrics equal those of the same seeds on one device (vmapped).
    (The vmapped sharded chunk: tests/test_train.py::test_mesh_over_8_devices_matches_one_device.)"""
    from tests.conftest import REPO, subprocess_env
    from tests.test_runner import TINY

    runs = {'dev1': (1, 'auto'), 'map2': (2, 'map')}

    def cmd(group, devices, seed_loop):
        return [sys.executable, '-m', 'experiments.train_offline', f'--env_name={ENV}',
                f'--dataset_path={tiny_dataset}', '--offline_steps=100', '--steps_per_call=50', '--log_interval=50',
                '--eval_interval=100', '--save_interval=100', '--eval_episodes=1', '--noeval_at_start',
                '--num_seeds=2', f'--cpu_devices={devices}', f'--seed_loop={seed_loop}', f'--save_dir={tmp_path}',
                f'--run_group={group}', '--noprogress', '--notensorboard', *TINY]

    procs = {g: subprocess.Popen(cmd(g, *args), cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for g, args in runs.items()}
    for g, p in procs.items():
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, f'{g} {runs[g]}: {err[-2000:]}'
    for seed in (0, 1):
        rows = {g: read_csv(os.path.join(tmp_path, g, ENV, 'floq', f'seed{seed}', 'train.csv')) for g in runs}
        for g in runs:
            assert [r['step'] for r in rows[g]] == ['50', '100'], g
        for g in ('map2',):
            for a, b in zip(rows['dev1'], rows[g]):
                keys = [k for k in a if k.startswith('training/')]
                np.testing.assert_allclose([float(a[k]) for k in keys], [float(b[k]) for k in keys], rtol=1e-3,
                                           atol=1e-5, err_msg=g)
        assert any(k.startswith('diagnostics/') for k in rows['map2'][0])
    for g, (devices, seed_loop) in runs.items():
        with open(os.path.join(tmp_path, g, ENV, 'floq', 'seed1', 'flags.json')) as f:
            record = json.load(f)
        assert (record['cpu_devices'], record['seed_loop']) == (devices, seed_loop), g


def test_cpu_devices_helpers():
    from floq_jax.training import parallel

    assert parallel.cpu_devices_for(1, cpu_count=2) == 1
    assert parallel.cpu_devices_for(2, cpu_count=2) == 2
    assert parallel.cpu_devices_for(8, cpu_count=2) == 2
    assert parallel.cpu_devices_for(3, cpu_count=2) == 1  # a seed is never split across devices
    assert parallel.cpu_devices_for(6, cpu_count=4) == 3
    assert parallel.set_cpu_devices(2) is False  # conftest's XLA_FLAGS device count (or a started JAX) wins
    with pytest.raises(ValueError):
        parallel.set_cpu_devices(0)
