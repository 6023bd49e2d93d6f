"""FQL's actor, shared by every agent: a BC flow policy and a one-step policy distilled from it and
pushed up a critic.

The BC flow policy is trained by flow matching on dataset actions and integrated with
``config.actor_flow_steps`` Euler steps (the same ``lax.scan`` integrator as the critic).  The one-step
policy maps (s, noise) to an action in one forward pass; its loss is
``bc_flow_loss + alpha * ||pi(s, n) - flow(s, n)||^2 - Q(s, pi(s, n))`` (Q optionally normalised).
"""

from typing import Callable, Dict, Tuple

import jax
import jax.numpy as jnp

from floq_jax.core import flow
from floq_jax.core.encoders import Encoded, batch_shape, encode, with_encoder
from floq_jax.core.networks import ActorVectorField

QFn = Callable[[jax.Array, jax.Array], jax.Array]


def build_actor_modules(config, action_dim: int, dtype) -> Dict[str, ActorVectorField]:
    """The two actor networks: 'actor_bc_flow' (velocity over actions) and 'actor_onestep_flow'; with
    ``config.encoder`` each behind its own pixel encoder (as published)."""
    make = lambda: with_encoder(ActorVectorField(tuple(config.actor_hidden_dims), action_dim, config.actor_layer_norm,
                                                 dtype), config.get('encoder'))
    return {'actor_bc_flow': make(), 'actor_onestep_flow': make()}


def init_actor_params(modules, rng, ex_observations, ex_actions) -> dict:
    """Parameters of both actor networks from example inputs (B, O), (B, A)."""
    bc_rng, os_rng = jax.random.split(rng)
    return {
        'actor_bc_flow': modules['actor_bc_flow'].init(bc_rng, ex_observations, ex_actions,
                                                       ex_actions[..., :1])['params'],
        'actor_onestep_flow': modules['actor_onestep_flow'].init(os_rng, ex_observations, ex_actions)['params'],
    }


def flow_actions(modules, params, observations, noises, num_steps: int) -> jax.Array:
    """Integrate the BC flow policy from noises (B, A) over ``num_steps`` Euler steps -> actions (B, A) in [-1, 1].
    Behind an encoder, the frames are encoded once (by the BC policy's own encoder, as published)."""
    bc = modules['actor_bc_flow']
    features = encode(bc, params['actor_bc_flow'], observations)
    encoded = {'encoded': True} if isinstance(bc, Encoded) else {}

    def velocity(t, x):
        return bc.apply({'params': params['actor_bc_flow']}, features, x, jnp.full((*x.shape[:-1], 1), t), **encoded)

    return jnp.clip(flow.euler_integrate(velocity, noises, num_steps), -1.0, 1.0)


def one_step_actions(modules, params, observations, rng, temperature=1.0) -> jax.Array:
    """Actions from the one-step policy: pi(s, temperature * n), n ~ N(0, I); observations (..., O) -> (..., A).

    temperature=1 samples as FQL does; temperature=0 is the deterministic action pi(s, 0).
    """
    policy = modules['actor_onestep_flow']
    action_dim = (policy.net if isinstance(policy, Encoded) else policy).action_dim
    noises = jax.random.normal(rng, (*batch_shape(policy, observations), action_dim)) * temperature
    actions = modules['actor_onestep_flow'].apply({'params': params['actor_onestep_flow']}, observations, noises)
    return jnp.clip(actions, -1.0, 1.0)


def actor_loss(modules, params, batch, rng, q_fn: QFn, config) -> Tuple[jax.Array, dict]:
    """FQL's actor loss.

    Args:
      modules, params: the actor modules and the full parameter dict (gradients flow into the two
        actor entries; the caller's ``q_fn`` must stop gradients into critic parameters).
      batch: 'observations' (B, O), 'actions' (B, A).
      q_fn: (observations (B, O), actions (B, A)) -> Q (B,), differentiable w.r.t. actions.
    """
    observations, actions = batch['observations'], batch['actions']
    batch_size, action_dim = actions.shape
    x_rng, t_rng, noise_rng, sample_rng = jax.random.split(rng, 4)

    # BC flow matching on dataset actions.
    x0 = jax.random.normal(x_rng, (batch_size, action_dim))
    t = jax.random.uniform(t_rng, (batch_size, 1))
    x_t, target_velocity = flow.interpolate(x0, actions, t)
    pred = modules['actor_bc_flow'].apply({'params': params['actor_bc_flow']}, observations, x_t, t)
    bc_flow_loss = jnp.mean((pred - target_velocity) ** 2)

    # Distil the (gradient-free) BC flow into the one-step policy.
    noises = jax.random.normal(noise_rng, (batch_size, action_dim))
    target_actions = jax.lax.stop_gradient(
        flow_actions(modules, params, observations, noises, config.actor_flow_steps))
    policy_actions = modules['actor_onestep_flow'].apply({'params': params['actor_onestep_flow']},
                                                         observations, noises)
    distill_loss = jnp.mean((policy_actions - target_actions) ** 2)

    # Push the one-step policy up the critic.
    q = q_fn(observations, jnp.clip(policy_actions, -1.0, 1.0))
    q_loss = -q.mean()
    if config.normalize_q_loss:
        q_loss = q_loss * jax.lax.stop_gradient(1.0 / jnp.abs(q).mean())

    loss = bc_flow_loss + config.alpha * distill_loss + q_loss
    sampled = one_step_actions(modules, params, observations, sample_rng)
    return loss, {
        'actor_loss': loss,
        'bc_flow_loss': bc_flow_loss,
        'distill_loss': distill_loss,
        'q_loss': q_loss,
        'q': q.mean(),
        'mse': jnp.mean((sampled - actions) ** 2),
    }
