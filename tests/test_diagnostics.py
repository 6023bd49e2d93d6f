"""Critic diagnostics: known answers on hand-made paths and features, and the agent-level bundle
(jitted) for floq and FQL."""

import jax
import jax.numpy as jnp
import numpy as np

from agents import floq, fql
from tests.conftest import scaled
from floq_jax.analysis import diagnostics as D



# ------------------------------------------------------------------------------------ curvature
def test_straight_path_has_straightness_one_and_no_velocity_spread():
    t = jnp.linspace(0.0, 1.0, 9)[:, None, None]  # K = 8
    path = -2.0 + t * jnp.array([[1.0, -3.0]])[None]  # (9, 1, 2), constant velocity
    np.testing.assert_allclose(D.straightness(path), 1.0, rtol=1e-6)
    np.testing.assert_allclose(D.velocity_spread(path), 0.0, atol=1e-5)


def test_zigzag_path_is_less_straight_with_known_values():
    # 0 -> 2 -> 1 -> 3: displacement 3, length 2 + 1 + 2 = 5; velocities (2, -1, 2) * 3.
    path = jnp.array([0.0, 2.0, 1.0, 3.0])[:, None, None]
    np.testing.assert_allclose(D.straightness(path), 3.0 / 5.0, rtol=1e-6)
    np.testing.assert_allclose(D.velocity_spread(path), np.std([6.0, -3.0, 6.0]), rtol=1e-5)
    # Averaging over (E, B): one straight and one zig-zag row.
    both = jnp.concatenate([path, jnp.array([0.0, 1.0, 2.0, 3.0])[:, None, None]], axis=2)
    np.testing.assert_allclose(D.straightness(both), (0.6 + 1.0) / 2, rtol=1e-6)
    # A path that never moves counts as straight.
    np.testing.assert_allclose(D.straightness(jnp.zeros((5, 2, 3))), 1.0)


# ------------------------------------------------------------------------------------ plasticity
def test_srank_and_effective_rank_of_low_rank_features():
    rng = np.random.default_rng(0)
    rank2 = (rng.normal(size=(64, 2)) @ rng.normal(size=(2, 16))).astype(np.float32)
    assert float(D.srank(rank2)) <= 2.0
    full = rng.normal(size=(64, 16)).astype(np.float32)
    assert float(D.srank(full)) >= 14.0
    # Equal singular values: srank = ceil(0.99 * k) = k and effective rank = k exactly.
    eye = np.eye(8, dtype=np.float32) * 3.0
    np.testing.assert_allclose(D.srank(eye), 8.0)
    np.testing.assert_allclose(D.effective_rank(eye), 8.0, rtol=1e-5)
    np.testing.assert_allclose(D.effective_rank(np.diag([1.0, 0, 0, 0]).astype(np.float32)), 1.0, rtol=1e-5)
    # Per-member average: (E, B, H) with a rank-1 and a rank-8 member.
    members = np.stack([np.outer(np.arange(1, 9), np.ones(8)), eye]).astype(np.float32)
    np.testing.assert_allclose(D.srank(members), (1.0 + 8.0) / 2)


def test_dormant_fraction_counts_zero_units():
    rng = np.random.default_rng(1)
    h = rng.normal(size=(32, 10)).astype(np.float32)
    h[:, [2, 5, 7]] = 0.0
    np.testing.assert_allclose(D.dormant_fraction(h, 0.0), 3 / 10)
    # A unit far below the layer's mean activity is dormant at tau = 0.025, not at tau = 0.
    h[:, 0] = 1e-4
    np.testing.assert_allclose(D.dormant_fraction(h, 0.0), 3 / 10)
    np.testing.assert_allclose(D.dormant_fraction(h, 0.025), 4 / 10)
    np.testing.assert_allclose(D.dormant_fraction(np.stack([h, np.ones_like(h)]), 0.025), (0.4 + 0.0) / 2)


def test_feature_norm():
    h = np.zeros((2, 4, 3), np.float32)
    h[..., 0] = 3.0
    h[..., 1] = 4.0
    np.testing.assert_allclose(D.feature_norm(h), 5.0)


# ------------------------------------------------------------------------------------ agents
def _batch(n=8):
    rng = np.random.default_rng(0)
    return dict(observations=jnp.asarray(rng.normal(size=(n, 6)), jnp.float32),
                actions=jnp.asarray(rng.uniform(-1, 1, size=(n, 2)), jnp.float32))


def test_floq_critic_diagnostics_jitted():
    c = scaled('floq', 'tiny', critic_flow_steps=4, num_bins=11)
    agent = floq.FloqAgent.create(0, jnp.zeros((2, 6)), jnp.zeros((2, 2)), c)
    batch = _batch()
    out = jax.jit(D.critic_diagnostics)(agent, batch, jax.random.PRNGKey(0))
    for key in ('feature_norm', 'srank', 'effective_rank', 'dormant_0', 'dormant_0.025', 'straightness',
                'velocity_spread', 'q_change', 'distill/srank'):
        assert key in out and np.isfinite(float(out[key])), key
    assert 0.0 < float(out['straightness']) <= 1.0 + 1e-6
    assert 1.0 <= float(out['srank']) <= 8.0  # at most B = 8 rows
    # q_change is |Q_K - Q_2K| with the same noises.
    q4 = agent.q_values(batch['observations'], batch['actions'], num_steps=4, seed=jax.random.PRNGKey(1))
    q8 = agent.q_values(batch['observations'], batch['actions'], num_steps=8, seed=jax.random.PRNGKey(1))
    np.testing.assert_allclose(D.q_change(agent, batch['observations'], batch['actions'], 4, jax.random.PRNGKey(1)),
                               jnp.abs(q4 - q8).mean(), rtol=1e-5)


def test_fql_critic_diagnostics_match_feature_metrics():
    c = scaled('fql', 'tiny')
    agent = fql.FQLAgent.create(0, jnp.zeros((2, 6)), jnp.zeros((2, 2)), c)
    batch = _batch()
    out = jax.jit(D.critic_diagnostics)(agent, batch, jax.random.PRNGKey(0))
    _, features = agent.modules['critic'].apply({'params': agent.params['critic']}, batch['observations'],
                                                batch['actions'], return_features=True)
    assert features.shape == (2, 8, 16)
    np.testing.assert_allclose(out['feature_norm'], np.linalg.norm(np.asarray(features), axis=-1).mean(), rtol=1e-5)
    np.testing.assert_allclose(out['srank'], D.srank(features))
    assert 'straightness' not in out
