"""Stage 3 gates: the Phase 2 student against its teacher, scored on the same val pairs.

Fills the `Teacher (SAM3)` and `Student (Phase2 final)` rows of report section 2 and gates, with the
targets file's thresholds, student mIoU >= 0.9 x teacher mIoU and student Presence F1 >= 0.9 x teacher's.
By default the models are the embedded default (bootstrapped tiny teacher + distilled tiny student, built
once per cache); `--stage3-teacher DIR --stage3-student CKPT [--stage3-data ROOT]` gates real ones.
"""

from __future__ import annotations

import pytest

from sam3m4.data import SacoImageDataset
from sam3m4.eval.by_phrase import PhraseTap, phrase_metric
from sam3m4.eval.cli import build_predictor
from sam3m4.eval.image import evaluate_pairs
from sam3m4.report.environment import host_summary

pytestmark = [pytest.mark.stage3, pytest.mark.slow]


@pytest.fixture(scope="module")
def scores(stage3_models, pytestconfig):
    """Teacher and student results on the same first N val pairs, with their provenance."""
    import torch

    val = SacoImageDataset(stage3_models.data_root / "saco_image" / "val.json")
    n = pytestconfig.getoption("--stage3-num-val")
    out = {}
    for model, ckpt in (("teacher", stage3_models.teacher), ("student", str(stage3_models.student_ckpt))):
        predict, what, artifact = build_predictor(model, ckpt, threshold=0.5, device="cpu")
        tap = PhraseTap(predict)  # the same pairs, also scored per noun phrase
        res = evaluate_pairs(val, tap, num=n, progress=False)
        prov = (f"host CPU ({host_summary()}), torch {torch.__version__} eager fp32, {what}, "
                f"{res.num_pairs} val pairs of {stage3_models.data_root}")
        out[model] = (res, prov, artifact, tap.miou())
    return out


@pytest.mark.parametrize("model, subject", [("teacher", "teacher"), ("student", "student/phase2")])
def test_report_rows(scores, gate, results_store, model, subject):
    res, prov, artifact, by_phrase = scores[model]
    gate(stage="stage3", subject=subject, metric="miou", value=res.miou, unit="fraction", provenance=prov)
    gate(stage="stage3", subject=subject, metric="presence_f1", value=res.presence.f1, unit="fraction",
         provenance=prov)
    for phrase, (miou, pairs) in by_phrase.items():  # the report's teacher vs student plot (not a gate)
        results_store.record(stage="stage3", subject=subject, metric=phrase_metric(phrase), value=miou,
                             unit="fraction", provenance=f"{prov}; the {pairs} of them with this phrase")
    assert res.num_pairs > 0 and sum(p for _, p in by_phrase.values()) == res.num_pairs


@pytest.mark.parametrize("metric, target", [("miou", "student_miou_ratio"),
                                            ("presence_f1", "student_presence_f1_ratio")])
def test_student_keeps_teacher_quality(scores, gate, metric, target):
    teacher, student = scores["teacher"][0], scores["student"][0]
    value = lambda r: r.miou if metric == "miou" else r.presence.f1  # noqa: E731
    ratio = value(student) / max(value(teacher), 1e-9)
    rec = gate(stage="stage3", subject="student/phase2", metric=f"{metric}_ratio", value=ratio, target=target,
               provenance=f"student / teacher {metric} on the same {student.num_pairs} val pairs; "
                          + scores["student"][1])
    assert rec.passed, f"metric below gate: student {metric} {value(student):.4f} / teacher " \
                       f"{value(teacher):.4f} = {ratio:.3f}, target {rec.comparison} {rec.target}"


@pytest.mark.parametrize("metric, target", [("miou", "embedded_teacher_miou"),
                                            ("presence_f1", "embedded_teacher_presence_f1")])
def test_embedded_teacher_is_useful(stage3_models, scores, gate, metric, target):
    if not stage3_models.embedded:
        pytest.skip("a user-provided teacher is the baseline, not gated")
    res = scores["teacher"][0]
    value = res.miou if metric == "miou" else res.presence.f1
    rec = gate(stage="stage3", subject="teacher/embedded", metric=metric, value=value, target=target,
               provenance=scores["teacher"][1])
    assert rec.passed, f"metric below gate: embedded teacher {metric} {value:.4f}, target {rec.comparison} {rec.target}"
