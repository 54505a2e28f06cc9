"""``sam3m4 prune``: thin checkpoints, training pictures and (optionally) feature caches; dry run by default.

    sam3m4 prune --run demo                  # dry run: what would go, sizes before/after; deletes nothing
    sam3m4 prune --run demo --apply          # deletes exactly what the newest dry run listed
    sam3m4 prune --keep-last 3 --vis-keep-every 10 --include-cache   # (then --apply with the same options)

Kept: each phase's ``phase{P}_best.pt`` and ``--keep-last`` newest epoch checkpoints, the newest video
checkpoints, the pictures of every ``--vis-keep-every``-th epoch (plus each phase's first and last), anything a
report or run manifest references, and every file it does not recognise; the teacher and the quantized models
are never looked at. ``--apply`` refuses while a training run holds the run lock, and when the tree changed
since the dry run. Each run writes ``logs/storage_prune_{dry_run,apply}_<UTC ts>.log`` and records the sizes
of ``checkpoints/distillation``, ``checkpoints/video_distillation``, ``logs/distillation/vis``,
``data/sa_v/cached_features`` and the whole tree in ``reports/<run>/results.jsonl`` (report section 7).
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from sam3m4.fileio import check_contained
from sam3m4.flags import ranged
from sam3m4.paths import REPORTS_ROOT
from sam3m4.results import schema

SHOWN = 20  # planned deletions printed; the log has them all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="project root: an existing folder with checkpoints/, logs/, data/ or reports/ (default: .)")
    ranged(parser.add_argument("--keep-last", type=int, default=2,
                        help="newest epoch checkpoints kept per phase and for video, besides the best (default: 2)"), 1)
    ranged(parser.add_argument("--vis-keep-every", type=int, default=5,
                        help="keep logs/distillation/vis pictures of every N-th epoch, plus each phase's first and "
                             "last (default: 5; 1 keeps all)"), 1)
    parser.add_argument("--include-cache", action="store_true",
                        help="also delete the teacher-feature caches under data/*/cached_features (rebuilt on demand)")
    parser.add_argument("--apply", action="store_true",
                        help="delete what the newest dry run listed (refused if the tree changed since)")
    parser.add_argument("--run", default="demo", help="sizes go to reports/<run>/results.jsonl (default: demo)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sam3m4.env import human_bytes
    from sam3m4.results import ResultsStore
    from sam3m4.runlock import describe, lock_holder, lock_path
    from sam3m4.storage import prune

    settings = prune.Settings(keep_last=args.keep_last, vis_keep_every=args.vis_keep_every,
                              include_cache=args.include_cache)
    real = prune.check_args(args.root, settings)  # before anything is deleted or written
    check_contained(ResultsStore(args.run, root=real / REPORTS_ROOT).path, real)  # its sizes go there
    if args.apply:
        done = prune.apply(args.root, settings)
        plan, after = done.plan, done.after
        body = [f"executed dry run: {_rel(done.dry_run_log, plan.root)}",
                f"deleted {len(done.deleted)} files ({human_bytes(sum(e.size for e in done.deleted))}), "
                f"left {len(done.skipped)}, removed {len(done.removed_dirs)} empty folders",
                *(f"  left: {s}" for s in done.skipped), *(f"  removed folder: {d}" for d in done.removed_dirs), ""]
        log = prune.write_log(plan, "apply", after=after, body=body,
                              extra={"dry_run_log": _rel(done.dry_run_log, plan.root),
                                     "deleted": [e.key() for e in done.deleted], "skipped": done.skipped,
                                     "removed_dirs": done.removed_dirs})
        print("\n".join(prune.table(plan, after)))
        left = f"; left {len(done.skipped)} that changed (see the log)" if done.skipped else ""
        print(f"\ndeleted {len(done.deleted)} files ({human_bytes(sum(e.size for e in done.deleted))}) listed by "
              f"{_rel(done.dry_run_log, plan.root)}{left}")
    else:
        plan = prune.make_plan(args.root, settings)
        holder = lock_holder(plan.root)
        body = [f"run lock: {describe(holder, lock_path(plan.root))}; --apply refuses until it ends", ""] \
            if holder else []
        log = prune.write_log(plan, "dry_run", body=body)
        after = None
        print("\n".join(prune.table(plan)))
        print(f"\ndry run: would delete {len(plan.delete)} files ({human_bytes(sum(e.size for e in plan.delete))}); "
              "nothing deleted")
        for e in plan.delete[:SHOWN]:
            print(f"  {e.path}  {human_bytes(e.size)}")
        if len(plan.delete) > SHOWN:
            print(f"  ... and {len(plan.delete) - SHOWN} more (all in the log)")
        if holder:
            print(f"warning: {body[0]}")
    for w in plan.warnings[:SHOWN]:
        print(f"warning: {w}")
    _record(args.run, plan, after, log)
    print(f"log: {_rel(log, plan.root)}")
    if not args.apply:
        print(f"to delete: sam3m4 prune --apply{_options(args)}")
    return 0


def _record(run_name: str, plan, after: dict | None, log: Path) -> None:
    """before_bytes per root and total, and planned_after_bytes (dry run) or after_bytes (apply); the log path."""
    from sam3m4.results import ResultsStore, sha256_file

    store = ResultsStore(run_name, root=plan.root / REPORTS_ROOT)
    mode = "apply" if after is not None else "dry_run"
    where = (f"measured on {socket.gethostname()} by sam3m4 prune{' --apply' if after is not None else ''} "
             f"(os.scandir apparent file sizes, symlinks not followed, hard links counted once; total = the whole "
             f"project root), {plan.settings.describe()}; log {_rel(log, plan.root)}")
    metric, values = (schema.AFTER_BYTES, after) if after is not None else (schema.PLANNED_AFTER_BYTES, plan.after())
    for subject in [*plan.roots, "total"]:
        store.record(stage=schema.STORAGE, subject=subject, metric=schema.BEFORE_BYTES, value=int(plan.before[subject]),
                     unit="bytes", provenance=where)
        store.record(stage=schema.STORAGE, subject=subject, metric=metric, value=int(values[subject]), unit="bytes",
                     provenance=where)
    store.record(stage=schema.STORAGE, subject=schema.LOGS, metric=f"{mode}_log", value=_rel(log, plan.root),
                 artifact=_rel(log, plan.root), hash_artifact=False, sha256=sha256_file(log), provenance=where)


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _options(args: argparse.Namespace) -> str:
    """The options an --apply needs to match this dry run."""
    root = "" if args.root == Path(".") else f" --root {args.root}"
    cache = " --include-cache" if args.include_cache else ""
    return f"{root} --keep-last {args.keep_last} --vis-keep-every {args.vis_keep_every}{cache} --run {args.run}"
