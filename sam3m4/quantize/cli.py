"""``sam3m4 quantize``: quantize a distilled student in one mode, or compare every mode and pick one.

    sam3m4 quantize --mode int4 --ckpt checkpoints/distillation/phase2_best.pt --num-val 200
    sam3m4 quantize --mode compare --ckpt checkpoints/distillation/phase2_best.pt --num-val 200 [--qat always]
    sam3m4 quantize --mode compare --config configs/quantize.yaml [key=value ...]   # flags win over the file
    python -m sam3m4.quantize ...                                   # the same

Each mode's model is saved under ``<out>/<mode>/`` (safetensors, see :mod:`sam3m4.quantize.storage`) and
scored on the first ``--num-val`` val pairs. ``compare`` scores every post-training mode, runs the QAT modes
when none of them passes the targets file's ``quant_miou_drop`` gate (or with ``--qat always``), records
every row and the decision in ``reports/<run>/results.jsonl`` (report section 4) and prints the table.
This file only parses the flags: the work is :mod:`sam3m4.quantize.stage` (``quantize_mode``, ``quantize_compare``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sam3m4.config import add_config_arguments, resolve_args
from sam3m4.flags import ranged
from sam3m4.paths import PHASE2_BEST, QUANTIZED_DIR

CHOICES = ("fp16", "int4", "int8_int4", "qat_int4", "qat_int8_int4", "compare")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", required=True, choices=CHOICES, help="one mode, or compare (all of them)")
    parser.add_argument("--ckpt", default=PHASE2_BEST,
                        help="Phase 2 student checkpoint, or a video_epoch*.pt (student + video memory)")
    ranged(parser.add_argument("--num-val", type=int, default=200, help="val pairs every mode is scored on"), 1)
    parser.add_argument("--data", type=Path, default=None, help="dataset root (default: the checkpoint's data_root)")
    parser.add_argument("--out", type=Path, default=Path(QUANTIZED_DIR), help="<out>/<mode>/ per mode")
    parser.add_argument("--qat", choices=("auto", "always", "never"), default="auto",
                        help="compare: run the QAT modes when no post-training mode passes (auto), always or never")
    parser.add_argument("--qat-config", type=Path, default=None, metavar="FILE",
                        help="the QAT recipe's settings, e.g. configs/qat.yaml (default: its values)")
    ranged(parser.add_argument("--qat-steps", type=int, default=None, help="QAT fine-tune steps (wins over "
                               "--qat-config's steps)"), 1)
    ranged(parser.add_argument("--qat-lr", type=float, default=None, help="QAT peak learning rate (wins over "
                               "--qat-config's lr)"), 0, above_minimum=True)
    ranged(parser.add_argument("--runs", type=int, default=20, help="timed host runs per mode (after 5 warm-up)"), 1)
    ranged(parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)"), 0)
    parser.add_argument("--run", default="demo", help="results store run (reports/<run>/)")
    parser.add_argument("--no-progress", action="store_true")
    add_config_arguments(parser, "configs/quantize.yaml")  # --config FILE, key=value; flags win over the file
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    args = resolve_args(args)  # --config FILE and key=value (flags win)
    from sam3m4.quantize.qat_recipe import load_config as load_qat_config
    from sam3m4.quantize.stage import quantize_compare, quantize_mode

    common = dict(out_dir=args.out, num_val=args.num_val, data=args.data, qat_steps=args.qat_steps,
                  qat_lr=args.qat_lr, qat_settings=load_qat_config(args.qat_config), runs=args.runs, threads=args.threads, run=args.run,
                  progress=not args.no_progress, echo=lambda line: print(line, flush=True))
    if args.mode != "compare":
        print(quantize_mode(args.ckpt, args.mode, **common).table)
        return 0
    result = quantize_compare(args.ckpt, qat=args.qat, **common)
    print(result.table)
    print(result.summary)
    return 0
