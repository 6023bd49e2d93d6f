"""Experiment 3: plasticity of the critic's features.  At a fraction f (default 0.25) of training the critic's
trunk is frozen (``freeze_critic_trunk=True`` from that step on, runner ``config_schedule``) and only its output
layer keeps training.  Compared: floq, floq trained at t = 0 only (train_at_zero_only, K = 1), FQL and FQL-ResNet
(4 blocks of depth 2, width 512 as published; the cpu scale uses width 128).  Every run logs the feature norm, srank / effective rank of the penultimate features
and the fraction of dormant units of its critic (train.csv 'diagnostics/...').

    python -m experiments.freeze_features --scale=smoke --save_dir=/tmp/sweeps
    python -m experiments.freeze_features --scale=cpu --save_dir=runs/sweeps     # sized for ~1 h on 2 CPU cores (docs/experiments.md)
    python -m experiments.freeze_features --scale=paper --dataset_dir=~/.ogbench/data [--freeze_fraction=0.25]

Writes results.{md,csv}, learning_curves.png, plasticity.csv, plasticity_vs_success.png,
plasticity_curves_<metric>.png.
"""

import os

from absl import app, flags

import agents
from experiments import sweep_cli
from floq_jax import sweeps

sweep_cli.define_flags()
flags.DEFINE_float('freeze_fraction', 0.25, 'Fraction of the offline steps after which the critic trunk is frozen '
                   '(1: never).')
flags.DEFINE_bool('unfrozen_baselines', False, 'Also run every agent without freezing.')
FLAGS = flags.FLAGS

PAPER_ENVS = ('cube-double-play-singletask-task2-v0', 'puzzle-4x4-play-singletask-task4-v0')
PLASTICITY = ('diagnostics/feature_norm', 'diagnostics/effective_rank', 'diagnostics/srank',
              'diagnostics/dormant_0', 'diagnostics/dormant_0.025',
              # the critic's own loss after the freeze: floq's flow-matching loss, FQL's TD loss
              'training/critic/critic_loss')
AGENTS = (('floq', 'floq', {}), ('floq_t0', 'floq', {'critic_flow_steps': 1, 'train_at_zero_only': True}),
          ('fql', 'fql', {}), ('fql_resnet', 'fql_resnet', {}))


def variants(freeze_step: int, unfrozen: bool):
    out = []
    for name, agent, overrides in AGENTS:
        schedule = [(int(freeze_step), {'freeze_critic_trunk': True})]
        out.append(sweeps.Variant(f'{name}_frozen', agent, overrides, options={'config_schedule': schedule},
                                  tags={'freeze_step': int(freeze_step), 'critic': name}))
        if unfrozen:
            out.append(sweeps.Variant(name, agent, overrides, tags={'freeze_step': -1, 'critic': name}))
    return out


def post(sweep):
    from floq_jax.analysis import report

    runs = sweeps.load_sweep_runs(sweep)
    df = sweeps.per_variant_metrics(
        sweep, runs, PLASTICITY, per_seed_path=os.path.join(sweep.root, sweeps.METRICS_PER_SEED_FILE))
    df.to_csv(os.path.join(sweep.root, 'plasticity.csv'), index=False)
    keys = [k.split('/', 1)[1] for k in PLASTICITY]
    present = [k for k in keys if k in df.columns and df[k].notna().any()]
    sweeps.scatter_vs_success(df, present[:3], os.path.join(sweep.root, 'plasticity_vs_success.png'),
                              title='final critic-feature metrics vs success')
    for key in PLASTICITY:
        if key.split('/', 1)[1] in present:
            report.plot_train_metric(runs, os.path.join(sweep.root, f"plasticity_curves_{key.split('/')[-1]}.png"),
                                     metric=key, group_by='variant')
    cols = ['env_name', 'variant', 'num_seeds', 'success'] + present
    md = ['## Critic-feature metrics (final logged values, mean over seeds; CIs in plasticity.csv)', '',
          'floq: velocity-net features at a random step of each row\'s integration path; FQL: the critic\'s '
          'penultimate features.  dormant_<tau>: fraction of units with normalised activity <= tau (Sokar et al.).  '
          'critic_loss: the final training loss of the critic, after the freeze (floq: flow matching; FQL: TD).',
          '', report.frame_to_markdown(df[cols])]
    missing = sorted(set(keys) - set(present))
    if missing:
        md.append(f'Not logged by this runner: {", ".join(missing)}\n')
    return '\n'.join(md)


def main(_):
    if not 0 < FLAGS.freeze_fraction <= 1:
        raise app.UsageError('--freeze_fraction must be in (0, 1]')
    def freeze_step(sweep):
        return int(round(FLAGS.freeze_fraction * sweeps.offline_steps_of(sweep)))

    sweep, source = sweep_cli.sweep_from_flags(
        'freeze_features', lambda s: variants(freeze_step(s), FLAGS.unfrozen_baselines), PAPER_ENVS, agents,
        options={'log_diagnostics': True})
    step = freeze_step(sweep)
    resnet = [v for v in sweep.variants if v.agent == 'fql_resnet']
    resnet_md = ''
    if resnet and sweep.envs:  # the width the runs train with (the scale's network sizes apply to it)
        width = sweeps.make_config(resnet[0], sweep.envs[0], sweep.preset, agents).critic_resnet_width
        resnet_md = f'; fql_resnet = FQL-ResNet (width {width}, 4 residual blocks of depth 2; published: width 512)'
    sweep.description = (f'Variants <critic>_frozen: the critic trunk is frozen from step {step} '
                         f'({FLAGS.freeze_fraction:g} of training); floq_t0 = train_at_zero_only with K = 1'
                         f'{resnet_md}.')
    sweep_cli.main(sweep, source, post=post)


if __name__ == '__main__':
    app.run(main)
