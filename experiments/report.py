r"""Results table + learning curves from training run directories.

  python -m experiments.report --runs=runs/ [--out=DIR] [--metric=evaluation/success]
      [--last_n=3] [--group_by=agent_name] [--format=markdown|csv]

Walks --runs for run dirs (flags.json + eval.csv), prints the table (per task
and group: mean [95% CI] over seeds of the last-`last_n`-evaluations average,
plus the IQM across tasks) and writes results.md, results.csv and
learning_curves.png into --out (default: the --runs dir).
"""

import sys
import warnings

from absl import app
from absl import flags

_RUNS = flags.DEFINE_string('runs', None, 'Directory containing run dirs (flags.json + eval.csv).')
_OUT = flags.DEFINE_string('out', None, 'Output directory (default: --runs).')
_METRIC = flags.DEFINE_string('metric', 'evaluation/success', 'eval.csv column to report.')
_LAST_N = flags.DEFINE_integer('last_n', 3, 'Final score = mean of the last N evaluations.')
_GROUP_BY = flags.DEFINE_list(
    'group_by', ['agent_name'],
    'flags.json key(s) to group runs by (dotted keys reach into nested dicts, e.g. '
    'agent.critic_flow_steps); comma-separated for several.')
_TASK_KEY = flags.DEFINE_string('task_key', 'env_name', 'flags.json key naming the task.')
_FORMAT = flags.DEFINE_enum('format', 'markdown', ['markdown', 'csv'], 'What to print to stdout.')
_REPS = flags.DEFINE_integer('reps', 5000, 'Bootstrap replications for the CIs.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed for the bootstrap.')
_TITLE = flags.DEFINE_string('title', None, 'Title of results.md.')


def _fail(msg: str) -> int:
    print(f'error: {msg}', file=sys.stderr)
    return 2


def main(argv):
    if len(argv) > 1:
        return _fail(f'unexpected arguments: {" ".join(argv[1:])}')
    from floq_jax import storage
    from floq_jax.analysis import report

    runs_dir = _RUNS.value
    try:
        found = bool(runs_dir) and storage.check_readable(runs_dir, 'dir')
    except storage.StorageError as e:  # a bucket that cannot be asked (credentials, network)
        return _fail(f'--runs={runs_dir}: {e}; expected a directory (local or gs://bucket/...) containing run dirs')
    if not found:
        return _fail(f'--runs={runs_dir}: not a directory; expected a directory containing run '
                     f'dirs with flags.json and eval.csv')
    if _LAST_N.value < 1:
        return _fail(f'--last_n={_LAST_N.value}: expected a positive integer')
    group_by = _GROUP_BY.value[0] if len(_GROUP_BY.value) == 1 else tuple(_GROUP_BY.value)

    def show(message, category, filename, lineno, file=None, line=None):
        print(f'warning: {message}', file=sys.stderr)

    warnings.showwarning = show
    with warnings.catch_warnings():
        warnings.simplefilter('always', report.RunWarning)
        try:
            runs = report.load_runs(runs_dir, metric=_METRIC.value)
        except report.NoRunsError:
            n = len(report.find_run_dirs(runs_dir))
            found = f'found {n} but none usable' if n else 'found none'
            return _fail(f'--runs={runs_dir}: expected a directory containing run dirs with '
                         f'flags.json and eval.csv (with a {_METRIC.value!r} column), {found}')
        paths = report.write_report(
            runs_dir, out_dir=_OUT.value, metric=_METRIC.value, last_n=_LAST_N.value,
            group_by=group_by, task_key=_TASK_KEY.value, title=_TITLE.value, reps=_REPS.value,
            seed=_SEED.value, runs=runs)
    key = 'results.md' if _FORMAT.value == 'markdown' else 'results.csv'
    print(storage.read_text(paths[key]), end='')
    print(f'\nwrote {len(runs)} runs -> ' + ', '.join(paths.values()), file=sys.stderr)
    return 0


if __name__ == '__main__':
    flags.mark_flag_as_required('runs')
    app.run(main)
