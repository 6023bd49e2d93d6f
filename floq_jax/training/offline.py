"""The offline phase as a step function of the cadence loop: jitted chunks of updates on batches sampled from the
device-resident dataset (or, for a dataset too large for the device, prefetched host batches).

Chunks are clipped at every log / eval / save boundary and config-schedule step, so the chunk schedule depends on
the absolute step only and a resumed run repeats the uninterrupted run's computation exactly.
"""

from __future__ import annotations

from typing import Dict

from floq_jax.training import multihost, parallel
from floq_jax.training.loop import chunk_schedule


class OfflinePhase:
    """Offline updates up to ``options.offline_steps``; infos are chunk means {name: (S,)}."""

    check_every_step = True
    bar_every = 1
    first_note = 'compiling the update (first chunk)'

    def __init__(self, options, batch_size: int):
        self.options, self.batch_size = options, batch_size
        self.end = options.offline_steps
        self._schedule = []

    def schedule(self, start: int):
        o = self.options
        self._schedule = chunk_schedule(start, self.end, o.steps_per_call, (o.log_interval, o.eval_interval,
                                        o.save_interval), [int(s) for s, _ in o.config_schedule])
        return self._schedule

    def begin(self, state) -> None:
        del state

    def step(self, state, i: int, start: int, n: int):
        if state.host_sampler is None:  # the chunk constructors are cached: one jitted function per (size, n)
            chunk = parallel.make_train_chunk(self.batch_size, n, state.mesh, state.seed_map, state.pixels)
            state.agents, state.rngs, infos = chunk(state.agents, state.device_data, state.rngs)
            return infos
        batches = state.host_sampler.get(start, n)
        if i + 1 < len(self._schedule):
            state.host_sampler.prefetch(*self._schedule[i + 1])
        if state.mesh is not None:
            batches = multihost.put_global(batches, parallel.seed_sharding(state.mesh))
        state.agents, infos = parallel.make_host_batch_chunk(n, state.mesh, state.seed_map)(state.agents, batches)
        return infos

    def log_extra(self, state) -> Dict:
        del state
        return {}

    def close(self) -> None:
        pass
