"""The online phase uses the offline chunks' seed dispatcher: a run with seeds lax.map'ed on a 2-device CPU mesh (one
seed per device, agents and replay buffers sharded) equals, to float tolerance, the run with seeds vmapped on one
device."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tests.conftest import REPO, subprocess_env


SCRIPT = r'''
import json, sys
import jax, numpy as np
import agents
from floq_jax.data import ensure_generated_dataset, load_offline_data
from floq_jax.training import restore, runner
from floq_jax.training.options import RunOptions
from tests.conftest import scaled

ENV = 'cube-single-play-singletask-task1-v0'
save_dir, cache = sys.argv[1], sys.argv[2]
path = ensure_generated_dataset('cube-single-play-v0', num_episodes=3, seed=0, max_episode_steps=100,
                                cache_dir=cache, num_workers=1)
data = load_offline_data(ENV, dataset_path=path)
config = scaled('floq', 'small')
runner.set_reward_range(config, data)
out = {'devices': jax.device_count()}
for name, seed_loop, use_mesh in (('vmap', 'vmap', False), ('mesh_map', 'map', True)):
    seen = {}

    def record(run):
        if run.step > 8 and not seen:  # an online step: where the agents and buffers live
            leaf = jax.tree_util.tree_leaves(run.state.agents.params)[0]
            buf = jax.tree_util.tree_leaves(run.state.extra)[0]
            seen.update(mesh=None if run.state.mesh is None else dict(run.state.mesh.shape),
                        agent_devices=len(leaf.sharding.device_set), buffer_devices=len(buf.sharding.device_set))

    # 8 offline updates and 12 online env steps, all in chunks of 4 (the log interval): one program per phase.
    options = RunOptions(env_name=ENV, num_seeds=2, offline_steps=8, online_steps=12, steps_per_call=10,
                         log_interval=4, eval_interval=1000, save_interval=1000, eval_episodes=1, eval_at_start=False,
                         utd_ratio=2, buffer_size=10, save_dir=save_dir, run_group=name, tensorboard=False,
                         progress=False, use_mesh=use_mesh, seed_loop=seed_loop, log_diagnostics=False,
                         eval_kwargs=dict(vector_mode='sync', max_episode_steps=5))
    dirs = runner.run_offline_to_online(agents.agent_class(config.agent_name), config, data, options,
                                        callbacks=[record])
    params = [jax.tree_util.tree_leaves(restore.load_run(d, agents.agent_class)[0].params) for d in dirs]
    out[name] = dict(seen, dirs=dirs, params=[[np.asarray(x).ravel()[:64].tolist() for x in p] for p in params])
print('RESULT ' + json.dumps(out))
'''


def read_rows(path):
    import csv

    with open(path, newline='') as f:
        return list(csv.DictReader(f))


@pytest.mark.subprocess
def test_online_phase_lax_map_on_a_two_device_mesh_equals_vmap(tmp_path):
    env = subprocess_env(XLA_FLAGS='--xla_force_host_platform_device_count=2')
    proc = subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path / 'runs'), str(tmp_path / 'cache')], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith('RESULT '))[len('RESULT '):])
    assert out['devices'] == 2
    assert out['vmap']['mesh'] is None and out['vmap']['agent_devices'] == 1
    # one seed per device: agents and replay buffers sharded over both devices
    assert out['mesh_map']['mesh'] == {'seeds': 2, 'batch': 1}, out['mesh_map']
    assert out['mesh_map']['agent_devices'] == 2 and out['mesh_map']['buffer_devices'] == 2, out['mesh_map']
    reference = out['vmap']
    for name in ('mesh_map',):
        for d_ref, d in zip(reference['dirs'], out[name]['dirs']):
            rows_ref, rows = read_rows(os.path.join(d_ref, 'train.csv')), read_rows(os.path.join(d, 'train.csv'))
            assert [r['step'] for r in rows] == [r['step'] for r in rows_ref] == ['4', '8', '12', '16', '20']
            for key in ('training/critic/critic_loss', 'training/actor/actor_loss', 'online/buffer_size'):
                # equal to float tolerance: vmap batches the seeds' matmuls, map runs them one by one
                num = lambda rs: [float(r[key]) if r[key] else np.nan for r in rs]  # offline rows: no buffer column
                np.testing.assert_allclose(num(rows), num(rows_ref), rtol=1e-4, atol=1e-5, err_msg=f'{name} {key}')
        for p_ref, p in zip(reference['params'], out[name]['params']):
            for a, b in zip(p_ref, p):
                np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=name)


def test_balanced_batch_is_half_dataset_then_half_online_rows():
    """The published balanced batch: batch_size // 2 uniform dataset rows, then batch_size // 2 uniform rows of the
    online buffer's filled rows (never its empty rows, never the dataset)."""
    import jax
    import jax.numpy as jnp
    from floq_jax.core import replay
    from floq_jax.data import sampling

    n, obs_dim = 50, 3
    data = {k: jnp.zeros((n, obs_dim)) if 'observations' in k else jnp.zeros((n,)) for k in
            ('observations', 'next_observations', 'rewards', 'masks')}
    data['rewards'] = -jnp.arange(1, n + 1, dtype=jnp.float32)            # dataset rows: rewards -1 .. -n
    buffer = replay.empty({k: np.asarray(v) for k, v in data.items()}, capacity=8)
    assert int(buffer.size) == 0 and buffer.capacity == 8
    for j in range(3):                                                    # 3 online rows: rewards 100, 101, 102
        buffer = replay.add(buffer, {k: (jnp.float32(100 + j) if k == 'rewards' else jnp.zeros(data[k].shape[1:]))
                                     for k in data})
    draw = jax.jit(lambda key: sampling.balanced_batch(data, buffer, key, 21))
    seen_offline, seen_online = set(), set()
    for i in range(40):
        r = np.asarray(draw(jax.random.PRNGKey(i))['rewards'])
        assert r.shape == (20,)                                           # 2 * (21 // 2), as published
        assert np.all(r[:10] < 0) and np.all(r[:10] >= -n), r             # first half: dataset rows
        assert set(r[10:].tolist()) <= {100.0, 101.0, 102.0}, r           # second half: filled online rows only
        seen_offline.update(r[:10].tolist()), seen_online.update(r[10:].tolist())
    assert seen_online == {100.0, 101.0, 102.0} and len(seen_offline) > 40   # uniform over both


