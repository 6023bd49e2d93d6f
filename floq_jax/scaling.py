"""Scaled-down agent configs: one function, :func:`scaled_config`, for every small config of the project (the tests,
the sweeps' smoke and cpu scales, ``make demo``, the benchmark, the side-by-side runs) and for any agent's config.

A scale (:class:`Scale`, named in :data:`SCALES`) shrinks a config by key pattern, so it works for configs this
project has never seen (a researcher's own agent file) as long as their size keys follow the usual names:

| scale field | key pattern | becomes |
| --- | --- | --- |
| ``hidden=(w, n)`` | ``*_hidden_dims`` (a tuple of widths) | ``(w,) * min(len, n)`` |
| ``width`` | ``*_width`` | ``width`` |
| ``depth`` | ``*_depth``, ``*_blocks``, ``num_transformations`` | ``min(value, depth)`` |
| ``batch_size`` | ``batch_size`` | ``batch_size`` |
| ``samples`` | ``*_samples``, ``*_quantiles`` | ``min(value, samples)`` |
| ``flow_steps`` | ``*_flow_steps`` | ``min(value, flow_steps)`` |
| ``keys`` | the keys it names, where the config has them | its value |

A field left at None leaves its pattern alone; ``keys`` come after the patterns.  The protocols' scales ('smoke',
'demo', 'cpu', 'bench_small', 'bench_tiny') name in ``keys`` what their recorded runs used beyond the patterns:
these sizes back recorded results and run directories (flags.json records the full agent config as the run's
identity), so each reproduces its protocol exactly (tests/test_scaling.py pins every protocol's configs to those of
commit 8254dfc: tests/data/protocol_configs_8254dfc.json).

Everything else (learning rates, discount, switches, the reward range) is left alone.  Explicit ``overrides`` are
applied last, so a caller states only what differs from the scale.  The library never names an agent here.
"""

import copy
import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

import ml_collections


@dataclasses.dataclass(frozen=True)
class Scale:
    """One named scale: the pattern sizes (None: that pattern is left alone) and exact ``keys`` (module docstring)."""

    hidden: Optional[Tuple[int, int]] = None   # (width, at most this many layers) of every *_hidden_dims
    width: Optional[int] = None
    depth: Optional[int] = None
    batch_size: Optional[int] = None
    samples: Optional[int] = None
    flow_steps: Optional[int] = None
    keys: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _tests_scale(width: int, batch_size: int, samples: int, flow_steps: Optional[int]) -> Scale:
    return Scale(hidden=(width, 2), width=width, depth=2, batch_size=batch_size, samples=samples,
                 flow_steps=flow_steps)


# The demo's networks (``make demo``, experiments/demo.py; the side-by-side runs with the published code): 2 x 128
# (velocity net, actor and critic), batch 64, K = 4, 2 noise samples; a residual critic keeps its width.
_DEMO_KEYS = dict(block_width=128, block_depth=2, critic_flow_steps=4, noise_samples=2)

SCALES: Dict[str, Scale] = {
    # The tests: 'tiny', the smallest networks that still exercise every layer (most tests); 'small', 32-wide (the
    # tests that train a few chunks through the runner); 'medium', 64-wide with the default flow steps (tests that
    # learn something in a few hundred updates; experiments/precision.py at batch 128).
    'tiny': _tests_scale(16, batch_size=8, samples=2, flow_steps=2),
    'small': _tests_scale(32, batch_size=16, samples=2, flow_steps=2),
    'medium': _tests_scale(64, batch_size=64, samples=4, flow_steps=None),
    # The sweeps' smoke scale (floq_jax.sweeps.PRESETS['smoke']): 32-wide, every flow 2 steps, the IQN critic at 4
    # quantiles and 8 cosines, the stale copy refreshed until step 100 of the 100-step runs.
    'smoke': Scale(hidden=(32, 2), width=32, batch_size=32, samples=2, flow_steps=2,
                   keys=dict(block_depth=2, critic_resnet_blocks=2, num_transformations=1, iqn_num_quantiles=4,
                             iqn_num_target_quantiles=4, iqn_num_cosines=8, stale_copy_until=100)),
    'demo': Scale(hidden=(128, 2), batch_size=64, keys=_DEMO_KEYS),
    # The sweeps' cpu scale (floq_jax.sweeps.PRESETS['cpu']): the demo's networks for every agent, FQL-ResNet's
    # residual critic at the same width, the IQN critic at its published sample counts, the stale copy refreshed for
    # the published quarter of the run (250k of 1M updates; the cpu sweeps train 60k: floq_jax.sweeps.CPU_STEPS).
    'cpu': Scale(hidden=(128, 2), width=128, batch_size=64, keys=dict(_DEMO_KEYS, stale_copy_until=15_000)),
    # experiments.benchmark's small config (2 x 256 nets, 4 noise samples) and its --tiny machinery check (numbers
    # meaningless; the critic's K is the benchmark's own).
    'bench_small': Scale(hidden=(256, 2), keys=dict(block_width=256, block_depth=2, noise_samples=4)),
    'bench_tiny': Scale(hidden=(16, 2), batch_size=8,
                        keys=dict(block_width=16, block_depth=2, noise_samples=2, actor_flow_steps=2)),
}


def _scaled_value(key: str, value: Any, s: Scale):
    """The scaled value of ``key`` (or ``value`` unchanged when no pattern of ``s`` matches)."""
    if key in s.keys:
        return s.keys[key]
    if key.endswith('_hidden_dims') and isinstance(value, (tuple, list)):
        return value if s.hidden is None else (s.hidden[0],) * max(1, min(len(value), s.hidden[1]))
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    rules = ((key.endswith('_width'), s.width, False),
             (key.endswith(('_depth', '_blocks')) or key == 'num_transformations', s.depth, True),
             (key == 'batch_size', s.batch_size, False),
             (key.endswith(('_samples', '_quantiles')), s.samples, True),
             (key.endswith('_flow_steps'), s.flow_steps, True))
    for matches, size, at_most in rules:
        if matches:
            return value if size is None else min(value, size) if at_most else size
    return value


def scaled_sizes(config, scale: str) -> Dict[str, Any]:
    """{key: value} of the keys :func:`scaled_config` changes in ``config`` at ``scale`` (e.g. as ``--agent.<key>``
    flags, or a run's sizes under the user's own overrides)."""
    if scale not in SCALES:
        raise ValueError(f'unknown scale {scale!r}; accepted: {", ".join(SCALES)}')
    out = {}
    for key in list(config.keys()):
        value = config[key]
        if not isinstance(value, (ml_collections.ConfigDict, dict)):
            new = _scaled_value(key, value, SCALES[scale])
            if new != value:
                out[key] = new
    return out


def scaled_config(config: ml_collections.ConfigDict, scale: str = 'tiny', **overrides) -> ml_collections.ConfigDict:
    """A copy of ``config`` shrunk to ``scale`` (a name in :data:`SCALES`) by key pattern, then ``overrides``.

    Unknown scale names or override keys the config does not have raise ValueError / KeyError (one line)."""
    out = copy.deepcopy(config)
    out.update(scaled_sizes(config, scale))
    for key, value in overrides.items():
        if key not in out:
            raise KeyError(f'{key!r} is not a key of this config')
        out[key] = value
    return out
