"""Running a sweep: every (variant, env) trained through floq_jax.training.compose (all seeds of one together),
skipped pieces recorded, and the measured wall time of each run and of each invocation that trained."""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Callable, Dict, List, Tuple

from floq_jax.sweeps.spec import Sweep, agent_available, make_config, run_options
from floq_jax.training import compose
from floq_jax.training.compose import DataSource, load_data


def run_sweep(sweep: Sweep, source: DataSource, log: Callable[[str], None] = print) -> Dict[Tuple[str, str], List[str]]:
    """Trains every (variant, env) (all seeds vmapped); returns {(variant, env): run dirs}.

    Skipped pieces (unloadable envs, unavailable agents) are written to ``<root>/skipped.json`` and listed in
    the report.
    """
    from floq_jax.training import rundirs

    os.makedirs(sweep.root, exist_ok=True)
    skipped: List[str] = []
    out: Dict[Tuple[str, str], List[str]] = {}
    variants = []
    for v in sweep.variants:
        why = agent_available(v.agent, sweep.registry)
        if why:
            skipped.append(f'variant {v.name} skipped: {why}')
            log(skipped[-1])
        else:
            variants.append(v)
    for env_name in sweep.envs:
        try:
            data = load_data(env_name, source)
        except Exception as e:  # noqa: BLE001 - DatasetError and generation failures: skip the env
            skipped.append(f'env {env_name} skipped: {" ".join(str(e).split())[:300]}')
            log(skipped[-1])
            continue
        record_dataset(sweep, env_name, data.dataset_file, log)
        for v in variants:
            config = make_config(v, env_name, sweep.preset, sweep.registry, data, mode=sweep.mode)
            agent_cls = sweep.registry.agent_class(config.agent_name)
            options = run_options(sweep, v, env_name)
            t0 = time.time()
            trained = set()  # non-empty once a chunk was trained (the callback runs after each; returns None: no stop)
            out[(v.name, env_name)] = compose.train(agent_cls, config, data, options, mode=sweep.mode,
                                                    callbacks=[lambda run: trained.add(True)])
            seconds = time.time() - t0
            if trained:
                record_run_time(sweep, v.name, env_name, seconds)
                log(f'[{sweep.name}] {v.name} on {env_name} ({data.source} data): {seconds:.1f}s')
            else:  # its checkpoints were all at the end already: its wall time stays the one of its training
                log(f'[{sweep.name}] {v.name} on {env_name} ({data.source} data): finished run reused '
                    f'({seconds:.1f}s)')
    rundirs.write_json(os.path.join(sweep.root, 'skipped.json'), skipped)
    return out


TIMES_FILE = 'wall_times.json'      # {'<variant>/<env>': seconds}: a resumed run adds the time of its new part,
                                    # a finished run that is reused adds nothing


COMMANDS_FILE = 'commands.json'     # one entry per invocation that trained (not one that only reused finished runs):
                                    # command, device, start, wall seconds


DATASETS_FILE = 'datasets.json'     # {env: [{file, sha256, val_sha256, first_seen}]}: the content digests of the data the
                                    # env's runs trained on, one entry per distinct dataset; two entries: not all of the
                                    # sweep's runs trained on the same data (e.g. a dataset generated again on a host whose
                                    # MuJoCo arithmetic differs: generated files are deterministic per host only)


def file_sha256(path: str) -> str:
    """SHA-256 of a file's content (local or gs://), read in 8 MiB blocks; a local file's digest is computed once per
    process while its stamp (floq_jax.storage.local_stamp: device, inode, size, modification and change times) stays
    the same (several sweeps of one process train on one file; a replacing copy or a later rewrite changes it)."""
    from floq_jax import storage

    if not storage.is_remote(path):
        stamp = storage.local_stamp(path)
        if stamp is None:
            raise FileNotFoundError(path)
        return _local_sha256(os.path.abspath(path), stamp)
    return _sha256(path)


@functools.lru_cache(maxsize=64)
def _local_sha256(path: str, stamp) -> str:
    del stamp  # the cache key: a rewritten file is hashed again
    return _sha256(path)


def _sha256(path: str) -> str:
    import hashlib

    from floq_jax import storage

    digest = hashlib.sha256()
    with storage.open_file(path, 'rb') as f:
        for block in iter(lambda: f.read(8 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def record_dataset(sweep: Sweep, env_name: str, dataset_file: str, log: Callable[[str], None] = print) -> dict:
    """Records the content digest of ``env_name``'s training file (and its -val file, where there is one) in the
    sweep's datasets.json; returns the entry.  A digest other than the ones recorded for the env is added beside them
    with one logged line: the sweep's runs of that env then did not all train on the same data."""
    from floq_jax import storage
    from floq_jax.data.ogbench_io import val_path
    from floq_jax.training import rundirs

    val = val_path(dataset_file)
    entry = dict(file=storage.basename(dataset_file), sha256=file_sha256(dataset_file),
                 val_sha256=file_sha256(val) if storage.exists(val) else None)
    path = os.path.join(sweep.root, DATASETS_FILE)
    seen = _read_json(path, {})
    known = seen.setdefault(env_name, [])
    if not any((e['sha256'], e['val_sha256']) == (entry['sha256'], entry['val_sha256']) for e in known):
        if known:
            log(f'[{sweep.name}] {env_name}: this dataset (sha256 {entry["sha256"][:12]}) differs from the one earlier runs '
                f'of this sweep trained on (sha256 {known[-1]["sha256"][:12]}); both recorded in {DATASETS_FILE}')
        known.append(dict(entry, first_seen=time.strftime('%Y-%m-%d %H:%M:%S %Z')))
        rundirs.write_json(path, seen)
    return entry


def _read_json(path: str, default):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def recorded_run_times(sweep: Sweep) -> Dict[str, float]:
    """The sweep's wall_times.json: {'<variant>/<env>': seconds of training}; {} before any run trained."""
    return _read_json(os.path.join(sweep.root, TIMES_FILE), {})


def record_run_time(sweep: Sweep, variant: str, env_name: str, seconds: float) -> None:
    """Adds ``seconds`` (the wall time of one (variant, env) run, all its seeds, evaluation included) to the sweep's
    wall_times.json."""
    from floq_jax.training import rundirs

    path = os.path.join(sweep.root, TIMES_FILE)
    times = recorded_run_times(sweep)
    key = f'{variant}/{env_name}'
    times[key] = round(float(times.get(key, 0.0)) + seconds, 1)
    rundirs.write_json(path, times)


def record_command(sweep: Sweep, command: str, started: float, seconds: float, device: str) -> None:
    """Appends one invocation (the command line, the device, when it started, its wall time) to commands.json."""
    from floq_jax.training import rundirs

    path = os.path.join(sweep.root, COMMANDS_FILE)
    entries = _read_json(path, [])
    entries.append(dict(command=command, device=device, cpu_cores=os.cpu_count(),
                        started=time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(started)),
                        wall_seconds=round(seconds, 1)))
    rundirs.write_json(path, entries)
