"""Learning checks with known answers, shared by the tests and ``experiments/precision.py``.

(a) Terminal transitions (mask 0) with reward f(s, a): Q must equal f.
(b) Reward r everywhere with mask 1: Q must equal r / (1 - gamma).
"""

import jax
import jax.numpy as jnp
import numpy as np


def fit(agent, data, num_updates: int, batch_size: int, seed: int = 0, compiler_options=None):
    """``num_updates`` updates on an in-memory dataset {(N, ...)}, sampling inside one ``lax.scan``.

    ``compiler_options``: XLA options for that one program (``jax.jit``'s), e.g. an optimisation level other than the
    process's XLA_FLAGS: the checks run thousands of updates in it, so its run time, not its compile time, dominates.
    """
    size = data['observations'].shape[0]

    def step(agent, rng):
        idx = jax.random.randint(rng, (batch_size,), 0, size)
        return agent.update(jax.tree_util.tree_map(lambda x: x[idx], data))

    agent, _ = jax.jit(lambda a, r: jax.lax.scan(step, a, r), compiler_options=compiler_options)(
        agent, jax.random.split(jax.random.PRNGKey(seed), num_updates))
    return agent


def reward_fn(s: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The test reward f(s, a) for (N, >=2), (N, >=1) inputs; values in about [-1.2, 0.2]."""
    return np.sin(2 * s[:, 0]) * 0.4 + 0.3 * a[:, 0] * s[:, 1] - 0.5


def terminal_reward_data(n: int = 2048, ob_dim: int = 3, action_dim: int = 2, seed: int = 1):
    """Transitions with reward f(s, a) and mask 0 (numpy, float32)."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (n, ob_dim)).astype(np.float32)
    a = rng.uniform(-1, 1, (n, action_dim)).astype(np.float32)
    r = reward_fn(s, a).astype(np.float32)
    return dict(observations=s, actions=a, rewards=r, masks=np.zeros_like(r), next_observations=s)


def constant_reward_data(n: int = 1024, ob_dim: int = 3, action_dim: int = 2, reward: float = -1.0, seed: int = 2):
    """Transitions with a constant reward and mask 1 (numpy, float32)."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (n, ob_dim)).astype(np.float32)
    a = rng.uniform(-1, 1, (n, action_dim)).astype(np.float32)
    return dict(observations=s, actions=a, rewards=np.full(n, reward, np.float32), masks=np.ones(n, np.float32),
                next_observations=np.roll(s, 1, axis=0))


def terminal_reward_r2(make_agent, updates: int, batch_size: int = 128, num_test: int = 512,
                       compiler_options=None) -> float:
    """R^2 of ``agent.q_values`` against f on fresh (s, a) after training; make_agent(ex_obs, ex_act, r_min, r_max);
    ``compiler_options``: see :func:`fit`."""
    data = terminal_reward_data()
    agent = make_agent(data['observations'][:2], data['actions'][:2], float(data['rewards'].min()),
                       float(data['rewards'].max()))
    agent = fit(agent, {k: jnp.asarray(v) for k, v in data.items()}, updates, batch_size,
                compiler_options=compiler_options)
    test = terminal_reward_data(num_test, seed=3)
    q = np.asarray(agent.q_values(test['observations'], test['actions'], seed=jax.random.PRNGKey(0)))
    return float(1 - np.mean((q - test['rewards']) ** 2) / np.var(test['rewards']))


def constant_reward_q(make_agent, updates: int, batch_size: int = 128, reward: float = -1.0,
                      compiler_options=None) -> float:
    """Mean ``agent.q_values`` after training on constant-reward data (compare with reward / (1 - gamma));
    ``compiler_options``: see :func:`fit`."""
    data = constant_reward_data(reward=reward)
    agent = make_agent(data['observations'][:2], data['actions'][:2], reward, reward)
    agent = fit(agent, {k: jnp.asarray(v) for k, v in data.items()}, updates, batch_size,
                compiler_options=compiler_options)
    return float(np.asarray(agent.q_values(data['observations'][:256], data['actions'][:256],
                                           seed=jax.random.PRNGKey(0))).mean())
