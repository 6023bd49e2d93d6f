"""Golden values from the published floq code (CMU-AIRe/floq) for floq-jax's pixel parity fixture.

This tool DRIVES a checkout of the published code named by ``--reference_dir``; nothing of that code is copied
here.  On tiny uint8 frames (16 x 16 x 3 for the encoders, 8 x 8 x 3 for the agents) it records, into one ``.npz`` that ``tests/test_parity_pixels.py``
checks floq-jax against:

* ``encoders``: for every name in the published ``utils/encoders.encoder_modules``, a digest of each parameter
  leaf of ``encoder.init(PRNGKey(0), frames)`` (so floq-jax's initialisation is checked bit for bit without
  storing megabytes) and the encoder's output on the frames.
* ``fql``: the published FQL agent with ``encoder='impala_debug'`` and 2 x 8 networks: its parameters, its critic,
  target critic, BC flow and one-step policies on the fixed batch, one update's total loss, info and gradients
  (the losses' random draws on a tape, as in ``experiments/parity_golden.py``), and a trajectory of
  ``NUM_UPDATES`` consecutive ``agent.update`` calls (each update's info; every parameter and target parameter
  after the last).
* ``floq_field`` / ``floq_value``: the published floq agent cannot build an encoder-using update (its
  ``critic_loss`` unpacks ``batch_size, observation_dim = observations.shape``, which fails on frames, and its
  ``target_floq`` module has no encoder parameters: the error messages are in the metadata, ``floq_agent_error``),
  so the floq pieces are recorded as modules: the published ``CriticVectorField`` and ``Value`` (the velocity
  field and the distilled critic) each with its own ``impala_debug`` encoder, initialised by the published code,
  and their outputs on fixed inputs.
* ``sampling``: the published random crop (``utils/datasets.batched_random_crop`` with the padding 3 of
  ``Dataset.augment``) at every offset, and ``Dataset.initial_locs`` of hand-made terminals.  (The published
  floq's ``Dataset.sample`` ignores ``frame_stack`` and ``p_aug``; the stacking rule is the published FQL's
  ``Dataset.sample``, which tests/test_pixel_sampling.py restates as its oracle.)

Needs an interpreter with the published code's requirements (jax, flax, optax, ml_collections, distrax); run it
from the repository root:

    <reference-venv>/bin/python -m experiments.parity_pixels --reference_dir=<floq checkout> \\
        --out=tests/data/parity_pixels.npz
"""

import copy
import hashlib
import importlib

import numpy as np

from experiments.parity_golden import (NoiseTape, flat, golden_args, golden_meta, load_reference, taped_loss,
                                       write_golden)

ENCODER_FRAME = (16, 16, 3)  # the encoders' check
FRAME = (8, 8, 3)  # the agents' (small, so the fixture stays small: impala_debug's MLP reads 2 x 2 x 4 features)
ACTION_DIM, BATCH, NUM_UPDATES = 2, 4, 3
ENCODER = 'impala_debug'
FQL_OVERRIDES = dict(encoder=ENCODER, actor_hidden_dims=(8, 8), batch_size=BATCH, block_width=8, block_depth=2,
                     flow_steps=4)
FLOQ_OVERRIDES = dict(encoder=ENCODER, actor_hidden_dims=(8, 8), value_hidden_dims=(8, 8), batch_size=BATCH,
                      block_width=8, block_depth=2, noise_samples=2, critic_flow_steps=4, actor_flow_steps=4,
                      r_min=-1.0, r_max=0.0)
FIELD = dict(hidden_dims=(8, 8), layer_norm=True, num_ensembles=2, q_min=-101.0, q_max=1.0, sigma=16.0,
             num_bins=51)


def leaf_digest(x) -> str:
    """sha256 of a leaf's float32 bytes (C order) and shape."""
    x = np.ascontiguousarray(np.asarray(x, np.float32))
    return hashlib.sha256(repr(x.shape).encode() + x.tobytes()).hexdigest()


def frames(rng, n, shape=FRAME):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def make_batch(rng):
    return dict(observations=frames(rng, BATCH), next_observations=frames(rng, BATCH),
                actions=rng.uniform(-0.95, 0.95, size=(BATCH, ACTION_DIM)).astype(np.float32),
                rewards=-rng.uniform(0, 1, size=(BATCH,)).astype(np.float32),
                masks=np.array([1, 0, 1, 1], np.float32))


