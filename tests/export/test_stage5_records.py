"""Stage 5 records say why there is no number in fields (``failed_stage``, ``outcome``), for the gates to decide on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sam3m4.export import case as export_case
from sam3m4.export.delegation import Delegation
from sam3m4.export.export import ExportResult, records
from sam3m4.results import ResultsStore
from sam3m4.results.store import NOT_MEASURABLE, UNSUPPORTED


def _export_ok(**kw) -> dict:
    (rec, *_) = records(ExportResult(backend="qnn", mode="int4", gets="-", **kw))
    assert rec["metric"] == "export_ok"
    return rec


def test_export_ok_fields_for_unsupported_unavailable_and_failed():
    rec = _export_ok(failed_stage="lower", error="unsupported: no int4 here", unsupported=True)
    assert (rec["value"], rec["outcome"], rec["failed_stage"]) == (False, UNSUPPORTED, None)
    rec = _export_ok(failed_stage="lower", error="QNN SDK not found (set QNN_SDK_ROOT)", unavailable=True)
    assert (rec["value"], rec["outcome"], rec["failed_stage"]) == (False, NOT_MEASURABLE, None)
    rec = _export_ok(failed_stage="quantize", error="unsupported: the text says so, the fields do not")
    assert (rec["value"], rec["outcome"], rec["failed_stage"]) == (False, None, "quantize")


def test_export_pte_marks_a_missing_toolchain_and_an_unsupported_mode(tmp_path, monkeypatch):
    from sam3m4.export.export import export_pte
    from sam3m4.models import build_student

    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    model = build_student("tiny").eval()
    r = export_pte(model, backend="qnn", mode="fp16", out_dir=tmp_path, model_name="t")
    assert (r.unavailable, r.unsupported) == (True, False) and records(r)[0]["outcome"] == NOT_MEASURABLE
    r = export_pte(model, backend="xnnpack", mode="int4", out_dir=tmp_path, model_name="t")
    assert (r.unavailable, r.unsupported) == (False, True) and records(r)[0]["outcome"] == UNSUPPORTED


def _ok_result(tmp_path: Path, backend: str) -> ExportResult:
    pte = tmp_path / f"t_{backend}_int4.pte"
    pte.write_bytes(b"PTE0")
    return ExportResult(backend=backend, mode="int4", gets="-", path=pte, size_bytes=4, methods=["forward"],
                        delegation={"forward": Delegation(backend_id="X", delegated=9, total=10)}, is_npu=True)


def test_export_case_records_phone_metrics_as_not_measurable(tmp_path, monkeypatch):
    import sam3m4.export.ane as ane

    monkeypatch.setattr(export_case, "load_quantized", lambda path: (object(), {"preset": "tiny", "kind": "student",
                                                                          "mode": "int4"}))
    monkeypatch.setattr(export_case, "export_pte", lambda *a, **kw: _ok_result(tmp_path, "coreml"))

    def no_plan(path):
        raise ane.ComputePlanUnavailable("needs macOS 14.4+")

    monkeypatch.setattr(ane, "ane_share", no_plan)
    monkeypatch.setattr(sys, "platform", "linux")  # Core ML does not run here: nothing timed
    (tmp_path / "int4").mkdir()  # the quantized folder's layout, checked before anything loads
    store = ResultsStore("t", root=tmp_path / "reports")
    stale = tmp_path / "t_coreml_int4.vocab.json"  # an earlier --vocabulary export's map: wrong for a full table
    stale.write_text('{"clip_ids": [0, 49406, 49407]}')
    result = export_case.export_case("coreml", "int4", quantized=tmp_path, out_dir=tmp_path, runs=1, store=store)
    assert result.exit_code == 0 and result.measured is None and result.coverage == 0.9
    assert result.vocabulary is None and not stale.exists()
    by = {r.metric: r for r in store.records()}
    assert [r.metric for r in result.records] == [r.metric for r in store.records()]
    assert (by["export_ok"].value, by["export_ok"].outcome, by["export_ok"].failed_stage) == (True, None, None)
    for metric in ("image_latency_ms", "video_fps", "ane_percent"):
        assert (by[metric].value, by[metric].outcome, by[metric].failed_stage) == (None, NOT_MEASURABLE, None)


@pytest.mark.parametrize("fail_in, stage, failed", [
    ("load_program", "load", ["mask_iou/forward", "host_image_latency_ms"]),
    ("check_pte", "run", ["mask_iou/forward", "host_image_latency_ms"]),
    ("benchmark_pte", "run", ["host_image_latency_ms"]),
])
def test_a_pte_that_does_not_load_or_run_on_the_host_is_a_failed_stage(tmp_path, monkeypatch, capsys,
                                                                      fail_in, stage, failed):
    import sam3m4.export.runtime as runtime

    def boom(*a, **kw):
        raise RuntimeError("kernel missing")

    check = runtime.MethodCheck("forward", max_abs_err={"mask_logits": 0.01}, ref_max_abs={"mask_logits": 3.0},
                                mask_iou=0.97, iou_queries="all 8")
    monkeypatch.setattr(runtime, "load_program", lambda path: None)
    monkeypatch.setattr(runtime, "check_pte", lambda *a, **kw: {"forward": check})
    monkeypatch.setattr(runtime, "benchmark_pte", boom)
    monkeypatch.setattr(runtime, fail_in, boom)
    store = ResultsStore("t", root=tmp_path)
    assert export_case.measure_on_host(_ok_result(tmp_path, "xnnpack"), None, None, store.record, "xnnpack/int4",
                                       1) is False
    by = {r.metric: r for r in store.records()}
    for metric in failed:
        assert (by[metric].value, by[metric].failed_stage) == (None, stage)
        assert "RuntimeError: kernel missing" in by[metric].note
    if fail_in == "benchmark_pte":
        assert (by["mask_iou/forward"].value, by["mask_iou/forward"].failed_stage) == (0.97, None)
    assert f"the .pte failed to {stage} on this host" in capsys.readouterr().out



def test_host_timing_records_p50_and_p90_for_the_latency_plot(tmp_path, monkeypatch):
    import sam3m4.export.runtime as runtime

    check = runtime.MethodCheck("forward", max_abs_err={"mask_logits": 0.01}, ref_max_abs={"mask_logits": 3.0},
                                mask_iou=0.97, iou_queries="all 8")
    stats = {"p50_ms": 2.5, "p90_ms": 3.25, "trimmed_mean_ms": 2.6, "provenance": "host CPU probe"}
    monkeypatch.setattr(runtime, "load_program", lambda path: None)
    monkeypatch.setattr(runtime, "check_pte", lambda *a, **kw: {"forward": check})
    monkeypatch.setattr(runtime, "benchmark_pte", lambda *a, **kw: stats)
    store = ResultsStore("t", root=tmp_path)
    assert export_case.measure_on_host(_ok_result(tmp_path, "xnnpack"), None, None, store.record, "xnnpack/int4", 5)
    by = {r.metric: r for r in store.records()}
    assert (by["host_image_latency_ms"].value, by["host_image_latency_p90_ms"].value) == (2.5, 3.25)
    assert by["host_image_latency_p90_ms"].unit == "ms" and "p90 of 5" in by["host_image_latency_p90_ms"].provenance
