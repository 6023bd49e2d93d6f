"""Golden values from the published floq code (CMU-AIRe/floq) for floq-jax's numerical parity fixture.

This tool DRIVES a checkout of the published code named by ``--reference_dir``; nothing of that code is copied
here.  It builds the published floq, FQL and FQL-IQN agents with small networks (2 x 32, batch 8, K = 4,
noise_samples 2), evaluates their networks and losses on fixed inputs, and writes parameters, inputs, random
draws and outputs into one ``.npz`` that ``tests/test_parity_fixture.py`` checks floq-jax against (in the
project's venv: no distrax and no reference checkout needed at test time).

Random draws: the published losses draw their noise from ``jax.random.normal`` / ``jax.random.uniform`` with
their own key splits, which floq-jax does not share.  So the losses are evaluated with those two functions
replaced by a *tape* (numpy draws of the requested shape, in call order) and with ``jax.disable_jit()`` (so
every draw happens once, in Python order, and no jit cache replays an earlier draw).  The tape, i.e. the kind
and value of every draw in order, is saved; the test replays it into floq-jax, whose losses draw in the same
order.  Every other quantity is computed from explicit inputs (fixed noise ratios, times, returns, taus).

Needs an interpreter with the published code's requirements (jax, flax, optax, ml_collections, distrax):

    <floq-venv>/bin/python experiments/parity_golden.py --reference_dir=<floq checkout> \\
        --out=tests/data/parity_golden.npz
"""

import argparse
import contextlib
import copy
import importlib
import json
import os
import subprocess
import sys

import numpy as np

OB_DIM, ACTION_DIM, BATCH = 5, 2, 8
SMALL = dict(actor_hidden_dims=(32, 32), batch_size=BATCH)
# Published config overrides per agent (everything else is the published get_config()).
OVERRIDES = {
    'floq': dict(SMALL, value_hidden_dims=(32, 32), block_width=32, block_depth=2, noise_samples=2,
                 critic_flow_steps=4, actor_flow_steps=4, r_min=-1.0, r_max=0.0),
    'fql': dict(SMALL, block_width=32, block_depth=2, flow_steps=4),
    'fql_iqn': dict(SMALL, value_hidden_dims=(32, 32), flow_steps=4),
}
MODULE_FILES = {'floq': 'agents.floq', 'fql': 'agents.fql', 'fql_iqn': 'agents.fql_iqn'}
AGENT_CLASSES = {'floq': 'FloQAgent', 'fql': 'FQLAgent', 'fql_iqn': 'FQLIQNAgent'}


