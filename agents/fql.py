"""FQL (flow Q-learning, Park et al. 2025): FQL's actor with a critic component chosen by the config.

Critic components (one class, :class:`FQLAgent`; the component follows from the config's critic keys, so configs
recorded by earlier versions, which have no component key, choose the same one):

  * :class:`ScalarCritic` (``agent_name='fql'``; ``critic_use_resnet=True``: FQL-ResNet, ``'fql_resnet'``): an
    ensemble of MLPs (or residual MLPs) Q(s, a); loss ``(Q(s, a) - (r + gamma * mask * agg_e Q_target(s', a')))^2``
    with a' from the one-step policy, averaged over ensemble members.
  * :class:`QuantileCritic` (the ``iqn_*`` keys present: FQL-IQN, ``'fql_iqn'``, variant ``:iqn``): the implicit
    quantile critic of the published floq code's agents/fql_iqn.py (see the class docstring).

The ``agent_name`` of each variant names its run directories and table rows (fql, fql_resnet, fql_iqn), all served
by :class:`FQLAgent` through the one registry (agents/__init__.py).

FQL-ResNet, the published sizes (floq README: ``--agent.use_resnets=True --agent.block_width=512`` with
``--agent.block_depth=2 --agent.num_transformations=4`` on humanoidmaze-large, ``block_depth=4
num_transformations=2`` on antmaze-giant): ``get_config('resnet')`` (``--agent=agents/fql.py:resnet``, also
``:resnet_depth2x4``) is the width-512 residual critic of 4 blocks of depth 2; ``:resnet_depth4x2`` has 2 blocks of
depth 4.  All have ``agent_name='fql_resnet'``.

``get_config('resnet_flop_matched')`` instead sizes the residual critic to floq's FLOPs at K = 8 (this
project's own rule, not a published size).  Matching rule: equal FLOPs per Q-value evaluation of one (s, a) row per
ensemble member.  floq spends K forward passes of its 4 x 512 velocity net (input O + A + 51):
8 * 2 * (84*512 + 3*512^2 + 512) = 13.3 MFLOP at O + A = 33.  A width-512 residual critic costs
2 * ((O + A)*512 + 2 * num_blocks * 512^2 + 512) FLOP, so ``matched_resnet_blocks`` picks the
number of depth-2 blocks nearest to that: 13 blocks (13.6 MFLOP, 102% of floq's) at O + A = 33.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections

from floq_jax import agent_registry as accepts
from floq_jax.core import actor
from floq_jax.core.agent_base import Agent, compute_dtype, freeze_config, observation_dims
from floq_jax.core.encoders import ENCODERS, with_encoder
from floq_jax.core.flops import dense_flops, fql_update_flops, mlp_flops
from floq_jax.core.networks import EnsembleValue, TrunkSpec
from floq_jax.core.quantile import IQN_LOSSES, ImplicitQuantileCritic, quantile_loss, quantile_midpoints
from floq_jax.core.target_noise import NOISE_STREAM, TARGET_NOISE_DISTS, sample_target_noise

# FQL, offline (FQL README), except humanoidmaze-large's batch 512: the floq README's FQL baseline command
# (discount 0.995, alpha 30, batch 512; the FQL README runs it at the default batch 256).
PUBLISHED_OFFLINE: tuple = (
    ('antmaze-large', dict(q_agg='min', alpha=10.0)),
    ('antmaze-giant', dict(discount=0.995, q_agg='min', alpha=10.0)),
    ('humanoidmaze-medium', dict(discount=0.995, alpha=30.0)),
    ('humanoidmaze-large', dict(discount=0.995, batch_size=512, alpha=30.0)),
    ('antsoccer-arena', dict(discount=0.995, alpha=10.0)),
    ('cube-single', dict(alpha=300.0)),
    ('cube-double', dict(alpha=300.0)),
    ('scene', dict(alpha=300.0)),
    ('puzzle-3x3', dict(alpha=1000.0)),
    ('puzzle-4x4', dict(alpha=1000.0)),
)

# FQL, offline-to-online: humanoidmaze-large from the floq README (1M + 2M steps); the others from the FQL README.
# Environments missing here use PUBLISHED_OFFLINE.
PUBLISHED_O2O: tuple = (
    ('humanoidmaze-medium', dict(discount=0.995, alpha=100.0)),
    ('humanoidmaze-large', dict(discount=0.995, batch_size=512, alpha=40.0)),
    ('antsoccer-arena', dict(discount=0.995, alpha=30.0)),
    ('cube-double', dict(alpha=300.0)),
    ('scene', dict(alpha=300.0)),
    ('puzzle-4x4', dict(alpha=1000.0)),
)

# FQL-ResNet and FQL-IQN (floq README examples); other environments use FQL's values.  The two published
# FQL-ResNet shapes are config variants of agents/fql.py (resnet = 4 blocks x depth 2, as for humanoidmaze-large;
# resnet_4x2 = 2 blocks x depth 4, as for antmaze-giant).
RESNET_PUBLISHED: tuple = (
    ('antmaze-giant', dict(discount=0.995, q_agg='min', batch_size=512, alpha=10.0)),
    ('humanoidmaze-large', dict(discount=0.995, batch_size=512, alpha=20.0)),
)
IQN_PUBLISHED: tuple = (
    ('antmaze-giant', dict(discount=0.995, q_agg='min', batch_size=512, alpha=10.0)),
)


def critic_trunk(config) -> TrunkSpec:
    """The critic network's architecture from the config (plain MLP, or residual with critic_use_resnet)."""
    return TrunkSpec(hidden_dims=tuple(config.value_hidden_dims), layer_norm=config.layer_norm,
                     use_resnet=config.critic_use_resnet, width=config.critic_resnet_width,
                     num_blocks=config.critic_resnet_blocks, block_depth=config.critic_resnet_block_depth)


