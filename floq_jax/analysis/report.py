"""Results tables and plots from training run directories.

A *run directory* is any directory holding ``flags.json`` and ``eval.csv``
(and optionally ``train.csv``), as written by the training entrypoints::

    <save_dir>/<run_group>/<env_name>/<agent_name>/seed<k>/

Sweeps may nest them deeper; :func:`load_runs` walks the whole tree. The
task, group and seed of a run come from ``flags.json`` (any key, dotted keys
such as ``agent.critic_flow_steps`` reach into nested dicts), falling back to
the path names ``<env>/<agent>/seed<k>``.

Scores follow the usual offline-RL reporting protocol: the final score of a
run is the mean of its last ``last_n`` evaluations; per (task, group) we show
the mean over seeds with a 95% stratified-bootstrap CI, and per group the
interquartile mean (IQM) over all tasks x seeds with a 95% stratified-bootstrap
CI (both via ``rliable``).

This module never prints. Problems with individual runs (empty ``eval.csv``,
NaN scores, missing metric column) are reported with ``warnings.warn`` using
:class:`RunWarning` and the run is excluded; having no usable run at all raises
:class:`NoRunsError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from floq_jax import storage

DEFAULT_METRIC = 'evaluation/success'
GENERATED_FOOTNOTE = 'numbers on generated data are not comparable to published scores'
SINGLE_SEED_FOOTNOTE = 'single seed: the CI collapses to the point estimate'
RUN_FILES = ('flags.json', 'eval.csv')

GroupBy = Union[str, Sequence[str]]


class RunWarning(UserWarning):
    """A run directory was skipped or is otherwise suspicious."""


class NoRunsError(ValueError):
    """No usable run directory was found."""


@dataclasses.dataclass
class Run:
    path: str
    flags: Dict[str, Any]
    eval: pd.DataFrame
    train: Optional[pd.DataFrame] = None

    def get(self, key: str, default: Any = None) -> Any:
        """Looks up a flags.json key; dotted keys reach into nested dicts."""
        return get_flag(self.flags, key, default)

    @property
    def env_name(self) -> str:
        return str(self.get('env_name'))

    @property
    def agent_name(self) -> str:
        return str(self.get('agent_name'))

    @property
    def seed(self) -> Any:
        return self.get('seed')

    @property
    def data_source(self) -> str:
        return str(self.get('data_source', 'unknown'))

    @property
    def eval_protocol(self) -> str:
        """'published', 'deterministic', ... from flags.json (runs that recorded none evaluated deterministically)."""
        from floq_jax import presets
        return presets.eval_protocol_of(self.flags)

    @property
    def success_timing(self) -> str:
        """OGBench's 'post' / 'pre' from flags.json (runs that recorded none ran ogbench 1.2.2's 'pre')."""
        from floq_jax import presets
        return presets.success_timing_of(self.flags)

    @property
    def eval_seeding(self) -> str:
        """'per_evaluation' / 'fixed' from flags.json (runs that recorded none: 'fixed')."""
        from floq_jax import presets
        return presets.eval_seeding_of(self.flags)


# ----------------------------------------------------------------------------
# Loading.


def get_flag(flags: Dict[str, Any], key: str, default: Any = None) -> Any:
    if key in flags:
        return flags[key]
    node: Any = flags
    for part in key.split('.'):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return default
    return node


def find_run_dirs(root: str) -> List[str]:
    """All directories under ``root`` (itself included) with flags.json + eval.csv."""
    found = []
    for dirpath, dirnames, filenames in storage.walk(root):
        dirnames.sort()
        if all(f in filenames for f in RUN_FILES):
            found.append(dirpath)
            dirnames[:] = [d for d in dirnames if d not in ('checkpoints', 'tb', 'evaluations')]
    return found


def _path_defaults(path: str) -> Dict[str, Any]:
    """env/agent/seed guessed from ``.../<env>/<agent>/seed<k>``."""
    parts = (storage.absolute(path).split('/') if storage.is_remote(path)
             else os.path.normpath(os.path.abspath(path)).split(os.sep))
    out: Dict[str, Any] = {}
    m = re.fullmatch(r'seed[_-]?(\d+)', parts[-1]) if parts else None
    if m:
        out['seed'] = int(m.group(1))
        if len(parts) >= 2:
            out['agent_name'] = parts[-2]
        if len(parts) >= 3:
            out['env_name'] = parts[-3]
        if len(parts) >= 4:
            out['run_group'] = parts[-4]
    else:
        out['seed'] = parts[-1]
        if len(parts) >= 2:
            out['agent_name'] = parts[-2]
        if len(parts) >= 3:
            out['env_name'] = parts[-3]
    return out


def _read_csv(path: str) -> Optional[pd.DataFrame]:
    try:
        with storage.open_file(path, 'r') as f:
            return pd.read_csv(f)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError, UnicodeDecodeError):
        return None


def _usable(run: Run, metric: Optional[str]) -> Optional[str]:
    """None if ``run`` has usable ``metric`` values, else the reason why not."""
    if metric is None:
        return None
    if metric not in run.eval.columns:
        return f'eval.csv has no column {metric!r}'
    values = pd.to_numeric(run.eval[metric], errors='coerce')
    if len(values) == 0:
        return 'eval.csv has no rows'
    if values.isna().any():
        return f'eval.csv column {metric!r} has NaN or non-numeric values'
    return None


def load_runs(root: str, metric: Optional[str] = DEFAULT_METRIC) -> List[Run]:
    """Loads every run directory under ``root``.

    Runs with an unreadable/empty ``eval.csv``, or (if ``metric`` is not None)
    missing/NaN ``metric`` values, are excluded with a :class:`RunWarning`.
    Raises :class:`NoRunsError` if no usable run is found.
    """
    if not storage.isdir(root):
        raise NoRunsError(f'{root!r} is not a directory')
    runs = []
    dirs = find_run_dirs(root)
    for d in dirs:
        try:
            flags = json.loads(storage.read_text(storage.join(d, 'flags.json')))
            if not isinstance(flags, dict):
                raise ValueError('not a JSON object')
        except (OSError, ValueError) as e:
            warnings.warn(f'skipping run {d}: cannot read flags.json ({e})', RunWarning, stacklevel=2)
            continue
        for k, v in _path_defaults(d).items():
            if flags.get(k) is None:
                flags[k] = v
        ev = _read_csv(storage.join(d, 'eval.csv'))
        if ev is None or len(ev) == 0:
            warnings.warn(f'skipping run {d}: eval.csv is empty or unreadable', RunWarning, stacklevel=2)
            continue
        train = None
        if storage.exists(storage.join(d, 'train.csv')):
            train = _read_csv(storage.join(d, 'train.csv'))
        run = Run(path=d, flags=flags, eval=ev, train=train)
        reason = _usable(run, metric)
        if reason is not None:
            warnings.warn(f'skipping run {d}: {reason}', RunWarning, stacklevel=2)
            continue
        runs.append(run)
    if not runs:
        what = f'{len(dirs)} run dir(s) found, none usable' if dirs else 'none found'
        raise NoRunsError(
            f'{root!r} has no usable run directories ({what}); expected a directory '
            f'containing run dirs with flags.json and eval.csv')
    return runs


# ----------------------------------------------------------------------------
# Scores.


def _hashable(v: Any) -> Any:
    if v is None:
        return 'None'
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True)
    return v


def _group_label(run: Run, group_by: GroupBy) -> Any:
    if isinstance(group_by, str):
        return _hashable(run.get(group_by))
    return ','.join(str(_hashable(run.get(k))) for k in group_by)


def _group_col(group_by: GroupBy) -> str:
    return group_by if isinstance(group_by, str) else ','.join(group_by)


def _sort_key(v: Any) -> Tuple:
    if isinstance(v, (bool, np.bool_)):
        return (1, str(v), 0.0)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return (0, '', float(v))
    return (1, str(v), 0.0)


def _sorted_unique(values: Iterable[Any]) -> List[Any]:
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return sorted(out, key=_sort_key)


def final_score(run: Run, metric: str = DEFAULT_METRIC, last_n: int = 3) -> float:
    """Mean of the last ``last_n`` evaluations (by step) of ``metric``."""
    ev = run.eval
    if 'step' in ev.columns:
        ev = ev.sort_values('step', kind='stable')
    values = pd.to_numeric(ev[metric], errors='coerce').dropna().to_numpy(dtype=float)
    if len(values) == 0:
        return float('nan')
    return float(np.mean(values[-last_n:]))


def _filter(runs: Sequence[Run], metric: str) -> List[Run]:
    out = []
    for r in runs:
        reason = _usable(r, metric)
        if reason is None:
            out.append(r)
        else:
            warnings.warn(f'excluding run {r.path}: {reason}', RunWarning, stacklevel=3)
    return out


def run_scores(runs: Sequence[Run], metric: str = DEFAULT_METRIC, last_n: int = 3,
               group_by: GroupBy = 'agent_name', task_key: str = 'env_name') -> pd.DataFrame:
    """One row per usable run: task, group, seed, data, eval_protocol, score, final_step, path."""
    gcol = _group_col(group_by)
    rows = []
    for r in _filter(runs, metric):
        step = r.eval['step'].max() if 'step' in r.eval.columns else len(r.eval)
        rows.append({task_key: _hashable(r.get(task_key)), gcol: _group_label(r, group_by),
                     'seed': r.seed, 'data': r.data_source, 'eval_protocol': r.eval_protocol,
                     'success_timing': r.success_timing, 'eval_seeding': r.eval_seeding,
                     'score': final_score(r, metric, last_n), 'final_step': step,
                     'path': r.path})
    return pd.DataFrame(rows, columns=[task_key, gcol, 'seed', 'data', 'eval_protocol', 'success_timing',
                                       'eval_seeding', 'score', 'final_step', 'path'])


def eval_protocol_line(protocols: Iterable[str]) -> str:
    """The line every results table carries, e.g. 'evaluation: one-step policy, noise N(0, I), clipped to
    [-1, 1] (published)'; several protocols are named together and flagged as not comparable."""
    from floq_jax import presets
    names = _sorted_unique(str(p) for p in protocols)
    if not names:
        return 'evaluation: unknown'
    if len(names) == 1:
        return f'evaluation: {presets.describe_eval_protocol(names[0])}'
    return ('evaluation: MIXED, the rows are not comparable: '
            + '; '.join(f'{n}: {presets.describe_eval_protocol(n)}' for n in names))


