"""Shared machinery of the analysis sweeps (experiments/main_table.py, scale_k.py, noise_width.py,
freeze_features.py, utd.py, mechanisms.py): variants x envs x seeds -> runner calls -> tables and plots.

    sweep = Sweep('noise_width', variants=[Variant('cov0.1', 'floq', {'noise_coverage': 0.1}), ...],
                  envs=['cube-single-play-singletask-task1-v0'], preset='smoke')
    dirs = run_sweep(sweep, SweepData(dataset_dir=...))      # {(variant, env): [seed run dirs]}
    paths = write_sweep_report(sweep_root(sweep, save_dir), sweep)   # results.md / .csv / learning_curves.png

Every run of a sweep lives in the standard layout ``<save_dir>/<sweep>/<variant>/<env>/<agent>/seed<k>/``
(run_group ``<sweep>/<variant>``) with ``variant``, ``sweep`` and ``preset`` (plus the variant's tags, e.g. ``K``)
in flags.json, so ``floq_jax.analysis.report`` groups by any of them.  All seeds of a (variant, env) train together
(vmapped, ``RunOptions.num_seeds``).  Re-running a sweep resumes its runs (the runner's checkpoints).

Presets: ``smoke`` (tiny nets, a few hundred updates, 2 seeds, 2 short evaluation episodes on a small generated
cube-single dataset: checks the pipeline end to end on a 2-core CPU, far too short to show any effect) and
``cpu`` (sized for about an hour per sweep on a 2-core CPU, each sweep's measured time in docs/experiments.md; the demo's 2 x 128 networks, published
per-environment values, 4 seeds, 60k updates on the demo's generated 100-episode cube-single-play data, 50 evaluation
episodes; docs/experiments.md) and ``paper`` (published per-environment hyperparameters from floq_jax.presets, the
published run lengths: 2M offline steps, or 1M offline + 2M online steps; evaluation every 20k steps over 50
episodes, 3 seeds; meant for a GPU).

Data: a real OGBench file is used where ``--dataset_dir`` holds it; otherwise the dataset is generated here
(cube/scene/puzzle/pointmaze only, cached) and the report's ``data`` column says ``generated``; environments that
can be neither loaded nor generated are skipped and listed in results.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

SMOKE_ENV = 'cube-single-play-singletask-task1-v0'

# The OGBench single-task suite of the FQL / floq papers: 10 environments x 5 tasks.
SUITE_ENVS = ('antmaze-large-navigate', 'antmaze-giant-navigate', 'humanoidmaze-medium-navigate',
              'humanoidmaze-large-navigate', 'antsoccer-arena-navigate', 'cube-single-play', 'cube-double-play',
              'scene-play', 'puzzle-3x3-play', 'puzzle-4x4-play')
SUITE = tuple(f'{e}-singletask-task{t}-v0' for e in SUITE_ENVS for t in range(1, 6))

# Tiny networks for the smoke preset (only keys an agent's config has are applied).
SMOKE_AGENT = dict(actor_hidden_dims=(32, 32), value_hidden_dims=(32, 32), block_width=32, block_depth=2,
                   batch_size=32, noise_samples=2, critic_flow_steps=2, actor_flow_steps=2, num_transformations=1,
                   critic_resnet_width=32, critic_resnet_blocks=2, iqn_num_quantiles=4, iqn_num_target_quantiles=4,
                   iqn_num_cosines=8, stale_copy_until=100)

# The cpu preset: experiments/demo.py's networks (floq_jax.presets.demo_config) for every agent, FQL-ResNet's
# residual critic at the same width, the IQN critic at its published sample counts.
CPU_STEPS = 60_000
CPU_ENV = 'cube-single-play-singletask-task2-v0'
CPU_AGENT = dict(actor_hidden_dims=(128, 128), value_hidden_dims=(128, 128), block_width=128, block_depth=2,
                 batch_size=64, noise_samples=2, critic_flow_steps=4, critic_resnet_width=128,
                 stale_copy_until=CPU_STEPS // 4)  # the published 250k of 1M updates, scaled

PRESETS: Dict[str, dict] = {
    'smoke': dict(
        options=dict(num_seeds=2, offline_steps=100, steps_per_call=25, log_interval=50, eval_interval=100,
                     save_interval=100, eval_episodes=2, eval_at_start=False, tensorboard=False, progress=False,
                     max_checkpoints=1,
                     # Short, in-process evaluation episodes (runner option; dropped if the runner lacks it).
                     eval_kwargs=dict(vector_mode='sync', max_episode_steps=50),
                     # Critic diagnostics cost one more compile per run: on only where a sweep analyses them.
                     log_diagnostics=False),
        online=dict(offline_steps=0, online_steps=50, log_interval=25, eval_interval=50, save_interval=50,
                    # Room for the 3-episode dataset and every online step (the published 2M rows would make each
                    # smoke checkpoint ~0.5 GB per seed).
                    buffer_size=1000),
        agent=SMOKE_AGENT, env_preset=None, envs=(SMOKE_ENV,),
        data=dict(num_episodes=3, max_episode_steps=100), last_n=1),
    # Sized for about an hour per sweep on a 2-core CPU (measured times: docs/experiments.md): the demo's networks (2 x 128, batch 64, K = 4, 2 noise
    # samples), published per-environment values (alpha), 4 seeds trained together, on the demo's generated
    # 100-episode cube-single-play data, where task2 reaches ~15% success after 50k-70k updates (docs/parity.md).
    'cpu': dict(
        options=dict(num_seeds=4, offline_steps=CPU_STEPS, steps_per_call=1000, log_interval=2500,
                     eval_interval=CPU_STEPS // 4, save_interval=CPU_STEPS // 4, eval_episodes=50,
                     eval_at_start=False, max_checkpoints=1, log_diagnostics=False),
        # utd: 2500 online env steps, evaluated at 1250 and 2500 (the cpu scale's "last two evaluations").  Measured:
        # at 5000 steps evaluated every 1000, 70% of a UTD-1 run was its 5 evaluations (447 of 640 s) and the sweep
        # was heading for ~2 h (UTD 16 = 80k updates per seed).
        online=dict(offline_steps=0, online_steps=2500, log_interval=250, eval_interval=1250, save_interval=2500,
                    buffer_size=200_000),
        agent=CPU_AGENT, env_preset='published', envs=(CPU_ENV,),
        data=dict(num_episodes=100, max_episode_steps=None), last_n=2),
    'paper': dict(
        # The published run lengths (floq_jax.presets.PUBLISHED_PROTOCOL: the published main.py's 2M offline
        # steps; PUBLISHED_O2O_PROTOCOL: its README's 1M offline + 2M online steps).
        options=dict(num_seeds=3, offline_steps=2_000_000, steps_per_call=1000, log_interval=5000,
                     eval_interval=20000, save_interval=100000, eval_episodes=50, max_checkpoints=3),
        online=dict(offline_steps=1_000_000, online_steps=2_000_000, log_interval=5000, eval_interval=20000,
                    save_interval=100000),
        agent={}, env_preset='published', envs=None,
        data=dict(num_episodes=1000, max_episode_steps=None), last_n=3),
}


# Runner options a sweep can run without (a speed-up only); any other unknown option is an error.
OPTIONAL_RUNNER_OPTIONS = {'eval_kwargs', 'log_diagnostics'}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One arm of a sweep: an agent (a name of the agent registry, e.g. floq, fql_resnet, or an agent file), its
    config overrides, RunOptions overrides (e.g. ``utd_ratio``, ``config_schedule``) and tags recorded in flags.json
    (e.g. ``{'K': 4}``)."""

    name: str
    agent: str = ''  # a registered agent name or an agent file (path.py[:variant]); '' = the variant's name
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.agent:
            object.__setattr__(self, 'agent', self.name)