def _aggregate(values, how):
    """Reduce the leading ensemble axis: (E, ...) -> (...)."""
    return values.min(axis=0) if how == 'min' else values.mean(axis=0)


class ScalarCritic:
    """An ensemble of MLPs (or residual MLPs, ``critic_use_resnet``) Q(s, a): the critic of FQL and FQL-ResNet."""

    @staticmethod
    def module(config, dtype):
        return EnsembleValue(trunk=critic_trunk(config), num_ensembles=config.num_ensembles, dtype=dtype,
                             ensemble_apply=config.ensemble_apply)

    @staticmethod
    def init(module, rng, ex_observations, ex_actions):
        return module.init(rng, ex_observations, ex_actions)['params']

    @staticmethod
    def values(agent, critic_params, observations, actions, rng=None):
        del rng
        return agent.modules['critic'].apply({'params': critic_params}, observations, actions)

    @staticmethod
    def features(agent, critic_params, observations, actions):
        return agent.modules['critic'].apply({'params': critic_params}, observations, actions,
                                             return_features=True)[1]

    @staticmethod
    def actor_q(agent, frozen_critic, rng):
        return lambda o, a: agent.critic_values(frozen_critic, o, a, rng).mean(axis=0)

    @staticmethod
    def loss(agent, batch, params, rng):
        config = agent.config
        next_actions = actor.one_step_actions(agent.modules, jax.lax.stop_gradient(params),
                                              batch['next_observations'], rng)
        next_q = _aggregate(agent.critic_values(agent.target_params['critic'], batch['next_observations'],
                                                next_actions), config.q_agg)
        targets = jax.lax.stop_gradient(batch['rewards'] + config.discount * batch['masks'] * next_q)
        q = agent.critic_values(params['critic'], batch['observations'], batch['actions'])
        info = {'target_q': targets.mean()}
        if config.get('target_noise', 0.0):
            # Independent noise per member and row (the published fql_target_noise); own rng stream.
            targets = targets + sample_target_noise(jax.random.fold_in(rng, NOISE_STREAM), q.shape,
                                                    config.target_noise, config.get('target_noise_dist', 'uniform'))
            info['noisy_target_q'] = targets.mean()
        loss = ((q - targets) ** 2).mean()
        return loss, {'critic_loss': loss, 'q': q.mean(), **info}

    @staticmethod
    def published_tables(config, mode):
        special = (RESNET_PUBLISHED,) if config.critic_use_resnet else ()
        return ((PUBLISHED_O2O,) if mode == 'offline_to_online' else ()) + special + (PUBLISHED_OFFLINE,)

    @staticmethod
    def update_flops(config):
        return fql_update_flops(config)


