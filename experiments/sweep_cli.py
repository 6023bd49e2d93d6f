"""The absl side of the paper sweeps (experiments/main_table.py, scale_k.py, noise_width.py, freeze_features.py,
utd.py, mechanisms.py): their shared flags, the sweep the flags ask for, and the run-then-report main.

``--scale=smoke|cpu|paper`` picks the sweep scale (floq_jax.sweeps.PRESETS); ``--preset`` stays the training
entrypoints' flag (published per-environment values or none).  ``--agent=path/to/my_agent.py[:variant]`` (repeatable)
runs a researcher's own agent file (docs/extending.md) as one more variant, named by its ``agent_name``, beside the
experiment's own.  The machinery itself is ``floq_jax.sweeps``.
"""

import os
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from absl import flags
from absl import logging as absl_logging

from experiments import checks, cli_flags, common, errors
from floq_jax import sweeps
from floq_jax.sweeps import Sweep, Variant

FLAGS = flags.FLAGS


def define_flags(default_envs: str = '') -> None:
    """Flags shared by the sweep entrypoints."""
    if 'scale' in flags.FLAGS and 'report_only' in flags.FLAGS:  # several entrypoints imported in one process
        return
    flags.DEFINE_enum('scale', 'smoke', list(sweeps.PRESETS), 'smoke: minutes on a CPU (pipeline check); cpu: sized for '
                      'about an hour per sweep on a 2-core CPU, 4 seeds, demo-size networks; paper: published '
                      'settings (GPU).')
    flags.DEFINE_string('save_dir', 'runs/sweeps', 'Root of the sweep directories (<save_dir>/<sweep>/...).')
    flags.DEFINE_string('dataset_dir', None, 'Directory with OGBench <dataset>.npz files (used where present; '
                        'otherwise datasets are generated here).')
    flags.DEFINE_string('dataset_path', None, 'Explicit training .npz for every env of the sweep.')
    flags.DEFINE_string('cache_dir', None, 'Cache of generated datasets (default $FLOQ_DATA_CACHE or '
                        '~/.cache/floq_jax/datasets).')
    flags.DEFINE_string('envs', default_envs, 'Comma list of single-task env names (default: the scale\'s).')
    flags.DEFINE_string('variants', '', 'Comma list: run only these variants (default: all).')
    flags.DEFINE_multi_string('agent', [], 'An agent file (path/to/agent.py[:variant], docs/extending.md) run as one '
                              'more variant, named by its agent_name, beside the experiment\'s own; repeatable.')
    flags.DEFINE_integer('num_seeds', None, 'Seeds per (variant, env) (default: the scale\'s).')
    flags.DEFINE_integer('seed', 0, 'First seed.')
    flags.DEFINE_integer('offline_steps', None, 'Override the scale\'s offline steps.')
    flags.DEFINE_integer('num_episodes', None, 'Episodes of a generated dataset (default: the scale\'s).')
    cli_flags.define_compile_cache_flag()
    flags.DEFINE_bool('report_only', False, 'Only rewrite the tables and plots from existing runs.')
    flags.DEFINE_integer('mc_states', 1024, 'Held-out states for the Q errors against Monte-Carlo returns (scale_k, '
                         'utd, mechanisms).')
    cli_flags.define_eval_protocol_flag()
    cli_flags.define_success_timing_flag()
    cli_flags.define_eval_seeding_flag()
    cli_flags.define_cpu_devices_flag()


def sweep_from_flags(name: str, variants: Union[Sequence[Variant], Callable[[Sweep], Sequence[Variant]]],
                     paper_envs: Sequence[str], registry, mode: str = 'offline', options: Optional[dict] = None,
                     description: str = '', scale_envs: Optional[Dict[str, Sequence[str]]] = None,
                     agent_files: Union[bool, str] = True) -> Tuple[Sweep, sweeps.SweepData]:
    """The sweep the flags ask for, training the agents of ``registry`` (the ``agents`` package).  ``variants``: the
    experiment's variants, or a function of the sweep (its scale and options set) returning them, for variants that
    depend on the run length.  ``scale_envs``: the experiment's own tasks at a scale (default: the scale's, else
    ``paper_envs``).  ``--agent`` files are added as variants (:func:`agent_file_variants`) unless ``agent_files``
    is not True (its text says why the sweep refuses them).  ``--variants`` keeps a subset; an unknown name ends the
    program with one line naming the accepted ones (exit code 2)."""
    p = sweeps.preset(FLAGS.scale)
    envs = sweeps.parse_list(FLAGS.envs) or list((scale_envs or {}).get(FLAGS.scale) or p['envs'] or paper_envs)
    opts = dict(options or {})
    if FLAGS.num_seeds is not None:
        opts['num_seeds'] = FLAGS.num_seeds
    if FLAGS.offline_steps is not None:
        opts['offline_steps'] = FLAGS.offline_steps
    opts['seed'] = FLAGS.seed
    from floq_jax import presets

    for flag, accepted in (('eval_protocol', presets.EVAL_PROTOCOLS), ('success_timing', presets.SUCCESS_TIMINGS),
                           ('eval_seeding', presets.EVAL_SEEDINGS)):
        if flag in FLAGS:
            try:
                checks.check_choice(flag, FLAGS[flag].value, list(accepted))
            except errors.UsageError as e:
                errors.fail(e)
            opts[flag] = FLAGS[flag].value
    sweep = sweeps.Sweep(name=name, variants=[], envs=envs, preset=FLAGS.scale, mode=mode, options=opts,
                         save_dir=FLAGS.save_dir, description=description, registry=registry)
    sweep.variants = list(variants(sweep) if callable(variants) else variants)
    try:
        if FLAGS.agent and agent_files is not True:
            raise errors.UsageError(f'--agent: the {name} sweep takes no agent file: {agent_files}; accepted: '
                                    f'the sweeps whose variants are agents, e.g. main_table')
        sweep.variants += agent_file_variants(FLAGS.agent, registry, {v.name for v in sweep.variants})
    except errors.UsageError as e:
        errors.fail(e)
    keep = sweeps.parse_list(FLAGS.variants)
    if keep:
        unknown = sorted(set(keep) - {v.name for v in sweep.variants})
        if unknown:
            print(f'error: --variants: unknown {", ".join(unknown)}; accepted: '
                  f'{", ".join(v.name for v in sweep.variants)}', file=sys.stderr)
            sys.exit(2)
        sweep.variants = [v for v in sweep.variants if v.name in keep]
    d = p['data']
    source = sweeps.SweepData(dataset_dir=FLAGS.dataset_dir, dataset_path=FLAGS.dataset_path,
                              cache_dir=FLAGS.cache_dir, num_episodes=FLAGS.num_episodes or d['num_episodes'],
                              max_episode_steps=d['max_episode_steps'])
    return sweep, source


