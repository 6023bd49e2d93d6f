"""Data-only baselines for the sweeps' critic measures, without any run: a constant Q and a ridge regression of the
behaviour's Monte-Carlo returns, scored on the held-out states the sweeps score their critics on (the same
``--mc_states`` and seed 0; floq_jax.analysis.mc_returns.behaviour_return_baselines).  The sweeps scale_k, utd and
mechanisms write the same table (critic_baselines.csv) with their report; this entrypoint computes it for a result set
written before they did.

    python -m experiments.critic_baselines --scale=cpu --sweep_name=utd --save_dir=<result sets>

Writes <save_dir>/<sweep_name>/critic_baselines.csv (and prints its markdown).  The data are the scale's (generated
where no --dataset_dir file exists, cached in --cache_dir).
"""

import os

from absl import app, flags

import agents
from experiments import sweep_cli
from floq_jax import sweeps

sweep_cli.define_flags()
flags.DEFINE_string('sweep_name', 'scale_k', 'The result set (sub-directory of --save_dir) to write into.')
FLAGS = flags.FLAGS


def main(_):
    sweep, source = sweep_cli.sweep_from_flags(FLAGS.sweep_name, [sweeps.Variant('floq')], (sweeps.CPU_ENV,), agents)
    rows = []
    for env in sweep.envs:
        data = sweeps.load_data(env, source)
        discount = float(sweeps.make_config(sweeps.Variant('floq'), env, sweep.preset, agents, data).discount)
        rows += sweeps.env_baselines(env, data, discount, FLAGS.mc_states)
    import pandas as pd

    frame = pd.DataFrame(rows)
    os.makedirs(sweep.root, exist_ok=True)
    path = os.path.join(sweep.root, sweeps.BASELINES_FILE)
    frame.to_csv(path, index=False)
    print(sweeps.baselines_md(frame))
    print(path)


if __name__ == '__main__':
    app.run(main)
