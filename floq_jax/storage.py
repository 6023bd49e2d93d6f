"""The one path layer of floq-jax: local directories and object storage (``gs://bucket/...``) through ``etils.epath``
(the layer orbax writes its checkpoints with; gs:// needs ``gcsfs``).

Every file a run, ``evaluate``, ``report`` or a dataset load touches goes through these functions, and paths stay
strings (``'runs/x/seed0'`` or ``'gs://bkt/runs/x/seed0'``).  Local paths keep their old behaviour (atomic
replace via a temp file, fsync); on object storage a write of a whole object is atomic by itself (there is no
append: callers rewrite small files whole), and there are no directories (``makedirs`` is a no-op there).

A bucket that does not exist, an unreachable endpoint or missing credentials raise :class:`StorageError` from
:func:`check_writable` / :func:`check_readable` with one line saying which.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import shutil
import uuid
from typing import List

REMOTE_SCHEMES = ('gs://',)


class StorageError(OSError):
    """A path that cannot be used (missing bucket, no credentials, unreachable, not writable)."""


def is_remote(path) -> bool:
    """True for an object-storage path (``gs://...``)."""
    return str(path).startswith(REMOTE_SCHEMES)


# gcsfs logs a warning per call when it cannot tell a bucket's type without default credentials (orbax's own
# gs:// calls too): hidden; real failures raise.
logging.getLogger('gcsfs').setLevel(logging.CRITICAL)


def epath(path):
    """``etils.epath.Path`` of ``path`` (gs:// needs the gcsfs package).

    gcsfs caches directory listings (with object sizes) per process: another process's writes (the live run's CSVs,
    a lock's heartbeat) would be read stale, even cut to an old size. Every remote access here drops that cache
    first, so it always sees the bucket as it is.
    """
    from etils import epath as ep

    if is_remote(path):
        from etils.epath import backend

        backend.fsspec_backend.fs(absolute(path)).invalidate_cache()
    return ep.Path(absolute(path))


def absolute(path) -> str:
    """Local: absolute, ``~`` expanded; remote: unchanged (without a trailing slash)."""
    path = os.fspath(path)
    if is_remote(path):
        return path.rstrip('/') if path.count('/') > 2 else path
    return os.path.abspath(os.path.expanduser(path))


def join(path, *parts) -> str:
    path = os.fspath(path)
    return posixpath.join(path, *parts) if is_remote(path) else os.path.join(path, *parts)


def dirname(path) -> str:
    path = os.fspath(path)
    return posixpath.dirname(path.rstrip('/')) if is_remote(path) else os.path.dirname(path)


def basename(path) -> str:
    path = os.fspath(path)
    return posixpath.basename(path.rstrip('/')) if is_remote(path) else os.path.basename(path)


def exists(path) -> bool:
    return os.path.exists(path) if not is_remote(path) else epath(path).exists()


def isfile(path) -> bool:
    return os.path.isfile(path) if not is_remote(path) else epath(path).is_file()


def isdir(path) -> bool:
    return os.path.isdir(path) if not is_remote(path) else epath(path).is_dir()


def makedirs(path) -> None:
    """Creates a local directory (and its parents); nothing on object storage (no directories there)."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def local_stamp(path):
    """(device, inode, size, modification time, change time) of a local file, or None if there is none: a cache key
    under which a file's content (a digest, a parsed CSV) is kept while the file is unchanged.  A replacing copy or a
    rewrite changes it, except a same-size rewrite within one tick of the file system's clock (a few milliseconds on
    some kernels): a key for files written by earlier commands, not for one rewritten in a tight loop."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def size(path) -> int:
    """Bytes in the file ``path`` (local, or an object's length from its metadata: nothing is downloaded)."""
    if is_remote(path):
        return int(epath(path).stat().length)
    return os.path.getsize(path)


def listdir(path) -> List[str]:
    """Names in a directory ([] if it does not exist)."""
    if not is_remote(path):
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    p = epath(path)
    return sorted(c.name for c in p.iterdir()) if p.is_dir() else []


def walk(top):
    """``os.walk`` for a local or remote tree: (dirpath, dirnames, filenames), top-down."""
    if not is_remote(top):
        yield from os.walk(top)
        return
    p = epath(top)
    if not p.is_dir():
        return
    children = list(p.iterdir())
    dirnames = sorted(c.name for c in children if c.is_dir())
    filenames = sorted(c.name for c in children if not c.is_dir())
    yield absolute(top), dirnames, filenames
    for name in dirnames:
        yield from walk(join(absolute(top), name))


def open_file(path, mode: str = 'r', **kwargs):
    """A file object (text or binary by ``mode``); on object storage only whole reads and whole writes."""
    if not is_remote(path):
        return open(path, mode, **kwargs)
    if 'a' in mode:
        raise StorageError(f'{path}: object storage has no append; rewrite the object whole')
    return epath(path).open(mode, **kwargs)


