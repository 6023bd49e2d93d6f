"""The agent as the unit of extension (issue 32): an agent file anywhere on disk trains, resumes and is evaluated with
no edit to the project; its config's declared ranges give one-line errors; the registry knows each agent once."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import agents
from agents import floq, fql
from floq_jax import agent_registry, presets
from floq_jax.scaling import scaled_config
from tests.conftest import REPO, scaled_flags, subprocess_env

ENV = 'cube-single-play-singletask-task1-v0'
TINY_FQL_FLAGS = scaled_flags('fql', 'tiny')
RUN_FLAGS = ['--eval_episodes=1', '--eval_interval=4', '--log_interval=2', '--save_interval=4', '--steps_per_call=2',
             '--noprogress', '--notensorboard', '--eval_at_start=False']


def run(args, module='experiments.train_offline', timeout=300):
    return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, env=subprocess_env(), capture_output=True,
                          text=True, timeout=timeout)


def error_lines(out):
    return [line for line in out.stderr.splitlines() if line.startswith('error:')]


def copy_fql(directory, name='my_fql', class_name='MyFQLAgent'):
    """agents/fql.py saved elsewhere under a new agent_name and class name: the simplest researcher's agent file."""
    path = os.path.join(str(directory), f'{name}.py')
    text = open(os.path.join(REPO, 'agents', 'fql.py')).read()
    text = text.replace("agent_name='fql'", f"agent_name='{name}'").replace('FQLAgent', class_name)
    with open(path, 'w') as f:
        f.write(text)
    return path


@pytest.fixture(scope='module')
def tiny_npz(tmp_path_factory):
    from floq_jax.data import ensure_generated_dataset

    return ensure_generated_dataset('cube-single-play-v0', num_episodes=1, seed=0, max_episode_steps=30,
                                    cache_dir=str(tmp_path_factory.mktemp('agent_file_data')), num_workers=1)


# ----------------------------------------------------------------------------- the registry
def test_one_registry_one_class_per_agent():
    reg = agent_registry.registered()
    assert {'floq', 'fql', 'fql_resnet', 'fql_iqn'} <= set(reg)
    assert reg['fql'].cls is reg['fql_resnet'].cls is reg['fql_iqn'].cls is fql.FQLAgent
    assert reg['floq'].cls is floq.FloqAgent
    assert agents.get_config('fql_iqn').to_dict() == fql.get_config('iqn').to_dict()
    assert agents.get_config('agents/fql.py:resnet_depth4x2').critic_resnet_blocks == 2
    with pytest.raises(ValueError, match="unknown agent_name 'nope'; accepted: floq, fql, fql_iqn, fql_resnet"):
        agents.agent_class('nope')


def test_fql_and_fql_iqn_do_not_import_each_other():
    import ast

    def imports(name):
        tree = ast.parse(open(os.path.join(REPO, 'agents', f'{name}.py')).read())
        return {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == 'agents'
                for a in n.names}

    assert 'fql_iqn' not in imports('fql') and 'floq' not in imports('fql')


def test_published_tables_come_from_the_agent():
    hl = 'humanoidmaze-large-navigate-singletask-v0'
    assert presets.published_overrides(hl, 'floq', 'offline_to_online')['critic_flow_steps'] == 16
    assert presets.published_overrides(hl, 'fql_resnet')['alpha'] == 20.0
    assert presets.published_overrides(hl, 'fql')['alpha'] == 30.0
    assert presets.published_overrides('antmaze-giant-navigate-singletask-v0', 'fql_iqn')['batch_size'] == 512


def test_update_flops_analytic_or_xla():
    import jax.numpy as jnp

    from floq_jax.core import flops

    c = scaled_config(fql.get_config('iqn'), 'tiny', iqn_num_cosines=4)
    agent = fql.FQLAgent.create(0, jnp.zeros((1, 3)), jnp.zeros((1, 2)), c)
    assert fql.FQLAgent.analytic_update_flops(agent.config) is None  # IQN declares none: XLA's count
    assert flops.update_flops(agent) > 1000  # one compile of the update on a batch of zeros


