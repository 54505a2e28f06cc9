"""Stage 3 gates: the Phase 2 student against its teacher, scored on the same val pairs.

Fills the `Teacher (SAM3)` and `Student (Phase2 final)` rows of report section 2 and gates, with the
targets file's thresholds, student mIoU >= 0.9 x teacher mIoU and student Presence F1 >= 0.9 x teacher's.
The same predictions, written in SA-Co's official format, are scored by Meta's own evaluator (cgF1, IL_MCC,
pmF1: the report's "SA-Co official metrics" table) and gate student cgF1 >= 0.8 x teacher cgF1.
Presence calibration of both (:mod:`sam3m4.eval.calibration`): ECE with its bootstrap interval, the F1 curve's
best and plateau, and the official cgF1 / IL_MCC again with detections kept at the F1-best threshold (the
predictions keep detections down to ``DETECTION_FLOOR``; every metric above keeps SAM 3's 0.5).
By default the models are the embedded default (bootstrapped tiny teacher + distilled tiny student, built
once per cache); `--stage3-teacher DIR --stage3-student CKPT [--stage3-data ROOT]` gates real ones.
"""

from __future__ import annotations

import pytest
from outcomes import settle

from sam3m4.data import SacoImageDataset
from sam3m4.eval import saco
from sam3m4.eval.by_phrase import PhraseTap, phrase_metric
from sam3m4.eval.calibration import DETECTION_FLOOR, record_calibration
from sam3m4.eval.evaluate import build_predictor
from sam3m4.eval.image import evaluate_pairs
from sam3m4.eval.saco_format import ImagePredictions, category_ids
from sam3m4.env import host_summary
from sam3m4.metrics.calibration import f1_curve
from sam3m4.results import schema
from sam3m4.results.gating import ratio

pytestmark = [pytest.mark.stage3, pytest.mark.slow]


@pytest.fixture(scope="module")
def scores(stage3_models, pytestconfig):
    """Teacher and student results on the same first N val pairs, with their provenance and their detections in
    SA-Co's official format."""
    import torch

    val_json = stage3_models.data_root / "saco_image" / "val.json"
    val = SacoImageDataset(val_json)
    n = pytestconfig.getoption("--stage3-num-val")
    out = {}
    for model, ckpt in (("teacher", stage3_models.teacher), ("student", str(stage3_models.student_ckpt))):
        # detections down to DETECTION_FLOOR reach the SA-Co file (cgF1 below 0.5); the metrics keep 0.5
        predict, what, artifact = build_predictor(model, ckpt, threshold=DETECTION_FLOOR, device="cpu")
        preds = ImagePredictions(category_ids(val_json))
        tap = PhraseTap(predict)  # the same pairs, also scored per noun phrase
        res = evaluate_pairs(val, tap, num=n, progress=False, sink=preds)
        prov = (f"host CPU ({host_summary()}), torch {torch.__version__} eager fp32, {what}, "
                f"{res.num_pairs} val pairs of {stage3_models.data_root}")
        out[model] = (res, prov, artifact, preds, tap.miou())
    return out


@pytest.fixture(scope="module")
def official(scores, stage3_models, results_store, release):
    """SAM 3's CGF1Evaluator on each model's predictions (files under reports/<run>/saco/)."""
    reason = saco.available()
    if reason:
        (pytest.fail if release else pytest.skip)(f"SA-Co official metrics not measured: {reason}")
    out = {}
    for model, subject in (("teacher", schema.TEACHER), ("student", schema.STUDENT_PHASE2)):
        res, prov, _, preds, _ = scores[model]
        result, path = saco.score_image(stage3_models.data_root / "saco_image" / "val.json", preds,
                                        results_store.dir / "saco", subject.replace("/", "_"))
        out[model] = (saco.headline(result, "image"), f"SAM 3's CGF1Evaluator (sam3 {saco.SAM3_VERSION}) on the "
                      f"predictions of the Stage 3 row ({path.name}); {prov}", path)
    return out


@pytest.mark.parametrize("model, subject", [("teacher", schema.TEACHER), ("student", schema.STUDENT_PHASE2)])
def test_report_rows(scores, gate, results_store, model, subject):
    res, prov, artifact, _, by_phrase = scores[model]
    gate(stage=schema.STAGE3, subject=subject, metric=schema.MIOU, value=res.miou, unit="fraction", provenance=prov)
    gate(stage=schema.STAGE3, subject=subject, metric=schema.PRESENCE_F1, value=res.presence.f1, unit="fraction",
         provenance=prov)
    for phrase, (miou, pairs) in by_phrase.items():  # the report's teacher vs student plot (not a gate)
        results_store.record(stage=schema.STAGE3, subject=subject, metric=phrase_metric(phrase), value=miou,
                             unit="fraction", provenance=f"{prov}; the {pairs} of them with this phrase")
    assert res.num_pairs > 0 and sum(p for _, p in by_phrase.values()) == res.num_pairs


@pytest.mark.parametrize("metric, target", [(schema.MIOU, "student_miou_ratio"),
                                            (schema.PRESENCE_F1, "student_presence_f1_ratio")])
