"""Trajectory parity with the published floq code (CMU-AIRe/floq at the commit in the golden file's metadata):
``NUM_UPDATES`` consecutive full updates (losses, gradients, Adam step, Polyak target update) of floq, FQL and
FQL-IQN from the same initial parameters, on the same batches and with the same random draws.

``tests/data/parity_trajectory.npz`` is written by ``experiments/parity_trajectory.py``, which drives a checkout
of the published code (docs/parity.md, "Trajectory fixture", has the command).  Initial parameters (published
layout), batches and the losses' random draws come from seeded numpy generators (functions of that module); the
file holds their sums (checked here first, so a changed generator fails loudly) and, after each update, per-leaf
checksums of the parameters, the target parameters (both as the change since the start) and Adam's mu and nu,
plus Adam's count and the update's loss info.

Here the same initial parameters are mapped onto floq-jax's layout (tests/parity_convert.py), floq-jax's own
``agent.update`` runs on the same batches with the same draws replayed in order (the draws enter the jitted
update as an argument, so it compiles once and each update gets its own), and floq-jax's parameters, targets and
Adam moments are mapped back to the published layout and checksummed the same way.

Variants: the small networks of tests/test_parity_fixture.py with every published config switch floq-jax has
(``use_resnets``, ``q_agg='min'``, ``normalize_q_loss``, ``train_at_zero_only``, ``use_prob_embed=False``,
``embed_time=False``, ``layer_norm=False`` with ``actor_layer_norm=True``), and the published default sizes
(marked slow: a few seconds per update).
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import agent_class
from experiments import parity_trajectory as traj
from floq_jax.core import agent_base
from tests import parity_convert
from tests.test_parity_fixture import ACTOR_INFO, INFO_KEYS

GOLDEN = os.path.join(os.path.dirname(__file__), 'data', 'parity_trajectory.npz')
# Checksum tolerance, per leaf: (RTOL_SUMS, RTOL_SAMPLES) by size.  Sums and sums of |x|: RTOL_SUMS of the sum of
# |x|; sums of squares: 2 RTOL_SUMS of themselves; sampled entries: RTOL_SAMPLES of their own value plus of the
# leaf's mean |x|.  Plus float32 resolution: a change is a difference of float32 parameters, so each entry may be
# off by about an ulp of the leaf's largest value per update (eps x that value x the update number is allowed),
# and a sum of n entries by 4 sqrt(n) times that; Adam's moments are not differences and get none.  Measured
# agreement (docs/parity.md; `python -m tests.test_parity_trajectory`): small sizes within 1.6e-5 (sums); at the
# published default sizes floq's second and third updates differ by up to 1.8e-4 on Adam's mu, which is float32
# rounding: floq-jax differs from itself by as much (1.7e-4) compiled with XLA's default instead of the suite's
# cheap optimisation flags (`--self floq_default`).
RTOL = {'small': (5e-5, 5e-5), 'default': (2e-4, 3e-3)}
INFO_RTOL, INFO_ATOL = 1e-4, 1e-6


@functools.lru_cache(maxsize=None)
def golden():
    with np.load(GOLDEN) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop('meta')))
    return arrays, meta


def variants(size):
    return [v for v, (_, s, _) in traj.VARIANTS.items() if s == size]


class TracedReplay(parity_convert.Replay):
    """Replays one update's draws from a traced flat array (an argument of the jitted update), so the update
    compiles once and each update passes its own draws: each call must ask for the recorded kind and number of
    values, in the recorded order."""

    def __init__(self, records, flat):
        super().__init__([(kind, np.empty(shape, np.float32)) for kind, shape, _ in records])
        self.flat = flat
        self.offsets = np.concatenate([[0], np.cumsum([int(np.prod(shape)) for _, shape, _ in records])])

    def _next(self, kind, shape):
        i = self.used
        super()._next(kind, shape)  # checks the kind and size, counts the draw
        return self.flat[self.offsets[i]:self.offsets[i + 1]].reshape(tuple(shape))


def seeded_draws(records, seed):
    """The generator's draws of one update, regenerated (kinds and shapes as recorded), as one flat array."""
    source = traj.SeededDraws(seed)
    values = [source.draw(kind, shape).reshape(-1) for kind, shape, _ in records]
    for i, ((_, _, want), (_, _, got)) in enumerate(zip(records, source.records)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=f'draw {i}: regenerated values differ')
    return np.concatenate(values) if values else np.zeros((0,), np.float32)


