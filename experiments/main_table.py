"""Experiment 0: floq vs FQL on the OGBench single-task suite (10 environments x 5 tasks), published presets.

    python -m experiments.main_table --scale=smoke --save_dir=/tmp/sweeps          # minutes on a CPU
    python -m experiments.main_table --scale=cpu --save_dir=runs/sweeps     # sized for ~1 h on 2 CPU cores (docs/experiments.md)
    python -m experiments.main_table --scale=paper --dataset_dir=~/.ogbench/data   # GPU; 50 tasks x 2 agents

Real OGBench files are used where --dataset_dir holds them; otherwise the dataset is generated here (cube, scene,
puzzle) and the table's `data` column says `generated`; antmaze / humanoidmaze / antsoccer without files are
skipped and listed.  Writes <save_dir>/main_table/results.{md,csv} and learning_curves.png.  docs/experiments.md.
"""

from absl import app

import agents
from experiments import sweep_cli
from floq_jax import sweeps

sweep_cli.define_flags()

VARIANTS = [sweeps.Variant('floq', 'floq'), sweeps.Variant('fql', 'fql')]
# cpu scale: the demo's cube task and a scene task (generated, 100 episodes each), where both agents' success rises
# above 0% within 20k-70k updates (docs/parity.md).
CPU_ENVS = (sweeps.CPU_ENV, 'scene-play-singletask-task1-v0')

DESCRIPTION = """Per task: mean final success over seeds (mean of the last evaluations) with a 95% stratified-bootstrap
CI (rliable); per agent: IQM over all tasks x seeds.  Hyperparameters: each agent's own published per-environment
values (floq_jax/presets.py: floq's for floq, FQL's for FQL), under the scale's network sizes."""


def main(_):
    sweep, source = sweep_cli.sweep_from_flags('main_table', VARIANTS, sweeps.SUITE, agents, description=DESCRIPTION,
                                               scale_envs={'cpu': CPU_ENVS})
    sweep_cli.main(sweep, source)


if __name__ == '__main__':
    app.run(main)
