"""The online phase as a step function of the cadence loop: one env per seed, one batched policy call (temperature
1) across seeds per env step, then ``utd_ratio`` updates on batches from each seed's device replay buffer, dispatched
over seeds like the offline chunks (``parallel.make_online_update``: vmap or ``lax.map``, on the mesh).

The replay buffers start as the dataset (:func:`replay_buffers`; empty with balanced sampling, see
:func:`initial_buffer`) and are checkpointed with the agents; a resumed
online phase restarts its episodes (env state is not checkpointed), numbering them on from the saved count.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from floq_jax.training import multihost, parallel

BAR_EVERY = 100  # online phase: env steps per progress-bar update


def initial_buffer(arrays, buffer_size: int, balanced: bool):
    """One seed's replay buffer at the start of the online phase, as published: the dataset ``arrays`` in a buffer
    of max(buffer_size, N + 1) rows, or with ``balanced`` sampling an empty buffer of ``buffer_size`` rows for the
    online transitions (the dataset is sampled on its own)."""
    from floq_jax.core import replay

    if balanced:
        return replay.empty(arrays, buffer_size)
    return replay.from_dataset(arrays, replay.capacity_for(len(arrays['observations']), buffer_size))


def replay_buffers(options):
    """``extra_state`` of the run: every seed's initial replay buffer (S, ...) (:func:`initial_buffer`), on the mesh."""

    def buffers(state):
        one = initial_buffer(state.host_arrays, options.buffer_size, options.balanced_sampling)
        stacked = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (len(state.seeds), *x.shape)), one)
        if state.mesh is not None:
            stacked = multihost.put_global(stacked, parallel.seed_sharding(state.mesh))
        return stacked

    return buffers


def online_episode_metrics(finished: Sequence[Sequence[Tuple[float, float]]]) -> Dict[str, np.ndarray]:
    """(S,) arrays for a train.csv / TensorBoard row from each seed's episodes ended since the last row:
    'online/episode_return' and 'online/episode_success' (means; NaN for a seed with none) and 'online/episodes'."""
    def mean(values):
        return float(np.mean(values)) if values else float('nan')

    return {'online/episode_return': np.asarray([mean([r for r, _ in f]) for f in finished]),
            'online/episode_success': np.asarray([mean([x for _, x in f]) for f in finished]),
            'online/episodes': np.asarray([len(f) for f in finished])}


class OnlinePhase:
    """Env steps from ``options.offline_steps`` to ``options.offline_steps + options.online_steps``."""

    check_every_step = False  # infos are fetched (a device sync) only at log steps
    bar_every = BAR_EVERY
    first_note = None

    def __init__(self, options, batch_size: int):
        self.options, self.batch_size = options, batch_size
        self.end = options.offline_steps + options.online_steps
        self.envs = []
        self.data = None  # the device dataset, with balanced sampling (set in begin)

    def schedule(self, start: int):
        return ((s, 1) for s in range(start, self.end))

    def begin(self, state) -> None:
        from floq_jax.envs import envs as envs_lib

        o, seeds = self.options, state.seeds
        self.envs = [envs_lib.pooled_env(o.env_name, success_timing=o.success_timing) for _ in seeds]
        self.act = jax.jit(jax.vmap(lambda a, obs, key: a.sample_actions(obs, seed=key, temperature=1.0)))
        self.update = parallel.make_online_update(self.batch_size, o.utd_ratio, state.mesh, state.seed_map,
                                                  o.balanced_sampling)
        self.data = state.device_data if o.balanced_sampling else None
        self.episode = int(state.metadata.get('episodes', 0))
        self.obs = np.stack([env.reset(seed=s * 100_003 + self.episode)[0]
                             for env, s in zip(self.envs, seeds)]).astype(np.float32)
        self.action_keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(s), 2))(jnp.asarray(seeds))
        self.returns = np.zeros(len(seeds))
        self.finished = [[] for _ in seeds]  # per seed: (return, success) of the episodes ended since the last row

    def step(self, state, i: int, start: int, n: int):
        del i, n
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(self.action_keys, start)
        actions = np.clip(np.asarray(parallel.to_host(self.act(state.agents, jnp.asarray(self.obs), keys))), -1, 1)
        next_obs, rewards, terminated, truncated, successes = [], [], [], [], []
        for k, env in enumerate(self.envs):
            ob, r, term, trunc, info = env.step(actions[k])
            next_obs.append(ob), rewards.append(r), terminated.append(term), truncated.append(trunc)
            successes.append(float(info.get('success', 0.0)))
        next_obs = np.stack(next_obs).astype(np.float32)
        transitions = dict(observations=self.obs, actions=actions.astype(np.float32),
                           rewards=np.asarray(rewards, np.float32),
                           masks=1.0 - np.asarray(terminated, np.float32), next_observations=next_obs)
        if state.mesh is not None:
            transitions = multihost.put_global(transitions, parallel.seed_sharding(state.mesh))
        state.agents, state.extra, state.rngs, infos = self.update(state.agents, state.extra, transitions, state.rngs,
                                                                   self.data)
        self.returns += np.asarray(rewards)
        self.obs = next_obs
        done = np.logical_or(terminated, truncated)
        if done.any():
            self.episode += 1
            state.metadata['episodes'] = self.episode
            for k in np.flatnonzero(done):
                self.finished[k].append((self.returns[k], successes[k]))
                self.obs[k] = self.envs[k].reset(seed=state.seeds[k] * 100_003 + self.episode)[0]
                self.returns[k] = 0.0
        return infos

    def log_extra(self, state) -> Dict[str, np.ndarray]:
        """The buffer fill and the episodes ended since the last row (then forgotten)."""
        size = np.asarray(parallel.to_host(state.extra.size))
        out = {'online/buffer_size': size, **online_episode_metrics(self.finished)}
        self.finished = [[] for _ in state.seeds]
        return out

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []
