"""``sam3m4 plan``: the real run's cost plan from a rehearsal's measurements (``reports/<run>/plan.md``).

    sam3m4 plan --run rehearsal --for configs/m4pro.yaml

Reads what ``make rehearse`` left (run state, summaries, caches, checkpoints); runs no model.
"""

from __future__ import annotations

import argparse

from sam3m4.paths import REPORTS_ROOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default="rehearsal", help="the rehearsal's run name (reports/<run>/)")
    parser.add_argument("--for", dest="target", default="configs/m4pro.yaml",
                        help="pipeline config of the real run (its dataset_size, epochs and steps)")
    parser.add_argument("--root", default=REPORTS_ROOT, help="reports folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sam3m4.pipeline.plan import write_plan

    print(f"wrote {write_plan(args.run, args.target, args.root)}")
    return 0
