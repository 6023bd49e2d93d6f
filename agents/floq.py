"""floq: a flow-matching critic (velocity field integrated with K Euler steps) with FQL's actor.

Q(s, a) = z_K where z_0 ~ Unif[l, u] and z_{k+1} = z_k + v(k/K, z_k | s, a) / K.  The velocity field
is trained by conditional flow matching on the straight line from z_0 to the TD target
y = r + gamma * mask * Q_target(s', a'), with Q_target integrated through the Polyak-averaged target
velocity field and a' from the one-step policy.  A distilled scalar critic (an ensemble of plain MLPs
regressed onto the flow critic's integrated estimate) serves the actor by default.

Cost at the default config (B = 256, noise_samples 8, K = 8, E = 2, O + A = 33, 4 x 512 velocity
net): one velocity-net evaluation of one row costs 2 * (84*512 + 3*512*512 + 512) = 1.66 MFLOP per
member; each K-step integration over 256 * 8 = 2048 rows through both members costs
K * 2048 * 2 * 1.66 MFLOP = 54.5 GFLOP, and an update does two (the TD target through the target
field, the distillation target through the current field): ~109 GFLOP, ~145 GFLOP with the
flow-matching loss's forward/backward and the actor.  ``FloqAgent.analytic_update_flops`` declares the analytic
count (``floq_jax.core.flops.floq_update_flops``, what ``floq_jax.core.flops.update_flops`` reports);
``floq_jax.core.flops.xla_update_flops`` counts from XLA's cost analysis (the K-step scan body once).
"""

import dataclasses
import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections

from floq_jax import agent_registry as accepts
from floq_jax.analysis import diagnostics
from floq_jax.core import actor, flow
from floq_jax.core.flops import floq_update_flops
from floq_jax.core.agent_base import Agent, compute_dtype, freeze_config, observation_dims
from floq_jax.core.encoders import ENCODERS, Encoded, encode, with_encoder
from floq_jax.core.networks import EnsembleValue, TrunkSpec, VelocityField
from floq_jax.core.target_noise import NOISE_STREAM, TARGET_NOISE_DISTS, sample_target_noise

Q_AGGREGATES = ('mean', 'min')

# (env-name prefix, overrides); the first matching prefix wins, so longer prefixes come first.
# floq, offline (floq README, "floq-best" where it lists two commands).
PUBLISHED_OFFLINE: tuple = (
    ('antmaze-large', dict(alpha=10.0)),
    ('antmaze-giant', dict(discount=0.995, q_agg='min', batch_size=512, alpha=10.0, critic_flow_steps=4)),
    ('humanoidmaze-medium', dict(discount=0.995, alpha=30.0)),
    ('humanoidmaze-large', dict(discount=0.995, batch_size=512, alpha=20.0)),
    ('antsoccer-arena', dict(discount=0.995, alpha=10.0)),
    ('cube-single', dict(alpha=300.0, block_depth=2)),
    ('cube-double', dict(alpha=300.0, block_depth=2)),
    ('scene', dict(alpha=300.0)),
    ('puzzle-3x3', dict(alpha=1000.0)),
    ('puzzle-4x4', dict(alpha=1000.0, noise_coverage=0.25)),
)

# floq, offline-to-online (floq README: 1M offline + 2M online steps).
PUBLISHED_O2O: tuple = (
    ('antmaze-large', dict(alpha=10.0)),
    ('antmaze-giant', dict(discount=0.995, q_agg='min', batch_size=512, alpha=10.0, critic_flow_steps=4)),
    ('humanoidmaze-medium', dict(discount=0.995, alpha=30.0)),
    ('humanoidmaze-large', dict(discount=0.995, batch_size=512, alpha=20.0, critic_flow_steps=16)),
    ('antsoccer-arena', dict(discount=0.995, alpha=30.0)),
    ('cube-single', dict(alpha=300.0, block_depth=2)),
    ('cube-double', dict(alpha=300.0, block_depth=2)),
    ('scene', dict(alpha=300.0)),
    ('puzzle-3x3', dict(alpha=1000.0)),
    ('puzzle-4x4', dict(alpha=1000.0, noise_coverage=0.25)),
)


