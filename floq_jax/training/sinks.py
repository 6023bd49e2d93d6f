"""Where metrics go: CSV, TensorBoard and W&B loggers (resumable, flushed on every write), one run's per-seed sinks
(:class:`RunSinks`, process 0 only) and its progress bar (:class:`Progress`).

CSV layout (FQL's): a ``step`` column, then metric columns such as
``training/critic/loss`` or ``evaluation/success`` in first-seen order.  A row
that introduces new keys rewrites the file (atomically, via a temp file and
``os.replace``) with the wider header; earlier rows get empty cells there, so
the file is always a valid CSV for ``csv.DictReader``/pandas.  On object storage
(``gs://``, :mod:`floq_jax.storage`), which has no append, every row uploads the
whole file.

Resuming: ``CsvLogger(path, resume_from_step=s)`` keeps rows with step <= s,
drops later ones, and rebuilds the header from the kept rows only, so a run
killed after step s and resumed from its step-s checkpoint produces the same
file as an uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import logging as py_logging
import math
import numbers
import os
from typing import Any, Mapping

import numpy as np

from floq_jax import storage

STEP = 'step'


def _to_scalar(value: Any):
    """Python int/float/str/bool for a scalar-like value (NumPy/JAX 0-d arrays included), else None."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (str, numbers.Integral, numbers.Real)):
        return value
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001
        return None
    if arr.size != 1 or arr.dtype.kind not in 'biuf':
        return None
    return arr.reshape(())[()]  # NumPy scalar: keeps float32 vs float64.


def _format(value) -> str:
    """Shortest text that parses back to the same value at the value's own precision."""
    if isinstance(value, np.floating):
        return str(value)  # NumPy's shortest repr at the value's precision (float32 0.3 -> '0.3').
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return str(value)


