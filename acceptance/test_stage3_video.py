"""Stage 3 video gates, on the numbers ``sam3m4 distill video --run RUN`` recorded in the same run's store.

Gates (targets file): student (+Video Distill) J&F >= 0.9 x teacher J&F on the same val videos, and video
distillation costs the image path at most 1.0 mIoU point (Phase 2 student vs +Video student, both on the first
N image val pairs: this file runs after ``test_stage3.py``, which records the Phase 2 row). Skipped, with the
reason, when the run holds no video distillation results.
"""

from __future__ import annotations

import pytest
from outcomes import settle

from sam3m4.eval import saco
from sam3m4.results import schema
from sam3m4.results.gating import ratio

pytestmark = [pytest.mark.stage3, pytest.mark.slow]


def _need(store, subject, metric):
    rec = store.latest(stage=schema.STAGE3, subject=subject, metric=metric)
    if rec is None:
        pytest.skip(f"no stage3 {subject} {metric} in reports/{store.run}: run `sam3m4 distill video --run {store.run}`")
    return rec


def test_student_video_jf_keeps_teacher_quality(results_store, gate, release):
    teacher, student = _need(results_store, schema.TEACHER, schema.JF), _need(results_store, schema.STUDENT_VIDEO, schema.JF)
    r = ratio(student.value, teacher.value, what="teacher J&F")
    rec = gate(stage=schema.STAGE3, subject=schema.STUDENT_VIDEO, metric=schema.JF_RATIO, value=r.value,
               target="student_video_jf_ratio", outcome=r.outcome, note=r.reason,
               provenance=f"student J&F {student.value:.4f} / teacher J&F {teacher.value:.4f}; {student.provenance}")
    settle(rec, release=release, what="student_video_jf_ratio", why=r.reason)  # teacher J&F 0: never a pass
    assert rec.passed, f"metric below gate: J&F ratio {r.value:.3f}, target {rec.comparison} {rec.target}"


def test_video_distillation_keeps_image_quality(results_store, gate):
    before, after = _need(results_store, schema.STUDENT_PHASE2, schema.MIOU), _need(results_store, schema.STUDENT_VIDEO, schema.MIOU)
    cost = 100 * (before.value - after.value)
    rec = gate(stage=schema.STAGE3, subject=schema.STUDENT_VIDEO, metric=schema.MIOU_COST, value=cost,
               target="video_distill_miou_cost",
               provenance=f"Phase 2 mIoU {before.value:.4f} ({before.provenance}) minus +Video mIoU {after.value:.4f} "
                          f"({after.provenance}), in points")
    assert rec.passed, f"metric above gate: video distillation costs {cost:.2f} mIoU points, target {rec.comparison} {rec.target}"


@pytest.mark.parametrize("subject", [schema.TEACHER, schema.STUDENT_VIDEO])
def test_official_video_metrics_recorded(results_store, subject, release):
    """``sam3m4 distill video`` scored the same masklets with SAM 3's VEvalEvaluator (report: SA-Co table). With the
    evaluator installed a missing value is a failure (the evaluator or the masklets broke); "not measured" is
    for a host without the ``sam3`` evaluator only (a failure under ``--release``)."""
    rec = _need(results_store, subject, schema.SACO_VIDEO_CGF1)
    if rec.value is not None:
        assert 0.0 <= rec.value <= 1.0, rec
        return
    missing = saco.available()
    if missing is None:
        pytest.fail(f"{subject} {schema.SACO_VIDEO_CGF1}: no value although SAM 3's evaluator is installed here "
                    f"({rec.note or 'no note'})")
    (pytest.fail if release else pytest.skip)(f"{subject} {schema.SACO_VIDEO_CGF1} not measured: {missing}")
