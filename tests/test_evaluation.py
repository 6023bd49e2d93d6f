"""Tests for floq_jax.envs.evaluation (and the vector envs in floq_jax.envs.envs).

Real OGBench envs are used with a short time limit (``max_episode_steps``) to
keep the suite fast; a toy env with a known success rule checks that success
is read from ``info['success']`` of each episode's final step.
"""

import logging

import gymnasium
import jax
import numpy as np
import pytest

from floq_jax.envs import envs as envs_lib
from floq_jax.envs import evaluation

ENV = 'cube-single-play-singletask-task2-v0'
STEPS = 20


def feature_policy(obs, rng, temperature):
    """Deterministic, row-independent policy: (N, 28) -> (N, 5) in [-1, 1]."""
    del rng, temperature
    return np.tanh(3.0 * obs[:, 3:8] + 0.5 * obs[:, :5])


class ToyEnv(gymnasium.Env):
    """Episode of ``3 + seed % 4`` steps; obs = [t, s] with s ~ U(-1, 1) from the reset seed.

    info['success'] is the OPPOSITE of the true outcome on every non-final step;
    on the final step it is True iff the action is > 0.  Reward 1 per step.
    Even seeds end by ``terminated``, odd seeds by ``truncated``.
    """

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._len = 3 + (seed % 4)
        self._odd = seed % 2 == 1
        self._t = 0
        self._s = float(self.np_random.uniform(-1, 1))
        return np.array([0.0, self._s]), {}

    def step(self, action):
        self._t += 1
        final = self._t >= self._len
        positive = bool(np.asarray(action).reshape(-1)[0] > 0)
        info = {'success': positive if final else not positive}
        obs = np.array([float(self._t), self._s])
        return obs, 1.0, final and not self._odd, final and self._odd, info


def toy_env_fn():
    return envs_lib.FreezeAfterDone(ToyEnv())


def sign_policy(obs, rng, temperature):
    return obs[:, 1:2]


def _toy_expected(seeds):
    lengths, success = [], []
    for s in seeds:
        env = ToyEnv()
        obs, _ = env.reset(seed=int(s))
        lengths.append(3 + int(s) % 4)
        success.append(float(obs[1] > 0))
    return np.array(lengths), np.array(success)


@pytest.mark.parametrize('mode', ['sync', 'chunked'])
def test_success_read_from_final_info_toy(mode):
    seeds = envs_lib.episode_seeds(3, 9)
    exp_len, exp_success = _toy_expected(seeds)
    assert 0 < exp_success.sum() < len(seeds)  # Both outcomes occur.
    fns = [toy_env_fn] * 4  # 9 episodes on 4 slots: exercises slot refills and parking.
    disabled = gymnasium.vector.AutoresetMode.DISABLED
    if mode == 'sync':
        venv = gymnasium.vector.SyncVectorEnv(fns, autoreset_mode=disabled)
    else:
        venv = envs_lib.ChunkedVectorEnv(fns, num_workers=2)
    try:
        par = evaluation._run_parallel(venv, sign_policy, seeds, jax.random.PRNGKey(0), 0.0)
    finally:
        venv.close()
    seq, _ = evaluation._run_sequential(ToyEnv(), sign_policy, seeds, jax.random.PRNGKey(0), 0.0)
    for res in (par, seq):
        np.testing.assert_array_equal(res['episode_length'], exp_len)
        np.testing.assert_array_equal(res['episode_return'], exp_len.astype(float))
        np.testing.assert_array_equal(res['episode_success'], exp_success)
        assert res['success'] == pytest.approx(exp_success.mean())
        np.testing.assert_array_equal(res['episode_final_observation'][:, 0], exp_len)


def test_parallel_equals_sequential_and_deterministic():
    """Same reset seeds -> identical per-episode results, whatever the driver."""
    kw = dict(num_episodes=5, seed=7, max_episode_steps=STEPS)
    with evaluation.make_evaluator(ENV, num_envs=2, parallel=True, vector_mode='sync', **kw) as ev:
        par1 = ev(feature_policy)
        par2 = ev(feature_policy)  # Env kept alive and reused.
        other = ev(feature_policy, seed=8)
    seq = evaluation.evaluate(feature_policy, ENV, parallel=False, **kw)
    chunk = evaluation.evaluate(feature_policy, ENV, num_envs=2, vector_mode='chunked', num_workers=2, **kw)
    for res in (par2, seq, chunk):
        for key in ('episode_success', 'episode_return', 'episode_length', 'episode_final_observation'):
            np.testing.assert_array_equal(res[key], par1[key], err_msg=key)
        assert res['success'] == par1['success'] and res['return'] == par1['return']
    np.testing.assert_array_equal(par1['episode_length'], np.full(5, STEPS))
    assert par1['length'] == STEPS
    # Episodes differ from each other and from another seed's episodes.
    fin = par1['episode_final_observation']
    assert len({row.tobytes() for row in fin}) == 5
    assert not np.array_equal(other['episode_final_observation'], fin)


def test_idle_policy_never_succeeds():
    """A policy that does nothing cannot solve the task: success comes from OGBench's info."""
    zero = lambda obs, rng, t: np.zeros((obs.shape[0], 5), np.float32)
    res = evaluation.evaluate(zero, ENV, num_episodes=3, seed=1, max_episode_steps=STEPS, num_envs=2,
                              vector_mode='sync')
    assert res['success'] == 0.0
    np.testing.assert_array_equal(res['episode_success'], np.zeros(3))
    assert res['episode_success'].shape == (3,)
    np.testing.assert_array_equal(res['episode_length'], np.full(3, STEPS))
    assert res['return'] == pytest.approx(-float(STEPS))  # cube-single: reward -1 per unsolved step.


def test_policy_gets_batched_float32_obs_and_one_call_per_step():
    calls = []

    def policy(obs, rng, temperature):
        calls.append((obs.shape, obs.dtype, temperature))
        return feature_policy(obs, rng, temperature)

    evaluation.evaluate(policy, ENV, num_episodes=2, seed=0, max_episode_steps=5, temperature=0.5,
                        vector_mode='sync')
    assert len(calls) == 5  # 2 episodes in lockstep: one call per env step.
    assert all(c == ((2, 28), np.float32, 0.5) for c in calls)


def test_video_does_not_crash(caplog):
    with caplog.at_level(logging.WARNING):
        res = evaluation.evaluate(feature_policy, ENV, num_episodes=1, seed=0, max_episode_steps=3,
                                  video_episodes=1, vector_mode='sync')
    assert isinstance(res['videos'], list)
    if res['videos']:
        assert res['videos'][0].dtype == np.uint8 and res['videos'][0].shape[0] == 4
    else:
        assert any('rendering unavailable' in r.getMessage() for r in caplog.records)


def test_benchmark_evaluation_smoke():
    out = evaluation.benchmark_evaluation(feature_policy, ENV, num_episodes=2, vector_mode='sync',
                                          max_episode_steps=5)
    assert out['parallel_s'] > 0 and out['sequential_s'] > 0
    assert out['speedup'] == pytest.approx(out['sequential_s'] / out['parallel_s'])
    assert out['same_episode_success'] and out['same_episode_length']