def read_text(path) -> str:
    with open_file(path, 'r') as f:
        return f.read()


def read_bytes(path) -> bytes:
    with open_file(path, 'rb') as f:
        return f.read()


def write_text(path, text: str, fsync: bool = False) -> None:
    """Writes ``path`` atomically: local via a temp file and ``os.replace``; remote in one upload."""
    write_bytes(path, text.encode(), fsync)


def write_bytes(path, data: bytes, fsync: bool = False) -> None:
    if is_remote(path):
        epath(path).write_bytes(data)
        return
    tmp = f'{path}.tmp'
    with open(tmp, 'wb') as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True))


def remove(path) -> None:
    """Removes one file (missing: nothing)."""
    try:
        if is_remote(path):
            epath(path).unlink(missing_ok=True)
        else:
            os.remove(path)
    except FileNotFoundError:
        pass


def rmtree(path) -> None:
    """Removes a tree (missing: nothing)."""
    if is_remote(path):
        p = epath(path)
        if p.exists():
            p.rmtree()
    else:
        shutil.rmtree(path, ignore_errors=True)


def free_bytes(path):
    """Free bytes on the local disk holding ``path`` (its nearest existing parent); None on object storage."""
    if is_remote(path):
        return None
    path = absolute(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def is_full_error(error: BaseException) -> bool:
    """True if ``error`` (or one it was raised from) says the disk or the bucket is full."""
    import errno

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(error)
        if any(s in text for s in ('No space left on device', 'Disk quota exceeded')):
            return True
        # tensorstore reports a failed write as RESOURCE_EXHAUSTED; so does XLA a device out of memory, which is not
        # a full disk.
        if 'RESOURCE_EXHAUSTED' in text and 'out of memory' not in text.lower():
            return True
        error = error.__cause__ or error.__context__
    return False


def full_what(path) -> str:
    """What fills up under ``path``: the local disk (mount point, size) or the bucket."""
    if is_remote(path):
        return f'the bucket {absolute(path).split("/")[2]} (its quota)'
    path = absolute(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    mount = path
    while not os.path.ismount(mount):
        mount = os.path.dirname(mount)
    usage = shutil.disk_usage(path)
    return f'the disk mounted at {mount} ({usage.free / 2**20:.1f} MiB free of {usage.total / 2**20:.1f} MiB)'


def _reason(error: BaseException, path: str = '') -> str:
    """Why ``error`` (raised while touching ``path``) happened, in a few words.  The classification reads the
    message with ``path`` taken out and status codes as whole words: a path's own characters (a probe's random hex
    holding '401', a bucket named 'forbidden-data') never decide it."""
    text = ' '.join(str(error).split())[:200]
    kind = type(error).__name__
    low = str(error)
    if path:  # gcsfs names objects with or without the scheme
        for name in (path, path[len('gs://'):] if path.startswith('gs://') else path):
            low = low.replace(name, ' ')
    low = low.lower()
    if re.search(r'credential|unauthori[sz]ed|forbidden|\b40[13]\b', low):
        return f'no usable credentials ({kind}: {text})'
    if isinstance(error, FileNotFoundError) or re.search(r'not found|\b404\b', low):
        return f'the bucket does not exist ({kind}: {text})'
    if isinstance(error, ImportError):
        return f'gs:// needs the gcsfs package: pip install gcsfs ({text})'
    return f'{kind}: {text}'


def check_writable(path) -> None:
    """``path`` (a directory) can be written: a probe object is created and removed (nothing is left).

    Local paths: the caller's own checks (this one covers object storage); raises :class:`StorageError`."""
    if not is_remote(path):
        return
    bucket = absolute(path)[len('gs://'):].split('/')[0]
    if not bucket:
        raise StorageError(f'{path}: no bucket name')
    probe = join(absolute(path), f'.floq_write_probe_{uuid.uuid4().hex}')
    try:
        write_bytes(probe, b'')
        remove(probe)
    except Exception as e:  # noqa: BLE001 - gcsfs raises many kinds (HttpError, OSError, auth errors)
        raise StorageError(f'cannot write to {path}: {_reason(e, probe)}') from None


def check_readable(path, kind: str = 'any') -> bool:
    """True if ``path`` exists (``kind`` 'file': is a file; 'dir': is a directory); False if it does not;
    :class:`StorageError` if the storage cannot be asked (missing bucket, no credentials, unreachable).  The one
    readability check of every path a flag names."""
    test = {'any': exists, 'file': isfile, 'dir': isdir}[kind]
    try:
        return test(path)
    except Exception as e:  # noqa: BLE001
        raise StorageError(f'cannot read {path}: {_reason(e, absolute(path))}') from None