class QuantileCritic:
    """The implicit quantile critic (IQN, Dabney et al. 2018), as in the published floq code's agents/fql_iqn.py.

    Network (:class:`floq_jax.core.quantile.ImplicitQuantileCritic`): tau embedded as cos(pi * i * tau), i = 1..
    ``iqn_num_cosines`` (64), concatenated with s and a; an ensemble of MLPs (``value_hidden_dims``) gives Z_tau(s, a).

    Loss (per row, N = ``iqn_num_quantiles`` levels tau_i ~ U(0, 1), N' = ``iqn_num_target_quantiles`` levels
    tau'_j ~ U(0, 1), each tau'_j with its own next action a'_j from the one-step policy):
    y_j = r + gamma * mask * agg_e Z'_{tau'_j}(s', a'_j), delta_ij = y_j - Z_{tau_i}(s, a),
    rho_ij = |tau_i - 1{delta_ij < 0}| * delta_ij^2 / kappa; the loss is sum_i mean_j rho_ij averaged over rows
    and members (``iqn_loss='squared'``, as published).  ``iqn_loss='huber'`` replaces delta^2 by the Huber loss
    with threshold kappa (the quantile Huber loss of the IQN paper, floq-jax's earlier default).

    Actor Q: the quantiles at N levels tau ~ U(0, 1) per row, averaged over members.  ``q_values`` (evaluation)
    and the features use the fixed midpoints (i + 0.5) / N.
    """

    @staticmethod
    def module(config, dtype):
        return ImplicitQuantileCritic(trunk=critic_trunk(config), num_ensembles=config.num_ensembles,
                                      num_cosines=config.iqn_num_cosines, dtype=dtype,
                                      ensemble_apply=config.ensemble_apply)

    @staticmethod
    def init(module, rng, ex_observations, ex_actions):
        ex_taus = jnp.full((ex_observations.shape[0], 1), 0.5)
        return module.init(rng, ex_observations, ex_actions, ex_taus)['params']

    @staticmethod
    def values(agent, critic_params, observations, actions, rng=None):
        return agent.quantiles(critic_params, observations, actions, rng).mean(axis=-1)

    @staticmethod
    def features(agent, critic_params, observations, actions):
        taus = agent.quantile_levels(observations.shape[0])
        return agent.modules['critic'].apply({'params': critic_params}, observations, actions, taus,
                                             return_features=True)[1]

    @staticmethod
    def actor_q(agent, frozen_critic, rng):
        return lambda o, a: agent.quantiles(frozen_critic, o, a, rng).mean(axis=0)

    @staticmethod
    def loss(agent, batch, params, rng):
        """Draws, in the published order: the next actions (one per target level), the target levels tau', the
        levels tau."""
        config = agent.config
        action_rng, next_tau_rng, tau_rng = jax.random.split(rng, 3)
        observations = batch['observations']
        batch_size = observations.shape[0]
        n_next = config.iqn_num_target_quantiles
        critic = agent.modules['critic']

        # Targets y_j: one next action per target level tau'_j.
        next_obs = jnp.repeat(batch['next_observations'], n_next, axis=0)  # (B * N', O), row b * N' + j
        next_actions = actor.one_step_actions(agent.modules, jax.lax.stop_gradient(params), next_obs, action_rng)
        next_taus = agent.quantile_levels(batch_size * n_next, next_tau_rng, 1)  # (B * N', 1)
        next_z = critic.apply({'params': agent.target_params['critic']}, next_obs, next_actions, next_taus)
        next_z = _aggregate(next_z, config.q_agg).reshape(batch_size, n_next)
        targets = batch['rewards'][:, None] + config.discount * batch['masks'][:, None] * next_z  # (B, N')
        targets = jnp.broadcast_to(jax.lax.stop_gradient(targets), (config.num_ensembles, *targets.shape))
        info = {'target_q': targets.mean()}
        if config.get('target_noise', 0.0):
            targets = targets + sample_target_noise(jax.random.fold_in(rng, NOISE_STREAM), targets.shape,
                                                    config.target_noise, config.get('target_noise_dist', 'uniform'))

        taus = agent.quantile_levels(batch_size, tau_rng)  # (B, N)
        z = critic.apply({'params': params['critic']}, observations, batch['actions'], taus)  # (E, B, N)
        loss = quantile_loss(z, taus[None], targets, config.iqn_kappa, config.iqn_loss).mean()
        return loss, {'critic_loss': loss, 'q': z.mean(), **info}

    @staticmethod
    def published_tables(config, mode):
        del config
        return ((PUBLISHED_O2O,) if mode == 'offline_to_online' else ()) + (IQN_PUBLISHED, PUBLISHED_OFFLINE)

    @staticmethod
    def update_flops(config):
        del config
        return None  # XLA's cost analysis (floq_jax.core.flops.update_flops)


