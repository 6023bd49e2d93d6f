"""Shared fixtures: small agent configs so every test runs in seconds on a 2-core CPU."""

import csv
import json
import os
import signal
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Compilation dominates almost every test (a few tiny updates per program), so everything compiles at XLA's cheapest
# CPU settings (CHEAP_XLA): optimisation level 0, no expensive LLVM passes, and the older per-op emitters instead of
# the fusion emitters (about half the compile time of a tiny update).  Runs compared with each other use the same
# flags, so comparisons stay exact.  The few in-process checks that run thousands of updates in one program pass
# ``DEFAULT_XLA_OPTIONS`` (XLA's own values of the same options) to that program's jit: at CHEAP_XLA they ran longer
# than the compile time saved.  The timings: docs/benchmark.md, "The measurements behind the code's defaults".
# FLOQ_TEST_FULL_XLA=1 compiles everything at XLA's defaults.
CHEAP_XLA = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True,
             'xla_cpu_use_fusion_emitters': False}
DEFAULT_XLA_OPTIONS = {'xla_backend_optimization_level': 3, 'xla_llvm_disable_expensive_passes': False,
                       'xla_cpu_use_fusion_emitters': True}
assert CHEAP_XLA.keys() == DEFAULT_XLA_OPTIONS.keys()
FAST_XLA = '' if os.environ.get('FLOQ_TEST_FULL_XLA') else \
    ' '.join(f'--{k}={str(v).lower()}' for k, v in CHEAP_XLA.items())

# Tests use the CPU; 8 virtual devices let the sharding tests build real meshes.
os.environ.setdefault('XLA_FLAGS', f'--xla_force_host_platform_device_count=8 {FAST_XLA}'.strip())
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# A suite started in the background (`make test &`, nohup, a CI runner's non-interactive shell) inherits an ignored
# SIGINT (and SIGQUIT), and a process keeps an ignored SIGINT across exec: every run the tests start would then ignore
# Ctrl-C, and the Ctrl-C test would wait forever for a SIGINT that was never delivered.  Take back the default
# (the controller sets it before starting the pytest-xdist workers; subprocesses get SIG_DFL, Python's handler).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# One persistent compilation cache for the whole session (the controller sets it; pytest-xdist workers and every
# subprocess inherit it), so a program compiled by one test is loaded by the next; never the user's own cache.
if 'FLOQ_COMPILE_CACHE' not in os.environ:
    os.environ['FLOQ_COMPILE_CACHE'] = tempfile.mkdtemp(prefix='floq_jax_test_compile_cache_')


def subprocess_env(**extra):
    """The environment of an entrypoint run in a subprocess: the repo importable, the CPU, FAST_XLA, and no forced
    device count (the devices come from the run's flags, as in a user's run)."""
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu', **extra)
    env['XLA_FLAGS'] = f'{FAST_XLA} {extra.get("XLA_FLAGS", "")}'.strip()
    return env

# Rendering (evaluation videos) without a display: pick EGL / OSMesa before anything imports MuJoCo, as the
# entrypoints do.
from floq_jax.console import quiet_setup  # noqa: E402

quiet_setup()

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import agents  # noqa: E402
from floq_jax.scaling import scaled_config  # noqa: E402
from floq_jax.training import compile_cache  # noqa: E402

compile_cache.enable(compile_cache.default_dir())  # in-process tests share the session's cache too


def _starts_python(args) -> bool:
    """Whether a Popen argv runs Python code of its own (a module or a script); a library's one-line ``python -c``
    probe (glfw asks a child interpreter for the GLFW version when MuJoCo renders) does not count."""
    argv = args.split() if isinstance(args, str) else [args] if isinstance(args, (bytes, os.PathLike)) else list(args)
    argv = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in argv]
    return bool(argv) and os.path.basename(argv[0]).startswith('python') and argv[1:2] != ['-c']