# ----------------------------------------------------------------------------- config ranges
@pytest.mark.parametrize('get_config', [floq.get_config, fql.get_config, lambda: fql.get_config('iqn')])
def test_declared_ranges_accept_the_defaults_and_name_a_bad_key(get_config):
    c = get_config()
    agent_registry.check_config(c)  # the published defaults pass
    if c.agent_name == 'floq':  # its value support r / (1 - discount) needs discount < 1; coverage 0 is a point
        with pytest.raises(agent_registry.AgentFileError, match=r'discount=1.0: accepted: a number in \[0, 1\)'):
            agent_registry.check_config(dict(c.to_dict(), discount=1.0), floq.CONFIG_RANGES)
        agent_registry.check_config(dict(c.to_dict(), noise_coverage=0.0), floq.CONFIG_RANGES)
    discount = 'a number in [0, 1)' if c.agent_name == 'floq' else 'a number in [0, 1]'
    for key, bad, accepted in (('batch_size', 0, 'an integer >= 1'), ('discount', 1.5, discount),
                               ('actor_hidden_dims', (0,), 'a non-empty tuple of integers >= 1'),
                               ('lr', -1.0, 'a number in (0, inf)'), ('q_agg', 'max', "one of 'mean', 'min'")):
        c2 = get_config()
        c2[key] = bad
        with pytest.raises(agent_registry.AgentFileError) as e:
            agent_registry.check_config(c2)
        assert str(e.value).startswith(f'--agent.{key}={bad!r}: accepted: {accepted}'), str(e.value)


@pytest.mark.subprocess
@pytest.mark.parametrize('flag,expected', [
    ('--agent.batch_size=0', 'error: --agent.batch_size=0: accepted: an integer >= 1'),
    ('--agent.noise_samples=0', 'error: --agent.noise_samples=0: accepted: an integer >= 1'),
    ('--agent.critic_flow_steps=0', 'error: --agent.critic_flow_steps=0: accepted: an integer >= 1'),
    ('--agent.actor_hidden_dims=(0,)', 'error: --agent.actor_hidden_dims=(0,): accepted: a non-empty tuple of '
                                       'integers >= 1, e.g. (512, 512)'),
    ('--agent.discount=1.5', 'error: --agent.discount=1.5: accepted: a number in [0, 1)'),  # floq: r / (1 - gamma)
])
def test_bad_agent_value_is_one_line_exit_2_nothing_written(tmp_path, flag, expected):
    save_dir = tmp_path / 'runs'
    out = run([f'--env_name={ENV}', flag, f'--save_dir={save_dir}', f'--dataset_dir={tmp_path / "none"}'])
    assert out.returncode == 2 and error_lines(out) == [expected], out.stderr[-2000:]
    assert 'Traceback' not in out.stderr and not save_dir.exists() and not (tmp_path / 'none').exists()


@pytest.mark.subprocess
def test_bad_value_in_a_researchers_own_file(tmp_path):
    path = copy_fql(tmp_path)
    save_dir = tmp_path / 'runs'
    out = run([f'--env_name={ENV}', f'--agent={path}', '--agent.discount=1.5', f'--save_dir={save_dir}'])
    assert out.returncode == 2 and error_lines(out) == ['error: --agent.discount=1.5: accepted: a number in [0, 1]']
    assert not save_dir.exists()


def test_copy_under_a_taken_agent_name_is_refused(tmp_path):
    path = os.path.join(str(tmp_path), 'fql_copy.py')
    shutil.copy(os.path.join(REPO, 'agents', 'fql.py'), path)
    with pytest.raises(agent_registry.AgentFileError, match="agent_name 'fql' is taken by .*agents/fql.py"):
        agent_registry.load_agent_file(path)


# ----------------------------------------------------------------------------- an agent file anywhere on disk
@pytest.mark.subprocess
def test_copied_fql_file_trains_resumes_and_is_evaluated(tmp_path, tiny_npz):
    """agents/fql.py copied outside the project under agent_name 'my_fql' and class MyFQLAgent: trains through the
    CLI, resumes, and experiments.evaluate finds its class again from the run directory's flags.json."""
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    path = copy_fql(elsewhere)
    save_dir = tmp_path / 'runs'
    common = [f'--env_name={ENV}', f'--agent={path}', *TINY_FQL_FLAGS, f'--dataset_path={tiny_npz}',
              f'--save_dir={save_dir}', *RUN_FLAGS]
    first = run([*common, '--offline_steps=4'])
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = save_dir / 'default' / ENV / 'my_fql' / 'seed0'
    record = json.loads((run_dir / 'flags.json').read_text())
    assert record['agent']['agent_name'] == 'my_fql' and record['agent_file'] == path
    assert re.fullmatch('[0-9a-f]{64}', record['agent_file_sha256'])
    second = run([*common, '--offline_steps=8'])
    assert second.returncode == 0, second.stderr[-3000:]
    steps = [int(line.split(',')[0]) for line in (run_dir / 'eval.csv').read_text().splitlines()[1:]]
    assert steps == [4, 8], steps  # resumed at 4, not retrained from 0
    evaluated = run([f'--run_dir={run_dir}', '--eval_episodes=1'], module='experiments.evaluate')
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert 'success' in evaluated.stdout + evaluated.stderr


