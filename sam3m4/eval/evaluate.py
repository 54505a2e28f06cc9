"""Score a model on a dataset's split and record the numbers: the library behind ``sam3m4 eval``.

    result = evaluate("student", ckpt="checkpoints/distillation/phase2_best.pt", num_val=200, run="demo")
    result.image.miou, result.image.presence.f1, result.records

Teacher and student are scored on the same first ``num_val`` val pairs, so their ratio is fair. With
``saco_preds`` the predictions are also written in SA-Co's official format (and, when only some pairs were
scored, the ground truth of exactly those pairs next to them, ``<stem>_gt.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from sam3m4.data import SacoImageDataset, SacoVideoDataset
from sam3m4.env import host_summary
from sam3m4.errors import ConfigError
from sam3m4.eval.image import ImageEvalResult, evaluate_pairs, ground_truth_predictor
from sam3m4.eval.saco_format import ImagePredictions, VideoPredictions, category_ids, image_gt_subset, video_gt_subset
from sam3m4.eval.video import evaluate_videos, ground_truth_video_predictor
from sam3m4.metrics.davis import JFResult
from sam3m4.paths import SYNTH_DATA, TEACHER_DIR, VIDEO_TEACHER_DIR
from sam3m4.predict import Predictor, VideoPredictor, load_tracker
from sam3m4.results import schema
from sam3m4.results.store import Record, ResultsStore
from sam3m4.teacher import load_teacher
from sam3m4.teacher.video import load_video_teacher

# model -> (results stage, default subject)
MODELS = {"gt": (schema.SANITY, "ground_truth"), "teacher": (schema.STAGE3, schema.TEACHER),
          "student": (schema.STAGE3, schema.STUDENT_PHASE2)}
VIDEO_SUBJECTS = {"gt": schema.GT_VIDEO, "teacher": schema.TEACHER, "student": schema.STUDENT_VIDEO}


@dataclass
class EvalResult:
    """What :func:`evaluate` measured and recorded."""

    model: str
    stage: str
    subject: str
    image: ImageEvalResult | None = None
    """The image pairs' mIoU / presence (None for a video evaluation)."""
    video: JFResult | None = None
    """DAVIS J&F of the val videos (a video evaluation, or ``gt`` with videos present)."""
    records: list[Record] = field(default_factory=list)
    predictions: Path | None = None
    """SA-Co official-format predictions, when asked for."""
    predictions_gt: Path | None = None
    """The ground truth to score ``predictions`` against (the split's file, or the subset of scored pairs)."""
    predictions_entries: int = 0
    predictions_pairs: int = 0
    results: Path | None = None
    """The results store the records went to."""


def build_predictor(model: str, ckpt: str | None, threshold: float, device: str):
    """(predict(sample) -> (masks, scores[, presence score]), description, artifact path) for ``model``: the teacher
    and the student also give each pair's presence score (:mod:`sam3m4.eval.image`)."""
    if model == "gt":
        return ground_truth_predictor, "ground truth", None
    if model == "teacher":
        source = ckpt or TEACHER_DIR
        teacher = load_teacher(source, device=device)

        def predict(sample):  # (masks, scores, presence score: the highest of all query scores)
            inst = teacher.predict([sample.image], [sample.phrase], threshold=threshold)[0]
            return inst.masks, inst.scores, float(inst.all_scores.max()) if inst.all_scores.size else 0.0

        return predict, f"Sam3Model teacher {source}", source
    if not ckpt:
        raise ConfigError("--ckpt: required for --model student (a checkpoint from `sam3m4 distill phase2`)")
    return (Predictor.from_checkpoint(ckpt, threshold=threshold, device=device).predict_pair, f"student {ckpt}",
            ckpt)


def build_video_predictor(model: str, ckpt: str | None, threshold: float, device: str):
    """(predict(sample) -> (masks (M, T, H, W) bool, scores (M, T)), description, artifact) for ``model``."""
    if model == "gt":
        return (lambda s: (s.masks, s.visible.astype("float32"))), "ground truth", None
    if model == "teacher":
        source = ckpt or VIDEO_TEACHER_DIR
        teacher = load_video_teacher(source, device=device)
        return (lambda s: teacher.masklets(s.frames, s.phrase)), f"Sam3VideoModel teacher {source}", source
    if not ckpt:
        raise ConfigError("--ckpt: required for --model student --video (a checkpoint from `sam3m4 distill video`)")
    tracker = VideoPredictor(load_tracker(ckpt), threshold=threshold, device=device)
    return (lambda s: tracker.scored_masklets(s.frames, s.phrase)), f"student tracker {ckpt}", ckpt


