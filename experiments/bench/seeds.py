"""The seeds and loop sections: S seeds vmapped / mapped / sharded, and the device loop (lax.scan chunks)
against the published host loop."""

from __future__ import annotations

import time

from absl import flags

import jax
import numpy as np

from floq_jax.training import benchmarking as bm
from floq_jax.core import flops as flops_lib
from floq_jax.training import parallel
from floq_jax.data import sampling

from agents import floq as floq_lib
from experiments.bench.base import make_config

FLAGS = flags.FLAGS


class SeedSections:
    """seeds / loop."""

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
