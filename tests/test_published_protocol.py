"""The published protocol is the default (issue 13): noisy evaluation, a reward range holding 0, a 2M replay
buffer, the offline-to-online and FQL per-environment tables, --preset=published run lengths, FQL-ResNet sizes.

Each test fails on the behaviour before the change (deterministic evaluation, dataset-only reward range, 1M buffer,
floq's values for FQL, a preset that never set the run lengths, a FLOP-matched 13-block FQL-ResNet)."""

import json
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from floq_jax import presets
from floq_jax.training import evaluate, rundirs
from floq_jax.training.options import RunDirConflict, RunOptions
from tests.conftest import REPO, scaled_flags, subprocess_env

ENV = 'cube-single-play-singletask-task1-v0'
HMAZE_L = 'humanoidmaze-large-navigate-singletask-v0'
ANTSOCCER = 'antsoccer-arena-navigate-singletask-v0'


def fake_data(rewards):
    rewards = np.asarray(rewards, np.float32)
    return types.SimpleNamespace(train={'rewards': rewards}, val=None, source='generated', generator=None,
                                 dataset_file='/x.npz', reward_range=(float(rewards.min()), float(rewards.max())))


# ----------------------------------------------------------------------------- 1. evaluation actions


def test_default_evaluation_is_the_published_noisy_one_step_policy():
    from floq_jax.envs import evaluation
    from floq_jax.training import runner
    from tests.conftest import small_floq_config

    options = runner.RunOptions(env_name=ENV)
    assert options.eval_protocol == 'published' and presets.eval_temperature(options.eval_protocol) == 1.0
    assert presets.eval_temperature('deterministic') == 0.0
    with pytest.raises(ValueError, match='eval_protocol'):
        runner.RunOptions(env_name=ENV, eval_protocol='greedy').validate()
    # The evaluation policy at the default protocol samples: two keys, two actions (deterministic: one).
    from agents import floq

    agent = floq.FloqAgent.create(0, jnp.zeros((1, 6)), jnp.zeros((1, 2)), small_floq_config())
    policy = evaluate.policy_fn_for(agent)
    obs = np.zeros((4, 6), np.float32)
    t = presets.eval_temperature(options.eval_protocol)
    a0, a1 = (np.asarray(policy(obs, jax.random.split(jax.random.PRNGKey(k), 4), t)) for k in (0, 1))
    assert not np.allclose(a0, a1) and np.all(np.abs(a0) <= 1.0)
    d0, d1 = (np.asarray(policy(obs, jax.random.split(jax.random.PRNGKey(k), 4), 0.0)) for k in (0, 1))
    np.testing.assert_array_equal(d0, d1)
    # The evaluator's own default is the published noise too.
    seen = []

    def recording_policy(o, rng, temperature):
        seen.append(temperature)
        return np.zeros((len(o), 5), np.float32)

    evaluation.evaluate(recording_policy, 'cube-single-play-singletask-task2-v0', num_episodes=1, parallel=False,
                        max_episode_steps=2)
    assert seen and set(seen) == {1.0}


def test_flags_json_records_the_evaluation_protocol(tmp_path):
    from tests.conftest import small_floq_config

    record = rundirs.flags_record(small_floq_config(), fake_data([-1.0, 0.0]), RunOptions(env_name=ENV), 0)
    assert record['eval_protocol'] == 'published'
    assert record['eval_protocol_description'] == 'one-step policy, noise N(0, I), clipped to [-1, 1] (published)'
    # A run dir evaluated under another protocol is not continued with this one.
    d = tmp_path / 'run'
    d.mkdir()
    old = dict(record, eval_protocol='deterministic')
    (d / 'flags.json').write_text(json.dumps(old))
    with pytest.raises(RunDirConflict, match='eval_protocol'):
        rundirs.check_run_dir(str(d), record, resume=True)
    assert rundirs.check_run_dir(str(d), old, resume=True)


def test_every_results_table_names_the_evaluation_protocol(tmp_path):
    from floq_jax.analysis import report

    def make_run(group, seed, flags):
        d = tmp_path / group / ENV / 'floq' / f'seed{seed}'
        d.mkdir(parents=True)
        (d / 'flags.json').write_text(json.dumps(dict(env_name=ENV, agent_name='floq', seed=seed,
                                                      data_source='generated', **flags)))
        (d / 'eval.csv').write_text('step,evaluation/success\n10,0.5\n20,0.6\n')

    make_run('new', 0, {'eval_protocol': 'published'})
    make_run('new', 1, {'eval_protocol': 'published'})
    paths = report.write_report(str(tmp_path / 'new'), reps=50)
    md = open(paths['results.md']).read()
    assert 'evaluation: one-step policy, noise N(0, I), clipped to [-1, 1] (published)' in md
    assert 'published' in open(paths['results.csv']).read()
    make_run('mixed', 0, {'eval_protocol': 'published'})
    make_run('mixed', 1, {})  # recorded nothing: the old default (temperature 0)
    md = report.to_markdown(report.results_table(report.load_runs(str(tmp_path / 'mixed')), reps=50))
    assert 'evaluation: MIXED' in md and 'deterministic' in md
    assert presets.eval_protocol_of({'eval_temperature': 1.0}) == 'published'


