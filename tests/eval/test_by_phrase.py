"""mIoU per noun phrase (sam3m4.eval.by_phrase): the same pairs and IoU as evaluate_pairs, grouped by phrase."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sam3m4.data import SacoImageDataset
from sam3m4.eval.by_phrase import PhraseTap, phrase_metric, phrase_of
from sam3m4.eval.image import evaluate_pairs, ground_truth_predictor

VAL = Path(__file__).resolve().parents[2] / "fixtures" / "synth" / "saco_image" / "train.json"


def test_per_phrase_miou_matches_the_overall_pairs():
    data = SacoImageDataset(VAL)

    def half_right(sample):  # the ground truth for every other phrase, nothing for the rest
        masks, scores = ground_truth_predictor(sample)
        keep = data.phrases.index(sample.phrase) % 2 == 0
        return masks, scores if keep else np.zeros_like(scores)

    tap = PhraseTap(half_right)
    res = evaluate_pairs(data, tap, progress=False)
    by_phrase = tap.miou()
    assert sorted(by_phrase) == sorted({data[i].phrase for i in range(len(data))})
    assert sum(n for _, n in by_phrase.values()) == res.num_pairs
    weighted = sum(m * n for m, n in by_phrase.values()) / res.num_pairs
    assert abs(weighted - res.miou) < 1e-9  # the same IoUs, only grouped
    for phrase, (miou, _) in by_phrase.items():
        if data.phrases.index(phrase) % 2 == 0:
            assert miou == 1.0, phrase
    assert any(m < 1.0 for m, _ in by_phrase.values())  # a present object missed is an IoU of 0


def test_phrase_metric_names_round_trip():
    assert phrase_of(phrase_metric("red car")) == "red car"
    assert phrase_of("miou") is None and phrase_of("miou_ratio") is None