@pytest.fixture(autouse=True)
def _process_tests_are_marked(request, monkeypatch):
    """A test that starts a Python process (an entrypoint or script in a subprocess, a second JAX process, env or
    dataset worker processes) must carry ``@pytest.mark.subprocess``, so ``make test-fast`` (``-m "not slow and not subprocess"``)
    leaves exactly those out; an unmarked one fails here, naming the marker.  Other binaries (ffmpeg for videos, the
    GCS emulator) are not counted."""
    if request.node.get_closest_marker('subprocess') is not None:
        yield
        return
    import multiprocessing.process
    import subprocess

    def refuse(what):
        pytest.fail(f'{request.node.nodeid} starts {what}: mark it @pytest.mark.subprocess (tests/conftest.py)',
                    pytrace=False)

    real_popen_init, real_start = subprocess.Popen.__init__, multiprocessing.process.BaseProcess.start

    def popen_init(self, args, *a, **k):
        if _starts_python(args):
            refuse(f'a Python subprocess ({args if isinstance(args, str) else " ".join(map(str, args))[:80]})')
        real_popen_init(self, args, *a, **k)

    def start(self):
        refuse('a multiprocessing worker process')
        real_start(self)

    monkeypatch.setattr(subprocess.Popen, '__init__', popen_init)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, 'start', start)
    yield


@pytest.fixture(scope='module')
def tiny_npz(tmp_path_factory):
    """A generated 1-episode (30-step) cube-single-play-v0 dataset file, one per test module."""
    from floq_jax.data import ensure_generated_dataset

    return ensure_generated_dataset('cube-single-play-v0', num_episodes=1, seed=0, max_episode_steps=30,
                                    cache_dir=str(tmp_path_factory.mktemp('tiny_data')), num_workers=1)


TINY_VISUAL = dict(dataset='visual-cube-single-play-v0', task='visual-cube-single-play-singletask-task2-v0',
                   num_episodes=2, max_episode_steps=10)


@pytest.fixture(scope='session')
def tiny_visual_dataset(tmp_path_factory):
    """A generated pixel dataset, once per session (per pytest-xdist worker): visual-cube-single-play-v0, 2 train + 1
    validation episodes of 10 steps, observations uint8 [N, 64, 64, 3] rendered offscreen (MUJOCO_GL, EGL here),
    seed 0, one process.  Returns the train '.npz' path; load it with ``load_offline_data(TINY_VISUAL['task'],
    dataset_path=...)``.  Fails with the one-line reason when MuJoCo cannot render here (`make render-deps`)."""
    from floq_jax.data import ensure_generated_dataset

    return ensure_generated_dataset(TINY_VISUAL['dataset'], num_episodes=TINY_VISUAL['num_episodes'], seed=0,
                                    max_episode_steps=TINY_VISUAL['max_episode_steps'], num_workers=1,
                                    cache_dir=str(tmp_path_factory.mktemp('tiny_visual')))


@pytest.fixture(scope='module')
def smoke_dirs(tmp_path_factory):
    """Run and dataset-cache directories shared by one test module's smoke runs (tests/sweep_smoke.py)."""
    return dict(save_dir=str(tmp_path_factory.mktemp('sweeps')), data=str(tmp_path_factory.mktemp('data_cache')))


def scaled(agent='floq', scale: str = 'tiny', **overrides):
    """``agent``'s default config (a name in ``agents.get_config``, or a config) shrunk to ``scale`` by
    ``floq_jax.scaling.scaled_config`` ('tiny' 16-wide, 'small' 32-wide, 'medium' 64-wide), with the reward range
    [-1, 0] (tests' batches have rewards there), then ``overrides``: the one source of the tests' small configs."""
    config = agents.get_config(agent) if isinstance(agent, str) else agent
    return scaled_config(config, scale, **{'r_min': -1.0, 'r_max': 0.0, **overrides})


