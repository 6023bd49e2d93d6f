"""Test-only helpers for the numerical parity fixtures (tests/data/parity_golden.npz and
parity_trajectory.npz, made by experiments/parity_golden.py and parity_trajectory.py from the published floq
code): reading them, mapping the published parameter layout and config onto floq-jax's, and replaying the
recorded random draws.

Parameter layout (published -> floq-jax), per agent:

* ``modules_<net>/<mlp>/Dense_i`` (i < last), ``LayerNorm_i``, ``Dense_<last>`` ->
  ``<net>/.../hidden_i``, ``norm_i``, ``output``; ensemble members stay stacked on the leading axis.
* floq: ``modules_floq/mlp`` -> ``critic_flow/ensemble/mlp`` (target: ``modules_target_floq``); its first
  kernel's input rows are reordered from the published [s, a, HL-Gauss(z), cos(t)] to floq-jax's
  [s, a, cos(t), HL-Gauss(z)].  ``modules_critic/value_net`` -> ``distill_critic/ensemble/mlp``.
* FQL and FQL-IQN: ``modules_critic/value_net`` -> ``critic/ensemble/mlp`` (target: ``modules_target_critic``);
  the IQN input order [s, a, cos(pi i tau)] is the same in both.
* ``modules_actor_bc_flow/mlp``, ``modules_actor_onestep_flow/mlp`` -> ``actor_*/mlp``.
* Residual nets (``use_resnets``): the published ResMLP ``initial_block/Dense_0, LayerNorm_0``,
  ``hidden_blocks_<b>/Dense_d, LayerNorm_d``, ``final_block/Dense_0`` -> floq-jax's ``resmlp/hidden_in,
  norm_in``, ``hidden_<b>_<d>, norm_<b>_<d>``, ``output`` (under ``ensemble``).

:func:`to_published` inverts a conversion (the trajectory fixture maps floq-jax's updated parameters and Adam
moments back to the published layout).
"""

import contextlib
import json

import jax
import jax.numpy as jnp
import numpy as np


class Golden:
    """The golden file: ``meta`` (dict), and per-agent ``params``, ``grads``, ``inputs``, ``outputs``, ``draws``."""

    def __init__(self, path):
        with np.load(path) as data:
            self.arrays = {k: data[k] for k in data.files}
        self.meta = json.loads(str(self.arrays.pop('meta')))
        self.batch = {k.split('/', 1)[1]: v for k, v in self.arrays.items() if k.startswith('batch/')}

    def section(self, agent, part):
        prefix = f'{agent}/{part}/'
        return {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}

    def tree(self, agent, part):
        """A flattened section ('params' or 'grads') as a nested dict."""
        tree = {}
        for path, value in self.section(agent, part).items():
            node = tree
            *parents, leaf = path.split('/')
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return tree

    def draws(self, agent):
        kinds = self.meta['agents'][agent]['draws']
        values = self.section(agent, 'draws')
        return [(kind, values[f'{i:02d}']) for i, kind in enumerate(kinds)]


# ----------------------------------------------------------------------------------------- parameters


def convert_mlp(published, first_kernel_rows=None):
    """Published MLP params {Dense_i, LayerNorm_i} -> floq-jax MLP params {hidden_i, norm_i, output}.

    ``first_kernel_rows``: an index array reordering the input rows of Dense_0's kernel (axis -2)."""
    dense = sorted((k for k in published if k.startswith('Dense_')), key=lambda k: int(k.split('_')[1]))
    out = {}
    for i, name in enumerate(dense):
        layer = dict(published[name])
        if i == 0 and first_kernel_rows is not None:
            layer['kernel'] = np.take(layer['kernel'], first_kernel_rows, axis=-2)
        out['output' if i == len(dense) - 1 else f'hidden_{i}'] = layer
    for k, v in published.items():
        if k.startswith('LayerNorm_'):
            out[f'norm_{k.split("_")[1]}'] = dict(v)
    unknown = set(published) - set(dense) - {k for k in published if k.startswith('LayerNorm_')}
    if unknown:
        raise ValueError(f'convert_mlp: unexpected published layers {sorted(unknown)}')
    return out


