"""Flow integration and flow-matching pieces shared by the critic and the actor.

One Euler integrator serves every use (TD targets, current estimates, evaluation, the BC flow policy):
``z_{k+1} = z_k + v(k / K, z_k) / K`` for k in [first_step, last_step) of a K-step grid, written as a
``lax.scan`` so compile time does not grow with K.
"""

from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]


def euler_integrate(velocity_fn: VelocityFn, z0: jax.Array, num_steps: int, first_step: int = 0,
                    last_step: Optional[int] = None, return_path: bool = False):
    """Integrate dz/dt = velocity_fn(t, z) with Euler steps on the grid t_k = k / num_steps.

    Args:
      velocity_fn: (t: scalar float32 array, z: array shaped like z0) -> velocity shaped like z0.
      z0: the state at t = first_step / num_steps (any shape, any pytree-free array).
      num_steps: K, the number of steps of the full grid on [0, 1] (static).
      first_step, last_step: integrate steps k = first_step .. last_step - 1 (default: all K), so a
        trajectory can be split between two velocity fields (e.g. a stale network for the first m).
      return_path: also return the states after every step, shape (last_step - first_step, *z0.shape).

    Returns:
      z at t = last_step / num_steps, and the path if asked for.
    """
    if num_steps < 1:
        raise ValueError(f'num_steps must be >= 1, got {num_steps}')
    last_step = num_steps if last_step is None else last_step
    if not 0 <= first_step <= last_step <= num_steps:
        raise ValueError(f'need 0 <= first_step <= last_step <= num_steps, got {first_step}, {last_step}, {num_steps}')

    def step(z, k):
        t = k.astype(jnp.float32) / num_steps
        z_next = z + velocity_fn(t, z) / num_steps
        return z_next, (z_next if return_path else None)

    z_final, path = jax.lax.scan(step, z0, jnp.arange(first_step, last_step))
    return (z_final, path) if return_path else z_final


def q_value_bounds(r_min: float, r_max: float, discount: float, offset: float = 0.01) -> Tuple[float, float]:
    """Support of the HL-Gauss z-embedding: [(r_min - offset) / (1 - gamma), (r_max + offset) / (1 - gamma)]."""
    return (r_min - offset) / (1.0 - discount), (r_max + offset) / (1.0 - discount)


def noise_interval(r_min: float, r_max: float, discount: float, coverage: float) -> Tuple[float, float]:
    """Initial-noise interval [l, u] = coverage * [r_min, r_max] / (1 - gamma); coverage 0 is a point."""
    return coverage * r_min / (1.0 - discount), coverage * r_max / (1.0 - discount)


def sample_noise(rng: jax.Array, shape, low: float, high: float) -> jax.Array:
    """z0 ~ Unif[low, high] of the given shape (written as low + u (high - low), exact when low == high)."""
    u = jax.random.uniform(rng, shape)
    return (1.0 - u) * low + u * high


def interpolate(x0: jax.Array, x1: jax.Array, t: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """Straight-line conditional flow: returns (x_t = (1 - t) x0 + t x1, target velocity x1 - x0)."""
    return (1.0 - t) * x0 + t * x1, x1 - x0
