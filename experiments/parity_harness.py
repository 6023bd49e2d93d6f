"""Running the published floq code (CMU-AIRe/floq) beside floq-jax, from a checkout the user names.

The published code is never vendored: the user passes ``--reference_dir`` (a checkout of
https://github.com/CMU-AIRe/floq) and ``--reference_python`` (an interpreter with its requirements, which
include ``distrax``).  This module only prepares what that code needs to run offline and unmodified:

* a stand-in ``wandb`` module (its ``main.py`` calls ``wandb.init(mode="online")``, reads
  ``wandb.run.project`` and touches ``wandb.Settings/log/Image/Video/Histogram``), written into a directory
  put first on ``PYTHONPATH``;
* a ``HOME`` whose ``.ogbench/data`` links the OGBench-format files to train on (OGBench's loader reads
  ``~/.ogbench/data/<name>.npz`` and ``-val.npz`` and skips its download when both exist);

builds its ``main.py`` command line, and reads back its ``eval.csv`` as a :class:`floq_jax.analysis.report.Run`.

    env = parity_harness.environment(work_dir, [dataset_npz])
    cmd = parity_harness.main_command(python, ref_dir, 'cube-single-play-singletask-task2-v0', 'floq',
                                 {'alpha': 300}, seed=0, steps=70000, eval_interval=10000,
                                 eval_episodes=50, save_dir=out)
    subprocess.run(cmd, cwd=ref_dir, env=env, check=True)
    run = parity_harness.load_run(out, env_name=..., agent_name='floq', seed=0)
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import subprocess
from typing import Dict, Iterable, List, Optional

AGENT_FILES = {'floq': 'agents/floq.py', 'fql': 'agents/fql.py', 'fql_iqn': 'agents/fql_iqn.py'}

WANDB_STANDIN = '''"""Offline stand-in for wandb, written by experiments.parity_harness: records nothing."""
run = None


class _Run:
    def __init__(self, project):
        self.project = project


class Settings:
    def __init__(self, *args, **kwargs):
        pass


class Image:
    def __init__(self, *args, **kwargs):
        pass


Video = Histogram = Image


def init(project=None, **kwargs):
    global run
    run = _Run(project or 'project')
    return run


def log(*args, **kwargs):
    pass


def finish(*args, **kwargs):
    pass
'''


class ReferenceUnusable(ValueError):
    """The reference checkout or interpreter cannot be used (the message names which and why)."""


def check_reference(reference_dir: str, reference_python: str) -> Dict[str, str]:
    """Validates the checkout and interpreter; returns {'dir', 'python', 'commit'} (commit '' if not a git tree).

    Raises ReferenceUnusable with a one-line reason.
    """
    ref = os.path.abspath(os.path.expanduser(reference_dir))
    missing = [p for p in ('main.py', 'agents/floq.py', 'agents/fql.py', 'utils/flax_utils.py')
               if not os.path.isfile(os.path.join(ref, p))]
    if missing:
        raise ReferenceUnusable(f'--reference_dir={reference_dir}: not a checkout of CMU-AIRe/floq '
                              f'(missing {", ".join(missing)}); clone https://github.com/CMU-AIRe/floq')
    python = shutil.which(reference_python) or reference_python
    if not os.path.isfile(python):
        raise ReferenceUnusable(f'--reference_python={reference_python}: no such interpreter')
    probe = subprocess.run([python, '-c', 'import jax, flax, distrax, ml_collections, ogbench, optax'],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ['unknown error'])[-1]
        raise ReferenceUnusable(f'--reference_python={reference_python}: cannot import the published code\'s '
                              f'requirements ({last}); install jax flax optax distrax ml_collections ogbench into it')
    commit = subprocess.run(['git', '-C', ref, 'rev-parse', 'HEAD'], capture_output=True, text=True)
    return {'dir': ref, 'python': python, 'commit': commit.stdout.strip() if commit.returncode == 0 else ''}


def environment(work_dir: str, dataset_files: Iterable[str], base_env: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment variables for the reference process: the wandb stand-in first on PYTHONPATH, and a HOME
    under ``work_dir`` whose ``.ogbench/data`` links each ``<name>.npz`` of ``dataset_files`` and its
    ``-val.npz``."""
    shim = os.path.join(work_dir, 'shim', 'wandb')
    os.makedirs(shim, exist_ok=True)
    with open(os.path.join(shim, '__init__.py'), 'w') as f:
        f.write(WANDB_STANDIN)
    data_dir = os.path.join(work_dir, 'home', '.ogbench', 'data')
    os.makedirs(data_dir, exist_ok=True)
    for path in dataset_files:
        path = os.path.abspath(path)
        for src in (path, path[:-len('.npz')] + '-val.npz'):
            dst = os.path.join(data_dir, os.path.basename(src))
            if os.path.lexists(dst):
                os.remove(dst)
            os.symlink(src, dst)
    env = dict(os.environ if base_env is None else base_env)
    env['PYTHONPATH'] = os.pathsep.join([os.path.dirname(shim)] + [p for p in [env.get('PYTHONPATH')] if p])
    env['HOME'] = os.path.join(work_dir, 'home')
    env.setdefault('MUJOCO_GL', 'egl')
    env['WANDB_MODE'] = 'offline'
    return env


