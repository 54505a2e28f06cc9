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
from sam3m4.paths import SYNTH_DATA, TEACHER_DIR, VIDEO_TEACHER_DIR
from sam3m4.results import schema

# --model -> (results stage, default subject)
MODELS = {"gt": ("sanity", "ground_truth"), "teacher": ("stage3", "teacher"), "student": ("stage3", "student/phase2")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=sorted(MODELS), required=True, help="what to score")
    parser.add_argument("--ckpt", default=None,
                        help="teacher: SAM 3 weights dir or hub id (default checkpoints/teacher/sam3-tiny-synth); "
                             "student: distillation checkpoint .pt")
    parser.add_argument("--data", type=Path, default=Path(SYNTH_DATA),
                        help="dataset root with saco_image/ and saco_video/ (default: data/synth)")
    parser.add_argument("--split", default="val", help="split name: <data>/saco_image/<split>.json (default: val)")
    parser.add_argument("--num-val", type=int, default=None, help="score only the first N image pairs")
    parser.add_argument("--no-video", action="store_true", help="skip the video pairs (gt only)")
    parser.add_argument("--video", action="store_true",
                        help="score the val videos (DAVIS J&F) instead of the image pairs; --ckpt: a video teacher "
                             "(default checkpoints/teacher/sam3-tiny-synth-video) or a video_epoch*.pt student")
    parser.add_argument("--saco-preds", type=Path, default=None,
                        help="also write the predictions in SA-Co's official format (image: one entry per "
                             "detection; --video: one masklet per track) for `sam3m4 saco-eval`")
    parser.add_argument("--subject", default=None, help="results subject (default: teacher / student/phase2)")
    parser.add_argument("--run", default="demo", help="results go to reports/<run>/results.jsonl")
    parser.add_argument("--threshold", type=float, default=0.5, help="score threshold for kept detections")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.set_defaults(func=run)


def build_predictor(model: str, ckpt: str | None, threshold: float, device: str):
    """(predict(sample) -> (masks, scores), description, artifact path) for ``model``."""
    from sam3m4.eval.image import ground_truth_predictor

    if model == "gt":
        return ground_truth_predictor, "ground truth", None
    if model == "teacher":
        from sam3m4.teacher import load_teacher

        source = ckpt or TEACHER_DIR
        teacher = load_teacher(source, device=device)

        def predict(sample):
            inst = teacher.predict([sample.image], [sample.phrase], threshold=threshold)[0]
            return inst.masks, inst.scores

        return predict, f"Sam3Model teacher {source}", source
    from sam3m4.errors import ConfigError
    from sam3m4.predict import Predictor

    if not ckpt:
        raise ConfigError("--ckpt: required for --model student (a checkpoint from `sam3m4 distill phase2`)")
    return Predictor.from_checkpoint(ckpt, threshold=threshold, device=device), f"student {ckpt}", ckpt


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
    check_args(args)
    import torch

    from sam3m4.data import SacoImageDataset
    from sam3m4.eval.image import evaluate_pairs
    from sam3m4.env import host_summary
    from sam3m4.results import ResultsStore

    stage, subject = MODELS[args.model]
    subject = args.subject or subject
    store = ResultsStore(args.run)
    if args.video:
        return _video(args, store)
    image_json = args.data / "saco_image" / f"{args.split}.json"
    if not image_json.is_file():
        raise FileNotFoundError(f"{image_json}: no such file (generate it with `sam3m4 data synth --out {args.data}`)")
    predict, what, artifact = build_predictor(args.model, args.ckpt, args.threshold, args.device)
    images = SacoImageDataset(image_json)
    sink = None
    if args.saco_preds:
        from sam3m4.eval.saco_format import ImagePredictions, category_ids

        sink = ImagePredictions(category_ids(image_json))
    res = evaluate_pairs(images, predict, num=args.num_val, threshold=args.threshold, desc=f"eval {args.model}",
                         sink=sink)
    if sink is not None:
        _write_preds(args, "image", sink, image_json, len(images))
    where = (f"host {args.device} ({host_summary()}), torch {torch.__version__} eager fp32, {what}, "
             f"{res.num_pairs} pairs of {image_json}, sam3m4.metrics")
    artifact = artifact if artifact and Path(artifact).is_file() else None
    for metric, value in ((schema.MIOU, res.miou), (schema.PRESENCE_F1, res.presence.f1), (schema.IL_MCC, res.presence.il_mcc)):
        store.record(stage=stage, subject=subject if args.model != "gt" else f"{subject}/image", metric=metric,
                     value=value, unit="fraction", provenance=where, artifact=artifact)
    print(f"{args.model} image: mIoU {res.miou:.4f} over {res.num_pairs} pairs, Presence F1 {res.presence.f1:.4f}, "
          f"IL_MCC {res.presence.il_mcc:.4f}")
    if args.model == "gt":
        _gt_video(args, store)
    print(f"recorded in {store.path}")
    return 0


