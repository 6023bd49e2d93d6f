"""The training loop on device: ``lax.scan`` over updates, ``vmap`` over seeds, a mesh over devices.

Agents here carry a leading seed axis S (``create_agents`` builds them with ``jax.vmap`` over seeds).
One host call runs ``steps`` updates for every seed:

    agents, rngs, infos = train_chunk(agents, data, rngs)       # infos: {metric: (S,)} chunk means

Inside, each seed draws batch indices with ``jax.random`` from the device-resident dataset, so the host
only logs, evaluates and checkpoints.  Seed k of an S-seed run follows exactly the computation of a
1-seed run with seed k (same init, same rng stream), and a chunk of n steps equals n chunks of 1.

Devices: a 2-D ``jax.sharding.Mesh`` ('seeds', 'batch') over all devices (all hosts after
``jax.distributed.initialize``).  Agents are sharded along 'seeds'; the dataset is replicated; each
update's batch is constrained to be split along 'batch', and XLA inserts the gradient all-reduce
(GSPMD), so there are no hand-written collectives.
"""

import functools
import math
import os
from typing import Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from floq_jax.data.sampling import sample_batch


# ----------------------------------------------------------------------------- devices and meshes


def cpu_devices_for(num_seeds: int, cpu_count: Optional[int] = None) -> int:
    """How many XLA CPU devices to split a CPU-only host into for ``num_seeds`` seeds.

    XLA:CPU runs one program's small matmuls and elementwise ops on one core at a time, so a 1-seed run of a
    small config uses about one core (measured: the demo config trains at 188 updates/s pinned to one core,
    176-197 unpinned on 2).  Several CPU devices run their shards of the seed axis concurrently, one per core.
    Returns the largest divisor of ``num_seeds`` that is at most the core count (1 for one seed), so the
    ('seeds', 'batch') mesh puts whole seeds on each device and never splits a seed's batch.
    """
    cores = max(1, cpu_count or os.cpu_count() or 1)
    return max(d for d in range(1, min(num_seeds, cores) + 1) if num_seeds % d == 0)


def set_cpu_devices(num_devices: int) -> bool:
    """Split the host CPU into ``num_devices`` XLA devices (``jax_num_cpu_devices``).

    Must run before JAX initialises its backends (before the first array is made).  Only the CPU backend is
    affected: on a GPU/TPU host ``jax.devices()`` still lists the accelerators.  Returns False (and changes
    nothing) when the backends are already initialised or an XLA_FLAGS device count is set.
    """
    from jax._src import xla_bridge

    if num_devices < 1:
        raise ValueError(f'num_devices must be >= 1, got {num_devices}')
    if xla_bridge.backends_are_initialized() or 'xla_force_host_platform_device_count' in os.environ.get('XLA_FLAGS', ''):
        return False
    jax.config.update('jax_num_cpu_devices', int(num_devices))
    return True


def configure_cpu_devices(num_seeds: int, cpu_devices: Optional[int] = None, distributed: bool = False) -> int:
    """``--cpu_devices``: validate, resolve the default (:func:`cpu_devices_for`) and set it before JAX starts.

    Returns the number of CPU devices in effect: 1 when nothing was changed (one device asked for, JAX already
    initialised, or a multi-process run without ``cpu_devices``: one CPU device per process unless asked for more).
    Raises a one-line ValueError naming the flag for a count below 1.
    """
    if cpu_devices is not None and cpu_devices < 1:
        raise ValueError(f'--cpu_devices={cpu_devices}: must be a positive integer')
    if cpu_devices is None:
        n = 1 if distributed else cpu_devices_for(num_seeds)
    else:
        n = int(cpu_devices)
    return n if n > 1 and set_cpu_devices(n) else 1


