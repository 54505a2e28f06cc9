"""``sam3m4 models``: facts about the student presets and the teacher.

    sam3m4 models table                      # params, fp16/int4 MB, GFLOPs of every preset + SAM 3
    sam3m4 models table --presets tiny --no-teacher --latency --json

Register in :data:`sam3m4.cli.COMMANDS` as ``"models": ("sam3m4.models.cli", "...")``. Importing this module
does not import torch (the table is computed only when the action runs).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    table = sub.add_parser("table", help="parameters, fp16/int4 MB and GFLOPs per student preset and the teacher")
    table.add_argument("--presets", nargs="+", default=None, metavar="NAME",
                       help="student presets to list (default: all)")
    table.add_argument("--no-teacher", action="store_true", help="leave out the SAM 3 teacher row")
    table.add_argument("--latency", action="store_true", help="also time one eager fp32 CPU forward (batch 1)")
    table.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    table.set_defaults(func=run_table)


def run_table(args: argparse.Namespace) -> int:
    from sam3m4.models.table import format_table, model_table

    rows = model_table(args.presets, teacher=not args.no_teacher, latency=args.latency)
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return 0
