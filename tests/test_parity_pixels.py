"""Numerical parity of the pixel parts with the published floq code (CMU-AIRe/floq at the commit in the golden
file's metadata): the IMPALA encoders, FQL with an encoder, and floq's encoder-using networks.

``tests/data/parity_pixels.npz`` is written by ``experiments/parity_pixels.py`` (docs/pixels.md, "Parity", has the
command), which drives a checkout of the published code.  What is checked:

* every published encoder name: floq-jax's ``ENCODERS[name]().init(PRNGKey(0), frames)`` gives the published
  parameters bit for bit (sha256 of every leaf), and the same output on the frames (uint8 in, /255 inside);
* FQL with ``encoder='impala_debug'`` on 8 x 8 x 3 uint8 frames: critic, target critic, BC flow and one-step
  policies, one update's loss, info and gradients (the published draws replayed, as in test_parity_fixture.py),
  and three consecutive updates (every parameter and target parameter after the third);
* floq: the published agent cannot run an update with an encoder (its error is in the metadata, and docs/pixels.md
  says why), so its encoder-using networks are checked as modules: the velocity field and the distilled critic,
  each behind its own encoder, as floq-jax's FloqAgent builds them.

Parameters are mapped onto floq-jax's layout (:func:`convert_fql`, :func:`convert_encoded`): an encoder-using
network is ``{'encoder': <the published encoder's params, same names>, 'net': <the network as in
tests/parity_convert.py>}``; the published FQL keeps the BC policy's encoder in ``modules_actor_bc_flow_encoder``.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from agents import agent_class
from experiments.parity_pixels import leaf_digest  # the digest the golden file records
from floq_jax.core import actor
from floq_jax.core.encoders import ENCODERS
from tests import parity_convert

GOLDEN = os.path.join(os.path.dirname(__file__), 'data', 'parity_pixels.npz')
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope='module')
def golden():
    return parity_convert.Golden(GOLDEN)


def close(actual, expected, rtol=RTOL, atol=ATOL, err_msg=''):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol, err_msg=err_msg)


def tree_of(golden, prefix):
    """The golden arrays under ``prefix/`` as a nested dict."""
    flat = {k[len(prefix) + 1:]: v for k, v in golden.arrays.items() if k.startswith(prefix + '/')}
    return traverse_util.unflatten_dict({tuple(k.split('/')): v for k, v in flat.items()})


def convert_encoded(published, net_key, convert_net):
    """A published encoder-using network {'encoder': E, net_key: N} -> floq-jax {'encoder': E, 'net': ...}."""
    return {'encoder': published['encoder'], 'net': convert_net({net_key: published[net_key]})}


def convert_fql(published):
    """Published FQL-with-encoder params -> floq-jax (params, target_params)."""
    actor_net = lambda tree: {'mlp': parity_convert.convert_mlp(tree['mlp'])}
    params = {
        'critic': convert_encoded(published['modules_critic'], 'value_net', parity_convert.convert_trunk),
        'actor_bc_flow': {'encoder': published['modules_actor_bc_flow_encoder'],
                          'net': actor_net(published['modules_actor_bc_flow'])},
        'actor_onestep_flow': convert_encoded(published['modules_actor_onestep_flow'], 'mlp', actor_net),
    }
    target = {'critic': convert_encoded(published['modules_target_critic'], 'value_net', parity_convert.convert_trunk)}
    return params, target


def fql_config(golden):
    published = dict(golden.meta['fql']['config'], encoder=None)
    config = parity_convert.floq_jax_config('fql', published)
    config.encoder = golden.meta['encoder']
    return config


def fql_agent(golden, params_tree):
    config = fql_config(golden)
    obs, act = golden.arrays['fql/batch/observations'], golden.arrays['fql/batch/actions']
    agent = jax.eval_shape(lambda: agent_class('fql').create(0, jnp.asarray(obs[:2]), jnp.asarray(act[:2]), config))
    params, target = convert_fql(params_tree)
    to_jnp = lambda t: jax.tree_util.tree_map(jnp.asarray, t)
    for mine, theirs in ((agent.params, params), (agent.target_params, target)):
        assert jax.tree_util.tree_structure(mine) == jax.tree_util.tree_structure(theirs)
        for a, b in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(theirs)):
            assert a.shape == b.shape
    return agent.replace(params=to_jnp(params), target_params=to_jnp(target), rng=jax.random.PRNGKey(0),
                         step=jnp.zeros((), jnp.int32))


def test_metadata(golden):
    meta = golden.meta
    assert len(meta['reference_commit']) == 40 and meta['command'].startswith('python -m experiments.parity_pixels ')
    assert not any(a.split('=')[-1].startswith('/') for a in meta['command'].split()), meta['command']
    assert set(meta['encoders']) == set(ENCODERS)
    assert os.path.getsize(GOLDEN) < 1 << 20
    # The published floq agent fails with an encoder (docs/pixels.md); if a new reference runs, this fixture
    # should record the agent itself.
    assert meta['floq_agent_error']['update'] and meta['floq_agent_error']['target_floq']


@pytest.mark.parametrize('name', sorted(ENCODERS))
def test_encoder_init_and_output(golden, name):
    frames = jnp.asarray(golden.arrays['encoders/frames'])
    assert frames.dtype == jnp.uint8
    module = ENCODERS[name]()
    params = module.init(jax.random.PRNGKey(0), frames)
    mine = {k: leaf_digest(v) for k, v in traverse_util.flatten_dict(params['params'], sep='/').items()}
    assert mine == golden.meta['encoders'][name]
    close(module.apply(params, frames), golden.arrays[f'encoders/{name}/output'], rtol=1e-5, atol=1e-6)


def test_fql_networks(golden):
    agent = fql_agent(golden, tree_of(golden, 'fql/params'))
    out = golden.section('fql', 'outputs')
    obs, act = jnp.asarray(golden.arrays['fql/batch/observations']), jnp.asarray(golden.arrays['fql/batch/actions'])
    assert obs.dtype == jnp.uint8
    noises = jnp.asarray(golden.arrays['fql/inputs/action_noises'])
    close(agent.critic_values(agent.params['critic'], obs, act), out['critic'])
    close(agent.critic_values(agent.target_params['critic'], obs, act), out['critic_target'])
    close(actor.flow_actions(agent.modules, agent.params, obs, noises, agent.config.actor_flow_steps),
          out['flow_actions'])
    close(agent.modules['actor_onestep_flow'].apply({'params': agent.params['actor_onestep_flow']}, obs, noises),
          out['onestep_actions'])


def _batch(golden, prefix):
    return {k: jnp.asarray(golden.arrays[f'{prefix}/{k}'])
            for k in ('observations', 'next_observations', 'actions', 'rewards', 'masks')}


def _draws(golden, prefix, kinds):
    return [(kind, golden.arrays[f'{prefix}/{i:02d}']) for i, kind in enumerate(kinds)]


INFO = {'critic/critic_loss': 'critic/critic_loss', 'critic/q': 'critic/q',
        'actor/mean_bc_flow_loss': 'actor/bc_flow_loss', 'actor/actor_loss': 'actor/actor_loss',
        'actor/distill_loss': 'actor/distill_loss', 'actor/q_loss': 'actor/q_loss', 'actor/q': 'actor/q',
        'actor/mse': 'actor/mse'}


def test_fql_loss_info_and_gradients(golden):
    published = tree_of(golden, 'fql/params')
    agent = fql_agent(golden, published)
    out = golden.section('fql', 'outputs')
    batch = _batch(golden, 'fql/batch')
    loss_and_grad = jax.jit(jax.value_and_grad(lambda p: agent.total_loss(batch, p, jax.random.PRNGKey(0)),
                                               has_aux=True))
    with parity_convert.Replay(_draws(golden, 'fql/draws', golden.meta['fql']['draws'])).active():
        (loss, info), grads = loss_and_grad(agent.params)
    close(loss, out['total_loss'])
    for theirs, mine in INFO.items():
        close(info[mine], out[f'info/{theirs}'], err_msg=f'{theirs} vs {mine}')
    grads_published = tree_of(golden, 'fql/grads')
    grads_published['modules_target_critic'] = jax.tree_util.tree_map(np.zeros_like,
                                                                      published['modules_target_critic'])
    expected, _ = convert_fql(grads_published)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(expected)
    for (path, g), want in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree_util.tree_leaves(expected)):
        scale = float(np.abs(want).max()) or 1.0
        np.testing.assert_allclose(np.asarray(g), want, rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=f'gradient {jax.tree_util.keystr(path)}')


def test_fql_trajectory(golden):
    """Three consecutive updates (Adam, Polyak targets with their encoder) from the same parameters and draws."""
    agent = fql_agent(golden, tree_of(golden, 'fql/params'))
    agent = agent.replace(opt_state=jax.jit(lambda p: type(agent)._from_params(
        agent.rng, p, ('critic',), agent.config).opt_state)(agent.params))
    for k, kinds in enumerate(golden.meta['fql']['trajectory_draws']):
        with parity_convert.Replay(_draws(golden, f'fql/u{k}/draws', kinds)).active(), jax.disable_jit():
            agent, info = type(agent).update(agent, _batch(golden, f'fql/u{k}/batch'))
        for theirs, mine in INFO.items():
            close(info[mine], golden.arrays[f'fql/u{k}/info/{theirs}'], rtol=1e-4, atol=1e-5,
                  err_msg=f'update {k}: {theirs}')
    params, target = convert_fql(tree_of(golden, 'fql/final_params'))
    for kind, mine, theirs in (('params', agent.params, params), ('target', agent.target_params, target)):
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(mine), jax.tree_util.tree_leaves(theirs)):
            scale = float(np.abs(b).max()) or 1.0
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-5 * scale,
                                       err_msg=f'{kind} {jax.tree_util.keystr(path)} after 3 updates')


def test_floq_encoded_networks(golden):
    """floq-jax's floq with an encoder: its velocity field and distilled critic, each behind its own encoder, on
    the published modules' parameters give the published outputs."""
    from agents import floq
    field = golden.meta['field']
    config = floq.get_config()
    config.update(encoder=golden.meta['encoder'], block_width=field['hidden_dims'][0],
                  block_depth=len(field['hidden_dims']), value_hidden_dims=tuple(field['hidden_dims']),
                  actor_hidden_dims=(8, 8), flow_num_ensembles=field['num_ensembles'], num_bins=field['num_bins'],
                  sigma=field['sigma'], r_min=-1.0, r_max=0.0, ensemble_apply='vmap')
    obs = jnp.asarray(golden.arrays['floq/inputs/observations'])
    act = jnp.asarray(golden.arrays['floq/inputs/actions'])
    agent = jax.eval_shape(lambda: agent_class('floq').create(0, obs[:2], act[:2], config))
    assert (agent.config.q_min, agent.config.q_max) == pytest.approx((field['q_min'], field['q_max']))
    features = 2 * 2 * 4  # impala_debug on 8 x 8: two stride-2 stacks of 4 channels, then its 512-wide MLP
    assert ENCODERS['impala_debug']().stack_sizes == (4, 4) and obs.shape[1:] == (8, 8, 3) and features == 16
    rows = parity_convert.velocity_input_rows(512 + act.shape[1], field['num_bins'])
    field_params = convert_encoded(tree_of(golden, 'floq/field_params'), 'mlp',
                                   lambda t: parity_convert.convert_trunk(t, rows))
    value_params = convert_encoded(tree_of(golden, 'floq/value_params'), 'value_net', parity_convert.convert_trunk)
    z = jnp.asarray(golden.arrays['floq/inputs/returns'][..., 0])
    t = jnp.asarray(golden.arrays['floq/inputs/times'][:, 0])
    close(agent.modules['critic_flow'].apply({'params': field_params}, obs, act, z, t),
          golden.arrays['floq/outputs/field'][..., 0])
    close(agent.modules['distill_critic'].apply({'params': value_params}, obs, act),
          golden.arrays['floq/outputs/value'])
    # The K-step integration encodes the frames once and gives what the field step by step gives.
    agent = agent.replace(params=dict(agent.params, critic_flow=field_params))
    z0 = jnp.linspace(-5.0, 0.0, obs.shape[0])
    stepwise = jnp.broadcast_to(z0, z.shape)
    for k in range(3):
        stepwise = stepwise + agent.modules['critic_flow'].apply({'params': field_params}, obs, act, stepwise,
                                                                 jnp.full((obs.shape[0],), k / 3)) / 3
    close(agent.integrate(field_params, obs, act, z0, 3), stepwise, rtol=1e-5, atol=1e-5)


