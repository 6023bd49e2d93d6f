"""Pixel observations end to end at toy scale: uint8 frames kept uint8, frame stacking and random-crop augmentation
as published (on the device and on the host), the evaluation env's frame stack, flags.json and resume, and a tiny
synthetic pixel dataset training floq and FQL with an encoder through compose.train.

Oracles: the random crop and the episode starts are the published code's own outputs (tests/data/parity_pixels.npz,
``sampling/*``, made by experiments/parity_pixels.py); the stacking rule is restated below from the published FQL
``Dataset.sample`` (the published floq's ``Dataset.sample`` ignores ``frame_stack``): for row t of an episode that
starts at row s, the observation is [ob[max(t - F + 1, s)], ..., ob[max(t - 1, s)], ob[t]] and the next observation
[ob[max(t - F + 2, s)], ..., ob[t], next_ob[t]], concatenated on the channel axis.
"""

import json
import os

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from floq_jax.data import sampling
from floq_jax.envs import envs as envs_lib
from tests import parity_convert

GOLDEN = os.path.join(os.path.dirname(__file__), 'data', 'parity_pixels.npz')
FRAME = (16, 16, 3)
EPISODES = (5, 3, 4)  # lengths of the toy dataset's episodes


def toy_dataset(frame=FRAME, episodes=EPISODES, seed=0):
    """Episodes of uint8 frames; row t's frame is filled with t (and its next frame with 100 + t) plus noise, so a
    stacked window tells which rows it came from."""
    rng = np.random.default_rng(seed)
    n = sum(episodes)
    rows = np.arange(n)
    noise = rng.integers(0, 3, size=(n, *frame))
    obs = (rows[:, None, None, None] * 2 + noise).astype(np.uint8)
    next_obs = (100 + rows[:, None, None, None] * 2 + noise).astype(np.uint8)
    terminals = np.zeros(n, np.float32)
    terminals[np.cumsum(episodes) - 1] = 1.0
    return dict(observations=obs, next_observations=next_obs, terminals=terminals,
                actions=rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
                rewards=-rng.uniform(0, 1, size=n).astype(np.float32), masks=1.0 - terminals)


def stacked_oracle(data, idx, frame_stack):
    """The published FQL rule, row by row."""
    starts = {}
    s = 0
    for t in range(len(data['terminals'])):
        starts[t] = s
        if data['terminals'][t] > 0:
            s = t + 1
    obs, next_obs = [], []
    for t in np.asarray(idx).reshape(-1):
        window = [data['observations'][max(t - i, starts[t])] for i in reversed(range(frame_stack))]
        obs.append(np.concatenate(window, axis=-1))
        next_obs.append(np.concatenate(window[1:] + [data['next_observations'][t]], axis=-1))
    shape = np.shape(idx)
    return (np.stack(obs).reshape(*shape, *obs[0].shape), np.stack(next_obs).reshape(*shape, *next_obs[0].shape))


@pytest.fixture(scope='module')
def golden():
    return parity_convert.Golden(GOLDEN)


def test_episode_starts_are_the_published_initial_locs(golden):
    terminals = golden.arrays['sampling/terminals']
    firsts = golden.arrays['sampling/initial_locs']
    rows = np.arange(len(terminals))
    expected = firsts[np.searchsorted(firsts, rows, side='right') - 1]  # the published lookup of a row's start
    np.testing.assert_array_equal(sampling.episode_starts(terminals), expected)


def test_random_crop_is_the_published_crop(golden):
    images, offsets = golden.arrays['sampling/images'], golden.arrays['sampling/offsets']
    expected = golden.arrays['sampling/cropped']
    assert sampling.CROP_PADDING == 3 and offsets.max() == 2 * sampling.CROP_PADDING
    np.testing.assert_array_equal(np.asarray(sampling.random_crop(jnp.asarray(images), jnp.asarray(offsets))),
                                  expected)
    np.testing.assert_array_equal(sampling.random_crop_host(images, offsets), expected)
    # Any leading axes on the host (seeds, steps, batch).
    np.testing.assert_array_equal(sampling.random_crop_host(images.reshape(7, 7, *images.shape[1:]),
                                                            offsets.reshape(7, 7, 2)),
                                  expected.reshape(7, 7, *expected.shape[1:]))


