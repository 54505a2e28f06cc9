"""``sam3m4 models``: facts about the student presets and the teacher.

    sam3m4 models table                      # params, fp16/int4 MB, GFLOPs of every preset + SAM 3
    sam3m4 models table --presets tiny --no-teacher --latency --json
    sam3m4 models timm-weights --backbone repvit_m0_9 --out w.safetensors   # a timm state dict (random init)

Register in :data:`sam3m4.cli.COMMANDS` as ``"models": ("sam3m4.models.cli", "...")``. Importing this module
does not import torch (the table is computed only when the action runs).
"""

from __future__ import annotations

import argparse
import json

from sam3m4.flags import ranged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    table = sub.add_parser("table", help="parameters, fp16/int4 MB and GFLOPs per student preset and the teacher")
    table.add_argument("--presets", nargs="+", default=None, metavar="NAME",
                       help="student presets to list (default: all)")
    table.add_argument("--no-teacher", action="store_true", help="leave out the SAM 3 teacher row")
    table.add_argument("--latency", action="store_true", help="also time one eager fp32 CPU forward (batch 1)")
    table.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    table.set_defaults(func=run_table)
    weights = sub.add_parser("timm-weights", help="save a timm classification model's state dict (random init) as "
                             "safetensors: the format student_init reads, for a rehearsal without ImageNet weights")
    weights.add_argument("--backbone", required=True, help="timm model name, e.g. repvit_m0_9")
    weights.add_argument("--out", required=True, help=".safetensors file to write")
    ranged(weights.add_argument("--seed", type=int, default=0), 0)
    weights.set_defaults(func=run_timm_weights)


def run_table(args: argparse.Namespace) -> int:
    from sam3m4.models.table import format_table, model_table

    rows = model_table(args.presets, teacher=not args.no_teacher, latency=args.latency)
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return 0


def run_timm_weights(args: argparse.Namespace) -> int:
    from sam3m4.models.pretrained import save_timm_state_dict

    path = save_timm_state_dict(args.backbone, args.out, seed=args.seed)
    print(f"wrote {path} (timm {args.backbone}, random init: stands in for ImageNet weights)")
    return 0