class CsvLogger:
    """Appends ``{'step': step, **metrics}`` rows to a CSV file.

    Args:
        path: CSV file path (parent directories are created).
        resume_from_step: None starts a fresh file (an existing one is replaced);
            an int keeps existing rows with step <= it and drops the rest.
        fsync: also ``os.fsync`` after each row (survives machine crashes,
            not just a killed process).
    """

    def __init__(self, path, resume_from_step: int | None = None, fsync: bool = True):
        self.path = os.fspath(path)
        self.fsync = fsync
        # Object storage has no append: a remote CSV is kept in memory and uploaded whole after every row.
        self.remote = storage.is_remote(self.path)
        self._file = None
        self._rows: list[dict] = []
        storage.makedirs(storage.dirname(storage.absolute(self.path)))
        self._columns: list[str] = [STEP]
        rows: list[dict] = []
        if resume_from_step is not None and storage.exists(self.path):
            reader = csv.DictReader(io.StringIO(storage.read_text(self.path), newline=''))
            header = list(reader.fieldnames or [STEP])
            for row in reader:
                if row.get(STEP) not in (None, '') and int(float(row[STEP])) <= resume_from_step:
                    rows.append(row)
            used = [c for c in header if c != STEP and any(row.get(c) not in (None, '') for row in rows)]
            self._columns = [STEP] + used
        self._rewrite(rows)

    @property
    def columns(self) -> list[str]:
        """Current header (``'step'`` first)."""
        return list(self._columns)

    def _text(self, rows: list[dict]) -> str:
        buf = io.StringIO(newline='')
        writer = csv.DictWriter(buf, fieldnames=self._columns, extrasaction='ignore', restval='')
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def _rewrite(self, rows: list[dict]) -> None:
        """Atomically replaces the file with the current header and ``rows``."""
        if self.remote:
            self._rows = [dict(r) for r in rows]
            storage.write_text(self.path, self._text(self._rows))
            return
        storage.write_text(self.path, self._text(rows), fsync=self.fsync)
        self._file = open(self.path, 'a', newline='')

    def _read_rows(self) -> list[dict]:
        if self.remote:
            return self._rows
        self._file.close()
        with open(self.path, newline='') as f:
            return list(csv.DictReader(f))

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Writes one row.  Non-scalar values are skipped (with a warning)."""
        row = {STEP: str(int(step))}
        for key, value in metrics.items():
            if key == STEP:
                continue
            scalar = _to_scalar(value)
            if scalar is None:
                py_logging.warning('CsvLogger: skipping non-scalar metric %r', key)
                continue
            row[key] = _format(scalar)
        new_keys = [k for k in row if k not in self._columns]
        if new_keys:
            rows = self._read_rows()
            self._columns += new_keys
            self._rewrite(rows)
        if self.remote:
            self._rows.append(row)
            storage.write_text(self.path, self._text(self._rows))
            return
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=self._columns, restval='').writerow(row)
        self._file.write(buf.getvalue())
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()


class TensorBoardLogger:
    """Scalar logging with tensorboardX; a no-op when ``enabled`` is False.

    Args:
        log_dir: event file directory.
        resume_from_step: events with step > it are purged (tensorboardX ``purge_step``).
    """

    def __init__(self, log_dir, enabled: bool = True, resume_from_step: int | None = None):
        self.enabled = enabled
        self._writer = None
        if enabled:
            from tensorboardX import SummaryWriter

            if storage.is_remote(log_dir):
                _register_object_storage_events()
            purge = None if resume_from_step is None else int(resume_from_step) + 1
            self._writer = SummaryWriter(os.fspath(log_dir), purge_step=purge)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        if self._writer is None:
            return
        for key, value in metrics.items():
            scalar = _to_scalar(value)
            if scalar is None or isinstance(scalar, str) or math.isnan(float(scalar)):
                continue
            self._writer.add_scalar(key, float(scalar), int(step))
        self._writer.flush()

    def video(self, tag: str, frames: np.ndarray, step: int, path: str, fps: int) -> None:
        """An animated GIF of uint8 (T, H, W, 3) ``frames`` in the image dashboard (how tensorboardX's own
        ``add_video`` shows videos, encoded here with Pillow instead of moviepy)."""
        if self._writer is None:
            return
        from tensorboardX.proto.summary_pb2 import Summary

        from floq_jax.training import videos

        _, h, w, c = frames.shape
        image = Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=videos.gif_bytes(frames, fps))
        self._writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), int(step))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _ObjectEventFile:
    """A TensorBoard event file on object storage, written through :mod:`floq_jax.storage`: the records are kept in
    memory and the object is uploaded whole at every flush (tensorboardX's own gs:// writer would bring a second
    storage client)."""

    def __init__(self, path: str):
        self.path, self.buffer, self.closed = path, io.BytesIO(), False

    def write(self, data: bytes) -> None:
        self.buffer.write(data)

    def flush(self) -> None:
        storage.write_bytes(self.path, self.buffer.getvalue())

    def close(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True


class _ObjectEventFiles:
    def open(self, path):
        return _ObjectEventFile(path)

    def directory_check(self, path):
        del path  # no directories on object storage


def _register_object_storage_events() -> None:
    from tensorboardX import record_writer

    for scheme in storage.REMOTE_SCHEMES:
        record_writer.register_writer_factory(scheme.split(':')[0], _ObjectEventFiles())


class WandbLogger:
    """Scalar logging to a Weights & Biases run: offline mode unless ``WANDB_MODE`` says otherwise, so no account
    or network is needed (``wandb sync <dir>`` uploads later). One W&B run per process, created by the first
    logger; ``prefix`` (e.g. ``'seed3/'``) keeps the seeds of a vmapped run apart.

    Args:
        project, group, name, config: passed to ``wandb.init``.
        directory: where W&B writes its ``wandb/`` folder.
        prefix: prepended to every metric name.
    """

    def __init__(self, project: str, group: str, name: str, config: Mapping[str, Any], directory,
                 prefix: str = ''):
        try:
            import wandb
        except ImportError:
            raise ImportError('wandb logging needs the wandb package (pip install wandb)') from None
        os.environ.setdefault('WANDB_MODE', 'offline')
        self._wandb = wandb
        self.prefix = prefix
        if wandb.run is None:
            os.makedirs(os.fspath(directory), exist_ok=True)
            wandb.init(project=project, group=group, name=name, config=dict(config), dir=os.fspath(directory))

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        row = {}
        for key, value in metrics.items():
            scalar = _to_scalar(value)
            if scalar is not None and not isinstance(scalar, str):
                row[self.prefix + key] = float(scalar)
        if row:
            self._wandb.log(row, step=int(step))

    def video(self, tag: str, frames: np.ndarray, step: int, path: str, fps: int) -> None:
        """The MP4 file at ``path`` as a W&B video (W&B reads local files: a bucket's MP4 is copied to one first)."""
        if storage.is_remote(path):
            import tempfile

            local = os.path.join(tempfile.mkdtemp(prefix='floq_wandb_video_'), os.path.basename(path))
            with open(local, 'wb') as f:
                f.write(storage.read_bytes(path))
            path = local
        self._wandb.log({self.prefix + tag: self._wandb.Video(path, fps=fps, format='mp4')}, step=int(step))

    def close(self) -> None:
        if self._wandb.run is not None:
            self._wandb.finish()


class FanoutLogger:
    """Sends every ``log`` call to several loggers (e.g. TensorBoard and W&B)."""

    def __init__(self, *loggers):
        self.loggers = loggers

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        for logger in self.loggers:
            logger.log(metrics, step)

    def video(self, tag: str, frames: np.ndarray, step: int, path: str, fps: int) -> None:
        for logger in self.loggers:
            logger.video(tag, frames, step, path, fps)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


class NullLogger:
    """Stands in for a CsvLogger / TensorBoardLogger on processes that do not write logs (multi-host: every
    process but ``jax.process_index() == 0``)."""

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        del metrics, step

    def video(self, tag: str, frames: np.ndarray, step: int, path: str, fps: int) -> None:
        del tag, frames, step, path, fps

    def close(self) -> None:
        pass


class RunSinks:
    """Where one multi-seed run's metrics go: per seed a ``train.csv``, an ``eval.csv`` and TensorBoard events
    (plus W&B when asked), written by process 0 only (other processes get :class:`NullLogger`s).

    ``resume_from_step``: the restored step (CSV rows and events after it are dropped), or None for a fresh start
    (stale TensorBoard events of an earlier session that saved no checkpoint are removed first).
    """

    def __init__(self, dirs, seeds, options, agent_config, resume_from_step: int | None, primary: bool):
        self.seeds, self.dirs = list(seeds), list(dirs)
        if not primary:
            self.train = [NullLogger() for _ in dirs]
            self.eval = [NullLogger() for _ in dirs]
            self.tb = [NullLogger() for _ in dirs]
            return
        if resume_from_step is None:
            # A run dir (re)started from step 0 (e.g. stopped before its first checkpoint): its CSVs start afresh,
            # and so do its TensorBoard events (no second step-0 evaluation beside the old one).
            for d in dirs:
                tb_dir = storage.join(d, 'tb')
                for name in storage.listdir(tb_dir):
                    if name.startswith('events.out.tfevents.'):
                        storage.remove(storage.join(tb_dir, name))
        self.train = [CsvLogger(storage.join(d, 'train.csv'), resume_from_step=resume_from_step) for d in dirs]
        self.eval = [CsvLogger(storage.join(d, 'eval.csv'), resume_from_step=resume_from_step) for d in dirs]
        self.tb = [TensorBoardLogger(storage.join(d, 'tb'), enabled=options.tensorboard,
                                     resume_from_step=resume_from_step) for d in dirs]
        if options.wandb:
            self.tb = [FanoutLogger(tb, WandbLogger(
                'floq-jax', options.run_group, f'{options.env_name}/{agent_config.agent_name}',
                {'agent': agent_config.to_dict(), **options.flags},
                # W&B's own files stay local (it syncs them itself); a bucket save_dir keeps them in ./wandb
                '.' if storage.is_remote(options.save_dir) else os.path.abspath(options.save_dir),
                prefix=f'seed{s}/' if len(self.seeds) > 1 else '')) for tb, s in zip(self.tb, self.seeds)]

    def log_train(self, step: int, infos: Mapping[str, np.ndarray], extra: Mapping[str, np.ndarray] | None = None,
                  rate: float | None = None) -> None:
        """One train.csv / TensorBoard row per seed from {name: (S,)} chunk means ('training/<name>') and ``extra``
        {full name: (S,)}; ``rate`` (steps/s, wall clock) goes to TensorBoard only (train.csv stays deterministic)."""
        for k in range(len(self.seeds)):
            row = {f'training/{key}': v[k] for key, v in infos.items()}
            if extra:
                row.update({key: v[k] for key, v in extra.items()})
            self.train[k].log(row, step)
            self.tb[k].log(row if rate is None else {**row, 'time/steps_per_sec': rate}, step)

    def log_eval(self, step: int, rows) -> None:
        """One eval.csv / TensorBoard row per seed."""
        for k, row in enumerate(rows):
            self.eval[k].log(row, step)
            self.tb[k].log(row, step)

    def log_videos(self, step: int, videos) -> None:
        """Per seed, its rendered evaluation episodes (a list of uint8 (F, H, W, 3)) tiled into one grid video:
        ``<run dir>/videos/step<step>.mp4``, and TensorBoard / W&B 'evaluation/video'."""
        from floq_jax.training import videos as videos_lib

        for k, episodes in enumerate(videos):
            if not episodes or isinstance(self.tb[k], NullLogger):
                continue
            frames = videos_lib.tile(episodes)
            path = videos_lib.write_mp4(storage.join(self.dirs[k], 'videos', f'step{step}.mp4'), frames)
            self.tb[k].video('evaluation/video', frames, step, path, videos_lib.FPS)

    def close(self) -> None:
        for lg in self.train + self.eval + self.tb:
            lg.close()


class Progress:
    """The tqdm bar of a run (process 0, ``options.progress``), or console notes without one; every method is a
    no-op when neither is on."""

    def __init__(self, total: int, initial: int, enabled: bool, console: bool):
        self.console = console
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit='step', dynamic_ncols=True, smoothing=0.1)

    def note(self, text: str) -> None:
        """What the run is doing while the bar cannot move (compiling, evaluating): the bar's label, else a line."""
        if self.bar is not None:
            self.bar.set_description_str(text, refresh=True)
        elif self.console:
            say(f'{text}...')

    def update(self, n: int, label: str | None = None) -> None:
        if self.bar is not None:
            if label is not None:
                self.bar.set_description_str(label, refresh=False)
            self.bar.update(n)

    def postfix(self, **values) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**values)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def say(text: str) -> None:
    """A console line on stderr (the CLI's start-up / final summaries and notes)."""
    import sys

    print(text, file=sys.stderr, flush=True)
