"""The run's composition as library functions with no flags: a dataset, an agent config and RunOptions -> trained
run directories.  The training entrypoints (``experiments.common.prepare``, which only turns flags into these
arguments) and the sweeps (``floq_jax.sweeps.run``) both compose a run with them:

    count = devices.start(num_seeds, cpu_devices, ...)            # first: JAX starts only after the device flags
    data = load_data(env_name, DataSource(dataset_dir=...))        # a file, or (generate=True) a generated dataset
    config = registry.get_config(...)                              # the agent's defaults
    applied = agent_config(config, env_name, preset='published', mode='offline', data=data)
    dirs = train(agent_cls, config, data, options, mode='offline', callbacks=[...])

Precedence of an agent config's values, lowest first: the agent's defaults < its published per-environment values
(``preset``, floq_jax.presets) < ``scale`` (a named scale of floq_jax.scaling, e.g. a sweep scale's network sizes) <
``sizes`` (explicit {key: value}) < ``overrides`` (the user's or the variant's own values, which the preset also
leaves alone); then r_min / r_max from the data's rewards.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence

from floq_jax import presets

MODES = ('offline', 'offline_to_online')


@dataclasses.dataclass
class DataSource:
    """Where a run's dataset comes from: ``dataset_path``, else ``<dataset_dir>/<dataset>.npz`` (None: OGBench's
    default directory); with ``generate``, a dataset generated here (cube/scene/puzzle/pointmaze only, cached under
    ``cache_dir``: ``num_episodes`` episodes of at most ``max_episode_steps`` steps from ``seed``) when no file is
    found."""

    dataset_dir: Optional[str] = None
    dataset_path: Optional[str] = None
    cache_dir: Optional[str] = None
    num_episodes: int = 1000
    max_episode_steps: Optional[int] = None
    seed: int = 0
    generate: bool = False


def load_data(env_name: str, source: DataSource):
    """OfflineData of ``env_name`` from ``source``.  Raises floq_jax.data.DatasetError when it can be neither
    loaded nor (``source.generate``) generated."""
    from floq_jax.data import DatasetError, ensure_generated_dataset, load_offline_data, parse_name
    from floq_jax.data.ogbench_io import resolve_dataset_file

    if source.dataset_path or not source.generate:
        return load_offline_data(env_name, source.dataset_dir, source.dataset_path)
    try:
        resolve_dataset_file(env_name, source.dataset_dir)
        return load_offline_data(env_name, source.dataset_dir)
    except DatasetError:
        pass
    dataset_name = parse_name(env_name).dataset_name
    path = ensure_generated_dataset(dataset_name, num_episodes=source.num_episodes, seed=source.seed,
                                    cache_dir=source.cache_dir, max_episode_steps=source.max_episode_steps,
                                    num_workers=1 if source.num_episodes <= 4 else None)
    return load_offline_data(env_name, dataset_path=path)


def agent_config(config, env_name: str, preset: Optional[str] = None, mode: str = 'offline',
                 user_keys: Iterable[str] = (), sizes: Optional[Mapping[str, Any]] = None,
                 overrides: Optional[Mapping[str, Any]] = None, data=None,
                 reward_range: str = presets.DEFAULT_REWARD_RANGE, scale: Optional[str] = None) -> dict:
    """Sets the agent ``config`` of one run on ``env_name`` in place (precedence: the module docstring): the
    published values of ``preset`` ('published' or None) for the agent and ``mode``, except ``user_keys`` (keys
    already set by the user) and ``overrides``; then the sizes of ``scale`` (floq_jax.scaling.scaled_sizes of the
    config as the preset left it) and ``sizes``, for the keys the config has; then ``overrides``; then,
    given ``data``, r_min / r_max from its rewards (``reward_range``, floq_jax.training.runner.set_reward_range).

    Returns the preset values applied {key: value}.  Raises ValueError for an encoder that does not fit the env's
    observations (:func:`check_encoder`), an unknown preset / agent, an
    override naming a key the config lacks (``config has no key ...``), or (for a registered agent) a value outside
    the agent file's ``CONFIG_RANGES`` (floq_jax.agent_registry.check_config: one line naming the key).
    """
    overrides = dict(overrides or {})
    applied = presets.apply_preset(config, env_name, preset, set(user_keys) | set(overrides), mode=mode)
    if scale is not None:
        from floq_jax.scaling import scaled_sizes

        sizes = {**scaled_sizes(config, scale), **(sizes or {})}
    for key, value in (sizes or {}).items():
        if key in config and key not in overrides:
            config[key] = value
    for key, value in overrides.items():
        if key not in config:
            raise ValueError(f'config has no key {key!r}')
        config[key] = value
    if data is not None:
        from floq_jax.training.runner import set_reward_range

        set_reward_range(config, data, reward_range)
    from floq_jax import agent_registry

    if config.agent_name in agent_registry.registered():
        agent_registry.check_config(config)
    check_encoder(config, env_name)
    return applied


def check_encoder(config, env_name: str) -> None:
    """Raises ValueError (one line naming ``--agent.encoder``) when ``config.encoder`` does not fit ``env_name``'s
    observations: an encoder reads frames (a ``visual-*`` env), a network without one reads state vectors.  A config
    without an ``encoder`` key (an agent file that reads observations its own way) is left alone."""
    from floq_jax.data.names import is_visual

    if 'encoder' not in config:
        return
    visual = is_visual(env_name)
    encoder = config['encoder']
    if encoder is not None and not visual:
        raise ValueError(f'--agent.encoder={encoder!r}: {env_name} observes state vectors and an encoder reads '
                         'frames; accepted: no --agent.encoder, or a visual-* env')
    if encoder is None and visual:
        from floq_jax.core.encoders import ENCODERS

        raise ValueError(f'--agent.encoder=None: {env_name} observes frames, which a network without an encoder '
                         f'cannot read; accepted: --agent.encoder={"|".join(ENCODERS)}')


def check_rendering(env_name: str, episodes: int) -> None:
    """Raises floq_jax.data.DatasetError (one line: what is missing, how to install it) when ``episodes`` > 0
    episodes of ``env_name`` are to be run and it is a pixel env (it renders every observation) that MuJoCo cannot
    render here (floq_jax.data.rendering).  A state env, or no episodes, never asks for a GL backend."""
    from floq_jax.data.names import is_visual

    if episodes > 0 and is_visual(env_name):  # (a dataset name or an env id)
        from floq_jax.data.rendering import require_rendering

        require_rendering(f'evaluating {env_name}')


def train(agent_cls, config, data, options, mode: str = 'offline',
          callbacks: Sequence[Callable] = ()) -> List[str]:
    """Trains ``agent_cls`` at ``config`` on ``data`` with RunOptions ``options``: offline, or (``mode=
    'offline_to_online'``) offline then online; returns the run directories, one per seed
    (floq_jax.training.runner).  A pixel run that evaluates checks first, before anything is written, that MuJoCo
    can render here (:func:`check_rendering`)."""
    from floq_jax.training import runner

    if mode not in MODES:
        raise ValueError(f'mode={mode!r}: accepted: {", ".join(MODES)}')
    check_rendering(options.env_name, options.eval_episodes + options.video_episodes)
    return runner.run_training(agent_cls, config, data, options, online=mode == 'offline_to_online',
                               callbacks=callbacks)