@dataclasses.dataclass
class Sweep:
    name: str
    variants: Sequence[Variant]
    envs: Sequence[str]
    preset: str = 'smoke'
    mode: str = 'offline'                     # or 'offline_to_online'
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)  # RunOptions overrides for every run
    save_dir: str = 'runs/sweeps'
    description: str = ''
    cpu_devices: int = 1                      # XLA CPU devices in effect (recorded in each run's flags.json)
    # The agent registry (the ``agents`` package, or any object with get_config(name) and agent_class(agent_name)).
    registry: Any = None

    @property
    def root(self) -> str:
        return os.path.join(self.save_dir, self.name)


@dataclasses.dataclass
class SweepData:
    """Where datasets come from: real files (dataset_dir / dataset_path) else generated into cache_dir."""

    dataset_dir: Optional[str] = None
    dataset_path: Optional[str] = None
    cache_dir: Optional[str] = None
    num_episodes: int = 1000
    max_episode_steps: Optional[int] = None
    seed: int = 0


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f'--preset={name!r}: accepted: {", ".join(PRESETS)}')
    return PRESETS[name]


def parse_list(text: str, cast=str) -> list:
    return [cast(x.strip()) for x in str(text).split(',') if x.strip()] if text else []


# ----------------------------------------------------------------------------- configs and data


