"""Agent files and the one agent registry: what an agent file declares, how it is loaded, how its config is checked.

An agent is one Python file anywhere on disk (``--agent=path/to/my_agent.py[:variant]``, as ml_collections'
``config_flags`` take it).  The file declares, at module level:

  ``get_config(variant='')``  required: the agent's default ``ml_collections.ConfigDict``; ``config.agent_name``
                              names the run directories and table rows.  A file without variants may define
                              ``get_config()`` with no argument.
  ``AGENT``                   the agent class (a :class:`floq_jax.core.agent_base.Agent` subclass, FQL style: a flax
                              PyTreeNode with ``create`` / ``update`` / ``sample_actions``).  Default: the one Agent
                              subclass the file defines.
  ``CONFIG_RANGES``           {key: :class:`Accepts`} the valid values of its config keys (``positive_int``,
                              ``interval(0, 1, low_open=True)``, ...); a key ending in ``*`` matches every key with
                              that prefix, one starting with ``*`` every key with that suffix.  A bad value is one
                              line naming the key and what it accepts (:func:`check_config`).  Default: {}.
  ``VARIANTS``                the config variants the registry lists by their ``agent_name`` (default ``('',)``).

and the agent class may override these hooks of :class:`floq_jax.core.agent_base.Agent` (defaults in brackets):

  ``published_tables(config, mode)``  the published per-environment values, a sequence of
                                      ``((env-name prefix, {key: value}), ...)`` tables tried in order [none:
                                      ``--preset=published`` refuses the agent in one line]
  ``analytic_update_flops(config)``   FLOPs of one update from the frozen config [None: XLA's cost analysis]
  ``critic_probe(observations, actions, rng)``  what the critic diagnostics probe: ({prefix: features}, {name:
                                      scalar}) [the penultimate features of ``critic_features``, if defined]

The library names no agent: the project's agents (``agents/``) register themselves the same way a researcher's
file is registered when it is loaded (:func:`load_agent_file`).  ``lookup(agent_name)`` then serves presets, FLOP
counts, diagnostics, restoring run directories (which record the file in flags.json's ``agent_file``) and the
sweeps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import numbers
import os
import sys
from typing import Any, Callable, Dict, Optional, Sequence, Tuple


class AgentFileError(ValueError):
    """A bad agent file, variant, name or config value (one line naming it and what is accepted)."""


# ----------------------------------------------------------------------------------------------- config ranges
@dataclasses.dataclass(frozen=True)
class Accepts:
    """What one config key accepts: ``check(value) -> bool`` and a short description for the error line."""

    description: str
    check: Callable[[Any], bool]


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def int_at_least(low: int) -> Accepts:
    return Accepts(f'an integer >= {low}', lambda v: _is_int(v) and v >= low)


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def interval(low: Optional[float] = None, high: Optional[float] = None, low_open: bool = False,
             high_open: bool = False) -> Accepts:
    """A number in the interval (None: unbounded on that side)."""
    lo = '(-inf' if low is None else f'{"(" if low_open else "["}{low:g}'
    hi = 'inf)' if high is None else f'{high:g}{")" if high_open else "]"}'

    def check(v):
        if not _is_number(v) or v != v:  # NaN fails every comparison
            return False
        if low is not None and (v <= low if low_open else v < low):
            return False
        return not (high is not None and (v >= high if high_open else v > high))

    return Accepts(f'a number in {lo}, {hi}', check)


positive_number = interval(0, None, low_open=True)
non_negative_number = interval(0, None)


def one_of(*choices) -> Accepts:
    return Accepts(f'one of {", ".join(repr(c) for c in choices)}', lambda v: v in choices)


boolean = Accepts('True or False', lambda v: isinstance(v, bool))
positive_int_tuple = Accepts('a non-empty tuple of integers >= 1, e.g. (512, 512)',
                             lambda v: isinstance(v, (tuple, list)) and len(v) > 0
                             and all(_is_int(x) and x >= 1 for x in v))


def _ranges_for(key: str, ranges: Dict[str, Accepts]):
    if key in ranges:
        return ranges[key]
    for pattern, accepts in ranges.items():
        if (pattern.endswith('*') and key.startswith(pattern[:-1])) or \
                (pattern.startswith('*') and key.endswith(pattern[1:])):
            return accepts
    return None


def config_errors(config, ranges: Dict[str, Accepts]) -> list:
    """One line per key of ``config`` whose value ``ranges`` does not accept (keys absent from the config pass)."""
    out = []
    for key in sorted(config.keys()):
        accepts = _ranges_for(key, ranges)
        if accepts is None:
            continue
        value = config[key]
        if value is None:  # placeholders (e.g. r_min before the dataset is known)
            continue
        if not accepts.check(value):
            out.append(f'--agent.{key}={value!r}: accepted: {accepts.description}')
    return out


def check_config(config, ranges: Optional[Dict[str, Accepts]] = None) -> None:
    """Raise :class:`AgentFileError` (one line: the first bad key and what it accepts) if ``config`` has a value
    outside its agent's ``CONFIG_RANGES`` (from the registry when ``ranges`` is None)."""
    if ranges is None:
        ranges = lookup(config.agent_name).ranges
    errors = config_errors(config, ranges)
    if errors:
        more = f' (and {len(errors) - 1} more)' if len(errors) > 1 else ''
        raise AgentFileError(errors[0] + more)


