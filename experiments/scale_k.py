"""Experiment 1: scaling floq's critic integration steps K.  Train floq at K in {1, 2, 4, 8, 16}; evaluate every
final checkpoint's Q estimates at every K' in {1, 2, 4, 8, 16} against Monte-Carlo discounted returns of held-out
(validation) trajectories; success rate per train K.

    python -m experiments.scale_k --scale=smoke --save_dir=/tmp/sweeps
    python -m experiments.scale_k --scale=paper --dataset_dir=~/.ogbench/data [--envs=...]

The one-step policy never queries the critic at test time, so success depends on the train K only: the success
grid repeats one value per row (said in the table); only the Q error genuinely varies with K'.
Writes results.{md,csv}, learning_curves.png, scale_k_grid.{md,csv}, q_error_grid.png, success_grid.png.
"""

import os

from absl import app, flags

import agents
from experiments import sweep_cli
from floq_jax import sweeps

sweep_cli.define_flags()
flags.DEFINE_string('train_ks', '', 'Comma list of train K (default: smoke 1,2; paper 1,2,4,8,16).')
flags.DEFINE_string('eval_ks', '', "Comma list of evaluation K' (default: as train K).")
flags.DEFINE_integer('mc_states', 1024, 'Held-out states for the Q error.')
FLAGS = flags.FLAGS

PAPER_KS = (1, 2, 4, 8, 16)
SMOKE_KS = (1, 2)
PAPER_ENVS = ('cube-double-play-singletask-task2-v0', 'puzzle-4x4-play-singletask-task4-v0')


def variants(ks):
    return [sweeps.Variant(f'K{k}', 'floq', {'critic_flow_steps': int(k)}, tags={'K': int(k)}) for k in ks]


def heldout_targets(data, discount: float, max_states: int):
    """(obs, act, MC returns, tolerance used, split): validation split, trustworthy returns (tolerance 0.01);
    if none is trustworthy (short generated episodes) fall back to truncated returns (tolerance 1) and say so."""
    from floq_jax.analysis.mc_returns import heldout_q_targets

    split, ds = ('val', data.val) if data.val is not None else ('train', data.train)
    for tol in (0.01, 1.0):
        try:
            obs, act, g = heldout_q_targets(ds, discount, max_states=max_states, seed=0, tolerance=tol)
            return obs, act, g, tol, split
        except ValueError:
            continue
    raise ValueError('no held-out states')


def load_agent(sweep, run):
    """(agent, step, data) of a seed run dir's newest intact checkpoint (restore.load_run)."""
    from floq_jax.training import restore

    agent, _, _, step, data, _ = restore.load_run(run.path, agents.agent_class)
    return agent, step, data


def q_error_grid(sweep, eval_ks, max_states):
    """Rows (env, train K, eval K', seed): mean |Q - G| and mean (Q - G) on held-out states, final success."""
    import jax
    import numpy as np
    import pandas as pd

    from floq_jax.analysis import report

    runs = sweeps.load_sweep_runs(sweep)
    last_n = sweeps.preset(sweep.preset)['last_n']
    rows, targets = [], {}
    for run in runs:
        agent, step, data = load_agent(sweep, run)
        env = run.env_name
        if env not in targets:
            targets[env] = heldout_targets(data, float(agent.config.discount), max_states)
        obs, act, g, tol, split = targets[env]
        success = report.final_score(run, 'evaluation/success', last_n)
        for k in eval_ks:
            q = np.asarray(agent.q_values(jax.numpy.asarray(obs), jax.numpy.asarray(act), num_steps=int(k),
                                          seed=jax.random.PRNGKey(0)))
            rows.append(dict(env_name=env, train_K=int(run.get('K')), eval_K=int(k), seed=run.seed, step=step,
                             q_abs_error=float(np.mean(np.abs(q - g))), q_bias=float(np.mean(q - g)),
                             success=success, mc_tolerance=tol, mc_split=split, mc_states=len(g)))
    return pd.DataFrame(rows)


