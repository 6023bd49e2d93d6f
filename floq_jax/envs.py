"""OGBench environment helpers: single envs and vector envs for evaluation.

Single-task dataset names such as ``'cube-single-play-singletask-task2-v0'``
are mapped to environments with ``ogbench.make_env_and_datasets(name,
env_only=True)`` (no dataset download).

For evaluation, :func:`make_vector_env` builds a gymnasium vector env
(``'sync'``: all envs in this process; ``'async'``: one worker process per env)
with autoreset DISABLED: the evaluator decides when (and with which seed) each
sub-env is reset.  Every sub-env is wrapped in :class:`FreezeAfterDone`, so a
sub-env whose episode has ended is not simulated any further while its
neighbours finish (it just repeats its final transition with done flags off,
which is what gymnasium's DISABLED autoreset mode requires).
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Sequence

import gymnasium
import numpy as np

VECTOR_MODES = ('sync', 'async')


def make_env(env_name: str, **env_kwargs) -> gymnasium.Env:
    """Makes one OGBench environment (no datasets are loaded or downloaded).

    Args:
        env_name: OGBench dataset-style name, e.g. 'cube-single-play-singletask-task2-v0'.
        **env_kwargs: forwarded to ``gymnasium.make`` (e.g. ``render_mode``).

    Returns:
        A gymnasium env (TimeLimit-wrapped; cube-single episodes are <= 200 steps).
    """
    import ogbench  # Imported lazily: pulls in mujoco.

    return ogbench.make_env_and_datasets(env_name, env_only=True, **env_kwargs)


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
        """Resets; ``options={'freeze': True}`` resets and freezes at once (an idle sub-env)."""
        options = dict(options or {})
        freeze = bool(options.pop('freeze', False))
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


def _make_frozen_env(env_name: str, env_kwargs: dict) -> gymnasium.Env:
    return FreezeAfterDone(make_env(env_name, **env_kwargs))


def make_vector_env(
    env_name: str,
    num_envs: int,
    mode: str = 'sync',
    context: str | None = 'forkserver',
    **env_kwargs,
) -> gymnasium.vector.VectorEnv:
    """Makes a vector env of ``num_envs`` OGBench envs with autoreset DISABLED.

    Args:
        env_name: OGBench name (see :func:`make_env`).
        num_envs: number of sub-envs N.
        mode: 'sync' (gymnasium SyncVectorEnv, one process) or 'async'
            (AsyncVectorEnv, one worker process per sub-env).
        context: multiprocessing start method for 'async'.  'forkserver' (or
            'spawn') avoids forking a process that has already started JAX's
            threads.
        **env_kwargs: forwarded to each sub-env.

    Returns:
        Vector env; observations (N, obs_dim), actions (N, act_dim).
    """
    if mode not in VECTOR_MODES:
        raise ValueError(f'mode must be one of {VECTOR_MODES}, got {mode!r}')
    fns: Sequence[Callable[[], gymnasium.Env]] = [
        functools.partial(_make_frozen_env, env_name, dict(env_kwargs)) for _ in range(num_envs)
    ]
    autoreset = gymnasium.vector.AutoresetMode.DISABLED
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
