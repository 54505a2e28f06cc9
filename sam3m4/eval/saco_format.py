"""SA-Co's official file formats: predictions as Meta's evaluators read them, and checks of GT and prediction files.

Predictions (what ``sam3m4 eval --saco-preds FILE`` writes; SAM 3's own writers produce the same shapes):

* image, a JSON list with one entry per detection: ``{image_id (the pair id, images[].id), category_id,
  segmentation (COCO RLE of the full-resolution mask), bbox ([x, y, w, h] pixels), score}``;
* video, a JSON list with one entry per masklet (a track of one (video_id, category_id) pair):
  ``{video_id, category_id, segmentations [T RLEs], bboxes [T xywh, [0, 0, 0, 0] where empty], areas [T ints],
  score}``; every frame has an RLE, as ``sam3.eval.ytvis_eval.YTVISResultsWriter`` writes them, and the score
  is the mean of the per-frame scores over the frames where the object is output (``sam3.eval.postprocessors``).

The checks turn what the official evaluators would trip over (an assertion, a ``KeyError`` deep in pycocotools)
into one-line :class:`~sam3m4.errors.DataFormatError` s naming the file and the field. Nothing here imports
Meta's ``sam3`` package: :mod:`sam3m4.eval.saco` runs the evaluators.

    writer = ImagePredictions(category_ids("val.json"))
    evaluate_pairs(dataset, predict, sink=writer)   # every pair's detections, in the official format
    writer.write("preds.json")
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sam3m4.data import SacoImageDataset, SacoVideoDataset
from sam3m4.data import _checks
from sam3m4.data.rle import decode_rle, encode_mask, masks_to_boxes
from sam3m4.errors import DataFormatError
from sam3m4.fileio import atomic_write_json
from sam3m4.schemas import validate
from sam3m4.schemas import saco as saco_schema

__all__ = ["ImagePredictions", "VideoPredictions", "ImageGT", "VideoGT", "category_ids", "image_predictions",
           "video_prediction", "check_image_gt", "check_video_gt", "check_image_preds", "check_video_preds",
           "image_gt_subset", "video_gt_subset", "write_json"]


# --- writing ---------------------------------------------------------------------------------------------
def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    return atomic_write_json(path, obj)


def _xywh(masks: np.ndarray) -> list[list[float]]:
    """(N, H, W) bool -> N tight [x, y, w, h] boxes in pixel edges ([0, 0, 0, 0] for an empty mask)."""
    return [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in masks_to_boxes(masks)]


def image_predictions(pair_id: int, category_id: int, masks: np.ndarray, scores: np.ndarray) -> list[dict]:
    """One pair's detections as official records. masks: (K, H, W) bool at the image's size; scores: (K,)."""
    masks = np.asarray(masks, dtype=bool)
    boxes = _xywh(masks)
    return [{"image_id": int(pair_id), "category_id": int(category_id), "segmentation": encode_mask(m),
             "bbox": box, "score": float(s)} for m, box, s in zip(masks, boxes, np.asarray(scores).reshape(-1))]


def video_prediction(video_id: int, category_id: int, masks: np.ndarray, frame_scores: np.ndarray) -> dict:
    """One masklet as an official record. masks: (T, H, W) bool; frame_scores: (T,), 0 where not output."""
    masks, frame_scores = np.asarray(masks, dtype=bool), np.asarray(frame_scores, dtype=np.float64)
    shown = masks.any(axis=(1, 2)) | (frame_scores > 0)                 # (T,) frames where the object is output
    score = float(frame_scores[shown].mean()) if shown.any() else 0.0
    return {"video_id": int(video_id), "category_id": int(category_id),
            "segmentations": [encode_mask(m) for m in masks], "bboxes": _xywh(masks),
            "areas": [int(a) for a in masks.sum(axis=(1, 2))], "score": score}


def category_ids(gt_path: str | os.PathLike) -> dict[int, int]:
    """Pair id -> category id of an SA-Co image GT file: ``queried_category`` when the pair has one, else the
    category of its first annotation, else the file's first category (SA-Co/Gold has a single one), else 1."""
    doc = validate(_checks.load_json(Path(gt_path)), saco_schema.SacoImageFile, source=gt_path)
    first = doc.categories[0].id if doc.categories else 1
    by_ann: dict[int, int | None] = {}
    for ann in doc.annotations:
        by_ann.setdefault(ann.image_id, ann.category_id)
    return {img.id: img.queried_category if img.queried_category is not None else by_ann.get(img.id, first)
            for img in doc.images}