def convert_resmlp(published, first_kernel_rows=None):
    """Published ResMLP params {initial_block, hidden_blocks_<b>, final_block} (each {Dense_i, LayerNorm_i}) ->
    floq-jax ResMLP params {hidden_in, norm_in, hidden_<b>_<d>, norm_<b>_<d>, output}."""
    out = {}
    for name, block in published.items():
        layers = convert_mlp(block, first_kernel_rows if name == 'initial_block' else None)
        if name == 'initial_block':
            out.update(hidden_in=layers['output'], **({'norm_in': layers['norm_0']} if 'norm_0' in layers else {}))
        elif name == 'final_block':
            out['output'] = layers['output']
        elif name.startswith('hidden_blocks_'):
            b = name[len('hidden_blocks_'):]
            dense = [k for k in block if k.startswith('Dense_')]
            for d in range(len(dense)):
                out[f'hidden_{b}_{d}'] = layers['output' if d == len(dense) - 1 else f'hidden_{d}']
                if f'norm_{d}' in layers:
                    out[f'norm_{b}_{d}'] = layers[f'norm_{d}']
        else:
            raise ValueError(f'convert_resmlp: unexpected published block {name}')
    return out


def convert_trunk(published, first_kernel_rows=None):
    """A published ensemble trunk {'mlp' or 'value_net': ...} -> floq-jax {'ensemble': {'mlp' or 'resmlp': ...}}."""
    (name, net), = published.items()
    if 'initial_block' in net:
        return {'ensemble': {'resmlp': convert_resmlp(net, first_kernel_rows)}}
    return {'ensemble': {'mlp': convert_mlp(net, first_kernel_rows)}}


def velocity_input_rows(sa_dim, num_bins, z_dim=None):
    """Published velocity input [sa, z-embed (num_bins - 1, or z_dim), t (1)] -> floq-jax [sa, t, z-embed]: rows
    to take."""
    z_dim = num_bins - 1 if z_dim is None else z_dim
    z_rows = np.arange(sa_dim, sa_dim + z_dim)
    return np.concatenate([np.arange(sa_dim), [sa_dim + z_dim], z_rows])


def convert_params(agent, published, ob_dim, action_dim, num_bins=None, z_dim=None):
    """Published network params (``network.params``) -> floq-jax (params, target_params).  ``z_dim``: the
    velocity net's z-embedding width when not num_bins - 1 (1 without the HL-Gauss embedding)."""
    actors = {name: {'mlp': convert_mlp(published[f'modules_{name}']['mlp'])}
              for name in ('actor_bc_flow', 'actor_onestep_flow')}
    if agent == 'floq':
        rows = velocity_input_rows(ob_dim + action_dim, num_bins, z_dim)
        params = {'critic_flow': convert_trunk(published['modules_floq'], rows),
                  'distill_critic': convert_trunk(published['modules_critic']), **actors}
        return params, {'critic_flow': convert_trunk(published['modules_target_floq'], rows)}
    return ({'critic': convert_trunk(published['modules_critic']), **actors},
            {'critic': convert_trunk(published['modules_target_critic'])})


def to_published(convert, published_shapes):
    """The inverse of a conversion: ``convert(published_tree) -> (params, target_params)`` (e.g. a partial of
    :func:`convert_params`) and the published leaf shapes {path: shape} give a function mapping floq-jax
    (params, target_params) back to published leaves {path: array}.  (Converts a tree of entry indices once, so
    any renaming or row reordering the conversion does is undone.)"""
    paths = sorted(published_shapes)
    sizes = [int(np.prod(published_shapes[p])) for p in paths]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    index_tree = {}
    for path, start, size in zip(paths, offsets, sizes):
        node = index_tree
        *parents, leaf = path.split('/')
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.arange(start, start + size).reshape(published_shapes[path])
    index_leaves = jax.tree_util.tree_leaves(convert(index_tree))

    def back(params, target_params):
        flat = np.full(offsets[-1], np.nan, np.float32)
        leaves = jax.tree_util.tree_leaves((params, target_params))
        assert len(leaves) == len(index_leaves)
        for idx, value in zip(index_leaves, leaves):
            flat[idx.reshape(-1)] = np.asarray(value, np.float32).reshape(-1)
        return {p: flat[s:s + n].reshape(published_shapes[p]) for p, s, n in zip(paths, offsets, sizes)}

    return back


# --------------------------------------------------------------------------------------------- configs


