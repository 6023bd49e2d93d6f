"""Scaled-down agent configs for tests, smoke runs and CPU sweeps: one function for any agent's config.

:func:`scaled_config` shrinks an agent config by key pattern, so it works for configs this project has never seen
(a researcher's own agent file) as long as their size keys follow the usual names:

| key pattern | becomes |
| --- | --- |
| ``*_hidden_dims`` (a tuple of widths) | ``(width,) * min(len, depth)`` |
| ``*_width`` | ``width`` |
| ``*_depth``, ``*_blocks``, ``num_transformations`` | ``min(value, depth)`` |
| ``batch_size`` | ``batch_size`` |
| ``*_samples``, ``*_quantiles`` | ``min(value, samples)`` |
| ``*_flow_steps`` | ``min(value, flow_steps)`` (left as it is where the scale's ``flow_steps`` is None) |

Everything else (learning rates, discount, switches, the reward range) is left alone.  Explicit ``overrides``
are applied last, so a test states only what differs from the scale.  The library never names an agent here.
"""

import copy
from typing import Any, Dict, Optional

import ml_collections

# The named sizes.  'tiny': the smallest networks that still exercise every layer (most tests); 'small': 32-wide
# (the tests that train a few chunks through the runner); 'medium': 64-wide with the default flow steps
# (tests that learn something in a few hundred updates).
SCALES: Dict[str, Dict[str, Optional[int]]] = {
    'tiny': dict(width=16, depth=2, batch_size=8, samples=2, flow_steps=2),
    'small': dict(width=32, depth=2, batch_size=16, samples=2, flow_steps=2),
    'medium': dict(width=64, depth=2, batch_size=64, samples=4, flow_steps=None),
}


def _scaled_value(key: str, value: Any, s: Dict[str, Optional[int]]):
    """The scaled value of ``key`` (or ``value`` unchanged when no pattern matches)."""
    if key.endswith('_hidden_dims') and isinstance(value, (tuple, list)):
        return (s['width'],) * max(1, min(len(value), s['depth']))
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    if key.endswith('_width'):
        return s['width']
    if key.endswith(('_depth', '_blocks')) or key == 'num_transformations':
        return min(value, s['depth'])
    if key == 'batch_size':
        return s['batch_size']
    if key.endswith(('_samples', '_quantiles')):
        return min(value, s['samples'])
    if key.endswith('_flow_steps') and s['flow_steps'] is not None:
        return min(value, s['flow_steps'])
    return value


def scaled_config(config: ml_collections.ConfigDict, scale: str = 'tiny', **overrides) -> ml_collections.ConfigDict:
    """A copy of ``config`` shrunk to ``scale`` (a name in :data:`SCALES`) by key pattern, then ``overrides``.

    Unknown scale names or override keys the config does not have raise ValueError / KeyError (one line)."""
    if scale not in SCALES:
        raise ValueError(f'unknown scale {scale!r}; accepted: {", ".join(SCALES)}')
    out = copy.deepcopy(config)
    for key in list(out.keys()):
        value = out[key]
        if not isinstance(value, ml_collections.ConfigDict):
            new = _scaled_value(key, value, SCALES[scale])
            if new != value:
                out[key] = new
    for key, value in overrides.items():
        if key not in out:
            raise KeyError(f'{key!r} is not a key of this config')
        out[key] = value
    return out