def agent_available(agent: str, registry) -> Optional[str]:
    """None if the agent can run here, else why not (e.g. an agent the registry does not know)."""
    try:
        registry.agent_class(registry.get_config(agent).agent_name)
    except Exception as e:  # noqa: BLE001 - reported in results.md
        return f'{agent}: {e}'
    return None


def make_config(variant: Variant, env_name: str, preset_name: str, registry, data=None, mode: str = 'offline'):
    """Config of ``variant`` on ``env_name``: agent defaults (``registry.get_config(variant.agent)``, the caller's
    agent registry, e.g. the ``agents`` package) < published env preset of the agent and ``mode``
    (paper) < preset's network sizes (smoke) < the variant's overrides; reward range from ``data`` (the published
    rule, floq_jax.training.runner.set_reward_range)."""
    from floq_jax import agent_registry, presets as env_presets
    from floq_jax.training import runner

    p = preset(preset_name)
    config = registry.get_config(variant.agent)
    if p['env_preset']:
        env_presets.apply_preset(config, env_name, p['env_preset'], user_keys=set(variant.overrides), mode=mode)
    for key, value in p['agent'].items():
        if key in config and key not in variant.overrides:
            config[key] = value
    for key, value in variant.overrides.items():
        if key not in config:
            raise ValueError(f'variant {variant.name}: {variant.agent} config has no key {key!r}')
        config[key] = value
    if config.agent_name in agent_registry.registered():  # the agent file's CONFIG_RANGES (one line per bad key)
        agent_registry.check_config(config)
    if data is not None:
        runner.set_reward_range(config, data)
    return config


def load_data(env_name: str, source: SweepData):
    """OfflineData for ``env_name``: the real file if present, else a generated (cached) dataset.

    Raises floq_jax.data.DatasetError when neither is possible.
    """
    from floq_jax.data import DatasetError, ensure_generated_dataset, load_offline_data, parse_name
    from floq_jax.data.ogbench_io import resolve_dataset_file

    if source.dataset_path:
        return load_offline_data(env_name, dataset_path=source.dataset_path)
    try:
        resolve_dataset_file(env_name, source.dataset_dir)
        return load_offline_data(env_name, source.dataset_dir)
    except DatasetError:
        pass
    dataset_name = parse_name(env_name).dataset_name
    path = ensure_generated_dataset(dataset_name, num_episodes=source.num_episodes, seed=source.seed,
                                    cache_dir=source.cache_dir, max_episode_steps=source.max_episode_steps,
                                    num_workers=1 if source.num_episodes <= 4 else None)
    return load_offline_data(env_name, dataset_path=path)