def test_uint8_frames_stay_uint8_and_count_as_bytes():
    data = toy_dataset()
    arrays = sampling.batch_arrays(data, frame_stack=3)
    assert arrays['observations'].dtype == np.uint8 and arrays['next_observations'].dtype == np.uint8
    assert arrays['actions'].dtype == np.float32
    n = sum(EPISODES)
    assert sampling.nbytes({k: arrays[k] for k in ('observations', 'next_observations')}) == 2 * n * np.prod(FRAME)
    batch = sampling.sample_batch(sampling.put_replicated(arrays), jax.random.PRNGKey(0), 8, sampling.Pixels(3, 1.0))
    assert batch['observations'].dtype == jnp.uint8 and batch['observations'].shape == (8, 16, 16, 9)
    assert sampling.EPISODE_STARTS not in batch
    # State observations stay float32 as before.
    assert sampling.batch_arrays(dict(data, observations=data['actions'], next_observations=data['actions'])
                                 )['observations'].dtype == np.float32


@pytest.mark.parametrize('frame_stack', [1, 3, 4])
def test_device_frame_stack_follows_the_published_rule(frame_stack):
    data = toy_dataset()
    arrays = sampling.batch_arrays(data, frame_stack=frame_stack)
    key, n = jax.random.PRNGKey(3), sum(EPISODES)
    batch = jax.jit(lambda d, k: sampling.sample_batch(d, k, 64, sampling.Pixels(frame_stack)))(
        sampling.put_replicated(arrays), key)
    idx = np.asarray(jax.random.randint(key, (64,), 0, n))  # the rows sample_batch draws
    obs, next_obs = stacked_oracle(data, idx, frame_stack)
    np.testing.assert_array_equal(np.asarray(batch['observations']), obs)
    np.testing.assert_array_equal(np.asarray(batch['next_observations']), next_obs)
    np.testing.assert_array_equal(np.asarray(batch['actions']), data['actions'][idx])
    # The same rows as without pixels (the crop has its own stream; stacking draws nothing).
    plain = sampling.sample_batch(sampling.put_replicated(sampling.batch_arrays(data)), key, 64)
    np.testing.assert_array_equal(np.asarray(plain['actions']), np.asarray(batch['actions']))


def test_host_chunk_stacks_and_crops_on_the_host():
    data = toy_dataset()
    arrays = sampling.batch_arrays(data, frame_stack=3)
    seeds, start, steps, b = [0, 5], 40, 3, 6
    chunk = sampling.host_chunk(arrays, seeds, start, steps, b, sampling.Pixels(3))
    idx = np.stack([np.random.default_rng([s, start]).integers(0, sum(EPISODES), size=(steps, b)) for s in seeds])
    obs, next_obs = stacked_oracle(data, idx, 3)
    assert chunk['observations'].dtype == np.uint8 and chunk['observations'].shape == (2, steps, b, 16, 16, 9)
    np.testing.assert_array_equal(chunk['observations'], obs)
    np.testing.assert_array_equal(chunk['next_observations'], next_obs)
    cropped = sampling.host_chunk(arrays, seeds, start, steps, b, sampling.Pixels(3, 1.0))
    assert_cropped_pairs(obs, next_obs, cropped['observations'], cropped['next_observations'])
    same = sampling.host_chunk(arrays, seeds, start, steps, b, sampling.Pixels(3, 0.0))
    np.testing.assert_array_equal(same['observations'], obs)


def assert_cropped_pairs(obs, next_obs, got_obs, got_next):
    """Each row is a crop (padding 3, edge) of its uncropped row at one offset, the same for obs and next obs, and
    not every row at the centre offset (3, 3)."""
    flat = lambda x: x.reshape(-1, *x.shape[-3:])
    offsets = []
    for o, n, go, gn in zip(flat(obs), flat(next_obs), flat(got_obs), flat(got_next)):
        found = [(i, j) for i in range(7) for j in range(7)
                 if np.array_equal(sampling.random_crop_host(o[None], np.array([[i, j]]))[0], go)
                 and np.array_equal(sampling.random_crop_host(n[None], np.array([[i, j]]))[0], gn)]
        assert found, 'a row is not a crop of its frames at a shared offset'
        offsets.append(found[0])
    assert len(set(offsets)) > 1


