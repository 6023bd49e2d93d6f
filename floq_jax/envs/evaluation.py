"""Episode evaluation on OGBench envs, batched across episodes.

Success follows FQL: an episode runs until ``terminated or truncated`` and its
success is ``info['success']`` of the final step (OGBench's own flag).

Two drivers give the same per-episode results for a deterministic policy
(episode i is always reset with ``episode_seeds(seed, n)[i]``):

* parallel (default): a gymnasium vector env of ``num_envs`` sub-envs stepped
  in lockstep with ONE batched ``policy_fn`` call per env step for all of
  them; when a sub-env finishes an episode it is reset with the next pending
  episode's seed.  ``vector_mode='sync'`` steps sub-envs in this process,
  ``'async'`` in worker processes.
* sequential (``parallel=False``): one env, one episode at a time, one policy
  call per step (the published FQL baseline).

``policy_fn(observations, keys, temperature) -> actions``: observations are
float32 (N, obs_dim), keys (N, 2) one JAX PRNG key per row, actions (N, act_dim)
(NumPy or JAX); actions are clipped to [-1, 1] as in FQL.

Noise: the key of step t of episode i of seed s is
``episode_key(s, i, t) = fold_in(fold_in(PRNGKey(s), i), t)``, so an episode's
actions depend on (policy, seed, episode, step) only: never on how many envs
run at once, on the waves, on the other seeds evaluated beside it, or on the
driver.  Under the noisy published protocol an evaluation is therefore the same
on a machine with little memory (a small env pool) as on a large one, and a
resumed run evaluates exactly as an uninterrupted one.

Fresh randomness at each evaluation: the training loop evaluates seed s at step
``step`` with the evaluation seed :func:`evaluation_seed` (s, step) in place of s
(reset seeds ``envs.episode_seeds(evaluation_seed(s, step), n)``, keys
``episode_key(evaluation_seed(s, step), i, t)``), so each evaluation draws new
episodes and noise, as the published loop does (it draws a new key from NumPy's
global generator and continues its env's reset stream at every evaluation),
while an evaluation stays a function of (policy, seed, step, protocol) only: a
resumed run, or ``experiments.evaluate`` of the step's checkpoint, repeats it.

Seeds evaluated together (:func:`run_seeds`): the S seeds of a run share
one vector env whose slots are split evenly between them (seed k owns slots
``k*M .. (k+1)*M - 1``), and each env step makes ONE policy call for all seeds,
``seeds_policy_fn`` on observations (S, M, obs_dim) (for stacked agents, a
vmapped ``sample_actions``: floq_jax.training.evaluate.evaluate_seeds).  This
module knows policies only, never an agent's API.
Seed k keeps its own keys (``episode_key(seed_k, i, t)``) and reset seeds
(``envs.episode_seeds(seed_k, n)``), so its results depend only on (policy, seed,
protocol): exactly those of that seed evaluated alone, on any number of slots.

Memory: one OGBench cube env holds ~160 MB, so the pool of live envs is
bounded (:func:`eval_pool_size`, from the available memory or a flag); with
fewer slots than episodes, each slot runs its seed's episodes one after
another (waves), which gives the same per-episode results as all at once.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, List, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from floq_jax.envs import envs as envs_lib

PolicyFn = Callable[[np.ndarray, Any, float], Any]
# seeds_policy_fn(observations (S, M, obs_dim) float32, keys (S, M, 2), temperature) -> actions (S, M, act_dim)
SeedsPolicyFn = Callable[[np.ndarray, Any, float], Any]

# Pool sizing: upper estimates of one env's and one chunked worker's memory (the measurements: docs/benchmark.md,
# "The measurements behind the code's defaults"); the pool takes at most half of the memory available (after the
# workers' share) when the evaluator is built.
ENV_BYTES_ESTIMATE = 200 * 2**20
WORKER_BYTES_ESTIMATE = 512 * 2**20
POOL_MEMORY_FRACTION = 0.5

_VIDEO_WARNED = False


@jax.jit
def _episode_keys(base_keys, episodes, steps):
    """(N, 2) keys ``fold_in(fold_in(base_keys[j], episodes[j]), steps[j])``: base_keys (N, 2), episodes and steps
    (N,) ints."""
    return jax.vmap(lambda k, i, t: jax.random.fold_in(jax.random.fold_in(k, i), t))(base_keys, episodes, steps)


def episode_key(seed: int, episode: int, step: int):
    """The policy key of step ``step`` of episode ``episode`` of an evaluation with seed ``seed``."""
    return _episode_keys(jax.random.PRNGKey(seed)[None], jnp.asarray([episode]), jnp.asarray([step]))[0]


def evaluation_seed(seed: int, step: int, seeding: str = 'per_evaluation') -> int:
    """The seed of the evaluation of run seed ``seed`` at training step ``step`` (floq_jax.presets.EVAL_SEEDINGS):
    'per_evaluation' derives a new one from (seed, step) (a 31-bit int, a valid ``PRNGKey`` seed); 'fixed' returns
    ``seed`` (every evaluation the same episodes and noise)."""
    if seeding == 'fixed':
        return int(seed)
    if seeding != 'per_evaluation':
        raise ValueError(f"eval seeding must be 'per_evaluation' or 'fixed', got {seeding!r}")
    return int(np.random.SeedSequence([int(seed), int(step), 0xE7A15EED]).generate_state(1, np.uint32)[0] >> 1)


def _actions(policy_fn: PolicyFn, obs: np.ndarray, keys, temperature: float) -> np.ndarray:
    """Calls the policy on float32 obs (N, obs_dim) or (S, M, obs_dim); returns clipped actions (..., act_dim)."""
    actions = np.asarray(policy_fn(np.asarray(obs, dtype=np.float32), keys, temperature))
    return np.clip(actions, -1.0, 1.0)


def _summary(ep_success: np.ndarray, ep_return: np.ndarray, ep_length: np.ndarray,
             final_obs: np.ndarray) -> dict:
    return {
        'success': float(np.mean(ep_success)),
        'return': float(np.mean(ep_return)),
        'length': float(np.mean(ep_length)),
        'episode_success': ep_success.astype(np.float64),
        'episode_return': ep_return.astype(np.float64),
        'episode_length': ep_length.astype(np.int64),
        'episode_final_observation': final_obs,
    }


def _run_sequential(env, policy_fn: PolicyFn, seeds: np.ndarray, base_key, temperature: float,
                    render: bool = False, frame_skip: int = 1, first_episode: int = 0) -> tuple[dict, list[np.ndarray]]:
    """One episode at a time on a single env, one policy call per step; episode ``ep`` of ``seeds`` is episode
    ``first_episode + ep`` of the evaluation (its action-noise keys).

    Returns:
        (summary dict, videos): with ``render`` (and rendering working) a list of uint8 (F, H, W, 3) arrays, one per
        episode, the frame after env step t kept when t % frame_skip == 0 or the episode ended (the published
        evaluation's frames); else [].
    """
    n = len(seeds)
    ep_success = np.zeros(n)
    ep_return = np.zeros(n)
    ep_length = np.zeros(n, dtype=np.int64)
    final_obs = np.zeros((n,) + env.observation_space.shape, np.float32)
    videos = []
    for ep in range(n):
        obs, _ = env.reset(seed=int(seeds[ep]))
        frames = [] if render else None
        done = False
        while not done:
            keys = _episode_keys(jnp.asarray(base_key)[None], jnp.asarray([first_episode + ep]),
                                 jnp.asarray([ep_length[ep]]))
            action = _actions(policy_fn, obs[None], keys, temperature)[0]
            obs, reward, terminated, truncated, info = env.step(action)
            ep_return[ep] += reward
            ep_length[ep] += 1
            done = terminated or truncated
            if done:
                ep_success[ep] = float(info['success'])
                final_obs[ep] = obs
            if frames is not None and (ep_length[ep] % frame_skip == 0 or done):
                frame = _try_render(env)
                frames = None if frame is None else frames + frame
        if frames:
            videos.append(np.stack(frames))
        elif render:
            render = False  # Rendering failed (already warned); stop trying.
    return _summary(ep_success, ep_return, ep_length, final_obs), videos


def _try_render(env) -> list[np.ndarray] | None:
    """Renders one frame as a one-element list; None (with a one-time warning) on failure."""
    global _VIDEO_WARNED
    try:
        frame = env.unwrapped.render()
        return [np.asarray(frame, dtype=np.uint8)]
    except Exception as e:  # noqa: BLE001 - any GL/backend failure means "no video".
        if not _VIDEO_WARNED:
            logging.warning('Video rendering unavailable (%s: %s); no videos recorded. '
                            'Set MUJOCO_GL=egl or osmesa.', type(e).__name__, e)
            _VIDEO_WARNED = True
        return None


def _run_slots(venv, policy_fn: SeedsPolicyFn, seeds: np.ndarray, base_keys, temperature: float,
               slots: int) -> List[dict]:
    """The episodes of S seeds on one vector env (autoreset DISABLED, FreezeAfterDone sub-envs).

    Args:
        venv: vector env with at least S * slots sub-envs (extra ones are parked and never stepped).
        policy_fn: called once per env step on observations (S, slots, obs_dim) and keys (S, slots, 2).
        seeds: int (S, n) episode reset seeds, row k for seed k (``envs.episode_seeds``).
        base_keys: (S, 2) PRNG keys; slot j of seed k at step t of its episode i gets
            ``fold_in(fold_in(base_keys[k], i), t)`` (parked slots get episode 0, step 0; their actions are ignored).
        temperature: passed to ``policy_fn``.
        slots: sub-envs per seed M; seed k owns sub-envs k*M .. (k+1)*M - 1 and runs its episodes on them in
            order, a slot taking the next pending episode when its episode ends (lowest slot first).

    Returns:
        S summary dicts (see :meth:`Evaluator.__call__`), seed k's a function of its own policy, base key and
        seeds only (not of ``slots``).
    """
    seeds = np.asarray(seeds)
    num_seeds, n = seeds.shape
    num_envs = venv.num_envs
    used = num_seeds * slots
    if used > num_envs:
        raise ValueError(f'{num_seeds} seeds x {slots} slots need {used} sub-envs, the vector env has {num_envs}')
    owner = np.full(num_envs, -1, dtype=np.int64)  # Seed index per slot; -1 = not used.
    owner[:used] = np.repeat(np.arange(num_seeds), slots)
    obs_shape = venv.single_observation_space.shape
    ep_success = np.zeros((num_seeds, n))
    ep_return = np.zeros((num_seeds, n))
    ep_length = np.zeros((num_seeds, n), dtype=np.int64)
    final_obs = np.zeros((num_seeds, n) + obs_shape, np.float32)
    slot_ep = np.full(num_envs, -1, dtype=np.int64)  # Episode index (within its seed) per slot; -1 = idle.
    next_ep = np.zeros(num_seeds, dtype=np.int64)
    seed_list = [0] * num_envs
    for i in range(used):  # Slots take their seed's first episodes in order.
        k = owner[i]
        if next_ep[k] < n:
            slot_ep[i], seed_list[i] = next_ep[k], int(seeds[k, next_ep[k]])
            next_ep[k] += 1
    # Every sub-env is reset (gymnasium's SyncVectorEnv cannot batch a masked reset before each env's first one);
    # spare slots are then parked, which keeps them from being simulated.
    obs, _ = venv.reset(seed=seed_list)
    if np.any(slot_ep < 0):
        venv.reset(seed=[0] * num_envs, options={'reset_mask': slot_ep < 0, 'freeze': True})
    act_shape = venv.single_action_space.shape
    while np.any(slot_ep >= 0):
        episode = np.maximum(slot_ep[:used], 0)
        keys = _episode_keys(base_keys[owner[:used]], jnp.asarray(episode),
                             jnp.asarray(ep_length[owner[:used], episode])).reshape(num_seeds, slots, -1)
        grouped = np.asarray(obs[:used], dtype=np.float32).reshape((num_seeds, slots) + obs_shape)
        actions = np.zeros((num_envs,) + act_shape, np.float32)
        actions[:used] = _actions(policy_fn, grouped, keys, temperature).reshape((used,) + act_shape)
        obs, reward, terminated, truncated, infos = venv.step(actions)
        active = np.flatnonzero(slot_ep >= 0)
        ep_return[owner[active], slot_ep[active]] += reward[active]
        ep_length[owner[active], slot_ep[active]] += 1
        finished = active[(terminated | truncated)[active]]
        if finished.size == 0:
            continue
        ep_success[owner[finished], slot_ep[finished]] = infos['success'][finished].astype(np.float64)
        final_obs[owner[finished], slot_ep[finished]] = obs[finished]
        reset_mask = np.zeros(num_envs, dtype=bool)
        park_mask = np.zeros(num_envs, dtype=bool)
        seed_list = [0] * num_envs
        for i in finished:
            k = owner[i]
            if next_ep[k] < n:
                slot_ep[i], seed_list[i] = next_ep[k], int(seeds[k, next_ep[k]])
                reset_mask[i] = True
                next_ep[k] += 1
            else:
                slot_ep[i] = -1
                park_mask[i] = True
        if park_mask.any():  # No episodes left for these slots: freeze them (no simulation).
            venv.reset(seed=[0] * num_envs, options={'reset_mask': park_mask, 'freeze': True})
        if reset_mask.any():
            new_obs, _ = venv.reset(seed=seed_list, options={'reset_mask': reset_mask})
            obs = np.array(obs)
            obs[reset_mask] = new_obs[reset_mask]
    return [_summary(ep_success[k], ep_return[k], ep_length[k], final_obs[k]) for k in range(num_seeds)]


def _run_parallel(venv, policy_fn: PolicyFn, seeds: np.ndarray, base_key, temperature: float) -> dict:
    """All episodes of one seed on a vector env: :func:`_run_slots` with S = 1 and every sub-env as a slot.

    One batched policy call per step covers all ``venv.num_envs`` slots (finished slots get ignored actions).
    """
    def one_seed(obs, keys, temp):
        return np.asarray(policy_fn(obs[0], keys[0], temp))[None]

    return _run_slots(venv, one_seed, np.asarray(seeds)[None], jnp.asarray(base_key)[None], temperature,
                      venv.num_envs)[0]


class Evaluator:
    """Reusable evaluator that keeps its (vector) env alive between calls.

    Args:
        env_name: OGBench name, e.g. 'cube-single-play-singletask-task2-v0'.
        num_episodes: episodes per call (default for ``__call__``).
        seed: base seed; reset seeds are ``envs.episode_seeds(seed, num_episodes)``
            and the policy keys are ``episode_key(seed, episode, step)``, so each call with
            the same seed and policy is reproducible.
        num_envs: sub-envs of the vector env (default: num_episodes, i.e. all
            episodes at once).
        parallel: vector env + batched policy (True) or one episode at a time.
        vector_mode: 'auto' (default: 'sync' below ``envs.AUTO_CHUNKED_MIN_ENVS``
            envs, else 'chunked'), 'chunked' (worker processes, one per CPU core, each
            stepping a chunk of envs), 'sync' (all envs in this process) or
            'async' (gymnasium AsyncVectorEnv, one process per env); see
            ``envs.make_vector_env`` (measured speeds: docs/benchmark.md, "The
            measurements behind the code's defaults").
            Worker processes use the 'forkserver' start method, so scripts
            must guard their entry point with ``if __name__ == '__main__'``.
        num_workers: worker processes for 'chunked' (default: CPU cores).
        max_episode_steps: optional override of the env's time limit.
        **env_kwargs: forwarded to env creation.
    """

    def __init__(self, env_name: str, num_episodes: int = 50, seed: int = 0, num_envs: int | None = None,
                 parallel: bool = True, vector_mode: str = 'auto', max_episode_steps: int | None = None,
                 num_workers: int | None = None, **env_kwargs):
        self.env_name = env_name
        self.num_episodes = int(num_episodes)
        self.seed = int(seed)
        self.num_envs = int(num_envs or num_episodes)
        self.parallel = parallel
        self.vector_mode = vector_mode
        self.num_workers = num_workers
        self._env_kwargs = dict(env_kwargs)
        if max_episode_steps is not None:
            self._env_kwargs['max_episode_steps'] = int(max_episode_steps)
        self._env = None
        self._video_env = None

    @property
    def env(self):
        """The underlying env (vector env if parallel), created on first use."""
        if self._env is None:
            if self.parallel:
                self._env = envs_lib.make_vector_env(self.env_name, self.num_envs, self.vector_mode,
                                                     num_workers=self.num_workers, **self._env_kwargs)
            else:
                self._env = envs_lib.pooled_env(self.env_name, **self._env_kwargs)
        return self._env

    def __call__(self, policy_fn: PolicyFn, temperature: float = 1.0, seed: int | None = None,
                 num_episodes: int | None = None, video_episodes: int = 0, video_frame_skip: int = 3) -> dict:
        """Evaluates ``policy_fn``.  ``temperature`` is passed to it (1, the default: the published protocol's
        noise N(0, I); 0: deterministic; floq_jax.presets.EVAL_PROTOCOLS).

        Returns:
            {'success': mean of info['success'] at episode ends in [0, 1],
             'return': mean episode return, 'length': mean episode length,
             'episode_success' / 'episode_return' / 'episode_length': (num_episodes,) arrays,
             'episode_final_observation': float32 (num_episodes, obs_dim) last observations,
             'videos' (only if video_episodes > 0): list of uint8 (F, H, W, 3), see :meth:`render_episodes`}.
        """
        seed = self.seed if seed is None else int(seed)
        n = self.num_episodes if num_episodes is None else int(num_episodes)
        seeds = envs_lib.episode_seeds(seed, n)
        rng = jax.random.PRNGKey(seed)
        if self.parallel:
            result = _run_parallel(self.env, policy_fn, seeds, rng, temperature)
        else:
            result, _ = _run_sequential(self.env, policy_fn, seeds, rng, temperature)
        if video_episodes > 0:
            result['videos'] = self.render_episodes(policy_fn, temperature, seed, n, video_episodes, video_frame_skip)
        return result

    def render_episodes(self, policy_fn: PolicyFn, temperature: float, seed: int, first_episode: int, count: int,
                        frame_skip: int = 3) -> list[np.ndarray]:
        """Renders episodes ``first_episode .. first_episode + count - 1`` of the evaluation with ``seed`` (their own
        reset seeds and action-noise keys) on one env: list of uint8 (F, H, W, 3), every ``frame_skip``-th frame and
        the last, as the published evaluation renders its video episodes.  As published, these are extra episodes
        after the counted ones (``first_episode`` = the number of counted episodes) and never enter the statistics.
        [] when rendering is unavailable (warned once)."""
        if self._video_env is None:
            self._video_env = envs_lib.pooled_env(self.env_name, **self._env_kwargs)
        seeds = envs_lib.episode_seeds(seed, first_episode + count)[first_episode:]
        _, videos = _run_sequential(self._video_env, policy_fn, seeds, jax.random.PRNGKey(seed), temperature,
                                    render=True, frame_skip=frame_skip, first_episode=first_episode)
        return videos

    def close(self) -> None:
        """Closes envs (terminates async worker processes)."""
        for env in (self._env, self._video_env):
            if env is not None:
                env.close()
        self._env = None
        self._video_env = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_evaluator(env_name: str, num_episodes: int = 50, seed: int = 0, num_envs: int | None = None,
                   parallel: bool = True, vector_mode: str = 'auto', max_episode_steps: int | None = None,
                   **env_kwargs) -> Evaluator:
    """Builds an :class:`Evaluator` (call it with ``policy_fn``; ``close()`` when done)."""
    return Evaluator(env_name, num_episodes, seed, num_envs, parallel, vector_mode, max_episode_steps, **env_kwargs)


def evaluate(policy_fn: PolicyFn, env_name: str, num_episodes: int = 50, seed: int = 0,
             num_envs: int | None = None, parallel: bool = True, temperature: float = 1.0,
             video_episodes: int = 0, vector_mode: str = 'auto', max_episode_steps: int | None = None,
             video_frame_skip: int = 3, **env_kwargs) -> dict:
    """One-shot evaluation (creates and closes its envs); see :meth:`Evaluator.__call__`."""
    with make_evaluator(env_name, num_episodes, seed, num_envs, parallel, vector_mode, max_episode_steps,
                        **env_kwargs) as evaluator:
        return evaluator(policy_fn, temperature=temperature, video_episodes=video_episodes,
                         video_frame_skip=video_frame_skip)


# ----------------------------------------------------------------------------- seeds together, bounded pool


def available_memory_bytes() -> int:
    """Memory the kernel can hand out now without swapping (MemAvailable of /proc/meminfo; else free pages)."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')  # pragma: no cover - non-Linux


def eval_pool_size(available_bytes: int, env_bytes: int, num_seeds: int, num_episodes: int,
                   fraction: float = POOL_MEMORY_FRACTION) -> int:
    """Live envs for evaluating ``num_seeds`` seeds of ``num_episodes`` episodes within a memory budget.

    As many envs of ``env_bytes`` as fit in ``fraction`` of ``available_bytes``, capped at one env per episode
    of every seed (S x episodes: all at once) and raised to at least one per seed (S).
    """
    fit = int(fraction * available_bytes) // max(int(env_bytes), 1)
    return max(int(num_seeds), min(fit, int(num_seeds) * int(num_episodes)))


def slots_per_seed(pool_size: int, num_seeds: int, num_episodes: int) -> int:
    """Sub-envs each seed gets from a pool of ``pool_size`` live envs: pool // S, at least 1, at most episodes."""
    return max(1, min(int(pool_size) // int(num_seeds), int(num_episodes)))


def seeds_evaluator(env_name: str, num_episodes: int, num_seeds: int, pool_size: int | None = None,
                    env_bytes: int = ENV_BYTES_ESTIMATE, **kwargs) -> Evaluator:
    """An :class:`Evaluator` whose vector env holds M slots for each of ``num_seeds`` seeds (S x M live envs).

    ``pool_size``: the total of live envs across seeds (default: :func:`eval_pool_size` of the memory available
    now less ``WORKER_BYTES_ESTIMATE`` per worker process, at ``env_bytes`` per env); M = :func:`slots_per_seed`.
    When S x M is below S x ``num_episodes`` the episodes run in waves, and a one-line note says so.  ``kwargs``
    go to the Evaluator (vector_mode, max_episode_steps, num_workers, ...).  The episodes do not depend on M: each
    step's noise is keyed by (seed, episode, step), so only the network's float32 rounding may differ with it.
    """
    source = 'given'
    if pool_size is None:
        available = available_memory_bytes()
        mode = envs_lib.resolve_vector_mode(kwargs.get('vector_mode', 'auto'), num_seeds * num_episodes,
                                            kwargs.get('num_workers'))
        if mode == 'async':  # one worker process per env
            env_bytes += WORKER_BYTES_ESTIMATE
        workers = (kwargs.get('num_workers') or envs_lib.default_num_workers()) if mode == 'chunked' else 0
        pool_size = eval_pool_size(max(available - workers * WORKER_BYTES_ESTIMATE, 0), env_bytes, num_seeds,
                                   num_episodes)
        source = f'sized from {available / 2**30:.1f} GiB available at {env_bytes / 2**20:.0f} MiB per env'
    slots = slots_per_seed(pool_size, num_seeds, num_episodes)
    if slots < num_episodes:
        logging.info('evaluation: %d live envs (pool %s) for %d seed(s) x %d episodes: %d per seed, episodes run '
                     'in up to %d waves', num_seeds * slots, source, num_seeds, num_episodes, slots,
                     -(-num_episodes // slots))
    return Evaluator(env_name, num_episodes=num_episodes, num_envs=num_seeds * slots, **kwargs)


def run_seeds(evaluator: Evaluator, policy_fn: SeedsPolicyFn, seeds: Sequence[int], temperature: float = 1.0,
              num_episodes: int | None = None) -> List[dict]:
    """Evaluates S policies together on ``evaluator``'s vector env, one ``policy_fn`` call per env step.

    Seed k (``seeds[k]``) gets M = ``evaluator.num_envs // S`` slots (at most the number of episodes), the reset
    seeds ``envs.episode_seeds(seeds[k], n)`` and the keys ``episode_key(seeds[k], i, t)``: its result equals
    that of an evaluation of seed k alone (on any number of slots).

    Returns:
        S dicts with the keys of :meth:`Evaluator.__call__` (no videos).
    """
    if not evaluator.parallel:
        raise ValueError('evaluating seeds together needs a parallel Evaluator')
    num_seeds = len(seeds)
    n = evaluator.num_episodes if num_episodes is None else int(num_episodes)
    if evaluator.num_envs < num_seeds:
        raise ValueError(f'{num_seeds} seeds need at least {num_seeds} envs, the evaluator has {evaluator.num_envs}')
    slots = slots_per_seed(evaluator.num_envs, num_seeds, n)
    episode_seeds = np.stack([envs_lib.episode_seeds(int(s), n) for s in seeds])
    rngs = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    return _run_slots(evaluator.env, policy_fn, episode_seeds, rngs, temperature, slots)
