"""Throughput benchmark of floq / FQL updates, the training loop, seeds and evaluation, and whole runs.

    PYTHONPATH=. python -m experiments.benchmark [--quick] [--out=docs/benchmark_cpu.json] \
        [--table_out=/tmp/table.md] [--device_note="..."] [--sections=eval_seeds]
    PYTHONPATH=. python -m experiments.benchmark --sections=end_to_end \
        --reference_dir=~/src/floq --reference_python=~/floq-venv/bin/python   # a whole run beside the published one

The end_to_end section (experiments/end_to_end.py) times a whole ``train_offline`` run at the demo scale (--quick: a
short one) with its breakdown by phase, and the published code's same run when ``--reference_dir`` is given.

Prints a markdown table and writes JSON (every number, the command, the device) to ``--out``.
Every timing: compile / warm-up first, then several calls each ended by ``block_until_ready``;
the median is reported.  Ratios (targets) are computed between cases timed in the same run.
"""

import json
import os
import sys
import time

from absl import app, flags

from experiments import cli_flags, end_to_end
from experiments.bench.base import BenchBase, _bad_flag, positive_ints
from experiments.bench.evaluation import EvalSections, vector_mode_rows
from experiments.bench.report import table, targets
from experiments.bench.seeds import SeedSections
from experiments.bench.updates import UpdateSections
from floq_jax.training import benchmarking as bm
from floq_jax.training import devices

FLAGS = flags.FLAGS
flags.DEFINE_bool('quick', False, 'Few timed calls, K in {1, 8, 16}, 2-step chunks, no seeds section and no '
                  'profile, 10 episodes (~5 min on 2 shared CPUs).')
flags.DEFINE_bool('tiny', False, 'Toy sizes everywhere (for the smoke test only; numbers are meaningless).')
flags.DEFINE_string('out', None, 'Write the JSON results here.')
flags.DEFINE_string('table_out', None, 'Write the markdown table here.')
flags.DEFINE_string('device_note', '', 'Free text recorded with the device kind (e.g. "H100 SXM, shared node").')
flags.DEFINE_string('env_name', 'cube-single-play-singletask-task2-v0', 'Env of the evaluation benchmark.')
flags.DEFINE_integer('eval_episodes', None, 'Episodes of the evaluation benchmark (default 50; 10 with --quick).')
flags.DEFINE_integer('eval_max_steps', None, 'Optional episode time limit of the evaluation benchmark.')
SECTIONS = ('updates', 'small', 'seeds', 'loop', 'profile', 'eval', 'eval_seeds', 'vector_modes', 'end_to_end')
flags.DEFINE_list('sections', [], f'Sections to run (default: all): {", ".join(SECTIONS)}.')
flags.DEFINE_list('skip', [], f'Sections to skip: {", ".join(SECTIONS)}.')
flags.DEFINE_list('eval_num_seeds', None, 'Seed counts S of the eval_seeds section (default 1,2,4; --quick 1,4; '
                  '--tiny 1,2).')
flags.DEFINE_list('eval_pools', None, 'Pool sizes (live envs across all seeds, as --eval_num_envs of training) of the '
                  'eval_seeds section (default 2,4,8; --quick 4; --tiny 2); each is raised to at least S.')
flags.DEFINE_list('vector_mode_pools', None, 'Pool sizes n of the vector_modes section (default 2,4,8,16; --tiny 1).')
flags.DEFINE_integer('compile_repeats', 0, 'Extra section: compile the floq update at K=1 and K=16 alternately '
                     'this many times each (compile time is noisy on a shared CPU) and count while loops in the HLO.')
cli_flags.define_cpu_devices_flag(1, 'CPU-only hosts: split the CPU into this many XLA devices (as train_offline '
                               '--cpu_devices does); the seeds section then also times the 8 seeds sharded over them. '
                               'Run the update cases with the default 1.')
flags.DEFINE_enum('seeds_config', 'small', ['small', 'demo'], "Config of the seeds section: 'small' (2x256, "
                  "noise_samples 4, batch 256) or 'demo' (experiments/demo.py's 2x128, K=4, noise_samples 2, batch 64).")
flags.DEFINE_string('reference_dir', None, 'end_to_end: a checkout of https://github.com/CMU-AIRe/floq; its run is '
                    'timed beside floq-jax\'s (as experiments.parity --reference_dir).')
flags.DEFINE_string('reference_python', sys.executable, 'end_to_end: the interpreter of the published code (needs '
                    'distrax).')
flags.DEFINE_enum('end_to_end_scale', None, ['demo', 'quick', 'tiny'], 'end_to_end: the run (default: demo; quick '
                  'with --quick, tiny with --tiny); experiments/end_to_end.py.')
flags.DEFINE_bool('end_to_end_warm_cache', False, 'end_to_end: floq-jax uses the user\'s compilation cache instead '
                  'of an empty one.')
flags.DEFINE_string('end_to_end_dir', None, 'end_to_end: where both runs write (default: a new temporary directory).')
flags.DEFINE_integer('num_transitions', 1_000_000, 'Synthetic dataset size (device-resident and host copies).')

class Bench(BenchBase, UpdateSections, SeedSections, EvalSections):
    """Every section of the benchmark (experiments/bench/: one module per section), sharing one set-up."""