def test_device_crop_probability_one_and_zero():
    data = toy_dataset()
    arrays = sampling.put_replicated(sampling.batch_arrays(data, frame_stack=2))
    key = jax.random.PRNGKey(11)
    plain = sampling.sample_batch(arrays, key, 32, sampling.Pixels(2))
    always = sampling.sample_batch(arrays, key, 32, sampling.Pixels(2, 1.0))
    never = sampling.sample_batch(arrays, key, 32, sampling.Pixels(2, 0.0))
    np.testing.assert_array_equal(np.asarray(never['observations']), np.asarray(plain['observations']))
    assert_cropped_pairs(np.asarray(plain['observations']), np.asarray(plain['next_observations']),
                         np.asarray(always['observations']), np.asarray(always['next_observations']))
    # One draw per batch: over many batches at p = 0.5 some are cropped and some are not.
    flips = [bool(np.any(np.asarray(sampling.sample_batch(arrays, jax.random.PRNGKey(k), 32,
                                                          sampling.Pixels(2, 0.5))['observations'])
                         != np.asarray(sampling.sample_batch(arrays, jax.random.PRNGKey(k), 32,
                                                             sampling.Pixels(2))['observations'])))
             for k in range(24)]
    assert 3 < sum(flips) < 21


class CountingPixelEnv(gymnasium.Env):
    """A pixel env whose frame at step t of an episode is filled with 10 * reset-seed-digit + t."""

    observation_space = gymnasium.spaces.Box(0, 255, FRAME, np.uint8)
    action_space = gymnasium.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        self.t, self.base = 0, (int(seed or 0) % 10) * 10
        return self._frame(), {'goal': self._frame()}

    def _frame(self):
        return np.full(FRAME, self.base + self.t, np.uint8)

    def step(self, action):
        self.t += 1
        return self._frame(), 0.0, False, self.t >= 6, {'success': 0.0}


def test_env_frame_stack_matches_the_dataset_rule():
    """An episode seen through FrameStack gives, at every step, the stacked observation the dataset rule gives for
    the same episode stored as rows."""
    env = envs_lib.FrameStack(CountingPixelEnv(), 3)
    assert env.observation_space.shape == (16, 16, 9)
    seen, (ob, info) = [], env.reset(seed=4)
    assert info['goal'].shape == (16, 16, 9)
    frames = [np.full(FRAME, 40, np.uint8)]
    seen.append(ob)
    for _ in range(5):
        ob, *_ = env.step(np.zeros(2))
        seen.append(ob)
        frames.append(ob[..., -3:])
    n = len(frames)
    data = dict(observations=np.stack(frames), next_observations=np.stack(frames[1:] + [frames[-1]]),
                terminals=np.eye(n, dtype=np.float32)[-1])
    expected, _ = stacked_oracle(data, np.arange(n), 3)
    np.testing.assert_array_equal(np.stack(seen), expected)


def test_flags_json_records_pixels_and_resume_checks_them(tmp_path):
    from floq_jax.training import rundirs
    from floq_jax.training.options import OptionError, RunDirConflict, RunOptions

    d = str(tmp_path / 'seed0')
    os.makedirs(d)
    old = dict(env_name='e', agent={'agent_name': 'fql'}, dataset_file='f')  # written before the pixel flags
    with open(os.path.join(d, 'flags.json'), 'w') as f:
        json.dump(old, f)
    base = dict(old, frame_stack=None, p_aug=None)
    assert rundirs.check_run_dir(d, base, resume=True)
    with pytest.raises(RunDirConflict, match='frame_stack=None'):
        rundirs.check_run_dir(d, dict(base, frame_stack=3), resume=True)
    with open(os.path.join(d, 'flags.json'), 'w') as f:
        json.dump(dict(base, frame_stack=3, p_aug=0.5), f)
    with pytest.raises(RunDirConflict, match='p_aug=0.5'):
        rundirs.check_run_dir(d, dict(base, frame_stack=3, p_aug=None), resume=True)
    assert rundirs.check_run_dir(d, dict(base, frame_stack=3, p_aug=0.5), resume=True)
    # An agent config written before config.encoder existed resumes (the key reads as None), not another value.
    with open(os.path.join(d, 'flags.json'), 'w') as f:
        json.dump(dict(base, agent={'agent_name': 'fql', 'lr': 3e-4}), f)
    assert rundirs.check_run_dir(d, dict(base, agent={'agent_name': 'fql', 'lr': 3e-4, 'encoder': None}), True)
    with pytest.raises(RunDirConflict, match='encoder'):
        rundirs.check_run_dir(d, dict(base, agent={'agent_name': 'fql', 'lr': 3e-4, 'encoder': 'impala'}), True)
    for bad in (dict(frame_stack=0), dict(p_aug=1.5), dict(frame_stack=3, online_steps=10)):
        with pytest.raises(OptionError):
            RunOptions(env_name='e', offline_steps=1, **bad).validate()
