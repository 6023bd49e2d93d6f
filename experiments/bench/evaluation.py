"""The evaluation sections: parallel vs sequential episodes, seeds evaluated together over pool sizes, and the
vector env modes."""

from __future__ import annotations

import time

from absl import flags

import jax
import jax.numpy as jnp
import numpy as np

from floq_jax.training import benchmarking as bm
from floq_jax.training import parallel

from agents import fql as fql_lib
from experiments.bench.base import OB_DIM, make_config, positive_ints
from experiments.bench.memory import PeakRss, tree_rss_bytes

FLAGS = flags.FLAGS


def vector_mode_rows(env_name: str, sizes, modes=('sync', 'chunked'), evaluations: int = 3,
                     max_episode_steps=None) -> list:
    """Wall seconds of one evaluation pool per (n, vector mode): build n envs, then ``evaluations`` evaluations of
    n episodes (a zero policy, so only the env stepping and the pool's overhead are timed).  The idle envs of this
    process are closed first, so 'sync' builds its envs as a fresh run does.  Rows: n, mode, the mode 'auto' picks
    (envs.resolve_vector_mode), build_s, eval_s, total_s."""
    from floq_jax.envs import envs as envs_lib
    from floq_jax.envs import evaluation

    rows = []
    for n in sizes:
        for mode in modes:
            envs_lib.clear_env_pool()
            t0 = time.perf_counter()
            with evaluation.make_evaluator(env_name, num_episodes=n, vector_mode=mode,
                                           max_episode_steps=max_episode_steps) as ev:
                _ = ev.env
                t1 = time.perf_counter()
                act_dim = ev.env.single_action_space.shape[0]
                for i in range(evaluations):
                    ev(lambda obs, keys, temperature: np.zeros((obs.shape[0], act_dim), np.float32), seed=i)
                t2 = time.perf_counter()
            rows.append(dict(n=int(n), mode=mode, auto=envs_lib.resolve_vector_mode('auto', int(n)),
                             build_s=t1 - t0, eval_s=t2 - t1, total_s=time.perf_counter() - t0))
    envs_lib.clear_env_pool()
    return rows


class EvalSections:
    """eval / eval_seeds."""

    # ------------------------------------------------------------------ evaluation
    def evaluation(self):
        from floq_jax.training import evaluate

        episodes = FLAGS.eval_episodes or (2 if FLAGS.tiny else 10 if FLAGS.quick else 50)
        config = make_config('fql', small=True)
        ag = fql_lib.FQLAgent.create(0, self.host_data['observations'][:2], self.host_data['actions'][:2], config)

        def policy(obs, keys, temperature):
            return evaluate.rows_policy_actions(ag, jnp.asarray(obs), jnp.asarray(keys), temperature)

        kwargs = {}
        if FLAGS.eval_max_steps:
            kwargs['max_episode_steps'] = FLAGS.eval_max_steps
        # The committed figures are of the worker-process path (the 'auto' default picks it from 8 envs on).
        kwargs['vector_mode'] = 'sync' if FLAGS.tiny else 'chunked'
        res = bm.benchmark_evaluation(policy, FLAGS.env_name, num_episodes=episodes, **kwargs)
        res = {k: v for k, v in res.items() if isinstance(v, (int, float, str, bool))}
        res['num_episodes'] = episodes
        res['policy'] = 'FQL small config (2x256) one-step policy, jitted sample_actions'
        self.results['evaluation'] = res
        self.log(f"evaluation ({episodes} episodes): parallel {res['parallel_s']:.1f} s, sequential "
                 f"{res['sequential_s']:.1f} s (x{res['speedup']:.2f})")

    # ------------------------------------------------------------------ evaluation of seeds together, bounded pools
    def eval_seeds(self):
        """S seeds x pool sizes: one evaluate_seeds call (all seeds, FLAGS.eval_episodes each, published noise) on a
        pool of live envs already built; wall-clock and the peak RSS of this process plus its env workers."""
        from floq_jax.envs import evaluation
        from floq_jax.training import evaluate

        episodes = FLAGS.eval_episodes or (2 if FLAGS.tiny else 10)
        seed_counts = positive_ints('eval_num_seeds', FLAGS.eval_num_seeds or (
            [1, 2] if FLAGS.tiny else [1, 4] if self.quick else [1, 2, 4]))
        pools = positive_ints('eval_pools', FLAGS.eval_pools or ([2] if FLAGS.tiny else [4] if self.quick else [2, 4, 8]))
        kwargs = {'max_episode_steps': FLAGS.eval_max_steps} if FLAGS.eval_max_steps else {}
        kwargs['vector_mode'] = 'sync' if FLAGS.tiny else 'chunked'  # pools of 2-8 envs: the worker-process path
        config = make_config('fql', small=True)
        ex_o, ex_a = self.host_data['observations'][:2], self.host_data['actions'][:2]
        rows = []
        for num_seeds in seed_counts:
            seeds = list(range(num_seeds))
            agents = parallel.create_agents(fql_lib.FQLAgent, config, ex_o, ex_a, seeds)
            done = set()
            for pool in pools:
                evaluator = evaluation.seeds_evaluator(FLAGS.env_name, episodes, num_seeds, pool_size=pool, **kwargs)
                if evaluator.num_envs in done:  # pools below S all become S envs
                    continue
                done.add(evaluator.num_envs)
                slots = evaluator.num_envs // num_seeds
                base = tree_rss_bytes()
                with PeakRss() as peak:
                    try:
                        t0 = time.perf_counter()
                        evaluator.env.reset(seed=list(range(evaluator.num_envs)))
                        create_s = time.perf_counter() - t0
                        obs = np.zeros((num_seeds, slots, OB_DIM), np.float32)  # compile outside the timing
                        np.asarray(evaluate.seeds_policy_fn(agents)(obs, jnp.stack(
                            [jax.random.split(jax.random.PRNGKey(s), slots) for s in seeds]), 1.0))
                        t0 = time.perf_counter()
                        res = evaluate.evaluate_seeds(evaluator, agents, seeds, temperature=1.0)
                        eval_s = time.perf_counter() - t0
                    finally:
                        evaluator.close()
                row = dict(num_seeds=num_seeds, pool=pool, live_envs=evaluator.num_envs, slots_per_seed=slots,
                           episodes_per_seed=episodes, waves=-(-episodes // slots), create_s=create_s, eval_s=eval_s,
                           episodes_per_s=num_seeds * episodes / eval_s, base_rss_bytes=base,
                           peak_rss_bytes=peak.bytes,
                           peak_over_base_per_env_bytes=(peak.bytes - base) / evaluator.num_envs,
                           mean_length=float(np.mean([r['length'] for r in res])))
                rows.append(row)
                self.log(f"eval_seeds S={num_seeds} pool {row['live_envs']} ({slots}/seed, {row['waves']} waves): "
                         f"{eval_s:.1f} s, peak RSS {bm.fmt_bytes(peak.bytes)} (base {bm.fmt_bytes(base)})")
        self.results['eval_seeds'] = dict(rows=rows, env_name=FLAGS.env_name, num_episodes=episodes,
                                          vector_mode=kwargs['vector_mode'],
                                          policy='FQL small config (2x256) one-step policy, untrained, noise N(0, I)')