@dataclasses.dataclass(frozen=True)
class Mechanisms:
    """floq's mechanism switches, in one place: the ablations of "what does flow matching bring to TD learning".
    Every switch is a config key (so run directories record it); at the published defaults each is as the published
    floq code has it (the distilled critic on, the others off), and a config written before a switch existed reads
    as its default (:meth:`of`).  experiments/mechanisms.py runs the ablations (its parts (a)-(d)).

    Sources: the floq papers as the project's copy of their blog post has them ("What Does Flow-Matching Bring to
    Deep RL?"; its sections are cited by heading, its displayed equations by formula: the post numbers neither), and
    the published code, CMU-AIRe/floq ``agents/floq.py`` (its ``critic_loss``, ``actor_loss`` and config comments).
    Switches the published code lacks are marked so.  The published update, in the post's notation (section
    "Training: The Flow-Matching Loss"): the TD target y = r + gamma * Q_old(s', a'), Q_old itself the K-step
    integration of the old velocity field; the interpolant z(t) = (1 - t) z + t y from noise z ~ Unif[l, u]; the loss
    E_{t, z} || v_theta(t, z(t) | s, a) - (y - z) ||^2 with t ~ U(0, 1); and (section "The Idea: Flow-Matching
    Q-Functions") Q(s, a) = z_K by K Euler steps z_{k+1} = z_k + (1/K) v_theta(k/K, z_k | s, a) of one network.

    ``use_distilled_critic`` (default on, as published): a scalar critic ensemble is regressed onto the flow critic's
        integrated estimate, the published ``critic_loss``'s ``distilled_critic_loss = (q - mean_current_returns)^2``
        ("compute current returns (used for distillation)": the K-step returns averaged over noise samples and
        ensemble members), and the actor's Q term reads that critic (``actor_loss``: ``network.select('critic')``).
        The post does not describe it.  Off: the actor differentiates through the K-step flow critic (not in the
        published code).
    ``distributional`` (default off; not in the published code): each noise sample's flow-matching target is its own
        TD target r + gamma * mask * z_K^(j) instead of the one expected target y (the published ``target_returns``
        is the mean over the noise samples).  Tests the post's "Takeaways": "Flow-matching in RL is not about
        modeling distributions" (experiments/mechanisms.py part (a), beside FQL's IQN critic).
    ``predict_final`` (default off; not in the published code): the network's output is regressed onto the final
        value y instead of the velocity y - z of the loss above, and each step is re-anchored at the initial noise
        z_0: z_{k+1} = (1 - t_{k+1}) z_0 + t_{k+1} p_k (:meth:`FloqAgent.integrate`).  Part (b): whether
        integrating a velocity field, rather than predicting the value at every step, is what helps.
    ``stale_steps`` = m > 0 (default 0; not in the published code): the first m of the K Euler steps go through a
        stale copy of the field (hard-copied while step + 1 < ``stale_copy_until``, frozen afterwards), the rest
        through the live one, where the post's integration applies the same network at every step (section "Why It
        Works: Iterative Compute and Plastic Features": "The same network v_theta is applied at each step with
        different inputs").  Part (c): whether later steps of the live field recover from early errors.
    ``target_noise`` > 0 (default 0; not in the published code): noise of that magnitude (``target_noise_dist``) on
        every regression target.  Tests the post's "Takeaways": "Dense supervision at every integration step
        produces plastic features that handle non-stationary TD targets gracefully" (also "Why It Works"); part
        (d), beside the same noise on FQL's targets.
    ``train_at_zero_only`` (default off, as published): the published ``critic_loss``'s switch, t = 0 for every
        sample instead of t ~ U(0, 1) (the post's "Forward and Backward", step 2), so the field is trained only
        where the integration starts; its config comment: "Whether to train a one-step flow, set
        critic_flow_steps=1 if using this flag" (required here: ``_checked``).
    """

    use_distilled_critic: bool = True
    distributional: bool = False
    predict_final: bool = False
    stale_steps: int = 0
    target_noise: float = 0.0
    target_noise_dist: str = 'uniform'
    train_at_zero_only: bool = False

    @classmethod
    def of(cls, config) -> 'Mechanisms':
        """The switches of ``config`` (keys it lacks read as their defaults above)."""
        return cls(**{f.name: config.get(f.name, f.default) for f in dataclasses.fields(cls)})


