"""Bad input to the entrypoints: one error line naming the flag, exit code != 0, nothing written, no training."""

import os
import subprocess
import sys

import pytest
from tests.conftest import REPO, scaled_flags, subprocess_env, tb_events

pytestmark = pytest.mark.subprocess  # every test here starts entrypoints or JAX processes

ENV = 'cube-single-play-singletask-task1-v0'


def run(args, module='experiments.train_offline', timeout=120):
    env = subprocess_env()
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
               '--steps=60', '--eval_episodes=1', '--num_steps=1,4'], module='experiments.demo', timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'success' in out.stdout and 'K=1:' in out.stdout and 'K=4:' in out.stdout, out.stdout[-2000:]
    assert '| cube-single-play-singletask-task2-v0 | generated |' in out.stdout, out.stdout[-2000:]
    plot = tmp_path / 'runs' / 'demo' / 'report' / 'learning_curves.png'
    assert plot.is_file() and str(plot) in out.stdout


# ----------------------------------------------------------------------------- issue 14: bad inputs, one line each



def test_save_dir_that_cannot_be_created(tiny_npz):
    """/proc/x passes os.access for root; the directory is now created (and removed) up front instead."""
    out = run([f'--env_name={ENV}', f'--dataset_path={tiny_npz}', '--save_dir=/proc/floq_x'])
    line = error_line(out)
    assert out.returncode == 2 and line.startswith("error: --save_dir='/proc/floq_x' is not writable"), line


def test_creatable_save_dir_is_not_left_behind(tmp_path):
    """The writability probe removes the directories it created when a later check fails."""
    line = error_line(run([f'--env_name={ENV}', '--offline_steps=0', f'--save_dir={tmp_path}/a/b/runs']))
    assert '--offline_steps=0' in line
    assert os.listdir(tmp_path) == []


def test_corrupted_dataset_file(tiny_npz, save_dir, tmp_path):
    bad = tmp_path / 'cube-single-play-v0.npz'
    data = bytearray(open(tiny_npz, 'rb').read())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    bad.write_bytes(bytes(data))
    out = run([f'--env_name={ENV}', f'--dataset_path={bad}', f'--save_dir={save_dir}'])
    line = error_line(out)
    assert out.returncode == 2 and line.startswith(f'error: --dataset_path: {bad}: cannot read as .npz'), line
    assert 'damaged' in line


@pytest.mark.parametrize('module,flags,expected', [
    ('experiments.train_offline', ['--offline_steps=0'], 'error: --offline_steps=0: nothing to train'),
    ('experiments.train_offline_to_online', ['--offline_steps=0', '--online_steps=0'],
     'error: --offline_steps=0 --online_steps=0: nothing to train'),
])
def test_nothing_to_train(save_dir, module, flags, expected):
    out = run([f'--env_name={ENV}', *flags, f'--save_dir={save_dir}'], module=module)
    assert out.returncode == 2 and error_line(out).startswith(expected)


@pytest.mark.parametrize('flags,expected', [
    (['--agent=agents/fqll.py'], "error: --agent=agents/fqll.py: no such file 'agents/fqll.py' (did you mean "
                                 "agents/fql.py?); accepted: agents/floq.py, agents/fql.py"),
    (['--agent.alpha=3', '--agent=agents/fqll.py'], "error: --agent=agents/fqll.py: no such file"),
    (['--agent=agents/fql.py:resnett'], "error: --agent=agents/fql.py:resnett: ValueError: agents/fql.py: unknown "
                                        "config variant 'resnett' (accepted: '', 'resnet"),
    (['--agent=agents/floq.py:resnet'], 'error: --agent=agents/floq.py:resnet: agents/floq.py has no config variants'),
])
def test_bad_agent_file_or_variant(save_dir, flags, expected):
    out = run([f'--env_name={ENV}', *flags, f'--save_dir={save_dir}'])
    assert out.returncode == 2 and error_line(out).startswith(expected)


def test_agent_overrides_before_agent_file_are_applied(save_dir):
    """--agent.<key> before --agent=<file> used to fail with 'before a value for --agent was specified'."""
    out = run([f'--env_name={ENV}', '--agent.alpha=3', '--agent=agents/fql.py', '--offline_steps=0',
               f'--save_dir={save_dir}'])
    assert error_line(out).startswith('error: --offline_steps=0: nothing to train')


def test_unknown_agent_key_did_you_mean_and_full_list(save_dir):
    line = error_line(run([f'--env_name={ENV}', '--agent.alhpa=3', f'--save_dir={save_dir}']))
    assert line.startswith('error: --agent.alhpa: unknown agent config key (did you mean --agent.alpha?); accepted')
    assert line.endswith('value_hidden_dims') and '...' not in line, line


@pytest.mark.parametrize('with_path', [False, True])
def test_env_name_typo_did_you_mean(tiny_npz, save_dir, with_path):
    flags = [f'--dataset_path={tiny_npz}'] if with_path else []
    line = error_line(run(['--env_name=cube-singel-play-singletask-task1-v0', *flags, f'--save_dir={save_dir}']))
    assert line.startswith("error: --env_name: unknown environment 'cube-singel'"), line
    assert "did you mean 'cube-single-play-singletask-task1-v0'?" in line and 'not found' not in line