# ----------------------------------------------------------------------------- 2. reward range


def test_reward_range_includes_zero_as_published():
    from agents import floq
    from floq_jax.core import flow
    from floq_jax.training import runner
    from floq_jax import sweeps

    data = fake_data(-np.ones(100))  # every reward -1 (e.g. a sparse-reward task never solved in the data)
    config = floq.get_config()
    runner.set_reward_range(config, data)
    assert (config.r_min, config.r_max) == (-1.0, 0.0)
    low, high = flow.noise_interval(config.r_min, config.r_max, config.discount, config.noise_coverage)
    assert low < high  # the dataset-only range [-1, -1] collapses the noise interval to a point
    runner.set_reward_range(config, data, 'dataset')
    assert (config.r_min, config.r_max) == (-1.0, -1.0)
    assert presets.reward_range([0.5, 2.0]) == (0.0, 2.0) and presets.reward_range([0.5, 2.0], 'dataset') == (0.5, 2.0)
    with pytest.raises(ValueError, match='reward_range'):
        presets.reward_range([1.0], 'buffer')
    # The sweeps use the same rule.
    c = sweeps.make_config(sweeps.Variant('floq'), sweeps.SMOKE_ENV, 'smoke', agents, data)
    assert (c.r_min, c.r_max) == (-1.0, 0.0)


# ----------------------------------------------------------------------------- 3. / 5. per-environment tables


def test_offline_to_online_and_fql_tables():
    from agents import floq, fql

    floq_o2o = presets.published_overrides(HMAZE_L, 'floq', 'offline_to_online')
    assert floq_o2o['critic_flow_steps'] == 16 and floq_o2o['alpha'] == 20.0
    assert 'critic_flow_steps' not in presets.published_overrides(HMAZE_L, 'floq')
    assert presets.published_overrides(ANTSOCCER, 'floq', 'offline_to_online')['alpha'] == 30.0
    assert presets.published_overrides(ANTSOCCER, 'floq')['alpha'] == 10.0
    # FQL gets its own values, chosen by config.agent_name.
    c = fql.get_config()
    applied = presets.apply_preset(c, HMAZE_L, 'published')
    assert c.alpha == 30.0 and applied == dict(discount=0.995, batch_size=512, alpha=30.0)
    c = fql.get_config()
    presets.apply_preset(c, HMAZE_L, 'published', mode='offline_to_online')
    assert (c.alpha, c.batch_size, c.discount) == (40.0, 512, 0.995)
    c = fql.get_config()
    presets.apply_preset(c, 'antmaze-large-navigate-singletask-v0', 'published')
    assert c.q_agg == 'min'  # FQL's README; floq's antmaze-large keeps 'mean'
    c = fql.get_config()
    presets.apply_preset(c, 'humanoidmaze-medium-navigate-singletask-v0', 'published', mode='offline_to_online')
    assert c.alpha == 100.0
    c = fql.get_config()
    presets.apply_preset(c, 'cube-single-play-singletask-v0', 'published', mode='offline_to_online')
    assert c.alpha == 300.0  # no FQL O2O entry: its offline value
    c = fql.get_config('resnet')
    presets.apply_preset(c, HMAZE_L, 'published')
    assert c.alpha == 20.0  # the floq README's FQL-ResNet command
    c = floq.get_config()
    presets.apply_preset(c, HMAZE_L, 'published', user_keys={'alpha'})
    assert c.alpha == floq.get_config().alpha and c.batch_size == 512
    with pytest.raises(ValueError, match='mode'):
        presets.published_overrides(HMAZE_L, 'floq', 'online')


@pytest.mark.subprocess
def test_replay_buffer_default_is_the_published_two_million():
    from floq_jax.core import replay
    from floq_jax.training import runner

    assert runner.RunOptions(env_name=ENV).buffer_size == 2_000_000
    assert replay.capacity_for(1_000_000, runner.RunOptions(env_name=ENV).buffer_size) == 2_000_000
    out = subprocess.run([sys.executable, '-m', 'experiments.train_offline_to_online', '--helpfull'], cwd=REPO,
                         env=subprocess_env(), capture_output=True, text=True,
                         timeout=300)
    text = out.stdout + out.stderr
    block = text[text.index('--buffer_size:'):][:400]
    assert "(default: '2000000')" in block, block
    block = text[text.index('--eval_protocol:'):][:600]
    assert "(default: 'published')" in block, block


# ----------------------------------------------------------------------------- 4. --preset=published run lengths


