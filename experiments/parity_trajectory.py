"""Golden trajectories from the published floq code (CMU-AIRe/floq) for floq-jax's trajectory parity fixture.

This tool DRIVES a checkout of the published code named by ``--reference_dir``; nothing of that code is copied
here.  For each variant (an agent and a published config: the small networks of the one-update fixture,
every config switch of the published agents that floq-jax has, and the published default sizes) it sets the
published agent's parameters and target parameters to values drawn from a seeded numpy generator, runs
``NUM_UPDATES`` consecutive ``agent.update(batch)`` calls of the published code on seeded batches, with the
published losses' random draws replaced by a seeded numpy tape (as in ``experiments/parity_golden.py``), and
records after each update, for every parameter, target parameter and Adam moment (mu, nu) leaf, a checksum
(:func:`checksum`: sum, sum of squares, sum of absolute values and ``SAMPLES`` sampled entries of the change
since the start; mu and nu start at 0), the Adam count, and the update's loss info.

Everything large (initial parameters, batches, draws) is regenerated from the seeds by the functions below,
which ``tests/test_parity_trajectory.py`` imports; the file stores their sums so that the test can check that it
regenerated the same values.  So the golden file stays small at the published default sizes.

Needs an interpreter with the published code's requirements (jax, flax, optax, ml_collections, distrax); run it
from the repository root:

    <reference-venv>/bin/python -m experiments.parity_trajectory --reference_dir=<floq checkout> \\
        --out=tests/data/parity_trajectory.npz
"""

import argparse
import sys
import time
import zlib

import numpy as np

NUM_UPDATES = 3
SAMPLES = 16
PARAM_SEED, BATCH_SEED, TAPE_SEED = 1000, 2000, 3000

# Sizes: 'small' = the one-update fixture's (2 x 32 networks, batch 8, K = 4, 2 noise samples, 8 IQN levels);
# 'default' = the published get_config() (4 x 512, batch 256, K = 8, 8 noise samples, 10 actor flow steps) on
# cube-single's dimensions (observation 28, action 5).
DIMS = {'small': dict(ob_dim=5, action_dim=2), 'default': dict(ob_dim=28, action_dim=5)}
SMALL = {
    'floq': dict(actor_hidden_dims=(32, 32), batch_size=8, value_hidden_dims=(32, 32), block_width=32,
                 block_depth=2, noise_samples=2, critic_flow_steps=4, actor_flow_steps=4),
    'fql': dict(actor_hidden_dims=(32, 32), batch_size=8, block_width=32, block_depth=2, flow_steps=4),
    'fql_iqn': dict(actor_hidden_dims=(32, 32), batch_size=8, value_hidden_dims=(32, 32), flow_steps=4),
}
REWARD_RANGE = dict(r_min=-1.0, r_max=0.0)  # floq's; the batches' rewards lie in it

# variant -> (agent, size, published config overrides beyond SMALL for 'small').  Every switch of the published
# agents' get_config() that changes an update and that floq-jax implements; see docs/parity.md for the rest.
VARIANTS = {
    'floq': ('floq', 'small', {}),
    'floq_resnets': ('floq', 'small', dict(use_resnets=True, num_transformations=2)),
    'floq_q_agg_min': ('floq', 'small', dict(q_agg='min')),
    'floq_normalize_q_loss': ('floq', 'small', dict(normalize_q_loss=True)),
    'floq_train_at_zero_only': ('floq', 'small', dict(train_at_zero_only=True, critic_flow_steps=1)),
    'floq_no_prob_embed': ('floq', 'small', dict(use_prob_embed=False)),
    'floq_raw_time': ('floq', 'small', dict(embed_time=False)),
    'floq_norms': ('floq', 'small', dict(layer_norm=False, actor_layer_norm=True)),
    'fql': ('fql', 'small', {}),
    'fql_resnets': ('fql', 'small', dict(use_resnets=True, num_transformations=2)),
    'fql_q_agg_min': ('fql', 'small', dict(q_agg='min')),
    'fql_normalize_q_loss': ('fql', 'small', dict(normalize_q_loss=True)),
    'fql_norms': ('fql', 'small', dict(layer_norm=False, actor_layer_norm=True)),
    'fql_iqn': ('fql_iqn', 'small', {}),
    'fql_iqn_q_agg_min': ('fql_iqn', 'small', dict(q_agg='min')),
    'fql_iqn_normalize_q_loss': ('fql_iqn', 'small', dict(normalize_q_loss=True)),
    'floq_default': ('floq', 'default', {}),
    'fql_default': ('fql', 'default', {}),
    'fql_iqn_default': ('fql_iqn', 'default', {}),
}
MODULES = {'floq': 'agents.floq', 'fql': 'agents.fql', 'fql_iqn': 'agents.fql_iqn'}
CLASSES = {'floq': 'FloQAgent', 'fql': 'FQLAgent', 'fql_iqn': 'FQLIQNAgent'}
TARGETS = {'floq': 'floq', 'fql': 'critic', 'fql_iqn': 'critic'}


