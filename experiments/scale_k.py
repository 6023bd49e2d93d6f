"""Experiment 1: scaling floq's critic integration steps K.  Train floq at K in {1, 2, 4, 8, 16}; evaluate every
final checkpoint's Q estimates at every K' in {1, 2, 4, 8, 16} against Monte-Carlo discounted returns of held-out
(validation) trajectories; success rate per train K.

    python -m experiments.scale_k --scale=smoke --save_dir=/tmp/sweeps
    python -m experiments.scale_k --scale=cpu --save_dir=runs/sweeps     # sized for ~1 h on 2 CPU cores (docs/experiments.md)
    python -m experiments.scale_k --scale=paper --dataset_dir=~/.ogbench/data [--envs=...]

The one-step policy never queries the critic at test time, so success depends on the train K only: the success
grid repeats one value per row (said in the table); only the Q error genuinely varies with K'.
Writes results.{md,csv}, per_seed.csv, learning_curves.png, scale_k_grid.csv, scale_k_per_seed.csv,
critic_baselines.csv, q_error_grid.png, q_rank_corr_grid.png, success_grid.png.
"""

import os

from absl import app, flags

import agents
from experiments import sweep_cli
from floq_jax import sweeps

sweep_cli.define_flags()
flags.DEFINE_string('train_ks', '', 'Comma list of train K (default: smoke 1,2; cpu 1,2,4,8; paper 1,2,4,8,16).')
flags.DEFINE_string('eval_ks', '', "Comma list of evaluation K' (default: as train K).")
FLAGS = flags.FLAGS

TRAIN_KS = {'smoke': (1, 2), 'cpu': (1, 2, 4, 8), 'paper': (1, 2, 4, 8, 16)}
PAPER_ENVS = ('cube-double-play-singletask-task2-v0', 'puzzle-4x4-play-singletask-task4-v0')


def variants(ks):
    return [sweeps.Variant(f'K{k}', 'floq', {'critic_flow_steps': int(k)}, tags={'K': int(k)}) for k in ks]


def q_error_grid(sweep, eval_ks, max_states):
    """Rows (env, train K, eval K', seed): mean |Q - G| and mean (Q - G) on held-out states, final success."""
    from floq_jax.analysis import report

    last_n = sweeps.preset(sweep.preset)['last_n']
    grid = sweeps.heldout_q_errors(
        sweep, sweeps.load_sweep_runs(sweep), eval_ks, max_states,
        extra=lambda r: dict(train_K=int(r.get('K')), success=report.final_score(r, 'evaluation/success', last_n)))
    return grid.drop(columns=['variant', 'run_dir'])


def post(sweep):
    from floq_jax.analysis import report

    eval_ks = sweeps.parse_list(FLAGS.eval_ks, int) or [v.tags['K'] for v in sweep.variants]
    per_seed = q_error_grid(sweep, eval_ks, FLAGS.mc_states)
    baselines_md = sweeps.write_heldout_files(sweep, sweeps.load_sweep_runs(sweep), max_states=FLAGS.mc_states)
    per_seed.to_csv(os.path.join(sweep.root, 'scale_k_per_seed.csv'), index=False)
    cell = ['env_name', 'train_K', 'eval_K']
    grid = report.grouped_mean_ci(per_seed, cell, ('q_abs_error', 'q_bias', 'q_centered_error', 'q_rank_corr',
                                                  'success'))
    grid = grid.merge(per_seed.groupby(cell).agg(mc_tolerance=('mc_tolerance', 'max'),
                                                 mc_split=('mc_split', 'first')).reset_index(), on=cell)
    grid.to_csv(os.path.join(sweep.root, 'scale_k_grid.csv'), index=False)
    train_ks = sorted(grid['train_K'].unique())
    def cells(col):  # [train K, eval K'] heatmap of ``col``, averaged over envs (one env in the smoke preset)
        means = grid.groupby(['train_K', 'eval_K'])[col].mean().unstack()
        return means.reindex(index=train_ks, columns=eval_ks).to_numpy(float)

    report.plot_grid(cells('q_abs_error'), train_ks, eval_ks, os.path.join(sweep.root, 'q_error_grid.png'),
                     title="|Q - MC return| on held-out states", xlabel="eval K'", ylabel='train K', fmt='{:.2f}')
    report.plot_grid(cells('success') * 100, train_ks, eval_ks, os.path.join(sweep.root, 'success_grid.png'),
                     title="success (%): independent of K' (one-step policy)", xlabel="eval K'", ylabel='train K')
    report.plot_grid(cells('q_rank_corr'), train_ks, eval_ks, os.path.join(sweep.root, 'q_rank_corr_grid.png'),
                     title='Spearman corr(Q, MC return) on held-out states', xlabel="eval K'", ylabel='train K',
                     fmt='{:.3f}')
    md = ['## K x K\' grid', '',
          "Q error: mean |Q_K'(s, a) - G(s, a)| over held-out states, G the Monte-Carlo discounted return of the "
          "validation trajectories; mean over seeds [95% bootstrap CI].  G is the return of the dataset's behaviour "
          "policy, so a critic of a better policy sits above it: the bias (mean Q - G) is part of |Q - G|.  Two "
          "measures without that offset follow: the centered error mean |(Q - G) - mean(Q - G)| and the Spearman "
          "rank correlation of Q and G.  Success: the one-step policy does not query "
          "Q at test time, so success depends on the train K only (the same value in every K' column).", '']
    md.append(sweeps.truncated_returns_note(grid['mc_tolerance'].max()))
    measures = (('q_abs_error', '|Q - G|', '.3g'), ('q_bias', 'mean (Q - G)', '.3g'),
                ('q_centered_error', 'centered error', '.3g'), ('q_rank_corr', 'Spearman corr(Q, G)', '.3f'))
    for env in grid['env_name'].unique():
        g = grid[grid.env_name == env]
        s = g.groupby('train_K')['success'].first() * 100
        for col, label, spec in measures:
            cells = g.assign(**{col: [f'{m:{spec}} [{lo:{spec}}, {hi:{spec}}]' for m, lo, hi in
                                      zip(g[col], g[f'{col}_ci_low'], g[f'{col}_ci_high'])]})
            t = cells.pivot(index='train_K', columns='eval_K', values=col)
            t.columns = [f"K'={c}" for c in t.columns]
            t['success (%)'] = [f'{v:.1f}' for v in s.reindex(t.index)]
            md += [f'### {env}: {label}', '', report.frame_to_markdown(t.reset_index()), '']
    return '\n'.join(md + [baselines_md])


def main(_):
    ks = sweeps.parse_list(FLAGS.train_ks, int) or TRAIN_KS[FLAGS.scale]
    sweep, source = sweep_cli.sweep_from_flags(
        'scale_k', variants(ks), PAPER_ENVS, agents,
        description='Variants K<k>: floq trained with critic_flow_steps=k (all else equal).',
        agent_files='its analysis is over its variants\' K')
    sweep_cli.main(sweep, source, post=post)


if __name__ == '__main__':
    app.run(main)
