"""Paired, interleaved timing of one agent update in two (or more) source trees.

On a shared machine whose speed drifts (other jobs, thermal limits), timing tree A for a while and then tree B
measures the drift as much as the code.  This driver starts one worker subprocess per tree (its own interpreter,
with that tree first on ``sys.path``, so each imports its own ``floq_jax`` and ``agents``), has each compile the
same update once, and then asks them in turn for one timed call each: a round is A, B (, C ...), the order rotating
from round to round so neither tree always runs first.  Each round gives the ratio of each tree's time to the first
tree's taken moments apart; the report is the median ratio over rounds and its spread (quartiles, min, max).

    python -m experiments.paired_timing --tree=PATH_A --tree=PATH_B --rounds=15
    python -m experiments.paired_timing --tree=PATH_A --tree=PATH_B --agent=agents/fql.py --set=batch_size=64

A tree is any checkout of this project, e.g. ``git worktree add /tmp/before <commit>``.  Only the stable agent
API is used (``get_config()``, the class's ``create(seed, ex_observations, ex_actions, config)`` and ``update(batch)``),
so trees from different versions of the project compare.  Bad flags: one line, exit code 2.
"""

import json
import os
import subprocess
import sys
import time

OB_DIM, ACTION_DIM = 28, 5  # cube-single's dims, as experiments/benchmark.py uses


def _fail(message: str) -> None:
    print(f'paired_timing: {message}', file=sys.stderr)
    sys.exit(2)


def parse_value(text: str):
    """A ``--set`` value: a Python literal (int, float, bool, tuple) or else the string itself."""
    import ast
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# --------------------------------------------------------------------------- the worker (runs inside one tree)


def _load_agent(agent_path: str):
    """(module, class) of the agent file ``agent_path`` (relative to the tree, e.g. agents/floq.py)."""
    import importlib
    import importlib.util
    import inspect

    if agent_path.endswith('.py') and os.path.exists(os.path.join('agents', os.path.basename(agent_path))) \
            and os.path.dirname(os.path.normpath(agent_path)) == 'agents':
        module = importlib.import_module('agents.' + os.path.basename(agent_path)[:-3])
    else:
        spec = importlib.util.spec_from_file_location('paired_timing_agent', agent_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if c.__module__ == module.__name__ and hasattr(c, 'create') and hasattr(c, 'update')]
    if len(classes) == 1:
        return module, classes[0]
    import agents
    return module, agents.agent_class(module.get_config().agent_name)


def worker(spec: dict) -> None:
    """Compile the update once, then answer each line 'N' on stdin with the seconds of N updates (one JSON line)."""
    import jax
    import numpy as np

    module, cls = _load_agent(spec['agent'])
    config = module.get_config()
    config.r_min, config.r_max = -1.0, 0.0
    for key, value in spec['overrides'].items():
        config[key] = value
    rng = np.random.default_rng(0)
    n = config.batch_size
    batch = dict(
        observations=rng.normal(size=(n, OB_DIM)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(n, ACTION_DIM)).astype(np.float32),
        rewards=-rng.uniform(0, 1, size=(n,)).astype(np.float32),
        masks=np.ones((n,), np.float32),
        next_observations=rng.normal(size=(n, OB_DIM)).astype(np.float32),
    )
    batch = jax.device_put(batch)
    agent = cls.create(0, batch['observations'][:2], batch['actions'][:2], config)
    t0 = time.perf_counter()
    update = jax.jit(type(agent).update).lower(agent, batch).compile()
    compile_s = time.perf_counter() - t0
    _, info = jax.block_until_ready(update(agent, batch))  # warm-up
    loss = {k: float(v) for k, v in info.items() if np.ndim(v) == 0 and 'loss' in k}
    print(json.dumps(dict(ready=True, compile_s=compile_s, first_losses=loss, jax=jax.__version__,
                          devices=[str(d) for d in jax.devices()])), flush=True)
    for line in sys.stdin:
        calls = int(line)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            jax.block_until_ready(update(agent, batch))
        print(json.dumps(dict(seconds=(time.perf_counter() - t0) / calls,
                              cpu_seconds=(time.process_time() - c0) / calls)), flush=True)


# --------------------------------------------------------------------------- the driver