class NoiseTape:
    """Stands in for ``jax.random.normal`` / ``jax.random.uniform`` (U[0, 1) only): numpy draws of the requested
    shape, recorded in call order as (kind, value)."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.draws = []

    def normal(self, key, shape=(), dtype=None):
        import jax.numpy as jnp
        x = self.rng.standard_normal(tuple(shape)).astype(np.float32)
        self.draws.append(('normal', x))
        return jnp.asarray(x)

    def uniform(self, key, shape=(), dtype=None, minval=0.0, maxval=1.0):
        import jax.numpy as jnp
        if (minval, maxval) != (0.0, 1.0):
            raise NotImplementedError(f'tape: uniform on [{minval}, {maxval})')
        x = self.rng.uniform(size=tuple(shape)).astype(np.float32)
        self.draws.append(('uniform', x))
        return jnp.asarray(x)

    @contextlib.contextmanager
    def recording(self):
        import jax
        saved = jax.random.normal, jax.random.uniform
        jax.random.normal, jax.random.uniform = self.normal, self.uniform
        try:
            with jax.disable_jit():
                yield self
        finally:
            jax.random.normal, jax.random.uniform = saved


def taped_loss(agent, params, batch, tape_seed):
    """(total loss, info, gradient w.r.t. ``params``, the NoiseTape) of a published agent on ``batch`` (numpy), its
    random draws on a tape seeded ``tape_seed``."""
    import jax
    import jax.numpy as jnp

    tape = NoiseTape(tape_seed)
    jbatch = {k: jnp.asarray(v) for k, v in batch.items()}
    with tape.recording():
        (loss, info), grads = jax.value_and_grad(
            lambda p: agent.total_loss(dict(jbatch), p, rng=jax.random.PRNGKey(0)), has_aux=True)(params)
    return loss, info, grads, tape


def flat(tree, prefix):
    from flax import traverse_util
    return {f'{prefix}/{k}': np.asarray(v) for k, v in traverse_util.flatten_dict(tree, sep='/').items()}


def make_agent(module, name, seed, config):
    cls = getattr(module, AGENT_CLASSES[name])
    ex_obs, ex_act = np.zeros((2, OB_DIM), np.float32), np.zeros((2, ACTION_DIM), np.float32)
    return cls.create(seed, ex_obs, ex_act, copy.deepcopy(config))


def fixed_inputs(rng):
    """The batch and the explicit inputs shared by all three agents."""
    batch = dict(
        observations=rng.normal(size=(BATCH, OB_DIM)).astype(np.float32),
        actions=rng.uniform(-0.95, 0.95, size=(BATCH, ACTION_DIM)).astype(np.float32),
        rewards=-rng.uniform(0, 1, size=(BATCH,)).astype(np.float32),
        masks=np.array([1, 1, 0, 1, 1, 1, 0, 1], np.float32),
        next_observations=rng.normal(size=(BATCH, OB_DIM)).astype(np.float32),
    )
    inputs = dict(
        noise_ratios=rng.uniform(size=(BATCH, 1)).astype(np.float32),   # z0 = noise_min (1 - u) + noise_max u
        times=rng.uniform(size=(BATCH, 1)).astype(np.float32),
        action_noises=rng.normal(size=(BATCH, ACTION_DIM)).astype(np.float32),
        quantiles=rng.uniform(size=(BATCH, 1)).astype(np.float32),
    )
    return batch, inputs


def run_agent(name, module, networks, batch, inputs, rng, tape_seed):
    """Golden values of one published agent: {key: array}, plus its config and tape kinds for the metadata."""
    import jax.numpy as jnp
    from flax import traverse_util

    config = module.get_config()
    config.update(OVERRIDES[name])
    agent = make_agent(module, name, 0, config)
    other = make_agent(module, name, 1, config)
    critic = 'floq' if name == 'floq' else 'critic'
    # A target network different from the current one (another seed's), so the fixture tells them apart.
    agent.network.params[f'modules_target_{critic}'] = other.network.params[f'modules_{critic}']
    params = agent.network.params
    select = agent.network.select
    obs, act = jnp.asarray(batch['observations']), jnp.asarray(batch['actions'])
    out = {}

    if name == 'floq':
        field = agent.network.model_def.modules['floq']
        support = networks.compute_support(field.q_min, field.q_max, field.num_bins)
        width = float(support[1] - support[0])
        # HL-Gauss: interior points, the edges, and points up to 3 sigma outside the support.
        span = field.q_max - field.q_min
        sigma = field.sigma * width
        z = np.concatenate([
            rng.uniform(field.q_min, field.q_max, size=8),
            [field.q_min, field.q_max, field.q_max + 0.5 * sigma, field.q_max + 2.9 * sigma,
             field.q_min - 0.3 * sigma, field.q_min - 2.9 * sigma, field.q_min + 0.5 * span],
        ]).astype(np.float32)
        inputs = dict(inputs, hl_gauss_z=z)
        out['hl_gauss'] = networks.to_probs(jnp.asarray(z), support, field.sigma * width)
        # Velocity field at fixed (s, a, z, t): z (E, B, 1) inside the noise range and beyond.
        returns = rng.uniform(-12.0, 1.0, size=(config.flow_num_ensembles, BATCH, 1)).astype(np.float32)
        inputs = dict(inputs, velocity_returns=returns)
        out['velocity'] = select('floq')(obs, act, returns=jnp.asarray(returns), times=jnp.asarray(inputs['times']))
        out['velocity_target'] = select('target_floq')(obs, act, returns=jnp.asarray(returns),
                                                       times=jnp.asarray(inputs['times']))
        ratios = jnp.asarray(inputs['noise_ratios'])
        out['current_flow_returns'] = agent.compute_current_flow_returns(obs, act, noise_ratios=ratios)
        out['target_flow_returns'] = agent.compute_target_flow_returns(obs, act, noise_ratios=ratios)
        out['critic'] = select('critic')(obs, act)
        out['noise_interval'] = jnp.array([agent.config['noise_min'], agent.config['noise_max']])
        out['q_bounds'] = jnp.array([field.q_min, field.q_max])
    elif name == 'fql':
        out['critic'] = select('critic')(obs, act)
        out['critic_target'] = select('target_critic')(obs, act)
    else:
        q = jnp.asarray(inputs['quantiles'])
        out['critic'] = select('critic')(obs, act, quantiles=q)
        out['critic_target'] = select('target_critic')(obs, act, quantiles=q)
    out['flow_actions'] = agent.compute_flow_actions(obs, noises=jnp.asarray(inputs['action_noises']))
    out['onestep_actions'] = select('actor_onestep_flow')(obs, jnp.asarray(inputs['action_noises']))

    # Losses, their info and the gradient of the total loss, with the noise on a tape.
    loss, info, grads, tape = taped_loss(agent, params, batch, tape_seed)
    out['total_loss'] = loss
    for k, v in info.items():
        out[f'info/{k}'] = v
    result = {f'{name}/outputs/{k}': np.asarray(v, np.float32) for k, v in out.items()}
    result.update({f'{name}/inputs/{k}': np.asarray(v) for k, v in inputs.items() if k in _USED[name]})
    result.update(flat(params, f'{name}/params'))
    grads = {k: v for k, v in traverse_util.flatten_dict(grads, sep='/').items()
             if not k.startswith('modules_target_')}  # no gradient reaches the target networks
    result.update({f'{name}/grads/{k}': np.asarray(v) for k, v in grads.items()})
    for i, (_, x) in enumerate(tape.draws):
        result[f'{name}/draws/{i:02d}'] = x
    meta = dict(config={k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(agent.config).items()},
                overrides=OVERRIDES[name], draws=[kind for kind, _ in tape.draws])
    return result, meta


_USED = {'floq': {'noise_ratios', 'times', 'action_noises', 'hl_gauss_z', 'velocity_returns'},
         'fql': {'action_noises'}, 'fql_iqn': {'action_noises', 'quantiles'}}


def golden_args(description, default_out):
    """The golden scripts' command line: --reference_dir, --out (default ``default_out``), --seed."""
    parser = argparse.ArgumentParser(description=description.split('\n\n')[0])
    parser.add_argument('--reference_dir', required=True, help='a checkout of CMU-AIRe/floq at 2e46108')
    parser.add_argument('--out', default=default_out)
    parser.add_argument('--seed', type=int, default=0, help='seed of the fixed inputs and the noise tape')
    return parser.parse_args()