def protocol_line(success_timings: Iterable[str], eval_seedings: Iterable[str] = ()) -> str:
    """The line beside :func:`eval_protocol_line` in every results table: OGBench's success timing (and the
    evaluation seeding); several values are named together and flagged as not comparable."""
    from floq_jax import presets
    timings = _sorted_unique(str(t) for t in success_timings)
    seedings = _sorted_unique(str(t) for t in eval_seedings)
    parts = [presets.describe_success_timing(t) for t in timings] or ['success timing unknown']
    parts += [presets.describe_eval_seeding(t) for t in seedings]
    mixed = len(timings) > 1 or len(seedings) > 1
    return ('protocol: MIXED, the rows are not comparable: ' if mixed else 'protocol: ') + '; '.join(parts)


def _data_label(values: Iterable[str]) -> str:
    return '+'.join(sorted(set(str(v) for v in values)))


def _bootstrap(score_dict: Dict[Any, Any], func: Callable, reps: int, seed: int):
    """rliable stratified bootstrap; seeds numpy's global RNG and restores it."""
    from absl import logging as absl_logging
    from rliable import library as rly  # Heavy import (arch, scipy): keep lazy.
    state = np.random.get_state()
    verbosity = absl_logging.get_verbosity()
    np.random.seed(seed)
    try:
        # rliable logs one INFO line per key; keep it quiet.
        absl_logging.set_verbosity(min(verbosity, absl_logging.WARNING))  # absl: lower = quieter
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)
            return rly.get_interval_estimates(score_dict, func, reps=reps)
    finally:
        absl_logging.set_verbosity(verbosity)
        np.random.set_state(state)


