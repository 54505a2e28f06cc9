"""Tests for sam3m4.metrics.image: union mIoU and image-level presence, worked by hand.

Run: python -m pytest tests/metrics/test_metrics_image.py -q
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sam3m4.metrics import MIoUMeter, PresenceMeter, is_present, presence_metrics, union_iou


def mask(rows, cols, h=4, w=4):
    m = np.zeros((h, w), dtype=bool)
    m[rows[0] : rows[1], cols[0] : cols[1]] = True
    return m


NONE = np.zeros((0, 4, 4), dtype=bool)  # zero instances


# --- mIoU -----------------------------------------------------------------------------------------


def test_union_iou_by_hand():
    # GT instances: row 0 cols 0-1 and row 3 cols 2-3 (union 4 px); pred: all of row 0 (4 px).
    # Intersection = row 0 cols 0-1 = 2; union = 4 (row 0) + 2 (row 3) = 6 -> 1/3.
    gt = np.stack([mask((0, 1), (0, 2)), mask((3, 4), (2, 4))])
    pred = mask((0, 1), (0, 4))[None]
    assert union_iou(pred, gt) == pytest.approx(1 / 3)
    assert union_iou(NONE, NONE) == 1.0  # negative pair, nothing predicted
    assert union_iou(pred, NONE) == 0.0  # negative pair, something predicted
    assert union_iou(NONE, gt) == 0.0  # positive pair, nothing predicted
    # Overlapping predicted instances are counted once; (H,W) and 0/1 ints are accepted.
    assert union_iou(np.stack([gt[0], gt[0], gt[1]]).astype(np.uint8), gt.any(0)) == 1.0


def test_miou_meter_by_hand():
    # Pairs: 1/3 (above), 1 (both empty), 0 (pred on a negative), 1 (2-D gt vs two copies) -> (7/3)/4 = 7/12.
    gt = np.stack([mask((0, 1), (0, 2)), mask((3, 4), (2, 4))])
    meter = MIoUMeter()
    assert meter.add(mask((0, 1), (0, 4))[None], gt) == pytest.approx(1 / 3)
    meter.add(NONE, NONE)
    meter.add(mask((1, 2), (1, 2))[None], NONE)
    meter.add(np.stack([mask((1, 3), (1, 3))] * 2), mask((1, 3), (1, 3)))
    res = meter.result()
    assert res.num_pairs == 4 == len(meter)
    assert res.miou == pytest.approx(7 / 12)


def test_miou_errors():
    with pytest.raises(ValueError, match=r"\(1, 4, 4\).*\(0, 4, 5\)"):
        union_iou(np.zeros((1, 4, 4), bool), np.zeros((0, 4, 5), bool))
    with pytest.raises(ValueError, match="shape"):
        union_iou(np.zeros((1, 1, 4, 4), bool), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="no pairs"):
        MIoUMeter().result()


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2**31 - 1))
def test_union_iou_properties(n_pred, n_gt, seed):
    rng = np.random.default_rng(seed)
    pred, gt = rng.random((n_pred, 5, 6)) < 0.3, rng.random((n_gt, 5, 6)) < 0.3
    iou = union_iou(pred, gt)
    assert 0.0 <= iou <= 1.0
    assert union_iou(gt, pred) == iou
    assert union_iou(pred, pred.any(0)) == 1.0


# --- presence -------------------------------------------------------------------------------------


def test_is_present():
    assert is_present([0.2, 0.5])  # >= is inclusive
    assert not is_present([0.49])
    assert not is_present([])  # no detections
    assert not is_present(np.array([0.6, 0.69]), threshold=0.7)
    assert is_present(np.array([[0.1], [0.9]]))


def test_presence_meter_by_hand():
    # (pred, gt): 3x (T,T), 1x (T,F), 2x (F,T), 4x (F,F) -> TP 3, FP 1, FN 2, TN 4.
    # precision 3/4, recall 3/5, F1 = 2*3 / (2*3 + 1 + 2) = 6/9 = 2/3,
    # MCC = (3*4 - 1*2) / sqrt((3+1)(3+2)(4+1)(4+2)) = 10 / sqrt(600) = 1/sqrt(6).
    meter = PresenceMeter()
    for pred, gt, n in [(True, True, 3), (True, False, 1), (False, True, 2), (False, False, 4)]:
        for _ in range(n):
            meter.add(pred, gt)
    res = meter.result()
    assert (res.tp, res.fp, res.fn, res.tn) == (3, 1, 2, 4)
    assert res.precision == pytest.approx(3 / 4)
    assert res.recall == pytest.approx(3 / 5)
    assert res.f1 == pytest.approx(2 / 3)
    assert res.il_mcc == pytest.approx(1 / math.sqrt(6))
    assert len(meter) == 10


def test_presence_zero_denominators():
    # Only negatives, all rejected: nothing to find, nothing wrongly found -> P = R = F1 = 1; MCC's
    # denominator (TP+FP)(TP+FN)... = 0 -> 0 (sklearn's convention).
    r = presence_metrics(tp=0, fp=0, fn=0, tn=5)
    assert (r.precision, r.recall, r.f1, r.il_mcc) == (1.0, 1.0, 1.0, 0.0)
    # Positives all missed, nothing predicted: P has denominator 0 but something is wrong -> 0; R = 0; F1 = 0.
    r = presence_metrics(tp=0, fp=0, fn=3, tn=2)
    assert (r.precision, r.recall, r.f1, r.il_mcc) == (0.0, 0.0, 0.0, 0.0)
    # Only false alarms: R has denominator 0 -> 0; P = 0.
    r = presence_metrics(tp=0, fp=2, fn=0, tn=1)
    assert (r.precision, r.recall, r.f1) == (0.0, 0.0, 0.0)
    # Perfect: MCC = TP*TN / sqrt(TP*TP*TN*TN) = 1. All wrong: MCC = (0 - 2*3) / sqrt(2*3*2*3) = -1.
    assert presence_metrics(2, 0, 0, 3).il_mcc == 1.0
    assert presence_metrics(0, 2, 3, 0).il_mcc == -1.0
    with pytest.raises(ValueError, match="fp"):
        presence_metrics(1, -1, 0, 0)
    with pytest.raises(ValueError, match="no pairs"):
        PresenceMeter().result()


counts = st.integers(0, 50)


@settings(max_examples=50, deadline=None)
@given(counts, counts, counts, counts)
def test_presence_properties(tp, fp, fn, tn):
    r = presence_metrics(tp, fp, fn, tn)
    assert 0.0 <= r.precision <= 1.0 and 0.0 <= r.recall <= 1.0 and 0.0 <= r.f1 <= 1.0
    assert -1.0 - 1e-12 <= r.il_mcc <= 1.0 + 1e-12
    hm = 0.0 if r.precision + r.recall == 0 else 2 * r.precision * r.recall / (r.precision + r.recall)
    assert r.f1 == pytest.approx(hm)  # the zero-denominator conventions keep F1 the harmonic mean
    swapped = presence_metrics(tp=tn, fp=fn, fn=fp, tn=tp)  # relabel positives as negatives
    assert swapped.il_mcc == pytest.approx(r.il_mcc)  # MCC is symmetric in the classes


def test_latency_stats_trimmed_mean_drops_the_outer_tenths():
    from sam3m4.metrics.latency import latency_stats

    s = latency_stats([100.0] + [10.0] * 8 + [1.0])  # one slow and one fast outlier among 10 runs
    assert s["p50_ms"] == 10.0 and s["trimmed_mean_ms"] == 10.0 and s["min_ms"] == 1.0 and s["runs"] == 10
    with pytest.raises(ValueError, match="no timed samples"):
        latency_stats([])