def portable_command(argv=None) -> str:
    """The command that wrote a golden file, as anyone can rerun it: ``python -m experiments.<script>`` and its
    arguments, with the reference checkout as a placeholder (no path of the machine that ran it)."""
    argv = sys.argv if argv is None else argv
    module = 'experiments.' + os.path.splitext(os.path.basename(argv[0]))[0]
    return ' '.join(['python', '-m', module] + ['--reference_dir=<checkout of CMU-AIRe/floq at reference_commit>'
                                                if a.startswith('--reference_dir') else a for a in argv[1:]])


def golden_meta(commit, **extra):
    """The metadata every golden file starts with: the reference, the command, the versions."""
    import flax
    import jax

    return dict(reference_commit=commit, reference_repo='https://github.com/CMU-AIRe/floq',
                command=portable_command(), jax_version=jax.__version__,
                flax_version=flax.__version__, backend=jax.default_backend(), **extra)


def main():
    args = golden_args(__doc__, 'tests/data/parity_golden.npz')
    networks, commit = load_reference(args.reference_dir)

    import jax

    rng = np.random.default_rng(args.seed)
    batch, inputs = fixed_inputs(rng)
    data = {f'batch/{k}': v for k, v in batch.items()}
    meta = golden_meta(commit, x64=bool(jax.config.jax_enable_x64), agents={})
    for i, name in enumerate(('floq', 'fql', 'fql_iqn')):
        module = importlib.import_module(MODULE_FILES[name])
        values, agent_meta = run_agent(name, module, networks, batch, inputs, rng, tape_seed=args.seed + 100 + i)
        data.update(values)
        meta['agents'][name] = agent_meta
    write_golden(args.out, data, meta)


def load_reference(reference_dir):
    """Makes the published checkout importable (first on sys.path, on the CPU) and returns (its utils.networks
    module, its git commit or 'unknown')."""
    os.environ.setdefault('JAX_PLATFORMS', 'cpu')
    reference_dir = os.path.abspath(reference_dir)
    sys.path.insert(0, reference_dir)
    networks = importlib.import_module('utils.networks')
    if not os.path.abspath(networks.__file__).startswith(reference_dir):
        raise SystemExit(f'utils.networks resolved to {networks.__file__}, not inside {reference_dir}')
    try:
        commit = subprocess.run(['git', '-C', reference_dir, 'rev-parse', 'HEAD'], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = 'unknown'
    return networks, commit


def write_golden(path, data, meta):
    """Writes ``data`` and ``meta`` (as JSON under 'meta') into the compressed .npz ``path``."""
    data = dict(data, meta=np.array(json.dumps(meta, sort_keys=True, default=str)))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez_compressed(path, **data)
    print(f'wrote {path}: {len(data)} arrays, {os.path.getsize(path) / 1024:.0f} KiB, '
          f'reference {meta["reference_commit"]}')


if __name__ == '__main__':
    main()
