"""Run directories on object storage (gs://, a local fake-gcs-server the tests start: tests/gcs_emulator.py),
preemption (SIGTERM), one live run per run directory, and a full disk.

Checked: a 2-process run on gs:// (its dataset there too) preempted by a SIGTERM to one process (both stop at one common step and save it),
re-run, refused a second live command (one line naming the holder, nothing written), SIGKILLed in both processes,
re-run to the end, equals an uninterrupted 1-process run on gs:// (CSVs and checkpoint digests, exactly); report
and evaluate read it there; a 1-process run on a local disk preempted, then locked against a second live command
and killed, resumes to the same files as the gs:// run; an offline-to-online run on gs://; a missing bucket,
refused credentials, a lock left by a killed run, a full disk.
"""

import csv
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from tests.conftest import subprocess_env
from tests.test_multihost import (ENV, REPO, TIMEOUT, finish, offline_args, online_args, popen, seed_dir, start_pair,
                                  start_single, wait_paused)

from floq_jax import storage

PREEMPTED = 143


def rows(path):
    return list(csv.DictReader(io.StringIO(storage.read_text(path))))


def digest(run, step):
    return json.loads(storage.read_text(storage.join(run, 'checkpoints', str(step), 'metadata', 'metadata')))[
        '__floq_checkpoint_digest__']


def assert_same_results(a_root, a_group, b_root, b_group, steps=(20, 40)):
    for seed in (0, 1):
        a, b = seed_dir(a_root, a_group, seed), seed_dir(b_root, b_group, seed)
        for name in ('train.csv', 'eval.csv'):
            got = rows(storage.join(a, name))
            assert got and got == rows(storage.join(b, name)), (seed, name)
        for step in steps:
            assert digest(a, step) == digest(b, step), (seed, step)


def last_line(err):
    return err.rstrip().splitlines()[-1]


def objects(root):
    return sorted(storage.join(d, f) for d, _, files in storage.walk(root) for f in files)


def start_hooked(hook, args):
    """A 1-process run (2 CPU devices, as start_single) under tests/hooks.py (``hook``: '<step>' pauses, 'term:<step>'
    sends itself SIGTERM)."""
    return popen([sys.executable, '-m', 'tests.hooks', hook, 'experiments.train_offline', *args, '--cpu_devices=2'],
                 subprocess_env())


@pytest.fixture(scope='module')
def single_gs(gcs, tiny_npz):
    """An uninterrupted 1-process run on gs:// (the reference)."""
    root = f'gs://bkt/{uuid.uuid4().hex[:8]}'
    finish([start_single('experiments.train_offline', offline_args(tiny_npz, root, 'single') + ['--noprogress'])])
    return root


