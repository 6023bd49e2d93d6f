"""What a sweep is: its scales (PRESETS: smoke / cpu / paper), its variants, envs and options, and each run's
agent config and RunOptions (built with floq_jax.training.compose, as the training entrypoints build theirs)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Mapping, Optional, Sequence

from floq_jax.training import compose
from floq_jax.training.compose import DataSource


SMOKE_ENV = 'cube-single-play-singletask-task1-v0'


# The OGBench single-task suite of the FQL / floq papers: 10 environments x 5 tasks.
SUITE_ENVS = ('antmaze-large-navigate', 'antmaze-giant-navigate', 'humanoidmaze-medium-navigate',
              'humanoidmaze-large-navigate', 'antsoccer-arena-navigate', 'cube-single-play', 'cube-double-play',
              'scene-play', 'puzzle-3x3-play', 'puzzle-4x4-play')


SUITE = tuple(f'{e}-singletask-task{t}-v0' for e in SUITE_ENVS for t in range(1, 6))


# The cpu preset's run length (its scale, floq_jax.scaling.SCALES['cpu'], refreshes floq's stale copy for the first
# quarter of it, as the published 250k of 1M updates).
CPU_STEPS = 60_000


CPU_ENV = 'cube-single-play-singletask-task2-v0'


# Each preset's agent sizes are a named scale of floq_jax.scaling (its ``scale``: 'smoke' tiny networks, 'cpu' the
# demo's networks for every agent, None the agent's own sizes), applied to the keys an agent's config has.
PRESETS: Dict[str, dict] = {
    'smoke': dict(
        options=dict(num_seeds=2, offline_steps=100, steps_per_call=25, log_interval=50, eval_interval=100,
                     save_interval=100, eval_episodes=2, eval_at_start=False, tensorboard=False, progress=False,
                     max_checkpoints=1,
                     # Short, in-process evaluation episodes (runner option; dropped if the runner lacks it).
                     eval_kwargs=dict(vector_mode='sync', max_episode_steps=50),
                     # Critic diagnostics cost one more compile per run: on only where a sweep analyses them.
                     log_diagnostics=False),
        online=dict(offline_steps=0, online_steps=50, log_interval=25, eval_interval=50, save_interval=50,
                    # Room for the 3-episode dataset and every online step (the published 2M rows would make each
                    # smoke checkpoint ~0.5 GB per seed).
                    buffer_size=1000),
        scale='smoke', env_preset=None, envs=(SMOKE_ENV,),
        data=dict(num_episodes=3, max_episode_steps=100), last_n=1),
    # Sized for about an hour per sweep on a 2-core CPU (measured times: docs/experiments.md): the demo's networks (2 x 128, batch 64, K = 4, 2 noise
    # samples), published per-environment values (alpha), 4 seeds trained together, on the demo's generated
    # 100-episode cube-single-play data, where task2 reaches ~15% success after 50k-70k updates (docs/parity.md).
    'cpu': dict(
        options=dict(num_seeds=4, offline_steps=CPU_STEPS, steps_per_call=1000, log_interval=2500,
                     eval_interval=CPU_STEPS // 4, save_interval=CPU_STEPS // 4, eval_episodes=50,
                     eval_at_start=False, max_checkpoints=1, log_diagnostics=False),
        # utd: 2500 online env steps, evaluated at 1250 and 2500 (the cpu scale's "last two evaluations").  Measured:
        # at 5000 steps evaluated every 1000, 70% of a UTD-1 run was its 5 evaluations (447 of 640 s) and the sweep
        # was heading for ~2 h (UTD 16 = 80k updates per seed).
        online=dict(offline_steps=0, online_steps=2500, log_interval=250, eval_interval=1250, save_interval=2500,
                    buffer_size=200_000),
        scale='cpu', env_preset='published', envs=(CPU_ENV,),
        data=dict(num_episodes=100, max_episode_steps=None), last_n=2),
    'paper': dict(
        # The published run lengths (floq_jax.presets.PUBLISHED_PROTOCOL: the published main.py's 2M offline
        # steps; PUBLISHED_O2O_PROTOCOL: its README's 1M offline + 2M online steps).
        options=dict(num_seeds=3, offline_steps=2_000_000, steps_per_call=1000, log_interval=5000,
                     eval_interval=20000, save_interval=100000, eval_episodes=50, max_checkpoints=3),
        online=dict(offline_steps=1_000_000, online_steps=2_000_000, log_interval=5000, eval_interval=20000,
                    save_interval=100000),
        scale=None, env_preset='published', envs=None,
        data=dict(num_episodes=1000, max_episode_steps=None), last_n=3),
}


# Runner options a sweep can run without (a speed-up only); any other unknown option is an error.
OPTIONAL_RUNNER_OPTIONS = {'eval_kwargs', 'log_diagnostics'}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One arm of a sweep: an agent (a name of the agent registry, e.g. floq, fql_resnet, or an agent file), its
    config overrides, RunOptions overrides (e.g. ``utd_ratio``, ``config_schedule``) and tags recorded in flags.json
    (e.g. ``{'K': 4}``)."""

    name: str
    agent: str = ''  # a registered agent name or an agent file (path.py[:variant]); '' = the variant's name
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.agent:
            object.__setattr__(self, 'agent', self.name)