class ImagePredictions:
    """Collects image detections in the official format; a ``sink`` for :func:`sam3m4.eval.image.evaluate_pairs`.

    ``writer(sample, masks, scores)`` adds one pair; ``writer.pair_ids`` are the pairs seen (predictions only
    make sense against a GT holding exactly these pairs: :func:`image_gt_subset`).
    """

    def __init__(self, categories: dict[int, int]):
        self.categories = categories
        self.records: list[dict] = []
        self.pair_ids: list[int] = []

    def __call__(self, sample, masks: np.ndarray, scores: np.ndarray) -> None:
        self.pair_ids.append(int(sample.pair_id))
        self.records += image_predictions(sample.pair_id, self.categories.get(sample.pair_id, 1), masks, scores)

    def write(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.records)


class VideoPredictions:
    """Wraps a scored video predictor (``sample -> (masks (M, T, H, W) bool, scores (M, T))``) into the
    :func:`sam3m4.eval.video.evaluate_videos` interface (``sample -> masks``) and keeps every masklet in the
    official format. evaluate_videos skips the negative pairs; :meth:`fill` predicts the pairs not seen yet,
    so the file covers every pair (the official IL_MCC needs the negatives)."""

    def __init__(self, predict):
        self.predict = predict
        self.records: list[dict] = []
        self.seen: set[tuple[int, int]] = set()

    def __call__(self, sample) -> np.ndarray:
        masks, scores = self.predict(sample)
        self.seen.add((sample.video_id, sample.category_id))
        self.records += [video_prediction(sample.video_id, sample.category_id, m, s) for m, s in zip(masks, scores)]
        return masks

    def fill(self, dataset, num: int | None = None) -> None:
        """Predict the pairs among the first ``num`` of ``dataset`` that have not been predicted yet."""
        for i in range(len(dataset) if num is None else min(num, len(dataset))):
            pair = dataset.pairs[i]
            if (pair["video_id"], pair["category_id"]) not in self.seen:
                self(dataset[i])

    def write(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.records)


