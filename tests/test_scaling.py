"""floq_jax.scaling.scaled_config: one helper shrinks any agent config by key pattern (the tests' small configs)."""

import jax
import jax.numpy as jnp
import ml_collections
import pytest

import agents
from floq_jax import agent_registry
from floq_jax.scaling import SCALES, scaled_config
from tests.conftest import scaled, scaled_flags, small_floq_config


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