def evaluate(model: str, *, ckpt: str | None = None, data: str | Path = SYNTH_DATA, split: str = "val",
             num_val: int | None = None, video: bool = False, no_video: bool = False,
             saco_preds: str | Path | None = None, subject: str | None = None, run: str = "demo",
             threshold: float = 0.5, device: str = "cpu", store: ResultsStore | None = None) -> EvalResult:
    """Score ``model`` (``gt``, ``teacher`` or ``student``) on ``<data>/saco_image/<split>.json`` (or, with
    ``video``, the split's videos) and record mIoU / Presence F1 / IL_MCC (or J&F) into ``store`` (default: the
    results store of ``run``)."""
    data = Path(data)
    store = store or ResultsStore(run)
    saco_preds = Path(saco_preds) if saco_preds else None
    if video:
        return _video(model, ckpt, data, split, num_val, saco_preds, subject, threshold, device, store)
    stage, default_subject = MODELS[model]
    subject = subject or default_subject
    image_json = data / "saco_image" / f"{split}.json"
    if not image_json.is_file():
        raise FileNotFoundError(f"{image_json}: no such file (generate it with `sam3m4 data synth --out {data}`)")
    predict, what, artifact = build_predictor(model, ckpt, threshold, device)
    images = SacoImageDataset(image_json)
    sink = ImagePredictions(category_ids(image_json)) if saco_preds else None
    res = evaluate_pairs(images, predict, num=num_val, threshold=threshold, desc=f"eval {model}", sink=sink)
    result = EvalResult(model, stage, subject if model != "gt" else f"{subject}/image", image=res, results=store.path)
    if sink is not None:
        _write_preds(result, saco_preds, "image", sink, image_json, len(images))
    where = (f"host {device} ({host_summary()}), torch {torch.__version__} eager fp32, {what}, "
             f"{res.num_pairs} pairs of {image_json}, sam3m4.metrics")
    artifact = artifact if artifact and Path(artifact).is_file() else None
    for metric, value in ((schema.MIOU, res.miou), (schema.PRESENCE_F1, res.presence.f1),
                          (schema.IL_MCC, res.presence.il_mcc)):
        result.records.append(store.record(stage=stage, subject=result.subject, metric=metric, value=value,
                                           unit=schema.FRACTION, provenance=where, artifact=artifact))
    video_json = data / "saco_video" / f"{split}.json"
    if model == "gt" and not no_video and video_json.is_file():
        result.video = evaluate_videos(SacoVideoDataset(video_json), ground_truth_video_predictor)
        where = (f"host CPU ({host_summary()}), sam3m4.metrics DAVIS J&F on {result.video.num_objects} objects of "
                 f"{video_json}")
        result.records += _record_jf(store, schema.SANITY, schema.GT_VIDEO, result.video, where, video_json)
    return result


def _record_jf(store: ResultsStore, stage: str, subject: str, jf: JFResult, where: str, artifact) -> list[Record]:
    return [store.record(stage=stage, subject=subject, metric=metric, value=value, unit=schema.FRACTION,
                         provenance=where, artifact=artifact)
            for metric, value in ((schema.JF, jf.jf_mean), (schema.DAVIS_J, jf.j_mean), (schema.DAVIS_F, jf.f_mean))]


def _video(model, ckpt, data: Path, split, num_val, saco_preds, subject, threshold, device, store) -> EvalResult:
    video_json = data / "saco_video" / f"{split}.json"
    if not video_json.is_file():
        raise FileNotFoundError(f"{video_json}: no such file (generate it with `sam3m4 data synth --out {data}`)")
    videos = SacoVideoDataset(video_json)
    scored, what, artifact = build_video_predictor(model, ckpt, threshold, device)
    writer = VideoPredictions(scored)
    jf = evaluate_videos(videos, writer, num=num_val)
    stage = MODELS[model][0]
    result = EvalResult(model, stage, subject or VIDEO_SUBJECTS[model], video=jf, results=store.path)
    where = (f"host {device} ({host_summary()}), {what}, sam3m4.metrics DAVIS J&F on {jf.num_objects} objects "
             f"of {video_json}")
    result.records = _record_jf(store, stage, result.subject, jf, where,
                                artifact if artifact and Path(artifact).is_file() else None)
    if saco_preds:
        writer.fill(videos, num=num_val)
        _write_preds(result, saco_preds, "video", writer, video_json, len(videos))
    return result


def _write_preds(result: EvalResult, out: Path, kind: str, writer, gt_json: Path, total: int) -> None:
    """Write the official-format predictions; when only some pairs were predicted, the GT of those pairs too."""
    writer.write(out)
    gt = gt_json
    seen = writer.pair_ids if kind == "image" else writer.seen
    if len(seen) < total:
        gt = out.with_name(f"{out.stem}_gt.json")
        (image_gt_subset if kind == "image" else video_gt_subset)(gt_json, seen, gt)
    result.predictions, result.predictions_gt = out, gt
    result.predictions_entries, result.predictions_pairs = len(writer.records), len(seen)
