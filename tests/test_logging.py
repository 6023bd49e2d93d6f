"""Tests for floq_jax.training.sinks: CSV header growth, resume truncation, flushing, TensorBoard."""

import csv
import glob
import os

import jax.numpy as jnp
import numpy as np

from floq_jax.training.sinks import CsvLogger, TensorBoardLogger
from tests.conftest import tb_events
from tests.helpers import RunLogger


def _read(path):
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _run(path, steps, resume_from_step=None):
    """Simulated training log: 'evaluation/success' first appears at step 30."""
    logger = CsvLogger(path, resume_from_step=resume_from_step)
    for s in steps:
        metrics = {'training/critic/loss': 1.0 / s, 'training/actor/q': np.float32(s) * 0.5}
        if s % 30 == 0:
            metrics['evaluation/success'] = jnp.asarray(s / 100.0)
        logger.log(metrics, step=s)
    logger.close()


def test_header_and_new_keys(tmp_path):
    path = tmp_path / 'log.csv'
    _run(path, [10, 20, 30, 40])
    header, rows = _read(path)
    assert header == ['step', 'training/critic/loss', 'training/actor/q', 'evaluation/success']
    assert [r['step'] for r in rows] == ['10', '20', '30', '40']
    assert rows[0]['evaluation/success'] == '' and rows[3]['evaluation/success'] == ''
    assert float(rows[2]['evaluation/success']) == 0.3
    assert float(rows[1]['training/critic/loss']) == 1.0 / 20  # Exact float round trip.
    assert float(rows[3]['training/actor/q']) == 20.0


def test_resume_matches_uninterrupted(tmp_path):
    full = tmp_path / 'full.csv'
    _run(full, range(10, 101, 10))
    # Killed run: logged up to step 70 but its last checkpoint was at step 20
    # (so 'evaluation/success', first seen at step 30, must disappear from the header).
    killed = tmp_path / 'killed.csv'
    _run(killed, range(10, 71, 10))
    _run(killed, range(30, 101, 10), resume_from_step=20)
    assert killed.read_text() == full.read_text()
    # Resuming after the new key appeared keeps it.
    killed2 = tmp_path / 'killed2.csv'
    _run(killed2, range(10, 81, 10))
    _run(killed2, range(50, 101, 10), resume_from_step=40)
    assert killed2.read_text() == full.read_text()


def test_fresh_start_replaces_file(tmp_path):
    path = tmp_path / 'log.csv'
    _run(path, [10, 20])
    _run(path, [5])
    header, rows = _read(path)
    assert [r['step'] for r in rows] == ['5'] and 'evaluation/success' not in header


def test_flushed_without_close(tmp_path):
    path = tmp_path / 'log.csv'
    logger = CsvLogger(path)
    logger.log({'a': 1.5}, step=1)
    _, rows = _read(path)  # Readable before close: nothing buffered.
    assert rows == [{'step': '1', 'a': '1.5'}]
    logger.log({'a': 2.5, 'b': 7}, step=2)
    header, rows = _read(path)
    assert header == ['step', 'a', 'b'] and rows[1] == {'step': '2', 'a': '2.5', 'b': '7'}
    logger.log({'arr': np.zeros(3), 'a': 3.0}, step=3)  # Non-scalar skipped.
    header, rows = _read(path)
    assert header == ['step', 'a', 'b'] and rows[2] == {'step': '3', 'a': '3.0', 'b': ''}
    logger.close()


def _tb_scalars(log_dir):
    out = {}
    for step, v in tb_events(log_dir):
        out.setdefault(v.tag, []).append((step, v.simple_value))
    return out


def test_run_logger_and_tensorboard(tmp_path):
    with RunLogger(tmp_path, tensorboard=True) as logger:
        logger.log({'training/critic/loss': 0.25}, step=1)
        logger.log({'training/critic/loss': 0.5, 'evaluation/success': 1.0}, step=2)
        assert glob.glob(os.path.join(tmp_path, 'tb', 'events.out.tfevents.*'))
    _, rows = _read(tmp_path / 'log.csv')
    assert [r['training/critic/loss'] for r in rows] == ['0.25', '0.5']
    scalars = _tb_scalars(str(tmp_path / 'tb'))
    assert scalars['training/critic/loss'] == [(1, 0.25), (2, 0.5)]
    assert scalars['evaluation/success'] == [(2, 1.0)]


def test_tensorboard_disabled_is_noop(tmp_path):
    tb = TensorBoardLogger(tmp_path / 'tb', enabled=False)
    tb.log({'x': 1.0}, step=1)
    tb.close()
    assert not os.path.exists(tmp_path / 'tb')


def test_wandb_logger_offline_by_default_prefix_and_scalars(tmp_path, monkeypatch):
    """WandbLogger: one W&B run per process, offline unless WANDB_MODE is set, scalar metrics only, with prefix.
    A stand-in module replaces the wandb package (it is optional and not installed by requirements.txt)."""
    import sys
    import types

    from floq_jax.training.sinks import FanoutLogger, WandbLogger

    calls = {'init': [], 'log': [], 'finish': 0}
    fake = types.ModuleType('wandb')
    fake.run = None

    def init(**kwargs):
        calls['init'].append((kwargs, os.environ.get('WANDB_MODE')))
        fake.run = object()

    def finish():
        calls['finish'] += 1
        fake.run = None

    fake.init, fake.finish = init, finish
    fake.log = lambda row, step: calls['log'].append((row, step))
    monkeypatch.setitem(sys.modules, 'wandb', fake)
    monkeypatch.delenv('WANDB_MODE', raising=False)

    loggers = [WandbLogger('p', 'g', 'n', {'lr': 1e-3}, tmp_path / 'w', prefix=f'seed{k}/') for k in (0, 1)]
    assert len(calls['init']) == 1 and calls['init'][0][1] == 'offline'
    assert calls['init'][0][0]['dir'] == str(tmp_path / 'w') and calls['init'][0][0]['config'] == {'lr': 1e-3}
    loggers[0].log({'a': np.float32(1.5), 'name': 'x'}, step=10)
    FanoutLogger(loggers[1]).log({'a': 2}, step=10)
    assert calls['log'] == [({'seed0/a': 1.5}, 10), ({'seed1/a': 2.0}, 10)]
    for lg in loggers:
        lg.close()
    assert calls['finish'] == 1
