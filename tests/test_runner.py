"""The training runner: SIGKILL + resume reproduces an uninterrupted run exactly; NaN stops; presets; evaluate."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import agents
from floq_jax import presets
from floq_jax.training import restore
from floq_jax.training.loop import chunk_schedule
from floq_jax.training.options import RunOptions
from tests.conftest import REPO, digest, read_csv, scaled_flags, subprocess_env

ENV = 'cube-single-play-singletask-task1-v0'
TINY = scaled_flags('floq', 'small')


@pytest.fixture(scope='session')
def tiny_dataset(tmp_path_factory):
    from floq_jax.data import ensure_generated_dataset

    return ensure_generated_dataset('cube-single-play-v0', num_episodes=3, seed=0, max_episode_steps=100,
                                    cache_dir=str(tmp_path_factory.mktemp('data_cache')), num_workers=1)


def train_cmd(dataset, save_dir, group, steps=400, extra=()):
    return [sys.executable, '-m', 'experiments.train_offline', f'--env_name={ENV}', f'--dataset_path={dataset}',
            f'--offline_steps={steps}', '--steps_per_call=50', '--log_interval=50', '--eval_interval=200',
            '--save_interval=100', '--eval_episodes=2', '--max_checkpoints=10', '--eval_num_steps=2',
            f'--save_dir={save_dir}', f'--run_group={group}', '--noprogress', '--notensorboard', *TINY, *extra]


def paused_cmd(cmd, step):
    """``cmd`` (python -m <entrypoint> ...) run through tests.hooks: it blocks after ``step`` and prints 'PAUSED'."""
    return [cmd[0], '-m', 'tests.hooks', str(step), *cmd[2:]]


def online_cmd(dataset, save_dir):
    return [sys.executable, '-m', 'experiments.train_offline_to_online', f'--env_name={ENV}',
            f'--dataset_path={dataset}', '--offline_steps=50', '--online_steps=30', '--utd_ratio=2',
            '--buffer_size=10', '--steps_per_call=25', '--log_interval=10', '--eval_interval=80', '--save_interval=40',
            '--eval_episodes=1', '--noeval_at_start', f'--save_dir={save_dir}', '--run_group=online', '--noprogress',
            '--notensorboard', *TINY]


def seed_dir(save_dir, group):
    return os.path.join(save_dir, group, ENV, 'floq', 'seed0')


@pytest.fixture(scope='module')
def runs(tiny_dataset, tmp_path_factory):
    """Concurrent subprocesses: a run SIGKILLed after step 250, one with lr=1e30 (diverges), an offline-to-online run,
    and the uninterrupted run.  The uninterrupted run starts once the killed one has paused: by then every program of their
    shared config is in the session's compilation cache, so it loads them instead of compiling them a second time."""
    save_dir = str(tmp_path_factory.mktemp('runs'))
    env = subprocess_env()
    popen = lambda cmd, **kw: subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                               text=True, **kw)
    # The hook blocks this run after step 250 (checkpoints 100 and 200 durable, rows up to 250 logged).
    killed = popen(paused_cmd(train_cmd(tiny_dataset, save_dir, 'killed'), 250), env=env)
    # lr=nan is refused up front (agents' CONFIG_RANGES); a finite but absurd lr diverges to nan in the first updates
    nan = popen(train_cmd(tiny_dataset, save_dir, 'nan', steps=200, extra=['--agent.lr=1e30']), env=env)
    online = popen(online_cmd(tiny_dataset, save_dir), env=env)
    try:
        line, deadline = '', time.time() + 300
        while 'PAUSED' not in line and time.time() < deadline and killed.poll() is None:
            line = killed.stdout.readline()
        paused = 'PAUSED 250' in line
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    full = popen(train_cmd(tiny_dataset, save_dir, 'full'), env=env)
    outs = {name: (p.communicate(timeout=300), p.returncode)
            for name, p in (('full', full), ('nan', nan), ('online', online))}
    assert paused, f'run did not reach the pause hook (rc={killed.returncode})'
    (_, err), rc = outs['full']
    assert rc == 0, err[-2000:]
    return dict(save_dir=save_dir, full=seed_dir(save_dir, 'full'), killed=seed_dir(save_dir, 'killed'),
                nan=outs['nan'], online=outs['online'], cmd=train_cmd(tiny_dataset, save_dir, 'killed'))


