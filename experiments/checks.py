"""Checks of single flag values shared by the entrypoints: each raises a UsageError naming the flag and what is
accepted (experiments.errors)."""

from __future__ import annotations

import os
import tempfile

from experiments.errors import UsageError


def check_choice(name: str, value, accepted) -> None:
    """--<name>=<value> must be one of ``accepted`` (UsageError naming the flag otherwise)."""
    if value not in accepted:
        raise UsageError(f'--{name}={value}: accepted: {", ".join(accepted)}')


def parse_int_list(name: str, text: str):
    if not text:
        return ()
    try:
        values = tuple(int(x) for x in text.split(',') if x.strip())
    except ValueError:
        raise UsageError(f'--{name}={text!r}: expected a comma list of positive integers, e.g. 1,4,8') from None
    if any(v < 1 for v in values):
        raise UsageError(f'--{name}={text!r}: expected a comma list of positive integers, e.g. 1,4,8')
    return values


def check_positive(**values) -> None:
    for name, v in values.items():
        if v is None or int(v) < 1:
            raise UsageError(f'--{name}={v}: must be a positive integer')


def check_env_name(env_name: str) -> None:
    from floq_jax.data import DatasetError, parse_name

    try:
        parsed = parse_name(env_name)
    except DatasetError as e:
        raise UsageError(f'--env_name: {e}') from None
    if not parsed.single_task:
        raise UsageError(f'--env_name={env_name!r} is not a single-task name; accepted: e.g. '
                         f'{parsed.single_task_name(1)!r} or {parsed.env_prefix}-{parsed.dataset_type}-singletask-'
                         f'{parsed.version} (default task)')


def check_writable(save_dir: str) -> None:
    """--save_dir must be creatable and writable: create it and a probe file, then remove both (nothing is left).

    Asking os.access is not enough: root passes it for e.g. /proc/x, where mkdir fails later.  A gs://bucket/...
    path gets a probe object instead (a missing bucket, missing credentials or an unreachable endpoint fail here).
    """
    from floq_jax import storage

    if storage.is_remote(save_dir):
        try:
            storage.check_writable(save_dir)
        except storage.StorageError as e:
            raise UsageError(f'--save_dir={save_dir!r}: {e}; accepted: a local directory, or gs://<bucket>/<path> '
                             f'in a bucket that exists and that your credentials may write') from None
        return
    path = os.path.abspath(os.path.expanduser(save_dir))
    created = []
    probe = path
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        created.append(probe)
        probe = os.path.dirname(probe)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix='.floq_write_probe'):
            pass
    except OSError as e:
        raise UsageError(f'--save_dir={save_dir!r} is not writable ({e.strerror or type(e).__name__}; nearest '
                         f'existing directory: {probe}); accepted: a directory you can create and write to') from None
    finally:
        for d in created:  # deepest first
            try:
                os.rmdir(d)
            except OSError:
                break


def check_readable(flag: str, path) -> None:
    """--<flag> on object storage can be asked (bucket, credentials, network); local paths: the callers' checks."""
    from floq_jax import storage

    if not path or not storage.is_remote(path):
        return
    try:
        storage.check_readable(path)
    except storage.StorageError as e:
        raise UsageError(f'--{flag}={path!r}: {e}; accepted: a local path, or gs://<bucket>/<path> that your '
                         f'credentials may read') from None


def check_dataset(env_name: str, dataset_dir, dataset_path) -> str:
    from floq_jax.data import DatasetError
    from floq_jax.data.ogbench_io import resolve_dataset_file

    try:
        return resolve_dataset_file(env_name, dataset_dir, dataset_path)
    except DatasetError as e:
        flag = '--dataset_path' if dataset_path else '--dataset_dir'
        raise UsageError(f'{flag}: {e}') from None
