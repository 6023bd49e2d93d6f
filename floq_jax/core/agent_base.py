"""The pure-functional agent skeleton shared by floq and FQL.

An agent is a flax ``PyTreeNode``: parameters, target parameters, optimizer state, rng and the update
count are leaves; the (frozen, hashable) config is static.  So an agent can be passed through
``jax.jit``, ``jax.vmap`` (a batch of agents from different seeds), ``lax.scan`` and sharded with
``jax.sharding``; checkpointing it is saving a pytree.

Subclasses supply ``build_modules(config)`` (cached by config), ``total_loss`` and ``create``; the
base class supplies ``update`` (one Adam step on the sum of critic and actor losses, then Polyak
averaging of the target networks from the pre-update parameters, as published) and ``sample_actions``.

What the library asks of an agent beyond training (published per-environment values, FLOPs per update, what the
critic diagnostics probe) are the hooks below with working defaults; an agent file overrides those it knows
(``floq_jax.agent_registry`` documents the whole agent-file contract).
"""

import functools
from typing import Any, ClassVar, Dict, Optional, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from floq_jax.core import actor

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


def compute_dtype(config):
    """The matmul dtype named by ``config.compute_dtype`` (params, losses and targets stay float32)."""
    name = config.get('compute_dtype', 'float32')
    if name not in DTYPES:
        raise ValueError(f"config.compute_dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


@functools.lru_cache(maxsize=None)
def make_optimizer(lr: float) -> optax.GradientTransformation:
    """Adam, as in FQL and floq (one optimizer over all networks)."""
    return optax.adam(learning_rate=lr)


def polyak(params, target_params, tau: float):
    """target <- tau * params + (1 - tau) * target, leaf by leaf."""
    return jax.tree_util.tree_map(lambda p, tp: p * tau + tp * (1.0 - tau), params, target_params)


def freeze_config(config, **derived) -> ml_collections.FrozenConfigDict:
    """A hashable copy of ``config`` with derived entries (e.g. observation/action dims) filled in."""
    d = config.to_dict() if hasattr(config, 'to_dict') else dict(config)
    d.update(derived)
    return ml_collections.FrozenConfigDict(d)


def observation_dims(config, ex_observations) -> dict:
    """The observation sizes a frozen config records: ``ob_dim`` (the last axis), and with ``config.encoder`` also
    ``ob_shape``, one observation's (H, W, C) (the key is absent without an encoder, so state configs are unchanged)."""
    dims = dict(ob_dim=int(ex_observations.shape[-1]))
    if config.get('encoder') is not None:
        dims['ob_shape'] = tuple(int(d) for d in ex_observations.shape[1:])
    return dims


class Agent(flax.struct.PyTreeNode):
    """Base class.  Leaves: params / target_params (dicts of network params), opt_state, rng, step."""

    params: Dict[str, Any]
    target_params: Dict[str, Any]
    opt_state: Any
    rng: jax.Array
    step: jax.Array
    config: Any = flax.struct.field(pytree_node=False)

    # ------------------------------------------------------------------ hooks for subclasses
    @staticmethod
    def build_modules(config) -> Dict[str, Any]:
        raise NotImplementedError

    def total_loss(self, batch, params, rng) -> Tuple[jax.Array, dict]:
        raise NotImplementedError

    # Published per-environment values: {mode: (table, ...)}, each table ((env-name prefix, {key: value}), ...),
    # tried in order, the first matching prefix of a table winning ('offline', 'offline_to_online').
    PUBLISHED: ClassVar[Dict[str, Sequence[tuple]]] = {}

    @classmethod
    def published_tables(cls, config, mode: str) -> Sequence[tuple]:
        """The published per-environment tables of this agent at ``config`` in ``mode`` (() if none)."""
        del config
        return tuple(cls.PUBLISHED.get(mode, ()))

    @classmethod
    def analytic_update_flops(cls, config) -> Optional[int]:
        """FLOPs of one update from the frozen config (ob_dim / action_dim filled in); None: not declared
        (``floq_jax.core.flops.update_flops`` then counts with XLA's cost analysis)."""
        del config
        return None

    def critic_features(self, critic_params, observations, actions):
        """Penultimate critic features (E, B, H) (or (B, H)); agents without them leave this undefined."""
        raise NotImplementedError

    def critic_probe(self, observations, actions, rng) -> Tuple[Dict[str, jax.Array], Dict[str, jax.Array]]:
        """What the critic diagnostics probe (``floq_jax.analysis.diagnostics.critic_diagnostics``):
        ({prefix: penultimate features}, {name: extra scalar}).  Default: the features of ``critic_features`` on
        ``params[CRITIC]`` under prefix '' if the agent defines it, else nothing."""
        del rng
        if type(self).critic_features is Agent.critic_features:
            return {}, {}
        return {'': self.critic_features(self.params[self.CRITIC], observations, actions)}, {}

    # ------------------------------------------------------------------ shared machinery
    @property
    def modules(self) -> Dict[str, Any]:
        return self.build_modules(self.config)

    CRITIC = 'critic'  # the params entry that ``config.freeze_critic_trunk`` freezes (all but its output layer)

    def frozen_update_mask(self, params):
        """A pytree of bools (True = never updated), or None when ``config.freeze_critic_trunk`` is off."""
        if not self.config.get('freeze_critic_trunk', False):
            return None
        mask = jax.tree_util.tree_map(lambda _: False, params)
        mask[self.CRITIC] = jax.tree_util.tree_map_with_path(
            lambda path, _: not any(getattr(k, 'key', None) == 'output' for k in path), params[self.CRITIC])
        return mask

    @classmethod
    def _from_params(cls, rng, params, target_names, config):
        opt_state = make_optimizer(config.lr).init(params)
        target_params = {name: params[name] for name in target_names}
        return cls(params=params, target_params=target_params, opt_state=opt_state, rng=rng,
                   step=jnp.zeros((), jnp.int32), config=config)

    @jax.jit
    def update(self, batch):
        """One gradient step on ``batch`` (dict of (B, ...) arrays). Returns (new agent, info dict of scalars)."""
        new_rng, loss_rng = jax.random.split(self.rng)
        grads, info = jax.grad(lambda p: self.total_loss(batch, p, loss_rng), has_aux=True)(self.params)
        tx = make_optimizer(self.config.lr)
        updates, opt_state = tx.update(grads, self.opt_state, self.params)
        mask = self.frozen_update_mask(self.params)
        if mask is not None:
            updates = jax.tree_util.tree_map(lambda u, m: jnp.where(m, jnp.zeros_like(u), u), updates, mask)
        params = optax.apply_updates(self.params, updates)
        # Polyak averaging of the pre-update parameters, as the published floq and FQL code do (their
        # target_update reads the network's parameters from before apply_loss_fn).
        target_params = {name: polyak(self.params[name], self.target_params[name], self.config.tau)
                         for name in self.target_params}
        info['grad_norm'] = optax.tree.norm(grads)
        return self.replace(params=params, target_params=target_params, opt_state=opt_state, rng=new_rng,
                            step=self.step + 1), info

    @jax.jit
    def sample_actions(self, observations, seed=None, temperature=1.0):
        """Actions (..., A) in [-1, 1] from the one-step policy for observations (..., O).

        ``temperature`` scales the policy's input noise (1: FQL's sampling; 0: deterministic).
        """
        seed = self.rng if seed is None else seed
        return actor.one_step_actions(self.modules, self.params, observations, seed, temperature)