def test_balanced_sampling_run_keeps_only_online_rows_in_its_buffer(tmp_path):
    """An offline-to-online run with balanced sampling: the buffer holds the online transitions only (its size is
    the online step count), the checkpoint restores through load_run, and the run dir refuses the other mode."""
    import agents
    import pytest
    from floq_jax.training import restore, runner
    from floq_jax.training.options import RunDirConflict, RunOptions
    from tests.conftest import read_csv, tiny_cube_run

    env = 'cube-single-play-singletask-task1-v0'
    data, config = tiny_cube_run(tmp_path / 'cache', env)

    def options(balanced):
        return RunOptions(env_name=env, num_seeds=1, offline_steps=4, online_steps=6, steps_per_call=10,
                          log_interval=2, eval_interval=1000, save_interval=1000, eval_episodes=1, eval_at_start=False,
                          buffer_size=20, balanced_sampling=balanced, save_dir=str(tmp_path / 'runs'),
                          tensorboard=False, progress=False, use_mesh=False, log_diagnostics=False,
                          eval_kwargs=dict(vector_mode='sync', max_episode_steps=5))

    cls = agents.agent_class(config.agent_name)
    (d,) = runner.run_offline_to_online(cls, config, data, options(True))
    sizes = [float(r['online/buffer_size']) for r in read_csv(os.path.join(d, 'train.csv')) if r['online/buffer_size']]
    assert sizes == [2.0, 4.0, 6.0], sizes       # online rows only (without balancing: the dataset's 100 rows + k)
    _, state, _, step, _, flags = restore.load_run(d, agents.agent_class)
    assert step == 10 and flags['balanced_sampling'] is True
    assert int(state['extra'].size) == 6 and state['extra'].capacity == 20
    with pytest.raises(RunDirConflict, match='balanced_sampling'):
        runner.run_offline_to_online(cls, config, data, options(False))
    # Balanced sampling draws from the device dataset: a run sampling on the host is refused before it writes anything.
    import dataclasses

    from floq_jax.training.options import OptionError

    with pytest.raises(OptionError, match='balanced sampling draws its dataset half on the device'):
        runner.run_offline_to_online(cls, config, data, dataclasses.replace(options(True), host_sampling=True,
                                                                            run_group='host'))
    assert not os.path.exists(tmp_path / 'runs' / 'host')
