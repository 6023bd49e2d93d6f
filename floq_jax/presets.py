"""The published floq protocol: per-environment hyperparameters (``--preset=published``), run lengths, the
evaluation protocol and the reward range of the noise interval.

    overrides = published_overrides('antmaze-giant-navigate-singletask-v0')   # {'discount': 0.995, ...}
    applied = apply_preset(config, env_name, preset='published', user_keys={'alpha'})
    applied = apply_preset(config, env_name, preset='published', mode='offline_to_online')   # the O2O table

Per-environment values live next to each agent (its class's ``published_tables(config, mode)``, see
floq_jax/agent_registry.py; the project's agents cite the published READMEs they come from).  The tables are
those of the agent registered under ``config.agent_name`` and of the mode (offline, or offline-to-online: an
agent lists the O2O table first, the offline one where the O2O list has no entry).  Only keys the agent's config
has are applied, and keys the user set explicitly (``--agent.alpha=...``) win over the preset.  Everything not
listed stays at the agent's defaults.

Run lengths: :data:`PUBLISHED_PROTOCOL` (offline) and :data:`PUBLISHED_O2O_PROTOCOL` (offline-to-online),
applied by the training entrypoints under ``--preset=published`` to every flag the user did not set
(:func:`protocol_overrides`).  Evaluation: :data:`EVAL_PROTOCOLS`.  Reward range: :func:`reward_range`.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence

PRESETS = ('published',)
MODES = ('offline', 'offline_to_online')

# Run lengths of the published main.py (floq's, also for its FQL baselines); seeds are separate runs there
# (--seed=0,1,2: PUBLISHED_NUM_SEEDS), so --preset=published does not change --num_seeds.
PUBLISHED_PROTOCOL = dict(offline_steps=2_000_000, eval_interval=20_000, eval_episodes=50)
PUBLISHED_O2O_PROTOCOL = dict(offline_steps=1_000_000, online_steps=2_000_000, eval_interval=20_000,
                              eval_episodes=50, buffer_size=2_000_000, utd_ratio=1)
PUBLISHED_NUM_SEEDS = 3

# Evaluation protocols: name -> (policy noise scale, description for flags.json and every results table).
# The published sample_actions ignores its temperature argument: evaluation samples the one-step policy at
# noise N(0, I) and clips to [-1, 1].
EVAL_PROTOCOLS: Dict[str, tuple] = {
    'published': (1.0, 'one-step policy, noise N(0, I), clipped to [-1, 1] (published)'),
    'deterministic': (0.0, 'one-step policy at zero noise (deterministic; not the published protocol)'),
}
DEFAULT_EVAL_PROTOCOL = 'published'

# OGBench's success timing of the single-task envs (its ``success_timing`` env argument): name -> description.
# ogbench < 1.2 computed reward, termination and info['success'] from the next state s' ('post'); 1.2 registers the
# single-task envs with 'pre' (the current state s).  The published code pinned ogbench 1.1.x: its numbers are 'post'.
SUCCESS_TIMINGS: Dict[str, str] = {
    'post': "reward, termination and success from the next state s' (ogbench < 1.2; the published runs)",
    'pre': 'reward, termination and success from the current state s (ogbench >= 1.2 default)',
}
DEFAULT_SUCCESS_TIMING = 'post'
# Run directories written before flags.json recorded it ran the pinned ogbench 1.2.2's default.
LEGACY_SUCCESS_TIMING = 'pre'

# Episode reset seeds and action-noise keys of the evaluations: name -> description.  The published loop draws
# fresh ones at every evaluation; 'per_evaluation' derives them from (run seed, evaluation step)
# (floq_jax.envs.evaluation.evaluation_seed), 'fixed' reuses the run seed's at every evaluation.
EVAL_SEEDINGS: Dict[str, str] = {
    'per_evaluation': 'fresh episode seeds and action noise at each evaluation, from (seed, step) (as published)',
    'fixed': 'the same episode seeds and action noise at every evaluation (not the published protocol)',
}
DEFAULT_EVAL_SEEDING = 'per_evaluation'
# Run directories written before flags.json recorded it reused the seed's episodes at every evaluation.
LEGACY_EVAL_SEEDING = 'fixed'

# Reward range behind the noise interval / HL-Gauss support: name -> description.
REWARD_RANGES: Dict[str, str] = {
    'published': 'min/max of the rewards and 0 (the published replay buffer holds zero padding)',
    'dataset': "min/max of the dataset's rewards only",
}
DEFAULT_REWARD_RANGE = 'published'

# Default single task when a '-singletask' name has no '-taskN' (OGBench's defaults).
DEFAULT_TASKS = (('pointmaze', 1), ('antmaze', 1), ('humanoidmaze', 1), ('antsoccer', 4), ('puzzle', 4),
                 ('cube', 2), ('scene', 2))


def default_task(env_name: str) -> Optional[int]:
    """The task OGBench uses for ``env_name`` without a task suffix (None for unknown families)."""
    for prefix, task in DEFAULT_TASKS:
        if env_name.startswith(prefix):
            return task
    return None


def _tables(agent_name: str, mode: str, config=None) -> Sequence[tuple]:
    """The tables of the agent registered under ``agent_name`` (at ``config``, default its registered config)."""
    from floq_jax import agent_registry

    if mode not in MODES:
        raise ValueError(f'preset mode must be one of {", ".join(MODES)}, got {mode!r}')
    entry = agent_registry.lookup(agent_name)
    tables = entry.cls.published_tables(entry.get_config() if config is None else config, mode)
    if not tables:
        with_tables = [n for n, e in agent_registry.registered().items() if e.cls.published_tables(e.get_config(), mode)]
        raise ValueError(f'no published per-environment values for agent {agent_name!r}; accepted agents: '
                         f'{", ".join(sorted(with_tables))} (or --preset=none)')
    return tables


def published_overrides(env_name: str, agent_name: str, mode: str = 'offline', config=None) -> Dict:
    """The published values of ``agent_name`` for ``env_name`` in ``mode`` ({} where the defaults were used)."""
    for table in _tables(agent_name, mode, config):
        for prefix, overrides in table:
            if env_name.startswith(prefix):
                return dict(overrides)
    return {}


def apply_preset(config, env_name: str, preset: Optional[str], user_keys: Iterable[str] = (),
                 mode: str = 'offline') -> Dict:
    """Applies ``preset`` to ``config`` in place (the table of ``config.agent_name`` and ``mode``), except keys in
    ``user_keys`` or missing from the config.

    Returns the applied {key: value}.  Raises ValueError for an unknown preset, mode or agent.
    """
    if not preset or preset == 'none':
        return {}
    if preset not in PRESETS:
        raise ValueError(f'--preset must be one of {", ".join(PRESETS)} or none, got {preset!r}')
    user_keys = {k.split('.')[0] for k in user_keys}
    applied = {}
    for key, value in published_overrides(env_name, config.agent_name, mode, config).items():
        if key in user_keys or key not in config:
            continue
        config[key] = value
        applied[key] = value
    return applied


def protocol_overrides(preset: Optional[str], mode: str, values: Dict, user_set: Iterable[str]) -> Dict:
    """The published run lengths (:data:`PUBLISHED_PROTOCOL`, or :data:`PUBLISHED_O2O_PROTOCOL` for
    ``mode='offline_to_online'``) for the keys of ``values`` the user did not set: {key: published value}.

    ``values`` holds the current values of the protocol flags the entrypoint has; ``user_set`` names those given
    on the command line (they win).  Nothing for ``preset`` None / 'none'.
    """
    if not preset or preset == 'none':
        return {}
    if preset not in PRESETS:
        raise ValueError(f'--preset must be one of {", ".join(PRESETS)} or none, got {preset!r}')
    if mode not in MODES:
        raise ValueError(f'preset mode must be one of {", ".join(MODES)}, got {mode!r}')
    protocol = PUBLISHED_O2O_PROTOCOL if mode == 'offline_to_online' else PUBLISHED_PROTOCOL
    user_set = set(user_set)
    return {k: v for k, v in protocol.items() if k in values and k not in user_set}


def eval_temperature(protocol: str) -> float:
    """The policy noise scale of evaluation protocol ``protocol`` (a key of :data:`EVAL_PROTOCOLS`)."""
    if protocol not in EVAL_PROTOCOLS:
        raise ValueError(f'eval_protocol must be one of {", ".join(EVAL_PROTOCOLS)}, got {protocol!r}')
    return EVAL_PROTOCOLS[protocol][0]


def describe_eval_protocol(protocol: str) -> str:
    """One line for tables and reports, e.g. 'one-step policy, noise N(0, I), clipped to [-1, 1] (published)'."""
    if protocol in EVAL_PROTOCOLS:
        return EVAL_PROTOCOLS[protocol][1]
    return str(protocol)


def eval_protocol_of(flags: Dict) -> str:
    """The evaluation protocol a run's flags.json records.  Older runs recorded only ``eval_temperature`` (or
    nothing: they evaluated at the old default, temperature 0)."""
    protocol = flags.get('eval_protocol')
    if protocol:
        return str(protocol)
    temperature = flags.get('eval_temperature')
    if temperature is None:
        return 'deterministic'
    for name, (t, _) in EVAL_PROTOCOLS.items():
        if float(temperature) == t:
            return name
    return f'temperature {float(temperature):g}'


def success_timing_of(flags: Dict) -> str:
    """The OGBench success timing a run's flags.json records ('pre' for runs that recorded none: they ran
    ogbench 1.2.2's default)."""
    return str(flags.get('success_timing') or LEGACY_SUCCESS_TIMING)


