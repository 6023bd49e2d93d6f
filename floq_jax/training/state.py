"""The device state of one multi-seed run and its checkpoints: agents (S, ...), data-sampling rngs (S, 2), optional
extra per-seed state (the online replay buffers), the mesh they live on, and save / restore.

    state = RunState(agent_cls, config, data, options, dirs)   # builds the agents; restores the newest common step
    state.save()                                                # one orbax checkpoint per seed (collective)

Every process of a multi-host run holds and checkpoints the same global state (orbax coordinates the writes).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional

import jax
import numpy as np

from floq_jax import storage
from floq_jax.data import sampling
from floq_jax.training import multihost, parallel
from floq_jax.training.checkpoints import Checkpointer
from floq_jax.training.options import RunOptions


class RunState:
    """Agents, rngs and extra state of every seed, their placement (mesh, device or host data) and checkpoints.

    ``extra_state(state)`` (optional) returns per-seed extra state stacked along a leading seed axis, e.g. the
    online replay buffers; it is checkpointed with the agents.
    """

    def __init__(self, agent_cls, config, data, options: RunOptions, dirs: List[str],
                 extra_state: Optional[Callable] = None):
        self.options, self.config, self.data = options, config, data
        self.seeds = options.seeds
        use_mesh = options.use_mesh if options.use_mesh is not None else jax.device_count() > 1
        self.mesh = parallel.make_mesh(options.num_seeds) if use_mesh else None
        self.seed_map = parallel.use_seed_map(options.seed_loop, config,
                                               parallel.seeds_per_device(options.num_seeds, self.mesh))
        # Pixels: --frame_stack / --p_aug (None, None for a state-based run); frames are stacked and cropped where the
        # batches are drawn (on the device inside the jitted chunk, or on the host by the HostSampler).
        self.pixels = sampling.Pixels(options.frame_stack, options.p_aug)
        arrays = sampling.batch_arrays(data.train, frame_stack=options.frame_stack)
        self.host_arrays = arrays
        self.host_sampler = None
        host = sampling.samples_on_host(options.host_sampling, arrays)
        if host:
            logging.warning('sampling batches on the host: the dataset (%.2f GiB) is kept in host memory '
                            '(--host_sampling, or more than half the free device memory)',
                            sampling.nbytes(arrays) / 2**30)
            self.host_sampler = sampling.HostSampler(arrays, config.batch_size, self.seeds, self.pixels)
            self.device_data = None
        else:
            self.device_data = sampling.put_replicated(arrays, parallel.replicated(self.mesh) if self.mesh else None)
        ex_obs, ex_act = sampling.example_observations(arrays, options.frame_stack), arrays['actions'][:1]
        self.agents = parallel.create_agents(agent_cls, config, ex_obs, ex_act, self.seeds, self.mesh)
        self._base_agent_config = self.agents.config
        self.rngs = parallel.seed_rngs(self.seeds)
        if self.mesh is not None:
            self.rngs = multihost.put_global(np.asarray(self.rngs), parallel.seed_sharding(self.mesh))
        self.extra = extra_state(self) if extra_state is not None else None
        for d in dirs:
            storage.makedirs(d)
        self.checkpointers = [Checkpointer(storage.join(d, 'checkpoints'), max_to_keep=options.max_checkpoints)
                              for d in dirs]
        self.step = 0
        self.metadata: Dict[str, Any] = {}
        self.last_good: Optional[int] = None  # newest saved step (None: none yet)

    # -- config schedule
    def apply_config_schedule(self, at_step: Optional[int] = None) -> None:
        """Sets the agents' (static) config to the base config updated by every schedule entry at or before
        ``at_step`` (default ``self.step``); a no-op without entries due; a new config recompiles the update once."""
        import ml_collections

        at_step = self.step if at_step is None else at_step
        changes = {}
        for step, values in sorted(self.options.config_schedule, key=lambda e: int(e[0])):
            if int(step) <= at_step:
                changes.update(values)
        base = self._base_agent_config
        config = base
        if changes:
            unknown = sorted(set(changes) - set(base.keys()))
            if unknown:
                raise ValueError(f'config_schedule: agent config has no key(s) {unknown}')
            config = ml_collections.FrozenConfigDict({**base.to_dict(), **changes})
        if config != self.agents.config:
            self.agents = self.agents.replace(config=config)

    # -- one seed's state, checkpoints
    def host_state(self) -> dict:
        """Every seed's state as host arrays, seed axis first: {'agent', 'data_rng'[, 'extra']}.  Every process of a
        multi-process run must call it together (it gathers the shards the other processes hold)."""
        state = {'agent': self.agents, 'data_rng': self.rngs}
        if self.extra is not None:
            state['extra'] = self.extra
        return parallel.to_host(state)

    def seed_state(self, k: int, state: Optional[dict] = None) -> dict:
        """Seed k's checkpoint state (host arrays) out of ``state`` (default: a fresh :meth:`host_state`)."""
        state = self.host_state() if state is None else state
        return jax.tree_util.tree_map(lambda x: np.asarray(x[k]), state)

    def _put(self, states: List[dict]) -> None:
        stacked = parallel.stack(states)
        if self.mesh is not None:
            stacked = multihost.put_global(stacked, parallel.seed_sharding(self.mesh))
        self.agents, self.rngs = stacked['agent'], stacked['data_rng']
        if self.extra is not None:
            self.extra = stacked['extra']

    def restore(self) -> bool:
        """Restores the newest step with an intact checkpoint for every seed; False if there is none."""
        steps = [set(c.all_steps()) for c in self.checkpointers]
        common = sorted(set.intersection(*steps), reverse=True) if steps else []
        for s in common:
            self.apply_config_schedule(s)  # the checkpoint holds the agent with that step's config
            try:
                state = self.host_state()
                restored = [c.restore(self.seed_state(k, state), step=s) for k, c in enumerate(self.checkpointers)]
            except Exception as e:  # noqa: BLE001 - corrupt or unreadable: try an older step
                logging.warning('checkpoint step %d is not usable for every seed (%s); trying an older one', s, e)
                continue
            self._put([r[0] for r in restored])
            self.step = s
            for c in self.checkpointers:  # corrupt ones, or ones a resumed run will redo
                c.delete_after(s)
            self.metadata = restored[0][1]
            self.last_good = s
            return True
        if any(steps):
            logging.warning('no step with an intact checkpoint for every seed; starting from scratch')
        return False

    def save(self) -> None:
        """Every process saves every seed (orbax's multi-process protocol: the same saves in the same order).

        A local disk without room for the checkpoint (its bytes + 20%) raises ENOSPC before anything is written
        (orbax's own failure comes later, from a background thread, with a flood of tracebacks)."""
        import errno

        state = self.host_state()
        need = 1.2 * sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(state)) + 2**16
        free = storage.free_bytes(self.checkpointers[0].directory) if self.checkpointers else None
        if free is not None and free < need:
            raise OSError(errno.ENOSPC, f'{free / 2**20:.1f} MiB free, a checkpoint of step {self.step} needs '
                                        f'about {need / 2**20:.1f} MiB')
        for k, c in enumerate(self.checkpointers):
            c.save(self.step, self.seed_state(k, state), {'step': self.step, **self.metadata})
        self.last_good = self.step

    def close(self) -> None:
        if self.host_sampler is not None:
            self.host_sampler.close()
        for c in self.checkpointers:
            c.close()
