"""OGBench environment helpers: single envs and vector envs for evaluation.

Single-task dataset names such as ``'cube-single-play-singletask-task2-v0'``
are mapped to environments with ``ogbench.make_env_and_datasets(name,
env_only=True)`` (no dataset download).

For evaluation, :func:`make_vector_env` builds a gymnasium vector env
(``'sync'``: all envs in this process; ``'async'``: gymnasium's
AsyncVectorEnv, one worker process per env; ``'chunked'``: :class:`ChunkedVectorEnv`,
a few worker processes (default: one per CPU core) each stepping a chunk of envs;
``'auto'``, the default: 'chunked' from :data:`AUTO_CHUNKED_MIN_ENVS` envs on, else 'sync')
with autoreset DISABLED: the evaluator decides when (and with which seed) each
sub-env is reset.  Every sub-env is wrapped in :class:`FreezeAfterDone`, so a
sub-env whose episode has ended is not simulated any further while its
neighbours finish (it just repeats its final transition with done flags off,
which is what gymnasium's DISABLED autoreset mode requires).
"""

from __future__ import annotations

import collections
import functools
import os
from typing import Callable, Sequence

import gymnasium
import numpy as np

VECTOR_MODES = ('auto', 'sync', 'async', 'chunked')
# 'auto' steps fewer envs than this in the evaluating process ('sync') and more in worker processes ('chunked'):
# worker processes cost a fixed start (the forkserver imports the entry point, each worker imports ogbench and builds
# its envs afresh, while 'sync' reuses this process's idle envs), which only a larger pool wins back (timings:
# docs/benchmark.md, "Evaluation pools").  Below 8, 'sync' was the faster and starts no processes (less CPU where the
# cores are busy, as in tests).
AUTO_CHUNKED_MIN_ENVS = 8


def make_env(env_name: str, **env_kwargs) -> gymnasium.Env:
    """Makes one OGBench environment (no datasets are loaded or downloaded).

    Args:
        env_name: OGBench dataset-style name, e.g. 'cube-single-play-singletask-task2-v0'.
        **env_kwargs: forwarded to ``gymnasium.make`` (e.g. ``render_mode``); ``success_timing`` defaults to
            ``floq_jax.presets.DEFAULT_SUCCESS_TIMING`` ('post', the published runs').

    Returns:
        A gymnasium env (TimeLimit-wrapped; cube-single episodes are <= 200 steps) whose seeded resets also seed
        NumPy's global generator (:class:`GlobalRandomSeededReset`).
    """
    import ogbench  # Imported lazily: pulls in mujoco.

    from floq_jax import presets

    # The published runs' success timing unless asked otherwise (ogbench 1.2's own default is 'pre').
    env_kwargs.setdefault('success_timing', presets.DEFAULT_SUCCESS_TIMING)
    frame_stack = env_kwargs.pop('frame_stack', None)  # pixels: the published --frame_stack (FrameStack below)
    env = GlobalRandomSeededReset(ogbench.make_env_and_datasets(env_name, env_only=True, **env_kwargs))
    return env if frame_stack is None else FrameStack(env, int(frame_stack))


class FrameStack(gymnasium.Wrapper):
    """The published ``FrameStackWrapper``: the observation is the last ``num_stack`` frames concatenated on the last
    axis, oldest first; a reset fills the window with the first frame (and stacks ``info['goal']`` the same way).
    The training batches stack the dataset's frames by the same rule (``floq_jax.data.sampling.stack_frames``)."""

    def __init__(self, env: gymnasium.Env, num_stack: int):
        super().__init__(env)
        self.num_stack = int(num_stack)
        self.frames = collections.deque(maxlen=self.num_stack)
        space = env.observation_space
        self.observation_space = gymnasium.spaces.Box(
            low=np.concatenate([space.low] * self.num_stack, axis=-1),
            high=np.concatenate([space.high] * self.num_stack, axis=-1), dtype=space.dtype)

    def observation(self):
        return np.concatenate(list(self.frames), axis=-1)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        for _ in range(self.num_stack):
            self.frames.append(obs)
        if 'goal' in info:
            info['goal'] = np.concatenate([info['goal']] * self.num_stack, axis=-1)
        return self.observation(), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.frames.append(obs)
        return self.observation(), reward, terminated, truncated, info


