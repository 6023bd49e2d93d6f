"""Claim (e): a ResNet critic given floq's FLOPs does worse than floq.  floq against FQL with a residual critic sized
to floq's per-row forward FLOPs at the scale's K and widths (:func:`matched_blocks`, counted by
``floq_jax.core.flops``) and against the published FQL-ResNet shape (4 blocks of depth 2), plus plain
FQL for reference, on the same data and seeds.

    python -m experiments.resnet_flops --scale=smoke --save_dir=<scratch>/sweeps
    python -m experiments.resnet_flops --scale=cpu --num_seeds=8 --save_dir=runs/sweeps
    python -m experiments.resnet_flops --scale=paper --dataset_dir=~/.ogbench/data

Writes results.{md,csv}, per_seed.csv, learning_curves.png, and resnet_flops.csv: per variant, the critic's forward
FLOPs per row (floq: K passes of its velocity net), its share of floq's, and each variant's final success against
floq's, with Welch's t test over seeds beside the bootstrap CIs.
"""

import os

from absl import app

import agents
from experiments import sweep_cli
from floq_jax import sweeps

sweep_cli.define_flags()

PAPER_ENVS = ('cube-double-play-singletask-task2-v0', 'puzzle-4x4-play-singletask-task4-v0')
PUBLISHED_SHAPE = (4, 2)  # FQL-ResNet as published: 4 residual blocks of depth 2 (agents/fql.py RESNET_SHAPES)

DESCRIPTION = """floq against FQL-ResNet critics: `fql_resnet_matched` has as many residual blocks as match floq's
per-row critic FLOPs (K passes of the velocity net) at this scale's sizes; `fql_resnet` is the published 4 x depth-2
shape at this scale's ResNet width; `fql` is the plain critic.  resnet_flops.csv gives each critic's FLOPs."""


def _dims(env_name: str):
    """(observation dim, action dim) of the env behind ``env_name``."""
    from floq_jax.envs import envs

    env = envs.pooled_env(env_name)
    try:
        return int(env.observation_space.shape[-1]), int(env.action_space.shape[-1])
    finally:
        env.close()


def critic_row_flops(config, ob_dim: int, action_dim: int) -> int:
    """Forward FLOPs of one (s, a) row through the agent's critic: floq's K velocity-net passes, or the FQL critic
    (residual or MLP; ensemble members not counted, as the matching rule counts one network)."""
    import ml_collections

    from floq_jax.core import flops

    if config.agent_name == 'floq':
        sized = ml_collections.ConfigDict(dict(config, ob_dim=ob_dim, action_dim=action_dim))
        return int(config.critic_flow_steps) * flops.velocity_net_flops(sized)
    if config.get('critic_use_resnet'):
        return flops.resmlp_flops(ob_dim + action_dim, config.critic_resnet_width, config.critic_resnet_blocks,
                                  config.critic_resnet_block_depth, 1)
    return flops.mlp_flops(ob_dim + action_dim, tuple(config.value_hidden_dims), 1)


def matched_blocks(sweep, env_name: str, block_depth: int = 2, most: int = 64) -> int:
    """The number of depth-``block_depth`` residual blocks whose critic FLOPs per row (:func:`critic_row_flops`) are
    the closest to floq's on ``env_name`` at the sweep's scale."""
    ob_dim, action_dim = _dims(env_name)
    floq = critic_row_flops(sweeps.make_config(sweeps.Variant('floq', 'floq'), env_name, sweep.preset, agents),
                            ob_dim, action_dim)

    def resnet(blocks):
        variant = sweeps.Variant('r', 'fql_resnet', {'critic_resnet_blocks': blocks,
                                                      'critic_resnet_block_depth': block_depth})
        return critic_row_flops(sweeps.make_config(variant, env_name, sweep.preset, agents), ob_dim, action_dim)

    return min(range(1, most + 1), key=lambda b: abs(resnet(b) - floq))


def variants(sweep):
    # One variant for all the sweep's tasks, matched on the first (at the paper scale the second task's dimensions
    # differ: resnet_flops.csv gives each task's own FLOP ratio).
    blocks = matched_blocks(sweep, sweep.envs[0])
    shape = dict(critic_resnet_block_depth=2)
    return [sweeps.Variant('floq', 'floq', tags={'critic': 'floq'}),
            sweeps.Variant('fql_resnet_matched', 'fql_resnet', {**shape, 'critic_resnet_blocks': blocks},
                           tags={'critic': 'resnet_matched', 'resnet_blocks': blocks}),
            sweeps.Variant('fql_resnet', 'fql_resnet', {'critic_resnet_blocks': PUBLISHED_SHAPE[0],
                                                        'critic_resnet_block_depth': PUBLISHED_SHAPE[1]},
                           tags={'critic': 'resnet_published', 'resnet_blocks': PUBLISHED_SHAPE[0]}),
            sweeps.Variant('fql', 'fql', tags={'critic': 'mlp'})]


def post(sweep):
    import pandas as pd

    from floq_jax.analysis import report, seed_tests

    runs = sweeps.load_sweep_runs(sweep)
    per_seed = sweeps.per_seed_success(sweep, runs)
    rows = []
    for env in sweep.envs:
        ob_dim, action_dim = _dims(env)
        env_seeds = per_seed[per_seed['env_name'] == env]
        floq_success = env_seeds[env_seeds['variant'] == 'floq']['success'].to_numpy()
        floq_flops = None
        for v in sweep.variants:
            config = sweeps.make_config(v, env, sweep.preset, agents)
            row_flops = critic_row_flops(config, ob_dim, action_dim)
            floq_flops = row_flops if v.name == 'floq' else floq_flops
            success = env_seeds[env_seeds['variant'] == v.name]['success'].to_numpy()
            row = dict(env_name=env, variant=v.name, critic_row_flops=row_flops,
                       resnet_blocks=v.tags.get('resnet_blocks', ''), num_seeds=len(success),
                       success=success.mean() if len(success) else float('nan'))
            if v.name != 'floq' and len(success) > 1 and len(floq_success) > 1:
                row.update(floq_minus_variant=floq_success.mean() - success.mean(),
                           welch_p=seed_tests.welch(floq_success, success)['p'],
                           permutation_p=seed_tests.permutation(floq_success, success))
            rows.append(row)
        for row in rows:
            if row['env_name'] == env and floq_flops:
                row['flops_vs_floq'] = row['critic_row_flops'] / floq_flops
    df = pd.DataFrame(rows)
    df.to_csv(os.path.join(sweep.root, 'resnet_flops.csv'), index=False)
    return ('## Critic FLOPs and success against floq\n\nPer row of (s, a), forward FLOPs of the critic (floq: all K '
            'velocity-net passes); success: mean over seeds of each seed\'s final score; welch_p: Welch\'s t test of '
            'floq\'s per-seed scores against the variant\'s, and the exact permutation test (per_seed.csv).\n\n' + report.frame_to_markdown(df) + '\n')


def main(_):
    sweep, source = sweep_cli.sweep_from_flags('resnet_flops', variants, PAPER_ENVS, agents, description=DESCRIPTION)
    sweep_cli.main(sweep, source, post=post)


if __name__ == '__main__':
    app.run(main)
