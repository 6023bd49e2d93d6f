"""Golden per-episode results of the published evaluation loop, for floq-jax's evaluation fixture.

This tool DRIVES a checkout of the published code (CMU-AIRe/floq, ``--reference_dir``); nothing of that code is
copied here.  It runs the published ``utils/evaluation.py:evaluate`` on an env built the way the published
``envs/env_utils.py`` builds its evaluation env (``ogbench.make_env_and_datasets(name, env_only=True)`` wrapped
in its ``EpisodeMonitor``), in an interpreter with the ogbench the published code pinned (1.1.x: success, reward
and termination from the next state, 'post'), and writes each episode's success, return, length and final
observation to a small JSON that ``tests/test_eval_fixture.py`` checks floq-jax's evaluator against.

What both sides share (the published loop keeps its own key splits and unseeded resets, so the harness feeds it):

* the policy: :func:`policy_action`, a fixed linear policy ``tanh(W o + b)`` (or, for pointmaze, OGBench's BFS
  subgoal oracle read from the env) plus noise drawn from the key ``fold_in(fold_in(PRNGKey(seed), episode),
  step)``, floq-jax's documented noise schedule (``floq_jax.envs.evaluation.episode_key``); the published loop
  clips it to [-1, 1] as floq-jax does;
* the episode reset seeds: floq-jax's ``envs.episode_seeds(seed, n)``, given to the published loop's env through a
  wrapper whose ``reset()`` (the published loop passes no seed) resets with the next one, NumPy's global generator
  seeded with it too (OGBench's maze envs draw their start noise from it; floq-jax's envs seed it the same way,
  ``floq_jax.envs.envs.GlobalRandomSeededReset``).

Needs an interpreter with jax, gymnasium, mujoco, flax (the published ``utils/datasets.py`` imports it) and
ogbench 1.1.x, e.g. a venv with ``pip install ogbench==1.1.2`` beside the project's packages:

    python -m experiments.eval_golden --reference_dir=<floq checkout> --reference_python=<that venv>/bin/python \\
        --out=tests/data/eval_golden.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

# (env, episodes, evaluation seed, policy, noise scale): cube (a linear policy: 200-step time-outs, reward -1 per
# step), puzzle-3x3 (a linear policy pushing down: button presses change the reward within episodes) and pointmaze
# (OGBench's BFS subgoal oracle plus noise: episodes that end by reaching the goal, at different steps).
CASES = (('cube-single-play-singletask-task2-v0', 4, 7, 'linear', 1.0),
         ('puzzle-3x3-play-singletask-task1-v0', 3, 11, 'linear_down', 1.0),
         ('pointmaze-medium-navigate-singletask-task1-v0', 3, 5, 'maze_oracle', 0.5))
POLICY_SEED = 0
POLICY_GAIN = 0.5


def policy_params(obs_dim: int, action_dim: int, kind: str = 'linear', seed: int = POLICY_SEED):
    """The fixed linear policy's (W (A, O), b (A,)), float64; 'linear_down' adds -0.5 to the third action (the
    manipulation envs' z velocity)."""
    rng = np.random.default_rng([seed, obs_dim, action_dim])
    W, b = POLICY_GAIN * rng.standard_normal((action_dim, obs_dim)) / np.sqrt(obs_dim), 0.1 * rng.standard_normal(action_dim)
    if kind == 'linear_down':
        b[2] -= 0.5
    return W, b


def episode_noise_key(seed: int, episode: int, step: int):
    """``fold_in(fold_in(PRNGKey(seed), episode), step)``: floq-jax's documented noise key of an evaluation step."""
    import jax

    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), episode), step)


def policy_action(kind: str, obs, env, key, scale: float) -> np.ndarray:
    """One row's action (before clipping): the policy's mean plus ``scale`` * N(0, I) drawn with ``key``.  'linear' /
    'linear_down': ``tanh(W o + b)`` (:func:`policy_params`); 'maze_oracle': the unit vector from the agent to
    OGBench's BFS subgoal toward the task goal (read from ``env``, the unwrapped maze env).  Computed row by row,
    the same way on both sides."""
    obs = np.asarray(obs, np.float32).astype(np.float64)
    if kind == 'maze_oracle':
        xy = np.asarray(env.get_xy(), np.float64)
        d = np.asarray(env.get_oracle_subgoal(xy, env.cur_goal_xy)[0], np.float64) - xy
        mean = d / (np.linalg.norm(d) + 1e-6)
    else:
        W, b = policy_params(obs.shape[-1], env.action_space.shape[0], kind)
        mean = np.tanh(np.dot(W, obs) + b)
    # The key's two words seed NumPy's generator: integer-exact (jax.random.normal's float results depend on
    # XLA's compile options, which the test suite lowers).
    noise = np.random.default_rng([int(w) for w in np.asarray(key, np.uint32)]).standard_normal(mean.shape)
    return (mean + scale * noise).astype(np.float32)


