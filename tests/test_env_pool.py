"""Reuse of built envs (floq_jax.envs.envs.pooled_env): a reused env replays a seeded episode exactly as a new one."""

import numpy as np
import pytest

from floq_jax.envs import envs as envs_lib


def _episode(env, seed, steps=25):
    """Observations, rewards and success flags of ``steps`` fixed actions after reset(seed)."""
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(123)
    out = [obs]
    for _ in range(steps):
        action = rng.uniform(-1, 1, env.action_space.shape)
        obs, reward, terminated, truncated, info = env.step(action)
        out += [obs, np.float64(reward), np.float64(info.get('success', 0.0))]
    return out


@pytest.mark.parametrize('env_name', ['cube-single-play-singletask-task2-v0', 'scene-play-singletask-task1-v0'])
def test_reused_env_replays_seeded_episode_like_a_new_one(env_name, monkeypatch):
    monkeypatch.setenv(envs_lib.ENV_POOL_VAR, '4')
    envs_lib.clear_env_pool()
    fresh = envs_lib.make_env(env_name)
    expected = _episode(fresh, seed=7)
    fresh.close()

    env = envs_lib.pooled_env(env_name)
    _episode(env, seed=99, steps=40)  # another episode first: state the reuse must not leak
    inner = env.env
    env.close()
    assert envs_lib.idle_env_count() == 1
    again = envs_lib.pooled_env(env_name)
    assert again.env is inner and envs_lib.idle_env_count() == 0  # the same env, taken back from the pool
    got = _episode(again, seed=7)
    again.close()
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    envs_lib.clear_env_pool()
    assert envs_lib.idle_env_count() == 0


def test_pool_is_bounded_and_keyed_by_kwargs(monkeypatch):
    name = 'cube-single-play-singletask-task2-v0'
    envs_lib.clear_env_pool()
    monkeypatch.setenv(envs_lib.ENV_POOL_VAR, '1')
    a, b = envs_lib.pooled_env(name), envs_lib.pooled_env(name)
    a.close()
    b.close()  # no room: closed for good
    a.close()  # a second close is a no-op
    assert envs_lib.idle_env_count() == 1
    c = envs_lib.pooled_env(name, max_episode_steps=10)  # other kwargs: a new env, the idle one stays
    assert c.env is not a.env and envs_lib.idle_env_count() == 1
    c.close()
    monkeypatch.setenv(envs_lib.ENV_POOL_VAR, '0')  # off: nothing is kept
    envs_lib.clear_env_pool()
    d = envs_lib.pooled_env(name)
    d.close()
    assert envs_lib.idle_env_count() == 0
