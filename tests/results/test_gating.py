"""A measurement is judged only by its own target; a ratio over a baseline that scores nothing is not measurable."""

from __future__ import annotations

import math

import pytest

from sam3m4.errors import ConfigError
from sam3m4.results import ResultsStore, schema
from sam3m4.results.gating import GateBindingError, check_binding, gate_record, ratio
from sam3m4.results.targets import Target

TARGETS = {
    "pte_size_mb": Target("pte_size_mb", metric=schema.PTE_MB, comparison="<", value=50, unit="MB"),
    "image_latency_ms": Target("image_latency_ms", metric=schema.IMAGE_LATENCY_MS, comparison="<", value=100,
                               unit="ms"),
    "video_fps": Target("video_fps", metric=schema.VIDEO_FPS, comparison=">", value=15, unit="fps"),
}


def test_a_metric_of_another_target_is_refused_in_one_line_naming_both(tmp_path):
    store = ResultsStore("t", root=tmp_path)
    with pytest.raises(GateBindingError) as err:  # 70 MB "passes" < 100 ms; it must never be judged by it
        gate_record(store, TARGETS, stage=schema.STAGE5, subject="coreml/int4", metric=schema.PTE_MB, value=70.0,
                    target="image_latency_ms")
    text = str(err.value)
    assert "\n" not in text and "targets.image_latency_ms" in text
    assert "'image_latency_ms'" in text and "coreml/int4 pte_mb" in text
    assert store.records() == []  # nothing recorded for a refused binding
    rec = gate_record(store, TARGETS, stage=schema.STAGE5, subject="coreml/int4", metric=schema.PTE_MB, value=70.0,
                      target="pte_size_mb")
    assert (rec.passed, rec.target, rec.comparison, rec.unit) == (False, 50.0, "<", "MB")


def test_a_unit_other_than_the_targets_is_refused():
    with pytest.raises(GateBindingError, match=r"targets.pte_size_mb: unit 'MB', but the measurement x pte_mb is "
                                               r"in 'bytes'"):
        check_binding(TARGETS["pte_size_mb"], metric=schema.PTE_MB, unit="bytes", subject="x")
    check_binding(TARGETS["pte_size_mb"], metric=schema.PTE_MB, unit="MB")
    check_binding(TARGETS["pte_size_mb"], metric=schema.PTE_MB, unit="")  # no unit given: the target's is recorded


def test_only_the_declared_host_metrics_stand_for_an_on_device_target():
    check_binding(TARGETS["image_latency_ms"], metric=schema.HOST_IMAGE_LATENCY_MS, unit="ms")  # Core ML on a Mac
    check_binding(TARGETS["video_fps"], metric=schema.HOST_VIDEO_FPS, unit="fps")
    with pytest.raises(GateBindingError):
        check_binding(TARGETS["video_fps"], metric=schema.HOST_IMAGE_LATENCY_MS)
    with pytest.raises(GateBindingError):
        check_binding(TARGETS["image_latency_ms"], metric=schema.HOST_IMAGE_LATENCY_P90_MS)


def test_a_missing_target_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^t.yaml: targets.nope: missing \(this gate needs it\)$"):
        gate_record(ResultsStore("t", root=tmp_path), TARGETS, stage="s", subject="x", metric="m", value=1,
                    target="nope", where="t.yaml")


@pytest.mark.parametrize("teacher", [0.0, -0.1, math.nan, math.inf])
def test_a_ratio_over_a_teacher_that_scores_nothing_is_not_measurable(teacher):
    r = ratio(0.7, teacher, what="teacher miou")
    assert r.value is None and r.outcome == schema.NOT_MEASURABLE
    assert r.reason.startswith("teacher miou") and "not measurable" in r.reason


def test_a_ratio_over_a_scoring_teacher_is_the_plain_quotient():
    r = ratio(0.63, 0.7, what="teacher miou")
    assert r.value == pytest.approx(0.9) and r.outcome is None and r.reason == ""
    assert math.isnan(ratio(math.nan, 0.7, what="t").value)  # a broken student is a failure, not "not measurable"


def test_an_unmeasurable_ratio_is_recorded_without_a_verdict(tmp_path):
    store = ResultsStore("t", root=tmp_path)
    targets = {"r": Target("r", metric=schema.MIOU_RATIO, comparison=">=", value=0.9, unit="ratio")}
    r = ratio(0.5, 0.0, what="teacher miou")
    rec = gate_record(store, targets, stage=schema.STAGE3, subject=schema.STUDENT_PHASE2, metric=schema.MIOU_RATIO,
                      value=r.value,
                      target="r", outcome=r.outcome, note=r.reason)
    assert rec.passed is None and rec.outcome == schema.NOT_MEASURABLE and rec.note == r.reason