def _aggregate(values, how):
    """Reduce the leading ensemble axis: (E, ...) -> (...)."""
    return values.min(axis=0) if how == 'min' else values.mean(axis=0)


class FloqAgent(Agent):
    """floq agent.  params: 'critic_flow', 'distill_critic' (if used), 'actor_bc_flow', 'actor_onestep_flow'."""

    CRITIC = 'critic_flow'  # what config.freeze_critic_trunk freezes (all but the velocity net's output layer)
    PUBLISHED = {'offline': (PUBLISHED_OFFLINE,), 'offline_to_online': (PUBLISHED_O2O, PUBLISHED_OFFLINE)}

    @classmethod
    def analytic_update_flops(cls, config):
        """FLOPs of one update, counted analytically (XLA's cost analysis counts the K-step scan body once); None
        with a pixel encoder (the count has no convolutions)."""
        return None if config.get('encoder') is not None else floq_update_flops(config)

    def critic_probe(self, observations, actions, rng):
        """What the critic diagnostics probe: the velocity net's features at (t_k, z_k), taken at a random step k
        of each row's actual integration path (current field, K = config.critic_flow_steps), the path's
        straightness and velocity spread, q_change between K and 2K steps, and the distilled critic's features if
        it exists (prefix ``distill/``)."""
        num_steps = self.config.critic_flow_steps
        path_rng, step_rng, q_rng = jax.random.split(rng, 3)
        path = self.flow_paths(observations, actions, num_steps=num_steps, seed=path_rng)  # (K+1, E, B)
        k = jax.random.randint(step_rng, (observations.shape[0],), 0, num_steps)
        z = jnp.take_along_axis(path[:-1], k[None, None, :], axis=0)[0]  # (E, B)
        t = k.astype(jnp.float32) / num_steps
        _, features = self.modules['critic_flow'].apply({'params': self.params['critic_flow']}, observations,
                                                        actions, z, t, return_features=True)
        out = {'': features}
        if 'distill_critic' in self.params:
            out['distill/'] = self.modules['distill_critic'].apply(
                {'params': self.params['distill_critic']}, observations, actions, return_features=True)[1]
        return out, {'straightness': diagnostics.straightness(path),
                     'velocity_spread': diagnostics.velocity_spread(path),
                     'q_change': diagnostics.q_change(self, observations, actions, num_steps, q_rng)}

    # Stale copies for ``config.stale_steps > 0``: {'critic_flow': stale current field,
    # 'target_critic_flow': stale target field}; None otherwise.  Hard-copied from the pre-update
    # fields at every update while step + 1 < config.stale_copy_until, frozen afterwards.
    stale_params: Optional[Any] = None

    # ------------------------------------------------------------------ networks
    @staticmethod
    @functools.lru_cache(maxsize=None)
    def build_modules(config):
        dtype = compute_dtype(config)
        velocity_trunk = TrunkSpec(hidden_dims=(config.block_width,) * config.block_depth,
                                   layer_norm=config.layer_norm, use_resnet=config.use_resnets,
                                   width=config.block_width, num_blocks=config.num_transformations,
                                   block_depth=config.block_depth)
        # With config.encoder, the velocity field, the distilled critic and both actors each have their own pixel
        # encoder (as published); the target field is the Polyak copy of the field, its encoder included.
        encoder = config.get('encoder')
        modules = {
            'critic_flow': with_encoder(VelocityField(
                trunk=velocity_trunk, num_ensembles=config.flow_num_ensembles, q_min=config.q_min,
                q_max=config.q_max, use_prob_embed=config.use_prob_embed, num_bins=config.num_bins,
                sigma=config.sigma, time_embed=config.time_embedding, time_embed_dim=config.time_embed_dim,
                dtype=dtype, ensemble_apply=config.ensemble_apply), encoder),
            **actor.build_actor_modules(config, config.action_dim, dtype),
        }
        if config.use_distilled_critic:
            modules['distill_critic'] = with_encoder(EnsembleValue(
                trunk=TrunkSpec(hidden_dims=tuple(config.value_hidden_dims), layer_norm=config.layer_norm),
                num_ensembles=config.distill_num_ensembles, dtype=dtype, ensemble_apply=config.ensemble_apply),
                encoder)
        return modules

    def field_features(self, critic_params, observations):
        """What the velocity net reads for ``observations``: the frames encoded by ``critic_params``' encoder
        (with ``config.encoder``), else the observations themselves."""
        return encode(self.modules['critic_flow'], critic_params, observations)

    # ------------------------------------------------------------------ flow critic
    def integrate(self, critic_params, observations, actions, z0, num_steps, first_step=0, last_step=None,
                  return_path=False, anchor=None, encoded=False):
        """Euler-integrate the velocity field from z0 (N,) or (E, N) for rows (N, O), (N, A) -> z (E, N)
        [, path (S, E, N)], over steps [first_step, last_step) of the K-step grid.

        With ``config.predict_final`` the network's output p_k is an estimate of the final value, and a
        step follows the published floq_predict_final update z_{k+1} = (1 - t_{k+1}) z_0 + t_{k+1} p_k
        (re-anchored at the initial noise z_0 = ``anchor``, default z0; needed when first_step > 0),
        written as the velocity K (z_{k+1} - z_k) so the same Euler integrator and step split apply.

        Behind an encoder the frames are encoded once, by ``critic_params``' encoder, before the K steps
        (``encoded=True``: ``observations`` are already those features).
        """
        field = self.modules['critic_flow']
        if not encoded:
            observations = self.field_features(critic_params, observations)
        skip = {'encoded': True} if isinstance(field, Encoded) else {}
        members = self.config.flow_num_ensembles
        widen = lambda x: x if x.ndim == 2 else jnp.broadcast_to(x, (members, *x.shape))
        z0 = widen(z0)

        if Mechanisms.of(self.config).predict_final:
            if anchor is None and first_step > 0:
                raise ValueError('integrate: predict_final needs the initial noise (anchor) when first_step > 0')
            anchor = z0 if anchor is None else widen(anchor)

            def velocity(t, z):
                pred = field.apply({'params': critic_params}, observations, actions, z, t, **skip)
                t_next = t + 1.0 / num_steps
                return num_steps * ((1.0 - t_next) * anchor + t_next * pred - z)
        else:
            def velocity(t, z):
                return field.apply({'params': critic_params}, observations, actions, z, t, **skip)

        return flow.euler_integrate(velocity, z0, num_steps, first_step, last_step, return_path)

    def critic_integrate(self, critic_params, stale_params, observations, actions, z0, num_steps, encoded=False):
        """z_K (E, N) from z0 (N,): the first ``min(config.stale_steps, K)`` steps through ``stale_params``
        (if given and stale_steps > 0), the rest through ``critic_params`` (two calls of integrate).
        ``encoded=True`` (``observations`` are ``critic_params``' features) only without a stale split."""
        m = min(int(Mechanisms.of(self.config).stale_steps), num_steps)
        if stale_params is None or m == 0:
            # (``encoded`` only when set, so an agent file overriding integrate without it keeps working)
            return self.integrate(critic_params, observations, actions, z0, num_steps,
                                  **({'encoded': True} if encoded else {}))
        if encoded:
            raise ValueError('critic_integrate: a stale split needs the raw observations (two encoders)')
        z_mid = self.integrate(stale_params, observations, actions, z0, num_steps, 0, m)
        return self.integrate(critic_params, observations, actions, z_mid, num_steps, m, num_steps, anchor=z0)

    def _stale(self, name):
        """The stale copy of 'critic_flow' (current) or 'target_critic_flow', or None when unused."""
        return None if self.stale_params is None else self.stale_params[name]

    def sample_z0(self, rng, shape):
        return flow.sample_noise(rng, shape, self.config.noise_min, self.config.noise_max)

    @functools.partial(jax.jit, static_argnames=('num_steps', 'num_noise_samples', 'params_name'))
    def q_values(self, observations, actions, num_steps=None, seed=None, num_noise_samples=None,
                 params_name='current'):
        """Q(s, a) of the flow critic: observations (B, O), actions (B, A) -> (B,).

        Integrates ``num_steps`` Euler steps (default ``config.critic_flow_steps``; any K works at test
        time) from ``num_noise_samples`` noises per row (default ``config.noise_samples``) and averages
        over noises and ensemble members.  ``params_name='target'`` uses the target velocity field.
        """
        num_steps = num_steps or self.config.critic_flow_steps
        n = num_noise_samples or self.config.noise_samples
        seed = self.rng if seed is None else seed
        params = self.target_params['critic_flow'] if params_name == 'target' else self.params['critic_flow']
        stale = self._stale('target_critic_flow' if params_name == 'target' else 'critic_flow')
        batch = observations.shape[0]
        z0 = self.sample_z0(seed, (batch * n,))
        z = self.critic_integrate(params, stale, jnp.repeat(observations, n, axis=0), jnp.repeat(actions, n, axis=0),
                                  z0, num_steps)
        return z.reshape(z.shape[0], batch, n).mean(axis=(0, 2))

    @functools.partial(jax.jit, static_argnames=('num_steps',))
    def flow_paths(self, observations, actions, num_steps=None, seed=None):
        """The integration path of every member: (B, O), (B, A) -> (K + 1, E, B), z_0 first (current field
        only, no stale split)."""
        num_steps = num_steps or self.config.critic_flow_steps
        seed = self.rng if seed is None else seed
        z0 = self.sample_z0(seed, (observations.shape[0],))
        _, path = self.integrate(self.params['critic_flow'], observations, actions, z0, num_steps, return_path=True)
        start = jnp.broadcast_to(z0, path.shape[1:])[None]
        return jnp.concatenate([start, path], axis=0)

    # ------------------------------------------------------------------ losses
    def critic_loss(self, batch, params, rng):
        """Flow-matching TD loss (+ distillation of the integrated estimate into the scalar critic).

        The mechanism switches it reads are :class:`Mechanisms` (documented there).
        """
        config, switches = self.config, Mechanisms.of(self.config)
        observations, actions = batch['observations'], batch['actions']
        batch_size = observations.shape[0]
        n, num_steps, num_members = config.noise_samples, config.critic_flow_steps, config.flow_num_ensembles
        repeat = lambda x: jnp.repeat(x, n, axis=0)  # (B, ...) -> (B * n, ...), row i * n + j = x[i]
        obs_n, act_n, next_obs_n = repeat(observations), repeat(actions), repeat(batch['next_observations'])
        action_rng, next_noise_rng, noise_rng, t_rng = jax.random.split(rng, 4)
        frozen = jax.lax.stop_gradient(params)
        # The velocity field's inputs: with an encoder, each of the B frames is encoded once (by the target field's
        # encoder for s', the current one's for s, gradients reaching it through the flow-matching loss) and the
        # features repeated n times; without, the repeated observations themselves (field_features is identity).
        pixels = isinstance(self.modules['critic_flow'], Encoded)
        features_n = repeat(self.field_features(params['critic_flow'], observations))
        pre_encoded = pixels and self.stale_params is None  # with a stale split, each field encodes its own
        next_field_obs = (repeat(self.field_features(self.target_params['critic_flow'], batch['next_observations']))
                          if pre_encoded else next_obs_n)

        # TD target: y = r + gamma * mask * Q_target(s', a'), averaged over n noises -> (B,).
        next_actions = actor.one_step_actions(self.modules, frozen, next_obs_n, action_rng)
        next_z = self.critic_integrate(self.target_params['critic_flow'], self._stale('target_critic_flow'),
                                       next_field_obs, next_actions, self.sample_z0(next_noise_rng, (batch_size * n,)),
                                       num_steps, encoded=pre_encoded)
        next_q = _aggregate(next_z, config.q_agg).reshape(batch_size, n)
        noise_targets = batch['rewards'][:, None] + config.discount * batch['masks'][:, None] * next_q  # (B, n)
        if switches.distributional:
            # Distributional floq: noise j's flow-matching target is its own r + gamma * mask * z_K^(j).
            row_targets = jax.lax.stop_gradient(noise_targets.reshape(batch_size * n))
            targets = row_targets.reshape(batch_size, n).mean(axis=1)
        else:
            targets = noise_targets.mean(axis=1)
            targets = jax.lax.stop_gradient(targets)
            row_targets = repeat(targets)

        # Conditional flow matching on the line from z0 to y, t ~ U(0, 1) (or t = 0 only).
        z0 = self.sample_z0(noise_rng, (batch_size * n,))
        t = (jnp.zeros((batch_size * n,)) if switches.train_at_zero_only
             else jax.random.uniform(t_rng, (batch_size * n,)))
        z_t, target_velocity = flow.interpolate(z0, row_targets, t)
        # The regression target: the velocity y - z0, or y itself with predict_final (the net reads as y).
        regression_target = row_targets if switches.predict_final else target_velocity
        pred = self.modules['critic_flow'].apply({'params': params['critic_flow']}, features_n, act_n,
                                                 jnp.broadcast_to(z_t, (num_members, batch_size * n)), t,
                                                 **({'encoded': True} if pixels else {}))
        if switches.target_noise:
            # Independent noise per member, row and noise sample, on the regression target (as published).
            regression_target = regression_target + sample_target_noise(
                jax.random.fold_in(rng, NOISE_STREAM), pred.shape, switches.target_noise, switches.target_noise_dist)
        flow_loss = ((pred - regression_target) ** 2).reshape(num_members, batch_size, n).sum(axis=-1)  # (E, B)
        loss = flow_loss.mean()
        info = {'flow_loss': flow_loss.mean(), 'target_q': targets.mean()}
        if switches.distributional:
            info['target_q_noise_var'] = noise_targets.var(axis=1).mean()

        if switches.use_distilled_critic:
            current = self.critic_integrate(frozen['critic_flow'], self._stale('critic_flow'),
                                            jax.lax.stop_gradient(features_n) if pre_encoded else obs_n, act_n, z0,
                                            num_steps, encoded=pre_encoded)  # (E, B * n)
            current = current.reshape(num_members, batch_size, n)
            current_q = current.mean(axis=(0, 2))
            q = self.modules['distill_critic'].apply({'params': params['distill_critic']}, observations, actions)
            distill_loss = ((q - current_q) ** 2).mean()
            loss = loss + distill_loss
            info.update(distill_loss=distill_loss, q=q.mean(), flow_q=current_q.mean(),
                        flow_q_noise_var=current.mean(axis=0).var(axis=-1).mean(),
                        td_error=((current_q - targets) ** 2).mean())
        info['critic_loss'] = loss
        return loss, info

    def actor_q_fn(self, params, rng):
        """Q used by the actor (gradients reach the actions only): the distilled critic, or the flow critic."""
        frozen = jax.lax.stop_gradient(params)
        if Mechanisms.of(self.config).use_distilled_critic:
            return lambda o, a: self.modules['distill_critic'].apply({'params': frozen['distill_critic']}, o, a).mean(0)

        def flow_q(o, a):
            z = self.critic_integrate(frozen['critic_flow'], self._stale('critic_flow'), o, a,
                                      self.sample_z0(rng, (o.shape[0],)), self.config.critic_flow_steps)
            return z.mean(axis=0)

        return flow_q

    def total_loss(self, batch, params, rng):
        critic_rng, actor_rng, q_rng = jax.random.split(rng, 3)
        critic_loss, critic_info = self.critic_loss(batch, params, critic_rng)
        actor_loss, actor_info = actor.actor_loss(self.modules, params, batch, actor_rng,
                                                  self.actor_q_fn(params, q_rng), self.config)
        info = {f'critic/{k}': v for k, v in critic_info.items()}
        info.update({f'actor/{k}': v for k, v in actor_info.items()})
        return critic_loss + actor_loss, info

    @jax.jit
    def update(self, batch):
        """The shared update; with stale_steps > 0 also refresh the stale copies (hard copy of the
        pre-update current and target fields while step + 1 < config.stale_copy_until)."""
        agent, info = Agent.update(self, batch)
        if self.stale_params is None:
            return agent, info
        refresh = self.step + 1 < self.config.stale_copy_until
        fresh = {'critic_flow': self.params['critic_flow'], 'target_critic_flow': self.target_params['critic_flow']}
        stale = jax.tree_util.tree_map(lambda f, s: jnp.where(refresh, f, s), fresh, self.stale_params)
        info['stale_refreshed'] = refresh.astype(jnp.float32)
        return agent.replace(stale_params=stale), info

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, seed, ex_observations, ex_actions, config):
        """A new agent.  ``config`` must carry the dataset's reward range (``r_min``, ``r_max``).

        seed: int (or traced int32, so ``jax.vmap(lambda s: FloqAgent.create(s, ...))`` makes many).
        ex_observations (B, O), ex_actions (B, A): example inputs fixing the shapes.
        """
        config = _checked(config)
        q_min, q_max = flow.q_value_bounds(config.r_min, config.r_max, config.discount, config.reward_offset)
        noise_min, noise_max = flow.noise_interval(config.r_min, config.r_max, config.discount,
                                                   config.noise_coverage)
        config = freeze_config(config, **observation_dims(config, ex_observations), action_dim=int(ex_actions.shape[-1]),
                               q_min=float(q_min), q_max=float(q_max), noise_min=float(noise_min),
                               noise_max=float(noise_max))
        rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
        modules = cls.build_modules(config)
        critic_rng, distill_rng, actor_rng = jax.random.split(init_rng, 3)
        batch = ex_observations.shape[0]
        params = {'critic_flow': modules['critic_flow'].init(
            critic_rng, ex_observations, ex_actions, jnp.zeros((config.flow_num_ensembles, batch)),
            jnp.zeros((batch,)))['params']}
        if config.use_distilled_critic:
            params['distill_critic'] = modules['distill_critic'].init(distill_rng, ex_observations, ex_actions)['params']
        params.update(actor.init_actor_params(modules, actor_rng, ex_observations, ex_actions))
        agent = cls._from_params(rng, params, ('critic_flow',), config)
        if config.get('stale_steps', 0) > 0:
            agent = agent.replace(stale_params={'critic_flow': params['critic_flow'],
                                                'target_critic_flow': params['critic_flow']})
        return agent