def skipped_sections(sections, skip) -> set:
    """The sections not to run: those outside ``sections`` (when given) and those in ``skip``.  An unknown name is
    one line on stderr naming the flag, exit 2."""
    for flag, names in (('sections', sections), ('skip', skip)):
        unknown = sorted(set(names) - set(SECTIONS))
        if unknown:
            _bad_flag(flag, f'unknown section(s) {", ".join(unknown)}; accepted: {", ".join(SECTIONS)}')
    return (set(SECTIONS) - set(sections) if sections else set()) | set(skip)


def main(_):
    t_start = time.perf_counter()
    # First (floq_jax.training.devices); no compilation cache: the sections time compiles.
    if FLAGS.cpu_devices > 1 and devices.start(1, FLAGS.cpu_devices, cache=False) != FLAGS.cpu_devices:
        raise SystemExit('error: --cpu_devices: JAX was already initialised (or XLA_FLAGS sets a device count)')
    skip = skipped_sections(FLAGS.sections, FLAGS.skip)
    for flag in ('eval_num_seeds', 'eval_pools', 'vector_mode_pools'):
        if FLAGS[flag].value is not None:
            positive_ints(flag, FLAGS[flag].value)
    b = Bench()
    results = b.results
    results['command'] = 'PYTHONPATH=. python -m experiments.benchmark ' + ' '.join(sys.argv[1:])
    results['mode'] = 'tiny' if FLAGS.tiny else 'quick' if FLAGS.quick else 'full'
    results['device'] = devices.device_info()
    results['device_note'] = FLAGS.device_note
    results['xla_flags'] = os.environ.get('XLA_FLAGS', '')
    results['cpu_count'] = os.cpu_count()
    results['cpu_devices'] = FLAGS.cpu_devices
    n = 256 if FLAGS.tiny else 2048
    results['matmul_start'] = bm.matmul_flops_per_s(n)
    b.log(f"matmul {n}: {results['matmul_start']['flops_per_s'] / 1e9:.1f} GFLOP/s")

    if 'updates' not in skip:
        Ks = (1, 8, 16) if b.quick else (1, 2, 4, 8, 16)
        for K in Ks:
            iters = 1 if (FLAGS.quick and K == 16) else 2 if b.quick else 5
            b.update_case(f'floq_K{K}', 'floq', K=K, iters=iters)
        b.update_case('fql', 'fql', iters=3 if b.quick else 10)
    if 'small' not in skip:
        b.update_case('floq_small', 'floq', small=True, iters=3 if b.quick else 10)
        if not b.quick:
            b.update_case('fql_small', 'fql', small=True, iters=10)
    if 'seeds' not in skip and not (FLAGS.quick and not FLAGS.tiny):
        b.seeds()  # full mode only: compiling and running the 8-seed chunk takes minutes on 2 shared cores
    if 'loop' not in skip:
        b.loop()
    if 'profile' not in skip and not b.quick:
        b.profile()
    if 'eval' not in skip:
        b.evaluation()
    if 'eval_seeds' not in skip:
        b.eval_seeds()
    if 'vector_modes' not in skip:
        sizes = positive_ints('vector_mode_pools', FLAGS.vector_mode_pools or ([1] if FLAGS.tiny else [2, 4, 8, 16]))
        evaluations = 1 if FLAGS.tiny else 3
        results['vector_modes'] = dict(env_name=FLAGS.env_name, evaluations=evaluations, rows=vector_mode_rows(
            FLAGS.env_name, sizes, evaluations=evaluations, max_episode_steps=FLAGS.eval_max_steps))
        for r in results['vector_modes']['rows']:
            b.log(f"vector_modes n={r['n']} {r['mode']}: {r['total_s']:.1f} s (build {r['build_s']:.1f} s)")
    if FLAGS.compile_repeats:
        b.compile_check(FLAGS.compile_repeats)
    if 'end_to_end' not in skip:
        scale = FLAGS.end_to_end_scale or ('tiny' if FLAGS.tiny else 'quick' if FLAGS.quick else 'demo')
        results['end_to_end'] = end_to_end.measure(scale, FLAGS.reference_dir, FLAGS.reference_python,
                                                   FLAGS.end_to_end_dir, FLAGS.end_to_end_warm_cache, log=b.log)

    results['matmul_end'] = bm.matmul_flops_per_s(n)
    # The reference rate: the better of the two (start, end) medians, so load spikes do not flatter the fraction.
    results['matmul'] = max(results['matmul_start'], results['matmul_end'], key=lambda m: m['flops_per_s'])
    results['targets'] = targets(results, results['matmul'])
    results['total_s'] = time.perf_counter() - t_start
    text = table(results)
    print(text)
    print(f"total {results['total_s']:.0f} s")
    if FLAGS.out:
        os.makedirs(os.path.dirname(FLAGS.out) or '.', exist_ok=True)
        with open(FLAGS.out, 'w') as f:
            json.dump(results, f, indent=1, default=float)
    if FLAGS.table_out:
        with open(FLAGS.table_out, 'w') as f:
            f.write(text + '\n')


if __name__ == '__main__':
    app.run(main)
