"""floq_jax.scaling.scaled_config: one helper shrinks any agent config by key pattern (the tests' small configs)."""

import ast
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import pytest

import agents
from floq_jax import agent_registry
from floq_jax.scaling import SCALES, scaled_config
from tests.conftest import REPO, scaled, scaled_flags, small_floq_config


@pytest.mark.parametrize('name', sorted(agent_registry.registered()))
def test_every_agent_shrinks_to_the_scale_and_builds(name):
    default = agents.get_config(name)
    tiny = scaled_config(default, 'tiny')
    assert default.to_dict() == agents.get_config(name).to_dict()  # the input is not changed
    for key in tiny:
        if key.endswith('_hidden_dims'):
            assert tiny[key] == (16, 16)
        if key.endswith('_width'):
            assert tiny[key] == 16
    assert tiny.batch_size == 8 and tiny.actor_flow_steps == 2
    tiny.r_min, tiny.r_max = -1.0, 0.0
    agent = agents.agent_class(tiny.agent_name).create(0, jnp.zeros((2, 6)), jnp.zeros((2, 2)), tiny)
    assert max(int(x.size) for x in jax.tree_util.tree_leaves(agent.params)) <= 64 * 64


def test_a_researchers_config_is_shrunk_by_key_pattern_only():
    mine = ml_collections.ConfigDict(dict(agent_name='mine', lr=1e-3, batch_size=512, encoder_hidden_dims=(256,) * 3,
                                          trunk_width=1024, trunk_depth=6, num_heads=8, critic_flow_steps=16,
                                          num_value_samples=32, use_thing=True, discount=0.99))
    small = scaled_config(mine, 'small')
    assert small.to_dict() == dict(agent_name='mine', lr=1e-3, batch_size=16, encoder_hidden_dims=(32, 32),
                                   trunk_width=32, trunk_depth=2, num_heads=8, critic_flow_steps=2,
                                   num_value_samples=2, use_thing=True, discount=0.99)
    medium = scaled_config(mine, 'medium')
    assert medium.critic_flow_steps == 16 and medium.num_value_samples == 4  # 'medium' keeps the flow steps


def test_unknown_scale_or_key_is_one_line():
    with pytest.raises(ValueError, match="unknown scale 'huge'; accepted: " + ', '.join(SCALES)):
        scaled_config(agents.get_config('floq'), 'huge')
    with pytest.raises(KeyError, match='not_a_key'):
        scaled_config(agents.get_config('floq'), 'tiny', not_a_key=1)


def test_the_tests_configs_are_the_sizes_they_replaced():
    """The hand-written dicts the tests used before the scales, kept here once as the check of the conversion."""
    c = small_floq_config()
    assert (c.actor_hidden_dims, c.value_hidden_dims, c.block_width, c.block_depth, c.batch_size, c.noise_samples,
            c.critic_flow_steps, c.actor_flow_steps, c.r_min, c.r_max) == ((64, 64), (64, 64), 64, 2, 64, 4, 4, 10,
                                                                           -1.0, 0.0)
    s = scaled('floq', 'small')
    assert (s.actor_hidden_dims, s.block_width, s.block_depth, s.batch_size, s.noise_samples, s.critic_flow_steps,
            s.actor_flow_steps) == ((32, 32), 32, 2, 16, 2, 2, 2)
    assert sorted(scaled_flags('floq', 'small')) == sorted([
        '--agent.batch_size=16', '--agent.block_width=32', '--agent.block_depth=2', '--agent.actor_hidden_dims=(32,32)',
        '--agent.value_hidden_dims=(32,32)', '--agent.noise_samples=2', '--agent.critic_flow_steps=2',
        '--agent.actor_flow_steps=2'])


# ----------------------------------------------------------------------------- every protocol's sizes, pinned
PROTOCOLS_FILE = os.path.join(REPO, 'tests', 'data', 'protocol_configs_8254dfc.json')
SWEEP_AGENTS = ('floq', 'fql', 'fql_resnet', 'fql_iqn', 'agents/fql.py:resnet_depth4x2',
                'agents/fql.py:resnet_flop_matched')
PARITY_TASKS = ('cube-single-play-singletask-task2-v0', 'puzzle-3x3-play-singletask-task1-v0')


