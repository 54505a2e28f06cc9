"""The run lock: one training-type command at a time per project tree, and ``sam3m4 prune`` stays out of its way.

A command that writes checkpoints, caches or visualisations holds a :class:`filelock.FileLock` on
``<root>/checkpoints/.run.lock`` for its whole run and describes itself (pid, command, host, start time) in
``<root>/checkpoints/.run.lock.json``, removed on exit. The lock is an OS ``flock``: it is released when the
process dies, so a crashed run never leaves a stale lock behind (a stale ``.json`` is ignored).

    with run_lock(".", name="distill phase2"):
        train(...)
    lock_holder(".")   # {"pid": 4242, "command": "sam3m4 distill phase2 ...", ...} while held, else None

:func:`run_name_lock` is the second lock: one per run name (``reports/.<run>.lock``), held by every command that
writes a run's files, so two ``sam3m4 pipeline`` runs of one name cannot interleave their logs and records.

Nested holders do not deadlock: a process started under a held lock (``sam3m4 pipeline`` running
``sam3m4 distill ...`` as a child) inherits ``SAM3M4_RUN_LOCK`` and its ``run_lock`` is a no-op, and so is
``run_lock`` on DDP ranks other than 0 (``RANK`` set by torchrun), whose rank 0 holds it for them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from sam3m4.errors import Sam3m4Error
from sam3m4.fileio import atomic_write_json
from sam3m4.paths import REPORTS_ROOT, RUN_LOCK, RUN_LOCK_INFO, project_root

LOCK_FILE = RUN_LOCK
INFO_FILE = RUN_LOCK_INFO
ENV = "SAM3M4_RUN_LOCK"  # set to the held lock's absolute path for child processes


class RunLockedError(Sam3m4Error):
    """Another process holds the run lock; the message names it."""


def lock_path(root: str | os.PathLike = ".") -> Path:
    return Path(root) / LOCK_FILE


def describe(info: dict | None, path: Path) -> str:
    """One line naming a holder: ``pid 4242 (sam3m4 distill phase2 ...) since 2025-01-01T10:00:00+00:00``."""
    if not info:
        return f"{path} is held by another process (no holder info in {path.name}.json)"
    return (f"{path} is held by pid {info.get('pid', '?')} on {info.get('host', '?')} "
            f"({info.get('command') or info.get('name') or '?'}) since {info.get('started', '?')}")


def _read_info(root: str | os.PathLike) -> dict | None:
    try:
        return json.loads((Path(root) / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _inherited(path: Path) -> bool:
    """True in a process started under the holder of the lock at ``path`` (or in the holder itself)."""
    return os.environ.get(ENV) == str(path.resolve())


def lock_holder(root: str | os.PathLike = ".") -> dict | None:
    """The holder's info (pid, name, command, host, started) while a live process holds the run lock, else None.

    Tries to take the lock with timeout 0 and releases it at once; a held lock whose ``.json`` is missing or
    unreadable gives ``{"pid": None, ...}`` rather than None (held is what counts, the info is a courtesy).
    None too in a child process of the holder (``SAM3M4_RUN_LOCK``, as :func:`run_lock`): the pipeline's own
    ``sam3m4 prune --apply`` runs under the lock the pipeline holds.
    """
    path = lock_path(root)
    if not path.exists() or _inherited(path):
        return None
    probe = FileLock(str(path), timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return _read_info(root) or {"pid": None, "name": None, "command": None, "host": None, "started": None}
    probe.release()
    return None


@contextlib.contextmanager
def run_lock(root: str | os.PathLike = ".", name: str = "", timeout: float = 0) -> Iterator[dict | None]:
    """Hold ``<root>/checkpoints/.run.lock`` for the ``with`` block; yields the holder info written.

    ``timeout`` seconds to wait for a busy lock (0: fail at once, -1: wait forever); a busy lock raises
    :class:`RunLockedError` naming the holder. No-op (yields None) on DDP ranks > 0 and in child processes of
    a holder (``SAM3M4_RUN_LOCK``).
    """
    path = lock_path(root)
    if os.environ.get("RANK", "0") not in ("", "0") or _inherited(path):
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise RunLockedError(f"cannot start {name or 'this command'}: {describe(_read_info(root), path)}") from None
    info_path = Path(root) / INFO_FILE
    previous = os.environ.get(ENV)
    info = {"pid": os.getpid(), "name": name, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "host": socket.gethostname(), "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    try:
        atomic_write_json(info_path, info, newline=True)
        os.environ[ENV] = str(path.resolve())
        yield info
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        with contextlib.suppress(FileNotFoundError):
            info_path.unlink()
        lock.release()


# --- the lock of one run name ----------------------------------------------------------------------------------
RUN_ENV = "SAM3M4_RUN_NAME_LOCKS"  # the run-name locks held by this process's ancestors (os.pathsep-joined)


def run_name_lock_path(run: str, reports: str | os.PathLike | None = None) -> Path:
    """``<reports>/.<run>.lock`` (default ``<project root>/reports``): the lock of run ``run``, beside its folder."""
    return Path(reports if reports is not None else project_root() / REPORTS_ROOT) / f".{run}.lock"


def _read_holder(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe_run(run: str, info: dict | None, path: Path) -> str:
    if not info:
        return f"run '{run}' is in use by another process ({path}, no holder info yet)"
    return (f"run '{run}' is in use by pid {info.get('pid', '?')} on {info.get('host', '?')} since "
            f"{info.get('started', '?')} ({info.get('command') or '?'}; lock {path})")


@contextlib.contextmanager
def run_name_lock(run: str, command: str = "", reports: str | os.PathLike | None = None,
                  create: bool = True, wait_s: float = 0.0) -> Iterator[dict | None]:
    """Hold run ``run``'s lock for the ``with`` block: the first command that writes ``reports/<run>/`` (a
    pipeline, an eval, a prune, a report, a device import...) holds it, a second is refused at once with a
    :class:`RunLockedError` naming the holder (pid, host, start time, command).

    The lock is an ``flock`` on ``reports/.<run>.lock``, which holds the holder's info as JSON and is removed
    on release: a dead holder's lock is free again (the kernel drops the flock), and a clean exit leaves no file.
    Child processes of the holder (the pipeline's stages) inherit :data:`RUN_ENV` and pass through; so do DDP
    ranks > 0. ``create=False``: a missing ``reports`` folder is not created (a ``--root`` given on the command
    line, which the command checks itself) and nothing is locked. ``wait_s``: how long a short command waits for
    a holder to finish before it is refused (0, a pipeline: refused at once).
    """
    path = run_name_lock_path(run, reports)
    key = str(path.resolve() if path.parent.exists() else path.absolute())
    held = [p for p in os.environ.get(RUN_ENV, "").split(os.pathsep) if p]
    if (os.environ.get("RANK", "0") not in ("", "0") or key in held or not path.parent.parent.is_dir()
            or not create and not path.parent.is_dir()):
        yield None  # a nested holder, a DDP rank > 0, or a reports folder whose parent is missing (the command's
        return      # own check names the bad --root before anything is written)
    made_dir = not path.parent.exists()
    path.parent.mkdir(exist_ok=True)
    key = str(path.resolve())
    info = {"pid": os.getpid(), "run": run, "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = _take(path, run)
            break
        except RunLockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
        os.environ[RUN_ENV] = os.pathsep.join([*held, key])
        yield info
    finally:
        os.environ[RUN_ENV] = os.pathsep.join(held)
        if not held:
            os.environ.pop(RUN_ENV, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # before the unlock: a waiter that opened this inode re-checks and retries
        os.close(fd)
        if made_dir:
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only when still empty


def _take(path: Path, run: str) -> int:
    """An fd on ``path`` holding its exclusive flock, or RunLockedError naming the holder. Retries when the file
    it locked was unlinked by a releasing holder in between (then a fresh file is the lock)."""
    import fcntl  # POSIX; the project's commands run on Linux and macOS

    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(f"cannot start: {_describe_run(run, _read_holder(path), path)}") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # we locked a file the previous holder just removed: try the new one
    raise RunLockedError(f"cannot start: {path}: the lock keeps changing hands; try again")


def run_name_holder(run: str, reports: str | os.PathLike | None = None) -> dict | None:
    """The holder's info while a live process holds run ``run``'s lock, else None."""
    import fcntl

    path = run_name_lock_path(run, reports)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(path) or {"pid": None, "run": run}
    finally:
        os.close(fd)
    return None
