"""Monte-Carlo discounted returns of dataset trajectories: ground truth for Q-estimate errors.

Datasets follow OGBench's layout: transitions in episode order, ``terminals[i] = 1`` on each episode's
last step, ``masks[i] = 0`` where the single-task goal is reached (the value stops there).
"""

import numpy as np


def discounted_returns(rewards: np.ndarray, masks: np.ndarray, terminals: np.ndarray, discount: float,
                       tolerance: float = 0.01):
    """Returns G_i = r_i + gamma * m_i * G_{i+1} within each episode, and which G_i are trustworthy.

    Args:
      rewards, masks, terminals: (N,) arrays in episode order.
      discount: gamma.
      tolerance: G_i is marked valid when the value stops (mask 0) before the episode is cut off, or
        when the cut-off is far enough that gamma^(steps to the cut) <= tolerance (the missing tail
        then changes G_i by at most tolerance * |r| / (1 - gamma)).

    Returns:
      returns (N,) float64 and valid (N,) bool.
    """
    rewards, masks, terminals = (np.asarray(x, np.float64) for x in (rewards, masks, terminals))
    n = rewards.shape[0]
    returns = np.zeros(n)
    valid = np.zeros(n, bool)
    future, horizon_weight, stopped = 0.0, 1.0, False
    for i in range(n - 1, -1, -1):
        if terminals[i] or i == n - 1:  # the episode is cut off after step i
            future, horizon_weight, stopped = 0.0, 1.0, False
        if masks[i] == 0:  # the value stops here: G_i = r_i exactly
            future, horizon_weight, stopped = 0.0, 0.0, True
        returns[i] = rewards[i] + discount * future
        horizon_weight = discount * horizon_weight
        valid[i] = stopped or horizon_weight <= tolerance
        future = returns[i]
    return returns, valid


def heldout_q_targets(dataset: dict, discount: float, max_states: int = 1024, seed: int = 0, tolerance: float = 0.01):
    """A sample of (observations, actions, MC returns) from a (validation) dataset's valid states."""
    returns, valid = discounted_returns(dataset['rewards'], dataset['masks'], dataset['terminals'], discount, tolerance)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        raise ValueError('no state of the dataset has a trustworthy Monte-Carlo return (episodes too short '
                         f'for discount {discount}); use longer episodes or a smaller discount')
    idx = np.random.default_rng(seed).choice(idx, size=min(max_states, idx.size), replace=False)
    return dataset['observations'][idx], dataset['actions'][idx], returns[idx].astype(np.float32)


def heldout_targets(train: dict, val, discount: float, max_states: int = 1024, seed: int = 0):
    """Held-out states for Q errors: (observations, actions, MC returns, tolerance, split).

    The validation split (``val``, None if absent, then ``train``) with trustworthy returns (tolerance 0.01); if no
    state is trustworthy (short generated episodes), returns truncated at the episode end (tolerance 1), which
    the caller should say."""
    split, dataset = ('val', val) if val is not None else ('train', train)
    for tolerance in (0.01, 1.0):
        try:
            obs, act, g = heldout_q_targets(dataset, discount, max_states=max_states, seed=seed, tolerance=tolerance)
            return obs, act, g, tolerance, split
        except ValueError:
            continue
    raise ValueError('no held-out states')


def q_error_measures(q: np.ndarray, g: np.ndarray) -> dict:
    """How Q estimates ``q`` [N] match Monte-Carlo returns ``g`` [N] of the same (s, a).

    ``q_abs_error`` mean |Q - G|; ``q_bias`` mean (Q - G); ``q_centered_error`` mean |(Q - mean Q) - (G - mean G)|,
    the error left once the constant offset is removed (G is the *behaviour* policy's return, so a critic of a better
    policy sits above it by a roughly constant amount); ``q_rank_corr`` the Spearman rank correlation of Q and G
    (does the critic order the states as their returns do; NaN if either is constant)."""
    import pandas as pd

    q, g = np.asarray(q, np.float64).ravel(), np.asarray(g, np.float64).ravel()
    d = q - g
    constant = np.ptp(q) == 0 or np.ptp(g) == 0  # no ranking to compare: NaN, as documented
    rank_corr = np.nan if constant else float(pd.Series(q).corr(pd.Series(g), method='spearman'))  # ties: mean rank
    return dict(q_abs_error=float(np.mean(np.abs(d))), q_bias=float(np.mean(d)),
                q_centered_error=float(np.mean(np.abs(d - d.mean()))), q_rank_corr=rank_corr)