def critic_component(config):
    """The critic component of ``config``: :class:`QuantileCritic` when it has the ``iqn_*`` keys, else
    :class:`ScalarCritic` (MLP or residual by ``critic_use_resnet``)."""
    return QuantileCritic if 'iqn_num_quantiles' in config else ScalarCritic


class FQLAgent(Agent):
    """FQL agent.  params: 'critic', 'actor_bc_flow', 'actor_onestep_flow'; target: 'critic'.  The critic is a
    component (:func:`critic_component`): every critic-specific step is a call into it."""

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def build_modules(config):
        dtype = compute_dtype(config)
        # With config.encoder, the critic (its target: the Polyak copy, encoder included) and both actors each have
        # their own pixel encoder, as published.
        return {'critic': with_encoder(critic_component(config).module(config, dtype), config.get('encoder')),
                **actor.build_actor_modules(config, config.action_dim, dtype)}

    @property
    def critic(self):
        return critic_component(self.config)

    @classmethod
    def published_tables(cls, config, mode):
        return critic_component(config).published_tables(config, mode)

    @classmethod
    def analytic_update_flops(cls, config):
        if config.get('encoder') is not None:
            return None  # the MLP count misses the encoders: XLA's cost analysis counts them
        return critic_component(config).update_flops(config)

    def critic_values(self, critic_params, observations, actions, rng=None):
        """Q of every member: (B, O), (B, A) -> (E, B).  (``rng``: for critics that sample, e.g. IQN's levels;
        without it the quantile critic uses its fixed midpoints.)"""
        return self.critic.values(self, critic_params, observations, actions, rng)

    def critic_features(self, critic_params, observations, actions):
        """Penultimate critic features: (E, B, H) (quantile critic: (E, B, N, H) at the midpoints)."""
        return self.critic.features(self, critic_params, observations, actions)

    # ------------------------------------------------------------------ quantile critic helpers
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

    @jax.jit
    def q_values(self, observations, actions, num_steps=None, seed=None, num_noise_samples=None):
        """Q(s, a) averaged over the ensemble: (B, O), (B, A) -> (B,).  (num_steps etc. are accepted and
        ignored, so evaluation code can query every agent the same way.)"""
        return self.critic_values(self.params['critic'], observations, actions).mean(axis=0)

    def critic_loss(self, batch, params, rng):
        return self.critic.loss(self, batch, params, rng)

    def actor_q_fn(self, params, rng):
        """Q used by the actor, (B, O), (B, A) -> (B,) or (B, N) (averaged by the actor loss); gradients reach
        the actions only."""
        return self.critic.actor_q(self, jax.lax.stop_gradient(params['critic']), rng)

    def total_loss(self, batch, params, rng):
        critic_rng, actor_rng = jax.random.split(rng)
        critic_loss, critic_info = self.critic_loss(batch, params, critic_rng)
        q_fn = self.actor_q_fn(params, jax.random.fold_in(actor_rng, NOISE_STREAM))  # own stream, if it samples
        actor_loss, actor_info = actor.actor_loss(self.modules, params, batch, actor_rng, q_fn, self.config)
        info = {f'critic/{k}': v for k, v in critic_info.items()}
        info.update({f'actor/{k}': v for k, v in actor_info.items()})
        return critic_loss + actor_loss, info

    @classmethod
    def create(cls, seed, ex_observations, ex_actions, config):
        """A new agent; seed may be traced (vmap over seeds).  ex_observations (B, O), ex_actions (B, A)."""
        accepts.check_config(config, CONFIG_RANGES)
        config = freeze_config(config, **observation_dims(config, ex_observations), action_dim=int(ex_actions.shape[-1]))
        rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
        critic_rng, actor_rng = jax.random.split(init_rng)
        modules = cls.build_modules(config)
        params = {'critic': critic_component(config).init(modules['critic'], critic_rng, ex_observations, ex_actions)}
        params.update(actor.init_actor_params(modules, actor_rng, ex_observations, ex_actions))
        return cls._from_params(rng, params, ('critic',), config)