def run_floq_jax(variant, num_updates=traj.NUM_UPDATES):
    """floq-jax's trajectory: per update {kind: {published path: change or moment}}, Adam count and info."""
    _, meta = golden()
    m = meta['variants'][variant]
    name, published, shapes = m['agent'], m['config'], m['shapes']
    ob_dim, action_dim = m['dims']['ob_dim'], m['dims']['action_dim']
    init = traj.initial_params(shapes)
    for path, value in init.items():
        np.testing.assert_allclose(value.astype(np.float64).sum(), m['init_sums'][path], rtol=1e-9, atol=1e-9,
                                   err_msg=f'{variant}: regenerated initial {path} differs from the generator\'s')
    config = parity_convert.floq_jax_config(name, published)
    convert = functools.partial(parity_convert.convert_params, name, ob_dim=ob_dim, action_dim=action_dim,
                                num_bins=published.get('num_bins'),
                                z_dim=None if published.get('use_prob_embed', True) else 1)
    params, target_params = convert(traj.unflatten(init))
    agent = jax.eval_shape(lambda: agent_class(config.agent_name).create(
        0, jnp.zeros((2, ob_dim)), jnp.zeros((2, action_dim)), config))
    for mine, theirs in ((agent.params, params), (agent.target_params, target_params)):
        assert jax.tree_util.tree_structure(mine) == jax.tree_util.tree_structure(theirs), variant
        for a, b in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(theirs)):
            assert a.shape == b.shape, variant
    to_jnp = lambda t: jax.tree_util.tree_map(jnp.asarray, t)
    params, target_params = to_jnp(params), to_jnp(target_params)
    agent = agent.replace(params=params, target_params=target_params,
                          opt_state=agent_base.make_optimizer(config.lr).init(params),
                          rng=jax.random.PRNGKey(0), step=jnp.zeros((), jnp.int32))
    back = parity_convert.to_published(convert, shapes)
    data = traj.batches(ob_dim, action_dim, config.batch_size)
    for k, batch in enumerate(data[:num_updates]):
        for key, value in batch.items():
            np.testing.assert_allclose(value.astype(np.float64).sum(), m['batch_sums'][k][key], rtol=1e-9, atol=1e-9)
    records = m['draws'][0]
    assert all([r[:2] for r in d] == [r[:2] for r in records] for d in m['draws']), 'updates draw alike'

    @jax.jit
    def update(agent, batch, flat):
        with TracedReplay(records, flat).active():  # raises unless the update asked for every draw, in order
            return agent.update(batch)

    jax.clear_caches()  # no jitted piece of update traced earlier without the replay may be reused
    out = []
    for k, batch in enumerate(data[:num_updates]):
        agent, info = update(agent, {n: jnp.asarray(v) for n, v in batch.items()},
                             jnp.asarray(seeded_draws(m['draws'][k], traj.TAPE_SEED + k)))
        pub = back(agent.params, agent.target_params)
        adam = traj.adam_state(agent.opt_state)
        leaves = {'params': {p: v - init[p] for p, v in pub.items() if not p.startswith('modules_target_')},
                  'target': {p: v - init[p] for p, v in pub.items() if p.startswith('modules_target_')}}
        for moment in ('mu', 'nu'):
            pub = back(getattr(adam, moment), agent.target_params)
            leaves[moment] = {p: v for p, v in pub.items() if not p.startswith('modules_target_')}
        out.append(dict(leaves=leaves, count=int(adam.count), info=jax.tree_util.tree_map(np.asarray, info)))
    return out


