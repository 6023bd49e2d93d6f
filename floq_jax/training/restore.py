"""Loading one seed's trained agent back from its run directory (any checkpoint, at the run's own config).

Checkpoints hold plain pytrees (orbax), independent of module paths, so run directories written by earlier
versions of this package load unchanged.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

import jax

from floq_jax import agent_registry, storage
from floq_jax.data import sampling
from floq_jax.training import parallel, rundirs
from floq_jax.training.checkpoints import Checkpointer


def load_run(run_directory: str, agent_class: Callable[[str], Any], step: Optional[int] = None,
             dataset_path: Optional[str] = None):
    """(agent, state, metadata, step, data, flags) from a seed's run directory (newest intact checkpoint by default).

    ``agent_class``: the caller's agent registry lookup, agent_name -> class (e.g. ``agents.agent_class``).
    """
    from floq_jax.data import load_offline_data

    flags = json.loads(storage.read_text(storage.join(run_directory, 'flags.json')))
    config = rundirs.canonical_config(flags['agent'])
    data = load_offline_data(flags['env_name'], dataset_path=dataset_path or flags['dataset_file'])
    frame_stack = flags.get('frame_stack')  # None for runs written before flags.json recorded it
    arrays = sampling.batch_arrays(data.train, frame_stack=frame_stack)
    agent_cls = agent_registry.class_for_run(config.agent_name, flags, agent_class)  # else flags' agent_file
    agent = agent_cls.create(int(flags['seed']), sampling.example_observations(arrays, frame_stack),
                             arrays['actions'][:1], config)
    target = {'agent': agent, 'data_rng': parallel.seed_rngs([int(flags['seed'])])[0]}
    if int(flags.get('online_steps') or 0) > 0:
        from floq_jax.training.online import initial_buffer

        target['extra'] = initial_buffer(arrays, int(flags.get('buffer_size') or 0),
                                         bool(flags.get('balanced_sampling', False)))
    checkpointer = Checkpointer(storage.join(run_directory, 'checkpoints'))
    try:
        state, metadata, step = checkpointer.restore(jax.device_get(target), step=step)
    finally:
        checkpointer.close()
    return state['agent'], state, metadata, step, data, flags
