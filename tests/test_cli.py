"""Bad input to the entrypoints: one error line naming the flag, exit code != 0, nothing written, no training."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = 'cube-single-play-singletask-task1-v0'


def run(args, module='experiments.train_offline', timeout=120):
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu')
    env.pop('XLA_FLAGS', None)
    return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def error_line(out):
    assert out.returncode != 0, out.stdout[-1000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1, out.stderr[-2000:]
    assert 'Traceback' not in out.stderr, out.stderr[-2000:]
    return errors[0]


@pytest.fixture
def save_dir(tmp_path):
    d = tmp_path / 'runs'
    d.mkdir()
    (d / 'keep.txt').write_text('untouched')
    yield str(d)
    assert sorted(os.listdir(d)) == ['keep.txt'] and (d / 'keep.txt').read_text() == 'untouched'


def test_unknown_env_name(save_dir):
    line = error_line(run(['--env_name=walker-run-v0', f'--save_dir={save_dir}']))
    assert '--env_name' in line and 'accepted families' in line and 'cube' in line


def test_not_single_task_env_name(save_dir):
    line = error_line(run(['--env_name=cube-single-play-v0', f'--save_dir={save_dir}']))
    assert '--env_name' in line and 'cube-single-play-singletask-task1-v0' in line


def test_missing_dataset_no_download(save_dir, tmp_path):
    empty = tmp_path / 'no_data'
    empty.mkdir()
    line = error_line(run([f'--env_name={ENV}', f'--dataset_dir={empty}', f'--save_dir={save_dir}']))
    assert '--dataset_dir' in line and 'not found' in line and 'make_dataset' in line
    assert os.listdir(empty) == []


def test_unknown_agent_key(save_dir):
    line = error_line(run([f'--env_name={ENV}', '--agent.not_a_key=3', f'--save_dir={save_dir}']))
    assert line.startswith('error: --agent.not_a_key: unknown agent config key') and 'critic_flow_steps' in line


@pytest.mark.parametrize('flag', ['--offline_steps=-5', '--steps_per_call=0', '--eval_interval=0', '--num_seeds=0'])
def test_non_positive_steps(save_dir, flag):
    line = error_line(run([f'--env_name={ENV}', flag, f'--save_dir={save_dir}']))
    assert line.startswith(f'error: {flag.split("=")[0]}=') and 'must be' in line


def test_unwritable_save_dir(tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    line = error_line(run([f'--env_name={ENV}', f'--save_dir={blocker}/runs']))
    assert '--save_dir' in line and 'not writable' in line
    assert blocker.read_text() == 'x'


def test_evaluate_bad_run_dir(tmp_path):
    line = error_line(run([f'--run_dir={tmp_path}'], module='experiments.evaluate'))
    assert '--run_dir' in line and 'flags.json' in line


def test_demo_end_to_end_small(tmp_path):
    """`make demo`'s entrypoint with tiny numbers: generates its dataset into the given cache, trains, evaluates the
    final checkpoint at several K, writes and prints the results table and the plot path."""
    out = run([f'--save_dir={tmp_path / "runs"}', f'--cache_dir={tmp_path / "cache"}', '--dataset_episodes=1',
               '--steps=60', '--eval_episodes=2', '--num_steps=1,4'], module='experiments.demo', timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'success' in out.stdout and 'K=1:' in out.stdout and 'K=4:' in out.stdout, out.stdout[-2000:]
    assert '| cube-single-play-singletask-task2-v0 | generated |' in out.stdout, out.stdout[-2000:]
    plot = tmp_path / 'runs' / 'demo' / 'report' / 'learning_curves.png'
    assert plot.is_file() and str(plot) in out.stdout
