"""The online phase uses the offline chunks' seed dispatcher: a run with seeds lax.map'ed on a 2-device CPU mesh (one
seed per device, agents and replay buffers sharded) equals, to float tolerance, the run with seeds vmapped on one
device."""

import json
import os
import subprocess
import sys

import numpy as np
from tests.conftest import subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r'''
import json, sys
import jax, numpy as np
import agents
from floq_jax.data import ensure_generated_dataset, load_offline_data
from floq_jax.training import restore, runner
from floq_jax.training.options import RunOptions
from tests.conftest import small_floq_config

ENV = 'cube-single-play-singletask-task1-v0'
save_dir, cache = sys.argv[1], sys.argv[2]
path = ensure_generated_dataset('cube-single-play-v0', num_episodes=3, seed=0, max_episode_steps=100,
                                cache_dir=cache, num_workers=1)
data = load_offline_data(ENV, dataset_path=path)
config = small_floq_config(batch_size=16, block_width=32, actor_hidden_dims=(32, 32), value_hidden_dims=(32, 32),
                           noise_samples=2, critic_flow_steps=2, actor_flow_steps=2)
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