class GlobalRandomSeededReset(gymnasium.Wrapper):
    """A reset with a seed also seeds NumPy's global generator for the duration of the reset (then restores it).

    OGBench's maze envs (pointmaze, antmaze, humanoidmaze, antsoccer) draw their start and goal noise from the
    global ``np.random`` (``locomaze/maze.py: add_noise``), not from the reset seed: without this an episode's
    start would depend on whatever else consumed the global generator before it (other episodes, other envs of
    the pool, the order of slots), and an evaluation would not be a function of its episode seeds.
    """

    def reset(self, *, seed=None, options=None):
        if seed is None:
            return self.env.reset(seed=seed, options=options)
        state = np.random.get_state()
        np.random.seed(int(seed) % 2**32)
        try:
            return self.env.reset(seed=seed, options=options)
        finally:
            np.random.set_state(state)


class FreezeAfterDone(gymnasium.Wrapper):
    """After an episode ends, further ``step`` calls are no-ops until ``reset``.

    The first step that ends the episode is returned unchanged.  Later steps
    return the final observation/info again with reward 0 and
    ``terminated = truncated = False`` (no simulation is run), so vector envs
    with autoreset DISABLED can keep stepping all sub-envs in lockstep.
    """

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        self._done = False
        self._last = None

    def reset(self, *, seed=None, options=None):
        """Resets; ``options={'freeze': True}`` parks the env (idle slot) instead.

        Freezing an env whose episode has ended costs nothing (its final
        transition is kept); otherwise it is reset once and then frozen.
        Gymnasium vector envs with autoreset DISABLED need a done sub-env to be
        reset before the next ``step``; parking it satisfies that.
        """
        options = dict(options or {})
        freeze = bool(options.pop('freeze', False))
        if freeze and self._done:
            return self._last
        obs, info = self.env.reset(seed=seed, options=options)
        self._done = freeze
        self._last = (obs, info) if freeze else None
        return obs, info

    def step(self, action):
        if self._done:
            obs, info = self._last
            return obs, 0.0, False, False, info
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            self._done = True
            self._last = (obs, info)
        return obs, reward, terminated, truncated, info


# ----------------------------------------------------------------------------- reuse of built envs

# Building an OGBench env costs 1-3 s of CPU (MuJoCo compiles its model twice: once for the observation space, once
# at the first reset), which dominates short runs and a sweep's many runs in one process.  Envs closed through
# pooled_env go back to a per-process pool of idle envs instead.  Every user resets an env with an explicit seed
# before stepping it, and a reset with a seed starts the same episode on a reused env as on a new one
# (tests/test_env_pool.py), so reuse changes no result.  Worker processes (vector_mode 'chunked', 'async') have
# their own pools, gone with them.
ENV_POOL_VAR = 'FLOQ_ENV_POOL'
DEFAULT_MAX_IDLE_ENVS = 8  # idle envs kept per process (~160 MB each for cube); $FLOQ_ENV_POOL overrides, 0 = off
_IDLE: dict = {}


def max_idle_envs() -> int:
    value = os.environ.get(ENV_POOL_VAR, '')
    return int(value) if value.strip() else DEFAULT_MAX_IDLE_ENVS


def idle_env_count() -> int:
    return sum(len(v) for v in _IDLE.values())


def _pool_key(env_name: str, env_kwargs: dict):
    return env_name, tuple(sorted((k, repr(v)) for k, v in env_kwargs.items()))


class PooledEnv(gymnasium.Wrapper):
    """An env from the pool: ``close`` returns the env to it (while there is room) instead of closing it."""

    def __init__(self, env: gymnasium.Env, key):
        super().__init__(env)
        self._key = key
        self._released = False

    def close(self):
        if self._released:
            return
        self._released = True
        if idle_env_count() < max_idle_envs():
            _IDLE.setdefault(self._key, []).append(self.env)
        else:
            self.env.close()


def pooled_env(env_name: str, **env_kwargs) -> gymnasium.Env:
    """Like :func:`make_env`, but takes an idle env of the same name and kwargs from this process's pool when there is
    one; ``close()`` gives it back.  Reset it with a seed before use (as every caller in floq_jax does)."""
    key = _pool_key(env_name, env_kwargs)
    idle = _IDLE.get(key)
    env = idle.pop() if idle else make_env(env_name, **env_kwargs)
    return PooledEnv(env, key)


def clear_env_pool() -> None:
    """Closes every idle env of this process's pool."""
    for envs in _IDLE.values():
        for env in envs:
            env.close()
    _IDLE.clear()


def _make_frozen_env(env_name: str, env_kwargs: dict) -> gymnasium.Env:
    return FreezeAfterDone(pooled_env(env_name, **env_kwargs))


