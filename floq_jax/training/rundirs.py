"""Run directories: where each seed's files live, what flags.json records, and whether a directory may be resumed.

    <save_dir>/<run_group>/<env_name>/<agent_name>/seed<k>/   flags.json, train.csv, eval.csv, tb/, checkpoints/

A directory written for another env / agent / dataset / config, or with another evaluation protocol, is refused
(:class:`~floq_jax.training.options.RunDirConflict`), never overwritten.
"""

from __future__ import annotations

import json
from typing import List

import numpy as np

from floq_jax import presets, storage
from floq_jax.training.options import RunDirConflict, RunOptions

# flags.json keys that must match for a run directory to be resumed.
IDENTITY_KEYS = ('env_name', 'agent', 'dataset_file')


def run_dir(options: RunOptions, agent_name: str, seed: int) -> str:
    return storage.join(options.save_dir, options.run_group, options.env_name, agent_name, f'seed{seed}')


def seeds_of(options: RunOptions) -> List[int]:
    return options.seeds


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def config_dict(config) -> dict:
    return jsonable(config.to_dict() if hasattr(config, 'to_dict') else dict(config))


def canonical_config(config):
    """The config as flags.json records it (lists -> tuples, no shared objects), so an agent rebuilt from
    flags.json has the same pytree structure (and checkpoint digest) as the one that was trained."""
    import ml_collections

    def tuples(x):
        return tuple(tuples(v) for v in x) if isinstance(x, list) else x

    d = config_dict(config) if not isinstance(config, dict) else jsonable(config)
    return ml_collections.ConfigDict({k: tuples(v) for k, v in d.items()})


def flags_record(config, data, options: RunOptions, seed: int) -> dict:
    """The flags.json content of one seed's run directory."""
    record = dict(jsonable(options.flags))
    record.update(env_name=options.env_name, seed=int(seed), agent=config_dict(config),
                  data_source=data.source, generator=jsonable(data.generator), dataset_file=data.dataset_file,
                  num_seeds=options.num_seeds, offline_steps=options.offline_steps, online_steps=options.online_steps,
                  eval_protocol=options.eval_protocol, balanced_sampling=bool(options.balanced_sampling),
                  eval_protocol_description=presets.describe_eval_protocol(options.eval_protocol),
                  success_timing=options.success_timing, eval_seeding=options.eval_seeding,
                  frame_stack=options.frame_stack, p_aug=options.p_aug)
    if options.config_schedule:
        record['config_schedule'] = jsonable([[int(s), dict(c)] for s, c in options.config_schedule])
    return record


def added_keys_read_as_none(old_config, new_config):
    """``new_config`` less the keys ``old_config`` lacks whose value is None: an agent config written before a key
    existed (e.g. ``encoder``, added with a None default) reads as having it at None."""
    if not isinstance(old_config, dict) or not isinstance(new_config, dict):
        return new_config
    return {k: v for k, v in new_config.items() if k in old_config or v is not None}


def check_run_dir(directory: str, record: dict, resume: bool) -> bool:
    """True if ``directory`` holds a run to resume; raises RunDirConflict for a foreign or unresumable one."""
    path = storage.join(directory, 'flags.json')
    if not storage.exists(path):
        return False
    try:
        old = json.loads(storage.read_text(path))
    except (OSError, ValueError) as e:
        raise RunDirConflict(f'{path} is unreadable ({e}); refusing to overwrite {directory}') from None
    record = dict(record, agent=added_keys_read_as_none(old.get('agent'), record.get('agent')))
    differ = [k for k in IDENTITY_KEYS if old.get(k) != record.get(k)]
    if differ:
        details = []
        for k in differ:
            if isinstance(old.get(k), dict) and isinstance(record.get(k), dict):
                keys = sorted(set(old[k]) | set(record[k]))
                sub = [f'{k}.{s}: {old[k].get(s)!r} -> {record[k].get(s)!r}' for s in keys
                       if old[k].get(s) != record[k].get(s)]
                details.extend(sub[:5])
            else:
                details.append(f'{k}: {old.get(k)!r} -> {record.get(k)!r}')
        raise RunDirConflict(f'run dir {directory} belongs to another run ({"; ".join(details)}); refusing to '
                             f'overwrite it: pass another --run_group or --save_dir')
    old_protocol, new_protocol = presets.eval_protocol_of(old), presets.eval_protocol_of(record)
    if old_protocol != new_protocol:
        raise RunDirConflict(f'run dir {directory} was evaluated with eval_protocol {old_protocol!r}, this run asks '
                             f'for {new_protocol!r}; refusing to mix them in one eval.csv: pass '
                             f'--eval_protocol={old_protocol} to continue it, or another --run_group')
    old_balanced, new_balanced = bool(old.get('balanced_sampling', False)), bool(record.get('balanced_sampling', False))
    if old_balanced != new_balanced:
        raise RunDirConflict(f'run dir {directory} was trained with balanced_sampling={old_balanced}, this run asks for '
                             f'{new_balanced} (another replay buffer); pass --balanced_sampling={old_balanced} to '
                             f'continue it, or another --run_group')
    # Pixels: runs written before flags.json recorded frame_stack / p_aug had neither (None).
    for name in ('frame_stack', 'p_aug'):
        was, wants = old.get(name), record.get(name)
        if was != wants:
            hint = f'--{name}={was}' if was is not None else f'no --{name}'
            raise RunDirConflict(f'run dir {directory} was trained with {name}={was}, this run asks for {wants}; pass '
                                 f'{hint} to continue it, or another --run_group')
    # Runs written before flags.json recorded these read as what they ran (presets.success_timing_of / eval_seeding_of).
    for name, of, accepted in (('success_timing', presets.success_timing_of, presets.SUCCESS_TIMINGS),
                               ('eval_seeding', presets.eval_seeding_of, presets.EVAL_SEEDINGS)):
        was, wants = of(old), of(record)
        if was != wants:
            hint = f'--{name}={was} to continue it, or another --run_group' if was in accepted else 'another --run_group'
            raise RunDirConflict(f'run dir {directory} was evaluated with {name} {was!r}, this run asks for '
                                 f'{wants!r}; refusing to mix them in one eval.csv: pass {hint}')
    if not resume:
        raise RunDirConflict(f'run dir {directory} already exists and resume is off; refusing to overwrite it: '
                             f'pass --resume or another --run_group')
    return True


def write_json(path: str, obj) -> None:
    storage.write_json(path, jsonable(obj))