def floq_jax_config(agent, published):
    """floq-jax config (ConfigDict) of the same agent as the published config dict ``published``."""
    from agents import floq, fql, fql_iqn

    p = published
    common = dict(actor_hidden_dims=tuple(p['actor_hidden_dims']), layer_norm=p['layer_norm'],
                  actor_layer_norm=p['actor_layer_norm'], discount=p['discount'], tau=p['tau'], q_agg=p['q_agg'],
                  alpha=p['alpha'], normalize_q_loss=p['normalize_q_loss'], batch_size=p['batch_size'],
                  lr=p['lr'], ensemble_apply='vmap')
    if p['encoder'] is not None:
        raise ValueError('parity fixture: encoders are not supported')
    if p.get('use_resnets') and not p['activate_before_layernorm']:
        raise ValueError('parity fixture: use_resnets with activate_before_layernorm=True only')
    if agent == 'floq':
        c = floq.get_config()
        c.update(common, value_hidden_dims=tuple(p['value_hidden_dims']), actor_flow_steps=p['actor_flow_steps'],
                 flow_num_ensembles=p['flow_num_ensembles'], distill_num_ensembles=p['distill_num_ensembles'],
                 noise_samples=p['noise_samples'], noise_coverage=p['noise_coverage'],
                 critic_flow_steps=p['critic_flow_steps'], train_at_zero_only=p['train_at_zero_only'],
                 time_embedding='cos' if p['embed_time'] else 'raw', use_prob_embed=p['use_prob_embed'],
                 num_bins=p['num_bins'], sigma=p['sigma'], reward_offset=p['reward_offset'],
                 block_width=p['block_width'], block_depth=p['block_depth'], use_resnets=p['use_resnets'],
                 num_transformations=p['num_transformations'], r_min=p['r_min'], r_max=p['r_max'])
        return c
    if agent == 'fql':
        c = fql.get_config()
        c.update(common, value_hidden_dims=(p['block_width'],) * p['block_depth'], actor_flow_steps=p['flow_steps'],
                 num_ensembles=p['value_num_ensembles'], critic_use_resnet=p['use_resnets'],
                 critic_resnet_width=p['block_width'], critic_resnet_blocks=p['num_transformations'],
                 critic_resnet_block_depth=p['block_depth'])
        return c
    if not p['embed_quantile']:
        raise ValueError('parity fixture: FQL-IQN with embed_quantile=True only')
    c = fql_iqn.get_config()
    c.update(common, value_hidden_dims=tuple(p['value_hidden_dims']), actor_flow_steps=p['flow_steps'],
             num_ensembles=2, iqn_num_quantiles=p['num_tau_samples'], iqn_num_target_quantiles=p['num_tau_samples'],
             iqn_num_cosines=p['quantile_embed_dim'], iqn_kappa=p['kappa'], iqn_loss='squared')
    return c


# ------------------------------------------------------------------------------------------- draws


class Replay:
    """Replays recorded draws in order in place of ``jax.random.normal`` / ``jax.random.uniform``: each call
    must ask for the recorded kind and number of values; it gets the recorded values in the asked shape."""

    def __init__(self, draws):
        self.draws = list(draws)
        self.used = 0

    def _next(self, kind, shape):
        if self.used >= len(self.draws):
            raise AssertionError(f'replay: draw {self.used} ({kind} {tuple(shape)}) beyond the {len(self.draws)} '
                                 'recorded')
        recorded_kind, value = self.draws[self.used]
        if recorded_kind != kind or value.size != int(np.prod(shape)):
            raise AssertionError(f'replay: draw {self.used} is {kind} {tuple(shape)}, recorded {recorded_kind} '
                                 f'{value.shape}')
        self.used += 1
        return jnp.asarray(value.reshape(tuple(shape)))

    def normal(self, key, shape=(), dtype=None):
        return self._next('normal', shape)

    def uniform(self, key, shape=(), dtype=None, minval=0.0, maxval=1.0):
        assert (minval, maxval) == (0.0, 1.0)
        return self._next('uniform', shape)

    @contextlib.contextmanager
    def active(self):
        saved = jax.random.normal, jax.random.uniform
        jax.random.normal, jax.random.uniform = self.normal, self.uniform
        try:
            yield self
        finally:
            jax.random.normal, jax.random.uniform = saved
        if self.used != len(self.draws):
            raise AssertionError(f'replay: {self.used} of {len(self.draws)} recorded draws used')