def agent_file_variants(specs: Sequence[str], registry, taken) -> List[Variant]:
    """One variant per ``--agent`` value (an agent file 'path.py[:variant]', or a name of ``registry``), named by its
    config's ``agent_name``, its file recorded by absolute path (flags.json's ``sweep_agent``: evaluation and the
    reports find the class again).  A file that does not load, or a name ``taken`` by another variant, raises
    UsageError naming the flag."""
    from floq_jax.agent_registry import split_spec

    out, taken = [], set(taken)
    for spec in specs:
        try:
            name = registry.get_config(spec).agent_name
        except ValueError as e:
            message = str(e)
            raise errors.UsageError(message if message.startswith('--agent') else f'--agent={spec}: {message}') \
                from None
        if name in taken:
            raise errors.UsageError(f'--agent={spec}: its agent_name {name!r} is a variant of this sweep already; '
                                    f'accepted: an agent whose agent_name is not one of {", ".join(sorted(taken))}')
        path, variant = split_spec(spec)
        if path.endswith('.py'):
            spec = os.path.abspath(path) + (f':{variant}' if variant else '')
        out.append(Variant(name, spec))
        taken.add(name)
    return out


def main(sweep: Sweep, source: sweeps.SweepData, post: Optional[Callable[[Sweep], str]] = None,
         group_by: str = 'variant') -> Dict[str, str]:
    """Runs the sweep (unless --report_only), then writes results.md/.csv/learning_curves.png (plus what ``post``
    writes; its returned markdown is appended to results.md).  Prints the written paths.  Errors end the program as
    the training entrypoints' do (experiments.errors.run_cli: one line; a run directory another run holds or that
    belongs to another run, a full disk, a preemption, Ctrl-C)."""
    absl_logging.set_verbosity(absl_logging.WARNING)
    out = {}
    errors.run_cli(lambda: out.update(_run_and_report(sweep, source, post, group_by)))
    return out


def _run_and_report(sweep: Sweep, source: sweeps.SweepData, post, group_by: str) -> Dict[str, str]:
    """:func:`main`'s body."""
    if not FLAGS.report_only:
        sweep.cpu_devices = common.start_devices(sweeps.seed_count(sweep), FLAGS.cpu_devices)  # first (floq_jax.training.devices)
    t0 = time.time()
    if not FLAGS.report_only:
        from floq_jax.training.devices import device_description

        times_before = sweeps.recorded_run_times(sweep)
        sweeps.run_sweep(sweep, source)
        if sweeps.recorded_run_times(sweep) != times_before:  # it trained: an invocation that only reused is not
            sweeps.record_command(sweep, command_line(), t0, time.time() - t0, device_description())
    from floq_jax.analysis.report import NoRunsError

    try:
        extra = post(sweep) if post is not None else ''
        paths = sweeps.write_sweep_report(sweep, group_by=group_by, extra_md=extra or '')
    except NoRunsError as e:  # e.g. --report_only before any run: one line, not a traceback
        print(f'error: {"--report_only: " if FLAGS.report_only else ""}{e}', file=sys.stderr)
        sys.exit(2 if FLAGS.report_only else 1)
    for p in sorted(set(paths.values()) | set(_listing(sweep.root))):
        print(p)
    print(f'[{sweep.name}] done in {time.time() - t0:.1f}s')
    return paths


def command_line() -> str:
    """This invocation as a user would type it: ``python -m experiments.<module> <flags>``."""
    module = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    return ' '.join(['python -m experiments.' + module, *sys.argv[1:]])


def _listing(root: str) -> List[str]:
    return [os.path.join(root, f) for f in sorted(os.listdir(root)) if f.endswith(('.md', '.csv', '.png'))]