def _gt_video(args: argparse.Namespace, store) -> None:
    from sam3m4.data import SacoVideoDataset
    from sam3m4.eval.video import evaluate_videos, ground_truth_video_predictor
    from sam3m4.env import host_summary

    video_json = args.data / "saco_video" / f"{args.split}.json"
    if args.no_video or not video_json.is_file():
        return
    jf = evaluate_videos(SacoVideoDataset(video_json), ground_truth_video_predictor)
    where = f"host CPU ({host_summary()}), sam3m4.metrics DAVIS J&F on {jf.num_objects} objects of {video_json}"
    for metric, value in ((schema.JF, jf.jf_mean), (schema.DAVIS_J, jf.j_mean), (schema.DAVIS_F, jf.f_mean)):
        store.record(stage=schema.SANITY, subject=schema.GT_VIDEO, metric=metric, value=value, unit="fraction",
                     provenance=where, artifact=video_json)
    print(f"gt video: J&F {jf.jf_mean:.4f} (J {jf.j_mean:.4f}, F {jf.f_mean:.4f}) over {jf.num_objects} objects")


def _write_preds(args: argparse.Namespace, kind: str, writer, gt_json: Path, total: int) -> None:
    """Write the official-format predictions; when only some pairs were predicted, the GT of those pairs too."""
    from sam3m4.eval.saco_format import image_gt_subset, video_gt_subset

    writer.write(args.saco_preds)
    gt = gt_json
    seen = writer.pair_ids if kind == "image" else writer.seen
    if len(seen) < total:
        gt = args.saco_preds.with_name(f"{args.saco_preds.stem}_gt.json")
        (image_gt_subset if kind == "image" else video_gt_subset)(gt_json, seen, gt)
    print(f"SA-Co {kind} predictions ({len(writer.records)} entries, {len(seen)} pairs): {args.saco_preds}; score "
          f"them with `sam3m4 saco-eval {kind} --gt {gt} --pred {args.saco_preds} --out <result.json>`")


def build_video_predictor(model: str, ckpt: str | None, threshold: float, device: str):
    """(predict(sample) -> (masks (M, T, H, W) bool, scores (M, T)), description, artifact) for ``model``."""
    if model == "gt":
        return (lambda s: (s.masks, s.visible.astype("float32"))), "ground truth", None
    if model == "teacher":
        from sam3m4.teacher.video import load_video_teacher

        source = ckpt or VIDEO_TEACHER_DIR
        teacher = load_video_teacher(source, device=device)
        return (lambda s: teacher.masklets(s.frames, s.phrase)), f"Sam3VideoModel teacher {source}", source
    if not ckpt:
        raise ConfigError("--ckpt: required for --model student --video (a checkpoint from `sam3m4 distill video`)")
    from sam3m4.distill.video_run import load_tracker
    from sam3m4.predict import VideoPredictor

    tracker = VideoPredictor(load_tracker(ckpt), threshold=threshold, device=device)
    return (lambda s: tracker.scored_masklets(s.frames, s.phrase)), f"student tracker {ckpt}", ckpt


def _video(args: argparse.Namespace, store) -> int:
    from sam3m4.data import SacoVideoDataset
    from sam3m4.eval.saco_format import VideoPredictions
    from sam3m4.eval.video import evaluate_videos
    from sam3m4.env import host_summary

    video_json = args.data / "saco_video" / f"{args.split}.json"
    if not video_json.is_file():
        raise FileNotFoundError(f"{video_json}: no such file (generate it with `sam3m4 data synth --out {args.data}`)")
    videos = SacoVideoDataset(video_json)
    scored, what, artifact = build_video_predictor(args.model, args.ckpt, args.threshold, args.device)
    writer = VideoPredictions(scored)
    jf = evaluate_videos(videos, writer, num=args.num_val)
    stage, subject = MODELS[args.model]
    subject = args.subject or {"gt": "ground_truth/video", "teacher": "teacher", "student": "student/video"}[args.model]
    where = (f"host {args.device} ({host_summary()}), {what}, sam3m4.metrics DAVIS J&F on {jf.num_objects} objects "
             f"of {video_json}")
    for metric, value in ((schema.JF, jf.jf_mean), (schema.DAVIS_J, jf.j_mean), (schema.DAVIS_F, jf.f_mean)):
        store.record(stage=stage, subject=subject, metric=metric, value=value, unit="fraction", provenance=where,
                     artifact=artifact if artifact and Path(artifact).is_file() else None)
    print(f"{args.model} video: J&F {jf.jf_mean:.4f} (J {jf.j_mean:.4f}, F {jf.f_mean:.4f}) over {jf.num_objects} "
          f"objects")
    if args.saco_preds:
        writer.fill(videos, num=args.num_val)
        _write_preds(args, "video", writer, video_json, len(videos))
    print(f"recorded in {store.path}")
    return 0