def run_options(sweep: Sweep, variant: Variant, env_name: str):
    """RunOptions of one (variant, env): preset < sweep options < variant options.  Options the runner does not
    know (e.g. an older runner without ``eval_kwargs``) are dropped with a warning."""
    from floq_jax.training.options import RunOptions

    values = merged_options(sweep)
    values.update(variant.options)
    known = {f.name for f in dataclasses.fields(RunOptions)}
    dropped = sorted(set(values) - known)
    required = sorted(set(dropped) - OPTIONAL_RUNNER_OPTIONS)
    if required:
        raise ValueError(f'{sweep.name}/{variant.name} needs runner option(s) {required}, which this '
                         f'floq_jax.training.runner.RunOptions does not have')
    if dropped:
        warnings.warn(f'runner has no option(s) {dropped}; running without them')
    values = {k: v for k, v in values.items() if k in known}
    values.update(env_name=env_name, save_dir=sweep.save_dir, run_group=f'{sweep.name}/{variant.name}',
                  flags=dict(variant=variant.name, sweep=sweep.name, preset=sweep.preset, sweep_agent=variant.agent,
                             cpu_devices=sweep.cpu_devices, **dict(variant.tags)))
    return RunOptions(**values)


def run_sweep(sweep: Sweep, source: SweepData, log: Callable[[str], None] = print) -> Dict[Tuple[str, str], List[str]]:
    """Trains every (variant, env) (all seeds vmapped); returns {(variant, env): run dirs}.

    Skipped pieces (unloadable envs, unavailable agents) are written to ``<root>/skipped.json`` and listed in
    the report.
    """
    from floq_jax.training import rundirs, runner

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
        for v in variants:
            config = make_config(v, env_name, sweep.preset, sweep.registry, data, mode=sweep.mode)
            agent_cls = sweep.registry.agent_class(config.agent_name)
            options = run_options(sweep, v, env_name)
            t0 = time.time()
            fn = runner.run_offline_to_online if sweep.mode == 'offline_to_online' else runner.run_offline
            trained = set()  # non-empty once a chunk was trained (the callback runs after each; returns None: no stop)
            out[(v.name, env_name)] = fn(agent_cls, config, data, options, callbacks=[lambda run: trained.add(True)])
            seconds = time.time() - t0
            if trained:
                record_run_time(sweep, v.name, env_name, seconds)
                log(f'[{sweep.name}] {v.name} on {env_name} ({data.source} data): {seconds:.1f}s')
            else:  # its checkpoints were all at the end already: its wall time stays the one of its training
                log(f'[{sweep.name}] {v.name} on {env_name} ({data.source} data): finished run reused '
                    f'({seconds:.1f}s)')
    rundirs.write_json(os.path.join(sweep.root, 'skipped.json'), skipped)
    return out


# ----------------------------------------------------------------------------- measured time and commands

TIMES_FILE = 'wall_times.json'      # {'<variant>/<env>': seconds}: a resumed run adds the time of its new part,
                                    # a finished run that is reused adds nothing
COMMANDS_FILE = 'commands.json'     # one entry per invocation that trained (not one that only reused finished runs):
                                    # command, device, start, wall seconds


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


def device_description() -> str:
    import jax

    return f'{jax.devices()[0].platform} ({jax.device_count()} device(s), {os.cpu_count()} CPU cores visible)'


def training_devices(sweep: Sweep) -> str:
    """The device(s) the sweep's runs trained on, as its training invocations recorded them (commands.json); the
    reporting process's own device only when none was recorded (a --report_only invocation may see fewer XLA CPU
    devices than the training did)."""
    recorded = sorted({c['device'] for c in _read_json(os.path.join(sweep.root, COMMANDS_FILE), [])})
    if recorded:
        return ' and '.join(recorded) + ' (training, commands.json)'
    return device_description() + ' (this report; no training invocation recorded)'


def measured_time_md(sweep: Sweep) -> str:
    """The 'Measured time' section of results.md: each training invocation's command, device and wall time, and
    the wall time of each (variant, env) run ('' when the sweep recorded none)."""
    times = recorded_run_times(sweep)
    commands = _read_json(os.path.join(sweep.root, COMMANDS_FILE), [])
    if not times and not commands:
        return ''
    md = '## Measured time\n\n'
    for c in commands:
        md += (f'- `{c["command"]}`: {c["wall_seconds"] / 60:.1f} min wall, started {c["started"]}, on '
               f'{c["device"]}\n')
    if times:
        md += '\n| run (variant / env) | wall time (min) |\n|---|---|\n'
        md += ''.join(f'| {k} | {v / 60:.1f} |\n' for k, v in times.items())
        md += f'| total | {sum(times.values()) / 60:.1f} |\n'
    return md


