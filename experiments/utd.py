"""Experiment 4: update-to-data ratio in online RL from a replay buffer pre-filled with the offline dataset,
UTD in {1, 2, 4, 8, 16, 32, 64, 128} (smoke: {1, 4}), floq vs FQL.  Reports final success and the online env
steps needed to reach a success threshold.

    python -m experiments.utd --scale=smoke --save_dir=/tmp/sweeps
    python -m experiments.utd --scale=cpu --save_dir=runs/sweeps     # sized for ~1 h on 2 CPU cores (docs/experiments.md)
    python -m experiments.utd --scale=paper --dataset_dir=~/.ogbench/data [--offline_steps=1000000]

By default there is no offline pre-training (--offline_steps=0): the agents learn online, sampling from a buffer
that starts with the whole dataset.  Writes results.{md,csv}, per_seed.csv, learning_curves.png, utd.csv, utd.png,
heldout_q_per_seed.csv, critic_baselines.csv.
"""

import os

from absl import app, flags

import agents
from experiments import sweep_cli
from floq_jax import sweeps

sweep_cli.define_flags()
flags.DEFINE_string('utds', '', 'Comma list of UTD ratios (default: smoke 1,4; cpu 1,4,16; paper 1,2,4,8,16,32,64,128).')
flags.DEFINE_string('agents', 'floq,fql', 'Comma list of agents.')
flags.DEFINE_float('threshold', 0.5, 'Success threshold for steps-to-threshold.')
flags.DEFINE_integer('online_steps', None, 'Override the preset\'s online env steps.')
FLAGS = flags.FLAGS

UTDS = {'smoke': (1, 4), 'cpu': (1, 4, 16), 'paper': (1, 2, 4, 8, 16, 32, 64, 128)}
PAPER_ENVS = ('cube-double-play-singletask-task2-v0',)


def variants(agents, utds):
    return [sweeps.Variant(f'{a}_utd{u}', a, options={'utd_ratio': int(u)}, tags={'utd': int(u)})
            for a in agents for u in utds]


def steps_to_threshold(run, offline_steps: int, online_steps: int, threshold: float):
    """(online env steps until an evaluation first reaches ``threshold``, reached?); censored at online_steps."""
    ev = run.eval
    sel = ev[(ev['step'] > offline_steps) & (ev['evaluation/success'] >= threshold)]
    if len(sel):
        return float(sel['step'].iloc[0] - offline_steps), True
    return float(online_steps), False


def post(sweep):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from floq_jax.analysis import report

    runs = sweeps.load_sweep_runs(sweep)
    last_n = sweeps.preset(sweep.preset)['last_n']
    q = sweeps.heldout_q_errors(sweep, runs, max_states=FLAGS.mc_states)
    q_by_run = q.set_index('run_dir')
    baselines_md = sweeps.write_heldout_files(sweep, runs, q, max_states=FLAGS.mc_states)
    rows = []
    groups = {}
    for r in runs:
        groups.setdefault((r.env_name, str(r.get('sweep_agent')), int(r.get('utd'))), []).append(r)
    for (env, agent, utd), rs in sorted(groups.items()):
        off, on = int(rs[0].get('offline_steps')), int(rs[0].get('online_steps'))
        st = [steps_to_threshold(r, off, on, FLAGS.threshold) for r in rs]
        sm, slo, shi = report.mean_ci([s for s, _ in st])
        row = dict(env_name=env, agent=agent, utd=utd, num_seeds=len(rs),
                   **report.mean_ci_columns('success', [report.final_score(r, 'evaluation/success', last_n)
                                                        for r in rs]))
        for col in ('q_abs_error', 'q_centered_error'):
            row.update(report.mean_ci_columns(col, [q_by_run.loc[r.path, col] for r in rs]))
        rows.append(dict(row, steps_to_threshold=sm, steps_ci_low=slo, steps_ci_high=shi,
                         reached_fraction=float(np.mean([ok for _, ok in st])), threshold=FLAGS.threshold,
                         online_steps=on))
    df = pd.DataFrame(rows)
    df.to_csv(os.path.join(sweep.root, 'utd.csv'), index=False)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.4))
    for (env, agent), sel in df.groupby(['env_name', 'agent']):
        label = agent if df['env_name'].nunique() == 1 else f'{env}/{agent}'
        for ax, (col, lo, hi, scale) in zip(axes, (('success', 'success_ci_low', 'success_ci_high', 100),
                                                   ('q_abs_error', 'q_abs_error_ci_low', 'q_abs_error_ci_high', 1),
                                                   ('q_centered_error', 'q_centered_error_ci_low',
                                                    'q_centered_error_ci_high', 1),
                                                   ('steps_to_threshold', 'steps_ci_low', 'steps_ci_high', 1))):
            ax.errorbar(sel['utd'], sel[col] * scale, yerr=[(sel[col] - sel[lo]) * scale, (sel[hi] - sel[col]) * scale],
                        marker='o', capsize=3, label=label)
    names = ('final success (%)', '|Q - MC return|, held-out states', 'centered |Q - MC return| (offset removed)',
             f'online steps to success >= {FLAGS.threshold:g} (censored)')
    for ax, name in zip(axes, names):
        ax.set_xscale('log', base=2)
        ax.set_xlabel('UTD')
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(sweep.root, 'utd.png'), dpi=110)
    plt.close(fig)
    md = ['## UTD: final success, Q error and online steps to threshold', '',
          'q_abs_error: mean |Q(s, a) - G(s, a)| of the final checkpoint (its own K) on held-out states, G the '
          'Monte-Carlo discounted return of the validation trajectories (the behaviour policy\'s); q_centered_error: '
          'the same once the mean offset mean (Q - G) is removed (floq_jax.analysis.mc_returns.q_error_measures).', '',
          f'steps_to_threshold: online env steps until an evaluation first reaches success >= {FLAGS.threshold:g}; '
          'runs that never reach it count as the full online budget (right-censored; reached_fraction says how '
          'many did).  Mean over seeds (95% bootstrap CIs in utd.csv).', '',
          report.frame_to_markdown(df[['env_name', 'agent', 'utd', 'num_seeds', 'success', 'q_abs_error',
                                       'q_centered_error', 'steps_to_threshold', 'reached_fraction']]),
          sweeps.truncated_returns_note(float(q['mc_tolerance'].max())), baselines_md]
    return '\n'.join(md)


def main(_):
    utds = sweeps.parse_list(FLAGS.utds, int) or UTDS[FLAGS.scale]
    options = {'offline_steps': 0}
    if FLAGS.online_steps is not None:
        options['online_steps'] = FLAGS.online_steps
    sweep, source = sweep_cli.sweep_from_flags(
        'utd', variants(sweeps.parse_list(FLAGS.agents), utds), PAPER_ENVS, agents, mode='offline_to_online',
        options=options, agent_files='its analysis is over its variants\' UTD ratios (--agents names its agents)',
        description='Variants <agent>_utd<u>: online RL (buffer pre-filled with the dataset), u updates per env step.')
    sweep_cli.main(sweep, source, post=post)


if __name__ == '__main__':
    app.run(main)
