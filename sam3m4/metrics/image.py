"""Image-level metrics over (image, noun phrase) pairs: union mIoU and SAM 3's presence scores.

mIoU: for each pair, the IoU of the union of the predicted instance masks against the union of the
ground-truth instance masks (both empty -> 1.0), averaged over pairs (:class:`MIoUMeter`).

Presence: SAM 3's image-level convention (its cgF1 evaluator): a pair is predicted present when any kept
detection has score >= 0.5 (:func:`is_present`); TP/FP/FN/TN are counted over pairs and turned into
precision, recall, F1 ("Presence F1", SAM 3's IL_F1) and IL_MCC (:class:`PresenceMeter`).

Example::

    meter = MIoUMeter()
    meter.add(pred_masks, gt_masks)        # (N,H,W) or (H,W) bool each; N may be 0
    meter.result()                         # MIoUResult(miou=..., num_pairs=...)

Tests: ``python -m pytest tests/metrics/test_metrics_image.py -q``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "union_iou",
    "MIoUResult",
    "MIoUMeter",
    "is_present",
    "presence_metrics",
    "PresenceResult",
    "PresenceMeter",
]


# --- mIoU -----------------------------------------------------------------------------------------


def _union(masks, name: str) -> np.ndarray:
    """Union over instances of (N,H,W) or (H,W) masks (bool or 0/1 ints) -> (H,W) bool."""
    m = np.asarray(masks)
    if m.ndim == 2:
        return m != 0
    if m.ndim == 3:
        return np.any(m != 0, axis=0)  # (H,W); all False when N == 0
    raise ValueError(f"union_iou: {name} must be (N,H,W) or (H,W), got shape {m.shape}")


def union_iou(pred_masks, gt_masks) -> float:
    """IoU of the union of predicted masks against the union of ground-truth masks.

    Args:
        pred_masks: (N,H,W) or (H,W) bool (or 0/1) numpy array; N may be 0 (no predictions).
        gt_masks: (M,H,W) or (H,W) bool (or 0/1) numpy array; M may be 0 (concept absent).

    Returns:
        IoU in [0, 1]; 1.0 when both unions are empty (a correctly rejected negative pair).

    Raises:
        ValueError: when an input is not 2-D/3-D or the (H,W) of the two inputs differ.
    """
    pred_shape, gt_shape = np.shape(pred_masks), np.shape(gt_masks)
    pred, gt = _union(pred_masks, "pred_masks"), _union(gt_masks, "gt_masks")
    if pred.shape != gt.shape:
        raise ValueError(
            f"union_iou: pred_masks shape {pred_shape} and gt_masks shape {gt_shape} differ in (H, W)"
        )
    union = int(np.count_nonzero(pred | gt))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(pred & gt)) / union


@dataclass(frozen=True)
class MIoUResult:
    """Mean union IoU over pairs."""

    miou: float
    """Mean of :func:`union_iou` over the pairs added, in [0, 1]."""
    num_pairs: int
    """Number of (image, noun phrase) pairs averaged."""


class MIoUMeter:
    """Accumulates :func:`union_iou` over (image, noun phrase) pairs; ``result()`` gives the mean."""

    def __init__(self) -> None:
        self.ious: list[float] = []  # one IoU per pair, in the order added

    def add(self, pred_masks, gt_masks) -> float:
        """Adds one pair (see :func:`union_iou` for shapes) and returns its IoU."""
        iou = union_iou(pred_masks, gt_masks)
        self.ious.append(iou)
        return iou

    def __len__(self) -> int:
        return len(self.ious)

    def result(self) -> MIoUResult:
        """Mean IoU over all pairs added. Raises ValueError when no pair was added."""
        if not self.ious:
            raise ValueError("MIoUMeter.result: no pairs were added")
        return MIoUResult(miou=float(np.mean(self.ious)), num_pairs=len(self.ious))


# --- presence -------------------------------------------------------------------------------------


def is_present(scores, threshold: float = 0.5) -> bool:
    """SAM 3's image-level decision: present when any kept detection has ``score >= threshold``.

    Args:
        scores: detection scores in [0, 1], any shape (list, numpy array, CPU tensor); may be empty.
        threshold: inclusive score threshold (SAM 3 keeps detections at >= 0.5).

    Returns:
        True when at least one score is >= threshold; False for no detections (NaN never counts).
    """
    s = np.asarray(scores, dtype=np.float64)
    return bool(np.any(s >= threshold))


@dataclass(frozen=True)
class PresenceResult:
    """Image-level presence counts over pairs and the scores derived from them."""

    tp: int
    """Pairs predicted present whose concept is present."""
    fp: int
    """Pairs predicted present whose concept is absent."""
    fn: int
    """Pairs predicted absent whose concept is present."""
    tn: int
    """Pairs predicted absent whose concept is absent."""
    precision: float
    """TP / (TP + FP); when TP + FP == 0: 1.0 if FN == 0 too (nothing to find), else 0.0."""
    recall: float
    """TP / (TP + FN); when TP + FN == 0: 1.0 if FP == 0 too (nothing wrongly found), else 0.0."""
    f1: float
    """Presence F1 (SAM 3's IL_F1) = 2TP / (2TP + FP + FN); 1.0 when TP + FP + FN == 0."""
    il_mcc: float
    """Matthews correlation (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) in [-1, 1];
    0.0 when the denominator is 0 (as sklearn's matthews_corrcoef)."""


def presence_metrics(tp: int, fp: int, fn: int, tn: int) -> PresenceResult:
    """Precision, recall, F1 and IL_MCC from pair counts (conventions in :class:`PresenceResult`).

    The zero-denominator conventions keep F1 equal to the harmonic mean of precision and recall
    (0 when both are 0): a score is 1.0 only when there was nothing to get wrong (TP + FP + FN == 0).
    """
    counts = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    for key, value in counts.items():
        if int(value) != value or value < 0:
            raise ValueError(f"presence_metrics: {key} must be a non-negative integer, got {value!r}")
    tp, fp, fn, tn = (int(v) for v in (tp, fp, fn, tn))
    nothing_wrong_or_missing = tp + fp + fn == 0
    precision = tp / (tp + fp) if tp + fp else float(nothing_wrong_or_missing)
    recall = tp / (tp + fn) if tp + fn else float(nothing_wrong_or_missing)
    f1 = 2 * tp / (2 * tp + fp + fn) if not nothing_wrong_or_missing else 1.0
    den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)  # exact Python int
    il_mcc = (tp * tn - fp * fn) / math.sqrt(den) if den else 0.0
    return PresenceResult(tp, fp, fn, tn, precision, recall, f1, il_mcc)


class PresenceMeter:
    """Counts TP/FP/FN/TN of image-level presence over (image, noun phrase) pairs."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = self.tn = 0

    def add(self, pred_present: bool, gt_present: bool) -> None:
        """Adds one pair: ``pred_present`` (e.g. from :func:`is_present`) and the ground truth."""
        pred, gt = bool(pred_present), bool(gt_present)
        if pred and gt:
            self.tp += 1
        elif pred:
            self.fp += 1
        elif gt:
            self.fn += 1
        else:
            self.tn += 1

    def __len__(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def result(self) -> PresenceResult:
        """Counts and scores over all pairs added. Raises ValueError when no pair was added."""
        if len(self) == 0:
            raise ValueError("PresenceMeter.result: no pairs were added")
        return presence_metrics(self.tp, self.fp, self.fn, self.tn)