def mean_ci(values: Iterable[float], reps: int = 2000, seed: int = 0) -> Tuple[float, float, float]:
    """Mean of the finite ``values`` (one per seed) and its 95% bootstrap CI (rliable, via ``_bootstrap``, which
    leaves numpy's global RNG as it was); the point estimate when there is one value or no spread, NaNs when none."""
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if x.size < 2 or np.ptp(x) == 0:
        return m, m, m
    from rliable import metrics
    _, ci = _bootstrap({'x': x[:, None]}, lambda s: np.array([metrics.aggregate_mean(s)]), reps, seed)
    return m, float(ci['x'][0, 0]), float(ci['x'][1, 0])


def mean_ci_columns(name: str, values: Iterable[float]) -> Dict[str, float]:
    """``{name: mean, name_ci_low: low, name_ci_high: high}`` of ``values`` (one per seed, see ``mean_ci``): the
    column naming of every per-group table the sweeps write."""
    m, lo, hi = mean_ci(values)
    return {name: m, f'{name}_ci_low': lo, f'{name}_ci_high': hi}


def grouped_mean_ci(frame: pd.DataFrame, by: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """One row per group of ``frame`` (one row per seed) grouped by the columns ``by``, in sorted order: the group's
    ``by`` values, ``num_seeds`` (its number of rows) and ``mean_ci_columns`` of each of ``columns``."""
    rows = []
    for key, sel in frame.groupby(list(by), sort=True):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)), num_seeds=len(sel))
        for col in columns:
            row.update(mean_ci_columns(col, sel[col].to_numpy(float)))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, 'num_seeds', *[c + s for c in columns
                                                          for s in ('', '_ci_low', '_ci_high')]])