def make_mesh(num_seeds: int, devices=None) -> Mesh:
    """A ('seeds', 'batch') mesh: as many devices along 'seeds' as divide ``num_seeds``, the rest along 'batch'."""
    devices = list(jax.devices() if devices is None else devices)
    seeds_axis = math.gcd(num_seeds, len(devices))
    return Mesh(np.asarray(devices).reshape(seeds_axis, len(devices) // seeds_axis), ('seeds', 'batch'))


def seed_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (seed) axis split over 'seeds', everything else replicated."""
    return NamedSharding(mesh, P('seeds'))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


# ----------------------------------------------------------------------------- agents over seeds


def create_agents(agent_cls, config, ex_observations, ex_actions, seeds, mesh: Optional[Mesh] = None):
    """Agents for every seed in ``seeds`` (S,), stacked along a leading axis (sharded over 'seeds' on a mesh)."""
    seeds = jnp.asarray(seeds, jnp.int32)
    make = jax.vmap(lambda s: agent_cls.create(s, ex_observations, ex_actions, config))
    if mesh is None:
        return jax.jit(make)(seeds)
    return jax.jit(make, out_shardings=seed_sharding(mesh))(seeds)


def seed_rngs(seeds, salt: int = 1) -> jax.Array:
    """Per-seed rng streams for data sampling, (S, 2): independent of the agents' own rngs."""
    return jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(s), salt))(jnp.asarray(seeds, jnp.int32))


def select_seed(agents, k: int):
    """Seed k's agent out of stacked agents."""
    return jax.tree_util.tree_map(lambda x: x[k], agents)


def stack(trees):
    """Stack a list of pytrees along a new leading axis."""
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *trees)


# ----------------------------------------------------------------------------- the jitted chunk


def _single_seed_chunk(batch_size: int, steps: int, pixels, batch_constraint: Optional[Callable]):
    """(agent, data, rng) -> (agent, rng, chunk-mean info) running ``steps`` updates of one seed (frames stacked and
    cropped as ``pixels``, a ``floq_jax.data.sampling.Pixels`` or None, says)."""

    def chunk(agent, data, rng):
        def body(carry, _):
            agent, rng = carry
            rng, key = jax.random.split(rng)
            batch = sample_batch(data, key, batch_size, pixels)
            if batch_constraint is not None:
                batch = batch_constraint(batch)
            agent, info = agent.update(batch)
            return (agent, rng), info

        (agent, rng), infos = jax.lax.scan(body, (agent, rng), None, length=steps)
        return agent, rng, jax.tree_util.tree_map(lambda x: x.mean(axis=0), infos)

    return chunk


SEED_LOOPS = ('auto', 'map', 'vmap')  # --seed_loop / RunOptions.seed_loop
SEED_MAP_MIN_WORK = 2 ** 18  # critic rows x widest layer from which seed_loop 'auto' maps over seeds (CPU only)


def use_seed_map(mode: str, config, seeds_per_device: Optional[int] = None) -> bool:
    """Whether ``seed_loop`` mode 'auto' | 'map' | 'vmap' runs a device's seeds one after another (``lax.map``).

    'vmap' batches the seeds: every matmul becomes a batched dot_general, which is what GPUs/TPUs want. 'map' runs
    each seed's update as plain 2-D GEMMs, one seed at a time on each device. 'auto', on the CPU backend only:
    'map' when each device holds one seed (``seeds_per_device == 1``: a vmap over one seed adds a batch dimension
    to every dot and gains nothing), or when the critic's rows (batch_size x noise_samples) x the widest layer
    >= ``SEED_MAP_MIN_WORK``; else 'vmap'.  The timings behind this rule: docs/benchmark.md, "The measurements
    behind the code's defaults".
    """
    if mode not in SEED_LOOPS:
        raise ValueError(f"seed_loop must be 'auto', 'map' or 'vmap', got {mode!r}")
    if mode != 'auto':
        return mode == 'map'
    if jax.default_backend() != 'cpu':
        return False
    if seeds_per_device == 1:
        return True
    rows = int(config.batch_size) * int(config.get('noise_samples', 1))
    width = max([int(config.get('block_width', 0))] + [int(w) for k in ('value_hidden_dims', 'actor_hidden_dims')
                                                       for w in config.get(k, ())])
    return rows * width >= SEED_MAP_MIN_WORK


