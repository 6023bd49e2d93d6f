"""Mechanism-variant switches of floq and FQL: defaults reduce to the original losses, each variant
matches an independent computation, and updates with the switches on run and stay finite.

Tiny networks and one jit per distinct config keep the file short on a loaded 2-core CPU.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import agent_class, floq, fql, fql_iqn
from floq_jax.core import actor
from tests.conftest import random_batch, scaled

TINY_FLOQ = dict(batch_size=32, noise_samples=1, critic_flow_steps=4, num_bins=11)  # over the 'tiny' scale
TINY_IQN = dict(iqn_num_cosines=8, iqn_num_quantiles=4, iqn_num_target_quantiles=3)  # distinct quantile counts


def floq_agent(**overrides):
    c = scaled('floq', 'tiny', **{**TINY_FLOQ, **overrides})
    return floq.FloqAgent.create(0, jnp.zeros((2, 6)), jnp.zeros((2, 2)), c)


def fql_agent(variant='', **overrides):
    c = scaled(fql.get_config(variant), 'tiny', **{'batch_size': 32, **(TINY_IQN if variant == 'iqn' else {}), **overrides})
    return agent_class(c.agent_name).create(0, jnp.zeros((2, 6)), jnp.zeros((2, 2)), c)


@functools.lru_cache(maxsize=None)
def _jitted_loss(cls):
    return jax.jit(lambda agent, batch, params, rng: agent.critic_loss(batch, params, rng))


def loss_of(agent, batch, params=None, rng=None):
    params = agent.params if params is None else params
    rng = jax.random.PRNGKey(7) if rng is None else rng
    return _jitted_loss(type(agent))(agent, batch, params, rng)


@pytest.fixture(scope='module')
def batch():
    return random_batch(np.random.default_rng(0), batch_size=32)


@pytest.fixture(scope='module')
def base_floq():
    agent = floq_agent()
    # A target field different from the current one, so the tests tell them apart.
    return agent.replace(target_params={'critic_flow': jax.tree_util.tree_map(
        lambda p: p * 0.9 + 0.01, agent.params['critic_flow'])})


def _with_params_of(agent, source):
    return agent.replace(params=source.params, target_params=source.target_params)


# ------------------------------------------------------------------------------------ floq
def test_distributional_with_one_noise_equals_mean_target(base_floq, batch):
    """With noise_samples = 1 the per-noise target is the (only) mean target: identical losses."""
    loss, info = loss_of(base_floq, batch)
    dist = _with_params_of(floq_agent(distributional=True), base_floq)
    loss_d, info_d = loss_of(dist, batch)
    np.testing.assert_allclose(loss_d, loss, rtol=1e-6)
    np.testing.assert_allclose(info_d['flow_loss'], info['flow_loss'], rtol=1e-6)


def test_stale_copy_equal_to_current_gives_unsplit_loss(base_floq, batch):
    """stale_steps = m with stale copies equal to the current/target fields == the unsplit integration;
    a different stale copy changes the loss (so the split is really used)."""
    loss, info = loss_of(base_floq, batch)
    stale = _with_params_of(floq_agent(stale_steps=2), base_floq)
    same = stale.replace(stale_params={'critic_flow': base_floq.params['critic_flow'],
                                       'target_critic_flow': base_floq.target_params['critic_flow']})
    loss_s, info_s = loss_of(same, batch)
    np.testing.assert_allclose(loss_s, loss, rtol=1e-5)
    np.testing.assert_allclose(info_s['target_q'], info['target_q'], rtol=1e-5)
    other = same.replace(stale_params=jax.tree_util.tree_map(lambda p: p * 1.5, same.stale_params))
    _, info_o = loss_of(other, batch)
    assert abs(float(info_o['target_q']) - float(info['target_q'])) > 1e-4


def test_stale_split_matches_loop_with_two_fields(base_floq, batch):
    """critic_integrate = Euler loop using the stale field for k < m and the main field after."""
    agent = floq_agent(stale_steps=2)
    field = agent.modules['critic_flow']
    cur, old = base_floq.params['critic_flow'], base_floq.target_params['critic_flow']
    obs, act = batch['observations'][:3], batch['actions'][:3]
    z0 = jnp.array([-1.0, -3.0, -5.0])
    got = agent.critic_integrate(cur, old, obs, act, z0, 4)
    z = jnp.broadcast_to(z0, (2, 3))
    for k in range(4):
        z = z + field.apply({'params': old if k < 2 else cur}, obs, act, z, jnp.float32(k / 4)) / 4
    np.testing.assert_allclose(got, z, rtol=1e-5, atol=1e-5)


def test_predict_final_integration_follows_reanchored_update(base_floq, batch):
    """predict_final: z_{k+1} = (1 - t_{k+1}) z_0 + t_{k+1} p_k, and z_K is the last prediction."""
    agent = floq_agent(predict_final=True)
    field = agent.modules['critic_flow']
    params = base_floq.params['critic_flow']
    obs, act = batch['observations'][:3], batch['actions'][:3]
    z0 = jnp.array([-1.0, -3.0, -5.0])
    got = agent.integrate(params, obs, act, z0, 4)
    z = jnp.broadcast_to(z0, (2, 3))
    for k in range(4):
        pred = field.apply({'params': params}, obs, act, z, jnp.float32(k / 4))
        z = (1 - (k + 1) / 4) * z0 + (k + 1) / 4 * pred
    np.testing.assert_allclose(got, z, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got, pred, rtol=1e-5, atol=1e-4)
    # The split version (stale copy = same field) agrees with the unsplit one.
    split = agent.integrate(params, obs, act, agent.integrate(params, obs, act, z0, 4, 0, 2), 4, 2, 4, anchor=z0)
    np.testing.assert_allclose(split, got, rtol=1e-5, atol=1e-4)


def test_target_noise_adds_its_variance(base_floq, batch):
    """Uniform noise on [-m, m] on the regression target raises the squared error by m^2 / 3 on average."""
    m = 16.0
    _, info = loss_of(base_floq, batch)
    noisy = _with_params_of(floq_agent(target_noise=m), base_floq)
    increases = []
    for seed in range(16):
        _, clean = loss_of(base_floq, batch, rng=jax.random.PRNGKey(seed))
        _, info_n = loss_of(noisy, batch, rng=jax.random.PRNGKey(seed))
        np.testing.assert_allclose(info_n['target_q'], clean['target_q'], rtol=1e-6)  # same TD targets
        increases.append(float(info_n['flow_loss'] - clean['flow_loss']))
    np.testing.assert_allclose(np.mean(increases), m ** 2 / 3, rtol=0.15)


def test_all_floq_switches_update_and_refresh_stale_copies(batch):
    """distributional + predict_final + stale_steps + target_noise: finite updates; stale copies are the
    pre-update fields while step + 1 < stale_copy_until, then frozen."""
    agent = floq_agent(distributional=True, predict_final=True, stale_steps=2, stale_copy_until=2,
                       target_noise=4.0, noise_samples=2)
    first, info1 = agent.update(batch)
    second, info2 = first.update(batch)
    for info in (info1, info2):
        assert all(np.isfinite(np.asarray(v)).all() for v in info.values())
    assert float(info1['stale_refreshed']) == 1.0 and float(info2['stale_refreshed']) == 0.0
    same = jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), first.stale_params['critic_flow'],
                                  agent.params['critic_flow'])
    assert all(jax.tree_util.tree_leaves(same))
    frozen = jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), second.stale_params,
                                    first.stale_params)
    assert all(jax.tree_util.tree_leaves(frozen))
    moved = jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), second.params['critic_flow'],
                                   first.params['critic_flow'])
    assert not all(jax.tree_util.tree_leaves(moved))


def test_invalid_switches_raise():
    with pytest.raises(ValueError, match='stale_steps'):
        floq_agent(stale_steps=5)
    with pytest.raises(ValueError, match='target_noise_dist'):
        floq_agent(target_noise_dist='laplace')
    with pytest.raises(ValueError, match='iqn_loss'):
        fql_agent('iqn', iqn_loss='l1')


# ------------------------------------------------------------------------------------ FQL
def test_fql_target_noise_adds_its_variance(batch):
    m = 8.0
    base, noisy = fql_agent(), fql_agent(target_noise=m)
    increases = []
    for seed in range(16):
        loss, info = loss_of(base, batch, rng=jax.random.PRNGKey(seed))
        loss_n, info_n = loss_of(noisy, batch, rng=jax.random.PRNGKey(seed))
        np.testing.assert_allclose(info_n['target_q'], info['target_q'], rtol=1e-6)  # same TD targets
        increases.append(float(loss_n - loss))
    np.testing.assert_allclose(np.mean(increases), m ** 2 / 3, rtol=0.15)


@pytest.mark.parametrize('kind', ['squared', 'huber'])
def test_quantile_loss_matches_hand_computation(kind):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 3)).astype(np.float32) * 2  # (B, N)
    taus = rng.uniform(size=(2, 3)).astype(np.float32)
    y = rng.normal(size=(2, 4)).astype(np.float32) * 2  # (B, N')
    kappa = 1.5
    expected = np.zeros(2)
    for b in range(2):
        for i in range(3):
            total = 0.0
            for j in range(4):
                d = y[b, j] - z[b, i]
                if kind == 'squared':
                    loss = d * d
                else:
                    loss = 0.5 * d * d if abs(d) <= kappa else kappa * (abs(d) - 0.5 * kappa)
                total += abs(taus[b, i] - (1.0 if d < 0 else 0.0)) * loss / kappa
            expected[b] += total / 4
    np.testing.assert_allclose(fql_iqn.quantile_loss(z, taus, y, kappa, kind), expected, rtol=1e-5)
    # Known special case: one quantile, one target at distance 0.5 above it, tau = 0.25, kappa = 1.
    np.testing.assert_allclose(fql_iqn.quantile_loss(jnp.zeros((1, 1)), jnp.full((1, 1), 0.25),
                                                     jnp.full((1, 1), 0.5), 1.0, kind),
                               [0.25 * (0.25 if kind == 'squared' else 0.125)])


def test_iqn_default_is_published_fql_iqn():
    c = fql_iqn.get_config()
    assert c.agent_name == 'fql_iqn' and fql.get_config('iqn').to_dict() == c.to_dict()
    assert (c.iqn_num_quantiles, c.iqn_num_target_quantiles, c.iqn_num_cosines, c.iqn_loss) == (8, 8, 64, 'squared')
    # One agent, one class: the quantile critic is a component of FQL chosen by the config.
    assert agent_class('fql_iqn') is fql_iqn.FQLIQNAgent is fql.FQLAgent is agent_class('fql_resnet')
    assert fql.critic_component(c) is fql.QuantileCritic and fql.critic_component(fql.get_config()) is fql.ScalarCritic


def test_iqn_critic_loss_matches_composed_computation(batch):
    agent = fql_agent('iqn')
    assert agent.config.agent_name == 'fql_iqn'
    small = jax.tree_util.tree_map(lambda x: x[:5], batch)
    rng = jax.random.PRNGKey(3)
    loss, _ = agent.critic_loss(small, agent.params, rng)
    c, critic = agent.config, agent.modules['critic']
    n, n_next = c.iqn_num_quantiles, c.iqn_num_target_quantiles
    action_rng, next_tau_rng, tau_rng = jax.random.split(rng, 3)
    # One next action per target level tau'_j (rows b * N' + j), as the published fql_iqn.
    next_obs = jnp.repeat(small['next_observations'], n_next, axis=0)
    next_a = actor.one_step_actions(agent.modules, agent.params, next_obs, action_rng)
    next_taus = np.asarray(jax.random.uniform(next_tau_rng, (5 * n_next, 1)))
    taus = np.asarray(jax.random.uniform(tau_rng, (5, n)))
    # One batched forward pass each, then the loss by explicit loops over members, rows and quantile pairs.
    next_z = np.asarray(critic.apply({'params': agent.target_params['critic']}, next_obs, next_a,
                                     next_taus)).mean(axis=0).reshape(5, n_next)  # q_agg = mean
    z_all = np.asarray(critic.apply({'params': agent.params['critic']}, small['observations'], small['actions'],
                                    taus))  # (E, B, N)
    total = 0.0
    for e in range(c.num_ensembles):
        for b in range(5):
            y = float(small['rewards'][b]) + c.discount * float(small['masks'][b]) * next_z[b]
            for j in range(n_next):
                column = 0.0
                for i in range(n):
                    d = y[j] - z_all[e, b, i]
                    column += abs(taus[b, i] - (1.0 if d < 0 else 0.0)) * d * d  # squared error, kappa = 1
                total += column / n_next
    np.testing.assert_allclose(loss, total / (c.num_ensembles * 5), rtol=1e-4)
    huber_loss, _ = fql_agent('iqn', iqn_loss='huber').critic_loss(small, agent.params, rng)
    assert np.isfinite(float(huber_loss)) and float(huber_loss) < float(loss)  # Huber <= d^2 / 2 < d^2


def test_iqn_update_runs_and_q_is_quantile_mean(batch):
    agent = fql_agent('iqn', target_noise=4.0)
    new_agent, info = agent.update(batch)
    assert all(np.isfinite(np.asarray(v)).all() for v in info.values())
    assert int(new_agent.step) == 1
    obs, act = batch['observations'][:4], batch['actions'][:4]
    q = new_agent.q_values(obs, act)
    taus = fql_iqn.quantile_midpoints(agent.config.iqn_num_quantiles)
    z = new_agent.modules['critic'].apply({'params': new_agent.params['critic']}, obs, act,
                                          jnp.broadcast_to(taus, (4, taus.shape[0])))
    np.testing.assert_allclose(q, z.mean(axis=(0, 2)), rtol=1e-5)