def results_table(runs: Sequence[Run], metric: str = DEFAULT_METRIC, last_n: int = 3,
                  group_by: GroupBy = 'agent_name', task_key: str = 'env_name',
                  reps: int = 5000, seed: int = 0) -> pd.DataFrame:
    """Per (task, group): mean final score over seeds and its 95% bootstrap CI.

    Columns: ``task_key``, group column (named after ``group_by``), data,
    num_seeds, mean, ci_low, ci_high, std. Values are in the metric's own units
    (success is a fraction in [0, 1]); ``to_markdown`` rescales for display.
    With one seed (or identical scores) the CI is the point estimate.
    """
    from rliable import metrics
    gcol = _group_col(group_by)
    scores = run_scores(runs, metric, last_n, group_by, task_key)
    cols = [task_key, gcol, 'data', 'num_seeds', 'mean', 'ci_low', 'ci_high', 'std']
    rows, to_boot = [], {}
    for task in _sorted_unique(scores[task_key]):
        for group in _sorted_unique(scores.loc[scores[task_key] == task, gcol]):
            sel = scores[(scores[task_key] == task) & (scores[gcol] == group)]
            x = sel['score'].to_numpy(dtype=float)
            m = float(np.mean(x))
            rows.append({task_key: task, gcol: group, 'data': _data_label(sel['data']),
                         'num_seeds': len(x), 'mean': m, 'ci_low': m, 'ci_high': m,
                         'std': float(np.std(x, ddof=1)) if len(x) > 1 else 0.0})
            if len(x) > 1 and np.ptp(x) > 0:
                to_boot[len(rows) - 1] = x[:, None]  # (num_runs, num_tasks=1)
    if to_boot:
        _, ci = _bootstrap(to_boot, lambda s: np.array([metrics.aggregate_mean(s)]), reps, seed)
        for i, (lo, hi) in ((i, ci[i][:, 0]) for i in to_boot):
            rows[i]['ci_low'], rows[i]['ci_high'] = float(lo), float(hi)
    table = pd.DataFrame(rows, columns=cols)
    table.attrs.update(metric=metric, last_n=last_n, task_key=task_key, group_col=gcol,
                       eval_protocols=_sorted_unique(scores['eval_protocol']),
                       success_timings=_sorted_unique(scores['success_timing']),
                       eval_seedings=_sorted_unique(scores['eval_seeding']))
    return table


def _aggregate(runs, metric, last_n, group_by, task_key, reps, seed, name, fn) -> pd.DataFrame:
    gcol = _group_col(group_by)
    scores = run_scores(runs, metric, last_n, group_by, task_key)
    rows, to_boot = [], {}
    for group in _sorted_unique(scores[gcol]):
        sel = scores[scores[gcol] == group]
        tasks = _sorted_unique(sel[task_key])
        per_task = [sel.loc[sel[task_key] == t, 'score'].to_numpy(dtype=float) for t in tasks]
        sizes = {len(p) for p in per_task}
        if len(sizes) == 1:  # Rectangular: the canonical rliable (num_runs x num_tasks) matrix.
            arr: Any = np.stack(per_task, axis=1)
            point = float(fn(arr))
        else:  # Ragged seeds per task: resample each task independently.
            arr = per_task
            point = float(fn(np.concatenate(per_task)[:, None])) if name == 'iqm' else float(
                np.mean([p.mean() for p in per_task]))
        rows.append({gcol: group, 'data': _data_label(sel['data']), 'num_tasks': len(tasks),
                     'num_runs': len(sel), name: point, 'ci_low': point, 'ci_high': point})
        allx = sel['score'].to_numpy(dtype=float)
        if max(sizes) > 1 and np.ptp(allx) > 0:
            to_boot[len(rows) - 1] = arr
    if to_boot:
        def func(*args):
            if len(args) == 1:
                return np.array([fn(args[0])])
            if name == 'iqm':
                return np.array([fn(np.concatenate(args)[:, None])])
            return np.array([np.mean([a.mean() for a in args])])
        _, ci = _bootstrap(to_boot, func, reps, seed)
        for i in to_boot:
            lo, hi = np.asarray(ci[i]).reshape(2, -1)[:, 0]
            rows[i]['ci_low'], rows[i]['ci_high'] = float(lo), float(hi)
    table = pd.DataFrame(rows, columns=[gcol, 'data', 'num_tasks', 'num_runs', name, 'ci_low', 'ci_high'])
    table.attrs.update(metric=metric, last_n=last_n, task_key=task_key, group_col=gcol, stat=name)
    return table


