"""Per-environment hyperparameters of the published floq runs (``--preset=published``).

    overrides = published_overrides('antmaze-giant-navigate-singletask-v0')   # {'discount': 0.995, ...}
    applied = apply_preset(config, env_name, preset='published', user_keys={'alpha'})

Only keys the agent's config has are applied (FQL has no ``block_depth`` etc.), and keys the user set
explicitly (``--agent.alpha=...``) win over the preset.  Everything not listed stays at the agent's defaults.
The published protocol itself (2M offline steps, evaluation every 20k steps over 50 episodes, 3 seeds) is in
:data:`PUBLISHED_PROTOCOL`.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional

PRESETS = ('published',)

# (env-name prefix, overrides); the first matching prefix wins, so longer prefixes come first.
PUBLISHED: tuple = (
    ('antmaze-large', dict(alpha=10.0)),
    ('antmaze-giant', dict(discount=0.995, q_agg='min', batch_size=512, alpha=10.0, critic_flow_steps=4)),
    ('humanoidmaze-medium', dict(discount=0.995, alpha=30.0)),
    ('humanoidmaze-large', dict(discount=0.995, batch_size=512, alpha=20.0)),
    ('antsoccer-arena', dict(discount=0.995, alpha=10.0)),
    ('cube-single', dict(alpha=300.0, block_depth=2)),
    ('cube-double', dict(alpha=300.0, block_depth=2)),
    ('scene', dict(alpha=300.0)),
    ('puzzle-3x3', dict(alpha=1000.0)),
    ('puzzle-4x4', dict(alpha=1000.0, noise_coverage=0.25)),
)

PUBLISHED_PROTOCOL = dict(offline_steps=2_000_000, eval_interval=20_000, eval_episodes=50, num_seeds=3)

# Default single task when a '-singletask' name has no '-taskN' (OGBench's defaults).
DEFAULT_TASKS = (('pointmaze', 1), ('antmaze', 1), ('humanoidmaze', 1), ('antsoccer', 4), ('puzzle', 4),
                 ('cube', 2), ('scene', 2))


def default_task(env_name: str) -> Optional[int]:
    """The task OGBench uses for ``env_name`` without a task suffix (None for unknown families)."""
    for prefix, task in DEFAULT_TASKS:
        if env_name.startswith(prefix):
            return task
    return None


def published_overrides(env_name: str) -> Dict:
    """The published floq values for ``env_name`` ({} where the defaults were used)."""
    for prefix, overrides in PUBLISHED:
        if env_name.startswith(prefix):
            return dict(overrides)
    return {}


def apply_preset(config, env_name: str, preset: Optional[str], user_keys: Iterable[str] = ()) -> Dict:
    """Applies ``preset`` to ``config`` in place, except keys in ``user_keys`` or missing from the config.

    Returns the applied {key: value}.  Raises ValueError for an unknown preset.
    """
    if not preset or preset == 'none':
        return {}
    if preset not in PRESETS:
        raise ValueError(f'--preset must be one of {", ".join(PRESETS)} or none, got {preset!r}')
    user_keys = {k.split('.')[0] for k in user_keys}
    applied = {}
    for key, value in published_overrides(env_name).items():
        if key in user_keys or key not in config:
            continue
        config[key] = value
        applied[key] = value
    return applied


def demo_config():
    """The small CPU config of ``make demo`` (experiments/demo.py) and the benchmark's ``--seeds_config=demo``:
    floq at 2 x 128 (velocity net, actor and distilled critic), K = 4, 2 noise samples, batch 64."""
    from agents import floq

    config = floq.get_config()
    config.update(dict(actor_hidden_dims=(128, 128), value_hidden_dims=(128, 128), block_width=128, block_depth=2,
                       critic_flow_steps=4, noise_samples=2, batch_size=64))
    return config
