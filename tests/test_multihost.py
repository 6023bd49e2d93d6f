"""Multi-process training: 2 processes on 127.0.0.1 (CPU, gloo collectives, one CPU device each) train --num_seeds=2
sharded across them, against a 1-process run on 2 CPU devices (the same ('seeds', 'batch') = (2, 1) mesh).

Checked: the CSVs and checkpoint digests equal the 1-process run's exactly (same per-device programs, same rng
streams; bitwise on CPU); only process 0 writes flags.json, CSVs, TensorBoard events and the progress bar; the
checkpoints are saved collectively and restore in a 1-process ``experiments.evaluate``; SIGKILL of both processes and
a re-run resume to the same files and digests; a process that dies alone makes the other exit with one line; an
offline-to-online run SIGKILLed in both processes during its online phase and re-run equals a 1-process run.
"""

import glob
import os
import socket
import subprocess
import sys
import time

import pytest
from tests.conftest import REPO, digest, read_csv, scaled_flags, subprocess_env

pytestmark = pytest.mark.subprocess  # every test here starts entrypoints or JAX processes

RECORD = os.path.join(REPO, 'tests', 'record_writes.py')
ENV = 'cube-single-play-singletask-task1-v0'
TINY = scaled_flags('floq', 'small')
TIMEOUT = 600  # a hang guard: each run takes well under a minute on an idle 2-core machine



def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def offline_args(dataset, save_dir, group):
    return [f'--env_name={ENV}', f'--dataset_path={dataset}', '--offline_steps=40', '--steps_per_call=10',
            '--log_interval=10', '--eval_interval=20', '--save_interval=20', '--eval_episodes=1', '--num_seeds=2',
            '--eval_num_steps=2', '--max_checkpoints=5', f'--save_dir={save_dir}', f'--run_group={group}', *TINY]


def online_args(dataset, save_dir, group):
    return [f'--env_name={ENV}', f'--dataset_path={dataset}', '--offline_steps=20', '--online_steps=20',
            '--utd_ratio=2', '--buffer_size=10', '--steps_per_call=10', '--log_interval=10', '--eval_interval=40',
            '--save_interval=20', '--eval_episodes=1', '--noeval_at_start', '--num_seeds=2', f'--save_dir={save_dir}',
            f'--run_group={group}', '--noprogress', *TINY]


def popen(cmd, env):
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_single(module, args):
    """A 1-process run on 2 CPU devices."""
    return popen([sys.executable, '-m', module, *args, '--cpu_devices=2'], subprocess_env())


