"""The implicit quantile critic (IQN, Dabney et al. 2018) as a network and a loss, for any agent that uses it
(agents/fql.py's quantile critic component).

Network: the quantile level tau is embedded as cos(pi * i * tau), i = 1..num_cosines, and concatenated with s and a;
an ensemble of trunks (GELU then LayerNorm) maps concat(s, a, cos-features) to the quantile Z_tau(s, a).
Loss: :func:`quantile_loss`, quantile regression with a squared or Huber per-pair loss.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from floq_jax.core.networks import TrunkSpec, ensemble_trunks

IQN_LOSSES = ('squared', 'huber')


def cosine_embedding(taus: jax.Array, num_cosines: int = 64) -> jax.Array:
    """cos(pi * i * tau) for i = 1..num_cosines: (...,) -> (..., num_cosines)."""
    i = jnp.arange(1, num_cosines + 1, dtype=jnp.float32)
    return jnp.cos(i * jnp.pi * taus[..., None].astype(jnp.float32))


class ImplicitQuantileCritic(nn.Module):
    """Z_tau(s, a) for an ensemble: observations (B, O), actions (B, A), taus (B, N) -> (E, B, N).

    Each member is one :class:`floq_jax.core.networks.Trunk` on concat(s, a, cos(pi * i * tau)) (parameters under
    'ensemble', the :class:`EnsembleValue` layout).  With ``return_features=True`` also the penultimate
    features (E, B, N, H).
    """

    trunk: TrunkSpec
    num_ensembles: int = 2
    num_cosines: int = 64
    dtype: object = jnp.float32
    ensemble_apply: str = 'auto'

    @nn.compact
    def __call__(self, observations, actions, taus, return_features: bool = False):
        batch, n = taus.shape
        sa = jnp.repeat(jnp.concatenate([observations, actions], axis=-1), n, axis=0)  # row b * N + j
        x = jnp.concatenate([sa, cosine_embedding(taus.reshape(batch * n), self.num_cosines)], axis=-1)
        out, features = ensemble_trunks(self, self.trunk, self.num_ensembles, x, True, self.dtype,
                                        self.ensemble_apply)
        z = out[..., 0].reshape(self.num_ensembles, batch, n)
        return (z, features.reshape(self.num_ensembles, batch, n, -1)) if return_features else z


def quantile_midpoints(num_quantiles: int) -> jax.Array:
    """(i + 0.5) / N for i < N: the fixed quantile levels used when no rng is given."""
    return (jnp.arange(num_quantiles, dtype=jnp.float32) + 0.5) / num_quantiles


def quantile_loss(quantiles: jax.Array, taus: jax.Array, targets: jax.Array, kappa: float = 1.0,
                  kind: str = 'squared') -> jax.Array:
    """Per-row quantile regression loss sum_i mean_j |tau_i - 1{d_ij < 0}| l(d_ij) / kappa, d_ij = y_j - Z_i.

    l(d) = d^2 for ``kind='squared'`` (the published fql_iqn), the Huber loss with threshold kappa for
    ``kind='huber'``.  quantiles (..., N) at levels taus (..., N) (broadcastable), targets (..., N') -> (...,).
    """
    if kind not in IQN_LOSSES:
        raise ValueError(f'quantile_loss kind must be one of {IQN_LOSSES}, got {kind!r}')
    delta = targets[..., None, :] - quantiles[..., :, None]  # (..., N, N')
    if kind == 'squared':
        loss = delta ** 2
    else:
        abs_delta = jnp.abs(delta)
        loss = jnp.where(abs_delta <= kappa, 0.5 * delta ** 2, kappa * (abs_delta - 0.5 * kappa))
    weight = jnp.abs(taus[..., :, None] - jax.lax.stop_gradient((delta < 0).astype(jnp.float32)))
    return (weight * loss / kappa).sum(axis=-2).mean(axis=-1)
