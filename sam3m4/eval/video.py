"""Score a tracker on SA-Co video pairs with DAVIS J&F.

A video predictor maps a :class:`~sam3m4.data.VideoSample` to a (M, T, H, W) bool array: one masklet
per predicted object. Predicted masklets are matched one-to-one to the GT objects by the Hungarian
algorithm on mean J over frames; an unmatched GT object is scored against an empty masklet (so a
missed object costs J = F = 0 on frames where it is visible). The DAVIS aggregation then takes the
per-object mean over frames and the mean over objects (:class:`sam3m4.metrics.JFMeter`).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from sam3m4.metrics import JFMeter, JFResult, jaccard
from sam3m4.progress import progress_bar

VideoPredictor = Callable[[object], np.ndarray]


def match_masklets(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Reorder ``pred`` (M, T, H, W) to align with ``gt`` (N, T, H, W); missing objects are empty."""
    n, t = gt.shape[:2]
    aligned = np.zeros_like(gt, dtype=bool)
    if n == 0 or len(pred) == 0:
        return aligned
    cost = np.zeros((n, len(pred)))
    for i in range(n):
        for j in range(len(pred)):
            cost[i, j] = -np.mean([jaccard(gt[i, f], pred[j, f]) for f in range(t)])
    rows, cols = linear_sum_assignment(cost)
    aligned[rows] = pred[cols]
    return aligned


def evaluate_videos(dataset: Sequence, predict: VideoPredictor, num: int | None = None,
                    drop_first_last: bool = False, progress: bool = True) -> JFResult:
    """J&F over the present pairs of the first ``num`` video pairs (absent pairs have no objects)."""
    meter = JFMeter(drop_first_last=drop_first_last)
    n = len(dataset) if num is None else min(num, len(dataset))
    for i in progress_bar(range(n), desc="eval video", unit="video", enabled=progress):
        sample = dataset[i]
        if len(sample.masks) == 0:
            continue
        pred = np.asarray(predict(sample), dtype=bool)
        if pred.ndim != 4 or pred.shape[1:] != sample.masks.shape[1:]:
            raise ValueError(f"video predictor returned {pred.shape}; expected (M, {', '.join(map(str, sample.masks.shape[1:]))})")
        meter.add_video(sample.masks, match_masklets(sample.masks, pred))
    return meter.result()


def ground_truth_video_predictor(sample) -> np.ndarray:
    """The ground truth masklets as a prediction (sanity check: J&F must be 1)."""
    return sample.masks
