"""The run's composition as library functions (floq_jax.training.compose, training.devices) and the entrypoints'
error handling around it (experiments.errors.run_cli, the sweeps' main): no training here, seconds each."""

import subprocess
import sys
import types

import numpy as np
import pytest

from tests.conftest import REPO, subprocess_env

ENV = 'cube-single-play-singletask-task2-v0'  # published floq values: alpha 300, block_depth 2


def _data(rewards):
    return types.SimpleNamespace(train={'rewards': np.asarray(rewards, np.float32)})


def test_agent_config_precedence():
    """defaults < published preset (except the user's keys and the overrides) < sizes < overrides; then r_min /
    r_max from the data; the returned dict is what the preset set."""
    import agents
    from floq_jax.training import compose

    config = agents.get_config('floq')
    default_alpha = config.alpha
    applied = compose.agent_config(config, ENV, 'published', 'offline', user_keys=(),
                                   sizes={'block_depth': 3, 'batch_size': 8, 'noise_samples': 4, 'not_a_key': 1},
                                   overrides={'noise_samples': 2}, data=_data([-1.0, -1.0]))
    assert applied == {'alpha': 300.0, 'block_depth': 2}
    assert (config.alpha, config.block_depth, config.batch_size, config.noise_samples) == (300.0, 3, 8, 2)
    assert 'not_a_key' not in config
    assert (config.r_min, config.r_max) == (-1.0, 0.0)  # the published range includes 0

    config = agents.get_config('floq')
    applied = compose.agent_config(config, ENV, 'published', user_keys=('alpha',), overrides={'block_depth': 4})
    assert applied == {} and config.alpha == default_alpha and config.block_depth == 4
    config = agents.get_config('floq')
    assert compose.agent_config(config, ENV, None, overrides={'alpha': 5.0}) == {} and config.alpha == 5.0
    with pytest.raises(ValueError, match="config has no key 'nope'"):
        compose.agent_config(agents.get_config('floq'), ENV, None, overrides={'nope': 1})


def test_sweep_config_is_the_cli_composition():
    """A sweep's run config is compose.agent_config's: the same values as the training entrypoints' for the same
    preset and overrides."""
    import agents
    from floq_jax import sweeps
    from floq_jax.training import compose

    data = _data([-1.0, 0.0, -1.0])
    via_sweep = sweeps.make_config(sweeps.Variant('v', 'floq', {'alpha': 10.0}), ENV, 'paper', agents, data)
    direct = agents.get_config('floq')
    compose.agent_config(direct, ENV, 'published', overrides={'alpha': 10.0}, data=data)
    assert via_sweep.to_dict() == direct.to_dict() and via_sweep.block_depth == 2 and via_sweep.alpha == 10.0
    via_sweep = sweeps.make_config(sweeps.Variant('v', 'floq', {'batch_size': 16}), ENV, 'smoke', agents, data)
    direct = agents.get_config('floq')
    compose.agent_config(direct, ENV, None, scale='smoke', overrides={'batch_size': 16}, data=data)
    assert via_sweep.to_dict() == direct.to_dict() and via_sweep.block_width == 32 and via_sweep.batch_size == 16


def test_load_data_without_generation_names_the_missing_file(tmp_path):
    from floq_jax.data import DatasetError
    from floq_jax.training import compose

    with pytest.raises(DatasetError, match='not found'):
        compose.load_data(ENV, compose.DataSource(dataset_dir=str(tmp_path)))
    from floq_jax import sweeps

    assert sweeps.SweepData().generate and not compose.DataSource().generate


def test_train_refuses_an_unknown_mode():
    from floq_jax.training import compose

    with pytest.raises(ValueError, match="mode='online': accepted: offline, offline_to_online"):
        compose.train(None, None, None, None, mode='online')


def test_device_description_is_one_line():
    from floq_jax.training import devices

    info = devices.device_info()
    assert {'platform', 'device_kind', 'num_devices', 'jax_version', 'cpu_cores'} <= set(info)
    assert devices.device_description(info) == (f'{info["platform"]} ({info["num_devices"]} device(s), '
                                                f'{info["cpu_cores"]} CPU cores visible)')


def test_closed_loop_filter_only_after_the_body_failed(monkeypatch):
    """run_cli drops orbax's 'Event loop is closed' reports only once its body has failed (they follow a failed
    checkpoint write whose error was reported); after a normal end every unraisable exception is reported."""
    from experiments import errors

    seen = []
    monkeypatch.setattr(sys, 'unraisablehook', seen.append)
    errors.run_cli(lambda: None)
    assert sys.unraisablehook == seen.append  # a normal end installs nothing

    def body():
        raise errors.UsageError('--x=1: bad')

    with pytest.raises(SystemExit) as e:
        errors.run_cli(body)
    assert e.value.code == 2
    closed = types.SimpleNamespace(exc_value=RuntimeError('Event loop is closed'))
    other = types.SimpleNamespace(exc_value=RuntimeError('something else'))
    sys.unraisablehook(closed)
    sys.unraisablehook(other)
    assert seen == [other]