@pytest.mark.subprocess
def test_two_processes_on_gcs_preempted_locked_killed_resumed_equal_one_process(gcs, tiny_npz, single_gs, tmp_path,
                                                                              monkeypatch):
    root = f'gs://bkt/{uuid.uuid4().hex[:8]}'
    # The dataset is read from the bucket too (each process copies it into $FLOQ_DATA_CACHE).
    dataset = f'{root}/data/{os.path.basename(tiny_npz)}'
    for local in (tiny_npz, tiny_npz.replace('.npz', '-val.npz')):
        storage.write_bytes(f'{root}/data/{os.path.basename(local)}', storage.read_bytes(local))
    monkeypatch.setenv('FLOQ_DATA_CACHE', str(tmp_path / 'cache'))
    args = offline_args(dataset, root, 'multi') + ['--noprogress']
    # 1. SIGTERM to process 1 only (after step 10): both processes stop at one step, save it, one line, exit 143.
    procs = start_pair('experiments.train_offline', args, pause_of=lambda i: 'term:10' if i == 1 else None)
    outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    assert [p.returncode for p in procs] == [PREEMPTED] * 2, [e[-2000:] for _, e in outs]
    lines = [last_line(err) for _, err in outs]
    assert lines[0] == lines[1] and lines[0].startswith('preempted (SIGTERM) at step '), lines
    assert 'Traceback' not in outs[0][1] + outs[1][1]
    step = int(lines[0].split('at step ')[1].split(':')[0])
    assert f'checkpoint {step} saved in {root}/multi/' in lines[0] and f'resume from step {step}' in lines[0]
    assert 10 <= step < 40 and storage.isfile(storage.join(seed_dir(root, 'multi', 1), 'checkpoints', str(step),
                                                            'commit_success.txt'))
    # 2. The same command again, paused after step 30 while holding the run dirs; a second live command is refused.
    procs = start_pair('experiments.train_offline', args, pause_of=lambda i: 30)
    try:
        for p in procs:
            wait_paused(p, 30)
        before = objects(f'{root}/multi')
        out = subprocess.run([sys.executable, '-m', 'experiments.train_offline', *args, '--cpu_devices=2'], cwd=REPO,
                             env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 2 and out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr[-2000:]
        assert 'is in use by another live run: host ' in out.stderr and f'pid {procs[0].pid} ' in out.stderr
        assert objects(f'{root}/multi') == before  # nothing written (lock.json heartbeats keep their names)
    finally:
        for p in procs:  # 3. SIGKILL both: their locks stay behind
            p.kill()
            p.wait()
    assert storage.isfile(storage.join(seed_dir(root, 'multi', 0), 'lock.json'))
    # 4. The same command resumes at once (the killed holder's pid is gone) and ends equal to the 1-process run.
    (_, err0), _ = finish(start_pair('experiments.train_offline', args))
    assert 'resuming from step 20 (checkpoint) of 40' in err0 or step > 20, err0[-2000:]
    assert_same_results(root, 'multi', single_gs, 'single')
    run = seed_dir(root, 'multi', 0)
    assert [name for name in storage.listdir(storage.join(run, 'tb')) if name.startswith('events.out.tfevents.')]
    assert not storage.exists(storage.join(run, 'lock.json'))  # released at the end
    assert not os.path.exists(os.path.join(REPO, 'gs:'))  # nothing went to a local folder named 'gs:'
    assert json.loads(storage.read_text(storage.join(run, 'flags.json')))['dataset_file'] == dataset
    # 5. report and evaluate read it there.
    out = subprocess.run([sys.executable, '-m', 'experiments.report', f'--runs={root}/multi'], cwd=REPO,
                         env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0 and storage.isfile(f'{root}/multi/results.md'), out.stderr[-2000:]
    import agents
    from floq_jax.training import evaluate

    summary = evaluate.evaluate_checkpoint(seed_dir(root, 'multi', 1), agents.agent_class, None, 1, [2], 'published')
    assert summary['step'] == 40 and storage.isfile(storage.join(seed_dir(root, 'multi', 1), 'evaluations',
                                                                 'step40.json'))


@pytest.mark.subprocess
def test_one_process_preempted_locked_killed_resumes_exactly(tiny_npz, tmp_path, single_gs):
    """One process on a local disk: a SIGTERM stops it at step 10 with a checkpoint and one line; the same command,
    paused after step 20 while it holds the run dirs, makes a second live command fail with one line naming the
    holder (nothing written); SIGKILLed, its lock does not block the resume, which ends with the same CSVs and
    checkpoints as the uninterrupted 1-process run on gs:// (``single_gs``).  The same sequence on gs:// is the
    2-process test above, so it is not repeated here for one process."""
    root = str(tmp_path)
    args = offline_args(tiny_npz, root, 'one') + ['--noprogress']
    proc = start_hooked('term:10', args)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == PREEMPTED and 'Traceback' not in err, err[-2000:]
    assert last_line(err) == (f'preempted (SIGTERM) at step 10: checkpoint 10 saved in {root}/one/{ENV}/floq/'
                              f'seed<k>/checkpoints; re-run the same command to resume from step 10')
    paused = start_hooked('20', args)
    try:
        wait_paused(paused, 20)
        before = objects(f'{root}/one')
        out = subprocess.run([sys.executable, '-m', 'experiments.train_offline', *args, '--cpu_devices=2'], cwd=REPO,
                             env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr[-2000:]
        assert 'is in use by another live run: host ' in out.stderr and f'pid {paused.pid} ' in out.stderr
        assert objects(f'{root}/one') == before
    finally:
        paused.kill()
        paused.wait()
    (_, err), = finish([start_single('experiments.train_offline', args)])
    assert 'resuming from step 20 (checkpoint) of 40' in err, err[-2000:]
    assert_same_results(root, 'one', single_gs, 'single')


@pytest.mark.subprocess
def test_offline_to_online_run_on_gcs(gcs, tiny_npz):
    """An offline-to-online run (its replay buffers checkpointed) writes and restores on gs:// as on a local disk."""
    import agents
    from floq_jax.training import restore

    root = f'gs://bkt/{uuid.uuid4().hex[:8]}'
    finish([start_single('experiments.train_offline_to_online', online_args(tiny_npz, root, 'o2o'))])
    run = seed_dir(root, 'o2o', 1)
    online = [r for r in rows(storage.join(run, 'train.csv')) if r.get('online/buffer_size')]
    assert [int(r['step']) for r in online] == [30, 40], online
    agent, state, _, step, _, flags = restore.load_run(run, agents.agent_class)
    assert step == 40 and flags['save_dir'] == root and int(state['extra'].size) == int(float(online[-1]['online/buffer_size']))


@pytest.mark.subprocess
def test_sigterm_at_the_last_step_ends_the_run_normally(tiny_npz, tmp_path):
    """A SIGTERM that arrives while the last piece of the run trains: the run is complete, so it ends as usual
    (exit 0), not as a preempted run to be resumed."""
    proc = start_hooked('term:40', offline_args(tiny_npz, str(tmp_path), 'last') + ['--noprogress'])
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0 and 'preempted' not in err, err[-2000:]


def test_a_device_out_of_memory_is_not_a_full_disk():
    """XLA reports a device OOM as RESOURCE_EXHAUSTED, as tensorstore does a failed write: only the latter is a full
    disk."""
    assert not storage.is_full_error(RuntimeError('RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.0GiB'))
    assert storage.is_full_error(RuntimeError('RESOURCE_EXHAUSTED: Error writing local file "x": [OS error 28]'))
    assert storage.is_full_error(OSError(28, 'No space left on device'))
    wrapped = ValueError('checkpoint failed')
    wrapped.__cause__ = OSError(28, 'No space left on device')
    assert storage.is_full_error(wrapped)


def test_a_path_never_decides_why_storage_failed():
    """The reason reads the error with the path taken out: a write probe's random hex holding '401' or '403' (CI
    once failed on it), or a bucket named like a status, is not a credentials error."""
    for hexpart in ('0401', 'a403b', '404'):
        probe = f'gs://no-such-bucket/runs/.floq_write_probe_{hexpart}{uuid.uuid4().hex}'
        for name in (probe, probe[len('gs://'):]):
            reason = storage._reason(FileNotFoundError(f'{name}'), probe)
            assert reason.startswith('the bucket does not exist (FileNotFoundError: '), reason
    bucket = 'gs://forbidden-401-credentials/runs'
    assert storage._reason(FileNotFoundError(bucket[len('gs://'):]), bucket).startswith('the bucket does not exist')
    assert storage._reason(RuntimeError(f'{bucket}: 403 Forbidden'), bucket).startswith('no usable credentials')
    assert storage._reason(OSError(f'{bucket}: Anonymous caller (401)'), bucket).startswith('no usable credentials')
    assert storage._reason(OSError(f'{bucket}: HTTP 404 bucket'), bucket).startswith('the bucket does not exist')
    assert storage._reason(OSError(f'{bucket}: timed out'), bucket) == f'OSError: {bucket}: timed out'


class _Refuse(BaseHTTPRequestHandler):
    """A storage endpoint that refuses every request as GCS does without credentials (401)."""

    def _refuse(self):
        body = json.dumps({'error': {'code': 401, 'message': 'Anonymous caller does not have storage.objects.create '
                                     'access (no credentials)'}}).encode()
        self.send_response(401)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _refuse

    def log_message(self, *args):
        pass


@pytest.mark.subprocess
def test_missing_bucket_or_credentials_one_line(gcs, tmp_path):
    def run(module, flag, **env):
        extra = [f'--env_name={ENV}'] if module == 'experiments.train_offline' else []
        out = subprocess.run([sys.executable, '-m', module, flag, *extra], cwd=REPO,
                             env=subprocess_env(**env), capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 2 and out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr[-2000:]
        return out.stderr.strip()

    line = run('experiments.train_offline', '--save_dir=gs://no-such-bucket/runs')
    assert line.startswith("error: --save_dir='gs://no-such-bucket/runs': ") and 'bucket does not exist' in line
    assert run('experiments.report', '--runs=gs://no-such-bucket/runs').startswith(
        'error: --runs=gs://no-such-bucket/runs: ')
    assert run('experiments.evaluate', '--run_dir=gs://no-such-bucket/runs/seed0').startswith(
        "error: --run_dir='gs://no-such-bucket/runs/seed0': ")
    server = HTTPServer(('127.0.0.1', 0), _Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f'http://127.0.0.1:{server.server_port}'
        line = run('experiments.train_offline', '--save_dir=gs://bkt/runs', STORAGE_EMULATOR_HOST=url)
    finally:
        server.shutdown()
    assert line.startswith("error: --save_dir='gs://bkt/runs': ") and 'no usable credentials' in line, line
    assert not os.path.exists(os.path.join(REPO, 'gs:'))


@pytest.mark.subprocess
def test_lock_staleness(tmp_path, monkeypatch):
    """A lock of a live process on this host blocks; one whose pid is gone does not; a lock from another host blocks
    until its heartbeat is older than FLOQ_LOCK_STALE_S."""
    from floq_jax.training import runlock

    d = str(tmp_path / 'seed0')
    os.makedirs(d)
    path = os.path.join(d, runlock.NAME)
    here = socket.gethostname()
    monkeypatch.setenv('FLOQ_LOCK_STALE_S', '60')

    def held_by(**record):
        with open(path, 'w') as f:
            json.dump({'started': time.time(), 'heartbeat': time.time(), 'token': 'x', **record}, f)
        try:
            runlock.RunLock([d]).acquire().release()
        except runlock.RunDirLocked as e:
            return str(e)
        assert not os.path.exists(path)
        return None

    sleeper = subprocess.Popen(['sleep', '60'])
    try:
        alive = dict(host=here, pid=sleeper.pid, pid_start=runlock._process_start(sleeper.pid))
        message = held_by(**alive)
        assert message and f'in use by another live run: host {here} pid {sleeper.pid} (started ' in message
    finally:
        sleeper.kill()
        sleeper.wait()
    assert held_by(**alive) is None  # its pid is gone
    assert held_by(host=here, pid=os.getpid(), pid_start='1') is None  # a reused pid (another start time)
    assert held_by(host='other-host', pid=1, pid_start='1') is not None
    assert held_by(host='other-host', pid=1, pid_start='1', heartbeat=time.time() - 61) is None


def test_lock_read_error_on_a_bucket_refuses_instead_of_taking_the_lock(monkeypatch):
    """A bucket that answers a lock read with an error says nothing about the holder: the run is refused (one line),
    the lock is not taken over as a stale one; a local lock is created whole (no partial file left beside it)."""
    from floq_jax.training import runlock

    def unavailable(path):
        raise OSError('503 Service Unavailable')

    monkeypatch.setattr(storage, 'read_text', unavailable)
    with pytest.raises(runlock.RunDirLocked, match='could not be read .*503'):
        runlock.RunLock(['gs://bkt/run/seed0'])._read('gs://bkt/run/seed0/lock.json')
    monkeypatch.undo()


def test_local_lock_is_created_whole_and_exclusively(tmp_path):
    from floq_jax.training import runlock

    lock = runlock.RunLock([str(tmp_path / 'seed0')])
    path = str(tmp_path / 'lock.json')
    assert lock._write(path, exclusive=True) and json.loads(open(path).read())['heartbeat'] > 0
    assert not lock._write(path, exclusive=True)            # a second exclusive create fails
    assert os.listdir(tmp_path) == ['lock.json']            # no temporary file left behind


@pytest.mark.subprocess
def test_full_disk_one_line_then_resume(tiny_npz, tmp_path, single_gs):
    """A 1000 KiB tmpfs holds checkpoint 20 but not 40: one line naming the disk, the run dir and step 20; after
    the disk grows, the same command resumes and ends equal to the uninterrupted run."""
    mount = tmp_path / 'disk'
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1000k', 'tmpfs', str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip('needs root to mount a tiny tmpfs')
    try:
        args = offline_args(tiny_npz, str(mount), 'full') + ['--noprogress']
        proc = start_single('experiments.train_offline', args)
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 1 and 'Traceback' not in err, err[-3000:]
        assert last_line(err).startswith(f'error: the disk mounted at {mount} ('), err[-2000:]
        assert (f'run dir {mount}/full/{ENV}/floq/seed<k>; the same command resumes from step 20 '
                f'(its newest complete checkpoint)') in last_line(err)
        subprocess.run(['mount', '-o', 'remount,size=8m', str(mount)], check=True)
        finish([start_single('experiments.train_offline', args)])
        assert_same_results(str(mount), 'full', single_gs, 'single')
    finally:
        subprocess.run(['umount', str(mount)])


@pytest.mark.subprocess
def test_reads_see_other_processes_writes(gcs):
    """gcsfs caches listings with object sizes: after a listing, an object another process rewrote longer must
    still read whole (a live run's CSV read by report, a lock's heartbeat)."""
    path = f'gs://bkt/{uuid.uuid4().hex[:8]}/a.csv'
    storage.write_text(path, 'step\n10\n')
    assert [f for _, _, f in storage.walk(storage.dirname(path))] == [['a.csv']]
    subprocess.run([sys.executable, '-c', f'from floq_jax import storage; storage.write_text({path!r}, '
                    f'"step\\n10\\n20\\n")'], cwd=REPO, env=subprocess_env(), check=True, timeout=TIMEOUT)
    assert storage.read_text(path) == 'step\n10\n20\n'


def test_a_bucket_dataset_is_downloaded_once_per_object_size(gcs, tmp_path, monkeypatch):
    """A gs:// dataset is copied into $FLOQ_DATA_CACHE once; later loads compare sizes from the object's metadata and
    download nothing until the object changes size."""
    from floq_jax.data import ogbench_io

    monkeypatch.setenv('FLOQ_DATA_CACHE', str(tmp_path / 'cache'))
    remote = f'gs://bkt/{uuid.uuid4().hex[:8]}/cube-single-play-v0.npz'
    storage.write_bytes(remote, b'first')
    reads = []
    read_bytes = storage.read_bytes
    monkeypatch.setattr(storage, 'read_bytes', lambda p: reads.append(p) or read_bytes(p))
    local = ogbench_io.local_copy(remote)
    assert open(local, 'rb').read() == b'first' and reads == [remote]
    assert ogbench_io.local_copy(remote) == local and reads == [remote]         # cached: nothing downloaded
    storage.write_bytes(remote, b'second!')
    assert open(ogbench_io.local_copy(remote), 'rb').read() == b'second!' and reads == [remote, remote]
