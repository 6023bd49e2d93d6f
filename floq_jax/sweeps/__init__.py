"""Shared machinery of the analysis sweeps (experiments/main_table.py, scale_k.py, noise_width.py,
freeze_features.py, utd.py, mechanisms.py): variants x envs x seeds -> runner calls -> tables and plots.

    sweep = Sweep('noise_width', variants=[Variant('cov0.1', 'floq', {'noise_coverage': 0.1}), ...],
                  envs=['cube-single-play-singletask-task1-v0'], preset='smoke')
    dirs = run_sweep(sweep, SweepData(dataset_dir=...))      # {(variant, env): [seed run dirs]}
    paths = write_sweep_report(sweep)                        # results.md / .csv / learning_curves.png

Every run of a sweep lives in the standard layout ``<save_dir>/<sweep>/<variant>/<env>/<agent>/seed<k>/``
(run_group ``<sweep>/<variant>``) with ``variant``, ``sweep`` and ``preset`` (plus the variant's tags, e.g. ``K``)
in flags.json, so ``floq_jax.analysis.report`` groups by any of them.  All seeds of a (variant, env) train together
(vmapped, ``RunOptions.num_seeds``).  Re-running a sweep resumes its runs (the runner's checkpoints).

Presets: ``smoke`` (tiny nets, a few hundred updates, 2 seeds, 2 short evaluation episodes on a small generated
cube-single dataset: checks the pipeline end to end on a 2-core CPU, far too short to show any effect) and
``cpu`` (sized for about an hour per sweep on a 2-core CPU, each sweep's measured time in docs/experiments.md; the demo's 2 x 128 networks, published
per-environment values, 4 seeds, 60k updates on the demo's generated 100-episode cube-single-play data, 50 evaluation
episodes; docs/experiments.md) and ``paper`` (published per-environment hyperparameters from floq_jax.presets, the
published run lengths: 2M offline steps, or 1M offline + 2M online steps; evaluation every 20k steps over 50
episodes, 3 seeds; meant for a GPU).

Data: a real OGBench file is used where ``--dataset_dir`` holds it; otherwise the dataset is generated here
(cube/scene/puzzle/pointmaze only, cached) and the report's ``data`` column says ``generated``; environments that
can be neither loaded nor generated are skipped and listed in results.md.
"""

from floq_jax.sweeps.report import (BASELINES_FILE, HELDOUT_PER_SEED_FILE, METRICS_PER_SEED_FILE, PER_SEED_FILE,
                                    bar_plot, baselines_md, env_baselines, final_train_metric, heldout_baselines,
                                    heldout_q_errors, load_sweep_runs, measured_time_md, per_seed_success,
                                    per_variant_metrics, run_length_note, scatter_vs_success, training_devices,
                                    truncated_returns_note, write_heldout_files, write_sweep_report)
from floq_jax.sweeps.run import (COMMANDS_FILE, DATASETS_FILE, TIMES_FILE, file_sha256, record_command,
                                 record_dataset, record_run_time, recorded_run_times, run_sweep)
from floq_jax.sweeps.spec import (CPU_ENV, CPU_STEPS, OPTIONAL_RUNNER_OPTIONS, PRESETS, SMOKE_ENV, SUITE,
                                  SUITE_ENVS, Sweep, SweepData, Variant, agent_available,
                                  make_config, merged_options, offline_steps_of, parse_list, preset, run_options,
                                  seed_count, variant_order)
from floq_jax.training.compose import load_data

__all__ = [
    'BASELINES_FILE', 'COMMANDS_FILE', 'CPU_ENV', 'DATASETS_FILE', 'CPU_STEPS', 'HELDOUT_PER_SEED_FILE', 'METRICS_PER_SEED_FILE',
    'OPTIONAL_RUNNER_OPTIONS', 'PER_SEED_FILE', 'PRESETS', 'SMOKE_ENV', 'SUITE', 'SUITE_ENVS', 'Sweep', 'SweepData', 'TIMES_FILE', 'Variant', 'agent_available', 'bar_plot',
    'baselines_md', 'env_baselines', 'file_sha256', 'final_train_metric', 'heldout_baselines', 'heldout_q_errors', 'load_data',
    'load_sweep_runs', 'make_config', 'measured_time_md', 'merged_options', 'offline_steps_of', 'parse_list',
    'per_seed_success', 'per_variant_metrics', 'preset', 'record_command', 'record_dataset', 'record_run_time',
    'recorded_run_times', 'run_length_note', 'run_options', 'run_sweep', 'scatter_vs_success', 'seed_count',
    'training_devices', 'truncated_returns_note', 'variant_order', 'write_heldout_files', 'write_sweep_report',
]
