"""The evaluation protocol beyond the policy noise: OGBench's success timing of every env the project makes, fresh
episodes and noise at each evaluation (from seed and step), and how both are recorded and checked in run dirs and
named in results tables."""

import json
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from floq_jax import presets
from floq_jax.envs import envs as envs_lib
from floq_jax.envs import evaluation
from floq_jax.training import rundirs
from floq_jax.training.options import OptionError, RunDirConflict, RunOptions
from tests.conftest import REPO, small_floq_config, subprocess_env

ENV = 'cube-single-play-singletask-task2-v0'


def fake_data():
    return types.SimpleNamespace(train={'rewards': np.asarray([-1.0, 0.0], np.float32)}, val=None,
                                 source='generated', generator=None, dataset_file='/x.npz', reward_range=(-1.0, 0.0))


# ----------------------------------------------------------------------------- success timing


def test_success_timing_defaults_to_the_published_post_and_reaches_the_env():
    assert RunOptions(env_name=ENV).success_timing == 'post' == presets.DEFAULT_SUCCESS_TIMING
    with pytest.raises(OptionError, match='success_timing=later: accepted: post, pre'):
        RunOptions(env_name=ENV, success_timing='later').validate()
    for timing in ('post', 'pre'):
        env = envs_lib.pooled_env(ENV, success_timing=timing)
        try:
            assert env.unwrapped._success_timing == timing
        finally:
            env.close()
    # The evaluator's sub-envs (what SeedEvaluation builds from options.success_timing).
    with evaluation.seeds_evaluator(ENV, 1, 1, pool_size=1, vector_mode='sync', success_timing='post') as ev:
        assert ev.env.envs[0].unwrapped._success_timing == 'post'


def test_training_evaluation_and_online_phase_make_envs_with_the_run_timing(monkeypatch):
    from floq_jax.training import evaluate, online

    made = []

    class Made(Exception):
        pass

    def fake_pooled_env(name, **kwargs):
        made.append(kwargs)
        raise Made

    def fake_seeds_evaluator(name, episodes, num_seeds, **kwargs):
        made.append(kwargs)
        raise Made

    monkeypatch.setattr(envs_lib, 'pooled_env', fake_pooled_env)
    monkeypatch.setattr(evaluation, 'seeds_evaluator', fake_seeds_evaluator)
    options = RunOptions(env_name=ENV, success_timing='pre', eval_num_steps=())
    with pytest.raises(Made):
        online.OnlinePhase(options, 8).begin(types.SimpleNamespace(seeds=[0]))
    with pytest.raises(Made):
        evaluate.SeedEvaluation(options, None)(types.SimpleNamespace(seeds=[0], step=0))
    assert [m['success_timing'] for m in made] == ['pre', 'pre']


def test_flags_json_records_timing_and_seeding_and_old_run_dirs_read_as_what_they_ran(tmp_path):
    record = rundirs.flags_record(small_floq_config(), fake_data(), RunOptions(env_name=ENV), 0)
    assert record['success_timing'] == 'post' and record['eval_seeding'] == 'per_evaluation'
    d = tmp_path / 'run'
    d.mkdir()
    # A run dir written before this change: no keys; it ran ogbench 1.2.2's 'pre' with fixed evaluation seeds.
    old = {k: v for k, v in record.items() if k not in ('success_timing', 'eval_seeding')}
    assert presets.success_timing_of(old) == 'pre' and presets.eval_seeding_of(old) == 'fixed'
    (d / 'flags.json').write_text(json.dumps(old))
    with pytest.raises(RunDirConflict, match="success_timing 'pre'.*--success_timing=pre to continue it"):
        rundirs.check_run_dir(str(d), record, resume=True)
    with pytest.raises(RunDirConflict, match="eval_seeding 'fixed'.*--eval_seeding=fixed"):
        rundirs.check_run_dir(str(d), dict(record, success_timing='pre'), resume=True)
    # Continued with the values it ran: resumes.
    assert rundirs.check_run_dir(str(d), dict(record, success_timing='pre', eval_seeding='fixed'), resume=True)
    (d / 'flags.json').write_text(json.dumps(dict(record, success_timing='pre')))
    with pytest.raises(RunDirConflict, match='refusing to mix'):
        rundirs.check_run_dir(str(d), record, resume=True)