def start_pair(module, args, writes_logs=None, pause_of=lambda i: None, heartbeat=None):
    """Processes 0 and 1 of a 2-process run (one CPU device each); ``writes_logs``: a file per process recording the
    files it opens for writing (tests/record_writes.py); ``pause_of(i)``: a step after which process i blocks
    (tests/hooks.py), or None."""
    port, procs = free_port(), []
    for i in range(2):
        flags = ['--distributed', f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2', f'--process_id={i}']
        if heartbeat is not None:
            flags.append(f'--heartbeat_timeout_seconds={heartbeat}')
        target = [module] if pause_of(i) is None else ['tests.hooks', str(pause_of(i)), module]
        launcher = [RECORD, writes_logs[i]] if writes_logs else ['-m']
        procs.append(popen([sys.executable, *launcher, *target, *args, *flags], subprocess_env()))
    return procs


def finish(procs):
    """(stdout, stderr) of each process; asserts they all succeeded."""
    outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    for i, (p, (_, err)) in enumerate(zip(procs, outs)):
        frames = ('    @ ', '  File ', 'Extension modules')  # a native abort's stack dump: keep the messages
        assert p.returncode == 0, (i, '\n'.join(line for line in err.splitlines() if not line.startswith(frames)))
    return outs


def wait_paused(proc, step):
    line = ''
    while 'PAUSED' not in line and proc.poll() is None:
        line = proc.stdout.readline()
    assert f'PAUSED {step}' in line, proc.stderr.read()[-3000:] if proc.poll() is not None else line


def sigkill_paused_pair(module, args, step, writes_logs=None):
    """Starts a 2-process run that blocks after ``step`` (its checkpoints durable), then SIGKILLs both processes."""
    procs = start_pair(module, args, writes_logs, pause_of=lambda i: step)
    try:
        for p in procs:
            wait_paused(p, step)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def seed_dir(save_dir, group, seed):
    return os.path.join(save_dir, group, ENV, 'floq', f'seed{seed}')


def written_files(log, root):
    """Files under ``root`` a process opened for writing (tests/record_writes.py's log), without the '.tmp' suffix of
    atomic writes and without --save_dir's writability probe (every process checks it can write there)."""
    root = os.path.realpath(root)
    out = set()
    for path in open(log).read().split():
        path = os.path.realpath(path)
        if path.startswith(root + os.sep) and not os.path.basename(path).startswith('.floq_write_probe'):
            out.add(path[:-len('.tmp')] if path.endswith('.tmp') else path)
    return out


def assert_same_results(save_dir, group_a, group_b, steps):
    for seed in (0, 1):
        a, b = seed_dir(save_dir, group_a, seed), seed_dir(save_dir, group_b, seed)
        for name in ('train.csv', 'eval.csv'):
            rows = read_csv(os.path.join(a, name))
            assert rows and rows == read_csv(os.path.join(b, name)), (seed, name)  # exact: the same text for every value
        for step in steps:
            assert digest(a, step) == digest(b, step), (seed, step)  # SHA-256 over every leaf of the agent state


@pytest.fixture(scope='module')
def offline(tiny_npz, tmp_path_factory):
    """A 1-process run and, with the same flags, a 2-process run SIGKILLed in both processes after step 30 (checkpoint
    20 durable) then re-run to the end; the files each process opens for writing are recorded in both parts."""
    save_dir = str(tmp_path_factory.mktemp('runs'))
    logs = [os.path.join(save_dir, f'writes{i}.txt') for i in range(2)]
    single = start_single('experiments.train_offline', offline_args(tiny_npz, save_dir, 'single') + ['--noprogress'])
    multi_args = offline_args(tiny_npz, save_dir, 'multi')
    sigkill_paused_pair('experiments.train_offline', multi_args, 30, logs)
    killed_rows = read_csv(os.path.join(seed_dir(save_dir, 'multi', 1), 'train.csv'))
    killed_steps = sorted(int(os.path.basename(p)) for p in glob.glob(os.path.join(
        seed_dir(save_dir, 'multi', 1), 'checkpoints', '*')))
    resumed = finish(start_pair('experiments.train_offline', multi_args, logs))
    finish([single])
    return dict(save_dir=save_dir, logs=logs, multi=resumed, killed_rows=killed_rows, killed_steps=killed_steps)


def test_two_processes_equal_one_process(offline):
    """The 2-process run (killed and resumed) ends with the 1-process run's CSVs and checkpoint digests."""
    assert_same_results(offline['save_dir'], 'single', 'multi', steps=(20, 40))
    assert [r['step'] for r in read_csv(os.path.join(seed_dir(offline['save_dir'], 'multi', 1), 'eval.csv'))] == \
        ['0', '20', '40']


def test_only_process_0_writes_files_and_bar(offline):
    save_dir = offline['save_dir']
    written = [written_files(log, save_dir) for log in offline['logs']]
    for seed in (0, 1):
        d = os.path.realpath(seed_dir(save_dir, 'multi', seed))
        assert {os.path.join(d, name) for name in ('flags.json', 'train.csv', 'eval.csv')} <= written[0], written[0]
        assert [p for p in written[0] if p.startswith(os.path.join(d, 'tb', 'events.out.tfevents.'))], written[0]
    assert written[1] == set(), written[1]
    (_, err0), (out1, err1) = offline['multi']
    assert '40/40 [' in err0 and 'floq-jax: done at step 40' in err0, err0[-2000:]  # the tqdm bar and the summary
    assert '/40 [' not in err1 and 'floq-jax' not in err1, err1[-2000:]
    assert 'Traceback' not in err0 + err1
    printed = [line for line in out1.splitlines() if line.startswith(save_dir)]
    assert printed == [seed_dir(save_dir, 'multi', s) for s in (0, 1)]  # the run dirs, as process 0 prints


def test_checkpoints_saved_by_both_restore_in_one_process(offline):
    """Every process takes part in each save (orbax's multi-process protocol: barriers, process 0 writes the gathered
    host copy); a checkpoint restores in a plain 1-process evaluation."""
    import agents
    from floq_jax.training import evaluate

    run = seed_dir(offline['save_dir'], 'multi', 1)
    for step in (20, 40):
        assert os.path.isfile(os.path.join(run, 'checkpoints', str(step), 'commit_success.txt'))
        assert os.listdir(os.path.join(run, 'checkpoints', str(step), 'state')).count('ocdbt.process_0') == 1
    summary = evaluate.evaluate_checkpoint(run, agents.agent_class, None, 1, [2], 'published')
    assert summary['step'] == 40 and summary['episodes'] == 1


def test_sigkill_both_processes_then_rerun_resumes_exactly(offline):
    """Killed after step 30 with checkpoint 20 durable; the re-run resumes from 20 (and ends equal to the
    uninterrupted 1-process run: test_two_processes_equal_one_process)."""
    assert max(int(r['step']) for r in offline['killed_rows']) == 30
    assert offline['killed_steps'] == [20]
    (_, err0), _ = offline['multi']
    assert 'resuming from step 20 (checkpoint) of 40' in err0, err0[-2000:]


@pytest.mark.parametrize('lost', [1, 0])
def test_lost_process_ends_the_other_with_one_line(tiny_npz, tmp_path, lost):
    """One process blocks after step 10 and is killed; the other (waiting for it in the next collective, or, for a
    lost process 0, for the coordinator) leaves at once with one line naming the lost process and saying what to do
    (exit 1), long before JAX's heartbeat timeout (30 s here) would abort it."""
    args = offline_args(tiny_npz, str(tmp_path), 'lost') + ['--noprogress', '--notensorboard', '--noeval_at_start']
    procs = start_pair('experiments.train_offline', args, heartbeat=30,
                       pause_of=lambda i: 10 if i == lost else None)
    survivor = procs[1 - lost]
    try:
        wait_paused(procs[lost], 10)
        procs[lost].kill()
        killed_at = time.time()
        _, err = survivor.communicate(timeout=TIMEOUT)
        waited = time.time() - killed_at
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert survivor.returncode == 1, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'Traceback' not in err, err[-3000:]
    assert errors[0].startswith(f'error: process {1 - lost}: lost process {lost} of 2 (') and \
        're-run the same command on every process to resume from the newest checkpoint' in errors[0], errors[0]
    assert err.rstrip().endswith(errors[0])
    assert waited < 20, waited  # measured 0.4-0.7 s


@pytest.mark.parametrize('flags, expected', [
    (['--num_processes=2'], 'error: --num_processes is a multi-process flag; accepted: together with --distributed'),
    (['--distributed', '--coordinator_address=localhost'],
     "error: --coordinator_address='localhost': accepted: host:port"),
    (['--distributed', '--num_processes=2', '--process_id=2'], 'error: --process_id=2: accepted: 0 .. 1'),
    (['--distributed', '--heartbeat_timeout_seconds=0'], 'error: --heartbeat_timeout_seconds=0: must be a positive'),
])
def test_bad_multiprocess_flags_one_line(tiny_npz, tmp_path, flags, expected):
    save_dir = tmp_path / 'runs'
    out = subprocess.run([sys.executable, '-m', 'experiments.train_offline', f'--env_name={ENV}',
                          f'--dataset_path={tiny_npz}', f'--save_dir={save_dir}', *flags], cwd=REPO,
                         env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr[-2000:]
    assert out.stderr.startswith(expected), out.stderr
    assert not save_dir.exists()


def test_offline_to_online_two_processes_equal_one_process(tiny_npz, tmp_path):
    """Offline-to-online: both processes SIGKILLed in the online phase (step 30; checkpoint 20, the offline/online
    boundary with its replay buffer, durable) then re-run end with the CSVs and digests of an uninterrupted 1-process
    run; in the re-run only process 0 writes."""
    save_dir = str(tmp_path)
    logs = [os.path.join(save_dir, f'writes{i}.txt') for i in range(2)]
    single = start_single('experiments.train_offline_to_online', online_args(tiny_npz, save_dir, 'single'))
    killed_args = online_args(tiny_npz, save_dir, 'multi')
    sigkill_paused_pair('experiments.train_offline_to_online', killed_args, 30)
    assert max(int(r['step']) for r in read_csv(os.path.join(seed_dir(save_dir, 'multi', 1), 'train.csv'))) == 30
    (_, err0), _ = finish(start_pair('experiments.train_offline_to_online', killed_args, logs))
    assert 'resuming from step 20 (checkpoint) of 40' in err0, err0[-2000:]
    finish([single])
    assert_same_results(save_dir, 'single', 'multi', steps=(20, 40))
    written = [written_files(log, save_dir) for log in logs]
    assert os.path.realpath(os.path.join(seed_dir(save_dir, 'multi', 1), 'train.csv')) in written[0], written[0]
    assert written[1] == set(), written[1]