def _checked(config):
    """Validate the config's choices with one-line errors naming the key."""
    if config.get('r_min') is None or config.get('r_max') is None:
        raise ValueError('config.r_min and config.r_max must be set from the dataset rewards '
                         '(OfflineData.reward_range) before FloqAgent.create')
    if config.r_max < config.r_min:
        raise ValueError(f'config.r_max ({config.r_max}) must be >= config.r_min ({config.r_min})')
    accepts.check_config(config, CONFIG_RANGES)
    if config.train_at_zero_only and config.critic_flow_steps != 1:
        raise ValueError('config.train_at_zero_only trains a one-step flow: set config.critic_flow_steps=1')
    if not 0 <= int(config.get('stale_steps', 0)) <= config.critic_flow_steps:
        raise ValueError(f'config.stale_steps must be in [0, critic_flow_steps={config.critic_flow_steps}], '
                         f'got {config.get("stale_steps")}')
    return config


AGENT = FloqAgent

# What each config key accepts (checked by the CLI before anything is written, and by create; the cross-key rules
# -- train_at_zero_only needs K = 1, stale_steps <= K, r_max >= r_min -- are in _checked).
CONFIG_RANGES = {
    'lr': accepts.positive_number,
    'batch_size': accepts.positive_int,
    '*_hidden_dims': accepts.positive_int_tuple,
    'discount': accepts.interval(0, 1, high_open=True),  # the value support is r / (1 - discount)
    'tau': accepts.interval(0, 1),
    'q_agg': accepts.one_of(*Q_AGGREGATES),
    'alpha': accepts.non_negative_number,
    'actor_flow_steps': accepts.positive_int,
    'flow_num_ensembles': accepts.positive_int,
    'distill_num_ensembles': accepts.positive_int,
    'noise_samples': accepts.positive_int,
    'noise_coverage': accepts.non_negative_number,  # 0: the initial noise is a point
    'critic_flow_steps': accepts.positive_int,
    'time_embedding': accepts.one_of('cos', 'raw', 'fourier'),
    'time_embed_dim': accepts.positive_int,
    'num_bins': accepts.int_at_least(2),
    'sigma': accepts.positive_number,
    'reward_offset': accepts.non_negative_number,
    'block_width': accepts.positive_int,
    'block_depth': accepts.positive_int,
    'num_transformations': accepts.positive_int,
    'stale_steps': accepts.non_negative_int,
    'stale_copy_until': accepts.non_negative_int,
    'target_noise': accepts.non_negative_number,
    'target_noise_dist': accepts.one_of(*TARGET_NOISE_DISTS),
    'compute_dtype': accepts.one_of('float32', 'bfloat16', 'float16'),
    'ensemble_apply': accepts.one_of('memberwise', 'vmap', 'auto'),
    'encoder': accepts.one_of(*ENCODERS),
}