def record_encoders(rng):
    import jax
    import jax.numpy as jnp
    from flax import traverse_util
    from utils.encoders import encoder_modules

    x = jnp.asarray(frames(rng, 2, ENCODER_FRAME))
    out, meta = {'encoders/frames': np.asarray(x)}, {}
    for name, make in encoder_modules.items():
        module = make()
        params = module.init(jax.random.PRNGKey(0), x)
        out[f'encoders/{name}/output'] = np.asarray(module.apply(params, x))
        meta[name] = {k: leaf_digest(v) for k, v in traverse_util.flatten_dict(params['params'], sep='/').items()}
    return out, meta


def record_fql(rng, tape_seed):
    import jax.numpy as jnp
    from flax import traverse_util
    fql = importlib.import_module('agents.fql')

    config = fql.get_config()
    config.update(FQL_OVERRIDES)
    batch = make_batch(rng)
    agent = fql.FQLAgent.create(0, batch['observations'][:2], batch['actions'][:2], copy.deepcopy(config))
    other = fql.FQLAgent.create(1, batch['observations'][:2], batch['actions'][:2], copy.deepcopy(config))
    # A target critic different from the current one (another seed's), so the fixture tells them apart.
    agent.network.params['modules_target_critic'] = other.network.params['modules_critic']
    params, select = agent.network.params, agent.network.select
    obs, act = jnp.asarray(batch['observations']), jnp.asarray(batch['actions'])
    noises = rng.normal(size=(BATCH, ACTION_DIM)).astype(np.float32)
    out = {'critic': select('critic')(obs, act), 'critic_target': select('target_critic')(obs, act),
           'flow_actions': agent.compute_flow_actions(obs, noises=jnp.asarray(noises)),
           'onestep_actions': select('actor_onestep_flow')(obs, jnp.asarray(noises))}
    loss, info, grads, tape = taped_loss(agent, params, batch, tape_seed)
    out['total_loss'] = loss
    out.update({f'info/{k}': v for k, v in info.items()})
    result = {f'fql/outputs/{k}': np.asarray(v, np.float32) for k, v in out.items()}
    result.update({f'fql/batch/{k}': v for k, v in batch.items()})
    result['fql/inputs/action_noises'] = noises
    result.update(flat(params, 'fql/params'))
    result.update({f'fql/grads/{k}': np.asarray(v) for k, v in traverse_util.flatten_dict(grads, sep='/').items()
                   if not k.startswith('modules_target_')})
    for i, (_, x) in enumerate(tape.draws):
        result[f'fql/draws/{i:02d}'] = x
    draws = [kind for kind, _ in tape.draws]

    # The trajectory: NUM_UPDATES updates of the published code from these parameters, on fresh batches.
    trajectory = []
    for k in range(NUM_UPDATES):
        step_batch = make_batch(rng)
        tape = NoiseTape(tape_seed + 1 + k)
        with tape.recording():
            agent, info = agent.update({n: jnp.asarray(v) for n, v in step_batch.items()})
        result.update({f'fql/u{k}/batch/{n}': v for n, v in step_batch.items()})
        result.update({f'fql/u{k}/draws/{i:02d}': x for i, (_, x) in enumerate(tape.draws)})
        if k == NUM_UPDATES - 1:  # the parameters at the end (the info of every update)
            result.update(flat(agent.network.params, 'fql/final_params'))
        result.update({f'fql/u{k}/info/{n}': np.asarray(v, np.float32) for n, v in info.items()})
        trajectory.append([kind for kind, _ in tape.draws])
    meta = dict(config={k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(agent.config).items()},
                overrides=FQL_OVERRIDES, draws=draws, trajectory_draws=trajectory)
    return result, meta


