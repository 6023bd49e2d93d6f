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
from floq_jax.training import benchmarking as bm
from floq_jax.training import evaluate

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


@pytest.mark.subprocess
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


@pytest.mark.subprocess
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


def test_benchmark_evaluation_smoke():
    out = bm.benchmark_evaluation(feature_policy, ENV, num_episodes=2, vector_mode='sync',
                                          max_episode_steps=5)
    assert out['parallel_s'] > 0 and out['sequential_s'] > 0
    assert out['speedup'] == pytest.approx(out['sequential_s'] / out['parallel_s'])
    assert out['same_episode_success'] and out['same_episode_length']


# ----------------------------------------------------------------------------- seeds together, bounded pool


def test_pool_sizing_is_bounded_by_memory_and_episodes():
    mib = 2**20
    # 10 GiB available, half of it at 200 MiB per env: 25 envs.
    assert evaluation.eval_pool_size(10 * 1024 * mib, 200 * mib, num_seeds=8, num_episodes=50) == 25
    assert evaluation.eval_pool_size(10 * 1024 * mib, 200 * mib, 8, 50, fraction=1.0) == 51
    # Never more than every episode of every seed at once, never fewer than one env per seed.
    assert evaluation.eval_pool_size(10 * 1024 * mib, 200 * mib, num_seeds=2, num_episodes=5) == 10
    assert evaluation.eval_pool_size(100 * mib, 200 * mib, num_seeds=3, num_episodes=50) == 3
    assert evaluation.eval_pool_size(0, 200 * mib, num_seeds=1, num_episodes=50) == 1
    assert evaluation.slots_per_seed(25, num_seeds=8, num_episodes=50) == 3
    assert evaluation.slots_per_seed(25, num_seeds=1, num_episodes=10) == 10
    assert evaluation.slots_per_seed(3, num_seeds=8, num_episodes=50) == 1
    assert evaluation.available_memory_bytes() > 0


def test_seeds_evaluator_sizes_its_pool_and_notes_waves(monkeypatch, caplog):
    """No envs are built here (they are created on first use)."""
    with caplog.at_level(logging.INFO):
        ev = evaluation.seeds_evaluator(ENV, num_episodes=5, num_seeds=2, pool_size=5)
    assert ev.num_envs == 4  # 2 slots per seed
    assert [r.getMessage() for r in caplog.records if 'waves' in r.getMessage()] == [
        'evaluation: 4 live envs (pool given) for 2 seed(s) x 5 episodes: 2 per seed, episodes run in up to 3 waves']
    caplog.clear()
    monkeypatch.setattr(evaluation, 'available_memory_bytes', lambda: 2 * 2**30)
    mib = 2**20
    with caplog.at_level(logging.INFO):
        # Half of 2 GiB at 100 MiB per env: 10 envs in this process ('sync'); 2 worker processes take their share
        # first: (2048 - 2 x 512) / 2 / 100 -> 5 envs, 2 per seed.
        assert evaluation.seeds_evaluator(ENV, 5, 2, env_bytes=100 * mib, vector_mode='sync').num_envs == 10
        assert 'waves' not in caplog.text
        assert evaluation.seeds_evaluator(ENV, 5, 2, env_bytes=100 * mib, num_workers=2,
                                          vector_mode='chunked').num_envs == 4
        assert '2.0 GiB available at 100 MiB per env' in caplog.text
        assert evaluation.seeds_evaluator(ENV, 5, 2, env_bytes=512 * mib, vector_mode='sync').num_envs == 2


def test_auto_vector_mode_rule(monkeypatch):
    """'auto' runs small pools in this process and pools of AUTO_CHUNKED_MIN_ENVS envs or more in worker processes;
    a 'chunked' pool that would have one worker is 'sync'; an unknown mode is refused."""
    monkeypatch.setattr(envs_lib, 'default_num_workers', lambda: 2)
    n = envs_lib.AUTO_CHUNKED_MIN_ENVS
    assert envs_lib.resolve_vector_mode('auto', n - 1) == 'sync'
    assert envs_lib.resolve_vector_mode('auto', n) == 'chunked'
    assert envs_lib.resolve_vector_mode('auto', n, num_workers=1) == 'sync'
    assert envs_lib.resolve_vector_mode('chunked', 2) == 'chunked'
    assert envs_lib.resolve_vector_mode('chunked', 1) == 'sync'
    assert envs_lib.resolve_vector_mode('async', 1) == 'async'
    with pytest.raises(ValueError, match='vector mode must be one of'):
        envs_lib.resolve_vector_mode('fork', 4)
    monkeypatch.setattr(envs_lib, 'default_num_workers', lambda: 1)  # one core: never worker processes
    assert envs_lib.resolve_vector_mode('auto', 10 * n) == 'sync'


def _toy_seeds_policy(calls):
    def policy(obs, rngs, temperature):
        calls.append((obs.shape, obs.dtype, np.asarray(rngs).shape))
        return obs[..., 1:2]  # sign_policy per row: (S, M, 2) -> (S, M, 1)
    return policy


