"""mIoU per noun phrase: the same union IoU as :func:`sam3m4.eval.image.evaluate_pairs`, grouped by phrase.

Wrap the predictor given to ``evaluate_pairs``; the wrapper scores each pair as it passes (kept detections:
score >= ``threshold``, SAM 3's rule) and keeps a :class:`~sam3m4.metrics.MIoUMeter` per phrase. Records name
the metric ``miou/phrase:<phrase>`` (:func:`phrase_metric`, read back with :func:`phrase_of`): the report's
teacher vs student plot reads them.

    tap = PhraseTap(predict)
    res = evaluate_pairs(val, tap, num=300)
    tap.miou()            # {"red circle": 0.83, ...}
"""

from __future__ import annotations

import numpy as np

from sam3m4.metrics import MIoUMeter

PHRASE_METRIC = "miou/phrase:"


def phrase_metric(phrase: str) -> str:
    """The record metric of one phrase's mIoU: ``miou/phrase:red circle``."""
    return PHRASE_METRIC + phrase


def phrase_of(metric: str) -> str | None:
    """The phrase of a :func:`phrase_metric` name; None for any other metric."""
    return metric[len(PHRASE_METRIC):] if metric.startswith(PHRASE_METRIC) else None


class PhraseTap:
    """A predictor that passes ``predict``'s output through and scores it per phrase (``sample.phrase``)."""

    def __init__(self, predict, threshold: float = 0.5):
        self.predict, self.threshold = predict, threshold
        self.meters: dict[str, MIoUMeter] = {}

    def __call__(self, sample):
        out = self.predict(sample)  # (masks, scores) or (masks, scores, presence score): passed through as it is
        masks, scores = out[0], out[1]
        kept = np.asarray(masks, dtype=bool)[np.asarray(scores, dtype=np.float64).reshape(-1) >= self.threshold]
        self.meters.setdefault(sample.phrase, MIoUMeter()).add(kept, sample.masks)
        return out

    def miou(self) -> dict[str, tuple[float, int]]:
        """Phrase -> (mIoU over its pairs, pair count), phrases sorted."""
        out = {}
        for phrase in sorted(self.meters):
            res = self.meters[phrase].result()
            out[phrase] = (res.miou, res.num_pairs)
        return out