def test_floq_pixel_loss_is_the_state_loss_on_the_encoded_frames():
    """With every encoder holding the same parameters, floq's loss on frames (encode once, repeat the features over
    the noise samples, integrate on them) equals the state agent's loss (the published-parity one) on the encoded
    frames, and so do the gradients of the networks behind the encoders."""
    from tests.conftest import scaled
    from floq_jax.core.encoders import encode

    rng = np.random.default_rng(0)
    frames = lambda: jnp.asarray(rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8))
    batch = dict(observations=frames(), next_observations=frames(),
                 actions=jnp.asarray(rng.uniform(-0.9, 0.9, size=(4, 2)), jnp.float32),
                 rewards=-jnp.asarray(rng.uniform(size=4), jnp.float32), masks=jnp.array([1.0, 0.0, 1.0, 1.0]))
    pixel = agent_class('floq').create(0, batch['observations'][:1], batch['actions'][:1],
                                       scaled('floq', 'tiny', encoder='impala_debug', noise_samples=2))
    shared = pixel.params['critic_flow']['encoder']
    with_shared = lambda tree: {k: dict(v, encoder=shared) for k, v in tree.items()}
    pixel = pixel.replace(params=with_shared(pixel.params), target_params=with_shared(pixel.target_params))
    features = lambda x: encode(pixel.modules['critic_flow'], pixel.params['critic_flow'], x)
    state_batch = dict(batch, observations=features(batch['observations']),
                       next_observations=features(batch['next_observations']))
    state = agent_class('floq').create(0, state_batch['observations'][:1], batch['actions'][:1],
                                       scaled('floq', 'tiny', noise_samples=2))
    strip = lambda tree: {k: v['net'] for k, v in tree.items()}
    state = state.replace(params=strip(pixel.params), target_params=strip(pixel.target_params))
    key = jax.random.PRNGKey(3)
    (loss, info), grads = jax.value_and_grad(lambda p: pixel.total_loss(batch, p, key), has_aux=True)(pixel.params)
    (state_loss, state_info), state_grads = jax.value_and_grad(
        lambda p: state.total_loss(state_batch, p, key), has_aux=True)(state.params)
    close(loss, state_loss, rtol=1e-5, atol=1e-5)
    for k in state_info:
        close(info[k], state_info[k], rtol=1e-4, atol=1e-5, err_msg=k)
    for (path, g), want in zip(jax.tree_util.tree_leaves_with_path(strip(grads)),
                               jax.tree_util.tree_leaves(state_grads)):
        close(g, want, rtol=1e-4, atol=1e-5 * (float(np.abs(want).max()) or 1.0), err_msg=jax.tree_util.keystr(path))
    # The encoders do get gradients (the flow-matching, distillation and actor losses reach them).
    for name in ('critic_flow', 'distill_critic', 'actor_bc_flow', 'actor_onestep_flow'):
        assert float(optax_norm(grads[name]['encoder'])) > 0, name


def optax_norm(tree):
    return jnp.sqrt(sum(jnp.sum(x ** 2) for x in jax.tree_util.tree_leaves(tree)))
