"""experiments.parity_harness (running the published code beside floq-jax) and the parity harness's input checks.

No published code is needed: a fake checkout with the published main.py's use of wandb stands in for it."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from experiments import parity_harness
from tests.test_cli import error_line, run

# What the published main.py and utils/log_utils.py do with wandb (CMU-AIRe/floq 2e46108).
USES_WANDB = textwrap.dedent('''
    import wandb
    run = wandb.init(project='p' + 'cube', group='g', name='n', mode='online', dir='/tmp', tags=['g'],
                     settings=wandb.Settings(start_method='thread', _disable_stats=False), save_code=True)
    assert wandb.run.project == 'pcube'
    wandb.log({'a': 1.0}, step=3)
    disallowed = (wandb.Image, wandb.Video, wandb.Histogram)
    import os
    print(os.listdir(os.path.expanduser('~/.ogbench/data')))
''')


def fake_checkout(root):
    for rel in ('main.py', 'agents/floq.py', 'agents/fql.py', 'utils/flax_utils.py'):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(USES_WANDB if rel == 'main.py' else '')
    return root


@pytest.mark.subprocess
def test_environment_runs_published_wandb_calls_offline(tmp_path):
    ref = fake_checkout(tmp_path / 'floq')
    data = tmp_path / 'data'
    data.mkdir()
    for name in ('cube-single-play-v0.npz', 'cube-single-play-v0-val.npz'):
        (data / name).write_bytes(b'x')
    env = parity_harness.environment(str(tmp_path / 'work'), [str(data / 'cube-single-play-v0.npz')])
    out = subprocess.run([sys.executable, 'main.py'], cwd=ref, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(out.stdout.strip().replace("'", '"'))) == ['cube-single-play-v0-val.npz',
                                                                        'cube-single-play-v0.npz']


def test_agent_flags_and_command():
    flags = parity_harness.agent_flags('floq', {'alpha': 300.0, 'actor_hidden_dims': (128, 128), 'x': (5,)})
    assert flags == ['--agent=agents/floq.py', '--agent.alpha=300.0', '--agent.actor_hidden_dims=(128,128)',
                     '--agent.x=(5,)']
    cmd = parity_harness.main_command('py', 'cube-single-play-singletask-task2-v0', 'fql', {}, seed=3, steps=100,
                                 eval_interval=50, eval_episodes=7, save_dir='/s')
    assert cmd[:2] == ['py', 'main.py'] and '--seed=3' in cmd and '--offline_steps=100' in cmd
    assert '--eval_episodes=7' in cmd and '--agent=agents/fql.py' in cmd and '--online_steps=0' in cmd
    with pytest.raises(parity_harness.ReferenceUnusable, match='agent'):
        parity_harness.agent_flags('sac', {})


def test_check_reference_names_what_is_missing(tmp_path):
    with pytest.raises(parity_harness.ReferenceUnusable, match='--reference_dir=.*missing main.py'):
        parity_harness.check_reference(str(tmp_path), sys.executable)
    fake_checkout(tmp_path)
    with pytest.raises(parity_harness.ReferenceUnusable, match='--reference_python=/no/such/python'):
        parity_harness.check_reference(str(tmp_path), '/no/such/python')


def test_load_run_reads_the_newest_eval_csv(tmp_path):
    assert parity_harness.load_run(str(tmp_path), env_name='e') is None
    run_dir = tmp_path / 'parity' / 'parity' / 'sd000_x'
    run_dir.mkdir(parents=True)
    (run_dir / 'flags.json').write_text(json.dumps({'seed': 0}))
    (run_dir / 'eval.csv').write_text('evaluation/success,step\n0.0,1\n0.5,10\n')
    run = parity_harness.load_run(str(tmp_path), env_name='e', agent_name='floq', seed=0, code='published')
    assert list(run.eval['step']) == [1, 10] and run.env_name == 'e' and run.get('reference_flags') == {'seed': 0}
    assert run.train is None
    (run_dir / 'train.csv').write_text('training/critic/q,step\n-3.0,5\n')
    run = parity_harness.load_run(str(tmp_path), env_name='e')
    assert list(run.train['training/critic/q']) == [-3.0]


@pytest.mark.subprocess
def test_parity_without_reference_dir_is_one_line(tmp_path):
    line = error_line(run([f'--out_dir={tmp_path}/out'], module='experiments.parity'))
    assert '--reference_dir' in line
    assert not os.path.exists(tmp_path / 'out')
    line = error_line(run([f'--out_dir={tmp_path}/out', f'--reference_dir={tmp_path}'], module='experiments.parity'))
    assert '--reference_dir' in line and 'missing main.py' in line
    line = error_line(run(['--tasks=antmaze-large-navigate-singletask-v0', f'--reference_dir={tmp_path}'],
                          module='experiments.parity'))
    assert '--tasks' in line