# ----------------------------------------------------------------------------- results


def variant_order(sweep: Sweep) -> Dict[str, int]:
    return {v.name: i for i, v in enumerate(sweep.variants)}


def load_sweep_runs(sweep: Sweep):
    """The finished runs of this sweep's variants and envs under its root.  A root may also hold runs of variants
    this invocation did not ask for (e.g. ``mechanisms --parts=d`` after ``--parts=a``): its report leaves them out."""
    from floq_jax.analysis import report

    names, envs = {v.name for v in sweep.variants}, set(sweep.envs)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', report.RunWarning)
        return [r for r in report.load_runs(sweep.root) if str(r.get('variant')) in names and r.env_name in envs]


def merged_options(sweep: Sweep) -> dict:
    """The sweep's run options: its preset's, then the online preset's (offline-to-online), then its own."""
    p = preset(sweep.preset)
    o = dict(p['options'])
    if sweep.mode == 'offline_to_online':
        o.update(p['online'])
    o.update(sweep.options)
    return o


def run_length_note(sweep: Sweep) -> str:
    o = merged_options(sweep)
    steps = f'{o.get("offline_steps")} offline updates'
    if sweep.mode == 'offline_to_online':
        steps += f' + {o.get("online_steps")} online env steps'
    note = (f'preset `{sweep.preset}`: {steps}, {o.get("num_seeds")} seeds, {o.get("eval_episodes")} evaluation '
            f'episodes per evaluation; device: {training_devices(sweep)}.')
    if sweep.preset == 'smoke':
        note += (' Smoke runs check the pipeline only: they are far too short (tiny networks, 100 updates or 50 '
                 'online steps, a 3-episode generated dataset) to show any of the effects under study.')
    return note


def write_sweep_report(sweep: Sweep, group_by: str = 'variant', extra_md: str = '', title: Optional[str] = None,
                       metric: str = 'evaluation/success') -> Dict[str, str]:
    """results.md / results.csv (per task x variant: mean and 95% bootstrap CI over seeds, IQM over tasks) and
    learning_curves.png under the sweep's root; ``extra_md`` is appended to results.md."""
    from floq_jax.analysis import report

    runs = load_sweep_runs(sweep)
    last_n = preset(sweep.preset)['last_n']
    table = report.results_table(runs, metric, last_n=last_n, group_by=group_by, reps=2000)
    iqm = report.aggregate_iqm(runs, metric, last_n=last_n, group_by=group_by, reps=2000)
    paths = {name: os.path.join(sweep.root, name) for name in ('results.md', 'results.csv', 'learning_curves.png')}
    skipped = _read_skipped(sweep)
    md = report.to_markdown(table, iqm, title=title or f'{sweep.name} ({sweep.preset} preset)')
    md += '\n' + run_length_note(sweep) + '\n'
    if sweep.description:
        md += '\n' + sweep.description.strip() + '\n'
    if skipped:
        md += '\nSkipped:\n\n' + ''.join(f'- {s}\n' for s in skipped)
    if extra_md:
        md += '\n' + extra_md.strip() + '\n'
    timing = measured_time_md(sweep)
    if timing:
        md += '\n' + timing
    with open(paths['results.md'], 'w') as f:
        f.write(md)
    with open(paths['results.csv'], 'w') as f:
        f.write(report.to_csv(table, iqm))
    paths[PER_SEED_FILE] = os.path.join(sweep.root, PER_SEED_FILE)
    per_seed_success(sweep, runs, metric).to_csv(paths[PER_SEED_FILE], index=False)
    report.plot_learning_curves(runs, paths['learning_curves.png'], metric=metric, group_by=group_by, band='ci')
    return paths


