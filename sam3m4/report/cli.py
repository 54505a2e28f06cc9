"""Render reports/<run>/report.md from the run's results store (the user's template, every cell sourced).

    sam3m4 report --run rc2                                   # reports/rc2/report.md (+ plots/*.png)
    sam3m4 report --run rc2 --compare rc1 [--regression-gate]  # + reports/rc2/compare_rc1.md, printed
"""

from __future__ import annotations

import argparse

from sam3m4.flags import ranged
from sam3m4.paths import REPORTS_ROOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run name (folder under --root)")
    parser.add_argument("--root", default=REPORTS_ROOT, help=f"reports folder (default: {REPORTS_ROOT})")
    parser.add_argument("--author", default=None, help="author for the header (default: $SAM3M4_AUTHOR or user)")
    parser.add_argument("--targets", default=None,
                        help="targets file (default: $SAM3M4_TARGETS, else acceptance/targets.yaml in or above the "
                             "cwd); a broken file stops the report")
    parser.add_argument("--compare", default=None, metavar="BASELINE",
                        help="also compare with run BASELINE: every metric of both, the change, regressions "
                             "flagged (reports/<run>/compare_<BASELINE>.md)")
    ranged(parser.add_argument("--tolerance", type=float, default=0.05,
                        help="--compare: relative change for the worse flagged as a regression, for metrics whose "
                             "target has no regression_tolerance (default 0.05 = 5%%)"), 0)
    parser.add_argument("--regression-gate", action="store_true",
                        help="--compare: exit 1 when a gate whose target has a regression_tolerance is worse than "
                             "the baseline by more than it")
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
    comparison = None
    if args.regression_gate and not args.compare:
        raise Sam3m4Error("--regression-gate: needs --compare BASELINE (the run to compare with)")
    if args.compare:  # checked before anything is written
        from sam3m4.report.compare import compare_runs, format_comparison, write_comparison
        from sam3m4.results.runs import check_run_name

        check_run_name(args.compare, "--compare")
        comparison = compare_runs(args.run, args.compare, root=args.root, tolerance=args.tolerance,
                                  targets=targets_file.targets if targets_file else {})
    out = render_report(args.run, root=args.root, author=args.author, targets_path=args.targets,
                        targets_file=targets_file)
    print(f"wrote {out}")
    if comparison is None:
        return 0
    print(format_comparison(comparison), end="")
    print(f"wrote {write_comparison(comparison, root=args.root)}")
    if args.regression_gate and not comparison.gate_passed:
        print(f"sam3m4 report: regression gate failed vs {args.compare}: {'; '.join(comparison.gate_reasons)}")
        return 1
    return 0
