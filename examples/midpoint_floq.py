"""floq with a midpoint (second-order Runge-Kutta) integrator: an agent written as one file outside the library, the
worked example of docs/extending.md.

floq integrates its velocity field with K Euler steps, z_{k+1} = z_k + h v(t_k, z_k), h = 1/K.  This agent takes K
midpoint steps instead: z_mid = z_k + (h/2) v(t_k, z_k), z_{k+1} = z_k + h v(t_k + h/2, z_mid) -- two velocity
evaluations per step, a second-order error.  Everything else (the flow-matching TD loss, the distilled critic, the
actor, the published per-environment values, the config ranges) is floq's, inherited.

    python -m experiments.train_offline --agent=examples/midpoint_floq.py --env_name=...   (any path works)

What the file declares for the library (floq_jax/agent_registry.py documents the contract): ``get_config()`` with
its own ``agent_name`` (names the run directories and table rows), ``AGENT`` (the class), ``CONFIG_RANGES``.  The
FLOP count: floq's analytic count assumes one evaluation per step, so this agent declares none and
``floq_jax.core.flops.update_flops`` falls back to XLA's cost analysis.
"""

import jax
import jax.numpy as jnp

from agents import floq


class MidpointFloqAgent(floq.FloqAgent):
    """floq with midpoint steps in every integration (TD targets, distillation targets, evaluation, diagnostics)."""

    @classmethod
    def analytic_update_flops(cls, config):
        return None  # two velocity evaluations per step: use XLA's count

    def integrate(self, critic_params, observations, actions, z0, num_steps, first_step=0, last_step=None,
                  return_path=False, anchor=None):
        """Midpoint steps over [first_step, last_step) of the K-step grid: (N,) or (E, N) -> z (E, N) [, path]."""
        if floq.Mechanisms.of(self.config).predict_final:
            raise ValueError('midpoint_floq integrates a velocity field: set predict_final=False')
        del anchor
        field = self.modules['critic_flow']
        if z0.ndim == 1:
            z0 = jnp.broadcast_to(z0, (self.config.flow_num_ensembles, *z0.shape))
        h = 1.0 / num_steps

        def velocity(t, z):
            return field.apply({'params': critic_params}, observations, actions, z, t)

        def step(z, k):
            t = k.astype(jnp.float32) * h
            z_mid = z + 0.5 * h * velocity(t, z)
            z_next = z + h * velocity(t + 0.5 * h, z_mid)
            return z_next, (z_next if return_path else None)

        last_step = num_steps if last_step is None else last_step
        z, path = jax.lax.scan(step, z0, jnp.arange(first_step, last_step))
        return (z, path) if return_path else z


AGENT = MidpointFloqAgent
CONFIG_RANGES = floq.CONFIG_RANGES


def get_config():
    """floq's published defaults under the agent name 'midpoint_floq'."""
    config = floq.get_config()
    config.agent_name = 'midpoint_floq'
    return config
