"""``sam3m4 teacher``: build the embedded default teacher (a tiny SAM 3 trained on the synthetic data).

    sam3m4 teacher bootstrap [--config configs/teacher_bootstrap.yaml] [key=value ...]
    sam3m4 teacher video --image-teacher DIR --out DIR --data data/synth [--steps 400]
    sam3m4 teacher full --out DIR [--seed 0]      # full-size SAM 3, random weights (the rehearsal's teacher)

The result is a ``save_pretrained`` folder (``checkpoints/teacher/sam3-tiny-synth`` by default) that loads
through the same code path as the real SAM 3 (``sam3m4.teacher.load_teacher``).
"""

from __future__ import annotations

import argparse

from sam3m4.fileio import atomic_folder
from sam3m4.flags import ranged
from sam3m4.paths import SYNTH_DATA, TEACHER_DIR, VIDEO_METRICS, VIDEO_TEACHER_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="teacher_command", metavar="ACTION", required=True)
    boot = sub.add_parser("bootstrap", help="train a tiny SAM 3-architecture teacher on the synthetic dataset",
                          description="Train a tiny SAM 3-architecture teacher on the synthetic dataset and "
                                      "save_pretrained it.")
    boot.add_argument("--config", default="configs/teacher_bootstrap.yaml", help="flat YAML config")
    boot.add_argument("overrides", nargs="*", help="key=value overrides, e.g. max_steps=200")
    boot.set_defaults(func=run_bootstrap)
    video = sub.add_parser("video", help="build SAM 3's video model from an image teacher and train its tracker",
                           description="Sam3VideoModel whose detector is the image teacher; its tracker is trained "
                                       "on the ground-truth masklets of the synthetic videos; save_pretrained; "
                                       "J&F on the val videos.")
    video.add_argument("--image-teacher", default=TEACHER_DIR)
    video.add_argument("--out", default=VIDEO_TEACHER_DIR)
    video.add_argument("--data", default=SYNTH_DATA, help="generator output (saco_video/{train,val}.json)")
    ranged(video.add_argument("--steps", type=int, default=400, help="tracker training steps (0 = build only)"), 0)
    ranged(video.add_argument("--lr", type=float, default=1e-3), 0, above_minimum=True)
    ranged(video.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)"), 0)
    video.set_defaults(func=run_video)
    full = sub.add_parser("full", help="write a full-size SAM 3 checkpoint with random weights (rehearsal)",
                          description="Sam3VideoModel(Sam3VideoConfig()) - SAM 3's own sizes - with random weights, "
                                      "save_pretrained like facebook/sam3; loads through load_teacher.")
    full.add_argument("--out", required=True, help="folder to write (config.json, model*.safetensors)")
    ranged(full.add_argument("--seed", type=int, default=0), 0)
    full.set_defaults(func=run_full)


def run_bootstrap(args: argparse.Namespace) -> int:
    import json

    from sam3m4.teacher.bootstrap import bootstrap_teacher, load_config  # offline: sam3m4 set HF_HUB_OFFLINE=1

    cfg = load_config(args.config, args.overrides)  # types and keys checked before any data is read
    result = bootstrap_teacher(cfg.pop("data_root"), cfg.pop("out_dir"), **cfg)
    print(json.dumps({k: v for k, v in result.items() if k not in ("train", "loss_weights")}, indent=2, default=str))
    return 0


def run_full(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from sam3m4.errors import ConfigError
    from sam3m4.teacher.full import write_random_teacher

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a folder")
    print(json.dumps(write_random_teacher(args.out, seed=args.seed), indent=1))
    return 0


def check_video_args(args: argparse.Namespace) -> None:
    """Arguments of ``teacher video`` checked before anything is built or written: one line naming the flag."""
    import math
    from pathlib import Path

    from sam3m4.errors import ConfigError

    for flag, value in (("--steps", args.steps), ("--threads", args.threads)):
        if value < 0:
            raise ConfigError(f"{flag} {value}: must be >= 0")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise ConfigError(f"--lr {args.lr}: must be a positive number")
    saco = Path(args.data) / "saco_video"
    for split in ("train", "val") if args.steps else ("val",):
        if not (saco / f"{split}.json").is_file():
            raise ConfigError(f"--data {args.data}: no saco_video/{split}.json (generate it with `sam3m4 data synth`)")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a folder")


def run_video(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from sam3m4.fileio import atomic_write_json

    check_video_args(args)
    import torch

    from sam3m4.data import SacoVideoDataset
    from sam3m4.eval.video import evaluate_videos
    from sam3m4.teacher.video import build_video_teacher, load_video_teacher, train_teacher_tracker

    if args.threads:
        torch.set_num_threads(args.threads)
    saco = Path(args.data) / "saco_video"
    out = build_video_teacher(args.image_teacher, Path(args.out))
    teacher = load_video_teacher(out)
    result = {"out": str(out), "steps": 0}
    if args.steps:
        result.update(train_teacher_tracker(teacher.model, SacoVideoDataset(saco / "train.json"), steps=args.steps, lr=args.lr))
        with atomic_folder(out) as tmp:
            teacher.model.save_pretrained(tmp)
    jf = evaluate_videos(SacoVideoDataset(saco / "val.json"), teacher)
    result.update(val_jf=jf.jf_mean, val_j=jf.j_mean, val_f=jf.f_mean, val_objects=jf.num_objects)
    atomic_write_json(out / VIDEO_METRICS, result, indent=2)
    print(json.dumps(result, indent=2))
    return 0