def describe_success_timing(timing: str) -> str:
    """One line for tables, e.g. "success timing 'post': reward, termination and success from the next state s'"."""
    return f'success timing {timing!r}: {SUCCESS_TIMINGS.get(timing, "unknown")}'


def eval_seeding_of(flags: Dict) -> str:
    """The evaluation seeding a run's flags.json records ('fixed' for runs that recorded none)."""
    return str(flags.get('eval_seeding') or LEGACY_EVAL_SEEDING)


def describe_eval_seeding(seeding: str) -> str:
    return EVAL_SEEDINGS.get(seeding, f'eval seeding {seeding!r}')


def reward_range(rewards, mode: str = DEFAULT_REWARD_RANGE) -> tuple:
    """(r_min, r_max) for the agents' noise interval and value support.

    ``'published'``: the min / max of ``rewards`` and 0.  The published main.py computes them over a replay buffer
    of size max(buffer_size, N + 1) initialised with the dataset and zero padding, so 0 is always inside the range
    (a dataset of all -1 rewards gives [-1, 0], not the point -1).  ``'dataset'``: the rewards' own min / max.
    """
    import numpy as np

    if mode not in REWARD_RANGES:
        raise ValueError(f'reward_range must be one of {", ".join(REWARD_RANGES)}, got {mode!r}')
    rewards = np.asarray(rewards)
    lo, hi = float(rewards.min()), float(rewards.max())
    if mode == 'published':
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    return lo, hi


def demo_config(floq_config):
    """The small CPU config of ``make demo`` (experiments/demo.py) and the benchmark's ``--seeds_config=demo``:
    ``floq_config`` (floq's defaults, from the caller's agent registry) at the 'demo' scale of floq_jax.scaling: 2 x
    128 (velocity net, actor and distilled critic), K = 4, 2 noise samples, batch 64.  Sets ``floq_config`` in place
    and returns it."""
    from floq_jax.scaling import scaled_sizes

    floq_config.update(scaled_sizes(floq_config, 'demo'))
    return floq_config