def aggregate_iqm(runs: Sequence[Run], metric: str = DEFAULT_METRIC, last_n: int = 3,
                  group_by: GroupBy = 'agent_name', task_key: str = 'env_name',
                  reps: int = 5000, seed: int = 0) -> pd.DataFrame:
    """Per group: IQM of final scores over all tasks x seeds, with a 95% CI.

    Uses ``rliable.metrics.aggregate_iqm`` (25% trimmed mean over all scores)
    and rliable's stratified bootstrap (seeds resampled within each task).
    Columns: group column, data, num_tasks, num_runs, iqm, ci_low, ci_high.
    """
    from rliable import metrics
    return _aggregate(runs, metric, last_n, group_by, task_key, reps, seed, 'iqm',
                      metrics.aggregate_iqm)


def aggregate_mean(runs: Sequence[Run], metric: str = DEFAULT_METRIC, last_n: int = 3,
                   group_by: GroupBy = 'agent_name', task_key: str = 'env_name',
                   reps: int = 5000, seed: int = 0) -> pd.DataFrame:
    """Per group: mean over tasks of per-task mean scores, with a 95% CI."""
    from rliable import metrics
    return _aggregate(runs, metric, last_n, group_by, task_key, reps, seed, 'mean',
                      metrics.aggregate_mean)


# ----------------------------------------------------------------------------
# Formatting.


def _scale_for(metric: Optional[str]) -> float:
    return 100.0 if metric and 'success' in metric else 1.0


def format_ci(mean: float, lo: float, hi: float, scale: float = 100.0, digits: int = 1) -> str:
    """'85.3 [80.1, 90.0]' (values multiplied by ``scale``)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return '-'
    f = f'{{:.{digits}f}}'
    return f'{f.format(mean * scale)} [{f.format(lo * scale)}, {f.format(hi * scale)}]'


def frame_to_markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a markdown table (floats to ``digits`` significant digits), newline-terminated."""
    rows = [[f'{v:.{digits}g}' if isinstance(v, (float, np.floating)) else str(v) for v in row]
            for row in df.itertuples(index=False)]
    return _md_table([str(c) for c in df.columns], rows) + '\n'


def _md_table(header: List[str], rows: List[List[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] * len(header)) + '|']
    lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
    return '\n'.join(lines)


def seeds_per_cell(table) -> str:
    """The seed count of a results table's cells (its ``num_seeds`` column): '8', or '4-8' when the cells differ."""
    seeds = sorted(set(int(n) for n in table['num_seeds']))
    return str(seeds[0]) + (f'-{seeds[-1]}' if len(seeds) > 1 else '')


