"""The benchmark's configs (the 'bench_small' / 'bench_tiny' scales of floq_jax.scaling) and the set-up every
section shares: the synthetic dataset on the device and on the host, the compiled chunks, the results dict."""

from __future__ import annotations

import sys

from absl import flags

import numpy as np

from floq_jax.scaling import scaled_config
from floq_jax.training import benchmarking as bm
from floq_jax.training import parallel
from floq_jax.data import sampling

from agents import floq as floq_lib
from agents import fql as fql_lib

FLAGS = flags.FLAGS


OB_DIM, ACTION_DIM = 28, 5  # cube-single (OGBench): the dims the published FLOP numbers use.


def make_config(agent, K=None, small=False, tiny=None):
    """The benchmark's config of ``agent`` ('floq' or 'fql'): its defaults with the reward range [-1, 0], ``K``
    critic flow steps, then the 'bench_small' scale (2 x 256 nets, 4 noise samples) with ``small`` and the
    'bench_tiny' scale (toy sizes; the critic's K stays the benchmark's) with ``tiny`` (default: ``--tiny``)."""
    config = floq_lib.get_config() if agent == 'floq' else fql_lib.get_config()
    config.r_min, config.r_max = -1.0, 0.0
    if K is not None:
        config.critic_flow_steps = K
    for scale, on in (('bench_small', small), ('bench_tiny', FLAGS.tiny if tiny is None else tiny)):
        if on:
            config = scaled_config(config, scale)
    return config


def agent_cls(agent):
    return floq_lib.FloqAgent if agent == 'floq' else fql_lib.FQLAgent


def _bad_flag(flag: str, accepted: str) -> None:
    sys.stderr.write(f'error: --{flag}: {accepted}\n')
    sys.exit(2)


def positive_ints(flag: str, values) -> list:
    """``values`` (strings or ints) as positive ints; otherwise one line on stderr naming the flag, exit 2."""
    try:
        out = [int(v) for v in values]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        _bad_flag(flag, f'a comma-separated list of positive integers, got {",".join(map(str, values))!r}')
    return out


class BenchBase:
    """The shared state of the sections (each section is a mixin of experiments.benchmark.Bench)."""

    def __init__(self):
        self.quick = FLAGS.quick or FLAGS.tiny
        n = 4096 if FLAGS.tiny else FLAGS.num_transitions
        self.host_data = bm.fake_dataset(n, OB_DIM, ACTION_DIM)
        self.data = sampling.put_replicated(self.host_data)
        self.results = {'updates': [], 'seeds': {}, 'loop': {}, 'profile': {}, 'evaluation': None,
                        'eval_seeds': None}
        self.compiled = {}  # (agent, K, small) -> AOT-compiled update, reused by the host loop
        self.chunks = {}  # (batch_size, steps) -> make_train_chunk (seeds and loop share one in --quick)

    def chunk(self, batch_size, steps):
        if (batch_size, steps) not in self.chunks:
            self.chunks[(batch_size, steps)] = parallel.make_train_chunk(batch_size, steps)
        return self.chunks[(batch_size, steps)]

    def log(self, *a):
        print(*a, flush=True)

    def batch(self, batch_size):
        return bm.host_batch(self.host_data, np.random.default_rng(0), batch_size)
