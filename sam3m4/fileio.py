"""Atomic file writes: a temporary file in the same folder, then ``os.replace`` onto the real name.

A reader never sees a half-written file under a real name, and a run killed mid-write leaves only a hidden
temporary file ``.<name>.<pid><random>.tmp`` next to it (what :func:`sam3m4.checkpoint.clean_interrupted`
and the pipeline's artifact listing recognise and skip). The lowest layer: it imports nothing from sam3m4.

    atomic_write_text(out, text)
    atomic_write_json(out, obj, indent=1)
    with atomic_path(out) as tmp:   # for writers that take a path (torch.save, savefig, safetensors)
        fig.savefig(tmp, format="png")
"""

from __future__ import annotations

import errno
import json
import os
import stat
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes", "atomic_write_json", "temporary_name",
           "check_regular_file", "read_regular_bytes"]


def temporary_name(path: Path) -> Path:
    """``.<name>.<pid><8 hex>.tmp`` in ``path``'s folder: hidden, unique per process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = False, mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without error, move it onto ``path``.

    ``fsync=True`` flushes the file to disk before the move (checkpoints). On error the temporary file is
    removed and the error propagates; ``path`` keeps its old content (or stays absent).
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj, *, newline: bool = False, **dumps) -> Path:
    """``json.dumps(obj, **dumps)`` (plus a final newline when ``newline``) written atomically to ``path``."""
    return atomic_write_text(path, json.dumps(obj, **dumps) + ("\n" if newline else ""))


# --- reading: regular files only ------------------------------------------------------------------------------
def check_regular_file(path: str | os.PathLike) -> Path:
    """``path`` when it is a regular file (after symlinks); a FIFO, socket, device or folder -> ``OSError``
    (EINVAL, "not a regular file"): opening a FIFO blocks until someone writes to it, a device never ends. A
    missing file -> the usual FileNotFoundError. Call it before ``open``."""
    path = Path(path)
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else "a special file"
        raise OSError(errno.EINVAL, f"not a regular file ({kind})", str(path))
    return path


def read_regular_bytes(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (:func:`check_regular_file`); more than ``limit`` bytes ->
    ``OSError`` (EFBIG) naming the file, read no further than ``limit + 1`` bytes."""
    path = check_regular_file(path)
    with open(path, "rb") as fh:
        data = fh.read() if limit is None else fh.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
    return data
