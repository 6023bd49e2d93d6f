"""Implicit quantile (IQN, Dabney et al. 2018) critic for FQL: the network and the quantile Huber loss.

Used by :class:`agents.fql.FQLAgent` when ``config.critic_type == 'iqn'`` (``get_config('iqn')``).

Network (after the published ImplicitQuantileValue): the quantile level tau is embedded as
cos(pi * i * tau), i = 1..num_cosines (64), then a linear layer to ``embed_dim``; (s, a) goes through
its own linear layer to ``embed_dim``; their elementwise product feeds an ensemble of MLP heads
(hidden dims as the scalar critic, GELU then LayerNorm) with a scalar output, the quantile
Z_tau(s, a).  The two embedding layers are shared by the members, as in the reference.

Loss: with current quantiles Z_i = Z_{tau_i}(s, a) (N of them) and target samples
y_j = r + gamma * mask * Z'_{tau'_j}(s', a') (N' of them), delta_ij = y_j - Z_i and
rho_ij = |tau_i - 1{delta_ij < 0}| * huber_kappa(delta_ij) / kappa; the loss of a row is
sum_i mean_j rho_ij, averaged over rows and members.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from floq_jax.networks import MLP, default_init, ensemble


def cosine_embedding(taus: jax.Array, num_cosines: int = 64) -> jax.Array:
    """cos(pi * i * tau) for i = 1..num_cosines: (...,) -> (..., num_cosines)."""
    i = jnp.arange(1, num_cosines + 1, dtype=jnp.float32)
    return jnp.cos(jnp.pi * i * taus[..., None].astype(jnp.float32))


class _QuantileHead(nn.Module):
    hidden_dims: Sequence[int]
    layer_norm: bool = True
    dtype: object = jnp.float32

    @nn.compact
    def __call__(self, x):
        return MLP(tuple(self.hidden_dims), 1, self.layer_norm, dtype=self.dtype, name='mlp')(x, return_features=True)


class ImplicitQuantileCritic(nn.Module):
    """Z_tau(s, a) for an ensemble: observations (B, O), actions (B, A), taus (B, N) -> (E, B, N).

    With ``return_features=True`` also the heads' penultimate features (E, B, N, H).
    """

    hidden_dims: Sequence[int]
    num_ensembles: int = 2
    num_cosines: int = 64
    embed_dim: int = 512
    layer_norm: bool = True
    dtype: object = jnp.float32

    @nn.compact
    def __call__(self, observations, actions, taus, return_features: bool = False):
        tau_embed = nn.Dense(self.embed_dim, kernel_init=default_init(), dtype=self.dtype, name='tau_embed')(
            cosine_embedding(taus, self.num_cosines))  # (B, N, D)
        sa_embed = nn.Dense(self.embed_dim, kernel_init=default_init(), dtype=self.dtype, name='sa_embed')(
            jnp.concatenate([observations, actions], axis=-1))  # (B, D)
        x = sa_embed[..., None, :] * tau_embed  # (B, N, D)
        heads = ensemble(_QuantileHead, self.num_ensembles, in_axes=None)(
            tuple(self.hidden_dims), self.layer_norm, self.dtype, name='ensemble')
        out, features = heads(x)
        z = out[..., 0].astype(jnp.float32)
        return (z, features) if return_features else z


def quantile_midpoints(num_quantiles: int) -> jax.Array:
    """(i + 0.5) / N for i < N: the fixed quantile levels used when no rng is given."""
    return (jnp.arange(num_quantiles, dtype=jnp.float32) + 0.5) / num_quantiles


def quantile_huber_loss(quantiles: jax.Array, taus: jax.Array, targets: jax.Array, kappa: float = 1.0) -> jax.Array:
    """Per-row IQN loss sum_i mean_j |tau_i - 1{d_ij < 0}| huber_kappa(d_ij) / kappa, d_ij = y_j - Z_i.

    quantiles (..., N) at levels taus (..., N) (broadcastable), targets (..., N') -> (...,).
    """
    delta = targets[..., None, :] - quantiles[..., :, None]  # (..., N, N')
    abs_delta = jnp.abs(delta)
    huber = jnp.where(abs_delta <= kappa, 0.5 * delta ** 2, kappa * (abs_delta - 0.5 * kappa))
    weight = jnp.abs(taus[..., :, None] - (delta < 0).astype(jnp.float32))
    return (weight * huber / kappa).mean(axis=-1).sum(axis=-1)