def overrides(variant):
    agent, size, extra = VARIANTS[variant]
    out = dict(SMALL[agent]) if size == 'small' else {}
    if agent == 'floq':
        out.update(REWARD_RANGE)
    out.update(extra)
    return out


# ------------------------------------------------------------- seeded values (shared with the test)


def initial_params(shapes, seed=PARAM_SEED):
    """Published-layout parameters {path: float32 array} for {path: shape} (paths like 'modules_floq/mlp/
    Dense_0/kernel'), drawn in sorted path order: kernels uniform on +-sqrt(6 / (fan_in + fan_out)) (the
    published initialiser's range), biases N(0, 0.02^2), LayerNorm scales 1 + N(0, 0.02^2).  Target modules get
    their own draws, so current and target differ from the start."""
    rng = np.random.default_rng(seed)
    out = {}
    for path in sorted(shapes):
        shape, leaf = tuple(shapes[path]), path.rsplit('/', 1)[-1]
        if leaf == 'kernel':
            limit = np.sqrt(6.0 / (shape[-2] + shape[-1]))
            out[path] = rng.uniform(-limit, limit, size=shape).astype(np.float32)
        elif leaf == 'bias':
            out[path] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
        elif leaf == 'scale':
            out[path] = (1.0 + 0.02 * rng.standard_normal(shape)).astype(np.float32)
        else:
            raise ValueError(f'initial_params: unexpected leaf {path}')
    return out


def batches(ob_dim, action_dim, batch_size, num=NUM_UPDATES, seed=BATCH_SEED):
    """``num`` batches (dicts of float32 arrays); rewards in [-1, 0], masks 0 for about 1 row in 5."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num):
        out.append(dict(
            observations=rng.standard_normal((batch_size, ob_dim)).astype(np.float32),
            actions=rng.uniform(-0.95, 0.95, size=(batch_size, action_dim)).astype(np.float32),
            rewards=-rng.uniform(0.0, 1.0, size=(batch_size,)).astype(np.float32),
            masks=(rng.uniform(size=(batch_size,)) > 0.2).astype(np.float32),
            next_observations=rng.standard_normal((batch_size, ob_dim)).astype(np.float32)))
    return out


class SeededDraws:
    """The random draws of the losses, in call order, from one seeded numpy generator: ``normal(shape)`` and
    ``uniform(shape)`` (U[0, 1)), float32.  The generator records (kind, shape, sum) of each draw."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.records = []

    def draw(self, kind, shape):
        shape = tuple(int(s) for s in shape)
        x = (self.rng.standard_normal(shape) if kind == 'normal' else self.rng.uniform(size=shape)).astype(np.float32)
        self.records.append((kind, list(shape), float(x.astype(np.float64).sum())))
        return x


def sample_index(path, size):
    """The fixed entries of a leaf that :func:`checksum` reports (from the path, so both codes agree)."""
    rng = np.random.default_rng(zlib.crc32(path.encode()))
    return np.sort(rng.choice(size, size=min(SAMPLES, size), replace=False))


def checksum(path, x):
    """[sum, sum of squares, sum of |x|, x at sample_index] of a float32 array, in float64."""
    flat = np.asarray(x, np.float32).reshape(-1).astype(np.float64)
    sums = [flat.sum(), np.square(flat).sum(), np.abs(flat).sum()]
    return np.concatenate([sums, flat[sample_index(path, flat.size)]])


def checksum_table(leaves):
    """{path: array} -> (L, 3 + SAMPLES) float64: the :func:`checksum` of each leaf in sorted path order (NaN-padded
    where a leaf has fewer than SAMPLES entries)."""
    table = np.full((len(leaves), 3 + SAMPLES), np.nan)
    for i, path in enumerate(sorted(leaves)):
        row = checksum(path, leaves[path])
        table[i, :row.size] = row
    return table


def flatten(tree, prefix=''):
    """Nested dict -> {'a/b/c': leaf}."""
    out = {}
    for k, v in tree.items():
        key = f'{prefix}{k}'
        if isinstance(v, dict) or hasattr(v, 'items'):
            out.update(flatten(v, key + '/'))
        else:
            out[key] = v
    return out


def unflatten(flat):
    tree = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split('/')
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


# ------------------------------------------------------------------------- driving the published code


def adam_state(opt_state):
    """The ScaleByAdamState (count, mu, nu) inside an optax chain's state."""
    for s in opt_state if isinstance(opt_state, tuple) and not hasattr(opt_state, 'mu') else (opt_state,):
        if hasattr(s, 'mu'):
            return s
    raise ValueError('no Adam state found')


