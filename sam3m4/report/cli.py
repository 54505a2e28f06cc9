"""Render reports/<run>/report.md from the run's results store (the user's template, every cell sourced)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run name (folder under --root)")
    parser.add_argument("--root", default="reports", help="reports folder (default: reports)")
    parser.add_argument("--author", default=None, help="author for the header (default: $SAM3M4_AUTHOR or user)")
    parser.add_argument("--targets", default=None,
                        help="targets file (default: $SAM3M4_TARGETS, else acceptance/targets.yaml in or above the "
                             "cwd); a broken file stops the report")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sam3m4.errors import Sam3m4Error
    from sam3m4.report import render_report
    from sam3m4.results import ResultsStore, TargetsNotFound, load_targets_file

    from sam3m4.visual.checklist import import_for_report

    try:  # before anything is written: a broken targets file stops the report here
        targets_file = load_targets_file(args.targets)
    except TargetsNotFound:
        targets_file = None  # render_report says so in the header
    store = ResultsStore(args.run, root=args.root)
    import_for_report(args.run, root=args.root)  # outputs/visual_eval/<run>/checklist.json, when saved
    if not store.path.exists():
        raise Sam3m4Error(f"{store.path}: no results store for run {args.run!r} (run a stage with --run {args.run})")
    out = render_report(args.run, root=args.root, author=args.author, targets_path=args.targets,
                        targets_file=targets_file)
    print(f"wrote {out}")
    return 0
