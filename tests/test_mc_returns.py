import numpy as np
import pytest

from floq_jax.analysis.mc_returns import discounted_returns, heldout_q_targets


def test_returns_follow_masks_and_episode_boundaries():
    # Two episodes: the first reaches the goal at step 2 (mask 0), the second is cut off after 3 steps.
    rewards = np.array([-1, -1, 0, -1, -1, -1, -1], float)
    masks = np.array([1, 1, 0, 1, 1, 1, 1], float)
    terminals = np.array([0, 0, 0, 1, 0, 0, 1], float)
    g, valid = discounted_returns(rewards, masks, terminals, discount=0.5, tolerance=0.2)
    # Episode 1: G2 = 0, G1 = -1, G0 = -1.5; step 3 (after the goal, before the cut) = -1, cut at once.
    np.testing.assert_allclose(g[:4], [-1.5, -1.0, 0.0, -1.0])
    # Episode 2: G6 = -1, G5 = -1.5, G4 = -1.75.
    np.testing.assert_allclose(g[4:], [-1.75, -1.5, -1.0])
    assert valid[:3].all()                       # the value stopped before the cut
    assert not valid[3] and not valid[6]          # cut off right away
    assert valid[4] and not valid[5]              # 0.5^3 = 0.125 <= 0.2, 0.5^2 = 0.25 > 0.2


def test_heldout_sample_and_error():
    data = dict(observations=np.zeros((4, 2)), actions=np.zeros((4, 1)), rewards=-np.ones(4), masks=np.ones(4),
                terminals=np.array([0, 0, 0, 1.0]))
    with pytest.raises(ValueError, match='trustworthy'):
        heldout_q_targets(data, discount=0.99)
    obs, act, ret = heldout_q_targets(data, discount=0.1, tolerance=0.05)
    assert obs.shape[0] == act.shape[0] == ret.shape[0] >= 2


def test_q_error_measures_separate_offset_from_shape():
    from floq_jax.analysis.mc_returns import q_error_measures

    g = np.array([-10.0, -5.0, -1.0, -3.0])
    shifted = q_error_measures(g + 7.0, g)  # a constant offset: all error, none of it shape
    assert shifted['q_abs_error'] == pytest.approx(7.0) and shifted['q_bias'] == pytest.approx(7.0)
    assert shifted['q_centered_error'] == pytest.approx(0.0) and shifted['q_rank_corr'] == pytest.approx(1.0)
    reversed_ = q_error_measures(-g, g)  # ordered the wrong way round
    assert reversed_['q_rank_corr'] == pytest.approx(-1.0)
    assert reversed_['q_centered_error'] == pytest.approx(np.mean(np.abs(-2 * (g - g.mean()))))
    ties = q_error_measures(np.array([1.0, 1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0, 3.0]))
    assert 0.9 < ties['q_rank_corr'] < 1.0  # tied Q values share a mean rank
    assert np.isnan(q_error_measures(np.ones(4), g)['q_rank_corr'])


def _episodes(num=40, length=30, seed=0):
    """Episodes whose reward is a linear function of the observation (so the return is nearly linear in it)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(num * length, 3))
    terminals = np.zeros(num * length)
    terminals[length - 1::length] = 1
    return dict(observations=obs, actions=rng.normal(size=(num * length, 2)), rewards=obs[:, 0] - 0.5 * obs[:, 1],
                masks=np.ones(num * length), terminals=terminals)


def test_behaviour_return_baselines_constant_and_ridge():
    from floq_jax.analysis.mc_returns import behaviour_return_baselines, heldout_targets

    train, val = _episodes(seed=0), _episodes(num=10, seed=1)
    rows = {r['predictor']: r for r in behaviour_return_baselines(train, val, discount=0.5, max_states=200, reps=200)}
    _, _, g, _, split = heldout_targets(train, val, 0.5, max_states=200)
    assert split == 'val' and rows['ridge']['mc_states'] == len(g) == 200
    # A constant Q's centered error is the spread of the held-out returns; it has no ranking.
    np.testing.assert_allclose(rows['constant']['q_centered_error'], np.mean(np.abs(g - g.mean())), rtol=1e-6)
    assert np.isnan(rows['constant']['q_rank_corr'])
    # The returns here depend mostly on the current observation: the regression ranks and spaces them well.
    r = rows['ridge']
    assert r['q_rank_corr'] > 0.8 and r['q_centered_error'] < 0.6 * rows['constant']['q_centered_error']
    assert r['q_rank_corr_ci_low'] < r['q_rank_corr'] < r['q_rank_corr_ci_high']
    assert r['q_centered_error_ci_low'] < r['q_centered_error'] < r['q_centered_error_ci_high']
