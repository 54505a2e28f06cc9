"""``sam3m4 plan``: the real run's cost plan from a rehearsal's measurements (``reports/<run>/plan.md``).

    sam3m4 plan --run rehearsal --for configs/m4pro.yaml [--devices 4,8]
    sam3m4 plan --from-plan reports/rehearsal/plan.md --devices 4,8,16   # N-device hours from a plan's own table

Reads what ``make rehearse`` left (run state, summaries, caches, checkpoints); runs no model. ``--devices``:
the table of hours on 1 and N devices (:mod:`sam3m4.pipeline.plan_devices`); ``--from-plan`` rewrites only that
section of an existing plan.md, from the hours it records, when the rehearsal's files are not at hand.
"""

from __future__ import annotations

import argparse

from sam3m4.paths import REPORTS_ROOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default="rehearsal", help="the rehearsal's run name (reports/<run>/)")
    parser.add_argument("--for", dest="target", default="configs/m4pro.yaml",
                        help="pipeline config of the real run (its dataset_size, epochs and steps)")
    parser.add_argument("--root", default=REPORTS_ROOT, help="reports folder")
    parser.add_argument("--devices", default="4,8",
                        help="device counts for the N-device table, comma-separated (1 is always shown)")
    parser.add_argument("--from-plan", default=None, metavar="PLAN_MD",
                        help="only (re)write the N-device section of this plan.md from its own hours table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sam3m4.pipeline.plan import write_plan
    from sam3m4.pipeline.plan_devices import parse_devices, update_plan

    devices = parse_devices(args.devices)
    if args.from_plan:
        print(f"wrote {update_plan(args.from_plan, devices)}")
        return 0
    print(f"wrote {write_plan(args.run, args.target, args.root, devices)}")
    return 0