def post(sweep):
    import numpy as np
    import pandas as pd

    from floq_jax.analysis import report

    eval_ks = sweeps.parse_list(FLAGS.eval_ks, int) or [v.tags['K'] for v in sweep.variants]
    per_seed = q_error_grid(sweep, eval_ks, FLAGS.mc_states)
    per_seed.to_csv(os.path.join(sweep.root, 'scale_k_per_seed.csv'), index=False)
    rows = []
    for (env, tk, ek), sel in per_seed.groupby(['env_name', 'train_K', 'eval_K']):
        row = dict(env_name=env, train_K=tk, eval_K=ek, num_seeds=len(sel))
        for col in ('q_abs_error', 'q_bias', 'success'):
            m, lo, hi = report.mean_ci(sel[col].to_numpy(float))
            row.update({col: m, f'{col}_ci_low': lo, f'{col}_ci_high': hi})
        row.update(mc_tolerance=float(sel['mc_tolerance'].max()), mc_split=sel['mc_split'].iloc[0])
        rows.append(row)
    grid = pd.DataFrame(rows)
    grid.to_csv(os.path.join(sweep.root, 'scale_k_grid.csv'), index=False)
    train_ks = sorted(grid['train_K'].unique())
    # Heatmaps averaged over envs (one env in the smoke preset).
    err = np.array([[grid[(grid.train_K == tk) & (grid.eval_K == ek)]['q_abs_error'].mean() for ek in eval_ks]
                    for tk in train_ks])
    succ = np.array([[grid[(grid.train_K == tk) & (grid.eval_K == ek)]['success'].mean() * 100 for ek in eval_ks]
                     for tk in train_ks])
    report.plot_grid(err, train_ks, eval_ks, os.path.join(sweep.root, 'q_error_grid.png'),
                     title="|Q - MC return| on held-out states", xlabel="eval K'", ylabel='train K', fmt='{:.2f}')
    report.plot_grid(succ, train_ks, eval_ks, os.path.join(sweep.root, 'success_grid.png'),
                     title="success (%): independent of K' (one-step policy)", xlabel="eval K'", ylabel='train K')
    md = ['## K x K\' grid', '',
          "Q error: mean |Q_K'(s, a) - G(s, a)| over held-out states, G the Monte-Carlo discounted return of the "
          "validation trajectories; mean over seeds [95% bootstrap CI].  Success: the one-step policy does not query "
          "Q at test time, so success depends on the train K only (the same value in every K' column).", '']
    tol = grid['mc_tolerance'].max()
    if tol > 0.01:
        md.append(f'Note: no validation state had a trustworthy Monte-Carlo return (episodes too short for the '
                  f'discount), so G is the return truncated at the episode end (tolerance {tol:g}): the Q error '
                  f'here measures the pipeline, not the critic\'s accuracy.\n')
    cells = grid.assign(q_abs_error=[f'{m:.3g} [{lo:.3g}, {hi:.3g}]' for m, lo, hi in
                                     zip(grid.q_abs_error, grid.q_abs_error_ci_low, grid.q_abs_error_ci_high)])
    for env in cells['env_name'].unique():
        t = cells[cells.env_name == env].pivot(index='train_K', columns='eval_K', values='q_abs_error')
        t.columns = [f"K'={c}" for c in t.columns]
        s = grid[grid.env_name == env].groupby('train_K')['success'].first() * 100
        t['success (%)'] = [f'{v:.1f}' for v in s.reindex(t.index)]
        t = t.reset_index()
        md += [f'### {env}: |Q - G|', '', report.frame_to_markdown(t)]
    return '\n'.join(md)


def main(_):
    ks = sweeps.parse_list(FLAGS.train_ks, int) or (SMOKE_KS if FLAGS.scale == 'smoke' else PAPER_KS)
    sweep, source = sweep_cli.sweep_from_flags(
        'scale_k', variants(ks), PAPER_ENVS, agents,
        description='Variants K<k>: floq trained with critic_flow_steps=k (all else equal).')
    sweep_cli.main(sweep, source, post=post)


if __name__ == '__main__':
    app.run(main)