def record_floq_pieces(rng):
    """The published floq agent's encoder-using modules, built as the published ``FloQAgent.create`` builds them."""
    import jax
    import jax.numpy as jnp
    networks = importlib.import_module('utils.networks')
    from utils.encoders import encoder_modules

    obs = jnp.asarray(frames(rng, BATCH))
    act = jnp.asarray(rng.uniform(-0.95, 0.95, size=(BATCH, ACTION_DIM)).astype(np.float32))
    returns = jnp.asarray(rng.uniform(-12.0, 1.0, size=(FIELD['num_ensembles'], BATCH, 1)).astype(np.float32))
    times = jnp.asarray(rng.uniform(size=(BATCH, 1)).astype(np.float32))
    field = networks.CriticVectorField(encoder=encoder_modules[ENCODER](), embed_time=True, use_prob_embed=True,
                                       **FIELD)
    value = networks.Value(hidden_dims=(8, 8), layer_norm=True, num_ensembles=2,
                           encoder=encoder_modules[ENCODER]())
    field_params = field.init(jax.random.PRNGKey(1), obs, act, returns, times)
    value_params = value.init(jax.random.PRNGKey(2), obs, act)
    result = {'floq/inputs/observations': np.asarray(obs), 'floq/inputs/actions': np.asarray(act),
              'floq/inputs/returns': np.asarray(returns), 'floq/inputs/times': np.asarray(times),
              'floq/outputs/field': np.asarray(field.apply(field_params, obs, act, returns, times)),
              'floq/outputs/value': np.asarray(value.apply(value_params, obs, act))}
    result.update(flat(field_params['params'], 'floq/field_params'))
    result.update(flat(value_params['params'], 'floq/value_params'))
    return result


def record_sampling(rng):
    """The published ``utils/datasets.py`` pieces of pixel sampling: ``batched_random_crop`` (padding 3, as
    ``Dataset.augment`` calls it) on fixed frames at every offset, and ``Dataset.initial_locs`` (episode starts) of
    hand-made terminals."""
    import jax.numpy as jnp
    datasets = importlib.import_module('utils.datasets')

    images = frames(rng, 49, (5, 6, 2))
    offsets = np.array([[i, j, 0] for i in range(7) for j in range(7)], np.int64)  # every offset 0 .. 2 * padding
    cropped = datasets.batched_random_crop(jnp.asarray(images), jnp.asarray(offsets), 3)
    terminals = np.array([0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1], np.float32)
    data = datasets.Dataset.create(observations=np.zeros((12, 1), np.float32), terminals=terminals)
    return {'sampling/images': images, 'sampling/offsets': offsets[:, :2], 'sampling/cropped': np.asarray(cropped),
            'sampling/terminals': terminals, 'sampling/initial_locs': np.asarray(data.initial_locs)}


def floq_agent_error(rng):
    """What the published floq agent does with an encoder: its error on create + update, and on target_floq."""
    import jax.numpy as jnp
    floq = importlib.import_module('agents.floq')
    config = floq.get_config()
    config.update(FLOQ_OVERRIDES)
    batch = make_batch(rng)
    errors = {}
    try:
        agent = floq.FloQAgent.create(0, batch['observations'][:2], batch['actions'][:2], copy.deepcopy(config))
    except Exception as e:  # noqa: BLE001 - recorded, not handled
        return {'create': f'{type(e).__name__}: {e}'}
    for what, call in (('update', lambda: agent.update({k: jnp.asarray(v) for k, v in batch.items()})),
                       ('target_floq', lambda: agent.network.select('target_floq')(
                           jnp.asarray(batch['observations']), jnp.asarray(batch['actions']),
                           returns=jnp.zeros((2, BATCH, 1)), times=jnp.zeros((BATCH, 1))))):
        try:
            call()
            errors[what] = None
        except Exception as e:  # noqa: BLE001 - recorded, not handled
            errors[what] = f'{type(e).__name__}: {str(e).splitlines()[0][:300]}'
    return errors


def main():
    args = golden_args(__doc__, 'tests/data/parity_pixels.npz')
    _, commit = load_reference(args.reference_dir)
    rng = np.random.default_rng(args.seed)
    data, encoder_meta = record_encoders(rng)
    fql_data, fql_meta = record_fql(rng, tape_seed=args.seed + 500)
    data.update(fql_data)
    data.update(record_floq_pieces(rng))
    data.update(record_sampling(rng))
    meta = golden_meta(commit, frame=FRAME, encoder=ENCODER, field=FIELD, encoders=encoder_meta, fql=fql_meta,
                       floq_agent_error=floq_agent_error(rng))
    write_golden(args.out, data, meta)


if __name__ == '__main__':
    main()