def to_markdown(table: pd.DataFrame, iqm: Optional[pd.DataFrame] = None,
                title: Optional[str] = None, scale: Optional[float] = None,
                digits: int = 1) -> str:
    """Published-style table: one row per task, one column per group.

    Cells are 'mean [ci_low, ci_high]' (percent for success metrics); a
    ``data`` column says which data the row was trained on; a final row gives
    the IQM across tasks. Footnotes flag generated data and single seeds.
    """
    metric = table.attrs.get('metric', DEFAULT_METRIC)
    task_key = table.attrs.get('task_key', table.columns[0])
    gcol = table.attrs.get('group_col', table.columns[1])
    scale = _scale_for(metric) if scale is None else scale
    groups = _sorted_unique(table[gcol])
    if iqm is not None:
        groups = _sorted_unique(list(groups) + list(iqm[gcol]))
    unit = ' (%)' if scale == 100.0 else ''
    last_n = table.attrs.get('last_n')
    out = []
    if title:
        out += [f'# {title}', '']
    desc = f'`{metric}`{unit}'
    if last_n:
        desc += f', average of the last {last_n} evaluations'
    desc += '; mean over seeds [95% stratified bootstrap CI].'
    out += [desc, '']
    if 'eval_protocols' in table.attrs:
        out += [eval_protocol_line(table.attrs['eval_protocols']), '']
    if 'success_timings' in table.attrs:
        out += [protocol_line(table.attrs['success_timings'], table.attrs.get('eval_seedings', ())), '']
    single = False
    rows = []
    for task in _sorted_unique(table[task_key]):
        sel = table[table[task_key] == task]
        row = [str(task), _data_label('+'.join(sel['data']).split('+'))]
        for g in groups:
            cell = sel[sel[gcol] == g]
            if len(cell) == 0:
                row.append('-')
                continue
            c = cell.iloc[0]
            s = format_ci(c['mean'], c['ci_low'], c['ci_high'], scale, digits)
            if int(c['num_seeds']) == 1:
                s += ' †'
                single = True
            row.append(s)
        rows.append(row)
    if iqm is not None and len(iqm):
        stat = iqm.attrs.get('stat', 'iqm')
        row = [f'**{stat.upper()}** (all tasks)', _data_label('+'.join(iqm['data']).split('+'))]
        for g in groups:
            cell = iqm[iqm[gcol] == g]
            if len(cell) == 0:
                row.append('-')
                continue
            c = cell.iloc[0]
            row.append(format_ci(c[stat], c['ci_low'], c['ci_high'], scale, digits))
        rows.append(row)
    out.append(_md_table([str(task_key), 'data'] + [str(g) for g in groups], rows))
    notes = [f'Seeds per cell: {seeds_per_cell(table)}.']
    if single:
        notes.append(f'† {SINGLE_SEED_FOOTNOTE}.')
    notes += list(table.attrs.get('notes', ()))
    all_data = set('+'.join(table['data']).split('+'))
    if iqm is not None and len(iqm):
        all_data |= set('+'.join(iqm['data']).split('+'))
    if 'generated' in all_data:
        notes.append(f'Note: rows with data=generated were trained on generated data; '
                     f'{GENERATED_FOOTNOTE}.')
    out += [''] + notes
    return '\n'.join(out) + '\n'


def to_csv(table: pd.DataFrame, iqm: Optional[pd.DataFrame] = None) -> str:
    """Long-format CSV: per-task rows plus one aggregate row per group (task='IQM')."""
    task_key = table.attrs.get('task_key', table.columns[0])
    gcol = table.attrs.get('group_col', table.columns[1])
    df = table.copy()
    df['stat'] = 'mean'
    if iqm is not None and len(iqm):
        stat = iqm.attrs.get('stat', 'iqm')
        agg = pd.DataFrame({task_key: stat.upper(), gcol: iqm[gcol], 'data': iqm['data'],
                            'num_seeds': iqm['num_runs'], 'mean': iqm[stat],
                            'ci_low': iqm['ci_low'], 'ci_high': iqm['ci_high'], 'stat': stat})
        df = pd.concat([df, agg], ignore_index=True)
    if 'eval_protocols' in table.attrs:
        df['eval_protocol'] = '+'.join(str(p) for p in table.attrs['eval_protocols'])
    for key, column in (('success_timings', 'success_timing'), ('eval_seedings', 'eval_seeding')):
        if key in table.attrs:
            df[column] = '+'.join(str(p) for p in table.attrs[key])
    return df.to_csv(index=False)


# ----------------------------------------------------------------------------
# Plots (object-oriented matplotlib with the Agg canvas; no pyplot state).