# ----------------------------------------------------------------------------------------------- the registry
@dataclasses.dataclass
class AgentEntry:
    """One registered agent name: its class, the config function of its variant, its ranges and its file."""

    name: str
    cls: Any
    get_config: Callable[[], Any]
    ranges: Dict[str, Accepts]
    path: str          # the agent file (absolute)
    variant: str = ''

    @property
    def spec(self) -> str:
        return f'{self.path}:{self.variant}' if self.variant else self.path


_REGISTRY: Dict[str, AgentEntry] = {}
_MODULES: Dict[str, Any] = {}  # realpath -> module (a file is executed once per process)


def registered() -> Dict[str, AgentEntry]:
    """agent_name -> entry, in registration order."""
    return dict(_REGISTRY)


def lookup(agent_name: str) -> AgentEntry:
    """The entry registered under ``agent_name``; one-line error listing the registered names."""
    if agent_name not in _REGISTRY:
        raise AgentFileError(f'unknown agent_name {agent_name!r}; accepted: {", ".join(sorted(_REGISTRY))} (or '
                             f'--agent=<path to an agent file>)')
    return _REGISTRY[agent_name]


def agent_class(agent_name: str):
    """The class registered under ``agent_name`` (the ``agent_class`` callable the runner and restore take)."""
    return lookup(agent_name).cls


def _agent_base():
    from floq_jax.core.agent_base import Agent

    return Agent


def declared_class(module, path: str):
    """The agent class a loaded agent file declares (``AGENT``, else the one Agent subclass it defines)."""
    base = _agent_base()
    cls = getattr(module, 'AGENT', None)
    if cls is None:
        found = [v for v in vars(module).values() if inspect.isclass(v) and issubclass(v, base) and v is not base
                 and v.__module__ == module.__name__]
        if len(found) != 1:
            raise AgentFileError(f'{path}: declare the agent class as AGENT = <class> (found {len(found)} Agent '
                                 f'subclasses defined in the file: {", ".join(c.__name__ for c in found) or "none"})')
        cls = found[0]
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise AgentFileError(f'{path}: AGENT must be a subclass of floq_jax.core.agent_base.Agent, got {cls!r}')
    return cls


def config_of(module, path: str, variant: str = ''):
    """``module.get_config(variant)`` with one-line errors naming the file and variant."""
    get_config = getattr(module, 'get_config', None)
    if not callable(get_config):
        raise AgentFileError(f'{path} defines no get_config()')
    if variant and not inspect.signature(get_config).parameters:
        raise AgentFileError(f'{path} has no config variants; accepted: {path}')
    try:
        config = get_config(variant) if variant else get_config()
    except Exception as e:  # noqa: BLE001 - e.g. an unknown variant
        raise AgentFileError(f'{path}:{variant}: {type(e).__name__}: {e}') from None
    if 'agent_name' not in config:
        raise AgentFileError(f'{path}: its get_config() has no agent_name')
    return config


def register_module(module, path: Optional[str] = None,
                    variants: Optional[Sequence[str]] = None) -> Dict[str, AgentEntry]:
    """Register the agent file ``module`` under the ``agent_name`` of each of its variants (``VARIANTS``, default
    ``('',)``); returns {agent_name: entry}.  A name already taken by another class is refused in one line."""
    path = os.path.abspath(path or module.__file__)
    _MODULES.setdefault(os.path.realpath(path), module)
    cls = declared_class(module, path)
    ranges = dict(getattr(module, 'CONFIG_RANGES', {}) or {})
    out = {}
    for variant in (variants if variants is not None else getattr(module, 'VARIANTS', ('',))):
        name = config_of(module, path, variant).agent_name
        old = _REGISTRY.get(name)
        if old is not None and old.cls is not cls:
            raise AgentFileError(f'{path}: agent_name {name!r} is taken by {old.spec} (class {old.cls.__name__}); '
                                 f'give your agent another agent_name')
        if old is None:
            get_config = (lambda v=variant: module.get_config(v)) if variant else module.get_config
            _REGISTRY[name] = AgentEntry(name, cls, get_config, ranges, path, variant)
        out[name] = _REGISTRY[name]
    return out


