"""The host training loop as a library function (no flags): offline training, then optional online fine-tuning.

    run_dirs = run_offline(config, data, RunOptions(env_name=..., seed=0, num_seeds=3, offline_steps=...))

Seeds ``seed .. seed + num_seeds - 1`` train together (vmapped, see ``floq_jax.train``); each gets its own run
directory ``<save_dir>/<run_group>/<env_name>/<agent_name>/seed<k>/`` with ``flags.json``, ``train.csv``,
``eval.csv``, TensorBoard events (``tb/``) and orbax checkpoints (``checkpoints/<step>/``) holding that seed's
full agent state (params, target params, optimizer state, rng, step) and its data-sampling rng.

Schedule: updates run in jitted chunks of at most ``steps_per_call`` updates, clipped at every log / eval /
save boundary, so the chunk schedule is a function of the absolute step only and a run resumed from a
checkpoint repeats the uninterrupted run's computation exactly (bitwise on CPU).  ``train.csv`` holds only
deterministic values (chunk means of the losses); wall-clock rates go to TensorBoard.

Resume: with ``resume=True`` an existing run directory continues from the newest step for which every seed has
an intact checkpoint (corrupt ones are skipped with a warning); CSV rows after that step are dropped.  A run
directory written for another env / agent / config is refused (:class:`RunDirConflict`), never overwritten.
A non-finite training metric stops the run with :class:`NonFiniteMetric` (the last good checkpoint stays).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from floq_jax import multihost, presets, train
from floq_jax.checkpoints import Checkpointer
from floq_jax.data import sampling
from floq_jax.logging import CsvLogger, FanoutLogger, NullLogger, TensorBoardLogger, WandbLogger

# flags.json keys that must match for a run directory to be resumed.
IDENTITY_KEYS = ('env_name', 'agent', 'dataset_file')
EVAL_METRICS = ('success', 'return', 'length')


class RunDirConflict(RuntimeError):
    """The run directory belongs to another run (different env / agent / config) or resume is off."""


class NonFiniteMetric(RuntimeError):
    """A training metric became NaN or inf."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run: ``step`` reached, ``checkpoint`` the newest saved step (None: none yet)."""

    def __init__(self, step: int, checkpoint: Optional[int]):
        super().__init__(step, checkpoint)
        self.step, self.checkpoint = step, checkpoint


@dataclasses.dataclass
class RunOptions:
    """Everything the loop needs besides the agent config and the data (the entrypoints map flags onto it)."""

    env_name: str
    seed: int = 0
    num_seeds: int = 1
    offline_steps: int = 1_000_000
    online_steps: int = 0
    steps_per_call: int = 1000
    log_interval: int = 5000
    eval_interval: int = 20000
    save_interval: int = 100000
    eval_episodes: int = 50
    # 'published': the one-step policy at noise N(0, I), clipped (the published code's evaluation);
    # 'deterministic': at zero noise.  See floq_jax.presets.EVAL_PROTOCOLS.
    eval_protocol: str = 'published'
    eval_num_steps: Sequence[int] = ()   # extra critic K values at which to log Q estimates
    eval_at_start: bool = True           # evaluate the untrained policy at step 0
    eval_num_envs: Optional[int] = None  # parallel sub-envs per evaluation (default: eval_episodes)
    save_dir: str = 'runs'
    run_group: str = 'default'
    resume: bool = True
    tensorboard: bool = True
    wandb: bool = False                  # also log to W&B (offline mode unless WANDB_MODE is set)
    max_checkpoints: Optional[int] = 3
    utd_ratio: int = 1                   # online: updates per env step
    buffer_size: int = 2_000_000         # online: replay capacity (at least the dataset size + 1); published 2M
    use_mesh: Optional[bool] = None      # None: shard over devices when there is more than one
    # None: sample on the host (numpy, prefetched) only when the dataset exceeds half the free device memory.
    host_sampling: Optional[bool] = None
    # Offline chunks: 'vmap' batches the seeds, 'map' runs each device's seeds one by one (plain GEMMs), 'auto' maps
    # on CPU for large matmuls (floq_jax.train.use_seed_map).
    seed_loop: str = 'auto'
    progress: bool = True                # tqdm bar
    console: bool = False                # CLI: start-up / final summaries and 'compiling' notes on stderr
    flags: Dict[str, Any] = dataclasses.field(default_factory=dict)  # recorded in flags.json
    stop_after_step: Optional[int] = None  # test hook: return after this step (as if killed after its save)
    # [(step, {agent config key: value})]: from ``step`` on the agents train with those config values (static
    # config, so one recompile per entry), e.g. [(250_000, {'freeze_critic_trunk': True})].
    config_schedule: Sequence[Tuple[int, Dict[str, Any]]] = ()
    log_diagnostics: bool = True         # diagnostics.critic_diagnostics at every log interval ('diagnostics/...')
    eval_kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)  # extra Evaluator args (max_episode_steps)

    def validate(self) -> None:
        """One-line ValueErrors naming the option."""
        for name in ('num_seeds', 'steps_per_call', 'log_interval', 'eval_interval', 'save_interval',
                     'eval_episodes', 'utd_ratio', 'buffer_size'):
            if int(getattr(self, name)) < 1:
                raise ValueError(f'{name} must be a positive integer, got {getattr(self, name)}')
        for name in ('offline_steps', 'online_steps'):
            if int(getattr(self, name)) < 0:
                raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}')
        if self.offline_steps + self.online_steps < 1:
            raise ValueError('offline_steps + online_steps must be positive')
        if self.eval_protocol not in presets.EVAL_PROTOCOLS:
            raise ValueError(f'eval_protocol must be one of {", ".join(presets.EVAL_PROTOCOLS)}, '
                             f'got {self.eval_protocol!r}')
        if self.seed_loop not in train.SEED_LOOPS:
            raise ValueError(f"seed_loop must be 'auto', 'map' or 'vmap', got {self.seed_loop!r}")
        for k in self.eval_num_steps:
            if int(k) < 1:
                raise ValueError(f'eval_num_steps entries must be positive integers, got {k}')
        for entry in self.config_schedule:
            if len(entry) != 2 or int(entry[0]) < 0 or not isinstance(entry[1], dict):
                raise ValueError(f'config_schedule entries must be (step >= 0, dict of config values), got {entry}')