def test_run_dir_written_before_the_change_resolves():
    """flags.json written at 36b6098 (the agent config in full, no agent_file) for fql_resnet and fql_iqn: the
    registry resolves their agent_name to the one FQL class, with the critic component their keys choose."""
    old = {'agent_name': 'fql_resnet', 'critic_use_resnet': True}
    assert agent_registry.class_for_run('fql_resnet', {'agent': old}) is fql.FQLAgent
    assert agent_registry.class_for_run('fql_iqn', {'agent': {}}, agents.agent_class) is fql.FQLAgent
    with pytest.raises(ValueError, match="unknown agent_name 'gone': the run's agent file /no/such/file.py"):
        agent_registry.class_for_run('gone', {'agent_file': '/no/such/file.py'})


def test_an_agent_file_edited_since_the_run_loads_with_a_warning(tmp_path):
    src = open(os.path.join(REPO, 'examples', 'midpoint_floq.py')).read()
    path = tmp_path / 'edited_agent.py'
    path.write_text(src.replace("'midpoint_floq'", "'edited_floq'").replace('MidpointFloqAgent', 'EditedFloqAgent'))
    flags = agent_registry.file_record(str(path))
    path.write_text(path.read_text() + '\n# edited after training\n')
    with pytest.warns(UserWarning, match='changed since the run was written'):
        cls = agent_registry.class_for_run('edited_floq', flags)
    assert cls.__name__ == 'EditedFloqAgent'


def test_default_configs_are_those_run_dirs_recorded_before_the_change():
    """flags.json's 'agent' (the full config) identifies a run directory: the project's configs must stay those of
    36b6098, so run directories it wrote resume (tests/data/agent_configs_36b6098.json, written from a checkout of
    36b6098 by get_config() of each file and variant)."""
    with open(os.path.join(REPO, 'tests', 'data', 'agent_configs_36b6098.json')) as f:
        recorded = json.load(f)
    from agents import fql_iqn

    now = {'floq': floq.get_config(), 'fql_iqn.py': fql_iqn.get_config(),
           **{f'fql:{v}': fql.get_config(v) for v in ('', 'resnet', 'resnet_depth2x4', 'resnet_depth4x2',
                                                     'resnet_flop_matched', 'iqn')}}
    # Keys added since with a None default (config.encoder, for pixels) read as None in an old run's config
    # (floq_jax.training.rundirs.added_keys_read_as_none; tests/test_pixel_sampling.py resumes such a run dir).
    from floq_jax.training.rundirs import added_keys_read_as_none

    now = {k: json.loads(json.dumps(c.to_dict())) for k, c in now.items()}
    assert {k: added_keys_read_as_none(recorded[k], c) for k, c in now.items()} == recorded
    assert {key for k, c in now.items() for key in set(c) - set(recorded[k])} == {'encoder'}


# ----------------------------------------------------------------------------- docs/extending.md's example
def test_midpoint_floq_example_trains_evaluates_and_reports(tmp_path):
    """examples/midpoint_floq.py, the file docs/extending.md walks through: its integrator is the midpoint rule, and
    it trains, is evaluated from its checkpoint (class found from flags.json's agent_file) and is a report row."""
    import jax.numpy as jnp
    import numpy as np

    from floq_jax.analysis import report
    from floq_jax.training import evaluate, runner
    from floq_jax.training.options import RunOptions
    from tests.conftest import tiny_cube_run

    spec = os.path.join(REPO, 'examples', 'midpoint_floq.py')
    entry = agent_registry.load_agent_file(spec)
    assert entry.name == 'midpoint_floq' and entry.cls.__name__ == 'MidpointFloqAgent'
    data, config = tiny_cube_run(tmp_path / 'cache')
    config.agent_name = 'midpoint_floq'
    agent = entry.cls.create(0, jnp.zeros((2, 3)), jnp.zeros((2, 2)), config)
    # The midpoint rule on the network's own field, by hand: two evaluations per step.
    obs, act, z0 = jnp.ones((4, 3)), jnp.zeros((4, 2)), jnp.linspace(-1.0, 0.0, 4)
    def v(t, z):
        return agent.modules['critic_flow'].apply({'params': agent.params['critic_flow']}, obs, act, z, t)

    z, h = jnp.broadcast_to(z0, (2, 4)), 0.5
    for k in range(2):
        z = z + h * v(jnp.float32(k * h + h / 2), z + h / 2 * v(jnp.float32(k * h), z))
    np.testing.assert_allclose(agent.integrate(agent.params['critic_flow'], obs, act, z0, 2), z, rtol=1e-5, atol=1e-6)

    options = RunOptions(env_name=ENV, num_seeds=1, offline_steps=4, steps_per_call=2, log_interval=2, eval_interval=4,
                         save_interval=4, eval_episodes=1, eval_at_start=False, save_dir=str(tmp_path / 'runs'),
                         tensorboard=False, progress=False, use_mesh=False, log_diagnostics=False,
                         eval_kwargs=dict(vector_mode='sync', max_episode_steps=5),
                         flags=agent_registry.file_record(spec))
    (run_dir,) = runner.run_offline(entry.cls, config, data, options)
    assert run_dir.endswith(os.path.join(ENV, 'midpoint_floq', 'seed0'))
    agent_registry._REGISTRY.pop('midpoint_floq')  # as in a fresh process: only flags.json knows the file
    summary = evaluate.evaluate_checkpoint(run_dir, agents.agent_class, eval_episodes=1, dataset_path=data.dataset_file)
    assert summary['step'] == 4 and 'midpoint_floq' in agent_registry.registered()
    paths = report.write_report(str(tmp_path / 'runs'), reps=10)
    assert '| midpoint_floq |' in open(paths['results.md']).read().replace('`', '')


