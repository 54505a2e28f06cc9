"""Atomic file writes: a temporary file in the same folder, then ``os.replace`` onto the real name.

A reader never sees a half-written file under a real name, and a run killed mid-write leaves only a hidden
temporary file ``.<name>.<pid><random>.tmp`` next to it (what :func:`sam3m4.checkpoint.clean_interrupted`
and the pipeline's artifact listing recognise and skip). Every output goes through here: whole files with
the atomic writers, logs that grow while a command runs through :func:`staged_log` (a temporary file, moved
onto the real name when the command ends), records appended to a run's ``results.jsonl`` after
:func:`check_contained`.

Run records and logs stay in the project: a write whose path lies under the project root
(:func:`sam3m4.paths.project_root`) but whose real path (symlinks followed, the file's and its folders') leaves
it is refused with one line naming the path and where it leads (:class:`OutsideProject`). Checkpoints, data and
outputs may live on another disk through a symlinked folder; ``contained=True`` opts a writer into the rule. The
lowest layer: it imports only :mod:`sam3m4.paths`.

    atomic_write_text(out, text)
    atomic_write_json(out, obj, indent=1)
    with atomic_path(out) as tmp:   # for writers that take a path (torch.save, savefig, safetensors)
        fig.savefig(tmp, format="png")
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sam3m4.paths import project_root

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes", "atomic_write_json", "temporary_name",
           "check_regular_file", "read_regular_bytes", "OutsideProject", "check_contained", "staged_log",
           "atomic_folder"]


class OutsideProject(OSError):
    """A write under the project root that a symlink would take out of it; the message names both."""

    def __init__(self, path: Path, real: Path, root: Path):
        super().__init__(errno.EPERM, "refused to write")
        self.path, self.real, self.root = path, real, root

    def __str__(self) -> str:
        return (f"{self.path}: refused to write: a symlink leads it to {self.real}, outside the project root "
                f"{self.root}")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_contained(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """``path`` when writing it stays in the project; :class:`OutsideProject` when ``path`` lies under ``root``
    (default :func:`~sam3m4.paths.project_root`) as written but a symlink (the file itself or a folder above it)
    leads out of it. A path outside the root as written (an explicit ``--out /elsewhere``) is the user's choice
    and allowed."""
    path = Path(path)
    root_real = os.path.realpath(root if root is not None else project_root())
    root_abs = os.path.abspath(root) if root is not None else root_real
    lexical = os.path.abspath(path)
    if not (_under(lexical, root_abs) or _under(lexical, root_real)):
        return path
    real = os.path.realpath(path)
    if not _under(real, root_real):
        raise OutsideProject(path, Path(real), Path(root_real))
    return path


def temporary_name(path: Path) -> Path:
    """``.<name>.<pid><8 hex>.tmp`` in ``path``'s folder: hidden, unique per process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}{uuid.uuid4().hex[:8]}.tmp")


TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)[0-9a-f]{8}\.tmp$")  # what temporary_name() makes


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (:func:`temporary_name`) in ``folder`` whose writing process no longer runs on
    this host: what a killed writer left. Only regular files of that name pattern; returns those removed."""
    folder, removed = Path(folder), []
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = TEMPORARY.match(p.name)
        if m and p.is_file() and not p.is_symlink() and not _running(int(m["pid"])):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = False, mkdir: bool = True,
                contained: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without error, move it onto ``path``.

    ``fsync=True`` flushes the file to disk before the move (checkpoints). On error the temporary file is
    removed and the error propagates; ``path`` keeps its old content (or stays absent). ``contained=True``:
    :func:`check_contained` first (run records, logs).
    """
    path = Path(path)
    if contained:
        check_contained(path)
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


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path`` for a writer that fills a folder (``save_pretrained``);
    when the block ends without error, each file it wrote is moved onto its name under ``path`` (one atomic
    rename each; other files of ``path`` are kept). On error nothing under ``path`` changes. The temporary
    folder is removed either way."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    tmp.mkdir()
    try:
        yield tmp
        for src in sorted(p for p in tmp.rglob("*") if p.is_file()):
            dst = path / src.relative_to(tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False, contained: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path, fsync=fsync, contained=contained) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = False, contained: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_path(path, fsync=fsync, contained=contained) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj, *, newline: bool = False, contained: bool = False,
                      **dumps) -> Path:
    """``json.dumps(obj, **dumps)`` (plus a final newline when ``newline``) written atomically to ``path``."""
    return atomic_write_text(path, json.dumps(obj, **dumps) + ("\n" if newline else ""), contained=contained)


@contextmanager
def staged_log(path: str | os.PathLike, *, keep_on_error: bool = True) -> Iterator:
    """A log that grows while a command runs: yields a text file handle on a temporary file next to ``path``
    (:func:`check_contained` first), moved onto ``path`` when the block ends. ``keep_on_error=True`` (a stage
    log: the failure is what it is read for) moves it on error too; ``False`` (a command's own ``--log``) leaves
    ``path`` untouched (byte-identical, or absent) when the block raises."""
    path = check_contained(Path(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    ok = False
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            yield handle
        ok = True
    finally:
        if ok or keep_on_error:
            with contextlib.suppress(FileNotFoundError):
                os.replace(tmp, path)
        tmp.unlink(missing_ok=True)


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
