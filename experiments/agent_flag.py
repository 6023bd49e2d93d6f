"""The agent flag: ``--agent=<file>[:<variant>]`` (an ml_collections config file) and its ``--agent.<key>``
overrides, checked and defined when the command line is parsed (:func:`flags_parser`, every entrypoint's parser)."""

from __future__ import annotations

import os
import sys

from absl import flags
from ml_collections import config_flags

from experiments import REPO
from experiments.errors import UsageError, did_you_mean, fail

FLAGS = flags.FLAGS


# config_flags applies the --agent.<key> overrides it finds on the command line when --agent is defined, so the
# entrypoints that take an agent config have it defined by flags_parser, once the command line is known and checked.
_AGENT_FLAG = {'wanted': False}


DEFAULT_AGENT_FILE = os.path.join(REPO, 'agents', 'floq.py')


def want_agent_flag() -> None:
    """This entrypoint takes --agent (defined by :func:`flags_parser` once the command line is known)."""
    _AGENT_FLAG['wanted'] = True


def define_agent_flag(argv) -> None:
    """--agent=<file>[:<variant>] with its --agent.<key> overrides from ``argv``; listed by the entrypoint's --help
    with the selected file's keys."""
    config_flags.DEFINE_config_file('agent', DEFAULT_AGENT_FILE, agent_help(argv), lock_config=False, sys_argv=argv)
    FLAGS.register_key_flag_for_module(argv[0], FLAGS['agent'])


def flags_parser(argv):
    """absl ``app.run`` flags parser whose errors are one line (the default prints usage hints).

    config_flags reads --agent/--agent.* lazily and needs --agent=<file> before the overrides: put it there (in
    place: ``argv`` is sys.argv), check the file (and variant) and the override keys, each failure as one line, and
    give --help the selected file's keys.
    """
    if _AGENT_FLAG['wanted'] and 'agent' not in FLAGS:
        normalize_agent_argv(argv)
        try:
            check_agent_argv(argv)
        except UsageError as e:
            fail(e)
        try:
            define_agent_flag(argv)
        except Exception as e:  # noqa: BLE001
            fail(f'--agent: {type(e).__name__}: {e}')
    try:
        return FLAGS(argv)
    except Exception as e:  # noqa: BLE001 - config_flags raises AttributeError/KeyError for unknown keys
        fail(f'{type(e).__name__}: {e}' if not isinstance(e, flags.Error) else e)


def _agent_spec(argv):
    """The last --agent=<file>[:<variant>] value in argv, or None."""
    spec = None
    for i, a in enumerate(argv[1:], 1):
        if a.startswith('--agent='):
            spec = a.split('=', 1)[1]
        elif a == '--agent' and i + 1 < len(argv):
            spec = argv[i + 1]
    return spec


def normalize_agent_argv(argv) -> None:
    """Moves --agent=<file> in front of the --agent.<key> overrides, in place (config_flags refuses the other order
    with a message that does not say which order it wants)."""
    first_override = next((i for i, a in enumerate(argv) if a.startswith('--agent.')), None)
    files = [i for i, a in enumerate(argv) if a.startswith('--agent=')]
    if first_override is None or not files or files[-1] < first_override:
        return
    spec = argv[files[-1]]
    for i in reversed(files):
        del argv[i]
    argv.insert(first_override, spec)


def agent_files() -> list:
    """The agent config files that ship with the repository (paths as --agent takes them from here)."""
    directory = os.path.join(REPO, 'agents')
    out = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.endswith('.py') and not name.startswith('_'):
            with open(path) as f:
                if 'def get_config' in f.read():
                    out.append(os.path.relpath(path))
    return out


def load_agent_config(spec: str):
    """get_config() of --agent=<file>[:<variant>] (ml_collections' rules); UsageError naming the file or variant."""
    import importlib.util
    import inspect

    path, _, variant = spec.partition(':')
    if not os.path.isfile(path):
        known = agent_files()
        raise UsageError(f'--agent={spec}: no such file {path!r}{did_you_mean(path, known)}; accepted: '
                         f'{", ".join(known)} (optionally <file>:<variant>, e.g. agents/fql.py:resnet)')
    try:
        module_spec = importlib.util.spec_from_file_location('_agent_cfg', path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001
        raise UsageError(f'--agent={spec}: cannot load {path} ({type(e).__name__}: {e})') from None
    if not callable(getattr(module, 'get_config', None)):
        raise UsageError(f'--agent={spec}: {path} defines no get_config(); accepted: {", ".join(agent_files())}')
    if variant and not inspect.signature(module.get_config).parameters:
        raise UsageError(f'--agent={spec}: {path} has no config variants; accepted: --agent={path}')
    try:
        return module.get_config(variant) if variant else module.get_config()
    except Exception as e:  # noqa: BLE001 - e.g. an unknown variant
        raise UsageError(f'--agent={spec}: {type(e).__name__}: {e}') from None


def agent_help(argv) -> str:
    """--help text of --agent: the shipped config files and every --agent.<key> of the selected one with its default."""
    spec = _agent_spec(argv) or os.path.relpath(os.path.join(REPO, 'agents', 'floq.py'))
    try:
        config = load_agent_config(spec)
    except UsageError:
        return 'Agent config file[:variant].'
    keys = '; '.join(f'--agent.{k}={config[k]!r}' for k in sorted(config.keys()))
    return (f'Agent config file[:variant]: {", ".join(agent_files())} (e.g. agents/fql.py:resnet). Every key of its '
            f'config is a flag --agent.<key>=<value>; for {spec} (key=default): {keys}')


def check_agent_argv(argv) -> None:
    """--agent=<file>[:<variant>] loads and every --agent.<key> names a key of its config (UsageError otherwise)."""
    spec = _agent_spec(argv)
    keys = [a[len('--agent.'):].split('=', 1)[0] for a in argv[1:] if a.startswith('--agent.')]
    if spec is None and not keys:
        return
    config = load_agent_config(spec or os.path.join(REPO, 'agents', 'floq.py'))
    known = sorted(config.keys())
    for key in keys:
        top = key.split('.')[0]
        if top not in known:
            raise UsageError(f'--agent.{key}: unknown agent config key{did_you_mean(top, known, "--agent.")}; '
                             f'accepted keys ({len(known)}): {", ".join(known)}')


def user_agent_keys() -> set:
    """Agent config keys set on the command line (they win over presets)."""
    try:
        return set(config_flags.get_override_values(FLAGS['agent']).keys())
    except Exception:  # noqa: BLE001
        return {a[len('--agent.'):].split('=', 1)[0] for a in sys.argv[1:] if a.startswith('--agent.')}
