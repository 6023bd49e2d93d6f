"""The update sections: one jitted update per case (floq at each K, FQL, the small configs) with its FLOPs,
the per-op profile of the update, and the compile check."""

from __future__ import annotations

import time

from absl import flags

import jax
import jax.numpy as jnp
import numpy as np

from floq_jax.training import benchmarking as bm
from floq_jax.core import flops as flops_lib

from agents import floq as floq_lib
from experiments.bench.base import agent_cls, make_config

FLAGS = flags.FLAGS


class UpdateSections:
    """updates / small / profile / compile_repeats."""

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
