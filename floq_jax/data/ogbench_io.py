"""Load OGBench single-task datasets (real or generated) through OGBench's own loader, after validating the files.

Raw OGBench file layout (``<dataset>.npz``, N rows = sum of episode lengths):
    observations [N, obs_dim] float32, actions [N, act_dim] float32 in [-1, 1], terminals [N] (1 on each episode's
    last row), qpos [N, nq], qvel [N, nv], and for puzzle/scene button_states [N, num_buttons].
Loaded (regular layout, M = N - num_episodes transitions), every array float32:
    observations/next_observations [M, obs_dim], actions [M, act_dim], rewards/masks/terminals [M].
OGBench's visual datasets (``visual-*``) hold observations [N, 64, 64, 3] uint8; they are validated as uint8 frames
of the env's shape and loaded as OGBench's loader loads them: observations/next_observations stay uint8
[M, 64, 64, 3] (4x smaller than float32; an encoder scales them), the other keys float32.
"""
import dataclasses
import json
import os

import numpy as np

from floq_jax import storage
from floq_jax.data.errors import DatasetError
from floq_jax.data.names import VISUAL_PREFIX, parse_name

DEFAULT_DATASET_DIR = '~/.ogbench/data'
ACTION_CLIP = 1 - 1e-5
OUT_KEYS = ('observations', 'actions', 'rewards', 'masks', 'next_observations', 'terminals')


@dataclasses.dataclass
class OfflineData:
    """An environment (the one that labelled the rewards: for a pixel dataset its state twin, which renders nothing)
    plus its offline train/val transitions (see module docstring for shapes); ``eval_env``, a second env, is built
    on first use (building an env costs seconds, and floq-jax's evaluation builds its own)."""

    env: object
    train: dict
    val: dict | None
    source: str
    generator: dict | None
    reward_range: tuple
    dataset_file: str
    env_name: str = ''
    _eval_env: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def eval_env(self):
        if self._eval_env is None:
            import ogbench

            self._eval_env = ogbench.make_env_and_datasets(self.env_name, env_only=True)
        return self._eval_env


def sidecar_path(npz_path):
    """'<dir>/<name>.npz' -> '<dir>/<name>.generator.json'."""
    return npz_path[: -len('.npz')] + '.generator.json' if npz_path.endswith('.npz') else npz_path + '.generator.json'


def val_path(npz_path):
    """OGBench's rule for the validation file beside a train file."""
    return npz_path.replace('.npz', '-val.npz')


def generator_record(path):
    """The generator record stored inside a generated .npz (generate.MARKER_KEY), or None (e.g. OGBench's files).

    Provenance is read from the file's content, never from its path or a file beside it.
    """
    from floq_jax.data.generate import MARKER_KEY

    with np.load(path) as file:
        if MARKER_KEY not in file.files:
            return None
        try:
            return json.loads(str(file[MARKER_KEY][()]))
        except Exception as e:  # noqa: BLE001
            raise DatasetError(f'{path}: unreadable {MARKER_KEY!r} record ({type(e).__name__}: {e})') from None


def required_keys(family):
    keys = ['observations', 'actions', 'terminals', 'qpos', 'qvel']
    if family in ('puzzle', 'scene'):
        keys.append('button_states')
    return keys


