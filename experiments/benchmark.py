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
import threading
import time

from absl import app, flags

from experiments import cli_flags, end_to_end

import jax
import jax.numpy as jnp
import numpy as np

from agents import floq as floq_lib
from agents import fql as fql_lib
from floq_jax.training import benchmarking as bm
from floq_jax.core import flops as flops_lib
from floq_jax.training import parallel
from floq_jax.data import sampling

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

OB_DIM, ACTION_DIM = 28, 5  # cube-single (OGBench): the dims the published FLOP numbers use.


def small_overrides(config):
    """The small config: 2 x 256 nets everywhere, noise_samples 4 (floq)."""
    config.actor_hidden_dims = (256, 256)
    config.value_hidden_dims = (256, 256)
    if 'block_width' in config:
        config.block_width = 256
        config.block_depth = 2
        config.noise_samples = 4
    return config


def tiny_overrides(config):
    config.actor_hidden_dims = (16, 16)
    config.value_hidden_dims = (16, 16)
    config.batch_size = 8
    config.actor_flow_steps = 2
    if 'block_width' in config:
        config.block_width = 16
        config.block_depth = 2
        config.noise_samples = 2
    return config


def make_config(agent, K=None, small=False):
    config = floq_lib.get_config() if agent == 'floq' else fql_lib.get_config()
    config.r_min, config.r_max = -1.0, 0.0
    if K is not None:
        config.critic_flow_steps = K
    if small:
        small_overrides(config)
    if FLAGS.tiny:
        tiny_overrides(config)
    return config


def agent_cls(agent):
    return floq_lib.FloqAgent if agent == 'floq' else fql_lib.FQLAgent


