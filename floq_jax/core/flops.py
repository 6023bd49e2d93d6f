"""FLOP counts of an update: analytic (exact for the matmuls) and from XLA's cost analysis.

XLA's cost analysis counts a ``lax.scan`` body once, whatever the trip count, so for K-step
integrations the analytic count is the one to report; at K = 1 the two agree (tested).
Convention: a multiply-add is 2 FLOPs; elementwise ops, LayerNorm and the embeddings are ignored
(they are < 1% at the default sizes).
"""

from typing import Sequence

import jax


def dense_flops(fan_in: int, fan_out: int) -> int:
    """FLOPs of one row through a Dense layer (matmul only)."""
    return 2 * fan_in * fan_out


def mlp_flops(input_dim: int, hidden_dims: Sequence[int], output_dim: int) -> int:
    """FLOPs of one row through an MLP: input -> hidden... -> output."""
    dims = [input_dim, *hidden_dims, output_dim]
    return sum(dense_flops(a, b) for a, b in zip(dims[:-1], dims[1:]))


def resmlp_flops(input_dim: int, width: int, num_blocks: int, block_depth: int, output_dim: int) -> int:
    """FLOPs of one row through :class:`floq_jax.core.networks.ResMLP`."""
    return (dense_flops(input_dim, width) + num_blocks * block_depth * dense_flops(width, width)
            + dense_flops(width, output_dim))


def velocity_net_flops(config) -> int:
    """Forward FLOPs of one row through one member of floq's velocity field."""
    z_dim = config.num_bins - 1 if config.use_prob_embed else 1
    t_dim = config.time_embed_dim if config.time_embedding == 'fourier' else 1
    in_dim = config.ob_dim + config.action_dim + z_dim + t_dim
    if config.use_resnets:
        return resmlp_flops(in_dim, config.block_width, config.num_transformations, config.block_depth, 1)
    return mlp_flops(in_dim, (config.block_width,) * config.block_depth, 1)


def _actor_flops(config, batch: int) -> int:
    """BC flow (fwd + bwd = 3x fwd), 10-step flow integration, one-step policy (3x) and its sample."""
    actor = mlp_flops(config.ob_dim + config.action_dim + 1, config.actor_hidden_dims, config.action_dim)
    return batch * actor * (3 + config.actor_flow_steps + 3 + 1)


def floq_update_flops(config) -> int:
    """Analytic FLOPs of one update of a flow critic with FQL's actor and a distilled critic, the config keys of
    agents/floq.py (a frozen agent config with ob_dim/action_dim filled in)."""
    rows = config.batch_size * config.noise_samples
    members = config.flow_num_ensembles
    v = velocity_net_flops(config)
    integrations = 2 if config.use_distilled_critic else 1
    flops = integrations * config.critic_flow_steps * rows * members * v  # TD target (+ distillation target)
    flops += 3 * rows * members * v                                          # flow-matching loss fwd + bwd
    next_action = mlp_flops(config.ob_dim + config.action_dim, config.actor_hidden_dims, config.action_dim)
    flops += rows * next_action                                              # a' for the TD target
    if config.use_distilled_critic:
        q = mlp_flops(config.ob_dim + config.action_dim, config.value_hidden_dims, 1)
        flops += config.distill_num_ensembles * config.batch_size * q * (3 + 3)  # distill loss + actor's Q
    else:
        flops += 3 * config.critic_flow_steps * config.batch_size * members * v  # actor's Q through the flow
    return flops + _actor_flops(config, config.batch_size)


def fql_update_flops(config) -> int:
    """Analytic FLOPs of one update of a scalar (MLP or residual) critic ensemble with FQL's actor, the config keys
    of agents/fql.py."""
    in_dim = config.ob_dim + config.action_dim
    if config.critic_use_resnet:
        q = resmlp_flops(in_dim, config.critic_resnet_width, config.critic_resnet_blocks,
                         config.critic_resnet_block_depth, 1)
    else:
        q = mlp_flops(in_dim, config.value_hidden_dims, 1)
    next_action = mlp_flops(in_dim, config.actor_hidden_dims, config.action_dim)
    b = config.batch_size
    return config.num_ensembles * b * q * (1 + 3 + 3) + b * next_action + _actor_flops(config, b)


def update_flops(agent, batch=None) -> float:
    """FLOPs of one update of ``agent``: the analytic count its class declares
    (``analytic_update_flops(config)``), else XLA's cost analysis of its update on ``batch`` (default: zeros of the
    config's batch size, :func:`example_batch`).  Scan bodies count once in XLA's count: exact only for agents whose
    update has no K-step loop (declare an analytic count for those)."""
    flops = type(agent).analytic_update_flops(agent.config)
    if flops is not None:
        return flops
    return xla_update_flops(agent, example_batch(agent) if batch is None else batch)


def example_batch(agent) -> dict:
    """A batch of zeros with the standard keys at the agent's config sizes (batch_size, ob_dim, action_dim), or,
    for an agent vmapped over seeds, the same per seed."""
    import jax.numpy as jnp

    c = agent.config
    b = int(c.batch_size)
    if c.get('ob_shape') is not None:  # pixels (config.encoder): uint8 frames
        obs = jnp.zeros((b, *c.ob_shape), jnp.uint8)
    else:
        obs = jnp.zeros((b, c.ob_dim))
    return {'observations': obs, 'actions': jnp.zeros((b, c.action_dim)),
            'next_observations': obs, 'rewards': jnp.zeros((b,)), 'masks': jnp.ones((b,))}


def xla_update_flops(agent, batch) -> float:
    """FLOPs of one update from XLA's cost analysis (scan bodies counted once: exact only at K = 1)."""
    compiled = jax.jit(type(agent).update).lower(agent, batch).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis['flops'])