PER_SEED_FILE = 'per_seed.csv'        # one row per (variant, env, seed): the final success each seed scored
HELDOUT_PER_SEED_FILE = 'heldout_q_per_seed.csv'   # one row per (variant, env, seed): its critic's held-out measures
BASELINES_FILE = 'critic_baselines.csv'            # the data-only predictors' held-out measures, per env


def per_seed_success(sweep: Sweep, runs, metric: str = 'evaluation/success'):
    """DataFrame, one row per run (a seed of a (variant, env)): env_name, variant, agent, seed, the step of its last
    evaluation and ``success``, the mean of its last ``last_n`` evaluations (the value results.csv averages), so that
    tests over seeds (floq_jax.analysis.seed_tests) can be run on the committed files."""
    import pandas as pd

    from floq_jax.analysis import report

    last_n = preset(sweep.preset)['last_n']
    order = variant_order(sweep)
    rows = [dict(env_name=r.env_name, variant=str(r.get('variant')), agent=str(r.get('sweep_agent', r.agent_name)),
                 seed=r.seed, last_eval_step=int(r.eval['step'].iloc[-1]) if len(r.eval) else -1,
                 success=report.final_score(r, metric, last_n)) for r in runs]
    df = pd.DataFrame(rows, columns=['env_name', 'variant', 'agent', 'seed', 'last_eval_step', 'success'])
    df['_order'] = [order.get(v, 99) for v in df['variant']]
    return df.sort_values(['env_name', '_order', 'seed']).drop(columns='_order').reset_index(drop=True)


def heldout_baselines(runs, max_states: int = 1024, seed: int = 0):
    """DataFrame, per env of ``runs`` and per data-only predictor (a constant Q, a ridge regression of the behaviour's
    Monte-Carlo returns; floq_jax.analysis.mc_returns.behaviour_return_baselines): the held-out measures the critics
    are scored by, on the same held-out states as ``heldout_q_errors`` (same ``max_states`` and ``seed``)."""
    import pandas as pd

    from floq_jax.data import load_offline_data

    rows, done = [], set()
    for run in runs:
        if run.env_name in done:
            continue
        done.add(run.env_name)
        data = load_offline_data(run.env_name, dataset_path=run.get('dataset_file'))
        rows += env_baselines(run.env_name, data, float(run.get('agent.discount', 0.99)), max_states, seed)
    return pd.DataFrame(rows)


def env_baselines(env_name: str, data, discount: float, max_states: int = 1024, seed: int = 0) -> List[dict]:
    """``heldout_baselines``' rows of one env's OfflineData ``data``."""
    from floq_jax.analysis.mc_returns import behaviour_return_baselines

    return [dict(env_name=env_name, **row) for row in
            behaviour_return_baselines(data.train, data.val, discount, max_states=max_states, seed=seed)]


def write_heldout_files(sweep: Sweep, runs, q=None, max_states: int = 1024, seed: int = 0) -> str:
    """Writes the per-seed held-out critic measures ``q`` (``heldout_q_errors``' frame without machine paths; None:
    the sweep writes its own) and the data-only baselines (``heldout_baselines``) under the sweep's root; returns
    results.md's section on the baselines."""
    if q is not None:
        q.drop(columns=[c for c in ('run_dir',) if c in q.columns]).to_csv(
            os.path.join(sweep.root, HELDOUT_PER_SEED_FILE), index=False)
    b = heldout_baselines(runs, max_states, seed)
    b.to_csv(os.path.join(sweep.root, BASELINES_FILE), index=False)
    return baselines_md(b)


def baselines_md(b) -> str:
    """results.md's section on the data-only baselines (``heldout_baselines``' frame)."""
    from floq_jax.analysis import report

    cols = ['env_name', 'predictor', 'q_centered_error', 'q_centered_error_ci_low', 'q_centered_error_ci_high',
            'q_rank_corr', 'q_rank_corr_ci_low', 'q_rank_corr_ci_high', 'fit_states', 'mc_states']
    return '\n'.join([
        '## Baselines for the critic measures', '',
        'Predictors that know only the data, scored on the same held-out states as the critics: `constant` (Q = the '
        'mean Monte-Carlo return of the training split; its centered error is mean |G - mean G| and it has no rank '
        'correlation) and `ridge` (a ridge regression of the training split\'s Monte-Carlo returns on the '
        '(observation, action) features).  95% CIs over held-out states resampled (floq_jax.analysis.mc_returns.'
        f'behaviour_return_baselines; {BASELINES_FILE}).  A critic whose centered error is not below `constant`\'s '
        'has learned no ordering of the states.', '',
        report.frame_to_markdown(b[cols]), ''])