AGENT = FQLAgent


def matched_resnet_blocks(obs_action_dim: int = 33, floq_steps: int = 8, floq_width: int = 512, floq_depth: int = 4,
                          z_embed_dim: int = 50, width: int = 512, block_depth: int = 2) -> int:
    """Number of residual blocks whose per-row forward FLOPs best match floq's K-step integration."""
    floq = floq_steps * mlp_flops(obs_action_dim + z_embed_dim + 1, (floq_width,) * floq_depth, 1)
    base = dense_flops(obs_action_dim, width) + dense_flops(width, 1)
    per_block = block_depth * dense_flops(width, width)
    return max(1, round((floq - base) / per_block))


# FQL-ResNet config variants: (residual blocks, layers per block) at width 512.  The published shapes (floq README)
# are depth 2 x 4 blocks ('resnet', the default) and depth 4 x 2 blocks; 'resnet_flop_matched' is computed.
RESNET_SHAPES = {'resnet': (4, 2), 'resnet_depth2x4': (4, 2), 'resnet_depth4x2': (2, 4), 'resnet_flop_matched': None}

# The variants the registry lists by their agent_name (fql, fql_resnet, fql_iqn).
VARIANTS = ('', 'resnet', 'iqn')

# What each config key accepts (checked by the CLI before anything is written, and by create).
CONFIG_RANGES = {
    'lr': accepts.positive_number,
    'batch_size': accepts.positive_int,
    '*_hidden_dims': accepts.positive_int_tuple,
    'discount': accepts.interval(0, 1),
    'tau': accepts.interval(0, 1),
    'q_agg': accepts.one_of('mean', 'min'),
    'alpha': accepts.non_negative_number,
    'actor_flow_steps': accepts.positive_int,
    'num_ensembles': accepts.positive_int,
    'critic_resnet_width': accepts.positive_int,
    'critic_resnet_blocks': accepts.positive_int,
    'critic_resnet_block_depth': accepts.positive_int,
    'target_noise': accepts.non_negative_number,
    'target_noise_dist': accepts.one_of(*TARGET_NOISE_DISTS),
    'compute_dtype': accepts.one_of('float32', 'bfloat16', 'float16'),
    'ensemble_apply': accepts.one_of('memberwise', 'vmap', 'auto'),
    'encoder': accepts.one_of(*ENCODERS),
    'iqn_num_quantiles': accepts.positive_int,
    'iqn_num_target_quantiles': accepts.positive_int,
    'iqn_num_cosines': accepts.positive_int,
    'iqn_kappa': accepts.positive_number,
    'iqn_loss': accepts.one_of(*IQN_LOSSES),
}