def run_published(reference_dir: str, env_name: str, seeds, eval_seed: int, kind: str, scale: float) -> dict:
    """The published evaluate() on the published eval env, fed the shared resets and policy (runs in the
    published interpreter)."""
    import gymnasium
    import ogbench

    sys.path.insert(0, reference_dir)
    from envs.env_utils import EpisodeMonitor  # the published code's
    from utils.evaluation import evaluate  # the published code's

    class SharedResets(gymnasium.Wrapper):
        """``reset()`` resets with the next shared episode seed; counts episodes and steps for the policy."""

        def __init__(self, env):
            super().__init__(env)
            self.episode, self.step_count = -1, 0

        def reset(self, **kwargs):
            self.episode += 1
            self.step_count = 0
            # OGBench's maze envs draw start and goal noise from NumPy's global generator (the published runs:
            # seeded once with --seed); the shared resets seed it with the episode seed, as floq-jax's envs do.
            np.random.seed(int(seeds[self.episode]) % 2**32)
            return self.env.reset(seed=int(seeds[self.episode]))

        def step(self, action):
            self.step_count += 1
            return self.env.step(action)

    env = ogbench.make_env_and_datasets(env_name, env_only=True)
    env = SharedResets(EpisodeMonitor(env, filter_regexes=['.*privileged.*', '.*proprio.*']))

    class StandInAgent:
        def sample_actions(self, observations, temperature=1.0, seed=None):
            # The published loop's temperature (0) and key are not used: the shared schedule keys the noise.
            key = episode_noise_key(eval_seed, env.episode, env.step_count)
            return policy_action(kind, observations, env.unwrapped, key, scale)

    stats, trajs, _ = evaluate(StandInAgent(), env, num_eval_episodes=len(seeds))
    episodes = []
    for traj in trajs:
        final = traj['info'][-1]
        episodes.append(dict(success=float(final['success']), episode_return=float(np.sum(traj['reward'])),
                             monitor_return=float(final['episode']['return']), length=len(traj['reward']),
                             final_observation=[float(x) for x in traj['next_observation'][-1]]))
    return dict(episodes=episodes, mean_success=float(stats['success']))


def published_side(args) -> None:
    import ogbench

    out = {}
    for env_name, _n, eval_seed, kind, scale in CASES:
        seeds = [int(s) for s in json.loads(args.seeds)[env_name]]
        out[env_name] = dict(eval_seed=eval_seed, reset_seeds=seeds, policy=kind, noise_scale=scale,
                             **run_published(args.reference_dir, env_name, seeds, eval_seed, kind, scale))
    out['ogbench_version'] = getattr(ogbench, '__version__', None) or _dist_version('ogbench')
    print('EVAL_GOLDEN ' + json.dumps(out))


def _dist_version(name: str) -> str:
    from importlib import metadata

    return metadata.version(name)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--reference_dir', required=True)
    parser.add_argument('--reference_python', default=sys.executable)
    parser.add_argument('--out', default='tests/data/eval_golden.json')
    parser.add_argument('--published_side', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--seeds', default='{}', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.published_side:
        published_side(args)
        return
    from floq_jax.envs import envs as envs_lib

    seeds = {env_name: [int(s) for s in envs_lib.episode_seeds(eval_seed, n)] for env_name, n, eval_seed, _, _ in CASES}
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=here, MUJOCO_GL=os.environ.get('MUJOCO_GL', 'egl'))
    proc = subprocess.run([args.reference_python, '-m', 'experiments.eval_golden', '--published_side',
                           f'--reference_dir={os.path.abspath(args.reference_dir)}', f'--seeds={json.dumps(seeds)}'],
                          cwd=here, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f'published side failed:\n{proc.stderr[-3000:]}')
    line = [x for x in proc.stdout.splitlines() if x.startswith('EVAL_GOLDEN ')][-1]
    result = json.loads(line[len('EVAL_GOLDEN '):])
    commit = subprocess.run(['git', '-C', args.reference_dir, 'rev-parse', 'HEAD'], capture_output=True, text=True)
    result['meta'] = dict(
        reference='CMU-AIRe/floq', reference_commit=commit.stdout.strip() or 'unknown (not a git checkout)',
        command='python -m experiments.eval_golden --reference_dir=<floq checkout> '
                '--reference_python=<venv with ogbench==1.1.2>/bin/python --out=tests/data/eval_golden.json',
        policy='experiments.eval_golden.policy_action (per case: policy, noise_scale); noise key '
               'fold_in(fold_in(PRNGKey(eval_seed), episode), step)')
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1, sort_keys=True)
    print(args.out)


if __name__ == '__main__':
    main()
