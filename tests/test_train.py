"""The device-resident training loop: scan chunks, vmapped seeds, meshes over 8 CPU devices."""

import jax
import numpy as np
import pytest

from agents import floq
from floq_jax.training import parallel
from floq_jax.data import sampling
from tests.conftest import scaled
from tests.helpers import reference_step_by_step

CONFIG = scaled('floq', 'small')


def toy_data(n=256, ob_dim=4, action_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, ob_dim)).astype(np.float32)
    return sampling.batch_arrays(dict(
        observations=obs, actions=rng.uniform(-1, 1, (n, action_dim)), rewards=-rng.uniform(0, 1, n),
        masks=(rng.uniform(size=n) > 0.1), next_observations=np.roll(obs, 1, axis=0)))


def agents_for(seeds, mesh=None, data=None):
    data = data if data is not None else toy_data()
    return parallel.create_agents(floq.FloqAgent, CONFIG, data['observations'][:2], data['actions'][:2], seeds, mesh)


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_chunk_equals_step_by_step():
    data = toy_data()
    device_data = sampling.put_replicated(data)
    agents, rngs = agents_for([3], data=data), parallel.seed_rngs([3])
    reference, ref_rng = reference_step_by_step(parallel.select_seed(agents, 0), device_data, rngs[0],
                                                CONFIG.batch_size, 6)
    chunked, out_rngs, infos = parallel.make_train_chunk(CONFIG.batch_size, 6)(agents, device_data, rngs)
    assert infos['critic/critic_loss'].shape == (1,)
    np.testing.assert_array_equal(out_rngs[0], ref_rng)
    assert int(chunked.step[0]) == 6
    assert_trees_close(parallel.select_seed(chunked, 0).params, reference.params)


def test_vmapped_seed_equals_single_seed_run():
    data = toy_data()
    device_data = sampling.put_replicated(data)
    chunk = parallel.make_train_chunk(CONFIG.batch_size, 5)
    multi, _, multi_info = chunk(agents_for([0, 1, 2], data=data), device_data, parallel.seed_rngs([0, 1, 2]))
    single, _, single_info = chunk(agents_for([1], data=data), device_data, parallel.seed_rngs([1]))
    assert_trees_close(parallel.select_seed(multi, 1).params, parallel.select_seed(single, 0).params)
    np.testing.assert_allclose(multi_info['critic/critic_loss'][1], single_info['critic/critic_loss'][0], rtol=1e-5)
    # Different seeds really differ.
    assert not np.allclose(multi_info['critic/critic_loss'][0], multi_info['critic/critic_loss'][1])


@pytest.mark.parametrize('num_seeds', [8, 2])
def test_mesh_over_8_devices_matches_one_device(num_seeds):
    assert len(jax.devices()) == 8, 'tests/conftest.py sets --xla_force_host_platform_device_count=8'
    data = toy_data()
    seeds = list(range(num_seeds))
    mesh = parallel.make_mesh(num_seeds)
    assert mesh.shape['seeds'] * mesh.shape['batch'] == 8 and mesh.shape['seeds'] == num_seeds
    sharded_data = sampling.put_replicated(data, parallel.replicated(mesh))
    rngs = jax.device_put(parallel.seed_rngs(seeds), parallel.seed_sharding(mesh))
    on_mesh, _, _ = parallel.make_train_chunk(CONFIG.batch_size, 4, mesh)(agents_for(seeds, mesh, data), sharded_data, rngs)
    assert len(on_mesh.step.sharding.device_set) == 8
    on_one, _, _ = parallel.make_train_chunk(CONFIG.batch_size, 4)(agents_for(seeds, data=data),
                                                               sampling.put_replicated(data), parallel.seed_rngs(seeds))
    assert_trees_close(on_mesh.params, on_one.params, rtol=2e-4, atol=2e-5)


