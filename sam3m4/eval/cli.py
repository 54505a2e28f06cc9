"""``sam3m4 eval``: score a model on a dataset's val split and write the numbers to the results store.

    sam3m4 eval --model teacher --ckpt checkpoints/teacher/sam3-tiny-synth --num-val 200 --run demo
    sam3m4 eval --model student --ckpt checkpoints/distillation/phase2_best.pt --num-val 200 --run demo
    sam3m4 eval --model gt --data data/synth --run demo        # sanity: GT scored as a prediction (must be 1)
    sam3m4 eval --model student --video --ckpt checkpoints/video_distillation/video_epoch2.pt --saco-preds v.json

Teacher and student are scored on the same first ``--num-val`` val pairs, so their ratio is fair.
``--saco-preds FILE`` also writes the predictions in SA-Co's official format for ``sam3m4 saco-eval`` (with
``--num-val``, the GT of exactly those pairs goes next to it, ``<FILE stem>_gt.json``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sam3m4.errors import ConfigError
from sam3m4.flags import ranged
from sam3m4.paths import SYNTH_DATA

MODELS = ("gt", "student", "teacher")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS, required=True, help="what to score")
    parser.add_argument("--ckpt", default=None,
                        help="teacher: SAM 3 weights dir or hub id (default checkpoints/teacher/sam3-tiny-synth); "
                             "student: distillation checkpoint .pt")
    parser.add_argument("--data", type=Path, default=Path(SYNTH_DATA),
                        help="dataset root with saco_image/ and saco_video/ (default: data/synth)")
    parser.add_argument("--split", default="val", help="split name: <data>/saco_image/<split>.json (default: val)")
    ranged(parser.add_argument("--num-val", type=int, default=None, help="score only the first N image pairs"), 1)
    parser.add_argument("--no-video", action="store_true", help="skip the video pairs (gt only)")
    parser.add_argument("--video", action="store_true",
                        help="score the val videos (DAVIS J&F) instead of the image pairs; --ckpt: a video teacher "
                             "(default checkpoints/teacher/sam3-tiny-synth-video) or a video_epoch*.pt student")
    parser.add_argument("--saco-preds", type=Path, default=None,
                        help="also write the predictions in SA-Co's official format (image: one entry per "
                             "detection; --video: one masklet per track) for `sam3m4 saco-eval`")
    parser.add_argument("--subject", default=None, help="results subject (default: teacher / student/phase2)")
    parser.add_argument("--run", default="demo", help="results go to reports/<run>/results.jsonl")
    ranged(parser.add_argument("--threshold", type=float, default=0.5,
                               help="score threshold for kept detections"), 0, 1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    """Arguments checked before any model or data loads: one line naming the flag (exit 2)."""
    from sam3m4.errors import ConfigError
    from sam3m4.predict import check_device, check_threshold

    if args.num_val is not None and args.num_val < 1:
        raise ConfigError(f"--num-val {args.num_val}: must be >= 1 (or left out: every pair)")
    check_threshold(args.threshold)
    check_device(args.device)
    if args.model == "student" and not args.ckpt:
        raise ConfigError("--ckpt: required for --model student (a checkpoint from `sam3m4 distill phase2`)")
    if args.model == "student" and not Path(args.ckpt).is_file():
        raise ConfigError(f"--ckpt {args.ckpt}: no such checkpoint file")
    if args.model == "gt" and args.ckpt:
        raise ConfigError("--ckpt: not used with --model gt (ground truth is scored as a prediction)")
    if not args.data.is_dir():
        raise ConfigError(f"--data {args.data}: no such folder")
    if args.subject is not None and not args.subject.strip():
        raise ConfigError("--subject: empty")


def run(args: argparse.Namespace) -> int:
    """Parse-side checks, :func:`sam3m4.eval.evaluate.evaluate`, then what it measured on stdout."""
    check_args(args)
    from sam3m4.eval.evaluate import evaluate

    res = evaluate(args.model, ckpt=args.ckpt, data=args.data, split=args.split, num_val=args.num_val,
                   video=args.video, no_video=args.no_video, saco_preds=args.saco_preds, subject=args.subject,
                   run=args.run, threshold=args.threshold, device=args.device)
    kind = "video" if args.video else "image"
    if res.predictions is not None and not args.video:
        _say_preds(res, kind)
    if res.image is not None:
        print(f"{args.model} image: mIoU {res.image.miou:.4f} over {res.image.num_pairs} pairs, Presence F1 "
              f"{res.image.presence.f1:.4f}, IL_MCC {res.image.presence.il_mcc:.4f}")
    if res.video is not None:
        jf = res.video
        who = "gt" if not args.video else args.model
        print(f"{who} video: J&F {jf.jf_mean:.4f} (J {jf.j_mean:.4f}, F {jf.f_mean:.4f}) over {jf.num_objects} "
              "objects")
    if res.predictions is not None and args.video:
        _say_preds(res, kind)
    print(f"recorded in {res.results}")
    return 0


def _say_preds(res, kind: str) -> None:
    print(f"SA-Co {kind} predictions ({res.predictions_entries} entries, {res.predictions_pairs} pairs): "
          f"{res.predictions}; score them with `sam3m4 saco-eval {kind} --gt {res.predictions_gt} --pred "
          f"{res.predictions} --out <result.json>`")
