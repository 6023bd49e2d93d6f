"""Numerical parity with the published floq code (CMU-AIRe/floq at the commit in the golden file's metadata):
floq, FQL and FQL-IQN on fixed parameters, fixed inputs and fixed noise.

``tests/data/parity_golden.npz`` is written by ``experiments/parity_golden.py``, which drives a checkout of the
published code (see docs/parity.md, "Numerical parity fixture", for the command).  It holds the published
agents' parameters (2 x 32 networks, batch 8, K = 4, 2 noise samples, 8 IQN levels), the fixed batch and
inputs, and the published outputs: the HL-Gauss embedding (inside the support and up to 3 sigma outside it),
the velocity field (current and target), the K-step integrated Q (current per member, target aggregated),
the critics, the BC flow and one-step policies, and the total loss with every info value and the gradient
of the total loss with respect to every trained parameter.

Approach: the parameters are mapped onto floq-jax's layout by ``tests/parity_convert.py`` (names, and the
velocity net's first-layer input rows, which the two codes order differently).  Everything except the losses
takes its randomness as explicit inputs (noise ratios, times, returns, quantile levels, action noises).  The
losses draw their own noise with key splits that differ between the two codes, so the generator replaced
``jax.random.normal`` / ``jax.random.uniform`` with a tape of recorded numpy draws (under
``jax.disable_jit()``, so draws happen once and in program order) and saved the tape; here the same draws
are replayed, in order, into floq-jax's losses (:class:`tests.parity_convert.Replay` checks that each call
asks for the recorded kind and size, and that all draws are used).  So the comparison is exact up to
float32 rounding: rtol 1e-5 (atol 1e-6) for values, and for gradients rtol 1e-4 with atol 1e-5 x the
largest entry of the leaf (summation order differs between the codes).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import agent_class
from floq_jax.core import actor, networks
from tests import parity_convert

GOLDEN = os.path.join(os.path.dirname(__file__), 'data', 'parity_golden.npz')
AGENTS = ('floq', 'fql', 'fql_iqn')
RTOL, ATOL = 1e-5, 1e-6

# Published info key -> floq-jax info key.
INFO_KEYS = {
    'floq': {'critic/floq_loss': 'critic/flow_loss', 'critic/distilled_critic_loss': 'critic/distill_loss',
             'critic/critic_loss': 'critic/critic_loss', 'critic/q': 'critic/q',
             'critic/var_flow_returns': 'critic/flow_q_noise_var', 'critic/td_error': 'critic/td_error',
             'actor/bc_flow_loss': 'actor/bc_flow_loss'},
    'fql': {'critic/critic_loss': 'critic/critic_loss', 'critic/q': 'critic/q',
            'actor/mean_bc_flow_loss': 'actor/bc_flow_loss'},
    'fql_iqn': {'critic/critic_loss': 'critic/critic_loss', 'critic/q': 'critic/q',
                'actor/bc_flow_loss': 'actor/bc_flow_loss'},  # published: the unreduced (B, A) array
}
ACTOR_INFO = ('actor_loss', 'distill_loss', 'q_loss', 'q', 'mse')


@pytest.fixture(scope='module')
def golden():
    return parity_convert.Golden(GOLDEN)


@pytest.fixture(scope='module')
def agents(golden):
    """floq-jax agents carrying the published parameters."""
    out = {}
    for name in AGENTS:
        published = golden.meta['agents'][name]['config']
        config = parity_convert.floq_jax_config(name, published)
        ob_dim, action_dim = golden.batch['observations'].shape[1], golden.batch['actions'].shape[1]
        # Shapes and the frozen config only (no initialisation work): the parameters come from the file.
        agent = jax.eval_shape(lambda: agent_class(config.agent_name).create(
            0, jnp.zeros((2, ob_dim)), jnp.zeros((2, action_dim)), config))
        params, target_params = parity_convert.convert_params(name, golden.tree(name, 'params'), ob_dim, action_dim,
                                                              published.get('num_bins'))
        for mine, theirs in ((agent.params, params), (agent.target_params, target_params)):
            assert jax.tree_util.tree_structure(mine) == jax.tree_util.tree_structure(theirs)
            for a, b in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(theirs)):
                assert a.shape == b.shape
        to_jnp = lambda t: jax.tree_util.tree_map(jnp.asarray, t)
        out[name] = agent.replace(params=to_jnp(params), target_params=to_jnp(target_params), opt_state=None,
                                  rng=jax.random.PRNGKey(0), step=jnp.zeros((), jnp.int32))
    return out


def close(actual, expected, rtol=RTOL, atol=ATOL, err_msg=''):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol, err_msg=err_msg)


def batch_of(golden):
    return {k: jnp.asarray(v) for k, v in golden.batch.items()}


def test_metadata(golden):
    meta = golden.meta
    assert len(meta['reference_commit']) == 40 and meta['command'].startswith('python -m experiments.parity_golden ')
    assert not any(a.split('=')[-1].startswith('/') for a in meta['command'].split()), meta['command']
    assert set(meta['agents']) == set(AGENTS)
    assert os.path.getsize(GOLDEN) < 1 << 20


def test_floq_derived_bounds(golden, agents):
    c = agents['floq'].config
    out = golden.section('floq', 'outputs')
    close([c.q_min, c.q_max], out['q_bounds'])
    close([c.noise_min, c.noise_max], out['noise_interval'])


def test_floq_hl_gauss_embedding(golden, agents):
    c = agents['floq'].config
    z = golden.section('floq', 'inputs')['hl_gauss_z']
    close(networks.hl_gauss_embedding(jnp.asarray(z), c.q_min, c.q_max, c.num_bins, c.sigma),
          golden.section('floq', 'outputs')['hl_gauss'])


def test_floq_velocity_field(golden, agents):
    agent, inputs, out = agents['floq'], golden.section('floq', 'inputs'), golden.section('floq', 'outputs')
    obs, act = golden.batch['observations'], golden.batch['actions']
    z, t = inputs['velocity_returns'][..., 0], inputs['times'][:, 0]  # (E, B), (B,)
    field = agent.modules['critic_flow']
    close(field.apply({'params': agent.params['critic_flow']}, obs, act, z, t), out['velocity'][..., 0])
    close(field.apply({'params': agent.target_params['critic_flow']}, obs, act, z, t), out['velocity_target'][..., 0])


def test_floq_integrated_q(golden, agents):
    agent, inputs, out = agents['floq'], golden.section('floq', 'inputs'), golden.section('floq', 'outputs')
    obs, act = jnp.asarray(golden.batch['observations']), jnp.asarray(golden.batch['actions'])
    c = agent.config
    u = jnp.asarray(inputs['noise_ratios'][:, 0])
    z0 = (1.0 - u) * c.noise_min + u * c.noise_max
    current = agent.integrate(agent.params['critic_flow'], obs, act, z0, c.critic_flow_steps)  # (E, B)
    close(current, out['current_flow_returns'][..., 0])
    target = agent.integrate(agent.target_params['critic_flow'], obs, act, z0, c.critic_flow_steps).mean(axis=0)
    close(target, out['target_flow_returns'][:, 0])


@pytest.mark.parametrize('name', AGENTS)
def test_critic_and_policies(golden, agents, name):
    agent, inputs, out = agents[name], golden.section(name, 'inputs'), golden.section(name, 'outputs')
    obs, act = jnp.asarray(golden.batch['observations']), jnp.asarray(golden.batch['actions'])
    noises = jnp.asarray(inputs['action_noises'])
    if name == 'floq':
        close(agent.modules['distill_critic'].apply({'params': agent.params['distill_critic']}, obs, act),
              out['critic'])
    elif name == 'fql':
        close(agent.critic_values(agent.params['critic'], obs, act), out['critic'])
        close(agent.critic_values(agent.target_params['critic'], obs, act), out['critic_target'])
    else:
        taus = jnp.asarray(inputs['quantiles'])  # (B, 1)
        critic = agent.modules['critic']
        close(critic.apply({'params': agent.params['critic']}, obs, act, taus)[..., 0], out['critic'])
        close(critic.apply({'params': agent.target_params['critic']}, obs, act, taus)[..., 0], out['critic_target'])
    close(actor.flow_actions(agent.modules, agent.params, obs, noises, agent.config.actor_flow_steps),
          out['flow_actions'])
    close(agent.modules['actor_onestep_flow'].apply({'params': agent.params['actor_onestep_flow']}, obs, noises),
          out['onestep_actions'])


@pytest.mark.parametrize('name', AGENTS)
def test_losses_info_and_gradients(golden, agents, name):
    agent, out = agents[name], golden.section(name, 'outputs')
    batch = batch_of(golden)
    loss_and_grad = jax.jit(jax.value_and_grad(lambda p: agent.total_loss(batch, p, jax.random.PRNGKey(0)),
                                               has_aux=True))
    with parity_convert.Replay(golden.draws(name)).active():  # the draws are traced in as constants
        (loss, info), grads = loss_and_grad(agent.params)
    close(loss, out['total_loss'])
    keys = dict(INFO_KEYS[name], **{f'actor/{k}': f'actor/{k}' for k in ACTOR_INFO})
    for theirs, mine in keys.items():
        expected = out[f'info/{theirs}']
        close(info[mine], expected.mean() if expected.ndim else expected, err_msg=f'{name}: {theirs} vs {mine}')
    assert golden.section(name, 'grads')
    expected, _ = parity_convert.convert_params(name, {**golden.tree(name, 'grads'), **_zero_targets(name, golden)},
                                                golden.batch['observations'].shape[1],
                                                golden.batch['actions'].shape[1],
                                                golden.meta['agents'][name]['config'].get('num_bins'))
    flat_mine = jax.tree_util.tree_leaves_with_path(grads)
    flat_theirs = dict((jax.tree_util.keystr(p), v) for p, v in jax.tree_util.tree_leaves_with_path(expected))
    assert len(flat_mine) == len(flat_theirs)
    for path, g in flat_mine:
        want = flat_theirs[jax.tree_util.keystr(path)]
        scale = float(np.abs(want).max()) or 1.0
        np.testing.assert_allclose(np.asarray(g), want, rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=f'{name} gradient {jax.tree_util.keystr(path)}')


def _zero_targets(name, golden):
    """The published gradients omit the target networks (no gradient reaches them); convert_params reads them."""
    tree = golden.tree(name, 'params')
    return {k: jax.tree_util.tree_map(np.zeros_like, v) for k, v in tree.items() if k.startswith('modules_target_')}


def test_golden_files_record_a_command_without_machine_paths():
    from experiments.parity_golden import portable_command

    assert portable_command(['/somewhere/wt/experiments/parity_pixels.py', '--reference_dir=/home/me/floq',
                             '--out=tests/data/parity_pixels.npz']) == (
        'python -m experiments.parity_pixels --reference_dir=<checkout of CMU-AIRe/floq at reference_commit> '
        '--out=tests/data/parity_pixels.npz')
