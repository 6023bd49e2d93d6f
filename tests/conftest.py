"""Shared fixtures: small agent configs so every test runs in seconds on a 2-core CPU."""

import csv
import json
import os

# Tests use the CPU; 8 virtual devices let the sharding tests build real meshes.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from agents import floq, fql  # noqa: E402


def small_floq_config(**overrides):
    c = floq.get_config()
    c.update(dict(actor_hidden_dims=(64, 64), value_hidden_dims=(64, 64), block_width=64, block_depth=2,
                  batch_size=64, noise_samples=4, critic_flow_steps=4, r_min=-1.0, r_max=0.0))
    c.update(overrides)
    return c


def small_fql_config(**overrides):
    c = fql.get_config()
    c.update(dict(actor_hidden_dims=(64, 64), value_hidden_dims=(64, 64), batch_size=64, r_min=-1.0, r_max=0.0))
    c.update(overrides)
    return c


def random_batch(rng: np.random.Generator, batch_size=64, ob_dim=6, action_dim=2):
    """A batch of random transitions (float32) with rewards in [-1, 0] and masks of 1."""
    obs = rng.normal(size=(batch_size, ob_dim)).astype(np.float32)
    return dict(
        observations=jnp.asarray(obs),
        actions=jnp.asarray(rng.uniform(-1, 1, size=(batch_size, action_dim)).astype(np.float32)),
        rewards=jnp.asarray(-rng.uniform(0, 1, size=(batch_size,)).astype(np.float32)),
        masks=jnp.ones((batch_size,), jnp.float32),
        next_observations=jnp.asarray(rng.normal(size=(batch_size, ob_dim)).astype(np.float32)),
    )


@pytest.fixture
def np_rng():
    return np.random.default_rng(0)


def read_csv(path):
    """A run's train.csv / eval.csv as a list of row dicts (strings, as written)."""
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def digest(run, step):
    """The state digest recorded in seed run dir ``run``'s checkpoint at ``step`` (its orbax metadata)."""
    with open(os.path.join(run, 'checkpoints', str(step), 'metadata', 'metadata')) as f:
        return json.load(f)['__floq_checkpoint_digest__']