@pytest.mark.parametrize('slots', [1, 2, 5])
def test_seeds_on_shared_slots_equal_their_own_episodes_toy(slots):
    """3 seeds x 5 episodes of varying length on S x M slots (+1 spare, parked): every seed's episodes are its own
    (reset seeds episode_seeds(seed, 5)), whatever M (waves of 1 or 2 slots, or all at once), with ONE policy call
    per env step on (S, M, obs_dim)."""
    seeds = [3, 4, 11]
    episode_seeds = np.stack([envs_lib.episode_seeds(s, 5) for s in seeds])
    venv = gymnasium.vector.SyncVectorEnv([toy_env_fn] * (3 * slots + 1),
                                          autoreset_mode=gymnasium.vector.AutoresetMode.DISABLED)
    calls = []
    try:
        rngs = np.stack([jax.random.PRNGKey(s) for s in seeds])
        results = evaluation._run_slots(venv, _toy_seeds_policy(calls), episode_seeds, rngs, 0.0, slots)
    finally:
        venv.close()
    assert len(results) == 3
    for k, res in enumerate(results):
        exp_len, exp_success = _toy_expected(episode_seeds[k])
        np.testing.assert_array_equal(res['episode_length'], exp_len)
        np.testing.assert_array_equal(res['episode_success'], exp_success)
        np.testing.assert_array_equal(res['episode_final_observation'][:, 0], exp_len)
    assert set(calls) == {((3, slots, 2), np.dtype(np.float32), (3, slots, 2))}
    # Lockstep: the number of calls is the longest seed's time on its slots.
    if slots == 5:
        assert len(calls) == max(3 + int(s) % 4 for s in episode_seeds.ravel())


def test_seeds_together_equal_each_seed_alone():
    """2 stacked tiny agents, 2 episodes each, published noise: on 2 slots per seed, seed k's episodes equal seed k
    evaluated alone on 2 slots, both through evaluate_seeds and through the one-seed Evaluator with the agent's own
    policy; waves (the 2-env pool shared by both seeds: 1 slot each) and one episode at a time give the episodes of
    all at once: exactly for a row-independent policy, and under noise up to the network's float32 rounding (the
    noise of a step does not depend on the slots)."""
    from agents import floq
    from floq_jax.training import parallel as train
    from floq_jax.training.evaluate import policy_fn_for
    from tests.conftest import scaled

    config = scaled('floq', 'tiny')
    seeds = [5, 6]
    agents = train.create_agents(floq.FloqAgent, config, np.zeros((1, 28), np.float32), np.zeros((1, 5), np.float32),
                                 seeds)
    keys = ('episode_success', 'episode_return', 'episode_length', 'episode_final_observation')
    kw = dict(vector_mode='sync', max_episode_steps=10)
    with evaluation.seeds_evaluator(ENV, 2, 2, **kw) as together, \
            evaluation.seeds_evaluator(ENV, 2, 1, **kw) as pool2:
        assert together.num_envs == 4 and pool2.num_envs == 2
        both = evaluate.evaluate_seeds(together, agents, seeds, temperature=1.0)
        for k, s in enumerate(seeds):
            agent = jax.tree_util.tree_map(lambda x: x[k:k + 1], agents)
            (alone,) = evaluate.evaluate_seeds(pool2, agent, [s], temperature=1.0)
            one_seed = pool2(policy_fn_for(train.select_seed(agents, k)), temperature=1.0, seed=s)
            for key in keys:
                np.testing.assert_array_equal(both[k][key], alone[key], err_msg=key)
                np.testing.assert_array_equal(both[k][key], one_seed[key], err_msg=key)
        assert not np.array_equal(both[0]['episode_final_observation'], both[1]['episode_final_observation'])
        # A row-independent policy: a network's float32 rounding may depend on the batch size (M rows).
        rows = lambda obs, rngs, temperature: feature_policy(obs.reshape(-1, obs.shape[-1]), None, None).reshape(
            obs.shape[:2] + (5,))
        once = evaluation.run_seeds(together, rows, seeds, temperature=0.0)
        waves = evaluation.run_seeds(pool2, rows, seeds, temperature=0.0)
        # Under noise too: the pool shared by both seeds (1 slot each, episodes in waves) and one episode at a time
        # give each seed the episodes of all at once (the key of a step is fold_in(fold_in(seed, episode), step)).
        noisy_waves = evaluate.evaluate_seeds(pool2, agents, seeds, temperature=1.0)
        with evaluation.Evaluator(ENV, num_episodes=2, parallel=False, max_episode_steps=10) as one_at_a_time:
            sequential = [one_at_a_time(policy_fn_for(train.select_seed(agents, k)), temperature=1.0, seed=s)
                          for k, s in enumerate(seeds)]
        # The noise is the same; the network's float32 rounding may differ with the batch (M rows): ~1e-7 here.
        for k in range(len(seeds)):
            for other in (noisy_waves[k], sequential[k]):
                for key in ('episode_success', 'episode_length'):
                    np.testing.assert_array_equal(other[key], both[k][key], err_msg=key)
                for key in ('episode_return', 'episode_final_observation'):
                    np.testing.assert_allclose(other[key], both[k][key], rtol=1e-4, atol=1e-5, err_msg=key)
        with pytest.raises(ValueError, match='leading axis of 3'):
            evaluate.evaluate_seeds(together, agents, [0, 1, 2])
    for a, b in zip(waves, once):
        for key in keys:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(once[0]['episode_final_observation'], once[1]['episode_final_observation'])