def run_dir(options: RunOptions, agent_name: str, seed: int) -> str:
    return os.path.join(options.save_dir, options.run_group, options.env_name, agent_name, f'seed{seed}')


def seeds_of(options: RunOptions) -> List[int]:
    return [options.seed + k for k in range(options.num_seeds)]


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def config_dict(config) -> dict:
    return _jsonable(config.to_dict() if hasattr(config, 'to_dict') else dict(config))


def canonical_config(config):
    """The config as flags.json records it (lists -> tuples, no shared objects), so an agent rebuilt from
    flags.json has the same pytree structure (and checkpoint digest) as the one that was trained."""
    import ml_collections

    def tuples(x):
        return tuple(tuples(v) for v in x) if isinstance(x, list) else x

    d = config_dict(config) if not isinstance(config, dict) else _jsonable(config)
    return ml_collections.ConfigDict({k: tuples(v) for k, v in d.items()})


def flags_record(config, data, options: RunOptions, seed: int) -> dict:
    """The flags.json content of one seed's run directory."""
    record = dict(_jsonable(options.flags))
    record.update(env_name=options.env_name, seed=int(seed), agent=config_dict(config),
                  data_source=data.source, generator=_jsonable(data.generator), dataset_file=data.dataset_file,
                  num_seeds=options.num_seeds, offline_steps=options.offline_steps, online_steps=options.online_steps,
                  eval_protocol=options.eval_protocol,
                  eval_protocol_description=presets.describe_eval_protocol(options.eval_protocol))
    if options.config_schedule:
        record['config_schedule'] = _jsonable([[int(s), dict(c)] for s, c in options.config_schedule])
    return record


def check_run_dir(directory: str, record: dict, resume: bool) -> bool:
    """True if ``directory`` holds a run to resume; raises RunDirConflict for a foreign or unresumable one."""
    path = os.path.join(directory, 'flags.json')
    if not os.path.exists(path):
        return False
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError) as e:
        raise RunDirConflict(f'{path} is unreadable ({e}); refusing to overwrite {directory}') from None
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
    if not resume:
        raise RunDirConflict(f'run dir {directory} already exists and resume is off; refusing to overwrite it: '
                             f'pass --resume or another --run_group')
    return True