SWEEP_SCRIPT = '''
import sys
from absl import flags
from experiments import sweep_cli
from floq_jax import sweeps
from floq_jax.training import runlock

sweep_cli.define_flags()
flags.FLAGS(['sweep', '--save_dir=' + sys.argv[1]])

def locked(sweep, source, log=print):
    raise runlock.RunDirLocked('run dir x is held by another live run (pid 1)')

sweeps.run_sweep = locked
sweep, source = sweep_cli.sweep_from_flags('s', [sweeps.Variant('floq')], [sweeps.SMOKE_ENV], registry=None)
sweep_cli.main(sweep, source)
'''


def test_sweep_errors_are_the_cli_errors(tmp_path):
    """A sweep ends on a run directory another live run holds as the training entrypoints do (run_cli: one line,
    exit code 2), not with a traceback."""
    out = subprocess.run([sys.executable, '-c', SWEEP_SCRIPT, str(tmp_path)], cwd=REPO, env=subprocess_env(),
                         capture_output=True, text=True, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and lines == ['error: run dir x is held by another live run (pid 1)'], out.stderr[-3000:]


# The same run asked for through the offline-to-online CLI's flags and through a sweep ('paper' preset, the sweep's
# own options): both build RunOptions with floq_jax.training.options.build_run_options.
OPTIONS_SCRIPT = '''
import dataclasses, json, sys
from absl import flags
from experiments import common, train_offline_to_online  # noqa: F401 - defines the entrypoint's flags
from floq_jax import sweeps

save_dir, env = sys.argv[1], sys.argv[2]
same = dict(seed=3, num_seeds=2, offline_steps=40, online_steps=20, steps_per_call=5, log_interval=10,
            eval_interval=20, save_interval=20, eval_episodes=3, eval_protocol='deterministic', success_timing='pre',
            eval_seeding='fixed', eval_at_start=False, eval_num_envs=2, resume=False, tensorboard=False,
            video_episodes=1, video_frame_skip=2, max_checkpoints=1, progress=False, host_sampling=True,
            seed_loop='vmap', utd_ratio=4, buffer_size=5000, balanced_sampling=True)
fmt = lambda v: str(v).lower() if isinstance(v, bool) else str(v)
flags.FLAGS(['x', f'--env_name={env}', f'--save_dir={save_dir}', '--run_group=s/v', '--eval_num_steps=1,4',
             *[f'--{k}={fmt(v)}' for k, v in same.items()]])
cli = common.common_options()
sweep = sweeps.Sweep(name='s', variants=[], envs=[env], preset='paper', mode='offline_to_online',
                     options=dict(same, eval_num_steps=[1, 4]), save_dir=save_dir)
swept = sweeps.run_options(sweep, sweeps.Variant('v', 'floq'), env)
print(json.dumps([dataclasses.asdict(cli), dataclasses.asdict(swept)], default=str))
'''


@pytest.mark.subprocess
def test_sweep_and_cli_build_equal_run_options(tmp_path):
    """For the same inputs, a sweep's RunOptions (floq_jax.sweeps.run_options) equal the CLI's
    (experiments.common.common_options): one builder, floq_jax.training.options.build_run_options.  Only flags.json's
    extra record differs (the sweep's variant; the CLI adds its flags after building)."""
    import json

    out = subprocess.run([sys.executable, '-c', OPTIONS_SCRIPT, str(tmp_path / 'runs'), ENV], cwd=REPO,
                         env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    cli, swept = json.loads(out.stdout.strip().splitlines()[-1])
    assert cli.pop('flags') == {}
    assert swept.pop('flags') == dict(variant='v', sweep='s', preset='paper', sweep_agent='floq', cpu_devices=1)
    assert cli == swept
    assert (cli['online_steps'], cli['utd_ratio'], cli['eval_num_steps'], cli['run_group']) == (20, 4, [1, 4], 's/v')


def test_build_run_options_names_unknown_and_bad_options():
    import warnings

    from floq_jax.training.options import OptionError, UnknownOptions, build_run_options

    with pytest.raises(UnknownOptions, match=r"runner option\(s\) \['nope'\]"):
        build_run_options(ENV, {'nope': 1})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        o = build_run_options(ENV, {'nope': 1, 'num_seeds': 2}, {'k': 1}, optional={'nope'})
    assert (o.env_name, o.num_seeds, o.flags) == (ENV, 2, {'k': 1}) and 'nope' in str(seen[0].message)
    with pytest.raises(OptionError, match='num_seeds=0: must be a positive integer'):
        build_run_options(ENV, {'num_seeds': 0})