def get_config():
    """floq's defaults, as published (CMU-AIRe/floq)."""
    return ml_collections.ConfigDict(dict(
        agent_name='floq',
        lr=3e-4,                      # Adam learning rate.
        batch_size=256,
        actor_hidden_dims=(512, 512, 512, 512),
        value_hidden_dims=(512, 512, 512, 512),  # Distilled scalar critic.
        layer_norm=True,              # LayerNorm in critics (GELU then LayerNorm).
        actor_layer_norm=False,
        discount=0.99,
        tau=0.005,                    # Polyak rate of the target velocity field.
        q_agg='mean',                 # 'mean' or 'min' over the ensemble for TD targets.
        alpha=10.0,                   # Distillation weight of the one-step policy (per task).
        actor_flow_steps=10,          # Euler steps of the BC flow policy.
        normalize_q_loss=False,
        flow_num_ensembles=2,
        distill_num_ensembles=2,
        noise_samples=8,              # Noises per transition for targets and estimates.
        noise_coverage=0.1,           # z0 ~ Unif[coverage * r_min, coverage * r_max] / (1 - gamma).
        critic_flow_steps=8,          # K, the critic's Euler steps (test-time knob: q_values(num_steps=...)).
        train_at_zero_only=False,     # One-step flow trained only at t = 0 (set critic_flow_steps=1).
        time_embedding='cos',         # 'cos' (cos(t), as published), 'raw' or 'fourier'.
        time_embed_dim=64,            # Width of the 'fourier' time embedding.
        use_prob_embed=True,          # HL-Gauss embedding of z (else min-max normalised z).
        num_bins=51,                  # HL-Gauss support points (50 bins).
        sigma=16.0,                   # HL-Gauss sigma in bin widths.
        reward_offset=0.01,           # Widens the HL-Gauss support: (r -+ offset) / (1 - gamma).
        block_width=512,              # Velocity-net width.
        block_depth=4,                # Velocity-net depth (per residual block with use_resnets).
        use_resnets=False,            # Residual velocity net: num_transformations blocks.
        num_transformations=2,
        use_distilled_critic=True,    # The actor uses a distilled scalar critic (else the flow critic).
        freeze_critic_trunk=False,    # Plasticity experiment: train only the velocity net's output layer.
        # Mechanism variants ("what does flow matching bring to TD learning"); all off by default.
        distributional=False,         # Each noise's flow-matching target is its own TD target (no mean over noises).
        predict_final=False,          # The net predicts the final value y from (t, z); re-anchored integration.
        stale_steps=0,                # m: the first m of K integration steps use a stale copy of the field.
        stale_copy_until=250_000,     # Stale copy = pre-update field while step + 1 < this; frozen afterwards.
        target_noise=0.0,             # Noise magnitude on the regression target (paper: 0, 4, 8, 16).
        target_noise_dist='uniform',  # 'uniform' on [-m, m] (as published) or 'gaussian' with std m.
        compute_dtype='float32',      # 'bfloat16' for bf16 matmuls with float32 params and losses.
        encoder=ml_collections.config_dict.placeholder(str),  # Pixel encoder (None, 'impala_small', ...), as published.
        ensemble_apply='auto',        # 'memberwise' | 'vmap' | 'auto' (memberwise for large matmuls on CPU).
        r_min=ml_collections.config_dict.placeholder(float),  # From the dataset (set by the trainer).
        r_max=ml_collections.config_dict.placeholder(float),
    ))