@dataclasses.dataclass
class Sweep:
    name: str
    variants: Sequence[Variant]
    envs: Sequence[str]
    preset: str = 'smoke'
    mode: str = 'offline'                     # or 'offline_to_online'
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)  # RunOptions overrides for every run
    save_dir: str = 'runs/sweeps'
    description: str = ''
    cpu_devices: int = 1                      # XLA CPU devices in effect (recorded in each run's flags.json)
    # The agent registry (the ``agents`` package, or any object with get_config(name) and agent_class(agent_name)).
    registry: Any = None

    @property
    def root(self) -> str:
        return os.path.join(self.save_dir, self.name)


@dataclasses.dataclass
class SweepData(DataSource):
    """Where a sweep's datasets come from: real files (dataset_dir / dataset_path) else generated into cache_dir
    (floq_jax.training.compose.DataSource with ``generate`` on)."""

    generate: bool = True


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f'--preset={name!r}: accepted: {", ".join(PRESETS)}')
    return PRESETS[name]


def parse_list(text: str, cast=str) -> list:
    return [cast(x.strip()) for x in str(text).split(',') if x.strip()] if text else []


def merged_options(sweep: Sweep) -> dict:
    """The sweep's run options: its preset's, then the online preset's (offline-to-online), then its own."""
    p = preset(sweep.preset)
    o = dict(p['options'])
    if sweep.mode == 'offline_to_online':
        o.update(p['online'])
    o.update(sweep.options)
    return o


def seed_count(sweep: Sweep) -> int:
    """Seeds of each (variant, env) of the sweep (every run of a sweep has the same count): the automatic
    ``--cpu_devices`` is taken from it (floq_jax.training.devices.start)."""
    return int(merged_options(sweep)['num_seeds'])


def offline_steps_of(sweep: Sweep) -> int:
    return int(merged_options(sweep)['offline_steps'])


def variant_order(sweep: Sweep) -> Dict[str, int]:
    return {v.name: i for i, v in enumerate(sweep.variants)}


def agent_available(agent: str, registry) -> Optional[str]:
    """None if the agent can run here, else why not (e.g. an agent the registry does not know)."""
    try:
        registry.agent_class(registry.get_config(agent).agent_name)
    except Exception as e:  # noqa: BLE001 - reported in results.md
        return f'{agent}: {e}'
    return None


def make_config(variant: Variant, env_name: str, preset_name: str, registry, data=None, mode: str = 'offline'):
    """Config of ``variant`` on ``env_name``: agent defaults (``registry.get_config(variant.agent)``, the caller's
    agent registry, e.g. the ``agents`` package) < published env preset of the agent and ``mode``
    (cpu, paper) < the preset's scale (floq_jax.scaling: smoke, cpu) < the variant's overrides; reward range from
    ``data`` (the published rule); floq_jax.training.compose.agent_config, as the training entrypoints."""
    p = preset(preset_name)
    config = registry.get_config(variant.agent)
    try:
        compose.agent_config(config, env_name, p['env_preset'], mode, scale=p['scale'], overrides=variant.overrides,
                             data=data)
    except ValueError as e:
        if 'config has no key' not in str(e):
            raise
        raise ValueError(f'variant {variant.name}: {variant.agent} {e}') from None
    return config


def run_options(sweep: Sweep, variant: Variant, env_name: str):
    """RunOptions of one (variant, env): preset < sweep options < variant options, built by
    floq_jax.training.options.build_run_options (as the training entrypoints build theirs).  Options the runner does
    not know (e.g. an older runner without ``eval_kwargs``) are dropped with a warning where the run can go without
    them (OPTIONAL_RUNNER_OPTIONS); any other is a ValueError naming the variant.  flags.json records the variant
    and, for an agent file, the file (``agent_file``, ``agent_file_sha256``) as the training entrypoints do."""
    from floq_jax.training.options import UnknownOptions, build_run_options

    values = merged_options(sweep)
    values.update(variant.options)
    values.update(save_dir=sweep.save_dir, run_group=f'{sweep.name}/{variant.name}')
    flags = dict(variant=variant.name, sweep=sweep.name, preset=sweep.preset, sweep_agent=variant.agent,
                 cpu_devices=sweep.cpu_devices, **dict(variant.tags))
    if variant.agent.partition(':')[0].endswith('.py'):  # an agent file: recorded as the training entrypoints do
        from floq_jax import agent_registry

        flags.update(agent_registry.file_record(variant.agent))
    try:
        return build_run_options(env_name, values, flags, optional=OPTIONAL_RUNNER_OPTIONS)
    except UnknownOptions as e:
        raise ValueError(f'{sweep.name}/{variant.name} needs {e}') from None
