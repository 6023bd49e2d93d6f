"""A sweep's report: results.md / results.csv / learning_curves.png and the per-seed files under its root, the
held-out critic measures and their data-only baselines, and the plots the sweeps share (built on
floq_jax.analysis)."""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from floq_jax.sweeps.run import COMMANDS_FILE, _read_json, recorded_run_times
from floq_jax.sweeps.spec import Sweep, merged_options, preset, variant_order
from floq_jax.training.devices import device_description


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


def load_sweep_runs(sweep: Sweep):
    """The finished runs of this sweep's variants and envs under its root.  A root may also hold runs of variants
    this invocation did not ask for (e.g. ``mechanisms --parts=d`` after ``--parts=a``): its report leaves them out."""
    from floq_jax.analysis import report

    names, envs = {v.name for v in sweep.variants}, set(sweep.envs)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', report.RunWarning)
        return [r for r in report.load_runs(sweep.root) if str(r.get('variant')) in names and r.env_name in envs]


def run_length_note(sweep: Sweep, table=None) -> str:
    """The run length, seeds, evaluation episodes and device of the report.  The seeds are those of the results
    ``table`` reported (several invocations, e.g. ``--seed=4 --num_seeds=4`` after the first 4 seeds, may have written
    into one sweep directory; floq_jax.analysis.report.seeds_per_cell); without it, this invocation's ``num_seeds``."""
    from floq_jax.analysis import report

    o = merged_options(sweep)
    steps = f'{o.get("offline_steps")} offline updates'
    if sweep.mode == 'offline_to_online':
        steps += f' + {o.get("online_steps")} online env steps'
    seeds = str(o.get('num_seeds')) if table is None or not len(table) else report.seeds_per_cell(table)
    note = (f'preset `{sweep.preset}`: {steps}, {seeds} seeds, {o.get("eval_episodes")} evaluation '
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
    md += '\n' + run_length_note(sweep, table) + '\n'
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
    evaluation, ``success``, the mean of its last ``last_n`` evaluations (the value results.csv averages), and
    ``last_eval_success``, the last evaluation alone (e.g. the only one after a late freeze), so that tests over seeds
    (floq_jax.analysis.seed_tests) can be run on the committed files."""
    import pandas as pd

    from floq_jax.analysis import report

    last_n = preset(sweep.preset)['last_n']
    order = variant_order(sweep)
    rows = [dict(env_name=r.env_name, variant=str(r.get('variant')), agent=str(r.get('sweep_agent', r.agent_name)),
                 seed=r.seed, last_eval_step=int(r.eval['step'].iloc[-1]) if len(r.eval) else -1,
                 success=report.final_score(r, metric, last_n),
                 last_eval_success=report.final_score(r, metric, 1)) for r in runs]
    df = pd.DataFrame(rows, columns=['env_name', 'variant', 'agent', 'seed', 'last_eval_step', 'success',
                                     'last_eval_success'])
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