def get_config(variant: str = ''):
    """FQL's published defaults; ``variant='resnet'`` (= 'resnet_depth2x4') and 'resnet_depth4x2' give the
    published FQL-ResNet critics (width 512; 4 blocks of depth 2, or 2 blocks of depth 4), 'resnet_flop_matched'
    the residual critic matched to floq's FLOPs at K = 8 (:func:`matched_resnet_blocks`), and
    ``variant='iqn'`` the implicit-quantile critic with the published fql_iqn's settings."""
    config = ml_collections.ConfigDict(dict(
        agent_name='fql',
        lr=3e-4,
        batch_size=256,
        actor_hidden_dims=(512, 512, 512, 512),
        value_hidden_dims=(512, 512, 512, 512),
        layer_norm=True,
        actor_layer_norm=False,
        discount=0.99,
        tau=0.005,
        q_agg='mean',
        alpha=10.0,
        actor_flow_steps=10,
        normalize_q_loss=False,
        num_ensembles=2,
        critic_use_resnet=False,      # Residual critic (FQL-ResNet: the 'resnet*' variants).
        critic_resnet_width=512,
        critic_resnet_blocks=2,
        critic_resnet_block_depth=2,
        freeze_critic_trunk=False,    # Plasticity experiment: train only the critic's output layer.
        target_noise=0.0,             # Noise magnitude added to the TD targets (0: off; paper: 0, 4, 8, 16).
        target_noise_dist='uniform',  # 'uniform' on [-m, m] (as published) or 'gaussian' with std m.
        compute_dtype='float32',
        ensemble_apply='auto',      # 'memberwise' | 'vmap' | 'auto' (memberwise for large matmuls on CPU).
        encoder=ml_collections.config_dict.placeholder(str),  # Pixel encoder (None, 'impala_small', ...), as published.
        r_min=ml_collections.config_dict.placeholder(float),  # Unused by FQL; set by the trainer for symmetry.
        r_max=ml_collections.config_dict.placeholder(float),
    ))
    if variant in RESNET_SHAPES:
        blocks, depth = RESNET_SHAPES[variant] if variant != 'resnet_flop_matched' else (matched_resnet_blocks(), 2)
        config.update(agent_name='fql_resnet', critic_use_resnet=True, critic_resnet_width=512,
                      critic_resnet_blocks=blocks, critic_resnet_block_depth=depth)
    elif variant == 'iqn':  # the quantile critic component, with the published fql_iqn's settings
        config.agent_name = 'fql_iqn'
        config.iqn_num_quantiles = 8         # N: levels tau per row for the loss and the actor's Q (published 8).
        config.iqn_num_target_quantiles = 8  # N': target levels tau' per row, one next action each (published 8).
        config.iqn_num_cosines = 64          # Cosine features of tau (published quantile_embed_dim).
        config.iqn_kappa = 1.0               # The loss is divided by kappa (and, with 'huber', the Huber threshold).
        config.iqn_loss = 'squared'          # 'squared' (as published) or the IQN paper's quantile 'huber' loss.
    elif variant:
        raise ValueError(f"agents/fql.py: unknown config variant {variant!r} (accepted: '', "
                         f"{', '.join(repr(v) for v in RESNET_SHAPES)} or 'iqn')")
    return config