def agent_flags(agent: str, overrides: Dict) -> List[str]:
    """``--agent=agents/<agent>.py --agent.key=value ...`` (tuples written as ``(a,b)``)."""
    if agent not in AGENT_FILES:
        raise ReferenceUnusable(f'agent {agent!r}: the reference has {", ".join(AGENT_FILES)}')
    out = [f'--agent={AGENT_FILES[agent]}']
    for key, value in overrides.items():
        if isinstance(value, (tuple, list)):
            value = '(' + ','.join(str(v) for v in value) + (',)' if len(value) == 1 else ')')
        out.append(f'--agent.{key}={value}')
    return out


def main_command(python: str, env_name: str, agent: str, overrides: Dict, seed: int, steps: int,
                 eval_interval: int, eval_episodes: int, save_dir: str, log_interval: int = 5000) -> List[str]:
    """The published ``main.py`` command line (run it with ``cwd`` = the checkout)."""
    return [python, 'main.py', f'--env_name={env_name}', f'--seed={seed}', f'--offline_steps={steps}',
            '--online_steps=0', f'--eval_interval={eval_interval}', f'--eval_episodes={eval_episodes}',
            f'--log_interval={log_interval}', f'--save_interval={steps * 10}', f'--save_dir={save_dir}',
            '--project_name=parity', '--run_group=parity', *agent_flags(agent, overrides)]


def find_eval_csv(save_dir: str) -> Optional[str]:
    """The newest ``eval.csv`` the published code wrote under ``save_dir`` (it nests project/group/exp_name)."""
    found = sorted(glob.glob(os.path.join(save_dir, '**', 'eval.csv'), recursive=True), key=os.path.getmtime)
    return found[-1] if found else None


def load_run(save_dir: str, **flags):
    """The published run under ``save_dir`` as a report.Run (its eval.csv, and train.csv when written) with
    ``flags`` (env_name, agent_name, seed, ...), or None when it wrote no evaluation yet."""
    import pandas as pd

    from floq_jax.analysis import report

    path = find_eval_csv(save_dir)
    if path is None:
        return None
    ev = pd.read_csv(path)
    if len(ev) == 0:
        return None
    with open(os.path.join(os.path.dirname(path), 'flags.json')) as f:
        recorded = json.load(f)
    train_csv = os.path.join(os.path.dirname(path), 'train.csv')
    train = pd.read_csv(train_csv) if os.path.isfile(train_csv) and os.path.getsize(train_csv) else None
    return report.Run(path=os.path.dirname(path), flags={**flags, 'reference_flags': recorded}, eval=ev, train=train)


# ----------------------------------------------------------------------------- tests over seeds
PER_SEED_FILE = 'parity_per_seed.csv'   # one row per (task, agent, code, seed): its score and critic estimate


def per_seed_scores(runs, q_metric: str):
    """One row per (task, agent, code, seed): success (mean of the last 3 evaluations) and the critic estimate
    (mean of the last 3 logged values of ``q_metric``; NaN where the run logged none)."""
    import pandas as pd

    from floq_jax.analysis import report

    rows = []
    for r in runs:
        q = math.nan
        if r.train is not None and q_metric in r.train.columns:
            q = report.final_score(report.Run(path=r.path, flags=r.flags, eval=r.train), q_metric)
        rows.append(dict(env_name=r.env_name, agent_name=r.get('agent_name'), code=r.get('code'), seed=r.seed,
                         success=report.final_score(r), q=q, final_step=int(r.eval['step'].max())))
    return pd.DataFrame(rows).sort_values(['env_name', 'agent_name', 'code', 'seed'], kind='stable')


def tests_over_seeds(frame, column: str, margin: float, scale: float) -> list:
    """Markdown rows: per (task, agent), floq-jax minus published on ``column`` with Welch's p, the exact
    permutation p, the 90% CI of the difference (TOST) and the verdict by the margin written before the runs:
    equivalent (TOST p < 0.05), different (Welch p < 0.05), otherwise undecided."""
    from floq_jax.analysis import seed_tests

    lines = []
    for (task, agent), g in frame.groupby(['env_name', 'agent_name'], sort=True):
        ours = g[g['code'] == 'floq-jax'][column].dropna().to_numpy()
        theirs = g[g['code'] == 'published'][column].dropna().to_numpy()
        if len(ours) < 2 or len(theirs) < 2:
            continue
        w, perm = seed_tests.welch(ours, theirs), seed_tests.permutation(ours, theirs)
        e = seed_tests.equivalence(ours, theirs, margin / scale)
        verdict = ' and '.join(name for name, holds in (('equivalent', e['equivalent']), ('different', w['p'] < 0.05))
                               if holds)
        lines.append(f'| {task} | {agent} | {len(ours)} vs {len(theirs)} | {e["diff"] * scale:+.2f} | '
                     f'[{e["ci_low"] * scale:+.2f}, {e["ci_high"] * scale:+.2f}] | ±{margin:g} | {e["p"]:.3f} | '
                     f'{w["p"]:.3f} | {perm:.3f} | {verdict or "undecided"} |')
    if not lines:
        return []
    return ['| task | agent | seeds (floq-jax vs published) | difference | 90% CI | margin | TOST p | Welch p | '
            'permutation p | verdict |', '|---|---|---|---|---|---|---|---|---|---|', *lines]
