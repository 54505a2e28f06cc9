"""Plan and apply the storage prune: which checkpoints, pictures and caches go, measured before and after.

Pure functions over a project root; ``sam3m4 prune`` (:mod:`sam3m4.storage.cli`) prints and records them.

    plan = make_plan(".", Settings(keep_last=2))      # nothing is touched
    log = write_log(plan, "dry_run")                  # logs/storage_prune_dry_run_<UTC ts>.log
    done = apply(".", Settings(keep_last=2))          # deletes exactly what the newest dry-run log lists

What is kept, per configured root (:data:`ROOTS`, plus every ``data/*/cached_features``):

* ``checkpoints/distillation``: ``phase{P}_best.pt`` and the ``keep_last`` newest ``phase{P}_epoch{E}_step{S}.pt``
  of each phase by (epoch, step);
* ``checkpoints/video_distillation``: the ``keep_last`` newest ``video_epoch{E}.pt`` (a best file is not a
  recognised name, so it is kept);
* ``logs/distillation/vis`` (``phase{P}_epoch{E}_{j}.png``, written per epoch by the recipe): every picture of
  each phase's first and last epoch and of every ``vis_keep_every``-th epoch;
* ``data/*/cached_features``: everything, unless ``include_cache`` (then every file is deletable);
* in every root: anything a report or run manifest references (``reports/*/results*.jsonl`` artifacts,
  ``reports/*/manifest.json`` ``"artifacts"``; a referenced folder keeps all under it), every file whose name
  is not recognised, every symlink (never followed; one that points outside its root is reported) and anything
  whose real path is not under its root.

Safety: only regular files inside the configured roots are ever unlinked, and only empty folders inside them
are removed. :func:`apply` refuses while a run holds the run lock (:mod:`sam3m4.runlock`), takes the lock
itself while deleting, and refuses unless the newest dry-run log's fingerprint (sha256 over the settings and
the sorted (path, size, mtime_ns) of the planned deletions and of the files kept in the pruned roots) equals
the plan recomputed now. Sizes are apparent file sizes from ``os.scandir`` (``lstat``; symlinks not followed,
hard links counted once).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from sam3m4.checkpoint import NAME as CKPT_NAME, VIDEO_NAME, best_name
from sam3m4.env import human_bytes
from sam3m4.errors import ConfigError, DataFormatError, Sam3m4Error
from sam3m4.fileio import atomic_write_text, check_contained
from sam3m4.paths import (CACHE_GLOB, CHECKPOINTS, DISTILL_DIR, LOGS, REPORTS_ROOT, RUN_MANIFEST, VIDEO_CACHE_DIR,
                          VIDEO_DIR, VIS_DIR)
from sam3m4.runlock import describe, lock_holder, lock_path, run_lock
from sam3m4.schemas import load_file, parse_json, validate
from sam3m4.schemas.pipeline import ManifestReferences
from sam3m4.schemas.storage import PruneLog

# path (relative to the project root) -> kind of keep rule; the report's section 7 rows, in order
ROOTS = {DISTILL_DIR: "checkpoints", VIDEO_DIR: "video", VIS_DIR: "vis", VIDEO_CACHE_DIR: "cache"}
VIS_NAME = re.compile(r"^phase(?P<phase>\d+)_epoch(?P<epoch>\d+)_(?P<index>\d+)\.png$")
LOG_DIR = LOGS  # the prune logs: logs/storage_prune_{dry_run,apply}_<time>.log
MARK = "SAM3M4_PRUNE "  # the machine-readable last line of a log: MARK + JSON
BEST_NAME = re.compile(r"^phase(?P<phase>\d+)_best\.pt$")
PROJECT_MARKS = (CHECKPOINTS, LOGS, "data", REPORTS_ROOT)  # a project root has at least one of these


class PruneRefused(Sam3m4Error):
    """``--apply`` will not run: no dry run, the tree changed since, or a run holds the lock."""


@dataclass(frozen=True)
class Settings:
    """What a prune keeps; a dry run and its apply must use the same."""

    keep_last: int = 2
    """Newest epoch checkpoints kept per phase (and video checkpoints), besides the best."""
    vis_keep_every: int = 5
    """Pictures kept for every N-th epoch (plus each phase's first and last); 1 keeps all."""
    include_cache: bool = False
    """Whether ``data/*/cached_features`` is pruned (then wholly, except referenced files)."""

    def describe(self) -> str:
        return (f"keep-last {self.keep_last}, vis-keep-every {self.vis_keep_every}, "
                f"cache {'pruned' if self.include_cache else 'kept'}")


@dataclass(frozen=True)
class Entry:
    """One file under a root: ``path`` relative to the project root (``/``-separated)."""

    path: str
    size: int
    mtime_ns: int
    kind: str  # "file", "symlink" or "other" (fifo, socket ...)

    def key(self) -> list:
        return [self.path, self.size, self.mtime_ns]


@dataclass
class Plan:
    root: Path
    """The project root, resolved."""
    settings: Settings
    roots: list[str]
    """Every configured root (measured), relative to ``root``."""
    pruned: list[str]
    """The roots whose files may be deleted this time (caches only with ``include_cache``)."""
    delete: list[Entry] = field(default_factory=list)
    keep: list[tuple[Entry, str]] = field(default_factory=list)
    """(entry, reason) for every file kept in a pruned root."""
    warnings: list[str] = field(default_factory=list)
    before: dict[str, int] = field(default_factory=dict)
    """Bytes per root and ``total`` (the whole project root)."""

    def fingerprint(self) -> str:
        blob = json.dumps({"settings": dataclasses.asdict(self.settings),
                           "delete": sorted(e.key() for e in self.delete),
                           "keep": sorted(e.key() for e, _ in self.keep)}, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def after(self) -> dict[str, int]:
        """Bytes per root and ``total`` once the planned deletions are gone."""
        out = dict(self.before)
        for e in self.delete:
            out[root_of(e.path, self.roots)] -= e.size
            out["total"] -= e.size
        return out


# --- measuring ---------------------------------------------------------------------------------------------
def tree_bytes(path: str | os.PathLike, _seen: set | None = None) -> int:
    """Apparent bytes of the files and symlinks under ``path`` (``os.scandir``, symlinks not followed, a hard
    link counted once); 0 when ``path`` does not exist, the link's own size when it is a symlink."""
    seen = set() if _seen is None else _seen
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not os.path.isdir(path) or os.path.islink(path):
        return st.st_size
    total = 0
    try:
        entries = list(os.scandir(path))
    except OSError:  # unreadable folder: counted as empty, not a crash
        return 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                total += tree_bytes(entry.path, seen)
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if st.st_nlink > 1:
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
        total += st.st_size
    return total


def walk(root: Path, rel: str) -> list[Entry]:
    """Every file, symlink and special file under ``root/rel`` (symlinked folders are leaves)."""
    out = []
    stack = [root / rel]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # vanished while listing
                    continue
                path = Path(entry.path).relative_to(root).as_posix()
                if entry.is_symlink():
                    out.append(Entry(path, st.st_size, st.st_mtime_ns, "symlink"))
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    kind = "file" if entry.is_file(follow_symlinks=False) else "other"
                    out.append(Entry(path, st.st_size, st.st_mtime_ns, kind))
    return sorted(out, key=lambda e: e.path)


def root_of(path: str, roots: list[str]) -> str:
    return next(r for r in roots if path.startswith(r + "/"))


def configured_roots(root: Path) -> list[str]:
    """:data:`ROOTS` plus every ``data/*/cached_features`` folder found (not through symlinks)."""
    found = list(ROOTS)
    for cache in sorted(root.glob(CACHE_GLOB)):
        rel = cache.relative_to(root).as_posix()
        if rel not in found:
            found.append(rel)
    return found


def root_bytes(real: Path, rel: str, warnings: list[str] | None = None) -> tuple[int, bool]:
    """(bytes under the root ``rel``, whether it is a real folder that can be pruned); a root that is a symlink
    or under one is neither followed nor measured (0, False), with a warning."""
    path = real / rel
    if not os.path.lexists(path):
        return 0, False
    if os.path.realpath(path) != str(path) or not path.is_dir():
        if warnings is not None:
            warnings.append(f"{rel}: a symlink (or under one) to {os.path.realpath(path)}, or not a folder; not "
                            "followed, not measured, not pruned")
        return 0, False
    return tree_bytes(path), True


def kind_of(rel: str) -> str:
    return ROOTS.get(rel, "cache")


# --- references ------------------------------------------------------------------------------------------
def references(root: Path, warnings: list[str], aliases: tuple[Path, ...] = ()) -> dict[str, str]:
    """Paths (relative to ``root``) the reports and run manifests name -> where they are named. Absolute paths
    count when under ``root`` or one of its ``aliases`` (the unresolved spelling of a symlinked root)."""
    refs: dict[str, str] = {}

    def add(value, where: str) -> None:
        rel = relative(value, (root, *aliases))
        if rel:
            refs.setdefault(rel, where)

    for results in sorted(root.glob(f"{REPORTS_ROOT}/*/results*.jsonl")):
        with open(results, encoding="utf-8", errors="replace") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    artifact = json.loads(line).get("artifact")
                except (ValueError, AttributeError):
                    warnings.append(f"{results.relative_to(root)}:{lineno}: unreadable record, its artifact (if "
                                    f"any) is not protected")
                    continue
                if isinstance(artifact, str):
                    add(artifact, f"{results.relative_to(root)}:{lineno}")
    for manifest in sorted(root.glob(f"{REPORTS_ROOT}/*/{RUN_MANIFEST}")):
        where = manifest.relative_to(root).as_posix()
        try:
            paths = load_file(manifest, ManifestReferences).paths()
        except DataFormatError as err:
            raise DataFormatError(f"{where}: unreadable run manifest ({str(err).removeprefix(str(manifest) + ': ')}); "
                                  "fix or remove it, prune cannot tell what it protects") from None
        for path in paths:
            add(path, where)
    return refs


def relative(value, bases: tuple[Path, ...]) -> str | None:
    """A referenced path as ``/``-separated and relative to the project root (``bases``: its spellings); None
    when outside it or empty. A relative path is taken as relative to the project root."""
    if not isinstance(value, str) or not value.strip():
        return None
    p = Path(value)
    if p.is_absolute():
        for base in bases:
            try:
                p = p.relative_to(base)
                break
            except ValueError:
                continue
        else:
            return None
    rel = os.path.normpath(p).replace(os.sep, "/")
    return None if rel in (".", "") or rel.startswith("../") or rel == ".." else rel


def referenced_by(path: str, refs: dict[str, str]) -> str | None:
    parts = path.split("/")
    for n in range(len(parts), 0, -1):
        hit = refs.get("/".join(parts[:n]))
        if hit:
            return hit
    return None


# --- the plan ----------------------------------------------------------------------------------------------
def keep_rules(kind: str, files: list[Entry], rel_root: str, settings: Settings) -> dict[str, str]:
    """path -> reason for the files the rule of ``kind`` keeps; the rest of ``files`` may go."""
    keep: dict[str, str] = {}
    groups: dict[int, list[tuple[tuple[int, int], str]]] = {}
    for e in files:
        name = e.path[len(rel_root) + 1:]
        if "/" in name and kind != "cache":
            keep[e.path] = "in a subfolder (not a recognised name)"
        elif kind == "checkpoints" and (m := CKPT_NAME.match(name)):
            groups.setdefault(int(m["phase"]), []).append(((int(m["epoch"]), int(m["step"])), e.path))
        elif kind == "checkpoints" and (m := BEST_NAME.match(name)) and name == best_name(int(m["phase"])):
            keep[e.path] = "best"
        elif kind == "video" and (m := VIDEO_NAME.match(name)):
            groups.setdefault(0, []).append(((int(m["epoch"]), 0), e.path))
        elif kind == "vis" and (m := VIS_NAME.match(name)):
            groups.setdefault(int(m["phase"]), []).append(((int(m["epoch"]), int(m["index"])), e.path))
        elif kind != "cache":
            keep[e.path] = "not a recognised name"
    for phase, items in groups.items():
        items.sort()
        if kind == "vis":
            epochs = sorted({ep for (ep, _), _ in items})
            kept = {epochs[0], epochs[-1]} | {ep for ep in epochs if ep % settings.vis_keep_every == 0}
            keep.update({p: f"epoch {ep} picture" for (ep, _), p in items if ep in kept})
        else:
            what = "video" if kind == "video" else f"phase{phase}"
            keep.update({p: f"newest {settings.keep_last} of {what}" for _, p in items[-settings.keep_last:]})
    return keep


def check_args(root: str | os.PathLike, settings: Settings) -> Path:
    """``root`` resolved, once it is an existing project root and ``settings`` are valid; else a one-line
    :class:`ConfigError` naming the option. Called before anything is created (a typo in ``--root`` must not
    grow a ``logs/`` + ``reports/`` tree, a bad apply must not take the run lock)."""
    for option, value in (("--keep-last", settings.keep_last), ("--vis-keep-every", settings.vis_keep_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{option}: must be an integer >= 1 (got {value!r})")
    if not os.path.isdir(root):
        what = "not a folder" if os.path.lexists(root) else "no such folder"
        raise ConfigError(f"--root {root}: {what}")
    if not any(os.path.lexists(Path(root) / name) for name in PROJECT_MARKS):
        raise ConfigError(f"--root {root}: not a sam3m4 project root (none of {', '.join(PROJECT_MARKS)} in it)")
    real = Path(os.path.realpath(root))
    check_contained(real / LOG_DIR / "storage_prune.log", real)  # a logs/ symlinked out of the root: refused
    return real


def make_plan(root: str | os.PathLike = ".", settings: Settings = Settings()) -> Plan:
    """What a prune of ``root`` with ``settings`` would delete and keep, and the sizes now; touches nothing."""
    real = check_args(root, settings)
    plan = Plan(root=real, settings=settings, roots=configured_roots(real), pruned=[])
    refs = references(real, plan.warnings, aliases=(Path(os.path.abspath(root)),))
    for rel in plan.roots:
        plan.before[rel], usable = root_bytes(real, rel, plan.warnings)
        if not usable:
            continue
        kind = kind_of(rel)
        if kind == "cache" and not settings.include_cache:
            continue
        plan.pruned.append(rel)
        entries = walk(real, rel)
        rules = keep_rules(kind, [e for e in entries if e.kind == "file"], rel, settings)
        for e in entries:
            reason = _safety_reason(real, rel, e, plan.warnings) or (
                f"referenced by {hit}" if (hit := referenced_by(e.path, refs)) else rules.get(e.path))
            if reason:
                plan.keep.append((e, reason))
            else:
                plan.delete.append(e)
    plan.before["total"] = tree_bytes(real)
    return plan


def _safety_reason(real: Path, rel_root: str, e: Entry, warnings: list[str]) -> str | None:
    """Why ``e`` must be kept whatever the rules say (symlink, special file, outside its root), else None."""
    path = real / e.path
    if e.kind == "symlink":
        target = os.path.realpath(path)
        if not target.startswith(str(real / rel_root) + os.sep):
            warnings.append(f"{e.path}: symlink to {target}, outside {rel_root}; kept, not followed")
        return "symlink (not followed)"
    if e.kind != "file":
        return "not a regular file"
    if os.path.realpath(path) != str(path):
        warnings.append(f"{e.path}: real path {os.path.realpath(path)} is not under {rel_root}; kept")
        return "outside its root"
    return None


# --- logs --------------------------------------------------------------------------------------------------
def timestamp() -> str:
    """UTC, sortable, unique enough for two runs in a second: ``20250101T120000.123456Z``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def table(plan: Plan, after: dict[str, int] | None = None) -> list[str]:
    """Per root: before, after (planned unless given), saved, files deleted/kept."""
    after = after or plan.after()
    rows = [("root", "before", "after", "saved", "delete", "keep")]
    for rel in [*plan.roots, "total"]:
        n_del = sum(1 for e in plan.delete if e.path.startswith(rel + "/")) if rel != "total" else len(plan.delete)
        n_keep = sum(1 for e, _ in plan.keep if e.path.startswith(rel + "/")) if rel != "total" else len(plan.keep)
        state = "" if rel == "total" or rel in plan.pruned else (
            " (not pruned)" if os.path.lexists(plan.root / rel) else " (absent)")
        rows.append((rel + state, human_bytes(plan.before[rel]), human_bytes(after[rel]),
                     human_bytes(plan.before[rel] - after[rel]), str(n_del), str(n_keep)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]


def write_log(plan: Plan, mode: str, ts: str | None = None, *, after: dict[str, int] | None = None,
              body: list[str] = (), extra: dict | None = None) -> Path:
    """Write ``logs/storage_prune_<mode>_<ts>.log`` atomically: readable text, then one ``SAM3M4_PRUNE {json}``
    line listing every planned deletion (path, size, mtime_ns), the settings and the fingerprint. ``after``:
    measured sizes (apply), else the planned ones are shown."""
    ts = ts or timestamp()
    out = plan.root / LOG_DIR / f"storage_prune_{mode}_{ts}.log"
    fp = plan.fingerprint()
    lines = [f"sam3m4 prune {mode.replace('_', ' ')} at {ts}", f"root: {plan.root}",
             f"settings: {plan.settings.describe()}", f"fingerprint: {fp}", "", *table(plan, after), "", *body,
             f"planned deletions ({len(plan.delete)} files, {human_bytes(sum(e.size for e in plan.delete))}):",
             *(f"  {e.path}  {e.size} B  mtime_ns {e.mtime_ns}" for e in plan.delete),
             "", f"kept in pruned roots ({len(plan.keep)} files):", *(f"  {e.path}  ({why})" for e, why in plan.keep),
             "", f"warnings ({len(plan.warnings)}):", *(f"  {w}" for w in plan.warnings), ""]
    data = {"version": 1, "mode": mode, "timestamp": ts, "root": str(plan.root),
            "settings": dataclasses.asdict(plan.settings), "fingerprint": fp,
            "delete": [e.key() for e in plan.delete], "before": plan.before, "planned_after": plan.after(),
            **({"after": after} if after else {}), **(extra or {})}
    check_contained(out, plan.root)
    return atomic_write_text(out, "\n".join(lines) + "\n" + MARK + json.dumps(data) + "\n")


def read_log(path: Path) -> dict:
    """The JSON of a log's ``SAM3M4_PRUNE`` line; :class:`PruneRefused` naming the log when there is none."""
    try:
        for line in reversed(Path(path).read_text(encoding="utf-8").splitlines()):
            if line.startswith(MARK):
                data = parse_json(line[len(MARK):], path)
                return validate(data, PruneLog, source=path).model_dump(mode="json", exclude_none=True)
    except (OSError, ValueError) as err:
        what = str(err).removeprefix(f"{path}: ") if isinstance(err, DataFormatError) else type(err).__name__
        raise PruneRefused(f"{path}: unreadable dry-run log ({what}); rerun the dry run") from None
    raise PruneRefused(f"{path}: no {MARK.strip()} line (not a complete dry-run log); rerun the dry run")


def newest_dry_run(root: Path) -> Path | None:
    logs = sorted((root / LOG_DIR).glob("storage_prune_dry_run_*.log"))
    return logs[-1] if logs else None


def applied_by(root: Path, dry_run_log: Path) -> Path | None:
    """The apply log that executed ``dry_run_log``, if any."""
    rel = dry_run_log.relative_to(root).as_posix()
    for log in sorted((root / LOG_DIR).glob("storage_prune_apply_*.log")):
        try:
            if read_log(log).get("dry_run_log") == rel:
                return log
        except PruneRefused:
            continue
    return None


# --- apply -------------------------------------------------------------------------------------------------
@dataclass
class Applied:
    plan: Plan
    dry_run_log: Path
    deleted: list[Entry]
    skipped: list[str]
    """Planned deletions left alone because they changed between the check and the unlink."""
    removed_dirs: list[str]
    after: dict[str, int]


def check_against(plan: Plan, log: Path) -> None:
    """:class:`PruneRefused` unless ``log`` (a dry run) planned exactly ``plan``."""
    data = read_log(log)
    rel = log.relative_to(plan.root).as_posix() if log.is_relative_to(plan.root) else str(log)
    if data.get("settings") != dataclasses.asdict(plan.settings):
        theirs = Settings(**data["settings"]).describe() if isinstance(data.get("settings"), dict) else "?"
        raise PruneRefused(f"the dry run {rel} used {theirs}, this apply {plan.settings.describe()}; rerun the dry "
                           "run with these options (or apply with its options)")
    if data.get("root") != str(plan.root):
        raise PruneRefused(f"the dry run {rel} was for {data.get('root')}, not {plan.root}; rerun the dry run")
    if data.get("fingerprint") != plan.fingerprint() or data.get("delete") != [e.key() for e in plan.delete]:
        raise PruneRefused(f"tree changed since the dry run {rel} (fingerprint {str(data.get('fingerprint'))[:12]} "
                           f"then, {plan.fingerprint()[:12]} now); rerun the dry run")


def apply(root: str | os.PathLike = ".", settings: Settings = Settings()) -> Applied:
    """Delete what the newest dry-run log lists, if the tree still matches it; refuses while a run holds the
    run lock, and holds it while deleting. Sizes after are measured, not computed."""
    real = check_args(root, settings)
    holder = lock_holder(real)
    if holder is not None:
        raise PruneRefused(f"refusing --apply while a run holds the run lock: {describe(holder, lock_path(real))}")
    with run_lock(real, name="sam3m4 prune --apply"):
        plan = make_plan(real, settings)
        log = newest_dry_run(real)
        if log is None:
            raise PruneRefused(f"no dry-run log in {real / LOG_DIR} (storage_prune_dry_run_*.log); run `sam3m4 prune` "
                               "without --apply first and read what it would delete")
        done_by = applied_by(real, log)
        if done_by is not None:
            raise PruneRefused(f"the newest dry run {log.relative_to(real).as_posix()} was already applied "
                               f"({done_by.relative_to(real).as_posix()}); run a new dry run first")
        check_against(plan, log)
        deleted, skipped = [], []
        for e in plan.delete:
            why = _unlink_checked(real, e, plan.roots)
            if why:
                skipped.append(f"{e.path}: {why}")
            else:
                deleted.append(e)
        removed = _remove_empty_dirs(real, [e.path for e in deleted], plan.roots)
        after = {rel: root_bytes(real, rel)[0] for rel in plan.roots}
        after["total"] = tree_bytes(real)  # still under the lock: its .json counted as in ``before``
    return Applied(plan, log, deleted, skipped, removed, after)


def _unlink_checked(real: Path, e: Entry, roots: list[str]) -> str | None:
    """Unlink ``e`` if it is still the regular file planned, inside its root; else the reason it was left."""
    path = real / e.path
    rel_root = root_of(e.path, roots)
    if not str(path).startswith(str(real / rel_root) + os.sep) or os.path.realpath(path) != str(path):
        return "outside its root or under a symlink; left alone"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "already gone"
    if not os.path.isfile(path) or os.path.islink(path) or (st.st_size, st.st_mtime_ns) != (e.size, e.mtime_ns):
        return "changed since the check; left alone"
    os.unlink(path)
    return None


def _remove_empty_dirs(real: Path, paths: list[str], roots: list[str]) -> list[str]:
    """Remove the folders the deletions left empty, up to (never including) their root."""
    removed = []
    for parent in sorted({str(Path(p).parent) for p in paths}, key=lambda s: -s.count("/")):
        rel_root = root_of(parent + "/", roots) if parent not in roots else parent
        d = Path(parent)
        while d.as_posix() != rel_root and d.as_posix().startswith(rel_root + "/"):
            try:
                os.rmdir(real / d)  # only succeeds on an empty folder
            except OSError:
                break
            removed.append(d.as_posix())
            d = d.parent
    return removed