def test_results_tables_name_the_success_timing(tmp_path):
    from floq_jax.analysis import report

    def make_run(group, seed, flags):
        d = tmp_path / group / ENV / 'floq' / f'seed{seed}'
        d.mkdir(parents=True)
        (d / 'flags.json').write_text(json.dumps(dict(env_name=ENV, agent_name='floq', seed=seed,
                                                      data_source='generated', eval_protocol='published', **flags)))
        (d / 'eval.csv').write_text('step,evaluation/success\n10,0.5\n20,0.6\n')

    for seed in (0, 1):
        make_run('new', seed, dict(success_timing='post', eval_seeding='per_evaluation'))
    paths = report.write_report(str(tmp_path / 'new'), reps=50)
    md = open(paths['results.md']).read()
    assert "protocol: success timing 'post': reward, termination and success from the next state s'" in md
    assert 'fresh episode seeds and action noise at each evaluation' in md
    csv = open(paths['results.csv']).read()
    assert 'success_timing' in csv.splitlines()[0] and ',post,' in csv
    make_run('mixed', 0, dict(success_timing='post'))
    make_run('mixed', 1, {})  # written before flags.json recorded it: 'pre'
    md = report.to_markdown(report.results_table(report.load_runs(str(tmp_path / 'mixed')), reps=50))
    assert 'protocol: MIXED' in md and "success timing 'pre'" in md and "success timing 'post'" in md


@pytest.mark.subprocess
def test_bad_success_timing_flag_is_one_line_exit_2(tmp_path):
    out = subprocess.run([sys.executable, '-m', 'experiments.train_offline', '--success_timing=later',
                          f'--save_dir={tmp_path / "runs"}', '--offline_steps=10'], cwd=REPO, env=subprocess_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == 'error: --success_timing=later: accepted: post, pre', out.stderr
    assert not (tmp_path / 'runs').exists()


# ----------------------------------------------------------------------------- fresh randomness per evaluation


def test_evaluation_seed_is_a_function_of_seed_and_step():
    s = [evaluation.evaluation_seed(3, step) for step in (0, 20000, 40000)]
    assert len(set(s)) == 3 and s[0] == evaluation.evaluation_seed(3, 0)
    assert evaluation.evaluation_seed(4, 20000) != s[1]
    assert all(0 <= x < 2 ** 31 for x in s)
    assert evaluation.evaluation_seed(3, 20000, 'fixed') == 3
    with pytest.raises(ValueError, match='per_evaluation'):
        evaluation.evaluation_seed(3, 0, 'fresh')


def _stacked_agents(num_seeds):
    from agents import floq

    one = [floq.FloqAgent.create(k, jnp.zeros((1, 28)), jnp.zeros((1, 5)), small_floq_config())
           for k in range(num_seeds)]
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *one)


@pytest.fixture(scope='module')
def seed_evaluations():
    """SeedEvaluation of 2 seeds, 2 short episodes each: per-episode results by (step, live envs)."""
    from floq_jax.training import evaluate

    agents = _stacked_agents(2)
    captured = []
    real = evaluate.evaluate_seeds

    def recording(evaluator, agents, seeds, **kwargs):
        out = real(evaluator, agents, seeds, **kwargs)
        captured.append((list(seeds), out))
        return out

    evaluate.evaluate_seeds = recording
    results = {}
    try:
        for pool in (4, 2):
            options = RunOptions(env_name=ENV, eval_episodes=2, eval_num_envs=pool,
                                 eval_kwargs=dict(vector_mode='sync', max_episode_steps=15))
            ev = evaluate.SeedEvaluation(options, None)
            try:
                for step in ((20, 40, 20) if pool == 4 else (40,)):
                    ev(types.SimpleNamespace(seeds=[0, 1], step=step, agents=agents, mesh=None))
                    results.setdefault((step, pool), []).append(captured[-1])
            finally:
                ev.close()
    finally:
        evaluate.evaluate_seeds = real
    return results


def test_each_evaluation_draws_fresh_episodes_and_noise(seed_evaluations):
    (seeds20, at20), (seeds40, at40) = seed_evaluations[(20, 4)][0], seed_evaluations[(40, 4)][0]
    assert seeds20 == [evaluation.evaluation_seed(s, 20) for s in (0, 1)] and seeds20 != seeds40
    for k in range(2):
        # New reset seeds: other initial states, so other final observations.
        assert not np.allclose(at20[k]['episode_final_observation'], at40[k]['episode_final_observation'])
    # And new action-noise keys for the same episode and step.
    assert not np.array_equal(evaluation.episode_key(seeds20[0], 0, 0), evaluation.episode_key(seeds40[0], 0, 0))