def write_json(path: str, obj) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(_jsonable(obj), f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def chunk_schedule(start: int, end: int, steps_per_call: int, intervals: Sequence[int], boundaries: Sequence[int] = ()):
    """[(step, n)] chunks from ``start`` to ``end``: at most steps_per_call long, never crossing an interval multiple
    or one of ``boundaries`` (e.g. config_schedule steps)."""
    out, step = [], start
    while step < end:
        nxt = min([end, step + steps_per_call] + [(step // i + 1) * i for i in intervals]
                  + [int(b) for b in boundaries if int(b) > step])
        out.append((step, nxt - step))
        step = nxt
    return out


def check_finite(infos: Dict[str, np.ndarray], step: int, seeds: Sequence[int], last_good: Optional[int]) -> None:
    for key, values in infos.items():
        values = np.asarray(values)
        bad = ~np.isfinite(values)
        if bad.any():
            k = int(np.argmax(bad))
            where = f'checkpoint step {last_good}' if last_good is not None else 'no checkpoint'
            raise NonFiniteMetric(f'training metric {key} is {values[k]} at step {step} (seed {seeds[k]}); '
                                  f'stopping; the last good checkpoint is kept ({where})')


# ----------------------------------------------------------------------------- policies and evaluation


@jax.jit
def _policy_actions(agent, observations, rng, temperature):
    return agent.sample_actions(observations, seed=rng, temperature=temperature)


def policy_fn_for(agent) -> Callable:
    """policy_fn(obs (N, O), rng, temperature) -> actions for one (unstacked) agent (compiled once per shape)."""
    return lambda obs, rng, temperature: _policy_actions(agent, jnp.asarray(obs), rng, jnp.float32(temperature))


def q_estimates(agent, batch: Dict[str, np.ndarray], num_steps: Sequence[int], seed: int = 0) -> Dict[str, float]:
    """Mean Q of the flow critic on ``batch`` at each K (agents without ``q_values`` give {})."""
    if not hasattr(agent, 'q_values') or not num_steps:
        return {}
    out = {}
    for k in num_steps:
        q = agent.q_values(jnp.asarray(batch['observations']), jnp.asarray(batch['actions']), num_steps=int(k),
                           seed=jax.random.PRNGKey(seed))
        out[f'evaluation/q_K{int(k)}'] = float(np.mean(np.asarray(q)))
    return out


def eval_batch(data, size: int = 256, seed: int = 0) -> Dict[str, np.ndarray]:
    """A fixed batch of (validation, else training) transitions for Q estimates."""
    source = data.val if data.val is not None else data.train
    n = len(source['observations'])
    idx = np.random.default_rng(seed).choice(n, size=min(size, n), replace=False)
    return {k: source[k][idx] for k in ('observations', 'actions')}


# ----------------------------------------------------------------------------- the loop


class _Run:
    """Shared state of one (multi-seed) run: agents, rngs, loggers, checkpointers."""

    def __init__(self, agent_cls, config, data, options: RunOptions, extra_state: Optional[Callable] = None):
        options.validate()
        self.options, self.config, self.data = options, config, data
        self.seeds = seeds_of(options)
        self.dirs = [run_dir(options, config.agent_name, s) for s in self.seeds]
        records = [flags_record(config, data, options, s) for s in self.seeds]
        resuming = [check_run_dir(d, r, options.resume) for d, r in zip(self.dirs, records)]
        use_mesh = options.use_mesh if options.use_mesh is not None else jax.device_count() > 1
        self.mesh = train.make_mesh(options.num_seeds) if use_mesh else None
        self.seed_map = train.use_seed_map(options.seed_loop, config)
        arrays = sampling.batch_arrays(data.train)
        self.host_arrays = arrays
        self.host_sampler = None
        host = options.host_sampling if options.host_sampling is not None else not sampling.fits_on_device(arrays)
        if host:
            logging.warning('sampling batches on the host: the dataset (%.2f GiB) is kept in host memory '
                            '(--host_sampling, or more than half the free device memory)',
                            sampling.nbytes(arrays) / 2**30)
            self.host_sampler = sampling.HostSampler(arrays, config.batch_size, self.seeds)
            self.device_data = None
        else:
            self.device_data = sampling.put_replicated(arrays, train.replicated(self.mesh) if self.mesh else None)
        ex_obs, ex_act = arrays['observations'][:1], arrays['actions'][:1]
        self.agents = train.create_agents(agent_cls, config, ex_obs, ex_act, self.seeds, self.mesh)
        self._base_agent_config = self.agents.config
        self.rngs = train.seed_rngs(self.seeds)
        if self.mesh is not None:
            self.rngs = multihost.put_global(np.asarray(self.rngs), train.seed_sharding(self.mesh))
        self.extra = extra_state(self) if extra_state is not None else None  # e.g. replay buffers (S, ...)
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)
        self.checkpointers = [Checkpointer(os.path.join(d, 'checkpoints'), max_to_keep=options.max_checkpoints)
                              for d in self.dirs]
        self.step = 0
        self.metadata: Dict[str, Any] = {}
        self.restored = any(resuming) and self._restore()
        # Multi-host: every process trains and checkpoints (orbax coordinates them); only process 0 writes
        # flags.json, the CSV logs and TensorBoard events, so the files are written once.
        self.primary = is_primary_process()
        resume_step = self.step if self.restored else None
        if self.primary and not self.restored:
            # A run dir that is (re)started from step 0 (e.g. it was stopped before its first checkpoint): its CSVs
            # start afresh, and so do its TensorBoard events (no second step-0 evaluation beside the old one).
            for d in self.dirs:
                tb_dir = os.path.join(d, 'tb')
                for name in os.listdir(tb_dir) if os.path.isdir(tb_dir) else []:
                    if name.startswith('events.out.tfevents.'):
                        os.remove(os.path.join(tb_dir, name))
        if self.primary:
            for d, r in zip(self.dirs, records):
                write_json(os.path.join(d, 'flags.json'), r)
            self.train_logs = [CsvLogger(os.path.join(d, 'train.csv'), resume_from_step=resume_step)
                               for d in self.dirs]
            self.eval_logs = [CsvLogger(os.path.join(d, 'eval.csv'), resume_from_step=resume_step) for d in self.dirs]
            self.tb = [TensorBoardLogger(os.path.join(d, 'tb'), enabled=options.tensorboard,
                                         resume_from_step=resume_step) for d in self.dirs]
            if options.wandb:
                self.tb = [FanoutLogger(tb, WandbLogger(
                    'floq-jax', options.run_group, f'{options.env_name}/{config.agent_name}',
                    {'agent': config.to_dict(), **options.flags}, os.path.abspath(options.save_dir),
                    prefix=f'seed{s}/' if len(self.seeds) > 1 else '')) for tb, s in zip(self.tb, self.seeds)]
        else:
            self.train_logs = [NullLogger() for _ in self.dirs]
            self.eval_logs = [NullLogger() for _ in self.dirs]
            self.tb = [NullLogger() for _ in self.dirs]
        self.last_good = self.step if self.restored else None
        self.last_eval: List[dict] = []
        self._evaluator = None
        self._qbatch = eval_batch(data) if options.eval_num_steps else None
        self._diag_fn = None
        self._diag_batch = None
        self.apply_config_schedule()

    # -- config schedule and diagnostics
    def apply_config_schedule(self, at_step: Optional[int] = None) -> None:
        """Sets the agents' (static) config to the base config updated by every schedule entry at or before
        ``at_step`` (default ``self.step``); a no-op without entries due; a new config recompiles the update once."""
        import ml_collections

        at_step = self.step if at_step is None else at_step
        changes = {}
        for step, values in sorted(self.options.config_schedule, key=lambda e: int(e[0])):
            if int(step) <= at_step:
                changes.update(values)
        base = self._base_agent_config
        config = base
        if changes:
            unknown = sorted(set(changes) - set(base.keys()))
            if unknown:
                raise ValueError(f'config_schedule: agent config has no key(s) {unknown}')
            config = ml_collections.FrozenConfigDict({**base.to_dict(), **changes})
        if config != self.agents.config:
            self.agents = self.agents.replace(config=config)

    def diagnostics(self) -> Dict[str, np.ndarray]:
        """{'diagnostics/<name>': (S,)} from ``diagnostics.critic_diagnostics`` on a fixed batch ({} if off)."""
        if not self.options.log_diagnostics:
            return {}
        from floq_jax import diagnostics

        if self._diag_fn is None:
            self._diag_fn = jax.jit(jax.vmap(diagnostics.critic_diagnostics, in_axes=(0, None, None)))
            self._diag_batch = {k: jnp.asarray(v) for k, v in eval_batch(self.data, seed=1).items()}
        agents = self.agents
        if self.mesh is not None:
            # On a mesh, run the diagnostics on gathered copies: the partitioned program (it takes SVDs) waited
            # forever on 2 XLA:CPU devices; a copy of the agents every log interval is cheap next to training.
            agents = jax.tree_util.tree_map(jnp.asarray, train.to_host(agents))
        if not self.primary:
            return {}  # only process 0 logs (every process takes part in the gather above)
        out = self._diag_fn(agents, self._diag_batch, jax.random.PRNGKey(self.step))
        out = jax.device_get(out) if jax.process_count() > 1 else train.to_host(out)  # (local copies: no gather)
        return {f'diagnostics/{k}': np.asarray(v) for k, v in out.items()}

    # -- state of one seed
    def host_state(self) -> dict:
        """Every seed's state as host arrays, seed axis first: {'agent', 'data_rng'[, 'extra']}.  Every process of a
        multi-process run must call it together (it gathers the shards the other processes hold)."""
        state = {'agent': self.agents, 'data_rng': self.rngs}
        if self.extra is not None:
            state['extra'] = self.extra
        return train.to_host(state)

    def seed_state(self, k: int, state: Optional[dict] = None) -> dict:
        """Seed k's checkpoint state (host arrays) out of ``state`` (default: a fresh :meth:`host_state`)."""
        state = self.host_state() if state is None else state
        return jax.tree_util.tree_map(lambda x: np.asarray(x[k]), state)

    def _put(self, states: List[dict]) -> None:
        stacked = train.stack(states)
        if self.mesh is not None:
            stacked = multihost.put_global(stacked, train.seed_sharding(self.mesh))
        self.agents, self.rngs = stacked['agent'], stacked['data_rng']
        if self.extra is not None:
            self.extra = stacked['extra']

    def _restore(self) -> bool:
        """Restores the newest step with an intact checkpoint for every seed; False if there is none."""
        steps = [set(c.all_steps()) for c in self.checkpointers]
        common = sorted(set.intersection(*steps), reverse=True) if steps else []
        for s in common:
            self.apply_config_schedule(s)  # the checkpoint holds the agent with that step's config
            try:
                state = self.host_state()
                restored = [c.restore(self.seed_state(k, state), step=s) for k, c in enumerate(self.checkpointers)]
            except Exception as e:  # noqa: BLE001 - corrupt or unreadable: try an older step
                logging.warning('checkpoint step %d is not usable for every seed (%s); trying an older one', s, e)
                continue
            self._put([r[0] for r in restored])
            self.step = s
            self._drop_after(s)
            self.metadata = restored[0][1]
            return True
        if any(steps):
            logging.warning('no step with an intact checkpoint for every seed; starting from scratch')
        return False

    def _drop_after(self, step: int) -> None:
        """Deletes checkpoints newer than the restored step (corrupt ones, or ones a resumed run will redo)."""
        for c in self.checkpointers:
            c.delete_after(step)

    def save(self) -> None:
        """Every process saves every seed (orbax's multi-process protocol: the same saves in the same order)."""
        state = self.host_state()
        for k, c in enumerate(self.checkpointers):
            c.save(self.step, self.seed_state(k, state), {'step': self.step, **self.metadata})
        self.last_good = self.step

    # -- logging
    def log_train(self, infos: Dict[str, np.ndarray], extra: Optional[Dict[str, np.ndarray]] = None,
                  rate: Optional[float] = None) -> None:
        for k in range(len(self.seeds)):
            row = {f'training/{key}': v[k] for key, v in infos.items()}
            if extra:
                row.update({key: v[k] for key, v in extra.items()})
            self.train_logs[k].log(row, self.step)
            self.tb[k].log(row if rate is None else {**row, 'time/steps_per_sec': rate}, self.step)

    def evaluate(self) -> List[dict]:
        """Evaluates every seed; in a multi-process run, process 0 evaluates all seeds on a gathered copy of the
        agents (the others take part in the gather and return [])."""
        from floq_jax.evaluation import Evaluator

        o = self.options
        agents = self.agents
        if jax.process_count() > 1:
            agents = train.to_host(agents)
            if not self.primary:
                return []
            agents = jax.tree_util.tree_map(jnp.asarray, agents)
        if self._evaluator is None:
            self._evaluator = Evaluator(o.env_name, num_episodes=o.eval_episodes, seed=o.seed,
                                        num_envs=min(o.eval_num_envs or o.eval_episodes, o.eval_episodes),
                                        **dict(o.eval_kwargs))
        results = []
        for k, s in enumerate(self.seeds):
            agent = train.select_seed(agents, k)
            res = self._evaluator(policy_fn_for(agent), temperature=presets.eval_temperature(o.eval_protocol),
                                  seed=s)
            row = {f'evaluation/{m}': float(res[m]) for m in EVAL_METRICS}
            if self._qbatch is not None:
                row.update(q_estimates(agent, self._qbatch, o.eval_num_steps))
            self.eval_logs[k].log(row, self.step)
            self.tb[k].log(row, self.step)
            results.append(row)
        self.last_eval = results
        return results

    def close(self) -> None:
        if self.host_sampler is not None:
            self.host_sampler.close()
        for c in self.checkpointers:
            c.close()
        for lg in self.train_logs + self.eval_logs + self.tb:
            lg.close()
        if self._evaluator is not None:
            self._evaluator.close()


def is_primary_process() -> bool:
    """True on the process that writes logs (process 0; the only one outside multi-host runs)."""
    return jax.process_index() == 0


def _progress(options: RunOptions, total: int, initial: int):
    if not options.progress or not is_primary_process():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit='step', dynamic_ncols=True, smoothing=0.1)


def _at(step: int, interval: int) -> bool:
    return step % interval == 0


def load_run(run_directory: str, step: Optional[int] = None, dataset_path: Optional[str] = None):
    """(agent, state, metadata, step, data, flags) from a seed's run directory (newest intact checkpoint by default)."""
    from agents import agent_class
    from floq_jax.data import load_offline_data

    with open(os.path.join(run_directory, 'flags.json')) as f:
        flags = json.load(f)
    config = canonical_config(flags['agent'])
    data = load_offline_data(flags['env_name'], dataset_path=dataset_path or flags['dataset_file'])
    arrays = sampling.batch_arrays(data.train)
    agent_cls = agent_class(config.agent_name)
    agent = agent_cls.create(int(flags['seed']), arrays['observations'][:1], arrays['actions'][:1], config)
    target = {'agent': agent, 'data_rng': train.seed_rngs([int(flags['seed'])])[0]}
    if int(flags.get('online_steps') or 0) > 0:
        from floq_jax import replay

        capacity = replay.capacity_for(len(arrays['observations']), int(flags.get('buffer_size') or 0))
        target['extra'] = replay.from_dataset(arrays, capacity)
    checkpointer = Checkpointer(os.path.join(run_directory, 'checkpoints'))
    try:
        state, metadata, step = checkpointer.restore(jax.device_get(target), step=step)
    finally:
        checkpointer.close()
    return state['agent'], state, metadata, step, data, flags


def evaluate_checkpoint(run_dir, step=None, eval_episodes=50, num_steps=(), eval_protocol='published',
                        video_episodes=0, eval_seed=None, eval_num_envs=None, dataset_path=None):
    """Evaluates a seed run dir's checkpoint (newest intact one by default): success over ``eval_episodes``
    (parallel Evaluator) under ``eval_protocol`` ('published': noise N(0, I); 'deterministic') and Q estimates at
    each K in ``num_steps`` on a fixed dataset batch.

    Returns the summary dict, also written to <run_dir>/evaluations/step<step>.json and .csv (videos as .npy).
    """
    import csv

    from floq_jax.evaluation import Evaluator

    temperature = presets.eval_temperature(eval_protocol)
    agent, _, _, step, data, run_flags = load_run(run_dir, step, dataset_path)
    num_steps = tuple(num_steps) or (int(agent.config.get('critic_flow_steps', 1)),)
    seed = int(run_flags['seed']) if eval_seed is None else int(eval_seed)
    with Evaluator(run_flags['env_name'], num_episodes=eval_episodes, seed=seed,
                   num_envs=min(eval_num_envs or eval_episodes, eval_episodes)) as evaluator:
        res = evaluator(policy_fn_for(agent), temperature=temperature, seed=seed,
                        video_episodes=video_episodes)
    qs = q_estimates(agent, eval_batch(data), num_steps)
    summary = dict(run_dir=os.path.abspath(run_dir), step=int(step), env_name=run_flags['env_name'],
                   agent_name=agent.config.agent_name, episodes=int(eval_episodes), eval_protocol=eval_protocol,
                   eval_protocol_description=presets.describe_eval_protocol(eval_protocol),
                   temperature=float(temperature),
                   success=float(res['success']), **{'return': float(res['return'])}, length=float(res['length']),
                   trained_K=int(agent.config.get('critic_flow_steps', 0)),
                   q_estimates={k.split('_K')[1]: v for k, v in qs.items()})
    out = os.path.join(run_dir, 'evaluations')
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, f'step{step}.json'), summary)
    with open(os.path.join(out, f'step{step}.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['step', 'K', 'evaluation/success', 'evaluation/return', 'evaluation/length', 'q_mean'])
        for k, q in summary['q_estimates'].items() or [('', '')]:
            writer.writerow([step, k, summary['success'], summary['return'], summary['length'], q])
    for i, video in enumerate(res.get('videos') or []):
        np.save(os.path.join(out, f'step{step}_video{i}.npy'), np.asarray(video))
    return summary


def _test_pause(run) -> None:
    """Test hook: with $FLOQ_TEST_PAUSE_AT_STEP=<step>, block forever after that step (tests SIGKILL us here)."""
    if os.environ.get('FLOQ_TEST_PAUSE_AT_STEP') == str(run.step):
        for c in run.checkpointers:
            c.wait_until_finished()
        print(f'PAUSED {run.step}', flush=True)
        while True:
            time.sleep(1)


def run_training(agent_cls, config, data, options: RunOptions, online_phase: Optional[Callable] = None,
                 extra_state: Optional[Callable] = None) -> List[str]:
    """Offline steps (then ``online_phase(run, bar)`` if given); returns the run directories (one per seed)."""
    run = _Run(agent_cls, canonical_config(config), data, options, extra_state)
    o = options
    if o.console and run.primary:
        _say(startup_summary(run))
    bar = _progress(o, o.offline_steps + o.online_steps, run.step)
    interrupted = lost = False
    try:
        if not run.restored and o.eval_at_start:
            _note(o, bar, 'evaluating step 0')
            run.evaluate()
        intervals = (o.log_interval, o.eval_interval, o.save_interval)
        boundaries = [int(s) for s, _ in o.config_schedule]
        schedule = chunk_schedule(run.step, o.offline_steps, o.steps_per_call, intervals, boundaries)
        for i, (start, n) in enumerate(schedule):
            if start in boundaries:
                run.apply_config_schedule()
            if i == 0:
                _note(o, bar, 'compiling the update (first chunk)')
            t0 = time.perf_counter()
            if run.host_sampler is None:  # the chunk constructors are cached: one jitted function per (size, n)
                chunk = train.make_train_chunk(config.batch_size, n, run.mesh, run.seed_map)
                run.agents, run.rngs, infos = chunk(run.agents, run.device_data, run.rngs)
            else:
                batches = run.host_sampler.get(start, n)
                if i + 1 < len(schedule):
                    run.host_sampler.prefetch(*schedule[i + 1])
                if run.mesh is not None:
                    batches = multihost.put_global(batches, train.seed_sharding(run.mesh))
                run.agents, infos = train.make_host_batch_chunk(n, run.mesh, run.seed_map)(run.agents, batches)
            infos = train.to_host(infos)
            run.step = start + n
            check_finite(infos, run.step, run.seeds, run.last_good)
            if bar is not None:
                if i == 0:
                    bar.set_description_str('training', refresh=False)
                bar.update(n)
            if _at(run.step, o.log_interval):
                run.log_train(infos, extra=run.diagnostics(), rate=n / max(time.perf_counter() - t0, 1e-9))
            if _at(run.step, o.eval_interval) or run.step == o.offline_steps:
                res = run.evaluate()
                if bar is not None:
                    bar.set_postfix(success=f'{np.mean([r["evaluation/success"] for r in res]):.2f}')
            if _at(run.step, o.save_interval) or run.step == o.offline_steps:
                run.save()
            if o.stop_after_step is not None and run.step >= o.stop_after_step:
                return run.dirs
            _test_pause(run)
        if online_phase is not None and o.online_steps > 0:
            online_phase(run, bar)
        if o.console and run.primary:
            if bar is not None:
                bar.close()
                bar = None
            _say(final_summary(run))
        return run.dirs
    except KeyboardInterrupt:
        interrupted = True
        # Closing (env workers, checkpointer threads) was seen to hang after Ctrl-C in rare cases: a daemon
        # watchdog ends the process with the same line after CLOSE_GRACE_S; saved checkpoints are atomic.
        watchdog = threading.Timer(CLOSE_GRACE_S, _exit_interrupted, args=(run.step, run.last_good))
        watchdog.daemon = True
        watchdog.start()
        raise Interrupted(run.step, run.last_good) from None
    except Exception as e:
        if not multihost.is_lost_peer_error(e):
            raise
        lost = True  # closing would wait on the lost process (checkpoint barriers): leave at once
        raise multihost.ProcessLost(multihost.lost_process_message(None, e)) from None
    finally:
        if not lost:
            _close(run, bar, interrupted)


def _close(run: _Run, bar, interrupted: bool) -> None:
    """Closes the bar and the run; a second Ctrl-C while the checkpoints are finalised would only leave a
    traceback (and a half-closed run), so SIGINT is ignored meanwhile after an interruption."""
    import signal

    mask = interrupted and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if mask else None
    try:
        if bar is not None:
            bar.close()
        run.close()
    finally:
        if mask:
            signal.signal(signal.SIGINT, previous)


CLOSE_GRACE_S = 60.0  # seconds a Ctrl-C'd run may take to close before the watchdog exits the process


def interrupted_message(step: int, checkpoint: Optional[int]) -> str:
    """The one line a Ctrl-C'd run ends with."""
    where = (f'from its checkpoint at step {checkpoint}' if checkpoint is not None
             else 'from step 0: no checkpoint was saved yet')
    return f'interrupted at step {step}; re-run the same command to resume ({where})'


def _exit_interrupted(step: int, checkpoint: Optional[int]) -> None:
    import sys

    print(interrupted_message(step, checkpoint), file=sys.stderr, flush=True)
    os._exit(130)


def _say(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


def _note(options: RunOptions, bar, text: str) -> None:
    """What the run is doing while the bar cannot move (compiling, evaluating): the bar's label, else a line."""
    if bar is not None:
        bar.set_description_str(text, refresh=True)
    elif options.console and is_primary_process():
        _say(f'{text}...')


def _seed_range(seeds: Sequence[int]) -> str:
    return str(seeds[0]) if len(seeds) == 1 else f'{seeds[0]}..{seeds[-1]}'


def startup_summary(run: _Run) -> str:
    """Two lines: what trains on what, where, and from which step."""
    o, devices = run.options, jax.devices()
    total = o.offline_steps + o.online_steps
    state = (f'resuming from step {run.step} (checkpoint) of {total}' if run.restored
             else f'starting at step 0 of {total}')
    phases = f'{o.offline_steps} offline' + (f' + {o.online_steps} online' if o.online_steps else '')
    return (f'floq-jax: env {o.env_name} | agent {run.config.agent_name} | data {run.data.source} '
            f'({run.data.dataset_file}) | devices {len(devices)} x {devices[0].platform} | '
            f'seeds {_seed_range(run.seeds)} | {phases} steps | {state}\n'
            f'floq-jax: run dirs {os.path.dirname(run.dirs[0])}/seed{{{",".join(map(str, run.seeds))}}}')


def final_summary(run: _Run) -> str:
    """One line: the step reached, the last evaluation per seed, where the results are."""
    o = run.options
    if run.last_eval:
        values = [r['evaluation/success'] for r in run.last_eval]
        per_seed = ', '.join(f'seed{s} {v:.2f}' for s, v in zip(run.seeds, values))
        result = f'final success {per_seed} (mean {np.mean(values):.2f})'
    else:
        result = 'no evaluation in this session'
    return (f'floq-jax: done at step {run.step}: {result}; results in {os.path.dirname(run.dirs[0])}/seed<k>/ '
            f'(eval.csv, train.csv, tb/, checkpoints/); table: python -m experiments.report '
            f'--runs={os.path.join(o.save_dir, o.run_group)}')


def run_offline(config, data, options: RunOptions) -> List[str]:
    """Offline training of ``config.agent_name`` on ``data`` (an OfflineData); returns the run dirs."""
    from agents import agent_class

    return run_training(agent_class(config.agent_name), config, data, options)


def set_reward_range(config, data, mode: str = presets.DEFAULT_REWARD_RANGE) -> None:
    """config.r_min / r_max from the training rewards (the agents need them).

    ``mode='published'`` (default): the range includes 0, as the published code's range over its zero-padded
    replay buffer; ``'dataset'``: the rewards' own min / max (floq_jax.presets.reward_range).
    """
    config.r_min, config.r_max = presets.reward_range(data.train['rewards'], mode)


# ----------------------------------------------------------------------------- offline-to-online


def make_online_update(batch_size: int, utd_ratio: int):
    """jit((agents, buffers, transitions {(S, ...)}, rngs)) -> (agents, buffers, rngs, infos {(S,)}).

    Per seed: insert the new transition into the device replay buffer, then ``utd_ratio`` updates on
    batches sampled from it (``lax.scan``).
    """
    from floq_jax import replay

    def one_seed(agent, buffer, transition, rng):
        buffer = replay.add(buffer, transition)

        def body(carry, _):
            agent, rng = carry
            rng, key = jax.random.split(rng)
            agent, info = agent.update(replay.sample(buffer, key, batch_size))
            return (agent, rng), info

        (agent, rng), infos = jax.lax.scan(body, (agent, rng), None, length=utd_ratio)
        return agent, buffer, rng, jax.tree_util.tree_map(lambda x: x.mean(axis=0), infos)

    return jax.jit(jax.vmap(one_seed), donate_argnums=(0, 1, 3))


BAR_EVERY = 100  # online phase: env steps per progress-bar update


def online_episode_metrics(finished: Sequence[Sequence[Tuple[float, float]]]) -> Dict[str, np.ndarray]:
    """(S,) arrays for a train.csv / TensorBoard row from each seed's episodes ended since the last row:
    'online/episode_return' and 'online/episode_success' (means; NaN for a seed with none) and 'online/episodes'."""
    def mean(values):
        return float(np.mean(values)) if values else float('nan')

    return {'online/episode_return': np.asarray([mean([r for r, _ in f]) for f in finished]),
            'online/episode_success': np.asarray([mean([x for _, x in f]) for f in finished]),
            'online/episodes': np.asarray([len(f) for f in finished])}


def _online_phase(run: _Run, bar) -> None:
    """Online fine-tuning: one env per seed, one batched policy call per env step, utd_ratio updates after it."""
    from floq_jax import envs as envs_lib

    o, seeds = run.options, run.seeds
    envs = [envs_lib.make_env(o.env_name) for _ in seeds]
    act = jax.jit(jax.vmap(lambda a, obs, key: a.sample_actions(obs, seed=key, temperature=1.0)))
    update = make_online_update(run.config.batch_size, o.utd_ratio)
    episode = int(run.metadata.get('episodes', 0))
    obs = np.stack([env.reset(seed=s * 100_003 + episode)[0] for env, s in zip(envs, seeds)]).astype(np.float32)
    action_keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(s), 2))(jnp.asarray(seeds))
    returns = np.zeros(len(seeds))
    finished = [[] for _ in seeds]  # per seed: (return, success) of the episodes ended since the last log row
    pending = 0  # env steps not yet shown on the bar (redrawn every BAR_EVERY steps, not every env step)
    try:
        while run.step < o.offline_steps + o.online_steps:
            keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(action_keys, run.step)
            actions = np.clip(np.asarray(train.to_host(act(run.agents, jnp.asarray(obs), keys))), -1, 1)
            next_obs, rewards, terminated, truncated, successes = [], [], [], [], []
            for k, env in enumerate(envs):
                ob, r, term, trunc, info = env.step(actions[k])
                next_obs.append(ob), rewards.append(r), terminated.append(term), truncated.append(trunc)
                successes.append(float(info.get('success', 0.0)))
            next_obs = np.stack(next_obs).astype(np.float32)
            transitions = dict(observations=obs, actions=actions.astype(np.float32),
                               rewards=np.asarray(rewards, np.float32),
                               masks=1.0 - np.asarray(terminated, np.float32), next_observations=next_obs)
            run.agents, run.extra, run.rngs, infos = update(run.agents, run.extra, transitions, run.rngs)
            run.step += 1
            returns += np.asarray(rewards)
            obs = next_obs
            done = np.logical_or(terminated, truncated)
            if done.any():
                episode += 1
                run.metadata['episodes'] = episode
                for k in np.flatnonzero(done):
                    finished[k].append((returns[k], successes[k]))
                    obs[k] = envs[k].reset(seed=seeds[k] * 100_003 + episode)[0]
                    returns[k] = 0.0
            pending += 1
            if bar is not None and (pending >= BAR_EVERY or run.step == o.offline_steps + o.online_steps):
                bar.update(pending)
                pending = 0
            if _at(run.step, o.log_interval):
                infos = train.to_host(infos)
                check_finite(infos, run.step, seeds, run.last_good)
                size = np.asarray(train.to_host(run.extra.size))
                run.log_train(infos, extra={'online/buffer_size': size, **online_episode_metrics(finished),
                                            **run.diagnostics()})
                finished = [[] for _ in seeds]
            if _at(run.step, o.eval_interval) or run.step == o.offline_steps + o.online_steps:
                run.evaluate()
            if _at(run.step, o.save_interval) or run.step == o.offline_steps + o.online_steps:
                run.save()
    finally:
        for env in envs:
            env.close()


def run_offline_to_online(config, data, options: RunOptions) -> List[str]:
    """``options.offline_steps`` offline updates, then ``options.online_steps`` env steps of fine-tuning with
    the dataset as the initial (device) replay buffer, ``options.utd_ratio`` updates per env step."""
    from agents import agent_class
    from floq_jax import replay

    def buffers(run: _Run):
        capacity = replay.capacity_for(len(run.host_arrays['observations']), options.buffer_size)
        one = replay.from_dataset(run.host_arrays, capacity)
        stacked = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (len(run.seeds), *x.shape)), one)
        if run.mesh is not None:
            stacked = multihost.put_global(stacked, train.seed_sharding(run.mesh))
        return stacked

    return run_training(agent_class(config.agent_name), config, data, options, online_phase=_online_phase,
                        extra_state=buffers)