def test_student_keeps_teacher_quality(scores, gate, release, metric, target):
    teacher, student = scores["teacher"][0], scores["student"][0]
    value = lambda r: r.miou if metric == schema.MIOU else r.presence.f1  # noqa: E731
    r = ratio(value(student), value(teacher), what=f"teacher {metric}")
    rec = gate(stage=schema.STAGE3, subject=schema.STUDENT_PHASE2, metric=f"{metric}_ratio", value=r.value,
               target=target, outcome=r.outcome, note=r.reason,
               provenance=f"student / teacher {metric} on the same {student.num_pairs} val pairs; "
                          + scores["student"][1])
    settle(rec, release=release, what=target, why=r.reason)  # a teacher scoring 0: not measurable, never a pass
    assert rec.passed, f"metric below gate: student {metric} {value(student):.4f} / teacher " \
                       f"{value(teacher):.4f} = {r.value:.3f}, target {rec.comparison} {rec.target}"


@pytest.mark.parametrize("model, subject", [("teacher", schema.TEACHER), ("student", schema.STUDENT_PHASE2)])
def test_official_image_metrics(official, gate, model, subject):
    values, prov, path = official[model]
    for metric in saco.IMAGE_HEADLINE:
        gate(stage=schema.STAGE3, subject=subject, metric=metric, value=values[metric], unit="fraction", provenance=prov,
             artifact=path)
    # cgF1 is pmF1 x IL_MCC (IL_MCC does not depend on the IoU threshold): the keys read are the right ones
    assert values[schema.SACO_CGF1] == pytest.approx(values[schema.SACO_PMF1] * values[schema.SACO_IL_MCC], abs=1e-6)


def test_student_keeps_teacher_cgf1(official, gate, release):
    teacher, student = official["teacher"][0][schema.SACO_CGF1], official["student"][0][schema.SACO_CGF1]
    r = ratio(student, teacher, what="teacher cgF1")
    rec = gate(stage=schema.STAGE3, subject=schema.STUDENT_PHASE2, metric=schema.SACO_CGF1_RATIO, value=r.value,
               target="student_image_cgf1_ratio", outcome=r.outcome, note=r.reason,
               provenance=f"student / teacher official image cgF1 on the same pairs; {official['student'][1]}")
    settle(rec, release=release, what="student_image_cgf1_ratio", why=r.reason)
    assert rec.passed, f"metric below gate: student cgF1 {student:.4f} / teacher cgF1 {teacher:.4f} = " \
                       f"{r.value:.3f}, target {rec.comparison} {rec.target}"


@pytest.mark.parametrize("metric, target", [(schema.MIOU, "embedded_teacher_miou"),
                                            (schema.PRESENCE_F1, "embedded_teacher_presence_f1")])
def test_embedded_teacher_is_useful(stage3_models, scores, gate, metric, target):
    if not stage3_models.embedded:
        pytest.skip("a user-provided teacher is the baseline, not gated")
    res = scores["teacher"][0]
    value = res.miou if metric == schema.MIOU else res.presence.f1
    rec = gate(stage=schema.STAGE3, subject=schema.TEACHER_EMBEDDED, metric=metric, value=value, target=target,
               provenance=scores["teacher"][1])
    assert rec.passed, f"metric below gate: embedded teacher {metric} {value:.4f}, target {rec.comparison} {rec.target}"


@pytest.mark.parametrize("model, subject", [("teacher", schema.TEACHER), ("student", schema.STUDENT_PHASE2)])
def test_presence_calibration(scores, results_store, model, subject):
    res, prov = scores[model][0], scores[model][1]
    assert res.scores_complete, f"the {model} predictor must give every pair's presence score"
    cal = record_calibration(results_store, stage=schema.STAGE3, subject=subject, scores=res.presence_scores,
                             labels=res.present, pair_ids=res.pair_ids,
                             provenance=f"presence score = highest detection score over all queries; {prov}")
    assert cal.f1 == pytest.approx(res.presence.f1)           # the curve at 0.5 is the recorded Presence F1
    assert cal.curve.best_f1 >= cal.f1 - 1e-12 and cal.ece.low <= cal.ece.high


@pytest.mark.parametrize("model, subject", [("teacher", schema.TEACHER), ("student", schema.STUDENT_PHASE2)])
def test_official_metrics_at_best_threshold(official, scores, results_store, model, subject):
    """SA-Co cgF1 / IL_MCC with detections kept at the F1-best threshold (at 0.5: test_official_image_metrics)."""
    res = scores[model][0]
    best = f1_curve(res.presence_scores, res.present).best_threshold
    if best < DETECTION_FLOOR:
        pytest.skip(f"{model}: F1-best threshold {best:.4f} is below the detection floor {DETECTION_FLOOR} kept in the "
                    "predictions: cgF1 there not measured")
    result, path = saco.score_image_at(results_store.dir / "saco", subject.replace("/", "_"), best)
    values = saco.headline(result, "image")
    prov = f"detections kept at the F1-best threshold {best:.4f}; {official[model][1]}"
    for metric, value in ((schema.SACO_CGF1_AT_BEST, values[schema.SACO_CGF1]),
                          (schema.SACO_IL_MCC_AT_BEST, values[schema.SACO_IL_MCC])):
        results_store.record(stage=schema.STAGE3, subject=subject, metric=metric, value=value, unit=schema.FRACTION,
                             provenance=prov, artifact=path)
    assert values[schema.SACO_IL_F1] >= official[model][0][schema.SACO_IL_F1] - 0.02  # no worse than at 0.5