def validate_file(path, family, obs_shape=None, action_dim=None, obs_dtype=None):
    """Check one raw OGBench ``.npz`` file; raise DatasetError naming the first problem found.

    ``obs_dtype`` (the env's observation dtype): np.uint8 for OGBench's visual envs, whose files hold uint8 frames;
    a float observation dtype accepts any float file (OGBench's state files are float32)."""
    fname = os.path.basename(path)
    try:
        file = np.load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a data problem
        raise DatasetError(f'{path}: cannot read as .npz ({type(e).__name__}: {e})') from None
    with file:
        missing = [k for k in required_keys(family) if k not in file.files]
        if missing:
            raise DatasetError(
                f"{fname}: missing key '{missing[0]}' (required for {family}: {', '.join(required_keys(family))})"
            )
        try:  # members are decompressed (and CRC-checked) here: a damaged file fails on its first bad member
            arrays = {k: file[k] for k in required_keys(family)}
        except Exception as e:  # noqa: BLE001 - zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError
            raise DatasetError(f'{path}: cannot read as .npz, the file is damaged ({type(e).__name__}: {e}); '
                               f'accepted: an intact OGBench-format .npz (copy or generate it again)') from None
    n = len(arrays['observations'])
    if n == 0:
        raise DatasetError(f"{fname}: key 'observations' is empty")
    for k, v in arrays.items():
        if v.ndim == 0 or len(v) != n:
            raise DatasetError(f"{fname}: key '{k}' has length {len(v) if v.ndim else 'scalar'}, expected {n} "
                               f"(the length of 'observations')")
        if np.issubdtype(v.dtype, np.number) and not np.issubdtype(v.dtype, np.integer):
            if not np.all(np.isfinite(v)):
                bad = int(np.argmax(~np.isfinite(v).reshape(n, -1).all(axis=1)))
                raise DatasetError(f"{fname}: key '{k}' has non-finite values (first at row {bad}), expected finite")
    acts = arrays['actions']
    if acts.ndim != 2:
        raise DatasetError(f"{fname}: key 'actions' has shape {acts.shape}, expected [N, action_dim]")
    if action_dim is not None and acts.shape[1] != action_dim:
        raise DatasetError(f"{fname}: key 'actions' has dim {acts.shape[1]}, expected {action_dim} (env action space)")
    if acts.min() < -1.0 or acts.max() > 1.0:
        raise DatasetError(
            f"{fname}: key 'actions' has values in [{acts.min():.4g}, {acts.max():.4g}], expected within [-1, 1]"
        )
    obs = arrays['observations']
    if obs_dtype is not None:
        frames = np.dtype(obs_dtype) == np.uint8
        if frames != (obs.dtype == np.uint8) or not (frames or np.issubdtype(obs.dtype, np.floating)):
            raise DatasetError(f"{fname}: key 'observations' has dtype {obs.dtype}, expected "
                               + ('uint8 frames (a visual env)' if frames else 'float (a state-based env)'))
    if obs_shape is not None and tuple(obs.shape[1:]) != tuple(obs_shape):
        raise DatasetError(
            f"{fname}: key 'observations' has shape {tuple(obs.shape[1:])} per row, expected {tuple(obs_shape)} "
            f'(env observation space)'
        )
    terms = arrays['terminals'].astype(np.float64).reshape(n)
    if not np.all((terms == 0) | (terms == 1)):
        raise DatasetError(f"{fname}: key 'terminals' has values other than 0/1")
    if terms[-1] != 1:
        raise DatasetError(f"{fname}: key 'terminals' must be 1 on the last row (end of the last episode)")
    if np.any(terms[:-1] + terms[1:] > 1):
        raise DatasetError(f"{fname}: key 'terminals' has an episode of length 1 (two consecutive terminals)")


def resolve_dataset_file(env_name, dataset_dir=None, dataset_path=None):
    """Path of the train file for ``env_name``; raise DatasetError (no download attempt) if it does not exist."""
    parsed = parse_name(env_name)
    if dataset_path is not None:
        path = storage.absolute(dataset_path)
    else:
        base = dataset_dir if dataset_dir is not None else DEFAULT_DATASET_DIR
        path = storage.absolute(storage.join(storage.absolute(base), f'{parsed.dataset_name}.npz'))
    if not path.endswith('.npz'):
        raise DatasetError(f'dataset_path {path} must end with .npz')
    try:
        found = storage.check_readable(path, 'file')
    except storage.StorageError as e:  # a bucket that cannot be asked (credentials, network)
        raise DatasetError(str(e)) from None
    if not found:
        raise DatasetError(
            f'dataset file {path} not found for {parsed.dataset_name} (env {env_name}): copy OGBench\'s '
            f'{parsed.dataset_name}.npz and {parsed.dataset_name}-val.npz into --dataset_dir, or generate it with '
            f'`python -m experiments.make_dataset --env_name={parsed.dataset_name} '
            f'--dataset_dir={storage.dirname(path)}`'
        )
    return path


def _finish(ds):
    """Keep the six keys (float32; uint8 frames stay uint8) and clip actions as FQL does."""
    out = {k: ds[k] if ds[k].dtype == np.uint8 else np.asarray(ds[k], dtype=np.float32) for k in OUT_KEYS}
    out['actions'] = np.clip(out['actions'], -ACTION_CLIP, ACTION_CLIP)
    return out


