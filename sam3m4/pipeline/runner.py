"""Run the stages, side by side where they do not depend on each other; skip a stage whose command, inputs and
outputs are unchanged since it last ran.

The run state lives in ``reports/<run>/pipeline_state.json`` (written atomically after every stage): per
stage the command, the sha256 of its inputs and of its outputs, its exit code, when it started and finished (UTC)
and how long it took. A stage
is skipped when its command and input hash equal the recorded ones and its outputs still hash to what it
left behind; anything else (an edited config, a deleted checkpoint, a new teacher) re-runs it, and because
its outputs then change, every stage that reads them re-runs too.

File hashes are memoised by (size, mtime_ns) in the state, so an unchanged 500 MB folder is not read again.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from sam3m4.errors import DataFormatError, Sam3m4Error
from sam3m4.fileio import atomic_write_json, staged_log
from sam3m4.pipeline.stages import Stage
from sam3m4.schemas import load_file
from sam3m4.schemas.pipeline import STATE_FORMAT, PipelineState



class StageFailed(Sam3m4Error):
    """A stage that must succeed exited non-zero; the message names it and its command."""


@dataclass
class Outcome:
    """What happened to one stage in this invocation."""

    name: str
    status: str
    """``ran``, ``skipped`` (unchanged), ``failed (allowed)``."""
    seconds: float
    rc: int | None = None


class Hasher:
    """sha256 of files, folders (sorted relative paths + file hashes, symlinks not followed) and globs."""

    def __init__(self, memo: dict | None = None):
        self.memo = memo if memo is not None else {}  # path -> [size, mtime_ns, sha256]

    def file(self, path: Path) -> str:
        st = path.stat()
        key = str(path)
        hit = self.memo.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        self.memo[key] = [st.st_size, st.st_mtime_ns, h.hexdigest()]
        return h.hexdigest()

    def paths(self, specs: list[str]) -> str:
        """One digest over ``specs`` (a missing path counts as 'missing', so creating it changes the hash)."""
        h = hashlib.sha256()
        for spec in specs:
            matches = sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]
            h.update(f"{spec}\0{len(matches)}\0".encode())
            for m in matches:
                p = Path(m)
                if p.is_symlink() or p.is_file():
                    h.update(f"{m}\0{self.file(p) if p.is_file() else os.readlink(p)}\0".encode())
                elif p.is_dir():
                    for root, dirs, files in os.walk(p):  # os.walk does not follow symlinked folders
                        dirs.sort()
                        for name in sorted(files):
                            f = Path(root) / name
                            if name.endswith((".lock", ".tmp")) or name.startswith("."):
                                continue  # lock files and interrupted writes are not content
                            h.update(f"{f}\0{self.file(f) if f.is_file() else 'link'}\0".encode())
                else:
                    h.update(f"{m}\0missing\0".encode())
        return h.hexdigest()

    def exist(self, specs: list[str]) -> bool:
        return all(glob.glob(s) if glob.has_magic(s) else Path(s).exists() for s in specs)


def load_state(path: Path) -> dict:
    """The run state (:class:`sam3m4.schemas.pipeline.PipelineState`), or an empty one when there is none yet.

    A damaged file is a DataFormatError naming the file and the field (remove it to re-run every stage): it is
    never half-used, and never silently thrown away with hours of stage results.
    """
    if not path.exists():
        return {"format": STATE_FORMAT, "stages": {}, "hashes": {}}
    try:
        return load_file(path, PipelineState).model_dump(mode="json")
    except DataFormatError as err:
        raise DataFormatError(f"{err} (fix it, or remove it to re-run every stage)") from None


def save_state(path: Path, state: dict) -> None:
    atomic_write_json(path, state, indent=1)


def _clock(seconds: float) -> str:
    """``3m07.5s``; rounded to tenths first, so 59.96 s reads 1m00.0s, not 0m60.0s."""
    tenths = round(seconds * 10)
    return f"{tenths // 600}m{tenths % 600 / 10:04.1f}s"


def run_stages(stages: list[Stage], state_path: Path, *, force: bool = False, log_dir: Path | None = None,
               after: dict | None = None, jobs: int | None = None) -> list[Outcome]:
    """Run ``stages``, each as soon as the stages it depends on (:func:`dependencies`) have ended, at most ``jobs``
    at a time (None: the CPU count; 1: one after the other, in order); returns what happened to each, in order.

    Each stage prints one line when it starts (naming the stages running beside it) and one when it ends.
    ``after``: {stage name: callable()} run in-process right before that stage (the manifest writer); such a
    stage runs alone, after every stage before it. A stage that must succeed and fails raises
    :class:`StageFailed` once the stages running beside it have ended (its state is not saved, so the next
    invocation redoes it; theirs is); ``log_dir`` gets ``<stage>.log`` with each stage's output when given,
    else the output streams to the terminal.
    """
    after = after or {}
    jobs = max(1, jobs if jobs is not None else os.cpu_count() or 1)
    state = load_state(state_path)
    hasher = Hasher(state.setdefault("hashes", {}))
    needs = dependencies(stages, hooked=set(after))
    done: dict[int, Outcome] = {}
    running: dict = {}  # future -> (index, stage, head, shown, argv)
    failure = None
    t_start = time.perf_counter()

    def start_ready(pool: ThreadPoolExecutor) -> None:
        """Start (or skip) every stage whose dependencies have ended, in table order, while a job is free. A stage
        depends only on earlier ones, so one skipped here can only unblock stages later in this same pass."""
        for i, stage in enumerate(stages):
            busy = {j for j, *_ in running.values()}
            if i in done or i in busy or not needs[i] <= done.keys():
                continue
            if len(running) >= jobs:
                return
            if stage.name in after:
                after[stage.name]()
            head = f"[pipeline {i + 1:2d}/{len(stages)}] {stage.name:<24}"
            previous = state["stages"].get(stage.name)
            argv = [c[1:] for c in stage.commands()]  # without the interpreter path: a new venv is not a change
            unchanged = (not force and not stage.always and previous is not None and previous["argv"] == argv
                         and previous["inputs"] == hasher.paths(stage.inputs) and hasher.exist(stage.outputs)
                         and previous["outputs"] == hasher.paths(stage.outputs))
            if unchanged:
                done[i] = Outcome(stage.name, "skipped", 0.0, previous.get("rc"))
                print(f"{head} skipped (inputs, command and outputs unchanged; ran {previous['finished']})", flush=True)
                continue
            shown = " && ".join(" ".join(["python", *c]) for c in argv)
            beside = ", ".join(stages[j].name for j in sorted(busy))
            print(f"{head} running{f' (alongside: {beside})' if beside else ''}: {shown}", flush=True)
            running[pool.submit(_timed_call, stage, log_dir)] = (i, stage, head, shown, argv)

    with ThreadPoolExecutor(max_workers=jobs) as pool:  # one thread per subprocess it waits for
        while True:
            if failure is None:
                start_ready(pool)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: running[f][0]):
                i, stage, head, shown, argv = running.pop(future)
                rc, seconds, started, peak = future.result()
                if rc != 0 and not stage.allow_fail:
                    where = f"; its output: {log_dir / (stage.name + '.log')}" if log_dir is not None else ""
                    failure = failure or StageFailed(f"stage {stage.name} failed (exit {rc}) after "
                                                     f"{_clock(seconds)}: {shown}{where}")
                    continue
                status = "ran" if rc == 0 else "failed (allowed)"
                state["stages"][stage.name] = {"argv": argv, "inputs": hasher.paths(stage.inputs),
                                               "outputs": hasher.paths(stage.outputs), "rc": rc,
                                               "seconds": round(seconds, 1), "started": started,
                                               "peak_rss_mb": peak,
                                               "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                save_state(state_path, state)
                done[i] = Outcome(stage.name, status, seconds, rc)
                print(f"{head} {status} in {_clock(seconds)} (exit {rc}; pipeline "
                      f"{_clock(time.perf_counter() - t_start)})", flush=True)
    if failure is not None:
        raise failure
    return [done[i] for i in sorted(done)]


def dependencies(stages: list[Stage], hooked: set[str] = frozenset()) -> list[set[int]]:
    """For each stage, the indices of the earlier stages it waits for, from what the stages declare.

    Stage ``i`` waits for an earlier stage ``j`` when ``j`` writes what ``i`` reads or writes, when ``i`` writes
    what ``j`` reads, or when either runs alone: :attr:`Stage.solo`, ``always``, a stage in ``hooked`` (an
    in-process step runs before it), or one that declares no inputs and no outputs (nothing says what it
    touches). Stages of one :attr:`Stage.group` never wait for each other. Paths overlap when one is the other or
    lies inside it; a glob counts as the folder before its first wildcard.
    """
    def alone(s: Stage) -> bool:
        return s.solo or s.always or s.name in hooked

    needs: list[set[int]] = []
    for i, s in enumerate(stages):
        wait_for = set()
        for j, t in enumerate(stages[:i]):
            if alone(s) or alone(t):
                wait_for.add(j)
            elif s.group is not None and s.group == t.group:
                continue
            elif (not (s.inputs or s.outputs) or not (t.inputs or t.outputs)
                  or _overlap(t.outputs, [*s.inputs, *s.outputs]) or _overlap(s.outputs, t.inputs)):
                wait_for.add(j)
        needs.append(wait_for)
    return needs


def _overlap(a: list[str], b: list[str]) -> bool:
    """Whether a path of ``a`` and one of ``b`` are the same or one lies inside the other (globs: see above)."""
    def root(spec: str) -> tuple[str, ...]:
        parts = Path(os.path.normpath(spec)).parts
        cut = next((k for k, part in enumerate(parts) if glob.has_magic(part)), len(parts))
        return parts[:cut]

    return any(x[:len(y)] == y or y[:len(x)] == x for x in map(root, a) for y in map(root, b))


def _timed_call(stage: Stage, log_dir: Path | None) -> tuple[int, float, str, float | None]:
    """(exit code, seconds, UTC start time, peak resident MB): the start goes to the run state for the report's
    timeline, the peak memory next to the time (the rehearsal's per-stage table)."""
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.perf_counter()
    rc, peak = _call(stage, log_dir)
    return rc, time.perf_counter() - t0, started, peak


def _peak_mb(ru_maxrss: int) -> float:
    """``ru_maxrss`` in MB: kilobytes on Linux, bytes on macOS."""
    return round(ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _call(stage: Stage, log_dir: Path | None) -> tuple[int, float | None]:
    """Run the stage's commands in order until one fails: (exit code, 0 when all succeed; the largest peak
    resident memory in MB of one command and the processes it waited for, None where wait4 is missing)."""
    with staged_log(log_dir / f"{stage.name}.log") if log_dir is not None else contextlib.nullcontext() as log:
        return _call_logged(stage, log)


def _call_logged(stage: Stage, log) -> tuple[int, float | None]:
    """:func:`_call`'s commands, their output into ``log`` (an open file, or None: the terminal)."""
    peak = None
    # in a log file, libraries' own tqdm bars (coremltools' MIL passes) would write every redraw: TQDM_DISABLE
    # turns off the bars that leave tqdm's ``disable`` at its default; sam3m4's own pass ``disable=None`` (a TTY)
    env = {**os.environ, "TQDM_DISABLE": "1"} if log else None
    for command in stage.commands():
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT if log else None, env=env)
        if hasattr(os, "wait4"):  # the child's own rusage (getrusage(CHILDREN) mixes stages run alongside)
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except KeyboardInterrupt:
                proc.kill()
                raise
            proc.returncode = os.waitstatus_to_exitcode(status)
            peak = max(peak or 0.0, _peak_mb(usage.ru_maxrss))
        rc = proc.wait()
        if rc != 0:
            return rc, peak
    return 0, peak


def format_outcomes(outcomes: list[Outcome], wall_seconds: float | None = None) -> str:
    """A small table: stage, status, seconds; the last line is the wall time (stages of a group overlap)."""
    width = max(len(o.name) for o in outcomes)
    lines = [f"{'stage'.ljust(width)}  status            time", f"{'-' * width}  ----------------  --------"]
    lines += [f"{o.name.ljust(width)}  {o.status:<16}  {_clock(o.seconds):>8}" for o in outcomes]
    wall = sum(o.seconds for o in outcomes) if wall_seconds is None else wall_seconds
    lines.append(f"{'wall time'.ljust(width)}  {'':16}  {_clock(wall):>8}")
    return "\n".join(lines)