def test_a_sweep_variant_can_name_an_agent_file():
    from floq_jax import sweeps

    spec = os.path.join(REPO, 'examples', 'midpoint_floq.py')
    variant = sweeps.Variant('midpoint', spec, {'critic_flow_steps': 2})
    assert sweeps.agent_available(variant.agent, agents) is None
    config = sweeps.make_config(variant, sweeps.SMOKE_ENV, 'smoke', agents)
    assert config.agent_name == 'midpoint_floq' and config.critic_flow_steps == 2
    assert agent_registry.class_for_run('midpoint_floq', {'sweep_agent': spec}).__name__ == 'MidpointFloqAgent'
    with pytest.raises(agent_registry.AgentFileError, match=r'--agent.critic_flow_steps=0: accepted: an integer >= 1'):
        sweeps.make_config(sweeps.Variant('bad', spec, {'critic_flow_steps': 0}), sweeps.SMOKE_ENV, 'smoke', agents)


# ----------------------------------------------------------------------------- an agent file in a sweep, via the CLI
@pytest.mark.subprocess
def test_agent_file_runs_as_a_sweep_variant_through_the_cli(tmp_path):
    """examples/midpoint_floq.py copied outside the project and passed to a sweep entrypoint as --agent=<file>: it
    trains at the smoke scale beside floq, and its rows are in the sweep's report CSV and per-seed CSV."""
    import pandas as pd

    from floq_jax import sweeps

    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    path = elsewhere / 'midpoint_floq.py'
    shutil.copy(os.path.join(REPO, 'examples', 'midpoint_floq.py'), path)
    save_dir = tmp_path / 'sweeps'
    out = run(['--scale=smoke', f'--save_dir={save_dir}', f'--cache_dir={tmp_path / "data"}', '--cpu_devices=1',
               f'--agent={path}', '--variants=floq,midpoint_floq', '--num_seeds=1', '--offline_steps=50'],
              module='experiments.main_table', timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    root = save_dir / 'main_table'
    results = pd.read_csv(root / 'results.csv')
    assert {'floq', 'midpoint_floq'} <= set(results.astype(str).values.ravel()), results
    per_seed = pd.read_csv(root / sweeps.PER_SEED_FILE)
    assert sorted(per_seed['variant']) == ['floq', 'midpoint_floq'], per_seed
    run_dir = root / 'midpoint_floq' / sweeps.SMOKE_ENV / 'midpoint_floq' / 'seed0'
    record = json.loads((run_dir / 'flags.json').read_text())
    assert record['sweep_agent'] == record['agent_file'] == str(path) and record['agent']['agent_name'] == \
        'midpoint_floq'


@pytest.mark.subprocess
@pytest.mark.parametrize('module,spec,expected', [
    ('main_table', '{tmp}/none.py', "error: --agent={tmp}/none.py: no such file '{tmp}/none.py'"),
    ('main_table', '{tmp}/notes.txt', "error: --agent={tmp}/notes.txt: unknown agent '{tmp}/notes.txt'; accepted: "),
    ('main_table', 'agents/floq.py', "error: --agent=agents/floq.py: its agent_name 'floq' is a variant of this sweep "
                                     "already"),
    ('scale_k', 'examples/midpoint_floq.py', "error: --agent: the scale_k sweep takes no agent file: its analysis is "
                                             "over its variants' K"),
])
def test_bad_sweep_agent_file_is_one_line_exit_2_nothing_written(tmp_path, module, spec, expected):
    spec, expected = spec.format(tmp=tmp_path), expected.format(tmp=tmp_path)
    save_dir = tmp_path / 'sweeps'
    out = run(['--scale=smoke', f'--save_dir={save_dir}', f'--cache_dir={tmp_path / "data"}', f'--agent={spec}'],
              module=f'experiments.{module}')
    assert out.returncode == 2 and len(error_lines(out)) == 1 and error_lines(out)[0].startswith(expected), \
        out.stderr[-2000:]
    assert 'Traceback' not in out.stderr and not save_dir.exists() and not (tmp_path / 'data').exists()
