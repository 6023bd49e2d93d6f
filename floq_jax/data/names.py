"""OGBench dataset/environment name handling.

Names look like ``<env-prefix>-<dataset type>-v0`` (e.g. ``cube-single-play-v0``) for a dataset and
``<env-prefix>-<dataset type>-singletask[-taskN]-v0`` for its single-task RL variant. A ``visual-`` prefix names
OGBench's pixel variant of an environment (``visual-cube-single-play-singletask-task2-v0``: 64x64x3 uint8 frames,
the same physics, tasks and oracles as ``cube-single``).
"""
import dataclasses
import difflib
import re

from floq_jax.data.errors import DatasetError

# Environment families accepted by the loader (the first dash-separated word(s) of the name).
FAMILIES = ('cube', 'scene', 'puzzle', 'pointmaze', 'antmaze', 'humanoidmaze', 'antsoccer')
MANIP_FAMILIES = ('cube', 'scene', 'puzzle')
DATASET_TYPES = ('play', 'noisy', 'navigate', 'stitch', 'explore')
# OGBench's environments (the part of a name before the dataset type), as registered by ogbench 1.x.
ENV_PREFIXES = ('cube-single', 'cube-double', 'cube-triple', 'cube-quadruple', 'cube-octuple', 'scene', 'puzzle-3x3',
                'puzzle-4x4', 'puzzle-4x5', 'puzzle-4x6', 'pointmaze-medium', 'pointmaze-large', 'pointmaze-giant',
                'pointmaze-teleport', 'antmaze-medium', 'antmaze-large', 'antmaze-giant', 'antmaze-teleport',
                'humanoidmaze-medium', 'humanoidmaze-large', 'humanoidmaze-giant', 'humanoidmaze-teleport',
                'antsoccer-arena', 'antsoccer-medium')
# OGBench's pixel variants (``visual-<prefix>``), as registered by ogbench 1.x.
VISUAL_PREFIX = 'visual-'
VISUAL_ENV_PREFIXES = ('cube-single', 'cube-double', 'cube-triple', 'cube-quadruple', 'scene', 'puzzle-3x3',
                       'puzzle-4x4', 'puzzle-4x5', 'puzzle-4x6', 'antmaze-medium', 'antmaze-large', 'antmaze-giant',
                       'antmaze-teleport', 'humanoidmaze-medium', 'humanoidmaze-large', 'humanoidmaze-giant',
                       'humanoidmaze-teleport')
_VERSION_RE = re.compile(r'^v\d+$')
_TASK_RE = re.compile(r'^task\d+$')


@dataclasses.dataclass(frozen=True)
class ParsedName:
    """Pieces of an OGBench name.

    family: e.g. 'cube'; env_prefix: e.g. 'cube-single' ('visual-cube-single' for a pixel name); dataset_type:
    e.g. 'play'; dataset_name: e.g. 'cube-single-play-v0' (the file stem); env_name: goal-conditioned env id, e.g.
    'cube-single-v0'; single_task: True for '-singletask' names; task: task id (int) or None for the default task;
    visual: True for OGBench's pixel variants ('visual-...').
    """

    family: str
    env_prefix: str
    dataset_type: str
    version: str
    dataset_name: str
    env_name: str
    single_task: bool
    task: int | None
    visual: bool = False

    @property
    def state_name(self):
        """The parsed name of the state-based twin (itself when not visual): same physics, tasks and oracles."""
        if not self.visual:
            return self
        strip = len(VISUAL_PREFIX)
        return dataclasses.replace(self, env_prefix=self.env_prefix[strip:], dataset_name=self.dataset_name[strip:],
                                   env_name=self.env_name[strip:], visual=False)

    def single_task_name(self, task):
        """The single-task dataset name for task ``task`` (1..5)."""
        return f'{self.env_prefix}-{self.dataset_type}-singletask-task{task}-{self.version}'

    def single_task_env_name(self, task):
        return f'{self.env_prefix}-singletask-task{task}-{self.version}'


def is_visual(name):
    """True for OGBench's pixel variants: a dataset or env name with the ``visual-`` prefix."""
    return name.startswith(VISUAL_PREFIX)


def family_of(name):
    """Family ('cube', 'pointmaze', ...) of a name (a 'visual-' prefix is looked through), or None if unsupported."""
    if is_visual(name):
        name = name[len(VISUAL_PREFIX):]
    first = name.split('-')[0]
    return first if first in FAMILIES else None


def parse_name(name):
    """Parse a dataset or single-task name; raise DatasetError for unknown families / malformed names."""
    if not isinstance(name, str) or family_of(name) is None:
        raise DatasetError(
            f'unknown environment {name!r}: accepted families are {", ".join(FAMILIES)} '
            f"(e.g. 'cube-single-play-singletask-task1-v0', 'pointmaze-medium-navigate-v0')"
        )
    parts = name.split('-')
    if not _VERSION_RE.match(parts[-1]):
        raise DatasetError(f'malformed environment name {name!r}: expected it to end with a version like -v0')
    version = parts[-1]
    body = parts[:-1]
    single_task, task = False, None
    if 'singletask' in body:
        pos = body.index('singletask')
        rest = body[pos + 1 :]
        if len(rest) > 1 or (rest and not _TASK_RE.match(rest[0])):
            raise DatasetError(f'malformed single-task name {name!r}: expected ...-singletask[-taskN]-{version}')
        task = int(rest[0][4:]) if rest else None
        single_task = True
        body = body[:pos]
    if len(body) < 2 or body[-1] not in DATASET_TYPES:
        raise DatasetError(
            f'malformed environment name {name!r}: expected <env>-<dataset type>-... with dataset type one of '
            f'{", ".join(DATASET_TYPES)}'
        )
    env_prefix = '-'.join(body[:-1])
    visual = body[0] == VISUAL_PREFIX[:-1]
    known = tuple(VISUAL_PREFIX + p for p in VISUAL_ENV_PREFIXES) if visual else ENV_PREFIXES
    if env_prefix not in known:
        match = difflib.get_close_matches(env_prefix, known, n=1, cutoff=0.6)
        fixed = f'{match[0]}{name[len(env_prefix):]}' if match else None
        family = body[1] if visual else body[0]
        raise DatasetError(
            f'unknown environment {env_prefix!r} in {name!r}: '
            + (f'did you mean {fixed!r}? ' if fixed else '')
            + f'accepted: {", ".join(p for p in known if family in p.split("-")) or ", ".join(known)}'
        )
    return ParsedName(
        family=body[1] if visual else body[0],
        env_prefix=env_prefix,
        dataset_type=body[-1],
        version=version,
        dataset_name=f'{"-".join(body)}-{version}',
        env_name=f'{env_prefix}-{version}',
        single_task=single_task,
        task=task,
        visual=visual,
    )
