"""FQL with an implicit quantile (IQN, Dabney et al. 2018) critic, as in the published floq code's
agents/fql_iqn.py (CMU-AIRe/floq): :class:`FQLIQNAgent` is :class:`agents.fql.FQLAgent` with another critic
network, critic loss and actor Q.

Network: the quantile level tau is embedded as cos(pi * i * tau), i = 1..``iqn_num_cosines`` (64), and
concatenated with s and a; an ensemble of MLPs (``value_hidden_dims``, GELU then LayerNorm) maps
concat(s, a, cos-features) to the quantile Z_tau(s, a).

Critic loss (per row, N = ``iqn_num_quantiles`` levels tau_i ~ U(0, 1), N' = ``iqn_num_target_quantiles``
levels tau'_j ~ U(0, 1), each tau'_j with its own next action a'_j from the one-step policy):
y_j = r + gamma * mask * agg_e Z'_{tau'_j}(s', a'_j), delta_ij = y_j - Z_{tau_i}(s, a),
rho_ij = |tau_i - 1{delta_ij < 0}| * delta_ij^2 / kappa; the loss is sum_i mean_j rho_ij averaged over rows
and members (``iqn_loss='squared'``, as published).  ``iqn_loss='huber'`` replaces delta^2 by the Huber
loss with threshold kappa (0.5 delta^2 inside, kappa (|delta| - kappa / 2) outside): the quantile Huber
loss of the IQN paper, floq-jax's earlier default.

Actor Q: the quantiles at N levels tau ~ U(0, 1) per row, averaged over members (the actor's Q loss and
its normalisation average over rows and levels).  ``q_values`` (evaluation) uses the fixed midpoints
(i + 0.5) / N.  ``--agent=agents/fql_iqn.py`` (or ``agents/fql.py:iqn``) selects it.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from agents import fql
from floq_jax.core import actor
from floq_jax.core.agent_base import compute_dtype
from floq_jax.core.networks import TrunkSpec, ensemble_trunks
from floq_jax.core.target_noise import NOISE_STREAM, sample_target_noise

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


class FQLIQNAgent(fql.FQLAgent):
    """FQL with the implicit quantile critic.  params: 'critic', 'actor_bc_flow', 'actor_onestep_flow'."""

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def build_modules(config):
        modules = dict(fql.FQLAgent.build_modules(config))
        modules['critic'] = ImplicitQuantileCritic(
            trunk=fql.critic_trunk(config), num_ensembles=config.num_ensembles, num_cosines=config.iqn_num_cosines,
            dtype=compute_dtype(config), ensemble_apply=config.ensemble_apply)
        return modules

    @classmethod
    def init_critic_params(cls, modules, rng, ex_observations, ex_actions):
        ex_taus = jnp.full((ex_observations.shape[0], 1), 0.5)
        return modules['critic'].init(rng, ex_observations, ex_actions, ex_taus)['params']

    def quantile_levels(self, batch_size, rng=None, num_quantiles=None):
        """Quantile levels (B, N): U(0, 1) samples, or the fixed midpoints (i + 0.5) / N without rng."""
        n = num_quantiles or self.config.iqn_num_quantiles
        if rng is None:
            return jnp.broadcast_to(quantile_midpoints(n), (batch_size, n))
        return jax.random.uniform(rng, (batch_size, n))

    def quantiles(self, critic_params, observations, actions, rng=None):
        """Z of every member at N levels per row (sampled with ``rng``, midpoints without): (E, B, N)."""
        taus = self.quantile_levels(observations.shape[0], rng)
        return self.modules['critic'].apply({'params': critic_params}, observations, actions, taus)

    def critic_values(self, critic_params, observations, actions, rng=None):
        """Q of every member, the mean of its quantiles (levels sampled with ``rng``; midpoints without): (E, B)."""
        return self.quantiles(critic_params, observations, actions, rng).mean(axis=-1)

    def critic_features(self, critic_params, observations, actions):
        """Penultimate critic features at the quantile midpoints: (E, B, N, H)."""
        taus = self.quantile_levels(observations.shape[0])
        return self.modules['critic'].apply({'params': critic_params}, observations, actions, taus,
                                            return_features=True)[1]

    def actor_q_fn(self, params, rng):
        """Quantiles (B, N) at sampled levels, averaged over members (the published actor's Q)."""
        frozen = jax.lax.stop_gradient(params['critic'])
        return lambda o, a: self.quantiles(frozen, o, a, rng).mean(axis=0)

    def critic_loss(self, batch, params, rng):
        """Quantile regression TD loss (see the module docstring).

        Draws, in the published order: the next actions (one per target level), the target levels tau',
        the levels tau.
        """
        config = self.config
        action_rng, next_tau_rng, tau_rng = jax.random.split(rng, 3)
        observations = batch['observations']
        batch_size = observations.shape[0]
        n_next = config.iqn_num_target_quantiles
        critic = self.modules['critic']

        # Targets y_j: one next action per target level tau'_j.
        next_obs = jnp.repeat(batch['next_observations'], n_next, axis=0)  # (B * N', O), row b * N' + j
        next_actions = actor.one_step_actions(self.modules, jax.lax.stop_gradient(params), next_obs, action_rng)
        next_taus = self.quantile_levels(batch_size * n_next, next_tau_rng, 1)  # (B * N', 1)
        next_z = critic.apply({'params': self.target_params['critic']}, next_obs, next_actions, next_taus)
        next_z = (next_z.min(axis=0) if config.q_agg == 'min' else next_z.mean(axis=0)).reshape(batch_size, n_next)
        targets = batch['rewards'][:, None] + config.discount * batch['masks'][:, None] * next_z  # (B, N')
        targets = jnp.broadcast_to(jax.lax.stop_gradient(targets), (config.num_ensembles, *targets.shape))
        info = {'target_q': targets.mean()}
        if config.get('target_noise', 0.0):
            targets = targets + sample_target_noise(jax.random.fold_in(rng, NOISE_STREAM), targets.shape,
                                                    config.target_noise, config.get('target_noise_dist', 'uniform'))

        taus = self.quantile_levels(batch_size, tau_rng)  # (B, N)
        z = critic.apply({'params': params['critic']}, observations, batch['actions'], taus)  # (E, B, N)
        loss = quantile_loss(z, taus[None], targets, config.iqn_kappa, config.iqn_loss).mean()
        return loss, {'critic_loss': loss, 'q': z.mean(), **info}

    @classmethod
    def create(cls, seed, ex_observations, ex_actions, config):
        if config.get('iqn_loss', 'squared') not in IQN_LOSSES:
            raise ValueError(f'config.iqn_loss must be one of {IQN_LOSSES}, got {config.iqn_loss!r}')
        return super().create(seed, ex_observations, ex_actions, config)


def get_config():
    """FQL's defaults with the published fql_iqn's critic settings."""
    config = fql.get_config()
    config.agent_name = 'fql_iqn'
    config.iqn_num_quantiles = 8         # N: levels tau per row for the loss and the actor's Q (published 8).
    config.iqn_num_target_quantiles = 8  # N': target levels tau' per row, one next action each (published 8).
    config.iqn_num_cosines = 64          # Cosine features of tau (published quantile_embed_dim).
    config.iqn_kappa = 1.0               # The loss is divided by kappa (and, with 'huber', the Huber threshold).
    config.iqn_loss = 'squared'          # 'squared' (as published) or 'huber' (the IQN paper's quantile Huber loss).
    return config