def image_gt_subset(gt_path: str | os.PathLike, pair_ids, out: str | os.PathLike) -> Path:
    """Write the GT file restricted to ``pair_ids`` (images and their annotations), so that predictions made on
    the first N pairs are scored against those N pairs only."""
    data = _checks.load_json(Path(gt_path))
    keep = set(int(i) for i in pair_ids)
    sub = {**data, "images": [im for im in data["images"] if im["id"] in keep],
           "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}
    return write_json(out, sub)


def video_gt_subset(gt_path: str | os.PathLike, pairs, out: str | os.PathLike) -> Path:
    """Write the video GT file restricted to the (video_id, category_id) ``pairs``."""
    data = _checks.load_json(Path(gt_path))
    keep = set((int(v), int(c)) for v, c in pairs)
    videos = {v for v, _ in keep}
    sub = {**data, "videos": [v for v in data["videos"] if v["id"] in videos],
           "video_np_pairs": [p for p in data["video_np_pairs"] if (p["video_id"], p["category_id"]) in keep],
           "annotations": [a for a in data["annotations"] if (a["video_id"], a["category_id"]) in keep]}
    return write_json(out, sub)


# --- checking --------------------------------------------------------------------------------------------
@dataclass
class ImageGT:
    """What a prediction file is checked against: pair id -> (height, width)."""

    path: Path
    sizes: dict[int, tuple[int, int]]
    exhaustive: set[int]
    """Pair ids with ``is_instance_exhaustive`` true (the official evaluator scores only these)."""
    positive: set[int]
    """Pair ids with at least one annotation (the concept is present)."""


@dataclass
class VideoGT:
    path: Path
    videos: dict[int, tuple[int, int, int]]
    """video id -> (length, height, width)."""
    pairs: set[tuple[int, int]]


def _flag(file: Path, obj: dict, field: str, key: str) -> bool:
    value = _checks.get(file, obj, field, key, "int") if not isinstance(obj.get(key), bool) else obj[key]
    return bool(value)


def check_image_gt(path: str | os.PathLike) -> ImageGT:
    """Check an SA-Co image GT file as the official image evaluator reads it (SAM 3's ``CGF1Evaluator``).

    Beyond :class:`~sam3m4.data.SacoImageDataset`'s checks: ``categories`` present, every pair has
    ``is_instance_exhaustive``, every annotation an int ``id``, ``iscrowd`` and ``category_id`` and a non-null
    RLE whose counts decode. Returns the pair sizes; raises DataFormatError naming file and field.
    """
    file = Path(path)
    with warnings.catch_warnings():                             # its skipped null RLEs are errors below
        warnings.simplefilter("ignore")
        SacoImageDataset(file)                                  # keys, types, ids, RLE headers and sizes
    data = _checks.load_json(file)
    _checks.get(file, data, "", "categories", "list")
    sizes, exhaustive = {}, set()
    for i, img in enumerate(data["images"]):
        sizes[img["id"]] = (img["height"], img["width"])
        if _flag(file, img, f"images[{i}]", "is_instance_exhaustive"):
            exhaustive.add(img["id"])
    for j, ann in enumerate(data["annotations"]):
        field = f"annotations[{j}]"
        for key in ("id", "category_id"):
            _checks.get(file, ann, field, key, "int")
        _flag(file, ann, field, "iscrowd")
        if ann["segmentation"] is None:
            raise DataFormatError(f"{file}: {field}.segmentation: null (the official evaluator needs an RLE)")
        decode_rle(ann["segmentation"], *sizes[ann["image_id"]], where=f"{file}: {field}.segmentation")
    return ImageGT(path=file, sizes=sizes, exhaustive=exhaustive,
                   positive={ann["image_id"] for ann in data["annotations"]})


def check_same_pairs(gts: list[ImageGT]) -> None:
    """Several GT files of one subset (SA-Co/Gold's annotators a, b, c) must list the same pairs, same sizes."""
    first = gts[0]
    for other in gts[1:]:
        for pid in sorted(set(first.sizes) ^ set(other.sizes))[:1]:
            where, missing = (other.path, first.path) if pid in first.sizes else (first.path, other.path)
            raise DataFormatError(f"{where}: images: no pair with id {pid}, which {missing.name} lists "
                                  f"(the files of one subset must list the same pairs)")
        for pid, size in first.sizes.items():
            if other.sizes[pid] != size:
                raise DataFormatError(f"{other.path}: images: pair {pid} is {other.sizes[pid][0]}x"
                                      f"{other.sizes[pid][1]} but {first.path.name} says {size[0]}x{size[1]}")


def _predictions(path: Path, model) -> tuple[list, list]:
    """(the file's JSON list, its entries as ``model`` items): types; score in [0, 1], box sizes and areas >= 0."""
    data = _checks.load_json(path)
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: <top level>: expected a list of predictions, got {_checks.type_name(data)}")
    return data, validate(data, model, source=path)


def check_image_preds(path: str | os.PathLike, gt: ImageGT) -> int:
    """Check an image prediction file (:data:`sam3m4.schemas.saco.ImagePredictions`) against ``gt``; returns the
    number of detections."""
    file = Path(path)
    _, preds = _predictions(file, saco_schema.ImagePredictions)
    for i, p in enumerate(preds):
        if p.image_id not in gt.sizes:
            raise DataFormatError(f"{file}: [{i}].image_id: {p.image_id} is not a pair of {gt.path}")
        decode_rle(p.segmentation, *gt.sizes[p.image_id], where=f"{file}: [{i}].segmentation")
    return len(preds)


def check_video_gt(path: str | os.PathLike) -> VideoGT:
    """Check an SA-Co/VEval GT file as SAM 3's ``VEvalEvaluator`` reads it: :class:`~sam3m4.data.SacoVideoDataset`'s
    checks plus an int ``id``, ``iscrowd``, and per-frame ``bboxes`` and ``areas`` on every annotation."""
    file = Path(path)
    ds = SacoVideoDataset(file)
    data = _checks.load_json(file)
    for j, ann in enumerate(data["annotations"]):
        field = f"annotations[{j}]"
        _checks.get(file, ann, field, "id", "int")
        _flag(file, ann, field, "iscrowd")
        for key in ("bboxes", "areas"):
            _checks.get(file, ann, field, key, "list")
    return VideoGT(path=file, videos={v: (d["length"], d["height"], d["width"]) for v, d in ds.videos.items()},
                   pairs={(p["video_id"], p["category_id"]) for p in ds.pairs})


def check_video_preds(path: str | os.PathLike, gt: VideoGT) -> list[dict]:
    """Check a video prediction file (:data:`sam3m4.schemas.saco.VideoPredictions`) against ``gt``; returns its
    masklets (as read)."""
    file = Path(path)
    data, preds = _predictions(file, saco_schema.VideoPredictions)
    for i, p in enumerate(preds):
        field = f"[{i}]"
        if p.video_id not in gt.videos:
            raise DataFormatError(f"{file}: {field}.video_id: {p.video_id} is not a video of {gt.path}")
        length, h, w = gt.videos[p.video_id]
        for key in ("segmentations", "bboxes", "areas"):
            if len(getattr(p, key)) != length:
                raise DataFormatError(f"{file}: {field}.{key}: {len(getattr(p, key))} entries but video "
                                      f"{p.video_id} has length {length}")
        for t, (seg, box, area) in enumerate(zip(p.segmentations, p.bboxes, p.areas)):
            if seg is None:
                if area or any(box):
                    raise DataFormatError(f"{file}: {field}.segmentations[{t}]: null but its bbox/area is not "
                                          f"empty (write the mask's RLE)")
                continue
            decode_rle(seg, h, w, where=f"{file}: {field}.segmentations[{t}]")
    return data
