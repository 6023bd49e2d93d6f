"""Pixels end to end through the command line (issue 30): a pixel dataset generated with OGBench's oracle on its
visual env (``tiny_visual_dataset``: uint8 64 x 64 x 3 frames rendered offscreen) trains floq with an IMPALA encoder,
--frame_stack and --p_aug through ``experiments.train_offline``, is evaluated on the real visual env (which renders
every step), and ``experiments.evaluate`` scores its checkpoint with the frame stacking flags.json recorded."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, TINY_VISUAL, read_csv, scaled_flags, subprocess_env

pytestmark = pytest.mark.subprocess

TASK = TINY_VISUAL['task']


def run(args, module='experiments.train_offline', timeout=600):
    return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, env=subprocess_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_generated_pixel_dataset_trains_and_is_evaluated(tmp_path, tiny_visual_dataset):
    save_dir = tmp_path / 'runs'
    common = [f'--env_name={TASK}', f'--dataset_path={tiny_visual_dataset}', f'--save_dir={save_dir}',
              '--agent.encoder=impala_debug', '--agent.batch_size=8', *scaled_flags('floq', 'tiny'),
              '--frame_stack=2', '--p_aug=0.5', '--steps_per_call=2', '--log_interval=2', '--eval_interval=4',
              '--save_interval=2', '--eval_episodes=1', '--eval_num_steps=2', '--noeval_at_start', '--noprogress', '--notensorboard']
    first = run([*common, '--offline_steps=4'])  # evaluates one rendered episode at its end
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = save_dir / 'default' / TASK / 'floq' / 'seed0'
    record = json.loads((run_dir / 'flags.json').read_text())
    assert (record['frame_stack'], record['p_aug'], record['agent']['encoder']) == (2, 0.5, 'impala_debug')
    steps = [int(row['step']) for row in read_csv(run_dir / 'train.csv')]
    assert steps == [2, 4], steps
    (evaluation,) = read_csv(run_dir / 'eval.csv')
    assert int(evaluation['step']) == 4
    assert float(evaluation['evaluation/success']) in (0.0, 1.0)
    assert float(evaluation['evaluation/length']) > 0, evaluation
    q = [float(v) for k, v in evaluation.items() if k.startswith('evaluation/q_K')]
    assert q and np.all(np.isfinite(q)), evaluation  # the critic's Q estimates read stacked frames
    losses = [float(row['training/critic/critic_loss']) for row in read_csv(run_dir / 'train.csv')]
    assert np.all(np.isfinite(losses)), losses
    # The checkpoint through experiments.evaluate: the class from flags.json, the eval env stacked as trained.
    evaluated = run([f'--run_dir={run_dir}', '--eval_episodes=1'], module='experiments.evaluate')
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert 'success' in evaluated.stdout + evaluated.stderr