def leaf_errors(kind, paths, mine, theirs, resolution, rtol):
    """Messages for leaves whose checksums differ beyond the tolerance (empty when all agree).  ``resolution``:
    {path: (float32 resolution of one entry: 0 unless the entries are differences of float32 values, number of
    entries)}."""
    bad = []
    for i, path in enumerate(paths):
        a, b = mine[i], theirs[i]
        res, count = resolution[path]
        n = int(np.sum(~np.isnan(b)))
        abs_sum, sq_sum = abs(b[2]), abs(b[1])
        mean_abs = abs_sum / max(count, 1)
        rtol_sums, rtol_samples = rtol
        limits = np.concatenate([[rtol_sums * abs_sum + 4 * np.sqrt(count) * res,
                                  2 * rtol_sums * sq_sum + 2 * res * abs_sum,
                                  rtol_sums * abs_sum + 4 * np.sqrt(count) * res],
                                 rtol_samples * (np.abs(b[3:n]) + mean_abs) + res]) + 1e-12
        err = np.abs(a[:n] - b[:n])
        if np.any(err > limits) or np.isnan(a[:n]).any():
            worst = int(np.argmax(err / limits))
            what = ['sum', 'sum of squares', 'sum of |x|'][worst] if worst < 3 else f'sample {worst - 3}'
            bad.append(f'{kind} {path}: {what} {a[worst]:.9g} vs published {b[worst]:.9g} '
                       f'(error {err[worst]:.3g}, tolerance {limits[worst]:.3g})')
    return bad


def check_trajectory(variant, num_updates=traj.NUM_UPDATES):
    arrays, meta = golden()
    m = meta['variants'][variant]
    init = traj.initial_params(m['shapes'])
    trajectory = run_floq_jax(variant, num_updates)
    problems = []
    for k, step in enumerate(trajectory):
        assert step['count'] == int(arrays[f'{variant}/u{k}/count']) == k + 1
        for kind, leaves in step['leaves'].items():
            paths = sorted(leaves)
            expected = arrays[f'{variant}/u{k}/{kind}']
            assert expected.shape[0] == len(paths), (variant, kind)
            mine = traj.checksum_table(leaves)
            moment = kind in ('mu', 'nu')  # else changes: differences of float32 values
            resolution = {p: (0.0 if moment else (k + 1) * np.finfo(np.float32).eps * float(np.abs(init[p]).max()),
                              init[p].size) for p in paths}
            problems += [f'update {k + 1}: {msg}' for msg in leaf_errors(kind, paths, mine, expected, resolution,
                                                                           RTOL[m['size']])]
        keys = dict(INFO_KEYS[m['agent']], **{f'actor/{a}': f'actor/{a}' for a in ACTOR_INFO})
        for theirs, mine in keys.items():
            want, got = float(arrays[f'{variant}/u{k}/info/{theirs}']), float(np.mean(step['info'][mine]))
            if not abs(got - want) <= INFO_ATOL + INFO_RTOL * abs(want):
                problems.append(f'update {k + 1}: info {theirs} {got:.9g} vs published {want:.9g}')
    assert not problems, f'{variant}: {len(problems)} mismatches:\n' + '\n'.join(problems[:30])


def test_metadata():
    arrays, meta = golden()
    assert len(meta['reference_commit']) == 40 and meta['command'].startswith('python -m experiments.parity_trajectory ')
    assert not any(a.split('=')[-1].startswith('/') for a in meta['command'].split()), meta['command']
    assert meta['num_updates'] == traj.NUM_UPDATES >= 3
    assert set(meta['variants']) == set(traj.VARIANTS)
    assert {m['agent'] for m in meta['variants'].values()} == {'floq', 'fql', 'fql_iqn'}
    assert os.path.getsize(GOLDEN) < 1 << 20