def seeds_per_device(num_seeds: int, mesh: Optional[Mesh]) -> int:
    """Seeds each device trains: ``num_seeds`` without a mesh, else its share along the mesh's 'seeds' axis."""
    return int(num_seeds) if mesh is None else int(num_seeds) // int(mesh.shape['seeds'])


def _map_over_seeds(one_seed: Callable, in_axes: Tuple[Optional[int], ...]) -> Callable:
    """``jax.vmap(one_seed, in_axes)``'s signature and result, but one seed at a time (``lax.map``, no batching).

    ``in_axes`` entries are 0 (stacked per seed) or None (shared by all seeds).
    """

    def mapped(*args):
        per_seed = tuple(a for a, ax in zip(args, in_axes) if ax == 0)

        def one(xs):
            it = iter(xs)
            return one_seed(*(next(it) if ax == 0 else a for a, ax in zip(args, in_axes)))

        return jax.lax.map(one, per_seed)

    return mapped


def over_seeds(make_one_seed: Callable[[Optional[Callable]], Callable], in_axes: Tuple[Optional[int], ...],
               num_outputs: int, mesh: Optional[Mesh] = None, seed_map: bool = False,
               donate_argnums: Tuple[int, ...] = ()) -> Callable:
    """The one seed-parallel dispatcher of the offline, host-batch and online chunks.

    ``make_one_seed(batch_constraint)`` returns the per-seed function (its arguments as ``in_axes``: 0 for stacked
    per-seed inputs (S, ...), None for inputs shared by all seeds; ``num_outputs`` per-seed outputs);
    ``batch_constraint`` (None, or a function to apply to every sampled batch) splits each seed's batch along the
    mesh's 'batch' axis.  Returns the jitted function over stacked seeds:

    * no mesh: ``vmap`` over seeds, or with ``seed_map`` a ``lax.map`` (one seed at a time, plain GEMMs);
    * a mesh: per-seed inputs and all outputs sharded along 'seeds', shared inputs replicated; with ``seed_map``
      and a 'batch' axis of 1, each device ``lax.map``s over its own seeds inside ``shard_map``; otherwise a
      ``vmap`` with ``spmd_axis_name='seeds'`` whose batches are split along 'batch' (GSPMD inserts the
      gradient all-reduce).
    """
    if mesh is None:
        return jax.jit((_map_over_seeds if seed_map else jax.vmap)(make_one_seed(None), in_axes),
                       donate_argnums=donate_argnums)
    by_seed = seed_sharding(mesh)
    in_shardings = tuple(by_seed if ax == 0 else replicated(mesh) for ax in in_axes)
    out_shardings = (by_seed,) * num_outputs
    if seed_map and mesh.shape['batch'] == 1:
        local = jax.shard_map(_map_over_seeds(make_one_seed(None), in_axes), mesh=mesh,
                              in_specs=tuple(P('seeds') if ax == 0 else P() for ax in in_axes),
                              out_specs=(P('seeds'),) * num_outputs)
        return jax.jit(local, in_shardings=in_shardings, out_shardings=out_shardings, donate_argnums=donate_argnums)
    constraint = None
    if mesh.shape['batch'] > 1:
        batch_spec = NamedSharding(mesh, P('batch'))
        constraint = lambda batch: jax.tree_util.tree_map(
            lambda x: jax.lax.with_sharding_constraint(x, batch_spec), batch)
    return jax.jit(jax.vmap(make_one_seed(constraint), in_axes=in_axes, spmd_axis_name='seeds'),
                   in_shardings=in_shardings, out_shardings=out_shardings, donate_argnums=donate_argnums)


