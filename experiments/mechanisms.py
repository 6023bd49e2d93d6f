"""Experiment 5: which mechanism of flow-matching critics matters.
  (a) expected vs distributional backup: floq vs distributional floq (each noise regresses on its own TD target);
      FQL vs FQL with an IQN critic;
  (b) predicting the final value from (t, z) (predict_final) vs predicting the velocity;
  (c) a stale copy of the velocity field for the first m of K = 8 integration steps, m in {0, 2, 4, 6, 8};
  (d) noise of magnitude {0, 4, 8, 16} added to the TD (regression) targets, floq vs FQL.

    python -m experiments.mechanisms --scale=smoke --save_dir=/tmp/sweeps
    python -m experiments.mechanisms --scale=cpu --save_dir=runs/sweeps     # sized for ~1 h on 2 CPU cores (docs/experiments.md)
    python -m experiments.mechanisms --scale=paper --dataset_dir=~/.ogbench/data [--parts=a,b,c,d]

The baselines (floq, fql) are shared by the parts (m = 0 and noise 0 are the baselines).  Writes
results.{md,csv}, per_seed.csv, learning_curves.png, mechanisms.csv (success and held-out Q errors per variant),
heldout_q_per_seed.csv, critic_baselines.csv, mechanisms.png, mechanisms_q_error.png.
"""

import os

from absl import app, flags

from floq_jax.analysis import report
import agents
from experiments import sweep_cli
from floq_jax import sweeps

sweep_cli.define_flags()
flags.DEFINE_string('parts', 'a,b,c,d', 'Comma list of parts to run.')
flags.DEFINE_string('stale_steps', '', 'Comma list of m (default: smoke 1 with K = 2; cpu 2 with K = 4; paper 2,4,6,8 '
                    'with K = 8).')
flags.DEFINE_string('target_noise', '', 'Comma list of noise magnitudes (default: smoke 4; cpu 8; paper 4,8,16).')
FLAGS = flags.FLAGS

PAPER_ENVS = ('cube-double-play-singletask-task2-v0', 'puzzle-4x4-play-singletask-task4-v0')
# m of the stale copy (K = 2 smoke, 4 cpu, 8 paper) and the TD-target noise magnitudes, per scale.
STALE_STEPS = {'smoke': (1,), 'cpu': (2,), 'paper': (2, 4, 6, 8)}
TARGET_NOISE = {'smoke': (4.0,), 'cpu': (8.0,), 'paper': (4.0, 8.0, 16.0)}


def variants(parts, stale, noises, paper: bool):
    V = sweeps.Variant
    k = {'critic_flow_steps': 8} if paper else {}
    out = [V('floq', 'floq', k, tags={'part': 'baseline'}), V('fql', 'fql', tags={'part': 'baseline'})]
    if 'a' in parts:
        out += [V('floq_distributional', 'floq', {**k, 'distributional': True}, tags={'part': 'a'}),
                V('fql_iqn', 'fql_iqn', tags={'part': 'a'})]
    if 'b' in parts:
        out += [V('floq_predict_final', 'floq', {**k, 'predict_final': True}, tags={'part': 'b'})]
    if 'c' in parts:
        out += [V(f'floq_stale{m}', 'floq', {**k, 'stale_steps': int(m)}, tags={'part': 'c', 'stale_steps': int(m)})
                for m in stale if int(m) > 0]
    if 'd' in parts:
        for n in noises:
            if float(n) > 0:
                out += [V(f'floq_noise{n:g}', 'floq', {**k, 'target_noise': float(n)},
                          tags={'part': 'd', 'target_noise': float(n)}),
                        V(f'fql_noise{n:g}', 'fql', {'target_noise': float(n)},
                          tags={'part': 'd', 'target_noise': float(n)})]
    return out


Q_MEASURES = ('q_abs_error', 'q_centered_error', 'q_rank_corr')


def post(sweep):
    runs = sweeps.load_sweep_runs(sweep)
    df = sweeps.per_variant_metrics(sweep, runs, ())
    part = {v.name: v.tags.get('part', '') for v in sweep.variants}
    df.insert(2, 'part', [part.get(v, '') for v in df['variant']])
    # The critic's accuracy on held-out states (final checkpoint, its own K), a measure that does not need the policy
    # to succeed: mean and 95% CI over seeds per (env, variant).
    q = sweeps.heldout_q_errors(sweep, runs, max_states=FLAGS.mc_states)
    baselines_md = sweeps.write_heldout_files(sweep, runs, q, max_states=FLAGS.mc_states)
    q_stats = report.grouped_mean_ci(q, ['env_name', 'variant'], Q_MEASURES).drop(columns='num_seeds')
    df = df.merge(q_stats, on=['env_name', 'variant'], how='left')
    df.to_csv(os.path.join(sweep.root, 'mechanisms.csv'), index=False)
    sweeps.bar_plot(df, 'success', os.path.join(sweep.root, 'mechanisms.png'),
                    title='final success per mechanism variant (mean, 95% CI over seeds)')
    sweeps.bar_plot(df, 'q_centered_error', os.path.join(sweep.root, 'mechanisms_q_error.png'), scale=1.0,
                    ylabel='centered |Q - MC return|', title='held-out Q error, offset removed (mean, 95% CI)')
    md = ['## Mechanisms', '',
          '(a) floq_distributional, fql_iqn vs floq, fql; (b) floq_predict_final vs floq; (c) floq_stale<m> vs floq '
          '(m = 0); (d) <agent>_noise<n> vs <agent> (n = 0).', '',
          'q_abs_error: mean |Q(s, a) - G(s, a)| of the final checkpoint (its own K) on held-out states, G the '
          'Monte-Carlo discounted return of the validation trajectories; q_centered_error: the same once the mean '
          'offset is removed; q_rank_corr: Spearman correlation of Q and G (floq_jax.analysis.mc_returns; 95% CIs '
          'in mechanisms.csv).', '',
          report.frame_to_markdown(df[['env_name', 'variant', 'part', 'num_seeds', 'success', 'success_ci_low',
                                       'success_ci_high', *Q_MEASURES]]),
          sweeps.truncated_returns_note(float(q['mc_tolerance'].max())), baselines_md]
    return '\n'.join(md)


def main(_):
    paper = FLAGS.scale == 'paper'
    stale = sweeps.parse_list(FLAGS.stale_steps, int) or STALE_STEPS[FLAGS.scale]
    noises = sweeps.parse_list(FLAGS.target_noise, float) or TARGET_NOISE[FLAGS.scale]
    parts = set(sweeps.parse_list(FLAGS.parts))
    sweep, source = sweep_cli.sweep_from_flags(
        'mechanisms', variants(parts, stale, noises, paper), PAPER_ENVS, agents,
        description='Paper preset: floq variants use K = 8 so that m in {2, 4, 6, 8} is meaningful; cpu: K = 4, m = 2; '
                    'smoke: K = 2, m = 1.')
    sweep_cli.main(sweep, source, post=post)


if __name__ == '__main__':
    app.run(main)
