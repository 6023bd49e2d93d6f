"""Tests for floq_jax.training.checkpoints: exact round-trip, retention, corruption fallback."""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from floq_jax.training.checkpoints import Checkpointer, CorruptCheckpointError


def _state(seed=0):
    k = jax.random.PRNGKey(seed)
    params = {'dense': {'kernel': jax.random.normal(k, (5, 4), jnp.float32),
                        'bias': jnp.arange(4, dtype=jnp.float32) + seed}}
    opt = optax.adam(1e-3)
    opt_state = opt.init(params)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5 + seed), params)
    _, opt_state = opt.update(grads, opt_state, params)
    return {
        'params': params,
        'opt_state': opt_state,
        'step': 100 + seed,
        'rng': jax.random.PRNGKey(seed + 11),        # raw uint32 key
        'typed_key': jax.random.key(seed + 22),      # typed key array
        'buffer': {'obs': np.random.default_rng(seed).normal(size=(16, 3)).astype(np.float32),
                   'idx': np.arange(16, dtype=np.int64) * (seed + 1)},
    }


def _assert_identical(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        if isinstance(x, int):
            assert int(y) == x
            continue
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.dtypes.issubdtype(y.dtype, jax.dtypes.prng_key)
            assert jax.random.key_impl(x) == jax.random.key_impl(y)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert np.asarray(y).dtype == np.asarray(x).dtype
        assert np.asarray(y).shape == np.asarray(x).shape
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def _zeros_like(tree):
    def z(x):
        if isinstance(x, int):
            return 0
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key(0)
        return np.zeros_like(x) if isinstance(x, np.ndarray) else jnp.zeros_like(x)
    return jax.tree.map(z, tree)


def test_round_trip_exact(tmp_path):
    state = _state(1)
    with Checkpointer(tmp_path / 'ckpt') as ck:
        ck.save(5, state, {'config': {'lr': 3e-4}, 'note': 'x'})
        ck.wait_until_finished()
        restored, meta, step = ck.restore(_zeros_like(state))
    assert step == 5
    assert meta == {'config': {'lr': 3e-4}, 'note': 'x'}
    _assert_identical(state, restored)
    # Random draws from the restored typed key and raw key match the originals.
    assert np.array_equal(jax.random.normal(restored['typed_key'], (3,)), jax.random.normal(state['typed_key'], (3,)))
    assert np.array_equal(jax.random.normal(restored['rng'], (3,)), jax.random.normal(state['rng'], (3,)))
    assert isinstance(restored['buffer']['obs'], np.ndarray)


def test_abstract_target(tmp_path):
    state = _state(2)
    with Checkpointer(tmp_path) as ck:
        ck.save(1, state, {})
        abstract = jax.tree.map(lambda x: x if isinstance(x, (int, np.ndarray)) else jax.ShapeDtypeStruct(x.shape, x.dtype),
                                state)
        restored, _, _ = ck.restore(abstract)
    _assert_identical(state, restored)


def test_retention_and_keep_steps(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=2, keep_steps=(2,)) as ck:
        for s in range(1, 7):
            ck.save(s, _state(s), {'s': s})
        ck.wait_until_finished()
        assert ck.all_steps() == [2, 5, 6]
        assert ck.latest_step() == 6
        restored, meta, step = ck.restore(_state(0), step=2)
        assert step == 2 and meta == {'s': 2}
        _assert_identical(_state(2), restored)


def _data_files(step_dir):
    out = []
    for root, _, files in os.walk(os.path.join(step_dir, 'state')):
        for f in files:
            path = os.path.join(root, f)
            if os.sep + 'd' + os.sep in path + os.sep and os.path.getsize(path) > 0:
                out.append(path)
    return out


@pytest.mark.parametrize('corruption', ['truncate', 'delete', 'flip'])
def test_corrupt_newest_falls_back(tmp_path, caplog, corruption):
    with Checkpointer(tmp_path, max_to_keep=3) as ck:
        ck.save(10, _state(10), {'s': 10})
        ck.save(20, _state(20), {'s': 20})
        ck.wait_until_finished()
    files = _data_files(tmp_path / '20')
    assert files, os.listdir(tmp_path / '20' / 'state')
    for path in files:
        if corruption == 'truncate':
            with open(path, 'r+b') as f:
                f.truncate(os.path.getsize(path) // 2)
        elif corruption == 'delete':
            os.remove(path)
        else:  # Flip bytes in the middle of every data file (same size).
            with open(path, 'r+b') as f:
                size = os.path.getsize(path)
                f.seek(size // 2)
                chunk = f.read(8)
                f.seek(size // 2)
                f.write(bytes(b ^ 0xFF for b in chunk))
    with Checkpointer(tmp_path, max_to_keep=3) as ck:
        assert ck.latest_step() == 20
        with caplog.at_level(logging.WARNING):
            restored, meta, step = ck.restore(_state(0))
        assert step == 10 and meta == {'s': 10}
        _assert_identical(_state(10), restored)
        assert any('corrupt' in r.getMessage() and '20' in r.getMessage() for r in caplog.records)
        with pytest.raises(CorruptCheckpointError):
            ck.restore(_state(0), step=20)


def test_no_checkpoints(tmp_path):
    with Checkpointer(tmp_path) as ck:
        assert ck.latest_step() is None and ck.all_steps() == []
        with pytest.raises(FileNotFoundError):
            ck.restore(_state(0))


def test_partial_tmp_dir_ignored(tmp_path):
    with Checkpointer(tmp_path) as ck:
        ck.save(1, _state(1), {})
    # A save killed mid-way leaves only an orbax temporary directory.
    os.makedirs(tmp_path / '2.orbax-checkpoint-tmp-123' / 'state')
    with Checkpointer(tmp_path) as ck:
        assert ck.all_steps() == [1]
        _, _, step = ck.restore(_state(0))
        assert step == 1


def test_async_save_snapshots_numpy_leaves(tmp_path):
    buffer = np.arange(1000, dtype=np.float32)
    with Checkpointer(tmp_path, async_save=True) as ck:
        ck.save(1, {'buffer': buffer}, {})
        buffer[:] = -1.0  # Mutated right after save returns (replay buffer keeps filling).
        ck.wait_until_finished()
        restored, _, _ = ck.restore({'buffer': np.zeros(1000, np.float32)})
    np.testing.assert_array_equal(restored['buffer'], np.arange(1000, dtype=np.float32))


def test_relative_directory_saves_and_restores(tmp_path, monkeypatch):
    """A relative directory (like the default save_dir 'runs') works: orbax itself needs absolute paths."""
    import jax.numpy as jnp
    from floq_jax.training.checkpoints import Checkpointer

    monkeypatch.chdir(tmp_path)
    ckpt = Checkpointer('runs/x/checkpoints', max_to_keep=2)
    ckpt.save(3, {'w': jnp.arange(4.0)}, {'note': 'rel'})
    ckpt.wait_until_finished()
    state, metadata, step = ckpt.restore({'w': jnp.zeros(4)})
    ckpt.close()
    assert step == 3 and metadata['note'] == 'rel' and float(state['w'][3]) == 3.0
    assert (tmp_path / 'runs' / 'x' / 'checkpoints' / '3').is_dir()


def test_delete_after_removes_newer_steps_even_corrupt(tmp_path):
    import jax.numpy as jnp
    from floq_jax.training.checkpoints import Checkpointer

    ckpt = Checkpointer(tmp_path / 'c', max_to_keep=None, async_save=False)
    for step in (1, 2, 3):
        ckpt.save(step, {'w': jnp.full(2, float(step))})
    for f in (tmp_path / 'c' / '3').rglob('*'):  # corrupt the newest one
        if f.is_file():
            f.write_bytes(b'garbage')
    ckpt.delete_after(1)
    assert ckpt.all_steps() == [1] and not (tmp_path / 'c' / '2').exists() and not (tmp_path / 'c' / '3').exists()
    ckpt.save(2, {'w': jnp.full(2, 5.0)})
    state, _, step = ckpt.restore({'w': jnp.zeros(2)})
    ckpt.close()
    assert step == 2 and float(state['w'][0]) == 5.0
