"""Foundation acceptance: the synthetic data goes through the real readers, metrics, store and reports.

Scoring the ground truth against itself must give exactly 1 on every metric; a deliberately damaged
prediction (masks shifted, detections dropped) must score strictly lower. Both are recorded in the
results store, so they show up in acceptance.html and in the report's appendix.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam3m4.data import SacoImageDataset, SacoVideoDataset
from sam3m4.eval.image import evaluate_pairs, ground_truth_predictor
from sam3m4.eval.video import evaluate_videos, ground_truth_video_predictor
from sam3m4.env import host_summary
from sam3m4.results import schema

SHIFT = 6  # pixels: moves every predicted mask right and down


def shifted(masks: np.ndarray) -> np.ndarray:
    """Masks moved by SHIFT pixels along the last two axes (content leaving the frame is lost)."""
    out = np.zeros_like(masks)
    out[..., SHIFT:, SHIFT:] = masks[..., :-SHIFT, :-SHIFT]
    return out


def damaged_predictor(sample):
    """Shifted masks; every other present pair loses its detections (a miss)."""
    keep = 0.0 if sample.pair_id % 2 else 1.0
    return shifted(sample.masks), np.full(len(sample.masks), keep)


@pytest.fixture(scope="module")
def images(synth_data):
    return SacoImageDataset(synth_data / "saco_image" / "val.json")


@pytest.fixture(scope="module")
def videos(synth_data):
    return SacoVideoDataset(synth_data / "saco_video" / "val.json")


def provenance(n: int, what: str) -> str:
    return f"host CPU ({host_summary()}), sam3m4.metrics on {n} synthetic val {what} (seed 7)"


def test_ground_truth_scores_one_on_images(images, gate):
    res = evaluate_pairs(images, ground_truth_predictor, progress=False)
    assert res.num_pairs == len(images) > 0
    assert any(not images[i].present for i in range(len(images))), "val split needs negative pairs"
    gate(stage=schema.SANITY, subject=schema.GT_IMAGE, metric=schema.MIOU, value=res.miou, unit="fraction",
         provenance=provenance(res.num_pairs, "pairs"))
    gate(stage=schema.SANITY, subject=schema.GT_IMAGE, metric=schema.PRESENCE_F1, value=res.presence.f1,
         unit="fraction", provenance=provenance(res.num_pairs, "pairs"))
    assert res.miou == 1.0
    assert res.presence.f1 == 1.0 and res.presence.il_mcc == 1.0


def test_damaged_prediction_scores_lower_on_images(images, gate):
    res = evaluate_pairs(images, damaged_predictor, progress=False)
    gate(stage=schema.SANITY, subject=schema.DAMAGED_IMAGE, metric=schema.MIOU, value=res.miou, unit="fraction",
         provenance=provenance(res.num_pairs, "pairs") + f", masks shifted {SHIFT} px, half the detections dropped")
    assert 0.0 <= res.miou < 1.0
    assert res.presence.f1 < 1.0 and res.presence.fn > 0


def test_ground_truth_scores_one_on_videos(videos, gate):
    res = evaluate_videos(videos, ground_truth_video_predictor, progress=False)
    assert res.num_objects > 0
    gate(stage=schema.SANITY, subject=schema.GT_VIDEO, metric=schema.JF, value=res.jf_mean, unit="fraction",
         provenance=provenance(res.num_objects, "video objects"))
    assert res.jf_mean == 1.0


def test_shifted_masklets_score_lower_on_videos(videos, gate):
    res = evaluate_videos(videos, lambda s: shifted(s.masks), progress=False)
    gate(stage=schema.SANITY, subject=schema.DAMAGED_VIDEO, metric=schema.JF, value=res.jf_mean, unit="fraction",
         provenance=provenance(res.num_objects, "video objects") + f", masklets shifted {SHIFT} px")
    assert 0.0 <= res.jf_mean < 1.0
