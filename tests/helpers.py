"""Test oracles: the plain, obviously-correct versions the library's fast paths are checked against.  They live
here, not in the library, because only tests use them (the shared fixtures and small configs: tests/conftest.py)."""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax

from floq_jax import storage
from floq_jax.data.sampling import sample_batch
from floq_jax.training.sinks import CsvLogger, TensorBoardLogger


def reference_step_by_step(agent, data, rng, batch_size: int, steps: int):
    """One seed, one jitted update per host call, with the rng stream a chunk uses (split, sample, update): the
    loop ``parallel.make_train_chunk`` must equal.  Returns (agent, rng)."""

    @jax.jit
    def one(agent, data, rng):
        rng, key = jax.random.split(rng)
        agent, _ = agent.update(sample_batch(data, key, batch_size))
        return agent, rng

    for _ in range(steps):
        agent, rng = one(agent, data, rng)
    return agent, rng


class RunLogger:
    """CSV (``<log_dir>/<csv_name>``) + TensorBoard (``<log_dir>/tb``) logging of one directory, each ``log`` call
    flushed to both before returning: the two sinks the library's ``RunSinks`` composes, used together."""

    def __init__(self, log_dir, csv_name: str = 'log.csv', tensorboard: bool = True,
                 resume_from_step: int | None = None):
        self.log_dir = os.fspath(log_dir)
        self.csv = CsvLogger(storage.join(self.log_dir, csv_name), resume_from_step=resume_from_step)
        self.tb = TensorBoardLogger(storage.join(self.log_dir, 'tb'), enabled=tensorboard,
                                    resume_from_step=resume_from_step)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        self.csv.log(metrics, step)
        self.tb.log(metrics, step)

    def close(self) -> None:
        self.csv.close()
        self.tb.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
