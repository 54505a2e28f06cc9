"""Score a predictor on SA-Co image pairs: mIoU (union of kept masks vs union of GT) and presence.

A predictor maps an :class:`~sam3m4.data.ImageSample` to ``(masks, scores)``: ``masks`` is a (K, H, W)
bool array at the image's resolution and ``scores`` a (K,) float array in [0, 1]. A detection is kept
when its score is >= ``threshold`` (SAM 3's rule, 0.5); a pair is predicted present when any
detection is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from sam3m4.metrics import MIoUMeter, PresenceMeter, PresenceResult, is_present
from sam3m4.progress import progress_bar

Predictor = Callable[[object], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ImageEvalResult:
    miou: float
    """Mean over pairs of union IoU, in [0, 1]."""
    num_pairs: int
    presence: PresenceResult


def evaluate_pairs(dataset: Sequence, predict: Predictor, num: int | None = None, threshold: float = 0.5,
                   progress: bool = True, desc: str = "eval", sink=None) -> ImageEvalResult:
    """Run ``predict`` on the first ``num`` pairs of ``dataset`` (all when None) and score them.

    sink: called as ``sink(sample, masks, scores)`` for every pair (e.g. :class:`sam3m4.eval.saco_format.
    ImagePredictions`, which keeps the detections in SA-Co's official format).
    """
    n = len(dataset) if num is None else min(num, len(dataset))
    miou, presence = MIoUMeter(), PresenceMeter()
    for i in progress_bar(range(n), desc=desc, unit="pair", enabled=progress):
        sample = dataset[i]
        masks, scores = predict(sample)
        masks, scores = np.asarray(masks, dtype=bool), np.asarray(scores, dtype=np.float64).reshape(-1)
        if masks.ndim != 3 or masks.shape[0] != scores.shape[0] or masks.shape[1:] != sample.image.shape[:2]:
            raise ValueError(f"predictor returned masks {masks.shape} and scores {scores.shape} for an image of "
                             f"{sample.image.shape[:2]}: expected (K, H, W) and (K,)")
        if sink is not None:
            sink(sample, masks, scores)
        kept = masks[scores >= threshold]
        miou.add(kept, sample.masks)
        presence.add(is_present(scores, threshold), bool(sample.present))
    res = miou.result()
    return ImageEvalResult(miou=res.miou, num_pairs=res.num_pairs, presence=presence.result())


def ground_truth_predictor(sample) -> tuple[np.ndarray, np.ndarray]:
    """The ground truth as a prediction (sanity check: it must score mIoU 1 and Presence F1 1)."""
    return sample.masks, np.ones(len(sample.masks))
