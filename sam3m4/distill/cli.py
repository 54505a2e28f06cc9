"""``sam3m4 distill``: build the teacher-feature cache and run the two distillation phases.

    sam3m4 distill cache  [--config configs/distill_phase2.yaml] [key=value ...]
    torchrun --nproc_per_node=4 -m sam3m4 distill cache --config configs/distill_phase2.yaml device=cuda
    sam3m4 distill phase1 [--config configs/distill_phase1.yaml] [--resume] [--device cpu] [key=value ...]
    sam3m4 distill phase2 [--config configs/distill_phase2.yaml] [--resume] [--benchmark-cache] [key=value ...]
    torchrun --nproc_per_node=2 -m sam3m4.distill.recipe --config configs/distill_phase2.yaml   # DDP
    sam3m4 distill video  [--ckpt ...phase2_best.pt] [--teacher ...-video] [--steps 800] [--run demo]
    sam3m4 distill video  --config configs/distill_video.yaml [key=value ...]   # flags win over the file
    torchrun --nproc_per_node=4 -m sam3m4 distill video --cache-only --device cuda [--teacher ...] [--data ...]

Each subcommand runs :mod:`sam3m4.distill.recipe` with the named config; ``key=value`` overrides any config
key (unknown keys are an error naming the key). torch is imported only when a subcommand runs.
"""

from __future__ import annotations

import argparse

from sam3m4.config import add_config_arguments, resolve_args
from sam3m4.flags import ranged
from sam3m4.paths import (DISTILL_LOG_DIR, PHASE2_BEST, SYNTH_DATA, VIDEO_CACHE_DIR, VIDEO_DIR, VIDEO_EPOCHS,
                          VIDEO_TEACHER_DIR, video_checkpoint_name)

CONFIGS = {"cache": "configs/distill_phase2.yaml", "phase1": "configs/distill_phase1.yaml",
           "phase2": "configs/distill_phase2.yaml"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="distill_command", metavar="ACTION", required=True)
    helps = {"cache": "run the teacher once over train + val and store its outputs (resumable, skips cached keys; "
                      "under torchrun the ranks share the missing pairs)",
             "phase1": "Phase 1: encoder feature distillation (student neck -> teacher FPN)",
             "phase2": "Phase 2: end-to-end output distillation (presence, semantic, matched queries, + GT)"}
    for name, help_text in helps.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default=CONFIGS[name], help=f"flat YAML config (default: {CONFIGS[name]})")
        p.add_argument("--device", default=None, help="auto (cuda > mps > cpu), cuda, mps or cpu")
        if name != "cache":
            p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of this phase")
        if name == "phase2":
            p.add_argument("--benchmark-cache", action="store_true",
                           help="time Phase 2 epochs reading the cache vs running the teacher live; print the ratio")
        p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. epochs=2 lr=5e-4")
        p.set_defaults(func=run)
    v = sub.add_parser("video", help="video distillation: the student's memory learns the video teacher's masklets",
                       description=f"Cache the video teacher's masklets, train the student's memory (image student "
                                   "frozen), save {VIDEO_DIR}/{video_checkpoint_name(1)}, record J&F.")
    v.add_argument("--ckpt", default=PHASE2_BEST, help="Phase 2 student checkpoint")
    v.add_argument("--teacher", default=VIDEO_TEACHER_DIR, help="video teacher folder")
    v.add_argument("--data", default=SYNTH_DATA)
    v.add_argument("--out", default=VIDEO_DIR)
    v.add_argument("--log-dir", default=DISTILL_LOG_DIR,
                   help="where video.csv (the training loss, one row a step) goes")
    v.add_argument("--cache-dir", default=VIDEO_CACHE_DIR,
                   help="video teacher cache root (files keyed by teacher id + frames hash + phrase hash)")
    ranged(v.add_argument("--steps", type=int, default=800, help="training steps in all (split over --epochs)"), 1)
    ranged(v.add_argument("--epochs", type=int, default=VIDEO_EPOCHS,
                          help="a checkpoint video_epoch{E}.pt after each"), 1)
    ranged(v.add_argument("--keep-last", type=int, default=2, help="video checkpoints kept"), 1)
    v.add_argument("--resume", action="store_true", help="continue from the newest readable video checkpoint")
    ranged(v.add_argument("--lr", type=float, default=2e-3), 0, above_minimum=True)
    ranged(v.add_argument("--clip-len", type=int, default=8), 2)
    ranged(v.add_argument("--w-teacher", type=float, default=1.0, help="weight of the teacher's masklets"), 0)
    ranged(v.add_argument("--w-gt", type=float, default=1.0,
                          help="weight of the ground-truth masklets (0 = teacher only)"), 0)
    ranged(v.add_argument("--num-val", type=int, default=300,
                          help="image val pairs for the +Video mIoU / Presence F1"), 1)
    ranged(v.add_argument("--train-pairs", type=int, default=0,
                   help="use only the first N train pairs with objects (0 = all; smoke runs and the rehearsal)"), 0)
    ranged(v.add_argument("--val-pairs", type=int, default=0,
                   help="score only the first N val pairs with objects (0 = all)"), 0)
    ranged(v.add_argument("--seed", type=int, default=0), 0)
    v.add_argument("--no-eval", action="store_true", help="train and checkpoint only (no J&F, no records)")
    ranged(v.add_argument("--threads", type=int, default=1), 0)
    v.add_argument("--run", default="demo", help="results store run (reports/<run>/)")
    v.add_argument("--cache-only", action="store_true",
                   help="fill the video teacher's masklet cache and stop; the mode that runs under torchrun (the "
                        "ranks share the missing pairs)")
    v.add_argument("--device", default="cpu", help="the video teacher's device for the cache: cpu, cuda (each "
                   "torchrun rank its cuda:<local rank>), mps or auto")
    add_config_arguments(v, "configs/distill_video.yaml")
    v.set_defaults(func=run_video)


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sam3m4.distill import recipe

    args.resume = getattr(args, "resume", False)
    args.benchmark_cache = getattr(args, "benchmark_cache", False)
    if args.distill_command == "cache":
        _finish_ranks(recipe.fill_cache(recipe.config_from_args(args)))
        return 0
    recipe.run_from_args(args, phase=1 if args.distill_command == "phase1" else 2)
    return 0


def run_video(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import inspect

    from sam3m4.distill.video_run import distill_video

    args = resolve_args(args)
    result = distill_video(**{name: getattr(args, name) for name in inspect.signature(distill_video).parameters})
    if args.cache_only:
        _finish_ranks(result)
    return 0


def _finish_ranks(result: dict) -> None:
    """Rank 0 prints a cache pass's summary (it covers every rank); the process group, if any, is closed."""
    import json
    import os

    import torch.distributed as dist

    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result, indent=2, default=float))
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
