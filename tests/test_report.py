"""Tests for floq_jax.analysis.report and experiments/report.py on fake run directories."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from floq_jax.analysis import report
from tests.conftest import REPO

STEPS = [100, 200, 300, 400, 500]
REPS = 200


def make_run(root, env, agent, seed, success, data_source='ogbench', extra_flags=None,
             subdir=None, train=True, flags_override=None):
  d = os.path.join(root, *(subdir or []), env, agent, f'seed{seed}')
  os.makedirs(d, exist_ok=True)
  flags = {'env_name': env, 'agent_name': agent, 'seed': seed, 'data_source': data_source,
           'agent': {'critic_flow_steps': 4, 'lr': 3e-4}}
  flags.update(extra_flags or {})
  if flags_override is not None:
    flags = flags_override
  with open(os.path.join(d, 'flags.json'), 'w') as f:
    json.dump(flags, f)
  steps = STEPS[:len(success)]
  pd.DataFrame({'step': steps, 'evaluation/success': success,
                'evaluation/return': np.asarray(success, dtype=float) * 10,
                'evaluation/length': [200] * len(steps)}).to_csv(
                    os.path.join(d, 'eval.csv'), index=False)
  if train:
    pd.DataFrame({'step': np.arange(1, 11) * 50, 'training/critic/loss': np.linspace(1, 0.1, 10),
                  'training/actor/q': np.linspace(0, 5, 10)}).to_csv(
                      os.path.join(d, 'train.csv'), index=False)
  return d


# Final (last-3 average) success per (task, agent, seed), chosen by hand.
FINALS = {
    ('task1', 'floq'): [0.8, 0.6, 0.7],
    ('task1', 'fql'): [0.4, 0.5, 0.3],
    ('task2', 'floq'): [0.9, 1.0, 0.8],
    ('task2', 'fql'): [0.2, 0.0, 0.1],
}


def curve(final):
  # Early evals are junk (0 and 1) and must be ignored; the last three average to `final`.
  d = min(0.1, final, 1.0 - final)
  return [0.0, 1.0, final - d, final, final + d]


@pytest.fixture
def grid_root(tmp_path):
  root = str(tmp_path / 'runs')
  for (env, agent), finals in FINALS.items():
    for seed, final in enumerate(finals):
      make_run(root, env, agent, seed, curve(final))
  return root


def test_final_score_is_mean_of_last_n(tmp_path):
  make_run(str(tmp_path), 'e', 'a', 0, [0.0, 0.2, 0.4, 0.6, 0.8])
  (run,) = report.load_runs(str(tmp_path))
  assert report.final_score(run, last_n=3) == pytest.approx(0.6)
  assert report.final_score(run, last_n=1) == pytest.approx(0.8)
  assert report.final_score(run, last_n=10) == pytest.approx(0.4)
  # Shuffled rows: ordering is by step, not by file order.
  run.eval = run.eval.sample(frac=1.0, random_state=1)
  assert report.final_score(run, last_n=3) == pytest.approx(0.6)


def test_load_runs_reads_flags_and_files(grid_root):
  runs = report.load_runs(grid_root)
  assert len(runs) == 12
  r = [r for r in runs if r.env_name == 'task2' and r.agent_name == 'fql' and r.seed == 1][0]
  assert r.data_source == 'ogbench'
  assert r.get('agent.critic_flow_steps') == 4
  assert r.train is not None and 'training/critic/loss' in r.train.columns
  scores = report.run_scores(runs)
  for (env, agent), finals in FINALS.items():
    sel = scores[(scores.env_name == env) & (scores.agent_name == agent)].sort_values('seed')
    np.testing.assert_allclose(sel['score'], finals, atol=1e-12)


def test_results_table_mean_and_ci(grid_root):
  runs = report.load_runs(grid_root)
  table = report.results_table(runs, last_n=3, reps=REPS)
  assert len(table) == 4
  assert {'env_name', 'agent_name', 'mean', 'ci_low', 'ci_high', 'num_seeds', 'data'} <= set(
      table.columns)
  for (env, agent), finals in FINALS.items():
    row = table[(table.env_name == env) & (table.agent_name == agent)].iloc[0]
    assert row['mean'] == pytest.approx(np.mean(finals))
    assert row['num_seeds'] == 3
    assert row['data'] == 'ogbench'
    assert 0.0 <= row['ci_low'] <= row['mean'] <= row['ci_high'] <= 1.0
    assert row['ci_low'] < row['ci_high']  # seeds differ, so the CI is not degenerate
    # A percentile bootstrap CI of the mean lies within the range of the seeds.
    assert min(finals) - 1e-9 <= row['ci_low'] and row['ci_high'] <= max(finals) + 1e-9


def test_iqm_matches_hand_computation(tmp_path):
  root = str(tmp_path)
  values = {'t1': [0.1, 0.9, 0.3, 0.5], 't2': [0.2, 0.8, 0.0, 1.0]}
  for env, vals in values.items():
    for seed, v in enumerate(vals):
      make_run(root, env, 'floq', seed, [v, v, v])
  runs = report.load_runs(root)
  iqm = report.aggregate_iqm(runs, reps=REPS)
  # Sorted: 0 .1 .2 .3 .5 .8 .9 1 -> drop 2 from each end -> mean(.2, .3, .5, .8) = .45
  row = iqm.iloc[0]
  assert row['agent_name'] == 'floq'
  assert row['iqm'] == pytest.approx(0.45)
  assert row['num_tasks'] == 2 and row['num_runs'] == 8
  assert 0.0 <= row['ci_low'] <= 0.45 <= row['ci_high'] <= 1.0
  mean = report.aggregate_mean(runs, reps=REPS).iloc[0]
  assert mean['mean'] == pytest.approx(np.mean(values['t1'] + values['t2']))


def test_iqm_with_ragged_seeds(tmp_path):
  root = str(tmp_path)
  for seed, v in enumerate([0.1, 0.5, 0.9]):
    make_run(root, 't1', 'a', seed, [v] * 3)
  for seed, v in enumerate([0.2, 0.6]):
    make_run(root, 't2', 'a', seed, [v] * 3)
  row = report.aggregate_iqm(report.load_runs(root), reps=REPS).iloc[0]
  # 5 values, trim 25% -> scipy cuts int(0.25 * 5) = 1 from each end: mean(.2, .5, .6).
  assert row['iqm'] == pytest.approx(np.mean([0.2, 0.5, 0.6]))
  assert row['ci_low'] <= row['iqm'] <= row['ci_high']


def test_generated_footnote_iff_generated(grid_root, tmp_path):
  runs = report.load_runs(grid_root)
  md = report.to_markdown(report.results_table(runs, reps=REPS),
                          report.aggregate_iqm(runs, reps=REPS), title='t')
  assert report.GENERATED_FOOTNOTE not in md
  assert '| ogbench |' in md

  root = str(tmp_path / 'gen')
  make_run(root, 'task1', 'floq', 0, [0.5, 0.5, 0.5], data_source='generated')
  make_run(root, 'task1', 'floq', 1, [0.7, 0.7, 0.7], data_source='generated')
  make_run(root, 'task2', 'floq', 0, [0.5, 0.5, 0.5], data_source='ogbench')
  runs = report.load_runs(root)
  table = report.results_table(runs, reps=REPS)
  assert list(table['data']) == ['generated', 'ogbench']
  md = report.to_markdown(table, report.aggregate_iqm(runs, reps=REPS))
  assert report.GENERATED_FOOTNOTE in md
  assert '| generated |' in md
  assert '60.0 [' in md  # percent formatting: mean of .5 and .7


def test_single_seed_ci_collapses(tmp_path):
  make_run(str(tmp_path), 'task1', 'floq', 0, [0.2, 0.853, 0.853, 0.853])
  runs = report.load_runs(str(tmp_path))
  table = report.results_table(runs, reps=REPS)
  row = table.iloc[0]
  assert row['ci_low'] == row['mean'] == row['ci_high'] == pytest.approx(0.853)
  iqm = report.aggregate_iqm(runs, reps=REPS).iloc[0]
  assert iqm['ci_low'] == iqm['iqm'] == iqm['ci_high']
  md = report.to_markdown(table, report.aggregate_iqm(runs, reps=REPS))
  assert '85.3 [85.3, 85.3]' in md
  assert report.SINGLE_SEED_FOOTNOTE in md


def test_bad_runs_warn_and_are_excluded(grid_root):
  d = make_run(grid_root, 'task1', 'floq', 7, [0.5])
  open(os.path.join(d, 'eval.csv'), 'w').close()  # empty file
  make_run(grid_root, 'task1', 'floq', 8, [0.5, float('nan'), 0.5])
  d = make_run(grid_root, 'task1', 'floq', 9, [0.5])
  pd.DataFrame(columns=['step', 'evaluation/success']).to_csv(os.path.join(d, 'eval.csv'))
  with pytest.warns(report.RunWarning) as rec:
    runs = report.load_runs(grid_root)
  assert len(rec) == 3
  assert len(runs) == 12
  table = report.results_table(runs, reps=REPS)
  assert table.num_seeds.tolist() == [3, 3, 3, 3]


def test_no_runs_raises(tmp_path):
  with pytest.raises(report.NoRunsError, match='flags.json and eval.csv'):
    report.load_runs(str(tmp_path))


def test_nested_sweep_group_by_and_path_fallback(tmp_path):
  root = str(tmp_path)
  for variant, k, val in [('k2', 2, 0.3), ('k8', 8, 0.9)]:
    for seed in range(2):
      make_run(root, 'task1', 'floq', seed, [val] * 3, subdir=['sweep', variant],
               extra_flags={'variant': variant, 'agent': {'critic_flow_steps': k}})
  # No env/agent/seed in flags.json: taken from the path.
  make_run(root, 'task9', 'fql', 3, [0.4] * 3, subdir=['other'],
           flags_override={'data_source': 'ogbench'})
  runs = report.load_runs(root)
  assert len(runs) == 5
  fb = [r for r in runs if r.get('agent_name') == 'fql'][0]
  assert (fb.env_name, fb.seed) == ('task9', 3)
  t = report.results_table([r for r in runs if r.get('variant')], group_by='agent.critic_flow_steps',
                           reps=REPS)
  assert t['agent.critic_flow_steps'].tolist() == [2, 8]
  np.testing.assert_allclose(t['mean'], [0.3, 0.9])
  t = report.results_table(runs, group_by='variant', reps=REPS)
  assert t['variant'].tolist() == ['k2', 'k8', 'None']  # sorted by task, then group
  np.testing.assert_allclose(t['mean'], [0.3, 0.9, 0.4])


def _is_png(path):
  with open(path, 'rb') as f:
    head = f.read(8)
  return head == b'\x89PNG\r\n\x1a\n' and os.path.getsize(path) > 1000


def test_plots_written(grid_root, tmp_path):
  runs = report.load_runs(grid_root)
  p = report.plot_learning_curves(runs, str(tmp_path / 'lc.png'))
  assert _is_png(p)
  p = report.plot_learning_curves(runs, str(tmp_path / 'lc_minmax.png'), band='minmax')
  assert _is_png(p)
  p = report.plot_train_metric(runs, str(tmp_path / 'loss.png'), metric='training/critic/loss')
  assert _is_png(p)
  p = report.plot_grid(np.array([[0.1, 0.5], [0.7, np.nan]]) * 100, ['K=1', 'K=8'], [1, 8],
                       str(tmp_path / 'sub' / 'grid.png'), title='train K x eval K',
                       xlabel='eval K', ylabel='train K')
  assert _is_png(p)
  with pytest.raises(ValueError):
    report.plot_grid(np.zeros((2, 3)), ['a', 'b'], ['c'], str(tmp_path / 'bad.png'))


def test_write_report(grid_root, tmp_path):
  out = str(tmp_path / 'out')
  paths = report.write_report(grid_root, out_dir=out, reps=REPS)
  assert set(paths) == {'results.md', 'results.csv', 'learning_curves.png'}
  assert all(os.path.dirname(p) == out for p in paths.values())
  assert _is_png(paths['learning_curves.png'])
  md = open(paths['results.md']).read()
  assert 'IQM' in md and 'floq' in md and 'task2' in md
  assert '70.0 [' in md  # task1/floq mean 0.7 -> 70.0
  csv = pd.read_csv(paths['results.csv'])
  row = csv[(csv.env_name == 'task2') & (csv.agent_name == 'floq')].iloc[0]
  assert row['mean'] == pytest.approx(0.9)
  assert set(csv.stat) == {'mean', 'iqm'}


def _entrypoint(*args):
  return subprocess.run([sys.executable, '-m', 'experiments.report', *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120)


@pytest.mark.subprocess
def test_entrypoint_empty_dir_fails_with_one_line(tmp_path):
  proc = _entrypoint(f'--runs={tmp_path}')
  assert proc.returncode != 0
  assert 'Traceback' not in proc.stderr
  msgs = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(msgs) == 1
  assert '--runs' in msgs[0] and 'flags.json' in msgs[0] and 'eval.csv' in msgs[0]


@pytest.mark.subprocess
def test_entrypoint_writes_report(grid_root, tmp_path):
  out = tmp_path / 'out'
  proc = _entrypoint(f'--runs={grid_root}', f'--out={out}', '--reps=100', '--format=csv')
  assert proc.returncode == 0, proc.stderr
  assert 'env_name,agent_name' in proc.stdout
  for name in ('results.md', 'results.csv', 'learning_curves.png'):
    assert (out / name).stat().st_size > 0


def test_run_groups_with_the_same_seeds_are_kept_apart(tmp_path):
  """Issue 14.10: four run groups x seed0/seed1 used to be pooled silently into 'Seeds per cell: 8'."""
  root = str(tmp_path)
  for g, v in zip(('g1', 'g2', 'g3', 'g4'), (0.1, 0.2, 0.3, 0.4)):
    for s in (0, 1):
      make_run(root, 'task1', 'floq', s, [v] * 3, subdir=[g])
  md = open(report.write_report(root, reps=REPS)['results.md']).read()
  assert 'Seeds per cell: 2.' in md and 'Seeds per cell: 8' not in md, md
  assert '| floq,g1 | floq,g2 | floq,g3 | floq,g4 |' in md, md
  assert 'Run groups g1, g2, g3, g4 hold the same seeds' in md and 'kept apart' in md


def test_run_groups_with_distinct_seeds_are_pooled_and_named(tmp_path):
  root = str(tmp_path)
  for g, seeds in (('a', (0, 1)), ('b', (2, 3))):
    for s in seeds:
      make_run(root, 'task1', 'floq', s, [0.5] * 3, subdir=[g])
  md = open(report.write_report(root, reps=REPS)['results.md']).read()
  assert 'Seeds per cell: 4.' in md and 'Cells pool the run groups a, b (each with distinct seeds).' in md, md