def _read_skipped(sweep: Sweep) -> List[str]:
    return list(_read_json(os.path.join(sweep.root, 'skipped.json'), []))


def final_train_metric(run, key: str, last_n: int = 1) -> float:
    """Mean of the last ``last_n`` logged values of a train.csv column (NaN if absent)."""
    if run.train is None or key not in run.train.columns:
        return math.nan
    values = run.train[key].dropna().to_numpy(dtype=float)
    return float(values[-last_n:].mean()) if values.size else math.nan


METRICS_PER_SEED_FILE = 'metrics_per_seed.csv'   # per_variant_metrics' values, one row per (variant, env, seed)


def per_variant_metrics(sweep: Sweep, runs, keys: Sequence[str], success_last_n: Optional[int] = None,
                        per_seed_path: Optional[str] = None):
    """DataFrame: one row per (env, variant) with final success and the final value of each train.csv ``key``
    (mean and 95% CI over seeds).  ``per_seed_path``: also write the per-seed values there (CSV, one row per seed)."""
    import pandas as pd

    from floq_jax.analysis import report

    last_n = success_last_n or preset(sweep.preset)['last_n']
    order = variant_order(sweep)
    groups: Dict[Tuple[str, str], list] = {}
    for r in runs:
        groups.setdefault((r.env_name, str(r.get('variant'))), []).append(r)
    rows, seed_rows = [], []
    for (env, variant), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))):
        values = {'success': [report.final_score(r, 'evaluation/success', last_n) for r in rs]}
        values.update({key.split('/', 1)[-1]: [final_train_metric(r, key, last_n) for r in rs] for key in keys})
        row = {'env_name': env, 'variant': variant, 'num_seeds': len(rs)}
        for name, v in values.items():
            row.update(report.mean_ci_columns(name, v))
        rows.append(row)
        seed_rows += [dict(env_name=env, variant=variant, seed=r.seed, **{n: v[i] for n, v in values.items()})
                      for i, r in enumerate(rs)]
    if per_seed_path:
        pd.DataFrame(seed_rows).sort_values(['env_name', 'variant', 'seed'], kind='stable').to_csv(per_seed_path,
                                                                                                 index=False)
    return pd.DataFrame(rows)


def heldout_q_errors(sweep: Sweep, runs, eval_ks: Sequence[Optional[int]] = (None,), max_states: int = 1024,
                     seed: int = 0, extra: Optional[Callable[[Any], dict]] = None):
    """DataFrame, one row per (run of ``runs``, K'): the newest checkpoint's Q error on held-out states,
    ``q_abs_error`` = mean |Q_K'(s, a) - G(s, a)|, ``q_bias`` = mean (Q - G), ``q_centered_error`` (the error once
    the mean offset is removed) and ``q_rank_corr`` (Spearman), G the Monte-Carlo discounted return of the dataset's
    validation trajectories (floq_jax.analysis.mc_returns.heldout_targets, q_error_measures).  K' None: the run's own
    K.  Columns: env_name, variant, run_dir, the keys of ``extra(run)``, seed, step, eval_K, q_abs_error, q_bias,
    q_centered_error, q_rank_corr, mc_tolerance, mc_split, mc_states."""
    import jax
    import pandas as pd

    from floq_jax.analysis.mc_returns import heldout_targets, q_error_measures
    from floq_jax.training import restore

    rows, targets = [], {}
    for run in runs:
        agent, _, _, step, data, _ = restore.load_run(run.path, sweep.registry.agent_class)
        if run.env_name not in targets:
            targets[run.env_name] = heldout_targets(data.train, data.val, float(agent.config.discount), max_states,
                                                    seed=seed)
        obs, act, g, tol, split = targets[run.env_name]
        own_k = agent.config.get('critic_flow_steps', None)
        columns = dict(env_name=run.env_name, variant=str(run.get('variant')), run_dir=run.path,
                       **(extra(run) if extra else {}), seed=run.seed, step=step)
        for k in eval_ks:
            q = np.asarray(agent.q_values(jax.numpy.asarray(obs), jax.numpy.asarray(act),
                                          num_steps=None if k is None else int(k), seed=jax.random.PRNGKey(seed)))
            rows.append(dict(columns, eval_K=own_k if k is None else int(k), **q_error_measures(q, g),
                             mc_tolerance=tol, mc_split=split, mc_states=len(g)))
    return pd.DataFrame(rows)


