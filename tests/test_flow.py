"""Euler integration and the z / t embeddings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from floq_jax.core import flow, networks


@pytest.mark.parametrize('num_steps', [1, 2, 3, 8, 16])
def test_constant_velocity_is_exact(num_steps):
    z0 = jnp.array([-3.0, 0.0, 2.5])
    z = flow.euler_integrate(lambda t, z: jnp.full_like(z, 1.75), z0, num_steps)
    np.testing.assert_allclose(z, z0 + 1.75, rtol=1e-6)


@pytest.mark.parametrize('num_steps', [1, 2, 4, 8, 16])
def test_linear_velocity_matches_closed_form(num_steps):
    # v = z: K Euler steps give z0 (1 + 1/K)^K exactly.
    z0 = jnp.array([0.5, -2.0, 3.0])
    z = flow.euler_integrate(lambda t, z: z, z0, num_steps)
    np.testing.assert_allclose(z, z0 * (1 + 1 / num_steps) ** num_steps, rtol=1e-5)


def test_time_grid_and_path():
    # v = t integrates to sum_k (k/K)/K = (K - 1) / (2K); the path holds every intermediate state.
    K = 4
    z, path = flow.euler_integrate(lambda t, z: jnp.full_like(z, t), jnp.zeros(()), K, return_path=True)
    np.testing.assert_allclose(z, (K - 1) / (2 * K), rtol=1e-6)
    np.testing.assert_allclose(path, np.cumsum(np.arange(K) / K / K), rtol=1e-6)


def test_split_integration_equals_whole():
    K, m = 8, 3
    v = lambda t, z: jnp.sin(3 * t) * z + 1.0
    z0 = jnp.linspace(-1, 1, 5)
    whole = flow.euler_integrate(v, z0, K)
    split = flow.euler_integrate(v, flow.euler_integrate(v, z0, K, 0, m), K, m, K)
    np.testing.assert_allclose(whole, split, rtol=1e-6)


def test_bad_step_ranges_are_rejected():
    with pytest.raises(ValueError, match='num_steps'):
        flow.euler_integrate(lambda t, z: z, jnp.zeros(()), 0)
    with pytest.raises(ValueError, match='first_step'):
        flow.euler_integrate(lambda t, z: z, jnp.zeros(()), 4, 3, 2)


def test_noise_interval_and_bounds():
    assert flow.noise_interval(-1.0, 0.0, 0.99, 0.1) == pytest.approx((-10.0, 0.0))
    lo, hi = flow.q_value_bounds(-1.0, 0.0, 0.99, 0.01)
    assert lo == pytest.approx(-101.0) and hi == pytest.approx(1.0)
    z = flow.sample_noise(jax.random.PRNGKey(0), (10000,), -10.0, 0.0)
    assert float(z.min()) >= -10.0 and float(z.max()) <= 0.0 and abs(float(z.mean()) + 5.0) < 0.2
    np.testing.assert_allclose(flow.sample_noise(jax.random.PRNGKey(0), (3,), 2.0, 2.0), 2.0)


def test_hl_gauss_embedding():
    q_min, q_max, bins = -100.0, 0.0, 51
    support = np.asarray(networks.hl_gauss_support(q_min, q_max, bins))
    z = jnp.array([-100.0, -73.3, -50.0, -12.7, 0.0, 5.0, -140.0])
    probs = np.asarray(networks.hl_gauss_embedding(z, q_min, q_max, bins, sigma_bins=1.0))
    assert probs.shape == (7, bins - 1)
    assert np.all(np.isfinite(probs)) and np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # Interior points: the peak is the bin that contains z.
    for i in (1, 3):
        expected_bin = np.searchsorted(support, float(z[i])) - 1
        assert probs[i].argmax() == expected_bin
    # Edges: mass sits at the matching end.
    assert probs[0].argmax() == 0 and probs[4].argmax() == bins - 2
    # Beyond the support (z = 5 is 2.5 sigma out): the published formula, the mass still at the matching end.
    assert probs[5].argmax() == bins - 2 and probs[5][-1] > probs[4][-1]
    # Far beyond (z = -140 is 20 sigma out, where the published formula gives 0/0): as at 3 sigma out.
    three_sigma = np.asarray(networks.hl_gauss_embedding(jnp.array([q_min - 3 * 2.0]), q_min, q_max, bins, 1.0))
    np.testing.assert_allclose(probs[6], three_sigma[0])
    # Default sigma (16 bins) is smooth but still centred near z.
    wide = np.asarray(networks.hl_gauss_embedding(jnp.array([-50.0]), q_min, q_max, bins, 16.0))[0]
    centres = (support[1:] + support[:-1]) / 2
    assert abs((wide * centres).sum() + 50.0) < 1.0


@pytest.mark.parametrize('kind,dim,width', [('cos', 64, 1), ('raw', 64, 1), ('fourier', 8, 8)])
def test_time_embedding(kind, dim, width):
    t = jnp.array([0.0, 0.25, 1.0])
    e = networks.time_embedding(t, kind, dim)
    assert e.shape == (3, width)
    if kind == 'cos':
        np.testing.assert_allclose(e[:, 0], np.cos(t))
    if kind == 'raw':
        np.testing.assert_allclose(e[:, 0], t)