def load_offline_data(env_name, dataset_dir=None, dataset_path=None):
    """Validate and load a single-task OGBench dataset; returns an :class:`OfflineData`."""
    import ogbench  # heavy import kept local
    from ogbench.relabel_utils import relabel_dataset
    from ogbench.utils import load_dataset

    parsed = parse_name(env_name)
    if not parsed.single_task:
        raise DatasetError(
            f'{env_name!r} is not a single-task name: use e.g. '
            f"'{parsed.single_task_name(1)}' (rewards need a fixed task)"
        )
    dataset_file = resolve_dataset_file(env_name, dataset_dir, dataset_path)
    # A dataset on object storage is read from a local copy (OGBench's loader takes local paths); flags.json and
    # the run's identity keep the gs:// path.
    path = local_copy(dataset_file)
    vpath = val_path(path)
    has_val = os.path.isfile(vpath)
    # A pixel dataset is labelled by its state twin (same physics, task and reward, all from qpos / button_states):
    # a visual env renders a frame on every reset and even to tell its observation space, and loading a file needs
    # no frame (generation and evaluation do: floq_jax.data.rendering).
    label_env_name = env_name[len(VISUAL_PREFIX):] if parsed.visual else env_name
    try:
        env = ogbench.make_env_and_datasets(label_env_name, env_only=True)
        obs_shape, obs_dtype = (visual_frame_shape(parsed.env_name), np.uint8) if parsed.visual else (
            env.observation_space.shape, env.observation_space.dtype)
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f'cannot create environment for {env_name!r}: {type(e).__name__}: {e}') from None
    action_dim = env.action_space.shape[0]
    validate_file(path, parsed.family, obs_shape, action_dim, obs_dtype)
    if has_val:
        validate_file(vpath, parsed.family, obs_shape, action_dim, obs_dtype)
        train, val = ogbench.make_env_and_datasets(env_name, dataset_path=path, cur_env=env, dataset_only=True)
        # make_env_and_datasets(dataset_only=True) relabels with cur_env; it returns only the datasets (uint8
        # observations for a 'visual' name).
    else:
        splits = env_name.split('-')
        pos = splits.index('singletask')
        gc_env_name = '-'.join(splits[: pos - 1] + splits[pos:])
        train = load_dataset(path, ob_dtype=np.uint8 if parsed.visual else np.float32, add_info=True)
        relabel_dataset(gc_env_name, env, train)
        val = None
    train = _finish(train)
    val = _finish(val) if val is not None else None

    generator = generator_record(path)
    return OfflineData(
        env=env,
        env_name=env_name,
        train=train,
        val=val,
        source='generated' if generator is not None else 'ogbench',
        generator=generator,
        reward_range=(float(train['rewards'].min()), float(train['rewards'].max())),
        dataset_file=dataset_file,
    )


def visual_frame_shape(env_name):
    """(height, width, 3) of the frames OGBench's visual env ``env_name`` (its goal-conditioned id, e.g.
    'visual-cube-single-v0') observes, from its registration (making the env would render one)."""
    import gymnasium
    import ogbench  # noqa: F401 - registers the envs

    kwargs = gymnasium.spec(env_name).kwargs
    return int(kwargs['height']), int(kwargs['width']), 3


def local_copy(path: str) -> str:
    """``path`` itself if local; else a local copy of it (and of its ``-val.npz`` when there is one) in the data
    cache (``$FLOQ_DATA_CACHE``), downloaded once per object size."""
    if not storage.is_remote(path):
        return path
    import hashlib

    from floq_jax.data.cache import default_cache_dir

    key = hashlib.sha256(storage.dirname(path).encode()).hexdigest()[:16]
    directory = os.path.join(default_cache_dir(), 'remote', key)
    os.makedirs(directory, exist_ok=True)
    for remote in (path, val_path(path)):
        if remote != path and not storage.isfile(remote):
            continue
        local = os.path.join(directory, storage.basename(remote))
        if not (os.path.isfile(local) and os.path.getsize(local) == storage.size(remote)):
            part = f'{local}.{os.getpid()}.part'  # several processes of one run may copy it at once
            storage.write_bytes(part, storage.read_bytes(remote))
            os.replace(part, local)
    return os.path.join(directory, storage.basename(path))