def _bootstrap_ci(q: np.ndarray, g: np.ndarray, reps: int, seed: int) -> dict:
    """95% percentile CIs of the centered error and the Spearman correlation over held-out states resampled with
    replacement (the states are the only randomness of a predictor that depends on the data alone)."""
    rng = np.random.default_rng(seed)
    centered, corr = [], []
    for _ in range(reps):
        i = rng.integers(0, g.size, g.size)
        m = q_error_measures(q[i], g[i])
        centered.append(m['q_centered_error'])
        corr.append(m['q_rank_corr'])
    out = {}
    for name, values in (('q_centered_error', centered), ('q_rank_corr', corr)):
        v = np.asarray(values, float)
        v = v[np.isfinite(v)]
        lo, hi = (np.percentile(v, [2.5, 97.5]) if v.size else (np.nan, np.nan))
        out.update({f'{name}_ci_low': float(lo), f'{name}_ci_high': float(hi)})
    return out


def ridge_fit(x: np.ndarray, y: np.ndarray, l2: float = 1.0):
    """Ridge regression of ``y`` on standardised ``x`` (closed form, intercept unpenalised); returns predict(x)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mu, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0
    z = (x - mu) / sd
    y0 = y.mean()
    w = np.linalg.solve(z.T @ z + l2 * np.eye(z.shape[1]), z.T @ (y - y0))
    return lambda x_new: ((np.asarray(x_new, np.float64) - mu) / sd) @ w + y0


def behaviour_return_baselines(train: dict, val, discount: float, max_states: int = 1024, seed: int = 0,
                               l2: float = 1.0, reps: int = 1000):
    """What the critic measures score for predictors that know only the data, on the same held-out states as the
    sweeps' critics (``heldout_targets`` with the same ``max_states`` and ``seed``).

    - ``constant``: Q = the mean Monte-Carlo return of the training split.  Its centered error is mean |G - mean G|
      (the spread of the held-out returns) and its rank correlation is undefined (NaN): a critic whose centered
      error is not below this has learned no ordering of the states.
    - ``ridge``: a ridge regression (``l2`` on standardised features) of the training split's trustworthy
      Monte-Carlo returns on the (observation, action) features: the behaviour policy's value, linear in the raw
      features.

    Returns a list of dicts, one per predictor: ``predictor``, the ``q_error_measures``, 95% CIs of the centered error
    and the rank correlation over held-out states resampled ``reps`` times, ``fit_states``, ``mc_states``,
    ``mc_tolerance``, ``mc_split``."""
    obs, act, g, tol, split = heldout_targets(train, val, discount, max_states=max_states, seed=seed)
    g = np.asarray(g, np.float64)
    returns, valid = discounted_returns(train['rewards'], train['masks'], train['terminals'], discount, tol)
    features = lambda o, a: np.concatenate([np.asarray(o, np.float64).reshape(len(o), -1),
                                            np.asarray(a, np.float64).reshape(len(a), -1)], axis=1)
    x_fit = features(train['observations'][valid], train['actions'][valid])
    predict = ridge_fit(x_fit, returns[valid], l2)
    predictions = {'constant': np.full(g.shape, returns[valid].mean()), 'ridge': predict(features(obs, act))}
    rows = []
    for name, q in predictions.items():
        rows.append(dict(predictor=name, **q_error_measures(q, g), **_bootstrap_ci(q, g, reps, seed),
                         fit_states=int(valid.sum()), mc_states=int(g.size), mc_tolerance=tol, mc_split=split))
    return rows