def run_variant(variant):
    """Golden arrays {key: array} and metadata of one variant."""
    import copy
    import importlib

    import jax.numpy as jnp

    from experiments.parity_golden import NoiseTape

    agent_name, size, _ = VARIANTS[variant]
    module = importlib.import_module(MODULES[agent_name])
    config = module.get_config()
    config.update(overrides(variant))
    dims = DIMS[size]
    ex_obs, ex_act = np.zeros((2, dims['ob_dim']), np.float32), np.zeros((2, dims['action_dim']), np.float32)
    agent = getattr(module, CLASSES[agent_name]).create(0, ex_obs, ex_act, copy.deepcopy(config))
    shapes = {k: list(np.shape(v)) for k, v in flatten(agent.network.params).items()}
    init = initial_params(shapes)
    agent = agent.replace(network=agent.network.replace(params=unflatten({k: jnp.asarray(v) for k, v in init.items()})))
    data = batches(dims['ob_dim'], dims['action_dim'], config.batch_size)

    class Tape(NoiseTape):  # NoiseTape's patching, SeededDraws' values
        def __init__(self, seed):
            super().__init__(seed)
            self.seeded = SeededDraws(seed)

        def normal(self, key, shape=(), dtype=None):
            return jnp.asarray(self.seeded.draw('normal', shape))

        def uniform(self, key, shape=(), dtype=None, minval=0.0, maxval=1.0):
            if (minval, maxval) != (0.0, 1.0):
                raise NotImplementedError(f'tape: uniform on [{minval}, {maxval})')
            return jnp.asarray(self.seeded.draw('uniform', shape))

    out, draws, times = {}, [], []
    for k, batch in enumerate(data):
        tape = Tape(TAPE_SEED + k)
        start = time.time()
        with tape.recording():
            agent, info = agent.update({n: jnp.asarray(v) for n, v in batch.items()})
        times.append(time.time() - start)
        draws.append(tape.seeded.records)
        params = {p: np.asarray(v) for p, v in flatten(agent.network.params).items()}
        adam = adam_state(agent.network.opt_state)
        leaves = {'params': {p: v - init[p] for p, v in params.items() if not p.startswith('modules_target_')},
                  'target': {p: v - init[p] for p, v in params.items() if p.startswith('modules_target_')}}
        for name in ('mu', 'nu'):
            leaves[name] = {p: np.asarray(v) for p, v in flatten(getattr(adam, name)).items()
                            if not p.startswith('modules_target_')}  # no gradient reaches the targets
        for kind, values in leaves.items():
            out[f'{variant}/u{k}/{kind}'] = checksum_table(values)
        out[f'{variant}/u{k}/count'] = np.asarray(adam.count)
        for key, v in info.items():
            out[f'{variant}/u{k}/info/{key}'] = np.asarray(np.mean(np.asarray(v, np.float64)))
    meta = dict(agent=agent_name, size=size, dims=dims, overrides=overrides(variant),
                config={k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(agent.config).items()},
                shapes=shapes, init_sums={p: float(v.astype(np.float64).sum()) for p, v in init.items()},
                batch_sums=[{n: float(v.astype(np.float64).sum()) for n, v in b.items()} for b in data],
                draws=draws, seconds_per_update=[round(t, 2) for t in times])
    return out, meta


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--reference_dir', required=True, help='checkout of CMU-AIRe/floq')
    parser.add_argument('--out', default='tests/data/parity_trajectory.npz')
    parser.add_argument('--variants', default=','.join(VARIANTS),
                        help='comma-separated subset of ' + ', '.join(VARIANTS))
    args = parser.parse_args()
    variants = [v for v in args.variants.split(',') if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f'--variants: unknown {", ".join(unknown)}; accepted: {", ".join(VARIANTS)}', file=sys.stderr)
        sys.exit(2)
    from experiments.parity_golden import load_reference, portable_command, write_golden

    _, commit = load_reference(args.reference_dir)  # its agents/ and utils/ before the repository's own agents/

    import flax
    import jax
    import optax

    data, meta = {}, dict(reference_commit=commit, reference_repo='https://github.com/CMU-AIRe/floq',
                          command=portable_command(),
                          jax_version=jax.__version__, flax_version=flax.__version__, optax_version=optax.__version__,
                          backend=jax.default_backend(), num_updates=NUM_UPDATES, samples=SAMPLES,
                          seeds=dict(params=PARAM_SEED, batches=BATCH_SEED, draws=TAPE_SEED), variants={})
    for variant in variants:
        start = time.time()
        values, meta['variants'][variant] = run_variant(variant)
        data.update(values)
        print(f'{variant}: {time.time() - start:.1f} s', flush=True)
    write_golden(args.out, data, meta)


if __name__ == '__main__':
    main()