def new_figure(nplots: int, ncols: int = 3, size: Tuple[float, float] = (4.5, 3.4)):
    """An Agg figure with ``nplots`` axes (flat array) on a grid ``ncols`` wide; no pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    ncols = max(1, min(ncols, nplots))
    nrows = max(1, math.ceil(nplots / ncols))
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[nplots:]:
        ax.set_visible(False)
    return fig, axes


def save_figure(fig, path: str) -> str:
    """Writes ``fig`` to ``path`` (tight layout, 110 dpi; local or gs://), creating its directory."""
    import io

    storage.makedirs(storage.dirname(storage.absolute(path)))
    fig.tight_layout()
    if storage.is_remote(path):
        buf = io.BytesIO()
        fig.savefig(buf, dpi=110, format=os.path.splitext(path)[1][1:] or 'png')
        storage.write_bytes(path, buf.getvalue())
    else:
        fig.savefig(path, dpi=110)
    return path


def _curve_band(mat: np.ndarray, band: str, reps: int, rng: np.random.RandomState):
    """mat: (num_seeds, num_steps) with NaNs. Returns mean, low, high per step."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        mean = np.nanmean(mat, axis=0)
        if band == 'minmax':
            return mean, np.nanmin(mat, axis=0), np.nanmax(mat, axis=0)
        if band == 'std':
            sd = np.nan_to_num(np.nanstd(mat, axis=0))
            return mean, mean - sd, mean + sd
        if band != 'ci':
            raise ValueError(f'band must be ci, minmax or std, got {band!r}')
        n = mat.shape[0]
        if n == 1:
            return mean, mean, mean
        idx = rng.randint(0, n, size=(reps, n))
        boot = np.nanmean(mat[idx], axis=1)  # (reps, num_steps)
        lo, hi = np.nanpercentile(boot, [2.5, 97.5], axis=0)
        return mean, lo, hi


def plot_learning_curves(runs: Sequence[Run], path: str, metric: str = DEFAULT_METRIC,
                         group_by: GroupBy = 'agent_name', task_key: str = 'env_name',
                         source: str = 'eval', band: str = 'ci', smooth: int = 1,
                         reps: int = 1000, seed: int = 0, ncols: int = 3,
                         scale: Optional[float] = None, title: Optional[str] = None) -> str:
    """``metric`` vs step, one subplot per task, one line per group.

    Lines are the mean over seeds; the shaded band is a 95% bootstrap CI over
    seeds (``band='ci'``), the min/max (``'minmax'``) or +-1 std (``'std'``).
    ``source='train'`` plots a train.csv metric instead; ``smooth`` > 1 applies
    a rolling mean over that many logged points per run. Returns ``path``.
    """
    if source not in ('eval', 'train'):
        raise ValueError(f"source must be 'eval' or 'train', got {source!r}")
    scale = _scale_for(metric) if scale is None else scale
    series = []  # (task, group, seed, pd.Series indexed by step)
    for r in runs:
        df = r.eval if source == 'eval' else r.train
        if df is None or metric not in df.columns or 'step' not in df.columns:
            continue
        s = pd.Series(pd.to_numeric(df[metric], errors='coerce').to_numpy(dtype=float),
                      index=df['step'].to_numpy()).dropna()
        s = s[~s.index.duplicated(keep='last')].sort_index()
        if len(s) == 0:
            continue
        if smooth > 1:
            s = s.rolling(smooth, min_periods=1).mean()
        series.append((r.get(task_key), _group_label(r, group_by), r.seed, s))
    if not series:
        raise NoRunsError(f'no run has a {source}.csv with columns step and {metric!r}')
    tasks = _sorted_unique(t for t, _, _, _ in series)
    groups = _sorted_unique(g for _, g, _, _ in series)
    import matplotlib
    cmap = matplotlib.colormaps['tab10']
    colors = {g: cmap(i % 10) for i, g in enumerate(groups)}
    fig, axes = new_figure(len(tasks), ncols)
    rng = np.random.RandomState(seed)
    for ax, task in zip(axes, tasks):
        for g in groups:
            ss = [s for t, gg, _, s in series if t == task and gg == g]
            if not ss:
                continue
            mat = pd.concat(ss, axis=1).sort_index()
            mean, lo, hi = _curve_band(mat.to_numpy(dtype=float).T, band, reps, rng)
            x = mat.index.to_numpy()
            label = f'{g} (n={len(ss)})'
            ax.plot(x, mean * scale, color=colors[g], label=label, lw=1.6)
            ax.fill_between(x, lo * scale, hi * scale, color=colors[g], alpha=0.2, lw=0)
        ax.set_title(str(task), fontsize=9)
        ax.set_xlabel('step')
        ax.set_ylabel(metric + (' (%)' if scale == 100.0 else ''), fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_train_metric(runs: Sequence[Run], path: str, metric: str = 'training/critic/loss',
                      **kwargs) -> str:
    """Any train.csv metric vs step (see :func:`plot_learning_curves`)."""
    kwargs.setdefault('band', 'minmax')
    kwargs.setdefault('scale', 1.0)
    return plot_learning_curves(runs, path, metric=metric, source='train', **kwargs)


def plot_grid(values, row_labels: Sequence[Any], col_labels: Sequence[Any], path: str,
              title: Optional[str] = None, fmt: str = '{:.1f}', xlabel: Optional[str] = None,
              ylabel: Optional[str] = None, cmap: str = 'viridis',
              vmin: Optional[float] = None, vmax: Optional[float] = None) -> str:
    """Heatmap of a 2D array with each value written in its cell (NaN -> blank).

    E.g. a train-K x eval-K' grid of success rates. Returns ``path``.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f'values has shape {v.shape}, expected '
                         f'({len(row_labels)}, {len(col_labels)}) from the labels')
    fig, axes = new_figure(1, 1, size=(1.0 + 0.9 * max(3, v.shape[1]), 1.0 + 0.7 * max(3, v.shape[0])))
    ax = axes[0]
    masked = np.ma.masked_invalid(v)
    im = ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=vmax, aspect='auto')
    fig.colorbar(im, ax=ax)
    ax.set_xticks(range(v.shape[1]), [str(c) for c in col_labels])
    ax.set_yticks(range(v.shape[0]), [str(r) for r in row_labels])
    finite = v[np.isfinite(v)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            if np.isfinite(v[i, j]):
                ax.text(j, i, fmt.format(v[i, j]), ha='center', va='center', fontsize=9,
                        color='black' if v[i, j] > mid else 'white')
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------
# Everything at once.


def split_run_groups(runs: Sequence[Run], group_by: GroupBy = 'agent_name',
                     task_key: str = 'env_name') -> Tuple[GroupBy, Optional[str]]:
    """(group_by, note) for the table: run groups that hold the same seed of the same task and group are never pooled
    (that would count one seed several times, e.g. 4 run groups x seed0/seed1 as 'Seeds per cell: 8'): ``run_group``
    is added to ``group_by`` so each run group gets its own column, and the note says so.  Run groups with distinct
    seeds are pooled, and the note names them.  No note when every cell holds one run group."""
    keys = (group_by,) if isinstance(group_by, str) else tuple(group_by)
    if 'run_group' in keys:
        return group_by, None
    seeds: Dict[Tuple, Dict[Any, set]] = {}
    for r in runs:
        cell = (_hashable(r.get(task_key)), _group_label(r, group_by))
        seeds.setdefault(cell, {}).setdefault(_hashable(r.seed), set()).add(str(r.get('run_group', '?')))
    in_cells = {cell: set().union(*by_seed.values()) for cell, by_seed in seeds.items()}
    pooled = sorted(set().union(*[g for g in in_cells.values() if len(g) > 1]))
    if not pooled:
        return group_by, None
    if any(len(g) > 1 for by_seed in seeds.values() for g in by_seed.values()):
        return keys + ('run_group',), (
            f'Run groups {", ".join(pooled)} hold the same seeds of the same task and {_group_col(group_by)}, so they '
            f'are kept apart (columns <{_group_col(group_by)}>,<run_group>), not pooled; report one run group with '
            f'--runs=<save_dir>/<run_group>.')
    return group_by, f'Cells pool the run groups {", ".join(pooled)} (each with distinct seeds).'


def write_report(root: str, out_dir: Optional[str] = None, metric: str = DEFAULT_METRIC,
                 last_n: int = 3, group_by: GroupBy = 'agent_name', task_key: str = 'env_name',
                 title: Optional[str] = None, reps: int = 5000, seed: int = 0,
                 band: str = 'ci', runs: Optional[Sequence[Run]] = None) -> Dict[str, str]:
    """Loads runs under ``root`` and writes results.md, results.csv and
    learning_curves.png into ``out_dir`` (default ``root``).

    Returns {'results.md': path, 'results.csv': path, 'learning_curves.png': path}.
    Raises :class:`NoRunsError` if ``root`` has no usable runs.
    """
    if runs is None:
        runs = load_runs(root, metric=metric)
    out_dir = root if out_dir is None else out_dir
    storage.makedirs(out_dir)
    group_by, run_group_note = split_run_groups(runs, group_by, task_key)
    table = results_table(runs, metric, last_n, group_by, task_key, reps, seed)
    if run_group_note:
        table.attrs['notes'] = [run_group_note]
    iqm = aggregate_iqm(runs, metric, last_n, group_by, task_key, reps, seed)
    if title is None:
        title = f'Results: {storage.basename(storage.absolute(root))}'
    paths = {name: storage.join(out_dir, name)
             for name in ('results.md', 'results.csv', 'learning_curves.png')}
    storage.write_text(paths['results.md'], to_markdown(table, iqm, title=title))
    storage.write_text(paths['results.csv'], to_csv(table, iqm))
    plot_learning_curves(runs, paths['learning_curves.png'], metric=metric, group_by=group_by,
                         task_key=task_key, band=band, seed=seed)
    return paths
