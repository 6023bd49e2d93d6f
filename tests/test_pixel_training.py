"""A tiny synthetic uint8 pixel dataset (3 episodes of 16 x 16 x 3 frames, made here) trains floq and FQL with an
encoder through ``floq_jax.training.compose.train`` with --frame_stack and --p_aug, evaluating through the
FrameStack env wrapper (a stand-in pixel env: OGBench's visual envs render at ~170 ms a step on this kind of CPU), on
the device and with host sampling."""

import json
import os

import numpy as np
import pytest

from floq_jax.data.ogbench_io import OfflineData
from floq_jax.envs import envs as envs_lib
from floq_jax.training import compose
from floq_jax.training.options import RunOptions
from tests.conftest import scaled
from tests.test_pixel_sampling import CountingPixelEnv, toy_dataset

ENV = 'visual-cube-single-singletask-task1-v0'


@pytest.fixture
def pixel_env(monkeypatch):
    """Every env the run makes is the stand-in pixel env (behind FrameStack when asked, as make_env does)."""
    def make_env(env_name, **kwargs):
        frame_stack = kwargs.get('frame_stack')
        env = CountingPixelEnv()
        return env if frame_stack is None else envs_lib.FrameStack(env, int(frame_stack))

    monkeypatch.setattr(envs_lib, 'make_env', make_env)
    yield
    envs_lib.clear_env_pool()


def toy_data():
    train = toy_dataset()
    return OfflineData(env=None, train=train, val=None, source='test', generator=None, reward_range=(-1.0, 0.0),
                       dataset_file='toy-pixels.npz', env_name=ENV)


@pytest.mark.parametrize('agent,host', [('floq', False), ('fql', True)])
def test_pixel_agents_train_and_evaluate(tmp_path, pixel_env, agent, host):
    from agents import agent_class

    config = scaled(agent, 'tiny', encoder='impala_debug', batch_size=8)
    options = RunOptions(env_name=ENV, offline_steps=4, steps_per_call=2, log_interval=2, eval_interval=4,
                         save_interval=4, eval_episodes=2, eval_at_start=False, save_dir=str(tmp_path),
                         progress=False, tensorboard=False, frame_stack=2, p_aug=0.5, eval_num_steps=(2,),
                         host_sampling=host, eval_kwargs={'vector_mode': 'sync'})
    data = toy_data()
    compose.agent_config(config, ENV, data=data)
    dirs = compose.train(agent_class(config.agent_name), config, data, options)
    (run_dir,) = dirs
    flags = json.loads(open(os.path.join(run_dir, 'flags.json')).read())
    assert (flags['frame_stack'], flags['p_aug'], flags['agent']['encoder']) == (2, 0.5, 'impala_debug')
    with open(os.path.join(run_dir, 'eval.csv')) as f:
        rows = f.read().strip().splitlines()
    assert len(rows) == 2 and 'evaluation/success' in rows[0]
    with open(os.path.join(run_dir, 'train.csv')) as f:
        header, *values = [line.split(',') for line in f.read().strip().splitlines()]
    assert len(values) == 2
    loss = [float(v[header.index('training/critic/critic_loss')]) for v in values]
    assert np.all(np.isfinite(loss))
    # The critic diagnostics and the Q estimates at extra K read stacked frames too.
    assert any(h.startswith('diagnostics/') for h in header), header
    eval_header, eval_row = [line.split(',') for line in rows]
    assert np.isfinite(float(eval_row[eval_header.index('evaluation/q_K2')]))
    assert os.listdir(os.path.join(run_dir, 'checkpoints'))
