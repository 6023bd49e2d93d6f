"""Critic diagnostics for the analysis experiments: curvature of floq's integration paths and
plasticity metrics of penultimate critic features.  Every function is pure and jittable.

Shapes: K integration steps, E ensemble members, B rows, H feature width.

Curvature (floq only):
  * :func:`straightness` of a path (K+1, E, B): |z_K - z_0| / sum_k |z_{k+1} - z_k| (1 = straight).
  * :func:`velocity_spread`: std over k of the per-step velocities (z_{k+1} - z_k) * K, averaged.
  * :func:`q_change`: mean |Q_K - Q_2K|, the change of ``q_values`` when the step count doubles
    (same noises).
Plasticity (any critic):
  * :func:`feature_norm`: mean L2 norm of the feature rows.
  * :func:`srank`: Kumar et al. (2021): the smallest k whose top-k singular values hold 1 - delta
    of their sum (delta = 0.01).  :func:`effective_rank`: exp(entropy of the normalised singular
    values) (Roy & Vetterli 2007).
  * :func:`dormant_fraction`: Sokar et al. (2023): unit activity E_x|h_i(x)| divided by the layer's
    mean activity; a unit is dormant if that score is <= tau.
:func:`critic_diagnostics` bundles them for any agent, probing what the agent's ``critic_probe`` names (one dict of
scalars per call).
"""

from typing import Dict

import jax
import jax.numpy as jnp

_EPS = 1e-12


# ------------------------------------------------------------------------------------ curvature
def _path_steps(path):
    """(K+1, E, B) -> per-step increments (K, E, B)."""
    path = jnp.asarray(path, jnp.float32)
    return path[1:] - path[:-1]


def straightness(path: jax.Array) -> jax.Array:
    """Mean over (E, B) of |z_K - z_0| / sum_k |z_{k+1} - z_k| for a path (K+1, E, B) (or (K+1, B)).

    1 for a straight (monotone) path, smaller the more it turns back; a path that does not move
    counts as straight (1).
    """
    steps = _path_steps(path)
    length = jnp.abs(steps).sum(axis=0)
    displacement = jnp.abs(path[-1] - path[0]).astype(jnp.float32)
    ratio = jnp.where(length > _EPS, displacement / jnp.maximum(length, _EPS), 1.0)
    return ratio.mean()


def velocity_spread(path: jax.Array) -> jax.Array:
    """Std over the K steps of the per-step velocity (z_{k+1} - z_k) * K, averaged over (E, B).

    path: (K+1, E, B) (or (K+1, B)).  0 for a constant-velocity (straight, uniformly traversed) path.
    """
    steps = _path_steps(path)
    velocities = steps * steps.shape[0]
    return velocities.std(axis=0).mean()


def q_change(agent, observations, actions, num_steps: int, seed=None) -> jax.Array:
    """mean_b |Q_K(s, a) - Q_2K(s, a)| of a floq agent with the same initial noises.

    observations (B, O), actions (B, A); ``num_steps`` = K is static.
    """
    q_k = agent.q_values(observations, actions, num_steps=num_steps, seed=seed)
    q_2k = agent.q_values(observations, actions, num_steps=2 * num_steps, seed=seed)
    return jnp.abs(q_k - q_2k).mean()


# ------------------------------------------------------------------------------------ plasticity
def _as_members(features):
    """(B, H) -> (1, B, H); (E, B, H) unchanged; (E, B, N, H) -> (E, B * N, H)."""
    features = jnp.asarray(features, jnp.float32)
    if features.ndim == 2:
        return features[None]
    if features.ndim > 3:
        return features.reshape(features.shape[0], -1, features.shape[-1])
    return features


def feature_norm(features: jax.Array) -> jax.Array:
    """Mean L2 norm of the feature rows: (E, B, H) or (B, H) -> scalar."""
    return jnp.linalg.norm(_as_members(features), axis=-1).mean()


def singular_values(features: jax.Array) -> jax.Array:
    """Singular values of each member's feature matrix: (E, B, H) or (B, H) -> (E, min(B, H)), descending."""
    return jnp.linalg.svd(_as_members(features), compute_uv=False)


def srank(features: jax.Array, delta: float = 0.01) -> jax.Array:
    """Kumar et al.'s effective rank: min k with sum_{i<=k} s_i >= (1 - delta) sum_i s_i, averaged over
    members (float).  (E, B, H) or (B, H) -> scalar; 0 for an all-zero matrix."""
    s = singular_values(features)
    total = s.sum(axis=-1, keepdims=True)
    cumulative = jnp.cumsum(s, axis=-1)
    # Count the prefixes that still hold less than (1 - delta) of the mass; k is that count plus one.
    below = (cumulative < (1.0 - delta) * total - 1e-6 * total).sum(axis=-1)
    rank = jnp.where(total[..., 0] > _EPS, below + 1, 0)
    return rank.astype(jnp.float32).mean()


def effective_rank(features: jax.Array) -> jax.Array:
    """exp(entropy) of the normalised singular values (Roy & Vetterli), averaged over members."""
    s = singular_values(features)
    p = s / jnp.maximum(s.sum(axis=-1, keepdims=True), _EPS)
    entropy = -(jnp.where(p > 0, p * jnp.log(jnp.maximum(p, _EPS)), 0.0)).sum(axis=-1)
    return jnp.exp(entropy).mean()


def dormant_fraction(features: jax.Array, tau: float = 0.0) -> jax.Array:
    """Fraction of tau-dormant units (Sokar et al. 2023), averaged over members.

    score_i = mean_b |h_bi| / mean_j mean_b |h_bj|; unit i is dormant if score_i <= tau.
    features (E, B, H) or (B, H) -> scalar in [0, 1].
    """
    activity = jnp.abs(_as_members(features)).mean(axis=1)  # (E, H)
    score = activity / jnp.maximum(activity.mean(axis=-1, keepdims=True), _EPS)
    return (score <= tau).astype(jnp.float32).mean()


def feature_metrics(features: jax.Array, prefix: str = '', dormant_taus=(0.0, 0.025)) -> Dict[str, jax.Array]:
    """All plasticity metrics of one feature tensor, keyed ``<prefix>feature_norm`` etc."""
    out = {f'{prefix}feature_norm': feature_norm(features),
           f'{prefix}srank': srank(features),
           f'{prefix}effective_rank': effective_rank(features)}
    for tau in dormant_taus:
        out[f'{prefix}dormant_{tau:g}'] = dormant_fraction(features, tau)
    return out


# ------------------------------------------------------------------------------------ agents
def critic_diagnostics(agent, batch, rng, dormant_taus=(0.0, 0.025)) -> Dict[str, jax.Array]:
    """Diagnostics of an agent's critic on ``batch`` (dict of (B, ...) arrays): a dict of scalars.

    The agent says what to probe (``agent.critic_probe(observations, actions, rng)``, a hook of
    :class:`floq_jax.core.agent_base.Agent`): penultimate features by prefix, each reduced to the plasticity
    metrics of :func:`feature_metrics` (keys ``<prefix>feature_norm`` etc.), plus any extra scalars it computes
    (e.g. a flow critic's path straightness, :func:`straightness`).  An agent that probes nothing gives {}.
    Jittable: ``jax.jit(critic_diagnostics)(agent, batch, rng)``.
    """
    features, scalars = agent.critic_probe(batch['observations'], batch['actions'], rng)
    out = {}
    for prefix, f in features.items():
        out.update(feature_metrics(f, prefix, dormant_taus))
    out.update(scalars)
    return out
