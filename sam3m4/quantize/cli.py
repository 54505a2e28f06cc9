"""``sam3m4 quantize``: quantize a distilled student in one mode, or compare every mode and pick one.

    sam3m4 quantize --mode int4 --ckpt checkpoints/distillation/phase2_best.pt --num-val 200
    sam3m4 quantize --mode compare --ckpt checkpoints/distillation/phase2_best.pt --num-val 200 [--qat always]
    sam3m4 quantize --mode compare --config configs/quantize.yaml [key=value ...]   # flags win over the file
    python -m sam3m4.quantize ...                                   # the same

Each mode's model is saved under ``<out>/<mode>/`` (safetensors, see :mod:`sam3m4.quantize.storage`) and
scored on the first ``--num-val`` val pairs. ``compare`` scores every post-training mode, runs the QAT modes
when none of them passes the targets file's ``quant_miou_drop`` gate (or with ``--qat always``), records
every row and the decision in ``reports/<run>/results.jsonl`` (report section 4) and prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sam3m4.config import add_config_arguments, resolve_args
from sam3m4.paths import PHASE2_BEST, QUANTIZED_DIR

CHOICES = ("fp16", "int4", "int8_int4", "qat_int4", "qat_int8_int4", "compare")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", required=True, choices=CHOICES, help="one mode, or compare (all of them)")
    parser.add_argument("--ckpt", default=PHASE2_BEST,
                        help="Phase 2 student checkpoint, or a video_epoch*.pt (student + video memory)")
    parser.add_argument("--num-val", type=int, default=200, help="val pairs every mode is scored on")
    parser.add_argument("--data", type=Path, default=None, help="dataset root (default: the checkpoint's data_root)")
    parser.add_argument("--out", type=Path, default=Path(QUANTIZED_DIR), help="<out>/<mode>/ per mode")
    parser.add_argument("--qat", choices=("auto", "always", "never"), default="auto",
                        help="compare: run the QAT modes when no post-training mode passes (auto), always or never")
    parser.add_argument("--qat-steps", type=int, default=60, help="QAT fine-tune steps (batch 16)")
    parser.add_argument("--qat-lr", type=float, default=1e-4)
    parser.add_argument("--runs", type=int, default=20, help="timed host runs per mode (after 5 warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--run", default="demo", help="results store run (reports/<run>/)")
    parser.add_argument("--no-progress", action="store_true")
    add_config_arguments(parser, "configs/quantize.yaml")  # --config FILE, key=value; flags win over the file
    parser.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    """Every argument checked before the checkpoint loads: one line naming the flag (exit 2)."""
    import math

    from sam3m4.errors import ConfigError

    for flag, value, low in (("--num-val", args.num_val, 1), ("--qat-steps", args.qat_steps, 1),
                             ("--runs", args.runs, 1), ("--threads", args.threads, 0)):
        if value < low:
            raise ConfigError(f"{flag} {value}: must be >= {low}")
    if not (args.qat_lr > 0 and math.isfinite(args.qat_lr)):
        raise ConfigError(f"--qat-lr {args.qat_lr}: must be a positive number")
    if args.data is not None and not args.data.is_dir():
        raise ConfigError(f"--data {args.data}: no such folder")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a folder")
    if not Path(args.ckpt).is_file():
        raise ConfigError(f"--ckpt {args.ckpt}: no such checkpoint (run `sam3m4 distill phase2` first)")


def run(args: argparse.Namespace) -> int:
    check_args(resolve_args(args))
    import torch

    from sam3m4.progress import progress_bar
    from sam3m4.quantize import compare
    from sam3m4.quantize.modes import PTQ_MODES, QAT_MODES
    from sam3m4.quantize.pipeline import build_mode, load_val, record, record_decision
    from sam3m4.quantize.storage import save_quantized
    from sam3m4.results.targets import load_targets

    if args.threads:
        torch.set_num_threads(args.threads)
    val, videos, data_root = load_val(args.ckpt, args.data)
    progress = not args.no_progress
    modes = PTQ_MODES if args.mode == "compare" else [args.mode]
    rows = []

    def add(mode: str) -> None:
        model, qat_info = build_mode(args.ckpt, mode, qat_steps=args.qat_steps, qat_lr=args.qat_lr, progress=progress)
        path = args.out / mode
        preset = getattr(model, "student", model).preset
        save_quantized(model, path, mode=mode, preset=preset, source=args.ckpt, extra={"qat": qat_info})
        row = compare.measure(model, mode, val, args.num_val, runs=args.runs, progress=progress, videos=videos)
        row.qat = qat_info
        rows.append(row)
        video = "" if row.jf is None else f", J&F {row.jf:.3f}, track {row.track_fps:.1f} fps"
        print(f"{mode}: {row.size_mb:.3f} MB, mIoU {row.miou:.3f}, Presence F1 {row.presence_f1:.3f}, "
              f"{row.avg_ms:.1f} ms{video} (saved {path})", flush=True)

    for mode in progress_bar(modes, desc=f"quantize {args.mode}", unit="mode", enabled=progress):
        add(mode)
    if args.mode != "compare":
        print(compare.format_table(rows))
        record(args.run, rows, args.out, data_root, args.ckpt)
        return 0
    target = load_targets()["quant_miou_drop"]
    compare.judge(rows, target)
    ptq_passed = any(r.passed for r in rows if r.mode != "fp16")
    qat_why = ("requested (--qat always)" if args.qat == "always" else
               "no post-training mode met the mIoU gate" if args.qat == "auto" and not ptq_passed else None)
    if qat_why:
        for mode in progress_bar(QAT_MODES, desc="quantize compare (QAT)", unit="mode", enabled=progress):
            add(mode)
    decision = compare.decide(rows, target)
    decision["qat_ran"], decision["qat_why"] = bool(qat_why), qat_why or (
        "skipped (--qat never)" if args.qat == "never" else "not needed: a post-training mode met the mIoU gate")
    print(compare.format_table(rows))
    print(f"decision: {decision['chosen_mode']} (gate {target.describe()} mIoU drop vs fp16; passing: "
          f"{', '.join(decision['passing']) or 'none'}; QAT: {decision['qat_why']})")
    record(args.run, rows, args.out, data_root, args.ckpt, target=target)
    record_decision(args.run, decision, target, rows)
    return 0
