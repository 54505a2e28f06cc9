"""Score a predictor on SA-Co image pairs: mIoU (union of kept masks vs union of GT) and presence.

A predictor maps an :class:`~sam3m4.data.ImageSample` to ``(masks, scores)``: ``masks`` is a (K, H, W)
bool array at the image's resolution and ``scores`` a (K,) float array in [0, 1]. A detection is kept
when its score is >= ``threshold`` (SAM 3's rule, 0.5); a pair is predicted present when any
detection is kept. A predictor may return a third element, the pair's presence score: its highest detection
score over all queries, kept or not (``all_scores.max()``), so presence calibration
(:mod:`sam3m4.eval.calibration`) sees the scores below the keep threshold too; without it the pair's score is its
highest returned score (0 when none), exact only at or above the predictor's own keep threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from sam3m4.metrics import MIoUMeter, PresenceMeter, PresenceResult, is_present
from sam3m4.progress import progress_bar

Predictor = Callable[[object], tuple]


@dataclass(frozen=True)
class ImageEvalResult:
    miou: float
    """Mean over pairs of union IoU, in [0, 1]."""
    num_pairs: int
    presence: PresenceResult
    presence_scores: np.ndarray | None = None
    """(num_pairs,) float64 in [0, 1]: each pair's presence score (module docstring), in pair order."""
    present: np.ndarray | None = None
    """(num_pairs,) bool: each pair's ground truth (the concept is present)."""
    pair_ids: tuple[int, ...] = ()
    """The pairs' ids (``sample.pair_id``), in pair order."""
    scores_complete: bool = False
    """True when the predictor gave every pair's presence score (a third element), so scores below its keep
    threshold are real; False when they were inferred from the kept detections only."""


def evaluate_pairs(dataset: Sequence, predict: Predictor, num: int | None = None, threshold: float = 0.5,
                   progress: bool = True, desc: str = "eval", sink=None) -> ImageEvalResult:
    """Run ``predict`` on the first ``num`` pairs of ``dataset`` (all when None) and score them.

    sink: called as ``sink(sample, masks, scores)`` for every pair (e.g. :class:`sam3m4.eval.saco_format.
    ImagePredictions`, which keeps the detections in SA-Co's official format).
    """
    n = len(dataset) if num is None else min(num, len(dataset))
    miou, presence = MIoUMeter(), PresenceMeter()
    pair_scores, present, pair_ids, complete = [], [], [], True
    for i in progress_bar(range(n), desc=desc, unit="pair", enabled=progress):
        sample = dataset[i]
        out = predict(sample)
        masks, scores = out[0], out[1]
        masks, scores = np.asarray(masks, dtype=bool), np.asarray(scores, dtype=np.float64).reshape(-1)
        top = float(scores.max()) if scores.size else 0.0
        if len(out) > 2:
            pair_score = float(out[2])
            if not 0.0 <= pair_score <= 1.0 or pair_score < top - 1e-6:
                raise ValueError(f"predictor returned presence score {pair_score} for a pair whose highest detection "
                                 f"score is {top}: expected a score in [0, 1], at least the highest detection's")
        else:
            pair_score, complete = min(max(top, 0.0), 1.0), False
        if masks.ndim != 3 or masks.shape[0] != scores.shape[0] or masks.shape[1:] != sample.image.shape[:2]:
            raise ValueError(f"predictor returned masks {masks.shape} and scores {scores.shape} for an image of "
                             f"{sample.image.shape[:2]}: expected (K, H, W) and (K,)")
        if sink is not None:
            sink(sample, masks, scores)
        kept = masks[scores >= threshold]
        miou.add(kept, sample.masks)
        presence.add(is_present(scores, threshold), bool(sample.present))
        pair_scores.append(pair_score)
        present.append(bool(sample.present))
        pair_ids.append(int(getattr(sample, "pair_id", i)))
    res = miou.result()
    return ImageEvalResult(miou=res.miou, num_pairs=res.num_pairs, presence=presence.result(),
                           presence_scores=np.asarray(pair_scores, dtype=np.float64),
                           present=np.asarray(present, dtype=bool), pair_ids=tuple(pair_ids),
                           scores_complete=complete)


def ground_truth_predictor(sample) -> tuple[np.ndarray, np.ndarray]:
    """The ground truth as a prediction (sanity check: it must score mIoU 1 and Presence F1 1)."""
    return sample.masks, np.ones(len(sample.masks))