def scaled_flags(agent: str = 'floq', scale: str = 'small', **overrides):
    """The ``--agent.<key>=<value>`` flags that turn ``agent``'s default config into ``scaled(agent, scale)`` (the
    reward range is left to the run), for the tests that start entrypoints."""
    default, config = agents.get_config(agent), scaled_config(agents.get_config(agent), scale, **overrides)
    fmt = lambda v: '(' + ','.join(map(str, v)) + ')' if isinstance(v, tuple) else str(v)
    return [f'--agent.{k}={fmt(config[k])}' for k in config if config[k] != default[k]]


def small_floq_config(**overrides):
    """floq at the 'medium' scale (64-wide, batch 64, noise_samples 4) with K = 4."""
    return scaled('floq', 'medium', **{'critic_flow_steps': 4, **overrides})


def tiny_cube_run(cache_dir, env_name='cube-single-play-singletask-task1-v0'):
    """(data, config) of the tiniest in-process training run: a generated 2-episode cube-single dataset (50 steps each)
    and a 16-wide floq config with its reward range set."""
    from floq_jax.data import ensure_generated_dataset, load_offline_data
    from floq_jax.training import runner

    path = ensure_generated_dataset('cube-single-play-v0', num_episodes=2, seed=0, max_episode_steps=50,
                                    cache_dir=str(cache_dir), num_workers=1)
    data = load_offline_data(env_name, dataset_path=path)
    config = scaled('floq', 'tiny', actor_hidden_dims=(16,), value_hidden_dims=(16,), noise_samples=1)
    runner.set_reward_range(config, data)
    return data, config


def small_fql_config(**overrides):
    """FQL at the 'medium' scale (64-wide, batch 64)."""
    return scaled('fql', 'medium', **overrides)


def random_batch(rng: np.random.Generator, batch_size=64, ob_dim=6, action_dim=2):
    """A batch of random transitions (float32) with rewards in [-1, 0] and masks of 1."""
    obs = rng.normal(size=(batch_size, ob_dim)).astype(np.float32)
    return dict(
        observations=jnp.asarray(obs),
        actions=jnp.asarray(rng.uniform(-1, 1, size=(batch_size, action_dim)).astype(np.float32)),
        rewards=jnp.asarray(-rng.uniform(0, 1, size=(batch_size,)).astype(np.float32)),
        masks=jnp.ones((batch_size,), jnp.float32),
        next_observations=jnp.asarray(rng.normal(size=(batch_size, ob_dim)).astype(np.float32)),
    )


@pytest.fixture
def np_rng():
    return np.random.default_rng(0)


def read_csv(path):
    """A run's train.csv / eval.csv as a list of row dicts (strings, as written)."""
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def digest(run, step):
    """The state digest recorded in seed run dir ``run``'s checkpoint at ``step`` (its orbax metadata)."""
    with open(os.path.join(run, 'checkpoints', str(step), 'metadata', 'metadata')) as f:
        return json.load(f)['__floq_checkpoint_digest__']


def tb_events(log_dir):
    """[(step, Summary.Value)] of every event file in ``log_dir`` (tensorboardX's TFRecord framing + Event protos)."""
    import glob
    import struct

    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(glob.glob(os.path.join(log_dir, 'events.out.tfevents.*'))):
        with open(path, 'rb') as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack('<Q', data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            out += [(event.step, v) for v in event.summary.value]
    return out


@pytest.fixture(scope='session')
def gcs():
    """One local GCS emulator (fake-gcs-server) for the whole test session (per pytest-xdist worker), with a bucket
    'bkt'; its variables (``gcs.env()``, tests/gcs_emulator.py) are set in os.environ meanwhile, so this process and
    the runs it starts (``subprocess_env``) reach it."""
    from tests.gcs_emulator import Emulator

    with Emulator() as emulator:
        emulator.make_bucket('bkt')
        saved = {k: os.environ.get(k) for k in emulator.env()}
        os.environ.update(emulator.env())
        try:
            yield emulator
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
