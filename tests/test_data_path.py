"""The data path against the published main loop's semantics (CMU-AIRe/floq 2e46108, main.py and
utils/datasets.py, read there; the rules below are restated, none of its code is used):

* offline batches: ``Dataset.sample`` draws ``np.random.randint(size)``: uniform with replacement over every
  transition of the dataset, episode ends included;
* the dataset is OGBench's ``make_env_and_datasets(env_name)`` output, actions clipped to +-(1 - 1e-5)
  (``envs/env_utils.py``, ``action_clip_eps``): ``terminals`` 1 on the last
  transition of each episode, ``masks`` 0 where the task is solved (the reward's success), ``next_observations``;
* offline-to-online (``balanced_sampling`` 0, its default): the replay buffer is the dataset in its first rows of a
  buffer of ``max(buffer_size, dataset size + 1)`` rows (``create_from_initial_dataset``), so the dataset is kept
  until the writes wrap around; each env step first adds its transition (``masks = 1 - terminated``) and then makes
  ONE update on a batch sampled from the whole buffer (there is no update-to-data flag: floq-jax's ``utd_ratio`` 1
  is the published loop).
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from floq_jax.core import replay
from floq_jax.data import sampling

ENV = 'cube-single-play-singletask-task2-v0'


class PublishedBuffer:
    """The published ReplayBuffer's bookkeeping, restated: rows, ``size`` and ``pointer`` after each add."""

    def __init__(self, dataset, buffer_size):
        n = len(dataset)
        self.max_size = max(buffer_size, n + 1)
        self.rows = np.zeros(self.max_size)
        self.rows[:n] = dataset
        self.size = self.pointer = n

    def add(self, value):
        self.rows[self.pointer] = value
        self.pointer = (self.pointer + 1) % self.max_size
        self.size = max(self.pointer, self.size)


def test_replay_buffer_keeps_the_dataset_and_writes_as_published():
    dataset = np.arange(1.0, 6.0)  # 5 rows
    ours = replay.from_dataset({'rewards': dataset}, replay.capacity_for(5, 3))  # buffer_size below the data
    ref = PublishedBuffer(dataset, 3)
    assert ours.capacity == ref.max_size == 6  # max(buffer_size, dataset + 1)
    add = jax.jit(replay.add)
    for t in range(9):  # wraps around once: overwrites the dataset's first rows, oldest first
        np.testing.assert_array_equal(np.asarray(ours.data['rewards']), ref.rows)
        assert int(ours.pointer) == ref.pointer
        if t < 1:
            assert int(ours.size) == ref.size  # before the wrap: the same filled rows
        ours = add(ours, {'rewards': jnp.float32(100 + t)})
        ref.add(100 + t)
    np.testing.assert_array_equal(np.asarray(ours.data['rewards']), ref.rows)
    # Once full, the published size stays max_size - 1 (``max(pointer, size)`` at the wrap), so its last row is
    # never sampled again; floq-jax samples all max_size rows (a one-row difference, 1 in 2M at the published size).
    assert ref.size == ref.max_size - 1 and int(ours.size) == ours.capacity


def test_sampling_is_uniform_over_every_transition():
    n = 50
    data = {'rewards': jnp.arange(n, dtype=jnp.float32)}
    draws = np.concatenate([np.asarray(sampling.sample_batch(data, jax.random.PRNGKey(k), 1000)['rewards'])
                            for k in range(20)]).astype(int)
    counts = np.bincount(draws, minlength=n)
    assert counts.min() > 0  # the first and the last transition (an episode end) are drawn too
    chi2 = float(np.sum((counts - len(draws) / n) ** 2 / (len(draws) / n)))
    assert chi2 < 100.0, chi2  # 49 degrees of freedom: p < 1e-4 above ~95
    # The host sampler (datasets larger than the device) and the replay buffer draw the same way.
    host = sampling.host_chunk({'rewards': np.arange(n, dtype=np.float32)}, [0], 0, 20, 1000)['rewards'].astype(int)
    assert np.bincount(host.ravel(), minlength=n).min() > 0
    buf = replay.from_dataset({'rewards': np.arange(n, dtype=np.float32)}, n + 10)
    from_buf = np.asarray(replay.sample(buf, jax.random.PRNGKey(0), 20000)['rewards']).astype(int)
    assert from_buf.max() == n - 1 and np.bincount(from_buf, minlength=n).min() > 0  # never the empty rows


class RecordingAgent(flax.struct.PyTreeNode):
    """A stand-in agent: counts its updates and remembers the largest reward it was trained on."""

    updates: jax.Array
    largest_reward: jax.Array

    def update(self, batch):
        return (self.replace(updates=self.updates + 1,
                             largest_reward=jnp.maximum(self.largest_reward, batch['rewards'].max())),
                {'loss': jnp.float32(0.0)})


