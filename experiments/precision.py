"""Effect of ``compute_dtype`` (bfloat16 matmuls, float32 params and losses) on Q accuracy.

Runs the two ground-truth checks of tests/test_agents.py at float32 and bfloat16 and prints a table:
(a) terminal transitions with reward f(s, a): R^2 of Q against f at K = 8;
(b) constant reward -1 with mask 1 and gamma 0.9: mean Q against the exact -10.

    python -m experiments.precision [--updates=1000] [--out=docs/precision.md]
"""

import json
import time

import jax
from absl import app, flags

from agents import floq
from floq_jax.analysis import groundtruth
from floq_jax.scaling import scaled_config

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The entrypoint's flags, defined only when it runs (importing small_config must not define --out, which
    experiments.benchmark defines too)."""
    flags.DEFINE_integer('updates', 1000, 'Updates per check.')
    flags.DEFINE_string('out', None, 'Optional markdown file for the table.')


def small_config(**overrides):
    """floq at the 'medium' scale of floq_jax.scaling (2 x 64 nets, 4 noise samples, K = 8) at batch 128, lr 1e-3."""
    return scaled_config(floq.get_config(), 'medium', **{'batch_size': 128, 'lr': 1e-3, **overrides})


def make_factory(dtype, **overrides):
    def make(ex_obs, ex_act, r_min, r_max):
        return floq.FloqAgent.create(0, ex_obs, ex_act, small_config(discount=0.9, r_min=r_min, r_max=r_max,
                                                                     compute_dtype=dtype, **overrides))
    return make


def check_terminal(dtype, updates):
    return groundtruth.terminal_reward_r2(make_factory(dtype), updates)


def check_constant(dtype, updates):
    return groundtruth.constant_reward_q(make_factory(dtype, tau=0.05, noise_coverage=1.0), updates)


def main(_):
    rows = []
    for dtype in ('float32', 'bfloat16'):
        t0 = time.time()
        r2 = check_terminal(dtype, FLAGS.updates)
        q = check_constant(dtype, FLAGS.updates)
        rows.append(dict(compute_dtype=dtype, terminal_r2=r2, constant_q=q, constant_rel_error=abs(q + 10) / 10,
                         seconds=time.time() - t0))
        print(json.dumps(rows[-1]))
    lines = ['| compute_dtype | (a) R^2 of Q vs f(s,a), K=8 | (b) mean Q (exact -10) | (b) relative error |',
             '| --- | --- | --- | --- |']
    lines += [f"| {r['compute_dtype']} | {r['terminal_r2']:.3f} | {r['constant_q']:.3f} | {100 * r['constant_rel_error']:.1f}% |"
              for r in rows]
    table = '\n'.join(lines)
    print(table)
    if FLAGS.out:
        with open(FLAGS.out, 'w') as f:
            f.write('# compute_dtype and Q accuracy\n\n'
                    f'Command: `python -m experiments.precision --updates={FLAGS.updates}` '
                    f'(device: {jax.devices()[0].device_kind}; small nets 2x64, batch 128).\n\n'
                    + table + '\n\nbfloat16 here means bf16 matmul inputs with float32 parameters, '
                    'losses and TD targets (`config.compute_dtype`). On CPU bf16 is emulated and slower; '
                    'its use is on GPU/TPU.\n')


if __name__ == '__main__':
    define_flags()
    app.run(main)