class Bench:
    def __init__(self):
        self.quick = FLAGS.quick or FLAGS.tiny
        n = 4096 if FLAGS.tiny else FLAGS.num_transitions
        self.host_data = bm.fake_dataset(n, OB_DIM, ACTION_DIM)
        self.data = sampling.put_replicated(self.host_data)
        self.results = {'updates': [], 'seeds': {}, 'loop': {}, 'profile': {}, 'evaluation': None,
                        'eval_seeds': None}
        self.compiled = {}  # (agent, K, small) -> AOT-compiled update, reused by the host loop
        self.chunks = {}  # (batch_size, steps) -> make_train_chunk (seeds and loop share one in --quick)

    def chunk(self, batch_size, steps):
        if (batch_size, steps) not in self.chunks:
            self.chunks[(batch_size, steps)] = parallel.make_train_chunk(batch_size, steps)
        return self.chunks[(batch_size, steps)]

    def log(self, *a):
        print(*a, flush=True)

    def batch(self, batch_size):
        return bm.host_batch(self.host_data, np.random.default_rng(0), batch_size)

    # ------------------------------------------------------------------ single updates
    def update_case(self, name, agent, K=None, small=False, iters=3):
        config = make_config(agent, K, small)
        ag = agent_cls(agent).create(0, self.host_data['observations'][:2], self.host_data['actions'][:2], config)
        batch = jax.device_put(self.batch(config.batch_size))
        compiled, lower_s, compile_s = bm.time_compile(type(ag).update, ag, batch)
        self.compiled[(agent, K, small)] = compiled
        analytic = flops_lib.update_flops(ag)
        # Each timed update is paired with an adjacent 2048^2 matmul timing (median of 3), so the fraction of the
        # matmul rate compares the two under the same (shared-machine) load; we report the median pair ratio.
        jax.block_until_ready(compiled(ag, batch))
        times, fractions = [], []
        for _ in range(iters):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(ag, batch))
            times.append(time.perf_counter() - t0)
            mm = bm.matmul_flops_per_s(2048 if not FLAGS.tiny else 256, iters=3, warmup=0)
            fractions.append((analytic / times[-1]) / mm['flops_per_s'])
        timing = bm.Timing(times)
        row = dict(name=name, agent=agent, K=K if agent == 'floq' else None, small=small,
                   lower_s=lower_s, compile_s=compile_s, compile_total_s=lower_s + compile_s,
                   times_s=timing.times_s, ms_per_update=1e3 * timing.median_s,
                   updates_per_s=1.0 / timing.median_s, analytic_flops=analytic, xla_flops=bm.xla_flops(compiled),
                   achieved_flops_per_s=analytic / timing.median_s,
                   fraction_of_adjacent_matmul=float(np.median(fractions)), adjacent_fractions=fractions,
                   compiled_memory=bm.compiled_memory_bytes(compiled), **bm.peak_memory())
        self.results['updates'].append(row)
        self.log(f"{name}: compile {row['compile_total_s']:.1f} s, {row['ms_per_update']:.1f} ms/update, "
                 f"{row['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s, {row['fraction_of_adjacent_matmul']:.2f} of adjacent matmul")
        return row

    # ------------------------------------------------------------------ seeds: vmapped vs sequential
    def seeds(self, num_seeds=8, steps=None, iters=None):
        steps = steps or (2 if self.quick else 10)  # quick: same chunk as the loop section (one compile)
        iters = iters or (2 if self.quick else 3)
        if FLAGS.seeds_config == 'demo' and not FLAGS.tiny:
            from floq_jax.presets import demo_config

            config = demo_config(floq_lib.get_config())
            config.r_min, config.r_max = -1.0, 0.0
            steps = steps * 10  # ~5 ms updates: 100-step chunks keep each timed call ~0.5 s per seed
        else:
            config = make_config('floq', small=True)
        cls = floq_lib.FloqAgent
        ex_o, ex_a = self.host_data['observations'][:2], self.host_data['actions'][:2]
        chunk = self.chunk(config.batch_size, steps)
        out = {'steps_per_call': steps, 'num_seeds': num_seeds, 'config': FLAGS.seeds_config}

        state = {'v': (parallel.create_agents(cls, config, ex_o, ex_a, np.arange(num_seeds)),
                       parallel.seed_rngs(np.arange(num_seeds)))}

        def vmapped():
            agents, rngs, infos = chunk(*state['v'][:1], self.data, state['v'][1])
            state['v'] = (agents, rngs)
            return infos

        singles = [(parallel.create_agents(cls, config, ex_o, ex_a, np.array([s])), parallel.seed_rngs(np.array([s])))
                   for s in range(num_seeds)]

        def one_seed():
            agents, rngs, infos = chunk(singles[0][0], self.data, singles[0][1])
            singles[0] = (agents, rngs)
            return infos

        def sequential():
            infos = None
            for s in range(num_seeds):
                agents, rngs, infos = chunk(singles[s][0], self.data, singles[s][1])
                singles[s] = (agents, rngs)
                jax.block_until_ready(infos)  # separate runs: each finishes before the next starts
            return infos

        # What --num_seeds=N runs (--seed_loop=auto) on one device: lax.map over seeds on CPU for large matmuls.
        auto_map = parallel.use_seed_map('auto', config, num_seeds)
        out['seed_loop_auto'] = 'map' if auto_map else 'vmap'
        map_chunk = parallel.make_train_chunk(config.batch_size, steps, None, True)
        state['p'] = (parallel.create_agents(cls, config, ex_o, ex_a, np.arange(num_seeds)),
                      parallel.seed_rngs(np.arange(num_seeds)))

        def mapped():
            agents, rngs, infos = map_chunk(state['p'][0], self.data, state['p'][1])
            state['p'] = (agents, rngs)
            return infos

        run_sharded = run_sharded_other = None
        if jax.device_count() > 1:
            # With several devices the seed axis is sharded over a ('seeds', 'batch') mesh; both seed loops timed.
            mesh = parallel.make_mesh(num_seeds)
            mesh_data = sampling.put_replicated(self.host_data, parallel.replicated(mesh))
            # ... and sharded: also map when each device holds one seed.
            auto_sharded = parallel.use_seed_map('auto', config, parallel.seeds_per_device(num_seeds, mesh))

            def sharded_runner(key, seed_map):
                mesh_chunk = parallel.make_train_chunk(config.batch_size, steps, mesh, seed_map)
                state[key] = (parallel.create_agents(cls, config, ex_o, ex_a, np.arange(num_seeds), mesh),
                              jax.device_put(parallel.seed_rngs(np.arange(num_seeds)), parallel.seed_sharding(mesh)))

                def run():
                    agents, rngs, infos = mesh_chunk(state[key][0], mesh_data, state[key][1])
                    state[key] = (agents, rngs)
                    return infos

                return run

            run_sharded = sharded_runner('m', auto_sharded)
            run_sharded_other = sharded_runner('o', not auto_sharded)

        # Interleave so machine noise hits all of them alike.
        t1 = bm.time_calls(one_seed, iters)
        tv = bm.time_calls(vmapped, iters)
        tp = bm.time_calls(mapped, iters)
        tm = bm.time_calls(run_sharded, iters) if run_sharded else None
        to = bm.time_calls(run_sharded_other, iters) if run_sharded_other else None
        ts = bm.time_calls(sequential, iters, warmup=0)
        out['one_seed'] = dict(times_s=t1.times_s, seed_updates_per_s=steps / t1.median_s)
        out['vmapped'] = dict(times_s=tv.times_s, seed_updates_per_s=num_seeds * steps / tv.median_s)
        out['mapped'] = dict(times_s=tp.times_s, seed_updates_per_s=num_seeds * steps / tp.median_s)
        if tm is not None:
            out['sharded'] = dict(times_s=tm.times_s, seed_updates_per_s=num_seeds * steps / tm.median_s,
                                  mesh=dict(mesh.shape), devices=jax.device_count(),
                                  seed_loop='map' if auto_sharded else 'vmap')
            out['sharded_other_loop'] = dict(times_s=to.times_s, seed_updates_per_s=num_seeds * steps / to.median_s,
                                             seed_loop='vmap' if auto_sharded else 'map')
        out['sequential'] = dict(times_s=ts.times_s, seed_updates_per_s=num_seeds * steps / ts.median_s)
        # The target is judged on what --num_seeds=N runs: sharded over devices when there are several, with the
        # automatic seed loop.
        best = out['sharded' if tm is not None else ('mapped' if auto_map else 'vmapped')]
        out['vmapped_over_sequential'] = best['seed_updates_per_s'] / out['sequential']['seed_updates_per_s']
        # Compute ceiling, same run: the sequential runs' achieved FLOP/s against a matmul timed right after them.
        # No batching of seeds can beat the dense matmul rate, so matmul / sequential bounds the attainable ratio.
        out['analytic_flops_per_seed_update'] = flops_lib.update_flops(cls.create(0, ex_o, ex_a, config))
        for k in ('one_seed', 'vmapped', 'mapped', 'sharded', 'sharded_other_loop', 'sequential'):
            if k in out:
                out[k]['achieved_flops_per_s'] = out[k]['seed_updates_per_s'] * out['analytic_flops_per_seed_update']
        out['adjacent_matmul_flops_per_s'] = bm.matmul_flops_per_s(256 if FLAGS.tiny else 2048, iters=5)['flops_per_s']
        out['ratio_ceiling'] = out['adjacent_matmul_flops_per_s'] / out['sequential']['achieved_flops_per_s']
        self.results['seeds'] = out
        self.log(f"seeds: 1 seed {out['one_seed']['seed_updates_per_s']:.2f}, {num_seeds} vmapped "
                 f"{out['vmapped']['seed_updates_per_s']:.2f}, {num_seeds} lax.map "
                 f"{out['mapped']['seed_updates_per_s']:.2f}"
                 + (f", {num_seeds} sharded over {jax.device_count()} devices: {out['sharded']['seed_loop']} "
                    f"{out['sharded']['seed_updates_per_s']:.2f}, {out['sharded_other_loop']['seed_loop']} "
                    f"{out['sharded_other_loop']['seed_updates_per_s']:.2f}" if tm is not None else '')
                 + f", {num_seeds} sequential {out['sequential']['seed_updates_per_s']:.2f} seed-updates/s "
                 f"(x{out['vmapped_over_sequential']:.2f}; ceiling x{out['ratio_ceiling']:.2f}: sequential runs at "
                 f"{out['sequential']['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s, matmul "
                 f"{out['adjacent_matmul_flops_per_s'] / 1e9:.1f})")

    # ------------------------------------------------------------------ device-resident loop vs host loop
    def loop(self, steps=None, iters=None):
        steps = steps or (2 if self.quick else 100)
        iters = iters or (2 if self.quick else 3)
        config = make_config('floq', small=True)
        cls = floq_lib.FloqAgent
        ex_o, ex_a = self.host_data['observations'][:2], self.host_data['actions'][:2]
        chunk = self.chunk(config.batch_size, steps)
        dev = {'s': (parallel.create_agents(cls, config, ex_o, ex_a, np.array([0])), parallel.seed_rngs(np.array([0])))}

        def device_loop():
            agents, rngs, infos = chunk(dev['s'][0], self.data, dev['s'][1])
            dev['s'] = (agents, rngs)
            return infos

        host = {'agent': cls.create(0, ex_o, ex_a, config), 'rng': np.random.default_rng(0)}
        update = self.compiled.get(('floq', None, True)) or type(host['agent']).update
        sample_s, put_s = [], []

        def host_loop():
            agent, info = host['agent'], None
            for _ in range(steps):
                t0 = time.perf_counter()
                b = bm.host_batch(self.host_data, host['rng'], config.batch_size)
                t1 = time.perf_counter()
                b = jax.device_put(b)
                t2 = time.perf_counter()
                sample_s.append(t1 - t0)
                put_s.append(t2 - t1)
                agent, info = update(agent, b)
            host['agent'] = agent
            return info

        td = bm.time_calls(device_loop, iters)
        th = bm.time_calls(host_loop, iters)
        out = dict(steps_per_call=steps,
                   device_resident=dict(times_s=td.times_s, updates_per_s=steps / td.median_s),
                   host_per_step=dict(times_s=th.times_s, updates_per_s=steps / th.median_s,
                                      host_sample_ms=1e3 * float(np.median(sample_s)),
                                      device_put_ms=1e3 * float(np.median(put_s))))
        out['speedup'] = out['device_resident']['updates_per_s'] / out['host_per_step']['updates_per_s']
        # The host loop's measured host work (numpy sampling + device_put) as a share of its time per update. (It
        # is not a bound on the ratio: jit dispatch and the Python thread also take CPU time from the update.)
        host_ms = 1e3 / out['host_per_step']['updates_per_s']
        overhead_ms = out['host_per_step']['host_sample_ms'] + out['host_per_step']['device_put_ms']
        out['host_overhead_fraction'] = overhead_ms / host_ms
        self.results['loop'] = out
        self.log(f"loop: device-resident {out['device_resident']['updates_per_s']:.2f} updates/s, host per step "
                 f"{out['host_per_step']['updates_per_s']:.2f} updates/s (x{out['speedup']:.2f}); host sampling "
                 f"{out['host_per_step']['host_sample_ms']:.3f} ms, device_put {out['host_per_step']['device_put_ms']:.3f} ms "
                 f"({100 * out['host_overhead_fraction']:.1f}% of its time per update)")

    # ------------------------------------------------------------------ where the floq update's time goes
    def profile(self, iters=None):
        iters = iters or (2 if self.quick else 3)
        config = make_config('floq')
        ag = floq_lib.FloqAgent.create(0, self.host_data['observations'][:2], self.host_data['actions'][:2], config)
        c = ag.config
        B, n, E, K = c.batch_size, c.noise_samples, c.flow_num_ensembles, c.critic_flow_steps
        rows = B * n
        batch = jax.device_put(self.batch(B))
        obs_n = jnp.repeat(batch['observations'], n, axis=0)
        act_n = jnp.repeat(batch['actions'], n, axis=0)
        z0 = jnp.zeros((rows,))
        v_flops = flops_lib.velocity_net_flops(c)
        out = {'matmul_rate_flops_per_s': self.results.get('matmul', {}).get('flops_per_s')}

        def record(name, fn, args, flops):
            jitted = jax.jit(fn)
            timing = bm.time_calls(lambda: jitted(*args), iters)
            out[name] = dict(ms=1e3 * timing.median_s, flops=flops, flops_per_s=flops / timing.median_s if flops else None)
            self.log(f"profile {name}: {out[name]['ms']:.1f} ms" +
                     (f", {out[name]['flops_per_s'] / 1e9:.1f} GFLOP/s" if flops else ''))

        field = ag.modules['critic_flow']
        p = ag.params['critic_flow']
        record('velocity_fwd_2048rows', lambda p, o, a, z: field.apply({'params': p}, o, a, jnp.broadcast_to(z, (E, rows)), 0.5),
               (p, obs_n, act_n, z0), rows * E * v_flops)
        record(f'integration_K{K}_2048rows', lambda p, o, a, z: ag.integrate(p, o, a, z, K), (p, obs_n, act_n, z0),
               K * rows * E * v_flops)
        rng = jax.random.PRNGKey(1)
        record('critic_loss_grad', lambda params: jax.grad(lambda q: ag.critic_loss(batch, q, rng)[0])(params),
               (ag.params,), None)
        from floq_jax.core import actor
        record('actor_loss_grad', lambda params: jax.grad(lambda q: actor.actor_loss(
            ag.modules, q, batch, rng, ag.actor_q_fn(q, rng), ag.config)[0])(params), (ag.params,), None)

        # The velocity net's pieces at 2 x 2048 rows: matmuls only vs + GELU vs + LayerNorm; batched vs flat.
        width, depth = c.block_width, c.block_depth
        d_in = c.ob_dim + c.action_dim + c.num_bins - 1 + 1
        keys = jax.random.split(jax.random.PRNGKey(2), depth + 2)
        Ws = [jax.random.normal(keys[0], (E, d_in, width)) * 0.05] + \
             [jax.random.normal(keys[i + 1], (E, width, width)) * 0.05 for i in range(depth - 1)] + \
             [jax.random.normal(keys[-1], (E, width, 1)) * 0.05]
        x = jax.random.normal(keys[-2], (E, rows, d_in))

        def mlp(Ws, x, act=None, ln=False):
            for W in Ws[:-1]:
                x = jnp.einsum('erd,edh->erh', x, W)
                if act is not None:
                    x = act(x)
                if ln:
                    mu = x.mean(-1, keepdims=True)
                    var = ((x - mu) ** 2).mean(-1, keepdims=True)
                    x = (x - mu) * jax.lax.rsqrt(var + 1e-6)
            return jnp.einsum('erd,edh->erh', x, Ws[-1])

        mm_flops = rows * E * v_flops
        record('mlp_matmuls_only_batched', lambda Ws, x: mlp(Ws, x), (Ws, x), mm_flops)
        record('mlp_matmuls_per_member_loop', lambda Ws, x: jnp.stack([mlp([W[e:e + 1] for W in Ws], x[e:e + 1])[0]
                                                                         for e in range(E)]), (Ws, x), mm_flops)
        record('mlp_matmuls_shared_weights_2x_rows', lambda Ws, x: mlp([W[:1] for W in Ws], x.reshape(1, E * rows, d_in)),
               (Ws, x), mm_flops)
        record('mlp_gelu_tanh', lambda Ws, x: mlp(Ws, x, jax.nn.gelu), (Ws, x), mm_flops)
        record('mlp_gelu_exact', lambda Ws, x: mlp(Ws, x, lambda y: jax.nn.gelu(y, approximate=False)), (Ws, x), mm_flops)
        record('mlp_relu', lambda Ws, x: mlp(Ws, x, jax.nn.relu), (Ws, x), mm_flops)
        record('mlp_gelu_tanh_layernorm', lambda Ws, x: mlp(Ws, x, jax.nn.gelu, True), (Ws, x), mm_flops)
        from floq_jax.core.networks import hl_gauss_embedding
        record('hl_gauss_embedding_2x2048', lambda z: hl_gauss_embedding(z, c.q_min, c.q_max, c.num_bins, c.sigma),
               (jnp.zeros((E, rows)),), None)
        xb = x.astype(jnp.bfloat16)
        Wb = [W.astype(jnp.bfloat16) for W in Ws]
        record('mlp_matmuls_only_bfloat16', lambda Ws, x: mlp(Ws, x), (Wb, xb), mm_flops)
        self.results['profile'] = out

    # ------------------------------------------------------------------ compile time vs K, repeated
    def compile_check(self, repeats):
        out = {'K1': [], 'K16': [], 'hlo': {}}
        for rep in range(repeats):
            for K in (1, 16):
                config = make_config('floq', K)
                config.tau = config.tau * (1.0 + 1e-6 * rep)  # a new static config per repeat: no jit-cache hits
                ag = floq_lib.FloqAgent.create(0, self.host_data['observations'][:2], self.host_data['actions'][:2], config)
                batch = jax.device_put(self.batch(config.batch_size))
                compiled, lower_s, compile_s = bm.time_compile(type(ag).update, ag, batch)
                out[f'K{K}'].append(dict(lower_s=lower_s, compile_s=compile_s, total_s=lower_s + compile_s))
                text = compiled.as_text() or ''
                out['hlo'][f'K{K}'] = dict(while_ops=text.count(' while('), hlo_chars=len(text))
                self.log(f"compile K={K}: lower {lower_s:.1f} s + compile {compile_s:.1f} s; "
                         f"{out['hlo'][f'K{K}']['while_ops']} while ops, {len(text)} HLO chars")
        med = lambda k: float(np.median([r['total_s'] for r in out[k]]))
        out['K16_over_K1_median'] = med('K16') / med('K1')
        self.results['compile_check'] = out
        self.log(f"compile K16 / K1 (median of {repeats}): {out['K16_over_K1_median']:.2f}")

    # ------------------------------------------------------------------ evaluation
    def evaluation(self):
        from floq_jax.envs import evaluation
        episodes = FLAGS.eval_episodes or (2 if FLAGS.tiny else 10 if FLAGS.quick else 50)
        config = make_config('fql', small=True)
        ag = fql_lib.FQLAgent.create(0, self.host_data['observations'][:2], self.host_data['actions'][:2], config)

        def policy(obs, keys, temperature):
            return evaluation.rows_policy_actions(ag, jnp.asarray(obs), jnp.asarray(keys), temperature)

        kwargs = {}
        if FLAGS.eval_max_steps:
            kwargs['max_episode_steps'] = FLAGS.eval_max_steps
        # The committed figures are of the worker-process path (the 'auto' default picks it from 8 envs on).
        kwargs['vector_mode'] = 'sync' if FLAGS.tiny else 'chunked'
        res = evaluation.benchmark_evaluation(policy, FLAGS.env_name, num_episodes=episodes, **kwargs)
        res = {k: v for k, v in res.items() if isinstance(v, (int, float, str, bool))}
        res['num_episodes'] = episodes
        res['policy'] = 'FQL small config (2x256) one-step policy, jitted sample_actions'
        self.results['evaluation'] = res
        self.log(f"evaluation ({episodes} episodes): parallel {res['parallel_s']:.1f} s, sequential "
                 f"{res['sequential_s']:.1f} s (x{res['speedup']:.2f})")


    # ------------------------------------------------------------------ evaluation of seeds together, bounded pools
    def eval_seeds(self):
        """S seeds x pool sizes: one evaluate_seeds call (all seeds, FLAGS.eval_episodes each, published noise) on a
        pool of live envs already built; wall-clock and the peak RSS of this process plus its env workers."""
        from floq_jax.envs import evaluation

        episodes = FLAGS.eval_episodes or (2 if FLAGS.tiny else 10)
        seed_counts = positive_ints('eval_num_seeds', FLAGS.eval_num_seeds or (
            [1, 2] if FLAGS.tiny else [1, 4] if self.quick else [1, 2, 4]))
        pools = positive_ints('eval_pools', FLAGS.eval_pools or ([2] if FLAGS.tiny else [4] if self.quick else [2, 4, 8]))
        kwargs = {'max_episode_steps': FLAGS.eval_max_steps} if FLAGS.eval_max_steps else {}
        kwargs['vector_mode'] = 'sync' if FLAGS.tiny else 'chunked'  # pools of 2-8 envs: the worker-process path
        config = make_config('fql', small=True)
        ex_o, ex_a = self.host_data['observations'][:2], self.host_data['actions'][:2]
        rows = []
        for num_seeds in seed_counts:
            seeds = list(range(num_seeds))
            agents = parallel.create_agents(fql_lib.FQLAgent, config, ex_o, ex_a, seeds)
            done = set()
            for pool in pools:
                evaluator = evaluation.seeds_evaluator(FLAGS.env_name, episodes, num_seeds, pool_size=pool, **kwargs)
                if evaluator.num_envs in done:  # pools below S all become S envs
                    continue
                done.add(evaluator.num_envs)
                slots = evaluator.num_envs // num_seeds
                base = tree_rss_bytes()
                with PeakRss() as peak:
                    try:
                        t0 = time.perf_counter()
                        evaluator.env.reset(seed=list(range(evaluator.num_envs)))
                        create_s = time.perf_counter() - t0
                        obs = np.zeros((num_seeds, slots, OB_DIM), np.float32)  # compile outside the timing
                        np.asarray(evaluation.seeds_policy_fn(agents)(obs, jnp.stack(
                            [jax.random.split(jax.random.PRNGKey(s), slots) for s in seeds]), 1.0))
                        t0 = time.perf_counter()
                        res = evaluation.evaluate_seeds(evaluator, agents, seeds, temperature=1.0)
                        eval_s = time.perf_counter() - t0
                    finally:
                        evaluator.close()
                row = dict(num_seeds=num_seeds, pool=pool, live_envs=evaluator.num_envs, slots_per_seed=slots,
                           episodes_per_seed=episodes, waves=-(-episodes // slots), create_s=create_s, eval_s=eval_s,
                           episodes_per_s=num_seeds * episodes / eval_s, base_rss_bytes=base,
                           peak_rss_bytes=peak.bytes,
                           peak_over_base_per_env_bytes=(peak.bytes - base) / evaluator.num_envs,
                           mean_length=float(np.mean([r['length'] for r in res])))
                rows.append(row)
                self.log(f"eval_seeds S={num_seeds} pool {row['live_envs']} ({slots}/seed, {row['waves']} waves): "
                         f"{eval_s:.1f} s, peak RSS {bm.fmt_bytes(peak.bytes)} (base {bm.fmt_bytes(base)})")
        self.results['eval_seeds'] = dict(rows=rows, env_name=FLAGS.env_name, num_episodes=episodes,
                                          vector_mode=kwargs['vector_mode'],
                                          policy='FQL small config (2x256) one-step policy, untrained, noise N(0, I)')


def vector_mode_rows(env_name: str, sizes, modes=('sync', 'chunked'), evaluations: int = 3,
                     max_episode_steps=None) -> list:
    """Wall seconds of one evaluation pool per (n, vector mode): build n envs, then ``evaluations`` evaluations of
    n episodes (a zero policy, so only the env stepping and the pool's overhead are timed).  The idle envs of this
    process are closed first, so 'sync' builds its envs as a fresh run does.  Rows: n, mode, the mode 'auto' picks
    (envs.resolve_vector_mode), build_s, eval_s, total_s."""
    from floq_jax.envs import envs as envs_lib
    from floq_jax.envs import evaluation

    rows = []
    for n in sizes:
        for mode in modes:
            envs_lib.clear_env_pool()
            t0 = time.perf_counter()
            with evaluation.make_evaluator(env_name, num_episodes=n, vector_mode=mode,
                                           max_episode_steps=max_episode_steps) as ev:
                _ = ev.env
                t1 = time.perf_counter()
                act_dim = ev.env.single_action_space.shape[0]
                for i in range(evaluations):
                    ev(lambda obs, keys, temperature: np.zeros((obs.shape[0], act_dim), np.float32), seed=i)
                t2 = time.perf_counter()
            rows.append(dict(n=int(n), mode=mode, auto=envs_lib.resolve_vector_mode('auto', int(n)),
                             build_s=t1 - t0, eval_s=t2 - t1, total_s=time.perf_counter() - t0))
    envs_lib.clear_env_pool()
    return rows


def _proc_rss_bytes(pid: int) -> int:
    """VmRSS of one process (0 if it is gone)."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int):
    try:
        tasks = os.listdir(f'/proc/{pid}/task')
    except OSError:
        return []
    kids = []
    for tid in tasks:
        try:
            with open(f'/proc/{pid}/task/{tid}/children') as f:
                kids += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return kids


def tree_rss_bytes(pid: int = None) -> int:
    """RSS of a process plus all its descendants (env worker processes, the forkserver), from /proc (Linux)."""
    pid = os.getpid() if pid is None else pid
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _proc_rss_bytes(p)
        todo += _children(p)
    return total


class PeakRss:
    """Context manager sampling :func:`tree_rss_bytes` of process ``pid`` (default: this one) every ``interval``
    seconds in a thread; ``.bytes`` = peak."""

    def __init__(self, interval: float = 0.05, pid: int = None):
        self.interval, self.bytes, self.pid = interval, 0, pid
        self._stop = threading.Event()

    def _run(self):
        while True:
            self.bytes = max(self.bytes, tree_rss_bytes(self.pid))
            if self._stop.wait(self.interval):
                return

    def __enter__(self):
        self.bytes = tree_rss_bytes(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def targets(results, matmul):
    rate = matmul['flops_per_s']
    ups = {u['name']: u for u in results['updates']}
    t = {}
    if 'floq_K8' in ups:
        frac = ups['floq_K8'].get('fraction_of_adjacent_matmul', ups['floq_K8']['achieved_flops_per_s'] / rate)
        t['floq_default_matmul_fraction'] = dict(goal='>= 0.75 of measured matmul FLOP/s (paired, median)',
                                                 value=frac, met=frac >= 0.75)
    if 'floq_K1' in ups and 'floq_K16' in ups:
        r = ups['floq_K16']['compile_total_s'] / ups['floq_K1']['compile_total_s']
        t['compile_K16_over_K1'] = dict(goal='<= 1.5', value=r, met=r <= 1.5)
    if results.get('compile_check'):
        r = results['compile_check']['K16_over_K1_median']
        t['compile_K16_over_K1_repeated'] = dict(goal='<= 1.5 (median of alternating compiles)', value=r, met=r <= 1.5)
    if results['loop']:
        r = results['loop']['speedup']
        t['device_loop_over_host_loop_small'] = dict(goal='>= 2.0', value=r, met=r >= 2.0)
    if results['seeds']:
        r = results['seeds']['vmapped_over_sequential']
        t['vmapped8_over_sequential8_small'] = dict(goal='>= 1.5 (--num_seeds=8 path: sharded when >1 device)',
                                                    value=r, met=r >= 1.5,
                                                    ceiling=results['seeds'].get('ratio_ceiling'))
    if results['evaluation']:
        r = results['evaluation']['speedup']
        t['eval_parallel_over_sequential'] = dict(goal='>= 2.0', value=r, met=r >= 2.0)
    if (results.get('end_to_end') or {}).get('ratio') is not None:
        r = results['end_to_end']['ratio']
        t['end_to_end_published_over_floq_jax'] = dict(goal='>= 1.5 (whole run, same protocol)', value=r, met=r >= 1.5)
    return t


def table(results) -> str:
    rate = results['matmul']['flops_per_s']
    lines = [f"Device: {results['device']['device_kind']} ({results['device']['platform']}, "
             f"{results['device']['num_devices']} device(s)); note: {results['device_note'] or '-'}; "
             f"jax {results['device']['jax_version']}; mode: {results['mode']}",
             f"Reference: {results['matmul']['n']}x{results['matmul']['n']} float32 matmul "
             f"{rate / 1e9:.1f} GFLOP/s (median; start {results['matmul_start']['flops_per_s'] / 1e9:.1f}, "
             f"end {results['matmul_end']['flops_per_s'] / 1e9:.1f})", '',
             '| case | compile (s) | updates/s | ms/update | analytic GFLOP/update | XLA GFLOP (scan body once) '
             '| achieved GFLOP/s | fraction of run matmul | fraction of adjacent matmul (paired median) '
             '| XLA temp memory | peak memory |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for u in results['updates']:
        temp = (u['compiled_memory'] or {}).get('temp_size_in_bytes')
        lines.append(f"| {u['name']} | {u['compile_total_s']:.1f} | {u['updates_per_s']:.3f} | {u['ms_per_update']:.1f} "
                     f"| {u['analytic_flops'] / 1e9:.2f} | {(u['xla_flops'] or 0) / 1e9:.2f} "
                     f"| {u['achieved_flops_per_s'] / 1e9:.1f} | {u['achieved_flops_per_s'] / rate:.2f} "
                     f"| {u.get('fraction_of_adjacent_matmul', float('nan')):.2f} "
                     f"| {bm.fmt_bytes(temp)} | {bm.fmt_bytes(u['peak_memory_bytes'])} |")
    lines.append('')
    s = results['seeds']
    if s:
        lines += [f"| seeds ({s.get('config', 'small')} config, floq) | seed-updates/s |", '|---|---|',
                  f"| 1 seed | {s['one_seed']['seed_updates_per_s']:.2f} |",
                  f"| {s['num_seeds']} seeds vmapped (one device) | {s['vmapped']['seed_updates_per_s']:.2f} |",
                  *([f"| {s['num_seeds']} seeds lax.map (one device) | {s['mapped']['seed_updates_per_s']:.2f} |"]
                    if 'mapped' in s else []),
                  *([f"| {s['num_seeds']} seeds sharded over {s['sharded']['devices']} devices "
                     f"(mesh {s['sharded']['mesh']}), seed loop {k['seed_loop']}"
                     f"{' (auto)' if k is s['sharded'] else ''} | {k['seed_updates_per_s']:.2f} |"
                     for k in (s['sharded'], s['sharded_other_loop'])] if 'sharded' in s else []),
                  f"| {s['num_seeds']} sequential runs | {s['sequential']['seed_updates_per_s']:.2f} |", '']
        if 'ratio_ceiling' in s:
            lines += [f"Compute ceiling: the sequential runs reach {s['sequential']['achieved_flops_per_s'] / 1e9:.1f} "
                      f"GFLOP/s ({s['analytic_flops_per_seed_update'] / 1e9:.2f} GFLOP per seed-update); a matmul timed "
                      f"right after them reached {s['adjacent_matmul_flops_per_s'] / 1e9:.1f} GFLOP/s, so no way of "
                      f"running the {s['num_seeds']} seeds together can beat x{s['ratio_ceiling']:.2f} of sequential here.",
                      '']
    lp = results['loop']
    if lp:
        lines += ['| loop (small config, floq, 1 seed) | updates/s |', '|---|---|',
                  f"| device-resident make_train_chunk, {lp['steps_per_call']} steps/call "
                  f"| {lp['device_resident']['updates_per_s']:.2f} |",
                  f"| one update per host call, host numpy sampling (sample "
                  f"{lp['host_per_step']['host_sample_ms']:.2f} ms + device_put {lp['host_per_step']['device_put_ms']:.2f} ms) "
                  f"| {lp['host_per_step']['updates_per_s']:.2f} |", '']
        if 'host_overhead_fraction' in lp:
            lines += [f"The host loop's numpy sampling + device_put take {100 * lp['host_overhead_fraction']:.1f}% of its "
                      f"time per update.", '']
    ev = results['evaluation']
    if ev:
        lines += [f"| evaluation ({ev['num_episodes']} episodes, {ev['vector_mode']}, {ev['num_envs']} envs) | seconds |",
                  '|---|---|', f"| parallel | {ev['parallel_s']:.1f} |", f"| one at a time | {ev['sequential_s']:.1f} |", '']
    es = results.get('eval_seeds')
    if es:
        lines += [f"| evaluation of S seeds together ({es['num_episodes']} episodes per seed, {es['vector_mode']}) "
                  "| live envs | per seed | waves | build envs (s) | evaluate all seeds (s) | episodes/s "
                  "| peak RSS, process + workers | peak - before, per env |", '|---|---|---|---|---|---|---|---|---|']
        for r in es['rows']:
            lines.append(f"| S = {r['num_seeds']}, pool {r['pool']} | {r['live_envs']} | {r['slots_per_seed']} "
                         f"| {r['waves']} | {r['create_s']:.1f} | {r['eval_s']:.1f} | {r['episodes_per_s']:.2f} "
                         f"| {bm.fmt_bytes(r['peak_rss_bytes'])} | {bm.fmt_bytes(r['peak_over_base_per_env_bytes'])} |")
        lines.append('')
    vm = results.get('vector_modes')
    if vm:
        lines += [f"| evaluation pool of n envs ({vm['env_name']}, build + {vm['evaluations']} evaluations of n "
                  "episodes, zero policy) | mode | build envs (s) | evaluations (s) | total (s) | 'auto' picks |",
                  '|---|---|---|---|---|---|']
        for r in vm['rows']:
            lines.append(f"| n = {r['n']} | {r['mode']} | {r['build_s']:.1f} | {r['eval_s']:.1f} | {r['total_s']:.1f} "
                         f"| {r['auto']} |")
        lines.append('')
    pr = results['profile']
    if pr:
        lines += ['| profile (floq default pieces) | ms | GFLOP/s |', '|---|---|---|']
        for k, v in pr.items():
            if isinstance(v, dict):
                rate_s = '' if v['flops_per_s'] is None else f"{v['flops_per_s'] / 1e9:.1f}"
                lines.append(f"| {k} | {v['ms']:.1f} | {rate_s} |")
        lines.append('')
    if results.get('end_to_end'):
        lines += [end_to_end.table(results['end_to_end'])]
    lines += ['| target | goal | measured | met | ceiling on this device (same run) |', '|---|---|---|---|---|']
    for k, v in results['targets'].items():
        ceiling = '-' if v.get('ceiling') is None else f"{v['ceiling']:.2f}"
        lines.append(f"| {k} | {v['goal']} | {v['value']:.2f} | {'yes' if v['met'] else 'NO'} | {ceiling} |")
    return '\n'.join(lines)


def _bad_flag(flag: str, accepted: str) -> None:
    sys.stderr.write(f'error: --{flag}: {accepted}\n')
    sys.exit(2)


def positive_ints(flag: str, values) -> list:
    """``values`` (strings or ints) as positive ints; otherwise one line on stderr naming the flag, exit 2."""
    try:
        out = [int(v) for v in values]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        _bad_flag(flag, f'a comma-separated list of positive integers, got {",".join(map(str, values))!r}')
    return out


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
    if FLAGS.cpu_devices > 1 and not parallel.set_cpu_devices(FLAGS.cpu_devices):
        raise SystemExit('error: --cpu_devices: JAX was already initialised (or XLA_FLAGS sets a device count)')
    skip = skipped_sections(FLAGS.sections, FLAGS.skip)
    for flag in ('eval_num_seeds', 'eval_pools', 'vector_mode_pools'):
        if FLAGS[flag].value is not None:
            positive_ints(flag, FLAGS[flag].value)
    b = Bench()
    results = b.results
    results['command'] = 'PYTHONPATH=. python -m experiments.benchmark ' + ' '.join(sys.argv[1:])
    results['mode'] = 'tiny' if FLAGS.tiny else 'quick' if FLAGS.quick else 'full'
    results['device'] = bm.device_description()
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