@pytest.mark.parametrize('utd', [1, 3])
def test_online_step_adds_then_updates_utd_times(utd):
    from floq_jax.training import parallel

    # Seed axis of 1; the dataset holds one transition (reward -1), the env step brings reward 7.
    buffers = jax.tree_util.tree_map(lambda x: x[None], replay.from_dataset(
        {k: np.zeros((1, 2), np.float32) if k != 'rewards' else -np.ones(1, np.float32)
         for k in ('observations', 'rewards')}, 3))
    agents = RecordingAgent(updates=jnp.zeros(1, jnp.int32), largest_reward=jnp.full(1, -10.0))
    transition = {'observations': jnp.ones((1, 2)), 'rewards': jnp.full(1, 7.0)}
    update = parallel.make_online_update(256, utd)
    agents, buffers, _, _ = update(agents, buffers, transition, jax.random.PRNGKey(0)[None], None)
    assert int(agents.updates[0]) == utd
    # The very first update already trains on the new transition: it was added before the update.
    assert float(agents.largest_reward[0]) == 7.0
    assert int(buffers.size[0]) == 2 and float(buffers.data['rewards'][0, 0]) == -1.0  # the dataset row kept


def test_online_transitions_mask_only_termination(monkeypatch):
    """masks = 1 - terminated (a time-out keeps bootstrapping), as the published loop adds them."""
    import types

    from floq_jax.training import online

    class Env:
        """Episode 1 ends by termination at its 2nd step, episode 2 by a time-out at its 2nd step."""

        def __init__(self):
            self.t, self.episode = 0, 0

        def reset(self, seed=None):
            self.t, self.episode = 0, self.episode + 1
            return np.zeros(3, np.float32), {}

        def step(self, action):
            self.t += 1
            end = self.t == 2
            return (np.full(3, self.t, np.float32), -1.0, end and self.episode == 1, end and self.episode == 2,
                    {'success': end and self.episode == 1})

        def close(self):
            pass

    phase = online.OnlinePhase(types.SimpleNamespace(offline_steps=0, online_steps=4, env_name=ENV, utd_ratio=1,
                                                     success_timing='post'), 8)
    seen = []
    env = Env()
    env.reset()
    phase.envs = [env]
    phase.obs = np.zeros((1, 3), np.float32)
    phase.act = lambda agents, obs, keys: jnp.zeros((1, 2))
    phase.action_keys = jax.random.PRNGKey(0)[None]
    phase.returns = np.zeros(1)
    phase.finished = [[]]
    phase.episode = 0
    phase.update = lambda agents, extra, transitions, rngs, data: (seen.append(transitions) or (agents, extra, rngs, {}))
    state = types.SimpleNamespace(agents=None, extra=None, rngs=None, mesh=None, seeds=[0], metadata={})
    for step in range(4):
        phase.step(state, step, step, 1)
    masks = [float(t['masks'][0]) for t in seen]
    assert masks == [1.0, 0.0, 1.0, 1.0]
    assert [r for r, _ in phase.finished[0]] == [-2.0, -2.0] and [x for _, x in phase.finished[0]] == [1.0, 0.0]


@pytest.fixture(scope='module')
def tiny_dataset(tmp_path_factory):
    from floq_jax.data import ensure_generated_dataset

    return ensure_generated_dataset('cube-single-play-v0', num_episodes=3, seed=0, max_episode_steps=100,
                                    cache_dir=str(tmp_path_factory.mktemp('data_cache')), num_workers=1)


def test_dataset_is_ogbench_output_with_episode_ends_and_success_masks(tiny_dataset):
    import ogbench

    from floq_jax.data import load_offline_data

    ours = load_offline_data(ENV, dataset_path=tiny_dataset).train
    # What the published main.py gets from ogbench.make_env_and_datasets(env_name) for the same file.
    _, theirs, _ = ogbench.make_env_and_datasets(ENV, dataset_path=tiny_dataset)
    theirs = dict(theirs, actions=np.clip(theirs['actions'], -1 + 1e-5, 1 - 1e-5))  # its action_clip_eps=1e-5
    for key in ('observations', 'actions', 'rewards', 'masks', 'terminals', 'next_observations'):
        np.testing.assert_array_equal(np.asarray(ours[key]), np.asarray(theirs[key]), err_msg=key)
    ends = np.flatnonzero(ours['terminals'] > 0)
    assert len(ends) == 3 and ends[-1] == len(ours['terminals']) - 1  # the last transition of each episode
    starts = np.concatenate([[0], ends[:-1] + 1])
    inner = np.setdiff1d(np.arange(len(ours['terminals']) - 1), ends)
    np.testing.assert_array_equal(ours['next_observations'][inner], ours['observations'][inner + 1])
    assert not np.array_equal(ours['next_observations'][ends[0]], ours['observations'][starts[1]])
    np.testing.assert_array_equal(ours['masks'] == 0, ours['rewards'] == 0)  # masked exactly where solved