def truncated_returns_note(tolerance: float) -> str:
    """What a Q error against truncated Monte-Carlo returns means ('' when the returns were trustworthy)."""
    if tolerance <= 0.01:
        return ''
    return (f'Note: no validation state had a trustworthy Monte-Carlo return (episodes too short for the discount), '
            f'so G is the return truncated at the episode end (tolerance {tolerance:g}): the Q error here measures '
            f'the pipeline, not the critic\'s accuracy.\n')


def scatter_vs_success(df, keys: Sequence[str], path: str, title: str = '') -> str:
    """One panel per metric: final metric (x) against final success (y), one point per variant (CI bars)."""
    from floq_jax.analysis import report

    keys = [k for k in keys if k in df.columns]
    fig, axes = report.new_figure(max(1, len(keys)), ncols=max(1, len(keys)), size=(4.2, 3.4))
    for ax, key in zip(axes, keys):
        for _, row in df.iterrows():
            x, y = row[key], row['success'] * 100
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            xerr = [[x - row[f'{key}_ci_low']], [row[f'{key}_ci_high'] - x]]
            yerr = [[y - row['success_ci_low'] * 100], [row['success_ci_high'] * 100 - y]]
            ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt='o', capsize=3, label=str(row['variant']))
        ax.set_xlabel(key)
        ax.set_ylabel('success (%)')
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return report.save_figure(fig, path)


def bar_plot(df, value: str, path: str, title: str = '', label_col: str = 'variant', scale: float = 100.0,
             ylabel: str = 'success (%)') -> str:
    """Bars of ``value`` (with its _ci_low/_ci_high) per row of ``df``."""
    from floq_jax.analysis import report

    fig, axes = report.new_figure(1, 1, size=(1.0 + 0.9 * max(3, len(df)), 3.6))
    ax = axes[0]
    x = np.arange(len(df))
    y = df[value].to_numpy(float) * scale
    lo = df[f'{value}_ci_low'].to_numpy(float) * scale
    hi = df[f'{value}_ci_high'].to_numpy(float) * scale
    ax.bar(x, np.nan_to_num(y), yerr=[np.nan_to_num(y - lo), np.nan_to_num(hi - y)], capsize=3)
    labels = [f'{a}\n{b}' if df['env_name'].nunique() > 1 else str(b) for a, b in zip(df['env_name'], df[label_col])]
    ax.set_xticks(x, labels, rotation=30, ha='right', fontsize=8)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return report.save_figure(fig, path)


# ----------------------------------------------------------------------------- devices


def configure_cpu_devices(sweep: Sweep, cpu_devices: Optional[int] = None) -> int:
    """--cpu_devices for a sweep: split the host CPU into XLA devices before JAX starts (floq_jax.training.parallel).

    The automatic default is taken from the sweep's seed count (every run of a sweep has the same one).  Returns
    the number of CPU devices in effect (1 when nothing was changed, e.g. JAX was already initialised).
    """
    from floq_jax.training import parallel

    return parallel.configure_cpu_devices(int(merged_options(sweep)['num_seeds']), cpu_devices)


def offline_steps_of(sweep: Sweep) -> int:
    return int(merged_options(sweep)['offline_steps'])
