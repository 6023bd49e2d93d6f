"""Metrics that run the policy or the critic: evaluation episodes of every seed, Q estimates at several K, critic
diagnostics, and the evaluation of a saved checkpoint.

    evaluation = SeedEvaluation(options)         # the run loop's evaluation: {metric: value} per seed
    rows = evaluation(state)                      # one row per seed ('evaluation/success', ...)
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from floq_jax import presets, storage
from floq_jax.training import parallel, rundirs

EVAL_METRICS = ('success', 'return', 'length')


# ----------------------------------------------------------------------------- an agent's policy, as the evaluator
# (floq_jax.envs.evaluation, which knows policy functions only) calls it


def _rows_actions(agent, observations, keys, temperature):
    """Actions (N, A) of one agent on observations (N, O), row j sampled with its own key ``keys[j]``."""
    return jax.vmap(lambda o, k: agent.sample_actions(o[None], seed=k, temperature=temperature)[0])(
        observations, keys)


@jax.jit
def rows_policy_actions(agent, observations, keys, temperature):
    """:func:`_rows_actions`, jitted: the policy of one (unstacked) agent as the evaluator calls it."""
    return _rows_actions(agent, observations, keys, temperature)


@jax.jit
def _seeds_actions(agents, observations, rngs, temperature):
    """Actions (S, M, A) of stacked agents (leading axis S) on observations (S, M, O) with keys (S, M, 2)."""
    return jax.vmap(lambda agent, obs, keys: _rows_actions(agent, obs, keys, temperature))(agents, observations, rngs)


def seeds_policy_fn(agents) -> Callable:
    """The policy of stacked agents (every leaf with a leading seed axis S) as one jitted, vmapped call."""
    return lambda obs, rngs, temperature: _seeds_actions(agents, jnp.asarray(obs), rngs, jnp.float32(temperature))


def policy_fn_for(agent) -> Callable:
    """policy_fn(obs (N, O), keys (N, 2), temperature) -> actions (N, A) for one (unstacked) agent, row j sampled
    with its own key (the evaluator's contract, floq_jax.envs.evaluation); compiled once per shape."""
    return lambda obs, keys, temperature: rows_policy_actions(agent, jnp.asarray(obs), jnp.asarray(keys),
                                                              jnp.float32(temperature))


def evaluate_seeds(evaluator, agents, seeds: Sequence[int], temperature: float = 1.0,
                   num_episodes: int | None = None) -> List[dict]:
    """Evaluates stacked agents (leading axis S, one per entry of ``seeds``) with one vmapped ``sample_actions``
    call per env step for all seeds; see floq_jax.envs.evaluation.run_seeds.  Agents sharded over several processes
    must be gathered first (the call runs on this process's devices)."""
    from floq_jax.envs import evaluation

    sizes = {x.shape[:1] for x in jax.tree_util.tree_leaves(agents)}
    if sizes != {(len(seeds),)}:
        raise ValueError(f'agents must be stacked with a leading axis of {len(seeds)} (one per seed), got {sizes}')
    return evaluation.run_seeds(evaluator, seeds_policy_fn(agents), seeds, temperature, num_episodes)


def q_estimates(agent, batch: Dict[str, np.ndarray], num_steps: Sequence[int], seed: int = 0) -> Dict[str, float]:
    """Mean Q of the flow critic on ``batch`` at each K (agents without ``q_values`` give {})."""
    if not hasattr(agent, 'q_values') or not num_steps:
        return {}
    out = {}
    for k in num_steps:
        q = agent.q_values(jnp.asarray(batch['observations']), jnp.asarray(batch['actions']), num_steps=int(k),
                           seed=jax.random.PRNGKey(seed))
        out[f'evaluation/q_K{int(k)}'] = float(np.mean(np.asarray(q)))
    return out


def eval_batch(data, size: int = 256, seed: int = 0, frame_stack=None) -> Dict[str, np.ndarray]:
    """A fixed batch of (validation, else training) transitions for Q estimates (frames stacked with
    ``frame_stack``, as the training batches)."""
    from floq_jax.data import sampling

    source = data.val if data.val is not None else data.train
    n = len(source['observations'])
    idx = np.random.default_rng(seed).choice(n, size=min(size, n), replace=False)
    batch = {k: source[k][idx] for k in ('observations', 'actions')}
    if frame_stack is not None:
        arrays = dict(source, **{sampling.EPISODE_STARTS: sampling.episode_starts(source['terminals'])})
        batch['observations'] = sampling.stack_frames(arrays, idx, int(frame_stack), np)[0]
    return batch


class SeedEvaluation:
    """Evaluation episodes of every seed's policy under ``options.eval_protocol`` (one Evaluator, kept open), plus
    the Q estimates at ``options.eval_num_steps`` on a fixed batch: ``self(state)`` -> one row per seed."""

    def __init__(self, options, data):
        self.options = options
        self._evaluator = None
        self._qbatch = eval_batch(data, frame_stack=options.frame_stack) if options.eval_num_steps else None
        self.videos: List[List[np.ndarray]] = []  # the last evaluation's rendered episodes, per seed (when asked)

    def __call__(self, state) -> List[Dict[str, float]]:
        """All seeds together: one env pool of ``eval_num_envs`` live envs (default: sized from free memory), one
        vmapped policy call per env step (:func:`evaluate_seeds`)."""
        from floq_jax.envs import evaluation

        o = self.options
        if self._evaluator is None:
            pixels = {} if o.frame_stack is None else {'frame_stack': int(o.frame_stack)}  # as the batches
            self._evaluator = evaluation.seeds_evaluator(o.env_name, o.eval_episodes, len(state.seeds),
                                                         pool_size=o.eval_num_envs, success_timing=o.success_timing,
                                                         **pixels, **dict(o.eval_kwargs))
        # On a mesh: gathered copies (without the optimizer state), as in the diagnostics.  In a multi-process run
        # process 0 evaluates every seed; the others take part in the gather and return [].
        agents = state.agents
        if state.mesh is not None:
            agents = parallel.to_host(agents.replace(opt_state=None))
            if not parallel.is_primary_process():
                return []
            agents = jax.tree_util.tree_map(jnp.asarray, agents)
        temperature = presets.eval_temperature(o.eval_protocol)
        # Each evaluation's episodes and noise: from (seed, step) under 'per_evaluation', as published fresh ones.
        seeds = [evaluation.evaluation_seed(s, state.step, o.eval_seeding) for s in state.seeds]
        evals = evaluate_seeds(self._evaluator, agents, seeds, temperature=temperature)
        # Video episodes: per seed, extra episodes after the counted ones of the same evaluation, rendered one at a
        # time (not counted).
        self.videos = [self._evaluator.render_episodes(policy_fn_for(parallel.select_seed(agents, k)), temperature,
                                                       seed, o.eval_episodes, o.video_episodes, o.video_frame_skip)
                       for k, seed in enumerate(seeds)] if o.video_episodes > 0 else []
        rows = []
        for k, res in enumerate(evals):
            row = {f'evaluation/{m}': float(res[m]) for m in EVAL_METRICS}
            if self._qbatch is not None:
                row.update(q_estimates(parallel.select_seed(agents, k), self._qbatch, o.eval_num_steps))
            rows.append(row)
        return rows

    def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.close()


class CriticDiagnostics:
    """{'diagnostics/<name>': (S,)} from ``diagnostics.critic_diagnostics`` on a fixed batch, vmapped over seeds
    ({} when ``options.log_diagnostics`` is off)."""

    def __init__(self, options, data):
        self.enabled = options.log_diagnostics
        self.data, self.frame_stack = data, options.frame_stack
        self._fn = None
        self._batch = None

    def __call__(self, state) -> Dict[str, np.ndarray]:
        if not self.enabled:
            return {}
        from floq_jax.analysis import diagnostics

        if self._fn is None:
            self._fn = jax.jit(jax.vmap(diagnostics.critic_diagnostics, in_axes=(0, None, None)))
            self._batch = {k: jnp.asarray(v) for k, v in eval_batch(self.data, seed=1,
                                                                    frame_stack=self.frame_stack).items()}
        agents = state.agents
        if state.mesh is not None:
            # On a mesh, run the diagnostics on gathered copies: the partitioned program (it takes SVDs) waited
            # forever on 2 XLA:CPU devices; a copy of the agents every log interval is cheap next to training.
            agents = jax.tree_util.tree_map(jnp.asarray, parallel.to_host(agents))
        if not parallel.is_primary_process():
            return {}  # only process 0 logs (every process takes part in the gather above)
        out = self._fn(agents, self._batch, jax.random.PRNGKey(state.step))
        out = jax.device_get(out) if jax.process_count() > 1 else parallel.to_host(out)  # local copies: no gather
        return {f'diagnostics/{k}': np.asarray(v) for k, v in out.items()}


def evaluate_checkpoint(run_dir, agent_class: Callable[[str], Any], step=None, eval_episodes=50, num_steps=(), eval_protocol='published',
                        video_episodes=0, eval_seed=None, eval_num_envs=None, dataset_path=None, video_frame_skip=3,
                        success_timing=None):
    """Evaluates a seed run dir's checkpoint (newest intact one by default): success over ``eval_episodes``
    (parallel Evaluator) under ``eval_protocol`` ('published': noise N(0, I); 'deterministic') and Q estimates at
    each K in ``num_steps`` on a fixed dataset batch.

    ``eval_seed`` None: the seed the run's own evaluation at that step used (``evaluation_seed`` of the run seed
    and the step under the run's eval seeding), so the same episodes and noise, reproducibly; ``success_timing``
    None: the run's own (floq_jax.presets.success_timing_of).

    ``agent_class``: the caller's agent registry lookup, agent_name -> class (e.g. ``agents.agent_class``).
    Returns the summary dict, also written to <run_dir>/evaluations/step<step>.json and .csv; ``video_episodes``
    extra rendered episodes (not counted, as published) go to <run_dir>/evaluations/step<step>.mp4 as one grid.
    """
    import csv
    import io

    from floq_jax.envs.evaluation import evaluation_seed, seeds_evaluator
    from floq_jax.training.compose import check_rendering
    from floq_jax.training.restore import load_run

    temperature = presets.eval_temperature(eval_protocol)
    agent, _, _, step, data, run_flags = load_run(run_dir, agent_class, step, dataset_path)
    check_rendering(run_flags['env_name'], eval_episodes + video_episodes)  # a pixel env renders its episodes
    num_steps = tuple(num_steps) or (int(agent.config.get('critic_flow_steps', 1)),)
    seeding = presets.eval_seeding_of(run_flags)
    seed = (evaluation_seed(int(run_flags['seed']), int(step), seeding) if eval_seed is None else int(eval_seed))
    success_timing = success_timing or presets.success_timing_of(run_flags)
    # The pool of live envs: eval_num_envs, or as many as fit in the free memory (the episodes do not depend on it).
    frame_stack = run_flags.get('frame_stack')  # None for runs written before flags.json recorded it
    pixels = {} if frame_stack is None else {'frame_stack': int(frame_stack)}
    with seeds_evaluator(run_flags['env_name'], eval_episodes, 1, pool_size=eval_num_envs,
                         success_timing=success_timing, **pixels) as evaluator:
        res = evaluator(policy_fn_for(agent), temperature=temperature, seed=seed,
                        video_episodes=video_episodes, video_frame_skip=video_frame_skip)
    qs = q_estimates(agent, eval_batch(data, frame_stack=frame_stack), num_steps)
    summary = dict(run_dir=storage.absolute(run_dir), step=int(step), env_name=run_flags['env_name'],
                   agent_name=agent.config.agent_name, episodes=int(eval_episodes), eval_protocol=eval_protocol,
                   eval_protocol_description=presets.describe_eval_protocol(eval_protocol),
                   temperature=float(temperature), success_timing=success_timing,
                   success_timing_description=presets.describe_success_timing(success_timing), eval_seed=seed,
                   eval_seeding=seeding if eval_seed is None else 'given',
                   success=float(res['success']), **{'return': float(res['return'])}, length=float(res['length']),
                   trained_K=int(agent.config.get('critic_flow_steps', 0)),
                   q_estimates={k.split('_K')[1]: v for k, v in qs.items()})
    out = storage.join(run_dir, 'evaluations')
    storage.makedirs(out)
    if res.get('videos'):
        from floq_jax.training import videos

        summary['video'] = videos.write_mp4(storage.join(out, f'step{step}.mp4'), videos.tile(res['videos']))
    rundirs.write_json(storage.join(out, f'step{step}.json'), summary)
    table = io.StringIO(newline='')
    writer = csv.writer(table)
    writer.writerow(['step', 'K', 'evaluation/success', 'evaluation/return', 'evaluation/length', 'q_mean'])
    for k, q in summary['q_estimates'].items() or [('', '')]:
        writer.writerow([step, k, summary['success'], summary['return'], summary['length'], q])
    storage.write_text(storage.join(out, f'step{step}.csv'), table.getvalue())
    return summary