@pytest.mark.parametrize('variant', variants('small'))
def test_trajectory_small(variant):
    check_trajectory(variant)


@pytest.mark.slow
@pytest.mark.parametrize('variant', variants('default'))
def test_trajectory_published_default_sizes(variant):
    check_trajectory(variant)


def tables(variant):
    """floq-jax's checksum tables of ``variant``: {(update, kind): table}."""
    return {(k, kind): traj.checksum_table(leaves)
            for k, step in enumerate(run_floq_jax(variant)) for kind, leaves in step['leaves'].items()}


def agreement(variant, mine, theirs):
    """The worst differences between two checksum tables of ``variant`` ({(update, kind): table}, e.g. floq-jax's
    and the published ones) over all updates, per kind of leaf: sums (|error| / the leaf's sum of |x|) and sampled
    entries: for parameter and target changes in float32 ulps of the leaf's largest initial value (times the
    update number: the resolution the test allows), for Adam's moments relative (|error| / (|entry| + the leaf's
    mean |x|)).  {kind: [sums, entries]}."""
    m = golden()[1]['variants'][variant]
    init = traj.initial_params(m['shapes'])
    paths = {'params': sorted(p for p in init if not p.startswith('modules_target_')),
             'target': sorted(p for p in init if p.startswith('modules_target_'))}
    paths['mu'] = paths['nu'] = paths['params']
    worst = {}
    for (k, kind), table in mine.items():
        for i, path in enumerate(paths[kind]):
            a, b = table[i], theirs[k, kind][i]
            n = int(np.sum(~np.isnan(b)))
            abs_sum = max(abs(b[2]), 1e-30)
            sums = max(abs(a[0] - b[0]), abs(a[2] - b[2])) / abs_sum
            if kind in ('mu', 'nu'):
                scale = np.abs(b[3:n]) + abs_sum / init[path].size
            else:
                scale = (k + 1) * np.finfo(np.float32).eps * float(np.abs(init[path]).max())
            entries = float(np.max(np.abs(a[3:n] - b[3:n]) / scale))
            w = worst.setdefault(kind, [0.0, 0.0])
            w[0], w[1] = max(w[0], sums), max(w[1], entries)
    return worst


def main(argv):
    """python -m tests.test_parity_trajectory [--self] [variant ...]: the measured agreement of floq-jax with the
    published trajectory (compiled with the suite's XLA flags), or with --self of floq-jax with itself compiled
    with XLA's default flags (FLOQ_TEST_FULL_XLA=1, in a subprocess)."""
    import subprocess
    import sys
    import tempfile

    if argv[:1] == ['--save']:  # the subprocess of --self: floq-jax's tables into argv[1]
        np.savez(argv[1], **{f'{k}/{kind}': t for (k, kind), t in tables(argv[2]).items()})
        return
    against_self = argv[:1] == ['--self']
    arrays = golden()[0]
    for name in [a for a in argv if a != '--self'] or list(traj.VARIANTS):
        mine = tables(name)
        if against_self:
            with tempfile.TemporaryDirectory() as tmp:
                env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
                subprocess.run([sys.executable, '-m', 'tests.test_parity_trajectory', '--save', f'{tmp}/t.npz', name],
                               env=dict(env, FLOQ_TEST_FULL_XLA='1'), check=True)
                with np.load(f'{tmp}/t.npz') as f:
                    theirs = {(int(key.split('/')[0]), key.split('/')[1]): f[key] for key in f.files}
        else:
            theirs = {(k, kind): arrays[f'{name}/u{k}/{kind}'] for k, kind in mine}
        print(name, ' | '.join(f'{kind}: sums {s:.1e}, entries {e:.1e}{"" if kind in ("mu", "nu") else " ulp"}'
                               for kind, (s, e) in agreement(name, mine, theirs).items()), flush=True)


if __name__ == '__main__':
    import sys

    import tests.conftest  # noqa: F401  (the suite's XLA flags, before the first computation)
    main(sys.argv[1:])