def _protocol_flags(argv, online):
    from absl import flags

    fv = flags.FlagValues()
    flags.DEFINE_string('preset', None, '', flag_values=fv)
    for name, default in (('offline_steps', 1_000_000), ('eval_interval', 20000), ('eval_episodes', 50)):
        flags.DEFINE_integer(name, default, '', flag_values=fv)
    if online:
        for name, default in (('online_steps', 1_000_000), ('utd_ratio', 1), ('buffer_size', 2_000_000)):
            flags.DEFINE_integer(name, default, '', flag_values=fv)
    fv(['prog', *argv])
    return fv


def test_preset_published_applies_run_lengths_unless_set(monkeypatch):
    from experiments import common

    fv = _protocol_flags(['--preset=published', '--eval_interval=1000'], online=False)
    monkeypatch.setattr(common, 'FLAGS', fv)
    applied = common.apply_protocol_preset()
    assert applied == {'offline_steps': 2_000_000, 'eval_episodes': 50}
    assert (fv.offline_steps, fv.eval_interval, fv.eval_episodes) == (2_000_000, 1000, 50)
    assert common.apply_protocol_preset() == applied  # idempotent
    fv = _protocol_flags(['--preset=published', '--online_steps=5'], online=True)
    monkeypatch.setattr(common, 'FLAGS', fv)
    applied = common.apply_protocol_preset()
    assert (fv.offline_steps, fv.online_steps, fv.buffer_size) == (1_000_000, 5, 2_000_000)
    assert 'online_steps' not in applied and applied['offline_steps'] == 1_000_000
    fv = _protocol_flags([], online=False)
    monkeypatch.setattr(common, 'FLAGS', fv)
    assert common.apply_protocol_preset() == {} and fv.offline_steps == 1_000_000


@pytest.mark.subprocess
def test_train_offline_preset_published_records_protocol_in_flags_json(tmp_path):
    """End to end: --preset=published sets 2M offline steps, evaluation every 20k over 50 episodes (the user's
    --offline_steps would win; here it is not given); flags.json records them, the evaluation protocol and the
    reward range.  The run is stopped after its first 10-step chunk (test hook) and killed."""
    from floq_jax.data import ensure_generated_dataset

    dataset = ensure_generated_dataset('cube-single-play-v0', num_episodes=3, seed=0, max_episode_steps=100,
                                       cache_dir=str(tmp_path / 'cache'), num_workers=1)
    cmd = [sys.executable, '-m', 'experiments.train_offline', f'--env_name={ENV}', f'--dataset_path={dataset}',
           '--preset=published', '--steps_per_call=10', '--log_interval=10', '--noeval_at_start', '--noprogress',
           '--notensorboard', f'--save_dir={tmp_path / "runs"}', *scaled_flags('floq', 'small')]
    env = subprocess_env()
    proc = subprocess.Popen([sys.executable, '-m', 'tests.hooks', '10', *cmd[2:]], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        while line and not line.startswith('PAUSED'):
            line = proc.stdout.readline()
        assert line.startswith('PAUSED 10'), proc.stderr.read()[-2000:]
    finally:
        proc.kill()
        proc.wait()
    flags = json.load(open(tmp_path / 'runs' / 'default' / ENV / 'floq' / 'seed0' / 'flags.json'))
    assert flags['preset_protocol_applied'] == {'offline_steps': 2_000_000, 'eval_interval': 20_000,
                                                'eval_episodes': 50}
    assert (flags['offline_steps'], flags['eval_interval'], flags['eval_episodes']) == (2_000_000, 20_000, 50)
    assert flags['preset_applied'] == {'alpha': 300.0}  # block_depth was given on the command line
    assert flags['eval_protocol'] == 'published' and flags['reward_range'] == 'published'
    assert flags['agent']['r_min'] <= 0.0 <= flags['agent']['r_max']


# ----------------------------------------------------------------------------- 5. FQL-ResNet sizes


def test_fql_resnet_published_sizes_and_flop_matched_option():
    from agents import fql

    c = fql.get_config('resnet')
    assert (c.agent_name, c.critic_use_resnet, c.critic_resnet_width) == ('fql_resnet', True, 512)
    assert (c.critic_resnet_blocks, c.critic_resnet_block_depth) == (4, 2)  # depth 2 x 4 blocks
    assert fql.get_config('resnet_depth2x4').to_dict() == c.to_dict()
    c = fql.get_config('resnet_depth4x2')
    assert (c.critic_resnet_blocks, c.critic_resnet_block_depth) == (2, 4)
    c = fql.get_config('resnet_flop_matched')
    assert (c.critic_resnet_blocks, c.critic_resnet_block_depth) == (fql.matched_resnet_blocks(), 2) == (13, 2)
    with pytest.raises(ValueError, match='resnet_flop_matched'):
        fql.get_config('resnet9')