def _worker(conn, env_fns) -> None:
    """Worker loop of ChunkedVectorEnv: owns ``len(env_fns)`` envs.

    Ctrl-C (SIGINT to the whole process group) and SIGTERM (a preemption notice sent to every process, e.g. by SLURM or
    a shutting-down machine) are left to the parent, which saves and closes the workers; a worker whose parent is gone
    (its pipe closed, e.g. after SIGKILL) exits quietly instead of printing EOFError/BrokenPipeError.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        from floq_jax.console import quiet_setup

        quiet_setup()
        envs = [fn() for fn in env_fns]
        conn.send(('ok', (envs[0].observation_space, envs[0].action_space)))
        while True:
            cmd, data = conn.recv()
            if cmd == 'reset':
                seeds, mask, options = data
                out = {}
                for i, env in enumerate(envs):
                    if mask[i]:
                        out[i] = env.reset(seed=seeds[i], options=dict(options))
                conn.send(('ok', out))
            elif cmd == 'step':
                results = [env.step(a) for env, a in zip(envs, data)]
                obs, rew, term, trunc, infos = zip(*results)
                # Only scalar info entries travel back (OGBench infos also hold arrays: qpos, qvel, ...).
                infos = [{k: v for k, v in info.items() if np.ndim(v) == 0} for info in infos]
                conn.send(('ok', (np.stack(obs), np.asarray(rew, np.float64), np.asarray(term, bool),
                                  np.asarray(trunc, bool), infos)))
            elif cmd == 'cpu':
                import resource

                usage = resource.getrusage(resource.RUSAGE_SELF)
                conn.send(('ok', usage.ru_utime + usage.ru_stime))
            elif cmd == 'close':
                for env in envs:
                    env.close()
                conn.send(('ok', None))
                break
    except EOFError:  # recv: the parent is gone
        pass
    except Exception as e:  # noqa: BLE001 - forwarded to the parent.
        try:
            conn.send(('error', f'{type(e).__name__}: {e}'))
        except OSError:  # BrokenPipeError: the parent is gone
            pass
    finally:
        conn.close()


def _scalar_infos(infos: list[dict]) -> dict:
    """Stacks info values that are scalars in every env into (N,) arrays (e.g. infos['success'])."""
    out = {}
    for key in infos[0] if infos else ():
        values = [info.get(key) for info in infos]
        if all(np.ndim(v) == 0 and v is not None for v in values):
            out[key] = np.asarray(values)
    return out


class ChunkedVectorEnv(gymnasium.vector.VectorEnv):
    """Vector env whose ``num_envs`` sub-envs live in ``num_workers`` processes.

    Unlike gymnasium's AsyncVectorEnv (one process per env), each worker steps a
    contiguous chunk of envs, so 50 envs on 2 cores need 2 processes, not 50.
    Semantics match gymnasium's DISABLED autoreset mode: ``reset(seed=list,
    options={'reset_mask': (N,) bool, ...})`` resets the masked sub-envs only;
    ``step`` never resets.  ``infos`` holds (N,) arrays of the scalar info keys
    only (e.g. ``infos['success']``); array-valued info entries are dropped in
    the workers to keep inter-process traffic small.

    Args:
        env_fns: N picklable env constructors.
        num_workers: worker processes (default: CPU cores, at most N).
        context: multiprocessing start method.
    """

    def __init__(self, env_fns, num_workers: int | None = None, context: str | None = 'forkserver'):
        import multiprocessing as mp

        self.num_envs = len(env_fns)
        num_workers = min(num_workers or default_num_workers(), self.num_envs)
        bounds = np.linspace(0, self.num_envs, num_workers + 1).astype(int)
        self._slices = [slice(bounds[i], bounds[i + 1]) for i in range(num_workers)]
        ctx = mp.get_context(context)
        self._conns, self._procs = [], []
        for sl in self._slices:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, list(env_fns[sl])), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        obs_space, act_space = self._gather()[0]
        self.single_observation_space = obs_space
        self.single_action_space = act_space
        self.observation_space = gymnasium.vector.utils.batch_space(obs_space, self.num_envs)
        self.action_space = gymnasium.vector.utils.batch_space(act_space, self.num_envs)
        self._obs = np.zeros((self.num_envs,) + obs_space.shape, obs_space.dtype)
        self.closed = False

    def _gather(self):
        results = []
        for conn in self._conns:
            status, payload = conn.recv()
            if status != 'ok':
                raise RuntimeError(f'ChunkedVectorEnv worker failed: {payload}')
            results.append(payload)
        return results

    def reset(self, *, seed=None, options=None):
        options = dict(options or {})
        mask = np.asarray(options.pop('reset_mask', np.ones(self.num_envs, bool)), bool)
        if seed is None or isinstance(seed, int):
            seed = [None if seed is None else seed + i for i in range(self.num_envs)]
        for conn, sl in zip(self._conns, self._slices):
            conn.send(('reset', (list(seed[sl]), mask[sl], options)))
        infos = [{} for _ in range(self.num_envs)]
        for sl, out in zip(self._slices, self._gather()):
            for i, (obs, info) in out.items():
                self._obs[sl.start + i] = obs
                infos[sl.start + i] = info
        return self._obs.copy(), _scalar_infos(infos)

    def step(self, actions):
        actions = np.asarray(actions)
        for conn, sl in zip(self._conns, self._slices):
            conn.send(('step', actions[sl]))
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        infos = []
        for sl, (obs, rew, term, trunc, chunk_infos) in zip(self._slices, self._gather()):
            self._obs[sl], rewards[sl], terminated[sl], truncated[sl] = obs, rew, term, trunc
            infos.extend(chunk_infos)
        return self._obs.copy(), rewards, terminated, truncated, _scalar_infos(infos)

    def worker_cpu_seconds(self) -> float:
        """Total CPU seconds used so far by the worker processes."""
        for conn in self._conns:
            conn.send(('cpu', None))
        return float(sum(self._gather()))

    def close_extras(self, **kwargs):
        for conn in self._conns:
            try:
                conn.send(('close', None))
                conn.recv()
            except (OSError, EOFError, BrokenPipeError):
                pass
            conn.close()
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()


def resolve_vector_mode(mode: str, num_envs: int, num_workers: int | None = None) -> str:
    """The vector mode a pool of ``num_envs`` envs runs in: 'auto' and a 'chunked' pool that would have a single
    worker become 'sync'; other modes are returned as given.  Raises ValueError for a mode not in VECTOR_MODES."""
    if mode not in VECTOR_MODES:
        raise ValueError(f'vector mode must be one of {VECTOR_MODES}, got {mode!r}')
    if mode == 'auto':
        mode = 'chunked' if num_envs >= AUTO_CHUNKED_MIN_ENVS else 'sync'
    if mode == 'chunked' and min(num_workers or default_num_workers(), num_envs) <= 1:
        mode = 'sync'  # One worker process would only add IPC overhead.
    return mode


def make_vector_env(
    env_name: str,
    num_envs: int,
    mode: str = 'auto',
    context: str | None = 'forkserver',
    num_workers: int | None = None,
    **env_kwargs,
) -> gymnasium.vector.VectorEnv:
    """Makes a vector env of ``num_envs`` OGBench envs with autoreset DISABLED.

    Args:
        env_name: OGBench name (see :func:`make_env`).
        num_envs: number of sub-envs N.
        mode: 'sync' (gymnasium SyncVectorEnv, one process), 'async'
            (AsyncVectorEnv, one worker process per sub-env), 'chunked'
            (ChunkedVectorEnv, ``num_workers`` processes holding chunks of envs;
            falls back to 'sync' when there would be a single worker) or 'auto'
            (see :func:`resolve_vector_mode`).
        context: multiprocessing start method for 'async'.  'forkserver' (or
            'spawn') avoids forking a process that has already started JAX's
            threads.
        num_workers: worker processes for 'chunked' (default: CPU cores).
        **env_kwargs: forwarded to each sub-env.

    Returns:
        Vector env; observations (N, obs_dim), actions (N, act_dim).
    """
    mode = resolve_vector_mode(mode, num_envs, num_workers)
    fns: Sequence[Callable[[], gymnasium.Env]] = [
        functools.partial(_make_frozen_env, env_name, dict(env_kwargs)) for _ in range(num_envs)
    ]
    autoreset = gymnasium.vector.AutoresetMode.DISABLED
    if mode == 'chunked':
        return ChunkedVectorEnv(fns, num_workers=num_workers, context=context)
    if mode == 'sync':
        return gymnasium.vector.SyncVectorEnv(fns, autoreset_mode=autoreset)
    return gymnasium.vector.AsyncVectorEnv(fns, context=context, autoreset_mode=autoreset)


def episode_seeds(seed: int, num_episodes: int) -> np.ndarray:
    """Per-episode env reset seeds derived deterministically from ``seed``.

    Returns:
        int64 array (num_episodes,); episode i is always reset with seeds[i],
        whether episodes run one at a time or in parallel.
    """
    return np.random.SeedSequence([int(seed), 0x0E7A1]).generate_state(num_episodes, np.uint32).astype(np.int64)


def default_num_workers() -> int:
    """CPU cores available to this process (for sizing async vector envs)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