def _apply_flags(config, flag_list):
    for flag in flag_list:
        if flag.startswith('--agent.'):
            key, value = flag[len('--agent.'):].split('=', 1)
            config[key] = ast.literal_eval(value)
    return config


def protocol_configs():
    """{protocol: its agent config} of every protocol that shrinks an agent config: the sweeps' smoke and cpu scales
    (each agent, on each scale's envs), ``make demo``, the benchmark (K, small, tiny), experiments/precision.py, the
    end-to-end runs and the side-by-side runs (both codes' configs)."""
    from experiments import end_to_end, precision, side_by_side
    from experiments.bench import base as bench
    from floq_jax import presets, sweeps

    out = {}
    for scale, envs in (('smoke', [sweeps.SMOKE_ENV]), ('cpu', [sweeps.CPU_ENV, 'scene-play-singletask-task1-v0'])):
        for env in envs:
            for a in SWEEP_AGENTS:
                out[f'sweep:{scale}:{env}:{a}'] = sweeps.make_config(sweeps.Variant('v', a), env, scale, agents)
    out['demo:floq'] = presets.demo_config(agents.get_config('floq'))
    for tiny in (False, True):
        for a in ('floq', 'fql'):
            for K in (None, 4):
                for small in (False, True):
                    out[f'bench:{a}:K={K}:small={small}:tiny={tiny}'] = bench.make_config(a, K, small, tiny)
    out['precision:small_config'] = precision.small_config()
    for name, kw in (('terminal', {}), ('constant', dict(tau=0.05, noise_coverage=1.0))):
        out[f'precision:{name}'] = precision.small_config(discount=0.9, r_min=-1.0, r_max=0.0,
                                                          compute_dtype='bfloat16', **kw)
    for scale, spec in end_to_end.SCALES.items():  # its command line: the side-by-side sizes, then the scale's flags
        c = agents.get_config(spec['agent'])
        c.update(side_by_side.agent_overrides(spec['agent'], spec['task'], 'floq-jax'))
        out[f'end_to_end:{scale}'] = _apply_flags(c, [*end_to_end.agent_scale_flags(spec), *spec['extra']])
    for a in side_by_side.PUBLISHED_CONFIGS:
        for task in PARITY_TASKS:
            c = agents.get_config(a)
            c.update(side_by_side.agent_overrides(a, task, 'floq-jax'))
            out[f'side_by_side:{a}:{task}:floq-jax'] = c
            out[f'side_by_side:{a}:{task}:published'] = side_by_side.agent_overrides(a, task, 'published')
    return {k: json.loads(json.dumps(c.to_dict() if hasattr(c, 'to_dict') else c)) for k, c in out.items()}


def test_every_protocols_configs_are_those_of_8254dfc():
    """Each protocol's sizes, now named scales of scaled_config, reproduce exactly the configs its hand-written size
    dict gave at 8254dfc (tests/data/protocol_configs_8254dfc.json, written at that commit by the same loops over
    its API): recorded results and run directories (flags.json records the full config) stay valid."""
    with open(PROTOCOLS_FILE) as f:
        recorded = json.load(f)
    from floq_jax.training.rundirs import added_keys_read_as_none

    # Keys added since with a None default (e.g. pixels' `encoder`) read as absent, as a run dir's resume check reads
    # them; any other added key, or a changed value, differs.
    now = {k: added_keys_read_as_none(recorded.get(k), v) for k, v in protocol_configs().items()}
    assert sorted(now) == sorted(recorded)
    differ = {k: {key: (recorded[k].get(key), now[k].get(key)) for key in set(now[k]) | set(recorded[k])
                  if now[k].get(key) != recorded[k].get(key)} for k in now if now[k] != recorded[k]}
    assert not differ, differ


def test_cpu_scale_refreshes_the_stale_copy_for_a_quarter_of_the_cpu_run():
    from floq_jax import sweeps

    assert SCALES['cpu'].keys['stale_copy_until'] == sweeps.CPU_STEPS // 4  # the published 250k of 1M updates


@pytest.mark.subprocess
def test_protocol_modules_import_together():
    """The modules protocol_configs() reads import into one process beside experiments.benchmark (a pytest worker
    may hold both): importing experiments.precision must not define --out a second time."""
    import subprocess
    import sys

    from tests.conftest import subprocess_env

    code = 'import experiments.benchmark, experiments.precision, experiments.end_to_end, experiments.side_by_side'
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