class Worker:
    def __init__(self, tree: str, spec: dict):
        self.tree = tree
        env = dict(os.environ, PYTHONPATH=tree)
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), '--worker', json.dumps(spec)],
                                     cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f'the worker in {self.tree} exited (code {self.proc.wait()}); its stderr is above')
        return json.loads(line)

    def time(self, calls: int) -> dict:
        """{'seconds': wall-clock, 'cpu_seconds': the process's CPU time (all threads)} per update."""
        self.proc.stdin.write(f'{calls}\n')
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


def quantiles(values):
    import numpy as np
    v = np.asarray(values, float)
    return dict(median=float(np.median(v)), q25=float(np.percentile(v, 25)), q75=float(np.percentile(v, 75)),
                min=float(v.min()), max=float(v.max()))


def paired_rounds(workers, rounds: int, calls: int, log=print):
    """(times, cpu_times): [i][r] tree i's wall-clock / CPU seconds per update in round r; trees visited in an order
    rotating each round."""
    times = [[None] * rounds for _ in workers]
    cpu_times = [[None] * rounds for _ in workers]
    for r in range(rounds):
        order = [(r + j) % len(workers) for j in range(len(workers))]
        for i in order:
            t = workers[i].time(calls)
            times[i][r], cpu_times[i][r] = t['seconds'], t['cpu_seconds']
        ratios = ' '.join(f'{times[i][r] / times[0][r]:.3f}' for i in range(1, len(workers)))
        log(f'round {r + 1}/{rounds}: ' + ' '.join(f'{t[r]:.3f}s' for t in times) + f'  ratio(s) to tree 0: {ratios}')
    return times, cpu_times


def summary(trees, times, cpu_times) -> dict:
    out = dict(trees=trees, seconds=[quantiles(t) for t in times], cpu_seconds=[quantiles(t) for t in cpu_times],
               ratio_to_first=[], cpu_ratio_to_first=[])
    for i in range(1, len(trees)):
        out['ratio_to_first'].append(quantiles([b / a for a, b in zip(times[0], times[i])]))
        out['cpu_ratio_to_first'].append(quantiles([b / a for a, b in zip(cpu_times[0], cpu_times[i])]))
    return out


def main(argv):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tree', action='append', default=[], help='a source tree (at least two; the first is the '
                        'baseline of the ratios)')
    parser.add_argument('--agent', default='agents/floq.py', help='the agent file, relative to each tree')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='a config override')
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--calls', type=int, default=1, help='updates per timed call')
    parser.add_argument('--out', default=None, help='also write the per-round times and the summary as JSON here')
    args = parser.parse_args(argv)
    if len(args.tree) < 2:
        _fail('--tree: give at least two source trees (checkouts of this project)')
    for tree in args.tree:
        if not os.path.isfile(os.path.join(tree, args.agent)):
            _fail(f'--tree={tree}: no agent file {args.agent} there (accepted: a checkout of this project)')
    if args.rounds < 1 or args.calls < 1:
        _fail('--rounds / --calls: accepted: integers >= 1')
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition('=')
        if not sep or not key:
            _fail(f'--set={item}: accepted: KEY=VALUE')
        overrides[key] = parse_value(value)
    spec = dict(agent=args.agent, overrides=overrides)
    trees = [os.path.abspath(t) for t in args.tree]
    workers = []
    try:
        for tree in trees:
            workers.append(Worker(tree, spec))
            print(f'{tree}: {json.dumps(workers[-1].ready)}', flush=True)
        times, cpu_times = paired_rounds(workers, args.rounds, args.calls, log=lambda m: print(m, flush=True))
    finally:
        for w in workers:
            w.close()
    result = summary(trees, times, cpu_times)
    result.update(agent=args.agent, overrides=overrides, rounds=args.rounds, calls=args.calls, times=times,
                  cpu_times=cpu_times,
                  workers=[w.ready for w in workers], date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
    for what in ('ratio_to_first', 'cpu_ratio_to_first'):
        for i, r in enumerate(result[what], start=1):
            print(f'{"wall-clock" if what == "ratio_to_first" else "CPU time"}, tree {i} / tree 0: median '
                  f'{r["median"]:.3f} (quartiles {r["q25"]:.3f}-{r["q75"]:.3f}, min {r["min"]:.3f}, '
                  f'max {r["max"]:.3f}) over {args.rounds} paired rounds')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--worker':
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') != os.path.dirname(os.path.abspath(__file__))]
        worker(json.loads(sys.argv[2]))
    else:
        main(sys.argv[1:])
