"""floq-jax's evaluator against the published evaluation loop (CMU-AIRe/floq ``utils/evaluation.py`` on its
``EpisodeMonitor``-wrapped OGBench env, ogbench 1.1.2).

``tests/data/eval_golden.json`` holds the published loop's per-episode success, return, length and final
observation for the same policy, episode reset seeds and action noise (``experiments/eval_golden.py``, which
names the command and the reference commit in the file's ``meta``).  Here floq-jax's evaluator runs the same
policy on ogbench 1.2.2 with ``success_timing='post'`` (the published runs' timing), through both drivers, and
must give exactly those episodes: the env loop, the resets, the episode ends (time-outs, and successes that
terminate) and the success and return bookkeeping are the published ones.
"""

import json
import os

import numpy as np
import pytest

from experiments import eval_golden
from floq_jax.envs import envs as envs_lib
from floq_jax.envs import evaluation

GOLDEN = os.path.join(os.path.dirname(__file__), 'data', 'eval_golden.json')


def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def run_floq_jax(env_name, case, parallel, success_timing='post'):
    n = len(case['episodes'])
    evaluator = evaluation.Evaluator(env_name, num_episodes=n, seed=case['eval_seed'], num_envs=2 if parallel else None,
                                     parallel=parallel, vector_mode='sync', success_timing=success_timing)
    with evaluator:
        env = evaluator.env
        subenvs = [e.unwrapped for e in env.envs] if parallel else [env.unwrapped]

        def policy_fn(obs, keys, temperature):
            assert temperature == 1.0
            return np.stack([eval_golden.policy_action(case['policy'], o, subenvs[j], keys[j], case['noise_scale'])
                             for j, o in enumerate(obs)])

        return evaluator(policy_fn)


def test_golden_file_names_its_source():
    meta = golden()['meta']
    assert meta['reference_commit'].startswith('2e46108') and 'experiments.eval_golden' in meta['command']
    assert golden()['ogbench_version'].startswith('1.1.')
    assert sorted(c[0] for c in eval_golden.CASES) == sorted(k for k in golden() if k not in ('meta', 'ogbench_version'))
    for env_name, n, seed, kind, scale in eval_golden.CASES:
        case = golden()[env_name]
        # The published loop was reset with floq-jax's episode seeds.
        assert case['reset_seeds'] == [int(s) for s in envs_lib.episode_seeds(seed, n)]
        assert (case['eval_seed'], case['policy'], case['noise_scale']) == (seed, kind, scale)


@pytest.mark.parametrize('env_name', [c[0] for c in eval_golden.CASES])
@pytest.mark.parametrize('parallel', [True, False], ids=['vector', 'sequential'])
def test_evaluator_gives_the_published_loops_episodes(env_name, parallel):
    case = golden()[env_name]
    ours = run_floq_jax(env_name, case, parallel)
    ref = case['episodes']
    np.testing.assert_array_equal(ours['episode_success'], [e['success'] for e in ref])
    np.testing.assert_array_equal(ours['episode_length'], [e['length'] for e in ref])
    np.testing.assert_array_equal(ours['episode_return'], [e['episode_return'] for e in ref])
    np.testing.assert_array_equal(ours['episode_return'], [e['monitor_return'] for e in ref])
    np.testing.assert_array_equal(ours['episode_final_observation'],
                                  np.asarray([e['final_observation'] for e in ref], np.float32))
    assert ours['success'] == pytest.approx(case['mean_success'])


def test_golden_covers_time_outs_terminations_and_changing_rewards():
    g = golden()
    cube = g['cube-single-play-singletask-task2-v0']['episodes']
    assert all(e['length'] == 200 and e['success'] == 0.0 for e in cube)  # time-outs
    maze = g['pointmaze-medium-navigate-singletask-task1-v0']['episodes']
    assert all(e['success'] == 1.0 for e in maze) and len({e['length'] for e in maze}) == len(maze)
    assert all(e['length'] < 1000 for e in maze)  # ended by reaching the goal, before the 1000-step time-out
    puzzle = g['puzzle-3x3-play-singletask-task1-v0']['episodes']
    assert any(e['episode_return'] != -6.0 * e['length'] for e in puzzle)  # a button press changed the reward


def test_pre_success_timing_ends_goal_reaching_episodes_differently():
    """The fixture separates the timings: OGBench 1.2's default 'pre' ends each goal-reaching episode one step
    later, with another return, than the published runs' 'post'."""
    env_name = 'pointmaze-medium-navigate-singletask-task1-v0'
    case = golden()[env_name]
    pre = run_floq_jax(env_name, case, parallel=False, success_timing='pre')
    np.testing.assert_array_equal(pre['episode_length'], [e['length'] + 1 for e in case['episodes']])
    assert not np.array_equal(pre['episode_return'], [e['episode_return'] for e in case['episodes']])