@functools.lru_cache(maxsize=64)
def make_train_chunk(batch_size: int, steps: int, mesh: Optional[Mesh] = None, seed_map: bool = False, pixels=None):
    """The jitted multi-seed chunk: (agents (S, ...), data {(N, ...)}, rngs (S, 2)) -> (agents, rngs, infos {(S,)}).

    Cached: runs in one process (sweeps, resumes, tests) with the same arguments reuse one jitted function and so
    its compiled executables (jit still compiles once per agent config and shape).

    With a mesh, the agents and rngs stay sharded along 'seeds' and each seed's batch is split
    along 'batch' (data parallelism inside a seed when there are more devices than seeds).
    ``seed_map`` (see :func:`use_seed_map`): each device runs its seeds one after another with ``lax.map``
    (inside ``shard_map`` on a mesh whose 'batch' axis is 1) instead of ``vmap``; results equal per-seed runs.
    """
    make_one_seed = functools.partial(_single_seed_chunk, batch_size, steps, pixels)
    chunk = over_seeds(make_one_seed, (0, None, 0), 3, mesh, seed_map, donate_argnums=(0, 2))
    if mesh is not None:
        return chunk
    single = make_one_seed(None)

    def one_or_many(agents, data, rngs):
        if rngs.shape[0] > 1:
            return chunk(agents, data, rngs)
        # One seed: no vmap, so matmuls stay plain 2-D GEMMs instead of batched dot_generals (slower on CPU).
        squeeze = lambda tree: jax.tree_util.tree_map(lambda x: x[0], tree)
        expand = lambda tree: jax.tree_util.tree_map(lambda x: x[None], tree)
        return expand(single(squeeze(agents), data, rngs[0]))

    return jax.jit(one_or_many, donate_argnums=(0, 2))


@functools.lru_cache(maxsize=64)
def make_host_batch_chunk(steps: int, mesh: Optional[Mesh] = None, seed_map: bool = False):
    """The same chunk for host-sampled batches: (agents, batches {(S, steps, B, ...)}) -> (agents, infos).

    Used when the dataset does not fit on the device (``floq_jax.data.sampling.HostSampler``); ``seed_map`` as in
    :func:`make_train_chunk`.
    """

    def make_one_seed(_):
        def one_seed(agent, batches):
            agent, infos = jax.lax.scan(lambda a, b: a.update(b), agent, batches)
            return agent, jax.tree_util.tree_map(lambda x: x.mean(axis=0), infos)

        return one_seed

    return over_seeds(make_one_seed, (0, 0), 2, mesh, seed_map, donate_argnums=(0,))


@functools.lru_cache(maxsize=64)
def make_online_update(batch_size: int, utd_ratio: int, mesh: Optional[Mesh] = None, seed_map: bool = False,
                       balanced: bool = False):
    """(agents, buffers, transitions {(S, ...)}, rngs, data) -> (agents, buffers, rngs, infos {(S,)}), jitted.

    Per seed: insert the new transition into the device replay buffer (``floq_jax.core.replay``), then
    ``utd_ratio`` updates on batches sampled from it (``lax.scan``); seeds dispatched as the offline chunks
    (:func:`over_seeds`: vmap or ``lax.map``, on the ('seeds', 'batch') mesh when one is given).
    ``balanced``: each batch is half the (shared, replicated) dataset ``data`` {(N, ...)} and half the buffer of
    online transitions (``floq_jax.data.sampling.balanced_batch``); otherwise ``data`` is unused (pass None).
    """
    from floq_jax.core import replay
    from floq_jax.data import sampling

    def make_one_seed(batch_constraint):
        def one_seed(agent, buffer, transition, rng, data):
            buffer = replay.add(buffer, transition)

            def body(carry, _):
                agent, rng = carry
                rng, key = jax.random.split(rng)
                batch = (sampling.balanced_batch(data, buffer, key, batch_size) if balanced
                         else replay.sample(buffer, key, batch_size))
                if batch_constraint is not None:
                    batch = batch_constraint(batch)
                agent, info = agent.update(batch)
                return (agent, rng), info

            (agent, rng), infos = jax.lax.scan(body, (agent, rng), None, length=utd_ratio)
            return agent, buffer, rng, jax.tree_util.tree_map(lambda x: x.mean(axis=0), infos)

        return one_seed

    return over_seeds(make_one_seed, (0, 0, 0, 0, None), 4, mesh, seed_map, donate_argnums=(0, 1, 3))


def is_primary_process() -> bool:
    """True on the process that writes logs (process 0; the only one outside multi-host runs)."""
    return jax.process_index() == 0


def to_host(tree) -> Dict[str, np.ndarray]:
    """Fetch (possibly multi-host, sharded) arrays to numpy on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)