@pytest.fixture(scope='module')
def full_run(runs):
    return runs['save_dir'], runs['full']


@pytest.mark.subprocess
def test_sigkill_then_resume_equals_uninterrupted_run(tiny_dataset, runs):
    full, killed, cmd = runs['full'], runs['killed'], runs['cmd']
    assert max(int(r['step']) for r in read_csv(os.path.join(killed, 'train.csv'))) == 250
    assert sorted(int(os.path.basename(p)) for p in glob.glob(os.path.join(killed, 'checkpoints', '*'))) == [100, 200]
    # Corrupt the newest checkpoint: resume must skip it (warning) and restart from step 100.
    for path in glob.glob(os.path.join(killed, 'checkpoints', '200', 'state', '**', '*'), recursive=True):
        if os.path.isfile(path) and 'commit_success' not in path:
            with open(path, 'wb') as f:
                f.write(b'garbage')
    out = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'Skipping corrupt or partial checkpoint' in out.stderr or 'not usable' in out.stderr

    full_train, resumed_train = read_csv(os.path.join(full, 'train.csv')), read_csv(os.path.join(killed, 'train.csv'))
    assert [r['step'] for r in full_train] == [str(s) for s in range(50, 401, 50)]
    assert resumed_train == full_train  # exact: the same text for every value
    full_eval, resumed_eval = read_csv(os.path.join(full, 'eval.csv')), read_csv(os.path.join(killed, 'eval.csv'))
    assert [r['step'] for r in full_eval] == ['0', '200', '400']
    assert {'evaluation/success', 'evaluation/return', 'evaluation/length', 'evaluation/q_K2'} <= set(full_eval[0])
    assert resumed_eval == full_eval
    assert digest(killed, 400) == digest(full, 400)  # SHA-256 over every leaf of the final agent state
    assert digest(killed, 300) == digest(full, 300)
    assert digest(full, 400) != digest(full, 300)

    flags = json.load(open(os.path.join(killed, 'flags.json')))
    assert flags['agent']['block_width'] == 32 and flags['data_source'] == 'generated'
    assert flags['generator']['episodes'] == 3 and flags['dataset_file'] == tiny_dataset
    assert flags['env_name'] == ENV and flags['seed'] == 0 and flags['offline_steps'] == 400