def test_host_sampler_chunk_trains():
    data = toy_data()
    sampler = sampling.HostSampler(data, CONFIG.batch_size, seeds=[0, 1])
    sampler.prefetch(0, 3)
    batches = sampler.get(0, 3)
    assert batches['observations'].shape == (2, 3, CONFIG.batch_size, 4)
    again = sampling.host_chunk(data, [0, 1], 0, 3, CONFIG.batch_size)  # keyed by (seed, start): reproducible
    np.testing.assert_array_equal(again['observations'], batches['observations'])
    assert not np.array_equal(again['observations'][0], again['observations'][1])
    agents, infos = parallel.make_host_batch_chunk(3)(agents_for([0, 1], data=data), batches)
    sampler.close()
    assert np.all(np.asarray(agents.step) == 3) and np.all(np.isfinite(infos['critic/critic_loss']))


def test_seed_map_equals_vmapped_seeds():
    """seed_loop='map' (lax.map over seeds) trains the same agents as vmap.  The vmapped chunks are the ones the
    tests above compiled (same seeds, steps and shapes), so only the mapped ones compile here."""
    data = toy_data()
    device_data = sampling.put_replicated(data)
    seeds = [0, 1, 2]
    by_vmap, _, info_v = parallel.make_train_chunk(CONFIG.batch_size, 5)(agents_for(seeds, data=data), device_data,
                                                                      parallel.seed_rngs(seeds))
    by_map, rngs_m, info_m = parallel.make_train_chunk(CONFIG.batch_size, 5, None, True)(
        agents_for(seeds, data=data), device_data, parallel.seed_rngs(seeds))
    assert_trees_close(by_map.params, by_vmap.params, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(info_m['critic/critic_loss'], info_v['critic/critic_loss'], rtol=1e-4)
    assert rngs_m.shape == (3, 2) and np.all(np.asarray(by_map.step) == 5)
    # Host-sampled batches: the same equality for make_host_batch_chunk.
    batches = sampling.host_chunk(data, [0, 1], 0, 3, CONFIG.batch_size)
    a_v, _ = parallel.make_host_batch_chunk(3)(agents_for([0, 1], data=data), batches)
    a_m, _ = parallel.make_host_batch_chunk(3, None, True)(agents_for([0, 1], data=data), batches)
    # (one of 7296 entries differed by 3.6e-5 at 2e-5: Adam rescales rounding differences in near-zero gradients)
    assert_trees_close(a_m.params, a_v.params, rtol=1e-3, atol=1e-4)
    # (shard_map + lax.map on a mesh: tests/test_runner_options.py::test_seeds_sharded_over_cpu_devices_match_one_device)


def test_use_seed_map_rule():
    small = scaled('floq', 'bench_small')  # the benchmark's small config: batch 256, 4 noise samples, 256 wide
    demo = scaled('floq', 'demo')  # batch 64, 2 noise samples, 128 wide
    assert jax.default_backend() == 'cpu'
    assert parallel.use_seed_map('auto', small) and not parallel.use_seed_map('auto', demo)  # 2^18 vs 2^14
    assert parallel.use_seed_map('map', demo) and not parallel.use_seed_map('vmap', small)
    # One seed per device: map (a vmap over one seed only adds a batch dimension to every dot).
    assert parallel.use_seed_map('auto', demo, seeds_per_device=1)
    assert not parallel.use_seed_map('auto', demo, seeds_per_device=2)
    assert not parallel.use_seed_map('vmap', demo, seeds_per_device=1)
    mesh = parallel.make_mesh(1, jax.devices()[:1])
    assert parallel.seeds_per_device(4, mesh) == 4 and parallel.seeds_per_device(3, None) == 3
    with pytest.raises(ValueError, match='seed_loop'):
        parallel.use_seed_map('loop', small)


def test_batch_arrays_rejects_bad_datasets():
    data = toy_data()
    with pytest.raises(ValueError, match='masks'):
        sampling.batch_arrays({k: v for k, v in data.items() if k != 'masks'})
    with pytest.raises(ValueError, match='different lengths'):
        sampling.batch_arrays({**data, 'rewards': data['rewards'][:10]})
