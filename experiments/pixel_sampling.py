"""Throughput of pixel batch sampling: the host sampler (numpy gather, frame stack and crop on the host, what a
dataset too large for the device memory uses) and the on-device sampler (``sample_batch`` jitted, here on the
default backend), on a synthetic uint8 dataset of ``--rows`` frames of ``--frame``.

    python -m experiments.pixel_sampling --rows=50000 --frame=64,64,3 --batch_size=256 --frame_stack=3 \\
        --p_aug=0.5 --steps=20 --repeats=5

Prints one line per sampler: batches/s and MB/s of batch produced (observation + next observation bytes), and the
dataset's bytes (uint8, observations and next observations both held, as floq-jax's training arrays are).
"""

import argparse
import time

import numpy as np


def synthetic_arrays(rows: int, frame, episode_length: int = 1000, seed: int = 0):

    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 256, size=(rows, *frame), dtype=np.uint8)
    terminals = np.zeros(rows, np.float32)
    terminals[episode_length - 1::episode_length] = 1.0
    terminals[-1] = 1.0
    data = dict(observations=obs, next_observations=np.roll(obs, -1, axis=0), terminals=terminals,
                actions=rng.uniform(-1, 1, size=(rows, 5)).astype(np.float32),
                rewards=np.zeros(rows, np.float32), masks=np.ones(rows, np.float32))
    return data


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rows', type=int, default=50_000)
    parser.add_argument('--frame', default='64,64,3')
    parser.add_argument('--batch_size', type=int, default=256)
    parser.add_argument('--frame_stack', type=int, default=3)
    parser.add_argument('--p_aug', type=float, default=None)
    parser.add_argument('--steps', type=int, default=20, help='batches per host chunk')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', action='store_true', help='also time the jitted on-device sampler')
    parser.add_argument('--update_agent', default=None, help="also time updates of this agent ('fql' or 'floq', "
                        'its default config) with --encoder on the host-sampled batches')
    parser.add_argument('--encoder', default='impala_small')
    parser.add_argument('--updates', type=int, default=5)
    args = parser.parse_args()

    import jax

    from floq_jax.data import sampling

    frame = tuple(int(x) for x in args.frame.split(','))
    arrays = sampling.batch_arrays(synthetic_arrays(args.rows, frame), frame_stack=args.frame_stack)
    pixels = sampling.Pixels(args.frame_stack, args.p_aug)
    print(f'dataset: {args.rows} rows of {frame} uint8: {sampling.nbytes(arrays) / 2**30:.2f} GiB held '
          f'(observations {arrays["observations"].nbytes / 2**30:.2f} GiB, next observations the same); '
          f'1M rows would hold {2 * 1e6 * np.prod(frame) / 1e9:.1f} GB')
    batch_bytes = 2 * args.batch_size * np.prod(frame) * (args.frame_stack or 1)

    def report(name, seconds, batches):
        rate = batches / seconds
        print(f'{name}: {rate:.1f} batches/s ({rate * batch_bytes / 1e6:.0f} MB/s of frames), batch {args.batch_size} '
              f'x {frame[:2]} x {frame[2] * (args.frame_stack or 1)} channels, p_aug {args.p_aug}')

    sampler = sampling.HostSampler(arrays, args.batch_size, [0], pixels)
    sampler.get(0, args.steps)  # warm up
    start = time.perf_counter()
    for r in range(args.repeats):
        chunk = sampler.get((r + 1) * args.steps, args.steps)
    elapsed = time.perf_counter() - start
    sampler.close()
    assert chunk['observations'].dtype == np.uint8
    report('host sampler (one thread, no overlap)', elapsed, args.repeats * args.steps)

    if args.device:
        data = sampling.put_replicated(arrays)
        sample = jax.jit(lambda d, k: sampling.sample_batch(d, k, args.batch_size, pixels)['observations'].sum())
        jax.block_until_ready(sample(data, jax.random.PRNGKey(0)))
        start = time.perf_counter()
        n = args.repeats * args.steps
        for k in range(n):
            out = sample(data, jax.random.PRNGKey(k + 1))
        jax.block_until_ready(out)
        report(f'device sampler ({jax.default_backend()}, jitted, one batch a call)', time.perf_counter() - start, n)

    if args.update_agent:
        time_updates(args, arrays, pixels)


def time_updates(args, arrays, pixels):
    """Seconds per update of ``--update_agent`` (its default config, ``--encoder``) on host-sampled batches."""
    import jax

    from agents import agent_class, get_config
    from floq_jax.data import sampling

    config = get_config(args.update_agent)
    config.update(encoder=args.encoder, batch_size=args.batch_size, r_min=-1.0, r_max=0.0)
    ex_obs = sampling.example_observations(arrays, args.frame_stack)
    agent = agent_class(config.agent_name).create(0, ex_obs, arrays['actions'][:1], config)
    batches = sampling.host_chunk(arrays, [0], 0, args.updates + 1, args.batch_size, pixels)
    batch = lambda k: {key: v[0, k] for key, v in batches.items()}
    start = time.perf_counter()
    agent, info = agent.update(batch(0))
    jax.block_until_ready(info)
    compiled = time.perf_counter() - start
    start = time.perf_counter()
    for k in range(1, args.updates + 1):
        agent, info = agent.update(batch(k))
    jax.block_until_ready(info)
    per = (time.perf_counter() - start) / args.updates
    print(f'{config.agent_name} update ({args.encoder}, default sizes, batch {args.batch_size}, '
          f'{jax.default_backend()}): {per:.2f} s per update ({1 / per:.2f} updates/s); first update with '
          f'compilation {compiled:.0f} s')


if __name__ == '__main__':
    main()
