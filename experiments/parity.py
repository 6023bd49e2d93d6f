"""Learning parity: the published floq code and floq-jax trained side by side, same data, config and protocol.

    python -m experiments.parity --reference_dir=~/src/floq --reference_python=~/floq-venv/bin/python

For every task and agent (floq and FQL by default) this trains ``--num_seeds`` seeds with the published code
(its ``main.py``, unmodified, one process per seed, ``--jobs`` at a time) and with floq-jax
(``experiments.train_offline``, all seeds in one process), on the same OGBench-format files (generated with
OGBench's oracles and cached, or the user's real files with ``--dataset_dir``), with the same agent config
(``experiments.side_by_side.agent_overrides``: the demo's small networks, plus the published per-task alpha) and the
same protocol:
the published evaluation (one-step policy, noise N(0, I)), ``--eval_episodes`` episodes every
``--eval_interval`` updates.  Then it writes ``<out_dir>/report/``: ``parity_results.md`` (final success per
(task, agent, code) with 95% bootstrap CIs over seeds, and the wall-clock of both codes) and
``parity_curves.png`` (learning curves of both codes in one plot per task).

Finished runs are kept: re-running the command trains only what is missing, then rewrites the report;
``--report_only`` rewrites the report from what exists.  The published code's requirements (jax, flax, optax,
distrax, ml_collections, ogbench) must be importable by ``--reference_python``; it runs offline with a
stand-in ``wandb`` module (``experiments.parity_harness``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app, flags

from experiments import REPO, checks, errors, side_by_side

FLAGS = flags.FLAGS
flags.DEFINE_string('reference_dir', None, 'Checkout of https://github.com/CMU-AIRe/floq (the published code).')
flags.DEFINE_string('reference_python', sys.executable, 'Interpreter that runs the published code (needs distrax).')
flags.DEFINE_list('tasks', ['cube-single-play-singletask-task2-v0', 'scene-play-singletask-task1-v0'],
                  'OGBench single-task names.')
flags.DEFINE_list('agents', ['floq', 'fql'], 'Agents (floq, fql).')
flags.DEFINE_list('steps', ['70000'], 'Offline updates: one value, or one per task.')
flags.DEFINE_integer('num_seeds', 4, 'Seeds per (task, agent, code).')
flags.DEFINE_integer('eval_interval', 10000, 'Evaluation interval (updates).')
flags.DEFINE_integer('eval_episodes', 50, 'Episodes per evaluation.')
flags.DEFINE_integer('dataset_episodes', 100, 'Episodes of the generated datasets.')
flags.DEFINE_string('dataset_dir', None, 'Directory of real OGBench files to use instead of generated ones.')
flags.DEFINE_string('out_dir', 'runs/parity', 'Where runs, logs, timings and the report go.')
flags.DEFINE_integer('jobs', 2, 'Published-code processes run at once (one per core).')
flags.DEFINE_enum('only', 'all', ['all', 'reference', 'floq_jax'], 'Train only one of the codes.')
flags.DEFINE_bool('report_only', False, 'Only write the report from the runs that exist.')
flags.DEFINE_float('success_margin', 5.0, 'Equivalence margin for success, in points (docs/parity.md: written '
                   'before the runs).')
flags.DEFINE_float('q_margin', 1.0, 'Equivalence margin for the critic estimate, in Q units.')

Q_METRIC = 'training/critic/q'  # both codes log it: floq's distilled critic, FQL's critic mean



def steps_by_task() -> dict:
    values = checks.parse_int_list('steps', ','.join(FLAGS.steps))
    if len(values) not in (1, len(FLAGS.tasks)):
        raise errors.UsageError(f'--steps: give one value or one per task ({len(FLAGS.tasks)}), got {len(values)}')
    return {t: values[0] if len(values) == 1 else values[i] for i, t in enumerate(FLAGS.tasks)}


# ----------------------------------------------------------------------------- run bookkeeping
def _final_step(eval_csv) -> int:
    import pandas as pd

    if not eval_csv or not os.path.isfile(eval_csv):
        return -1
    try:
        ev = pd.read_csv(eval_csv)
    except Exception:  # noqa: BLE001 - an empty or half-written file counts as not finished
        return -1
    return int(ev['step'].max()) if len(ev) and 'step' in ev.columns else -1


def reference_dir_for(task, agent, seed):
    return os.path.join(os.path.abspath(FLAGS.out_dir), 'reference', task, agent, f'seed{seed}')


def floq_jax_dir_for(task, agent, seed):
    return os.path.join(os.path.abspath(FLAGS.out_dir), 'floq_jax', 'parity', task, agent, f'seed{seed}')


def record_timing(key: str, seconds: float, **extra) -> None:
    path = os.path.join(FLAGS.out_dir, 'timings.json')
    timings = json.load(open(path)) if os.path.isfile(path) else {}
    timings[key] = {'seconds': round(seconds, 1), 'load_avg_15min_at_end': round(os.getloadavg()[2], 2), **extra}
    with open(path + '.tmp', 'w') as f:
        json.dump(timings, f, indent=1, sort_keys=True)
    os.replace(path + '.tmp', path)


def run_logged(cmd, log_path, **kwargs):
    with open(log_path, 'a') as log:
        log.write(f'$ {" ".join(cmd)}\n')
        log.flush()
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kwargs)


# ----------------------------------------------------------------------------- training
def dataset_file(task: str) -> str:
    from floq_jax.data import ensure_generated_dataset, parse_name

    name = parse_name(task).dataset_name
    if FLAGS.dataset_dir:
        path = os.path.join(os.path.expanduser(FLAGS.dataset_dir), f'{name}.npz')
        if not os.path.isfile(path):
            raise errors.UsageError(f'--dataset_dir: {path} does not exist')
        return path
    return ensure_generated_dataset(name, FLAGS.dataset_episodes, seed=0, progress=True)


def train_reference(ref, datasets, steps):
    from experiments import parity_harness

    env = parity_harness.environment(os.path.join(os.path.abspath(FLAGS.out_dir), 'reference_env'), datasets.values())
    pending = []
    for task in FLAGS.tasks:
        for agent in FLAGS.agents:
            for seed in range(FLAGS.num_seeds):
                save = reference_dir_for(task, agent, seed)
                if _final_step(parity_harness.find_eval_csv(save)) >= steps[task]:
                    continue
                if os.path.isdir(save):  # an unfinished run: the published code cannot resume, start over
                    import shutil
                    shutil.rmtree(save)
                os.makedirs(save)
                overrides = side_by_side.agent_overrides(agent, task, 'published')
                cmd = parity_harness.main_command(ref['python'], task, agent, overrides, seed,
                                             steps[task], FLAGS.eval_interval, FLAGS.eval_episodes, save)
                pending.append((f'published/{task}/{agent}/seed{seed}', cmd, save))
    running = []
    while pending or running:
        while pending and len(running) < FLAGS.jobs:
            key, cmd, save = pending.pop(0)
            print(f'[parity] start {key}', flush=True)
            proc = run_logged(cmd, os.path.join(save, 'stdout.log'), cwd=ref['dir'], env=env)
            running.append((key, proc, time.time()))
        time.sleep(2)
        for item in list(running):
            key, proc, start = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode != 0:
                raise RuntimeError(f'{key} failed (exit {proc.returncode}); see its stdout.log')
            record_timing(key, time.time() - start, processes=1, seeds=1, concurrent=FLAGS.jobs)
            print(f'[parity] done {key} ({time.time() - start:.0f} s)', flush=True)


def train_floq_jax(datasets, steps):
    for task in FLAGS.tasks:
        for agent in FLAGS.agents:
            if all(_final_step(os.path.join(floq_jax_dir_for(task, agent, s), 'eval.csv')) >= steps[task]
                   for s in range(FLAGS.num_seeds)):
                continue
            cmd = side_by_side.floq_jax_command(task, datasets[task], agent, FLAGS.num_seeds, steps[task],
                                                FLAGS.eval_interval, FLAGS.eval_episodes,
                                                os.path.join(FLAGS.out_dir, 'floq_jax'), 'parity')
            key = f'floq-jax/{task}/{agent}'
            log_dir = os.path.join(FLAGS.out_dir, 'logs')
            os.makedirs(log_dir, exist_ok=True)
            print(f'[parity] start {key} ({FLAGS.num_seeds} seeds in one process)', flush=True)
            start = time.time()
            proc = run_logged(cmd, os.path.join(log_dir, key.replace('/', '_') + '.log'), cwd=REPO)
            if proc.wait() != 0:
                raise RuntimeError(f'{key} failed (exit {proc.returncode}); see {log_dir}')
            record_timing(key, time.time() - start, processes=1, seeds=FLAGS.num_seeds)
            print(f'[parity] done {key} ({time.time() - start:.0f} s)', flush=True)



# ----------------------------------------------------------------------------- report
def load_all_runs(steps):
    import pandas as pd

    from experiments import parity_harness
    from floq_jax.analysis import report

    runs = []
    for task in FLAGS.tasks:
        for agent in FLAGS.agents:
            for seed in range(FLAGS.num_seeds):
                meta = dict(env_name=task, agent_name=agent, seed=seed, data_source='generated')
                run = parity_harness.load_run(reference_dir_for(task, agent, seed), code='published',
                                         eval_protocol='published', **meta)
                if run is not None:
                    runs.append(run)
                path = floq_jax_dir_for(task, agent, seed)
                if _final_step(os.path.join(path, 'eval.csv')) >= 0:
                    recorded = json.load(open(os.path.join(path, 'flags.json')))
                    train_csv = os.path.join(path, 'train.csv')
                    runs.append(report.Run(path=path, flags={**recorded, **meta, 'code': 'floq-jax'},
                                           eval=pd.read_csv(os.path.join(path, 'eval.csv')),
                                           train=pd.read_csv(train_csv) if os.path.isfile(train_csv) else None))
    # Both codes' evaluations on the common grid (the published code also evaluates after update 1).
    for r in runs:
        r.eval = r.eval[(r.eval['step'] % FLAGS.eval_interval == 0) & (r.eval['step'] <= steps[r.env_name])]
    return runs


def _ci_rows(runs, metric, header, scale, digits):
    """(results table, markdown lines): per (task, agent, code) the mean over seeds with its 95% bootstrap CI."""
    from floq_jax.analysis import report

    table = report.results_table(runs, metric=metric, group_by=('agent_name', 'code'), reps=5000)
    lines = [f'| task | agent | code | seeds | {header} |', '|---|---|---|---|---|']
    for _, row in table.iterrows():
        agent, code = str(row['agent_name,code']).split(',')
        lines.append(f'| {row["env_name"]} | {agent} | {code} | {row["num_seeds"]} | '
                     f'{report.format_ci(row["mean"], row["ci_low"], row["ci_high"], scale=scale, digits=digits)} |')
    return table, lines


def write_report(steps, ref_commit: str) -> str:
    from experiments import parity_harness
    from floq_jax.analysis import report

    runs = load_all_runs(steps)
    if not runs:
        raise errors.UsageError(f'--out_dir={FLAGS.out_dir}: no finished evaluations to report yet')
    out = os.path.join(FLAGS.out_dir, 'report')
    os.makedirs(out, exist_ok=True)
    curves = report.plot_learning_curves(runs, os.path.join(out, 'parity_curves.png'), group_by=('agent_name', 'code'),
                                         ncols=len(FLAGS.tasks), title='published floq code vs floq-jax (success)')
    timings = json.load(open(os.path.join(FLAGS.out_dir, 'timings.json'))) if os.path.isfile(
        os.path.join(FLAGS.out_dir, 'timings.json')) else {}
    from floq_jax import presets

    ours = [r for r in runs if r.get('code') == 'floq-jax']
    protocols = sorted({f"{r.get('eval_protocol', '?')}, success timing {presets.success_timing_of(r.flags)}, "
                        f"{presets.eval_seeding_of(r.flags)} evaluation seeds" for r in ours})
    table, success_rows = _ci_rows(runs, report.DEFAULT_METRIC, 'success % [95% CI]', scale=100.0, digits=1)
    lines = ['# Learning parity: published floq code vs floq-jax', '',
             f'Reference: CMU-AIRe/floq at {ref_commit or "(unknown commit)"}, unmodified (offline wandb stand-in). '
             f'Data: generated ({FLAGS.dataset_episodes} episodes, OGBench oracles) unless --dataset_dir. '
             f'Evaluation: {FLAGS.eval_episodes} episodes every {FLAGS.eval_interval} updates; floq-jax evaluation '
             f'setting(s) recorded in flags.json: {", ".join(protocols) or "-"}. Score: mean of the last 3 '
             'evaluations per seed; mean over seeds with a 95% stratified-bootstrap CI (rliable, 5000 resamples).', '',
             *success_rows]
    q_runs = [report.Run(path=r.path, flags=r.flags, eval=r.train) for r in runs
              if r.train is not None and Q_METRIC in r.train.columns]
    if q_runs:
        lines += ['', f'## Critic estimate on training batches (`{Q_METRIC}`, needs no successful episode)', '',
                  'Mean over seeds of each seed\'s last 3 logged values (every 5000 updates), 95% bootstrap CI. '
                  'floq: the distilled critic; FQL: the critic ensemble\'s mean.', '',
                  *_ci_rows(q_runs, Q_METRIC, 'Q [95% CI]', scale=1.0, digits=2)[1]]
    frame = parity_harness.per_seed_scores(runs, Q_METRIC)
    frame.to_csv(os.path.join(out, parity_harness.PER_SEED_FILE), index=False)
    for title, column, margin, scale in (('success, points', 'success', FLAGS.success_margin, 100.0),
                                         ('critic estimate, Q units', 'q', FLAGS.q_margin, 1.0)):
        rows = parity_harness.tests_over_seeds(frame, column, margin, scale)
        if rows:
            lines += ['', f'## Tests over seeds ({title}): floq-jax minus published', '',
                      'Equivalent: the 90% CI of the difference lies inside the margin (two one-sided Welch tests '
                      'at 5%); different: Welch p < 0.05; otherwise undecided. Per-seed scores: '
                      f'`{parity_harness.PER_SEED_FILE}`.', '', *rows]
    lines += ['', '## Wall-clock', '', 'Each job as it ran (the machine\'s 15-minute load average at its end shows what '
              'else ran; 2 means both cores busy).', '', '| job | seconds | note | load |', '|---|---|---|---|']
    for key, t in sorted(timings.items()):
        note = (f'{t["seeds"]} seeds in one process' if key.startswith('floq-jax') else
                f'one seed per process, {t.get("concurrent", 1)} processes at a time')
        lines.append(f'| {key} | {t["seconds"]:.0f} | {note} | {t.get("load_avg_15min_at_end", "-")} |')
    lines += ['', f'Curves: `{os.path.basename(curves)}`.', '']
    path = os.path.join(out, 'parity_results.md')
    with open(path, 'w') as f:
        f.write('\n'.join(lines))
    table.to_csv(os.path.join(out, 'parity_results.csv'), index=False)
    return path


def main(_):
    errors.quiet_logs()

    def body():
        from experiments import parity_harness

        steps = steps_by_task()
        for agent in FLAGS.agents:
            if agent not in side_by_side.PUBLISHED_CONFIGS:
                raise errors.UsageError(f'--agents: {agent!r} is not one of '
                                        f'{", ".join(side_by_side.PUBLISHED_CONFIGS)}')
        for task in FLAGS.tasks:
            checks.check_env_name(task)
            side_by_side.alpha_for(task)
        checks.check_positive(num_seeds=FLAGS.num_seeds, eval_interval=FLAGS.eval_interval,
                              eval_episodes=FLAGS.eval_episodes, jobs=FLAGS.jobs)
        ref = {'commit': ''}
        if not FLAGS.report_only and FLAGS.only != 'floq_jax' or FLAGS.reference_dir:
            if not FLAGS.reference_dir:
                raise errors.UsageError('--reference_dir: required (a checkout of https://github.com/CMU-AIRe/floq)')
            try:
                ref = parity_harness.check_reference(FLAGS.reference_dir, FLAGS.reference_python)
            except parity_harness.ReferenceUnusable as e:
                raise errors.UsageError(str(e)) from None
        os.makedirs(FLAGS.out_dir, exist_ok=True)
        if not FLAGS.report_only:
            datasets = {t: dataset_file(t) for t in FLAGS.tasks}
            if FLAGS.only in ('all', 'reference'):
                train_reference(ref, datasets, steps)
            if FLAGS.only in ('all', 'floq_jax'):
                train_floq_jax(datasets, steps)
        path = write_report(steps, ref['commit'])
        print(open(path).read())
        print(f'report: {path}')

    errors.run_cli(body)


if __name__ == '__main__':
    app.run(main)
