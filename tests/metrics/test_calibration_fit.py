"""The presence operating point (sam3m4.metrics.operating_point): the split, the fit, the held-out check, and the
shipped threshold reaching Stage 4's records, decision.json and the deployed evaluation's keep rule.

    python -m pytest tests/metrics/test_calibration_fit.py -q -p no:xdist
"""

from __future__ import annotations

import numpy as np
import pytest

from sam3m4.metrics.calibration import f1_at, f1_curve
from sam3m4.metrics.operating_point import (DEFAULT_THRESHOLD, calibration_split, fit_operating_point, fit_threshold,
                                            split_fraction)


def _student_like(n: int, seed: int = 0, shift: float = 0.25):
    """Pairs whose positives score around 0.55 - shift and negatives lower: a distilled student's scores sitting
    below the teacher's, so 0.5 misses most positives."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    s = np.clip(np.where(y, rng.normal(0.55 - shift, 0.08, n), rng.normal(0.1, 0.06, n)), 0, 1)
    groups = [f"img_{i // 2:04d}.png" for i in range(n)]      # two phrases per image
    return s, y, groups


# --- the fit --------------------------------------------------------------------------------------------------
def test_fit_threshold_maximises_f1_and_takes_the_midpoint_nearest_half():
    s, y = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.8]), np.array([0, 0, 1, 1, 0, 1], bool)
    t = fit_threshold(s, y)
    # F1 is best (0.857) predicting {0.3, 0.35, 0.6, 0.8}: any t in (0.2, 0.3]; the midpoint is 0.25
    assert t == pytest.approx(0.25)
    assert f1_at(s, y, t) == pytest.approx(f1_curve(s, y).best_f1)
    # the midpoint keeps the decisions under small score shifts (an exported program's third decimal)
    assert f1_at(s + 0.004, y, t) == f1_at(s - 0.004, y, t) == f1_at(s, y, t)


def test_fit_threshold_edge_cases():
    assert fit_threshold([0.0, 0.0], [True, True]) == 0.0                 # everything present: s >= 0
    assert fit_threshold([0.2, 0.4], [False, False]) == pytest.approx(0.7)  # nothing present: above every score
    assert fit_threshold([0.3, 1.0], [False, True]) == pytest.approx(0.65)
    assert fit_threshold([0.1, 0.9], [True, True]) == pytest.approx(0.05)  # only t <= 0.1 keeps both


def test_the_split_is_by_image_stable_and_about_half():
    groups = [f"img_{i // 3}.png" for i in range(3000)]                   # three phrases per image
    cal = calibration_split(groups)
    assert 0.45 < cal.mean() < 0.55
    by_image = {}
    for g, c in zip(groups, cal):
        by_image.setdefault(g, set()).add(bool(c))
    assert all(len(v) == 1 for v in by_image.values())                    # no image on both sides
    assert list(calibration_split(groups[::-1])) == list(cal[::-1])        # depends on the key only, not the order
    assert split_fraction("a.png") == split_fraction("a.png") != split_fraction("b.png")


def test_operating_point_is_fitted_on_the_calibration_part_and_checked_on_the_rest():
    s, y, groups = _student_like(400)
    op = fit_operating_point(s, y, groups)
    cal = calibration_split(groups)
    assert op.how == "fitted" and op.calibration_pairs == cal.sum() and op.held_out_pairs == (~cal).sum()
    # the fit sees only the calibration part: it is that part's F1-maximiser, whatever the held-out labels are
    assert op.threshold == pytest.approx(fit_threshold(s[cal], y[cal]))
    assert op.f1_calibration == pytest.approx(f1_curve(s[cal], y[cal]).best_f1)
    flipped = y.copy()
    flipped[~cal] = ~flipped[~cal]
    assert fit_operating_point(s, flipped, groups).threshold == op.threshold
    # held-out numbers are the held-out part's, at the fitted threshold and at 0.5
    assert op.f1_held_out == pytest.approx(f1_at(s[~cal], y[~cal], op.threshold))
    assert op.f1_held_out_at_default == pytest.approx(f1_at(s[~cal], y[~cal], 0.5))
    assert op.best_f1_held_out == pytest.approx(f1_curve(s[~cal], y[~cal]).best_f1)
    # a student scoring below the teacher: the fitted threshold sits below 0.5 and wins on pairs it never saw
    assert op.threshold < 0.45 and op.f1_held_out > op.f1_held_out_at_default + 0.2
    assert op.best_f1_held_out - op.f1_held_out < 0.05


def test_the_fit_keeps_half_when_it_is_on_the_calibration_plateau():
    """A teacher-like model whose scores separate at 0.5 as well as anywhere: SAM 3's 0.5 ships, not an argmax that
    moves with the sample."""
    rng = np.random.default_rng(5)
    y = rng.random(300) < 0.5
    s = np.clip(np.where(y, rng.normal(0.8, 0.08, 300), rng.normal(0.15, 0.08, 300)), 0, 1)
    groups = [f"img_{i}.png" for i in range(300)]
    cal = calibration_split(groups)
    assert fit_threshold(s[cal], y[cal]) != 0.5                          # the argmax is elsewhere ...
    op = fit_operating_point(s, y, groups)
    assert (op.how, op.threshold) == ("fitted", 0.5)                    # ... but 0.5 is on the plateau


def test_no_fit_without_enough_pairs_or_both_classes_and_a_pinned_threshold_ships_as_is():
    s, y, groups = _student_like(12)
    small = fit_operating_point(s, y, groups)
    assert small.how == "default" and small.threshold == DEFAULT_THRESHOLD
    s, _, groups = _student_like(200)
    one_class = fit_operating_point(s, np.ones(200, bool), groups)
    assert one_class.how == "default" and one_class.threshold == DEFAULT_THRESHOLD
    s, y, groups = _student_like(200)
    pinned = fit_operating_point(s, y, groups, fixed=0.5)
    assert pinned.how == "fixed" and pinned.threshold == 0.5
    one = fit_operating_point([0.7], [True], ["only.png"])
    assert one.held_out_pairs == 1 and one.f1_held_out == 1.0
    with pytest.raises(ValueError, match="3 groups for 2 pairs"):
        fit_operating_point([0.1, 0.2], [True, False], ["a", "b", "c"])


# --- what ships: Stage 4's row -> decision.json -> the deployed evaluation ----------------------------------------
def test_the_fitted_threshold_reaches_the_decision_and_the_shipped_presence(tmp_path):
    from sam3m4.export.accuracy import shipped_presence
    from sam3m4.quantize.compare import ModeResult, judge
    from sam3m4.quantize.decision import decide_per_backend, read_decision, write_decision
    from sam3m4.results.targets import load_targets

    s, y, groups = _student_like(200)
    ops = {"fp16": fit_operating_point(np.clip(s + 0.2, 0, 1), y, groups), "int8_int4": fit_operating_point(s, y, groups)}
    rows = [ModeResult(mode=m, size_mb={"fp16": 8.0, "int8_int4": 2.0}[m], miou=0.5, presence_f1=0.6, avg_ms=1.0,
                       num_pairs=200, presence_point=ops[m]) for m in ops]
    target = load_targets()["quant_miou_drop"]
    judge(rows, target)
    decisions = decide_per_backend(rows, target)
    assert decisions["xnnpack"].mode == "int8_int4"
    assert decisions["xnnpack"].presence_threshold == ops["int8_int4"].threshold
    assert decisions["coreml"].presence_threshold == ops["fp16"].threshold  # Core ML ships fp16 here
    write_decision(tmp_path, decisions, rows=rows, target=target, preset="tiny", source="ck.pt")
    d = read_decision(tmp_path)
    assert d.presence["int8_int4"] == ops["int8_int4"] and d.backends["xnnpack"].presence_threshold == ops["int8_int4"].threshold
    got = shipped_presence(tmp_path, "int8_int4")
    assert (got.threshold, got.how) == (ops["int8_int4"].threshold, "fitted") and "decision.json" in got.source
    assert shipped_presence(tmp_path, "int8_int4", pinned=0.5).threshold == 0.5
    assert shipped_presence(tmp_path, "int4").how == "default"        # a mode Stage 4 did not fit
    assert shipped_presence(tmp_path / "none", "int4").threshold == DEFAULT_THRESHOLD


class _FixedModel:
    """A stand-in model whose one query scores ``score`` on every pair and whose mask covers the whole image: the
    keep rule alone decides what is returned."""

    image_size = 32
    training = False

    def __init__(self, score: float):
        self.score = score

    def eval(self):
        return self

    def to(self, device):
        return self


def test_the_deployed_evaluation_keeps_detections_at_the_shipped_threshold(monkeypatch):
    """evaluate_deployed scores at 0.5 (the gates' basis) and at the shipped threshold in one pass: a query at 0.4
    is dropped at 0.5 and kept at a shipped 0.3, and the numbers at 0.5 do not move."""
    from types import SimpleNamespace

    import torch

    from sam3m4.export import deployed
    from sam3m4.models.student import StudentOutput
    from sam3m4.models.text_encoder import PromptEmbedding

    class Pte(_FixedModel):
        path = SimpleNamespace(name="fake.pte")

        def encode_text(self, ids, mask):
            return PromptEmbedding(torch.zeros(1, ids.shape[1], 4), mask.float())

        def encode_image(self, px):
            return px

        def decode(self, px, prompt):
            logit = torch.logit(torch.tensor([[self.score]]))   # sigmoid(query) x sigmoid(presence) = score
            return StudentOutput(mask_logits=torch.ones(1, 1, 8, 8), query_logits=logit, boxes_xyxy=torch.tensor(
                [[[0.0, 0.0, 1.0, 1.0]]]), presence_logit=torch.tensor([[20.0]]), semantic_logits=None,
                neck_features=(), query_embeddings=torch.empty(0))

    def image(present: bool):
        masks = np.ones((1, 16, 16), bool) if present else np.zeros((0, 16, 16), bool)
        return SimpleNamespace(pair_id=0, image=np.zeros((16, 16, 3), np.uint8), phrase="thing", masks=masks,
                               present=present)

    samples = [image(True), image(True), image(False)]
    monkeypatch.setattr(deployed, "sha256_file", lambda p: "0" * 64)
    monkeypatch.setattr(deployed, "category_ids", lambda p: {})

    class Val(list):
        json_path = "val.json"

    d = deployed.evaluate_deployed(Pte(0.4), Val(samples), 3, threshold=0.3)
    assert d.threshold == 0.3
    assert d.presence.f1 == 0.0 and d.miou == pytest.approx(1 / 3)          # at 0.5: nothing kept
    assert d.presence_shipped.f1 == pytest.approx(0.8) and d.miou_shipped == pytest.approx(2 / 3)  # kept at 0.3
    assert d.pairs.max_score == pytest.approx([0.4] * 3)
    at_half = deployed.evaluate_deployed(Pte(0.4), Val(samples), 3)
    assert (at_half.miou, at_half.presence.f1) == (d.miou, d.presence.f1) and at_half.miou_shipped == at_half.miou


def test_a_fitted_threshold_fails_the_plateau_gate_only_when_the_held_out_pairs_resolve_it():
    from sam3m4.eval.calibration import plateau_gate
    from sam3m4.metrics.operating_point import gap_interval
    from sam3m4.results import schema
    from sam3m4.results.targets import load_targets

    target = load_targets()["presence_threshold_on_plateau"]
    s, y, _ = _student_like(100, seed=3)
    # SAM 3's 0.5 on a student scoring below the teacher: far off the plateau, and 100 pairs resolve it
    outcome, check = plateau_gate(s, y, target, threshold=0.5, resolve=True)
    assert outcome.outcome == schema.FAIL and check.gap > 0.3 and "bootstrap interval of the gap" in outcome.reason
    # thresholds fitted on other pairs of the same kind never fail it: on the plateau, or a gap the pairs cannot
    # tell from noise (the strict rule would fail some of them)
    outcomes = [plateau_gate(s, y, target, threshold=fit_threshold(*_student_like(100, seed=k)[:2]), resolve=True)
                for k in range(4, 12)]
    assert all(o.outcome in (schema.PASS, schema.NOT_MEASURED) for o, _ in outcomes)
    assert any(o.outcome == schema.PASS for o, _ in outcomes)
    # one pair's worth of gap on 12 pairs (one negative at 0.33 called present): not resolvable (a skip) ...
    s12, y12 = np.array([0.1, 0.2, 0.3, 0.31, 0.32, 0.33, 0.6, 0.7, 0.8, 0.9, 0.92, 0.95]), np.zeros(12, bool)
    y12[[2, 6, 7, 8, 9, 10, 11]] = True
    outcome, check = plateau_gate(s12, y12, target, threshold=0.325, resolve=True)
    gi = gap_interval(s12, y12, 0.325)
    assert check.gap > target.value and gi.low <= target.value and gi == gap_interval(s12, y12, 0.325)
    assert outcome.outcome == schema.NOT_MEASURED and "not resolvable on 12 pairs" in outcome.reason
    # ... while a fixed threshold keeps the strict rule
    assert plateau_gate(s12, y12, target, threshold=0.325)[0].outcome == schema.FAIL
