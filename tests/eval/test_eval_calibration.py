"""Presence calibration in the evaluation: per-pair presence scores from evaluate_pairs, the scores file, the two
calibration gates, the ``presence_threshold`` of the targets file, and SA-Co cgF1 / IL_F1 at a given threshold
through Meta's evaluator (skipped with the reason without ``sam3``).

Run: python -m pytest tests/eval/test_eval_calibration.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sam3m4.data import SacoImageDataset
from sam3m4.errors import ConfigError, DataFormatError
from sam3m4.eval import saco
from sam3m4.eval.calibration import (ece_rise_gate, plateau_gate, read_pair_scores, record_calibration,
                                     shipped_threshold, write_pair_scores)
from sam3m4.eval.image import evaluate_pairs
from sam3m4.eval.saco_format import ImagePredictions, category_ids
from sam3m4.metrics.calibration import f1_at
from sam3m4.results import ResultsStore, schema
from sam3m4.results.targets import Target, parse_targets

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "synth"
IMAGE_GT = FIXTURES / "saco_image" / "train.json"     # 43 pairs

PLATEAU = Target("presence_threshold_on_plateau", schema.PRESENCE_F1_GAP, "<=", 0.01, "fraction",
                 presence_threshold=0.5)
RISE = Target("presence_ece_rise", schema.PRESENCE_ECE_RISE, "<=", 0.05, "fraction")
S4, Y4 = np.array([0.2, 0.4, 0.6, 0.8]), np.array([False, True, False, True])


def _scored(sample):
    """Ground truth with mistakes, and the pair's presence score (third element): each pair's detections score
    0.9 (or none for every 3rd positive), a false 0.9 detection on every 2nd negative, a 0.3 one on every 5th
    pair; the presence score is the highest of them, else a score below every threshold in play (0.02)."""
    k = sample.pair_id
    masks, scores = sample.masks, np.full(len(sample.masks), 0.9)
    if sample.present and k % 3 == 0:
        masks, scores = masks[:0], scores[:0]
    extra = []
    if not sample.present and k % 2 == 0:
        extra.append((0.9, (slice(10, 30), slice(10, 30))))
    if k % 5 == 0:
        extra.append((0.3, (slice(0, 5), slice(0, 5))))
    for score, where in extra:
        m = np.zeros((1, *sample.image.shape[:2]), dtype=bool)
        m[(0, *where)] = True
        masks, scores = np.concatenate([masks, m]), np.append(scores, score)
    return masks, scores, float(scores.max()) if len(scores) else 0.02


def test_evaluate_pairs_keeps_each_pairs_presence_score():
    ds = SacoImageDataset(IMAGE_GT)
    res = evaluate_pairs(ds, _scored, progress=False)
    assert res.scores_complete and len(res.presence_scores) == len(res.present) == len(res.pair_ids) == 43
    assert list(res.present) == [bool(ds[i].present) for i in range(43)]
    assert f1_at(res.presence_scores, res.present, 0.5) == pytest.approx(res.presence.f1)   # one definition
    assert np.sum(res.presence_scores == 0.02) > 0                    # scores below the keep threshold are kept
    two = evaluate_pairs(ds, lambda s: _scored(s)[:2], progress=False)
    assert not two.scores_complete and np.all(two.presence_scores[res.presence_scores == 0.02] == 0)


def test_a_presence_score_below_a_detection_is_an_error():
    ds = SacoImageDataset(IMAGE_GT)
    with pytest.raises(ValueError, match="presence score 0.1"):
        evaluate_pairs(ds, lambda s: (s.masks, np.full(len(s.masks), 0.9), 0.1), num=3, progress=False)


def test_scores_file_round_trip_and_bad_files(tmp_path):
    path = write_pair_scores(tmp_path / "a.json", S4, Y4, pair_ids=[3, 4, 5, 6], what="x")
    s, y, ids = read_pair_scores(path)
    assert list(s) == list(S4) and list(y) == list(Y4) and ids == [3, 4, 5, 6]
    for bad, field in (({"scores": [0.5], "labels": [1]}, "labels"), ({"scores": "x", "labels": []}, "scores"),
                       ({"scores": [1.5], "labels": [True]}, "scores"), ([], "<top level>")):
        (tmp_path / "b.json").write_text(json.dumps(bad))
        with pytest.raises(DataFormatError, match=f"b.json: {field}"):
            read_pair_scores(tmp_path / "b.json")


def test_record_calibration_records_the_summary(tmp_path):
    store = ResultsStore("t", root=tmp_path)
    cal = record_calibration(store, stage=schema.STAGE4, subject="int4", scores=S4, labels=Y4, provenance="hand")
    assert cal.f1 == pytest.approx(0.5) and cal.curve.best_threshold == pytest.approx(0.4)
    got = {r.metric: r for r in store.records()}
    assert got[schema.PRESENCE_ECE].value == pytest.approx(0.4) and got[schema.PRESENCE_ECE].unit == "fraction"
    assert got[schema.PRESENCE_F1_BEST].value == pytest.approx(0.8)
    assert (got[schema.PRESENCE_PLATEAU_LOW].value, got[schema.PRESENCE_PLATEAU_HIGH].value) == \
        (pytest.approx(0.21), pytest.approx(0.40))
    assert got[schema.PRESENCE_ECE_LOW].value <= got[schema.PRESENCE_ECE_HIGH].value
    assert read_pair_scores(got[schema.PRESENCE_SCORES].artifact)[0].tolist() == S4.tolist()
    assert got[schema.PRESENCE_SCORES].sha256


# --- gates -------------------------------------------------------------------------------------------------------
def test_plateau_gate_by_hand():
    outcome, check = plateau_gate(S4, Y4, PLATEAU)           # F1 0.5 at 0.5, best 0.8 at 0.4
    assert outcome.outcome == schema.FAIL and check.gap == pytest.approx(0.3) and "off the F1 plateau" in outcome.reason
    shipped_at_03 = Target(**{**PLATEAU.__dict__, "presence_threshold": 0.3})
    outcome, check = plateau_gate(S4, Y4, shipped_at_03)     # F1 0.8 at 0.3: on the plateau
    assert outcome.outcome == schema.PASS and check.gap == 0 and check.threshold == 0.3


def test_ece_rise_gate_outcomes():
    zero = [0] * 40
    outcome, diff = ece_rise_gate([0.3] * 40, [0.9] * 40, zero, RISE)     # ECE 0.3 -> 0.9 on every resample
    assert outcome.outcome == schema.FAIL and diff.diff == pytest.approx(0.6)
    outcome, _ = ece_rise_gate([0.9] * 40, [0.3] * 40, zero, RISE)        # ECE fell, resolvably
    assert outcome.outcome == schema.PASS
    rng = np.random.default_rng(7)
    a = rng.uniform(size=40)
    y = rng.uniform(size=40) < a
    outcome, diff = ece_rise_gate(a, np.clip(a + rng.normal(0, 0.05, 40), 0, 1), y, RISE)
    assert outcome.outcome == schema.NOT_MEASURED and not diff.resolvable
    assert outcome.reason.startswith("not resolvable on 40 pairs") and not outcome.reason.startswith("fail")


def test_presence_threshold_in_the_targets_file():
    raw = {"targets": {"p": {"metric": "presence_f1_gap", "comparison": "<=", "value": 0.01, "presence_threshold": 0.4}}}
    assert shipped_threshold(parse_targets(raw, "t.yaml")["p"]) == 0.4
    del raw["targets"]["p"]["presence_threshold"]
    assert shipped_threshold(parse_targets(raw, "t.yaml")["p"]) == 0.5           # SAM 3's, unless configured
    for bad in (1.5, "0.5", True, float("nan")):
        raw["targets"]["p"]["presence_threshold"] = bad
        with pytest.raises(ConfigError, match=r"t.yaml: targets.p.presence_threshold"):
            parse_targets(raw, "t.yaml")


# --- SA-Co official metrics at a given threshold -----------------------------------------------------------------
@pytest.mark.skipif(saco.available() is not None, reason=f"{saco.available()}")
def test_official_il_f1_at_a_threshold_matches_the_f1_curve(tmp_path):
    ds = SacoImageDataset(IMAGE_GT)
    preds = ImagePredictions(category_ids(IMAGE_GT))
    res = evaluate_pairs(ds, _scored, progress=False, sink=preds)
    path = preds.write(tmp_path / "p.json")
    for t in (0.5, 0.3, 0.95):        # 0.3: the low detections count; 0.95: none does
        out = saco.evaluate_image([IMAGE_GT], path, threshold=t)
        assert out["cgF1_eval_segm_IL_F1"] == pytest.approx(f1_at(res.presence_scores, res.present, t), abs=1e-4), t
    assert f1_at(res.presence_scores, res.present, 0.3) != pytest.approx(res.presence.f1)   # the threshold mattered