def test_same_step_evaluates_identically_on_any_number_of_slots(seed_evaluations):
    (_, first), (_, again) = seed_evaluations[(20, 4)]
    (_, at40_pool4), (_, at40_pool2) = seed_evaluations[(40, 4)][0], seed_evaluations[(40, 2)][0]
    for k in range(2):
        for key in ('episode_final_observation', 'episode_return', 'episode_length', 'episode_success'):
            np.testing.assert_array_equal(first[k][key], again[k][key])
            # Other slot counts: the same episodes and noise; only the network's float32 rounding may differ
            # with the batch shape (evaluation.seeds_evaluator).
            np.testing.assert_allclose(at40_pool4[k][key], at40_pool2[k][key], rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- published run lengths by default


@pytest.mark.subprocess
def test_defaults_are_the_published_run_lengths():
    """The published main.py runs 2M offline steps; its README's offline-to-online commands 1M + 2M."""
    from floq_jax import sweeps

    def defaults(module):
        out = subprocess.run([sys.executable, '-m', f'experiments.{module}', '--helpfull'], cwd=REPO,
                             env=subprocess_env(), capture_output=True, text=True, timeout=300)
        text = out.stdout + out.stderr
        found = {}
        for name in ('offline_steps', 'online_steps', 'buffer_size', 'utd_ratio', 'eval_interval', 'eval_episodes',
                     'success_timing', 'eval_seeding'):
            if f'--{name}:' in text:
                block = text[text.index(f'--{name}:'):]
                found[name] = block[block.index("(default: '") + 11:].split("'")[0]
        return found

    assert defaults('train_offline') == dict(offline_steps='2000000', eval_interval='20000', eval_episodes='50',
                                             success_timing='post', eval_seeding='per_evaluation')
    assert defaults('train_offline_to_online') == dict(
        offline_steps='1000000', online_steps='2000000', buffer_size='2000000', utd_ratio='1', eval_interval='20000',
        eval_episodes='50', success_timing='post', eval_seeding='per_evaluation')
    paper = sweeps.PRESETS['paper']
    assert paper['options']['offline_steps'] == presets.PUBLISHED_PROTOCOL['offline_steps'] == 2_000_000
    assert (paper['online']['offline_steps'], paper['online']['online_steps']) == (1_000_000, 2_000_000)
    assert RunOptions(env_name=ENV).offline_steps == 2_000_000


def test_evaluate_checkpoint_repeats_the_runs_own_evaluation(monkeypatch):
    """experiments.evaluate of a checkpoint uses the evaluation seed and success timing the run used at that step
    (an old run dir: its run seed, 'pre')."""
    from floq_jax.training import evaluate, restore

    calls = []

    class Made(Exception):
        pass

    class FakeEvaluator:
        def __init__(self, name, episodes, num_seeds, pool_size=None, success_timing=None):
            calls.append(dict(success_timing=success_timing))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __call__(self, policy_fn, temperature=1.0, seed=None, video_episodes=0, video_frame_skip=3):
            calls[-1]['seed'] = seed
            raise Made

    agent = types.SimpleNamespace(config={'critic_flow_steps': 1})
    new = dict(seed=3, env_name=ENV, success_timing='post', eval_seeding='per_evaluation')
    old = dict(seed=3, env_name=ENV)
    monkeypatch.setattr(evaluation, 'seeds_evaluator', FakeEvaluator)
    for flags in (new, old):
        monkeypatch.setattr(restore, 'load_run', lambda *a, flags=flags: (agent, None, None, 40, None, flags))
        with pytest.raises(Made):
            evaluate.evaluate_checkpoint('unused', None)
    assert calls == [dict(success_timing='post', seed=evaluation.evaluation_seed(3, 40)),
                     dict(success_timing='pre', seed=3)]


def test_every_env_the_project_makes_defaults_to_post():
    env = envs_lib.make_env(ENV)
    try:
        assert env.unwrapped._success_timing == 'post'
    finally:
        env.close()