def test_evaluate_step_without_checkpoint_lists_steps(tmp_path):
    """Checked against checkpoints/ before anything is loaded."""
    (tmp_path / 'flags.json').write_text('{}')
    for step in (100, 200):
        (tmp_path / 'checkpoints' / str(step)).mkdir(parents=True)
    out = run([f'--run_dir={tmp_path}', '--step=1234'], module='experiments.evaluate', timeout=60)
    line = error_line(out)
    assert out.returncode == 2 and line.startswith('error: --step=1234: no checkpoint at that step'), line
    assert 'accepted: 100, 200' in line
    assert sorted(os.listdir(tmp_path)) == ['checkpoints', 'flags.json']


def test_make_dataset_refuses_to_overwrite(tmp_path):
    target = tmp_path / 'cube-single-play-v0.npz'
    target.write_text('keep me')
    out = run(['--env_name=cube-single-play-v0', '--num_episodes=1', '--max_episode_steps=10', '--num_workers=1',
               f'--dataset_dir={tmp_path}'], module='experiments.make_dataset', timeout=120)
    lines = [line for line in out.stderr.splitlines() if 'error:' in line]
    assert out.returncode == 2 and len(lines) == 1 and '--overwrite' in lines[0] and str(target) in lines[0], out.stderr
    assert target.read_text() == 'keep me' and os.listdir(tmp_path) == ['cube-single-play-v0.npz']


def test_ctrl_c_one_line_then_resume_without_duplicate_tb_points(tiny_npz, tmp_path):
    """Ctrl-C (SIGINT to the process group, env workers included) before the first checkpoint: one line, exit 130,
    no traceback from the parent or the eval workers; the same command then runs to the end, and TensorBoard holds
    one step-0 evaluation (the stale events of the interrupted session are not kept beside the new ones)."""
    import signal

    cmd = [sys.executable, '-m', 'experiments.train_offline', f'--env_name={ENV}', f'--dataset_path={tiny_npz}',
           f'--save_dir={tmp_path}', '--offline_steps=20', '--steps_per_call=10', '--save_interval=20',
           '--eval_interval=20', '--log_interval=10', '--eval_episodes=1', '--noprogress', *scaled_flags('floq', 'small')]
    env = subprocess_env()
    # PYTHONFAULTHANDLER: a SIGABRT makes the process print every thread's Python stack (a hang's diagnosis).
    proc = subprocess.Popen([sys.executable, '-m', 'tests.hooks', '10', *cmd[2:]], cwd=REPO,
                            env=dict(env, PYTHONFAULTHANDLER='1'), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        line = ''
        while 'PAUSED' not in line and proc.poll() is None:
            line = proc.stdout.readline()
        # The run takes Ctrl-C: SIGINT is not ignored in it (a suite started in the background inherits an ignored
        # SIGINT; tests/conftest.py takes the default back, or this SIGINT would never be delivered).
        with open(f'/proc/{proc.pid}/status') as f:
            ignored = int(next(line for line in f if line.startswith('SigIgn:')).split()[1], 16)
        assert not ignored & (1 << (signal.SIGINT - 1)), 'the run ignores SIGINT (inherited from the test process)'
        os.killpg(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)  # closing takes seconds on an idle machine
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack, for the failure message
            _, err = proc.communicate(timeout=60)
            pytest.fail('the interrupted run did not exit within 120 s of SIGINT; its threads:\n' + err[-6000:])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    assert 'Traceback' not in err and 'KeyboardInterrupt' not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == ('interrupted at step 10; re-run the same command to resume (from step 0: '
                                            'no checkpoint was saved yet)'), err[-3000:]
    assert 'floq-jax: env cube-single-play-singletask-task1-v0 | agent floq | data generated' in err
    assert 'compiling the update' in err
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert 'floq-jax: done at step 20: final success seed0' in again.stderr, again.stderr[-3000:]
    run_dir = os.path.join(tmp_path, 'default', ENV, 'floq', 'seed0')
    assert [step for step, v in tb_events(os.path.join(run_dir, 'tb')) if v.tag == 'evaluation/success'] == [0, 20]


def test_env_workers_exit_quietly_when_parent_is_killed():
    """SIGKILL of the parent: the ChunkedVectorEnv workers see their pipe close and exit without EOFError or
    BrokenPipeError tracebacks (stderr reaches EOF once every worker has exited)."""
    import signal

    script = ('import time\nfrom floq_jax.console import quiet_setup\nquiet_setup()\n'
              'from floq_jax.envs.envs import make_vector_env\n'
              f'env = make_vector_env({ENV!r}, 2, \'chunked\', num_workers=2)\nenv.reset(seed=0)\n'
              'print("ready", flush=True)\ntime.sleep(600)\n')
    proc = subprocess.Popen([sys.executable, '-c', script], cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'ready', proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    err = proc.stderr.read()  # EOF only when the workers (which share the pipe) are gone
    assert 'Traceback' not in err and 'Error' not in err, err[-3000:]
    assert 'DISPLAY' not in err and 'precision lowered' not in err, err[-3000:]


def test_help_lists_flags_and_agent_keys():
    out = run(['--help'], timeout=60)
    assert 'Traceback' not in out.stderr, out.stderr[-2000:]  # (absl's --help exits with 1)
    assert '--env_name' in out.stdout and '--save_dir' in out.stdout and '--agent.critic_flow_steps=8' in out.stdout
