"""Cache of small generated datasets, keyed by (name, episodes, seed, generator version)."""
import os

import numpy as np

from floq_jax.data.generate import GENERATOR_VERSION, MARKER_KEY, generate_dataset, generation_config


def _has_marker(path):
    try:
        with np.load(path) as f:
            return MARKER_KEY in f.files
    except Exception:  # noqa: BLE001 - unreadable: generate again
        return False


def default_cache_dir():
    """$FLOQ_DATA_CACHE, else ~/.cache/floq_jax/datasets."""
    return os.path.expanduser(os.environ.get('FLOQ_DATA_CACHE') or '~/.cache/floq_jax/datasets')


def ensure_generated_dataset(dataset_type_name, num_episodes, seed, cache_dir=None, num_workers=None,
                             max_episode_steps=None, progress=False):
    """Return the path of a generated '<name>.npz' (with '-val.npz' and sidecar beside it), generating it once.

    Files live in '<cache_dir>/<name>-ep<episodes>-s<seed>-g<version>[-len<steps>]/'.
    """
    cfg = generation_config(dataset_type_name, max_episode_steps)
    key = f'{cfg.dataset_name}-ep{int(num_episodes)}-s{int(seed)}-g{GENERATOR_VERSION}'
    if max_episode_steps is not None:
        key += f'-len{int(max_episode_steps)}'
    directory = os.path.join(cache_dir or default_cache_dir(), key)
    path = os.path.join(directory, f'{cfg.dataset_name}.npz')
    sidecar = os.path.join(directory, f'{cfg.dataset_name}.generator.json')
    if os.path.isfile(path) and os.path.isfile(sidecar) and _has_marker(path):
        return path  # (files cached before the generator record was stored inside the .npz are generated again)
    return generate_dataset(cfg.dataset_name, num_episodes, seed, directory, num_workers=num_workers,
                            max_episode_steps=max_episode_steps, progress=progress)
