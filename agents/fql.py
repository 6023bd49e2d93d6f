"""FQL (flow Q-learning, Park et al. 2025): a monolithic scalar critic ensemble with FQL's actor.

Critic loss: ``(Q(s, a) - (r + gamma * mask * agg_e Q_target(s', a')))^2`` with a' from the one-step
policy, averaged over ensemble members.

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
import ml_collections

from floq_jax.core import actor
from floq_jax.core.agent_base import Agent, compute_dtype, freeze_config
from floq_jax.core.flops import dense_flops, mlp_flops
from floq_jax.core.networks import EnsembleValue, TrunkSpec
from floq_jax.core.target_noise import NOISE_STREAM, TARGET_NOISE_DISTS, sample_target_noise


def critic_trunk(config) -> TrunkSpec:
    """The critic network's architecture from the config (plain MLP, or residual with critic_use_resnet)."""
    return TrunkSpec(hidden_dims=tuple(config.value_hidden_dims), layer_norm=config.layer_norm,
                     use_resnet=config.critic_use_resnet, width=config.critic_resnet_width,
                     num_blocks=config.critic_resnet_blocks, block_depth=config.critic_resnet_block_depth)


class FQLAgent(Agent):
    """FQL agent.  params: 'critic', 'actor_bc_flow', 'actor_onestep_flow'; target: 'critic'.

    Subclasses with another critic (agents/fql_iqn.py) override ``build_modules``, ``init_critic_params``,
    ``critic_values``, ``critic_features``, ``critic_loss`` and ``actor_q_fn``.
    """

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def build_modules(config):
        dtype = compute_dtype(config)
        critic = EnsembleValue(trunk=critic_trunk(config), num_ensembles=config.num_ensembles, dtype=dtype,
                               ensemble_apply=config.ensemble_apply)
        return {'critic': critic, **actor.build_actor_modules(config, config.action_dim, dtype)}

    @classmethod
    def init_critic_params(cls, modules, rng, ex_observations, ex_actions):
        """The critic's parameters from example inputs (B, O), (B, A)."""
        return modules['critic'].init(rng, ex_observations, ex_actions)['params']

    def critic_values(self, critic_params, observations, actions, rng=None):
        """Q of every member: (B, O), (B, A) -> (E, B).  (``rng``: for critics that sample, e.g. IQN's levels.)"""
        return self.modules['critic'].apply({'params': critic_params}, observations, actions)

    def critic_features(self, critic_params, observations, actions):
        """Penultimate critic features: (E, B, H)."""
        return self.modules['critic'].apply({'params': critic_params}, observations, actions, return_features=True)[1]

    @jax.jit
    def q_values(self, observations, actions, num_steps=None, seed=None, num_noise_samples=None):
        """Q(s, a) averaged over the ensemble: (B, O), (B, A) -> (B,).  (num_steps etc. are accepted and
        ignored, so evaluation code can query every agent the same way.)"""
        return self.critic_values(self.params['critic'], observations, actions).mean(axis=0)

    def critic_loss(self, batch, params, rng):
        next_actions = actor.one_step_actions(self.modules, jax.lax.stop_gradient(params),
                                              batch['next_observations'], rng)
        next_qs = self.critic_values(self.target_params['critic'], batch['next_observations'], next_actions)
        next_q = next_qs.min(axis=0) if self.config.q_agg == 'min' else next_qs.mean(axis=0)
        targets = jax.lax.stop_gradient(batch['rewards'] + self.config.discount * batch['masks'] * next_q)
        q = self.critic_values(params['critic'], batch['observations'], batch['actions'])
        info = {'target_q': targets.mean()}
        if self.config.get('target_noise', 0.0):
            # Independent noise per member and row (the published fql_target_noise); own rng stream.
            targets = targets + sample_target_noise(jax.random.fold_in(rng, NOISE_STREAM), q.shape,
                                                    self.config.target_noise,
                                                    self.config.get('target_noise_dist', 'uniform'))
            info['noisy_target_q'] = targets.mean()
        loss = ((q - targets) ** 2).mean()
        return loss, {'critic_loss': loss, 'q': q.mean(), **info}

    def actor_q_fn(self, params, rng):
        """Q used by the actor, (B, O), (B, A) -> (B,) or (B, N) (averaged by the actor loss); gradients reach
        the actions only."""
        frozen = jax.lax.stop_gradient(params['critic'])
        return lambda o, a: self.critic_values(frozen, o, a, rng).mean(axis=0)

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
        if config.q_agg not in ('mean', 'min'):
            raise ValueError(f"config.q_agg must be 'mean' or 'min', got {config.q_agg!r}")
        if config.get('target_noise_dist', 'uniform') not in TARGET_NOISE_DISTS:
            raise ValueError(f'config.target_noise_dist must be one of {TARGET_NOISE_DISTS}, '
                             f'got {config.target_noise_dist!r}')
        if config.get('target_noise', 0.0) < 0:
            raise ValueError(f'config.target_noise must be >= 0, got {config.target_noise}')
        config = freeze_config(config, ob_dim=int(ex_observations.shape[-1]), action_dim=int(ex_actions.shape[-1]))
        rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
        critic_rng, actor_rng = jax.random.split(init_rng)
        modules = cls.build_modules(config)
        params = {'critic': cls.init_critic_params(modules, critic_rng, ex_observations, ex_actions)}
        params.update(actor.init_actor_params(modules, actor_rng, ex_observations, ex_actions))
        return cls._from_params(rng, params, ('critic',), config)


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


def get_config(variant: str = ''):
    """FQL's published defaults; ``variant='resnet'`` (= 'resnet_depth2x4') and 'resnet_depth4x2' give the
    published FQL-ResNet critics (width 512; 4 blocks of depth 2, or 2 blocks of depth 4), 'resnet_flop_matched'
    the residual critic matched to floq's FLOPs at K = 8 (:func:`matched_resnet_blocks`), and
    ``variant='iqn'`` the implicit-quantile critic (agents/fql_iqn.py)."""
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
        r_min=ml_collections.config_dict.placeholder(float),  # Unused by FQL; set by the trainer for symmetry.
        r_max=ml_collections.config_dict.placeholder(float),
    ))
    if variant in RESNET_SHAPES:
        blocks, depth = RESNET_SHAPES[variant] if variant != 'resnet_flop_matched' else (matched_resnet_blocks(), 2)
        config.update(agent_name='fql_resnet', critic_use_resnet=True, critic_resnet_width=512,
                      critic_resnet_blocks=blocks, critic_resnet_block_depth=depth)
    elif variant == 'iqn':  # the same as --agent=agents/fql_iqn.py
        from agents import fql_iqn
        return fql_iqn.get_config()
    elif variant:
        raise ValueError(f"agents/fql.py: unknown config variant {variant!r} (accepted: '', {', '.join(repr(v) for v in RESNET_SHAPES)} or 'iqn')")
    return config