def file_digest(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def _load_module(path: str):
    real = os.path.realpath(path)
    if real in _MODULES:
        return _MODULES[real]
    name = f'_floq_agent_file_{hashlib.sha1(real.encode()).hexdigest()[:12]}'
    spec = importlib.util.spec_from_file_location(name, real)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses / flax struct look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001
        del sys.modules[name]
        raise AgentFileError(f'cannot load agent file {path} ({type(e).__name__}: {e})') from None
    _MODULES[real] = module
    return module


def split_spec(spec: str) -> Tuple[str, str]:
    """'path.py[:variant]' -> (path, variant)."""
    path, _, variant = str(spec).partition(':')
    return path, variant


def load_agent_file(spec: str, config=None) -> AgentEntry:
    """Load and register the agent file of ``spec`` ('path.py[:variant]'); returns the entry of its config's
    ``agent_name`` (of ``config`` when given: the flags' config with its overrides, so an ``--agent.agent_name=``
    override names the run).  A file already registered (e.g. the project's own agents) is not loaded twice."""
    path, variant = split_spec(spec)
    if not os.path.isfile(path):
        raise AgentFileError(f'--agent={spec}: no such file {path!r}')
    module = _load_module(path)
    entries = register_module(module, path, variants=(variant,))  # only the variant asked for
    own_name = config_of(module, path, variant).agent_name
    name = config['agent_name'] if config is not None and 'agent_name' in config else own_name
    if name not in entries:
        cls = declared_class(module, path)
        old = _REGISTRY.get(name)
        if old is not None and old.cls is not cls:
            raise AgentFileError(f'--agent.agent_name={name!r} is taken by {old.spec}; accepted: a name not in '
                                 f'{", ".join(sorted(_REGISTRY))}')
        base = entries[own_name]
        _REGISTRY.setdefault(name, dataclasses.replace(base, name=name))
    return _REGISTRY[name]


def load_config(spec: str):
    """(entry, config): the agent file of ``spec`` loaded and registered, and its ``get_config(variant)``."""
    path, variant = split_spec(spec)
    entry = load_agent_file(spec)
    return entry, config_of(_load_module(path), path, variant)


def file_record(spec: str) -> dict:
    """What flags.json records of the agent file of ``spec`` ('path.py[:variant]'), so evaluation and resumption
    find the class again: ``agent_file`` (absolute path[:variant]) and ``agent_file_sha256``."""
    path, variant = split_spec(spec)
    path = os.path.abspath(path)
    return {'agent_file': f'{path}:{variant}' if variant else path, 'agent_file_sha256': file_digest(path)}


def class_for_run(agent_name: str, flags: dict, agent_class: Optional[Callable[[str], Any]] = None):
    """The class of a run directory's agent: ``agent_class(agent_name)`` (the caller's lookup, default the
    registry), else the agent file its flags.json records (``agent_file``; for a sweep's run, its variant's
    ``sweep_agent`` when that is a file), loaded and registered.  A recorded file that is gone is one line naming
    it; one whose content changed since the run recorded its ``agent_file_sha256`` is loaded with a one-line
    warning (the checkpoint may not fit the edited class)."""
    lookup_fn = agent_class or globals()['agent_class']
    try:
        return lookup_fn(agent_name)
    except (KeyError, ValueError) as error:
        spec = flags.get('agent_file') or flags.get('sweep_agent')  # a sweep's variant may name an agent file
        if not spec:
            raise error from None
        path = split_spec(spec)[0]
        if not os.path.isfile(path):
            if not path.endswith('.py'):
                raise error from None  # a sweep variant naming a registered agent, not a file
            raise AgentFileError(f'unknown agent_name {agent_name!r}: the run\'s agent file {path} (flags.json) '
                                 'is gone; restore it there, or register the agent before loading the run') from None
        recorded = flags.get('agent_file_sha256')
        current = file_digest(path) if recorded and flags.get('agent_file') == spec else recorded
        if current != recorded:
            import warnings

            warnings.warn(f'agent file {path} changed since the run was written (sha256 {recorded[:12]}... then, '
                          f'{current[:12]}... now): loading the current file', stacklevel=2)
        return load_agent_file(spec, {'agent_name': agent_name}).cls
