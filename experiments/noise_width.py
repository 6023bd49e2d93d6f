"""Experiment 2: width of floq's initial-noise interval (noise_coverage in {0, 0.01, 0.1, 0.25, 0.5, 1.0}) with
curvature diagnostics of the critic's integration paths logged during training (train.csv
'diagnostics/straightness', 'diagnostics/velocity_spread', 'diagnostics/q_change' = mean |Q_K - Q_2K|),
plotted against performance.

    python -m experiments.noise_width --scale=smoke --save_dir=/tmp/sweeps
    python -m experiments.noise_width --scale=cpu --save_dir=runs/sweeps     # sized for ~1 h on 2 CPU cores (docs/experiments.md)
    python -m experiments.noise_width --scale=paper --dataset_dir=~/.ogbench/data

Writes results.{md,csv}, learning_curves.png, noise_width_diagnostics.csv, curvature_vs_success.png,
curvature_curves_<metric>.png.
"""

import os

from absl import app, flags

import agents
from experiments import sweep_cli
from floq_jax import sweeps

sweep_cli.define_flags()
flags.DEFINE_string('coverages', '', 'Comma list of noise_coverage values (default: smoke 0,0.1; cpu 0,0.1,0.25,1; '
                    'paper 0,0.01,0.1,0.25,0.5,1).')
FLAGS = flags.FLAGS

COVERAGES = {'smoke': (0.0, 0.1), 'cpu': (0.0, 0.1, 0.25, 1.0), 'paper': (0.0, 0.01, 0.1, 0.25, 0.5, 1.0)}
PAPER_ENVS = ('cube-double-play-singletask-task2-v0', 'puzzle-4x4-play-singletask-task4-v0')
CURVATURE = ('diagnostics/straightness', 'diagnostics/velocity_spread', 'diagnostics/q_change')


def variants(coverages):
    return [sweeps.Variant(f'cov{c:g}', 'floq', {'noise_coverage': float(c)}, tags={'noise_coverage': float(c)})
            for c in coverages]


def post(sweep):
    from floq_jax.analysis import report

    runs = sweeps.load_sweep_runs(sweep)
    df = sweeps.per_variant_metrics(
        sweep, runs, CURVATURE, per_seed_path=os.path.join(sweep.root, sweeps.METRICS_PER_SEED_FILE))
    df.to_csv(os.path.join(sweep.root, 'noise_width_diagnostics.csv'), index=False)
    keys = [k.split('/', 1)[1] for k in CURVATURE]
    sweeps.scatter_vs_success(df, keys, os.path.join(sweep.root, 'curvature_vs_success.png'),
                              title='final curvature diagnostics vs success (per noise coverage)')
    missing = [k for k in keys if k not in df.columns or not df[k].notna().any()]
    for key in CURVATURE:
        if key.split('/', 1)[1] not in missing:
            report.plot_train_metric(runs, os.path.join(sweep.root, f'curvature_curves_{key.split("/")[1]}.png'),
                                     metric=key, group_by='variant')
    cols = ['env_name', 'variant', 'num_seeds', 'success'] + [k for k in keys if k in df.columns]
    md = ['## Curvature diagnostics (final logged values, mean over seeds)', '',
          'straightness = |z_K - z_0| / path length (1 = straight); velocity_spread = std over steps of the '
          'per-step velocity; q_change = mean |Q_K - Q_2K| on a fixed validation batch.  95% CIs in '
          'noise_width_diagnostics.csv.', '', report.frame_to_markdown(df[cols])]
    if missing:
        md.append(f'Missing (not logged by this runner): {", ".join(missing)}\n')
    return '\n'.join(md)


def main(_):
    covs = sweeps.parse_list(FLAGS.coverages, float) or COVERAGES[FLAGS.scale]
    sweep, source = sweep_cli.sweep_from_flags(
        'noise_width', variants(covs), PAPER_ENVS, agents, options={'log_diagnostics': True},
        description='Variants cov<c>: floq with noise_coverage=c, i.e. z0 ~ U[c r_min, c r_max] / (1 - gamma).')
    sweep_cli.main(sweep, source, post=post)


if __name__ == '__main__':
    app.run(main)