@pytest.mark.subprocess
def test_foreign_run_dir_is_refused(tiny_dataset, full_run):
    save_dir, full = full_run
    before = open(os.path.join(full, 'train.csv')).read()
    out = subprocess.run(train_cmd(tiny_dataset, save_dir, 'full', extra=['--agent.block_width=64']), cwd=REPO,
                         env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert 'belongs to another run' in out.stderr and 'agent.block_width: 32 -> 64' in out.stderr
    assert open(os.path.join(full, 'train.csv')).read() == before


@pytest.mark.subprocess
def test_evaluate_checkpoint_at_several_k(full_run):
    _, full = full_run
    out = subprocess.run([sys.executable, '-m', 'experiments.evaluate', f'--run_dir={full}', '--step=200',
                          '--eval_episodes=2', '--num_steps=1,4'], cwd=REPO, env=subprocess_env(),
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.load(open(os.path.join(full, 'evaluations', 'step200.json')))
    assert summary['step'] == 200 and 0.0 <= summary['success'] <= 1.0 and summary['episodes'] == 2
    assert set(summary['q_estimates']) == {'1', '4'}
    assert all(np.isfinite(v) for v in summary['q_estimates'].values())
    # The step-200 evaluation in eval.csv used the same episodes, noise and policy (its evaluation seed comes from
    # the run seed and the step): the same results.
    row = [r for r in read_csv(os.path.join(full, 'eval.csv')) if r['step'] == '200'][0]
    for key in ('success', 'return', 'length'):
        assert summary[key] == pytest.approx(float(row[f'evaluation/{key}']))
    assert summary['eval_seeding'] == 'per_evaluation' and summary['success_timing'] == 'post'


@pytest.mark.subprocess
def test_nan_loss_stops_with_clear_message(runs):
    (_, err), rc = runs['nan']
    assert rc == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith('error: training metric ') and 'at step 50' in last and 'is nan' in last, last
    assert not glob.glob(os.path.join(seed_dir(runs['save_dir'], 'nan'), 'checkpoints', '[0-9]*'))


def test_chunk_schedule_clips_at_boundaries():
    assert chunk_schedule(0, 250, 100, (60,)) == [(0, 60), (60, 60), (120, 60), (180, 60), (240, 10)]
    assert chunk_schedule(100, 300, 1000, (100, 150)) == [(100, 50), (150, 50), (200, 100)]
    with pytest.raises(ValueError, match='steps_per_call'):
        RunOptions(env_name='x', steps_per_call=0).validate()


def test_published_presets():
    from agents import floq, fql

    c = floq.get_config()
    applied = presets.apply_preset(c, 'antmaze-giant-navigate-singletask-v0', 'published', user_keys={'alpha'})
    assert c.discount == 0.995 and c.q_agg == 'min' and c.batch_size == 512 and c.critic_flow_steps == 4
    assert c.alpha == floq.get_config().alpha and 'alpha' not in applied  # the user's value wins
    c = fql.get_config()
    applied = presets.apply_preset(c, 'cube-single-play-singletask-task2-v0', 'published')
    assert applied == {'alpha': 300.0} and 'block_depth' not in c
    c = floq.get_config()
    presets.apply_preset(c, 'puzzle-4x4-play-singletask-v0', 'published')
    assert (c.alpha, c.noise_coverage) == (1000.0, 0.25)
    assert presets.published_overrides('pointmaze-medium-navigate-singletask-v0', 'floq') == {}
    assert presets.default_task('cube-double-play-singletask-v0') == 2
    assert presets.default_task('puzzle-3x3-play-singletask-v0') == 4
    assert presets.default_task('antmaze-large-navigate-singletask-v0') == 1
    with pytest.raises(ValueError, match='preset'):
        presets.apply_preset(floq.get_config(), 'scene-play-singletask-v0', 'paper')


@pytest.mark.subprocess
def test_offline_to_online_smoke(runs):
    (_, err), rc = runs['online']
    assert rc == 0, err[-2000:]
    d = seed_dir(runs['save_dir'], 'online')
    rows = read_csv(os.path.join(d, 'train.csv'))
    assert [int(r['step']) for r in rows] == list(range(10, 81, 10))
    assert all(r['online/buffer_size'] == '' for r in rows[:5])  # offline rows
    assert all(np.isfinite(float(r['training/critic/critic_loss'])) for r in rows)
    agent, state, metadata, step, data, flags = restore.load_run(d, agents.agent_class)
    n = len(data.train['observations'])
    assert step == 80 and int(agent.step) == 50 + 30 * 2  # utd_ratio 2
    buffer = state['extra']
    assert buffer.data['observations'].shape[0] == n + 1  # capacity: max(buffer_size, dataset + 1)
    assert int(buffer.size) == n + 1 and int(buffer.pointer) == (n + 30) % (n + 1)  # wrapped around
    assert [float(r['online/buffer_size']) for r in rows[5:]] == [n + 1] * 3
    # Per-seed online episode return / success columns (issue 14.12); no 200-step episode ends in 30 env steps.
    assert [r['online/episodes'] for r in rows[5:]] == ['0'] * 3 and 'online/episode_success' in rows[5]
    # The newest rows hold online transitions: not the dataset's.
    newest = np.asarray(buffer.data['observations'][int(buffer.pointer) - 1])
    assert not np.any(np.all(np.isclose(data.train['observations'], newest), axis=1))
    assert [r['step'] for r in read_csv(os.path.join(d, 'eval.csv'))] == ['50', '80']


def test_replay_buffer_add_and_sample():
    import jax
    from floq_jax.core import replay

    arrays = {'observations': np.arange(6, dtype=np.float32).reshape(3, 2), 'rewards': np.zeros(3, np.float32)}
    buffer = replay.from_dataset(arrays, replay.capacity_for(3, 4))
    add = jax.jit(replay.add)
    for i in range(3):
        buffer = add(buffer, {'observations': np.full(2, 10.0 + i, np.float32), 'rewards': np.float32(1.0)})
    assert buffer.capacity == 4 and int(buffer.size) == 4 and int(buffer.pointer) == 2
    np.testing.assert_array_equal(np.asarray(buffer.data['observations'][:, 0]), [11.0, 12.0, 4.0, 10.0])
    batch = jax.jit(replay.sample, static_argnums=2)(buffer, jax.random.PRNGKey(0), 64)
    assert set(np.asarray(batch['observations'][:, 0]).tolist()) <= {11.0, 12.0, 4.0, 10.0}


def test_config_schedule_freezes_trunk_logs_diagnostics_and_resumes(tiny_dataset, tmp_path):
    """config_schedule switches freeze_critic_trunk on at step 20 (trunk stops changing, the output layer keeps
    training, a resumed run restores the frozen agent); every log row has finite 'diagnostics/...' columns."""
    import jax

    from agents import agent_class
    from floq_jax.training import parallel, runner
    from floq_jax.training.checkpoints import Checkpointer
    from floq_jax.data import load_offline_data, sampling
    from tests.conftest import scaled

    data = load_offline_data(ENV, dataset_path=tiny_dataset)
    config = scaled('floq', 'small')
    runner.set_reward_range(config, data)

    def options(steps):
        return RunOptions(env_name=ENV, num_seeds=1, offline_steps=steps, steps_per_call=30, log_interval=10,
                          eval_interval=1000, save_interval=10, eval_episodes=1, eval_at_start=False,
                          max_checkpoints=None, save_dir=str(tmp_path), run_group='sched', tensorboard=False,
                          progress=False, use_mesh=False, config_schedule=[(20, {'freeze_critic_trunk': True})],
                          eval_kwargs=dict(vector_mode='sync', max_episode_steps=5))

    assert chunk_schedule(0, 40, 30, (100,), boundaries=(20,)) == [(0, 20), (20, 20)]
    (d,) = runner.run_offline(agents.agent_class(config.agent_name), config, data, options(30))
    (d,) = runner.run_offline(agents.agent_class(config.agent_name), config, data, options(40))  # resumes from step 30 (frozen config restored)
    rows = read_csv(os.path.join(d, 'train.csv'))
    assert [int(r['step']) for r in rows] == [10, 20, 30, 40]
    for key in ('diagnostics/straightness', 'diagnostics/velocity_spread', 'diagnostics/q_change',
                'diagnostics/feature_norm', 'diagnostics/effective_rank', 'diagnostics/dormant_0'):
        assert all(np.isfinite(float(r[key])) for r in rows), key
    with open(os.path.join(d, 'flags.json')) as f:
        assert json.load(f)['config_schedule'] == [[20, {'freeze_critic_trunk': True}]]

    arrays = sampling.batch_arrays(data.train)
    cls = agent_class('floq')

    def params(step, frozen):
        cfg = config.copy_and_resolve_references()
        cfg.freeze_critic_trunk = frozen
        target = {'agent': cls.create(0, arrays['observations'][:1], arrays['actions'][:1], cfg),
                  'data_rng': parallel.seed_rngs([0])[0]}
        c = Checkpointer(os.path.join(d, "checkpoints"), verify=False)  # only the params matter here
        try:
            return jax.device_get(c.restore(jax.device_get(target), step=step)[0]['agent'].params['critic_flow'])
        finally:
            c.close()

    p10, p20, p40 = params(10, False), params(20, True), params(40, True)
    flat = lambda p: {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(p)}
    f10, f20, f40 = flat(p10), flat(p20), flat(p40)
    trunk = [k for k in f20 if 'output' not in k]
    out = [k for k in f20 if 'output' in k]
    assert trunk and out
    assert any(not np.array_equal(f10[k], f20[k]) for k in trunk)  # trained before step 20
    assert all(np.array_equal(f20[k], f40[k]) for k in trunk)  # frozen after
    assert any(not np.array_equal(f20[k], f40[k]) for k in out)

