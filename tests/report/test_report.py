"""Markdown report: the template's sections and columns, sourced cells with provenance, '-' with a reason."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from sam3m4.errors import ConfigError
from sam3m4.report import render_report
from sam3m4.results import ResultsStore, schema

TEMPLATE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "report-template.md"
TARGETS = Path(__file__).resolve().parents[2] / "acceptance" / "targets.yaml"


def _headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("## ", "### "))]


def _table_headers(text: str) -> list[str]:
    lines = text.splitlines()
    return [a for a, b in zip(lines, lines[1:]) if a.startswith("| ") and b.startswith("|---")]


@pytest.mark.skipif(not TEMPLATE.is_file(), reason=f"the user's template is not at {TEMPLATE}")
def test_report_keeps_template_sections_and_columns(tmp_path):
    ResultsStore("r", root=tmp_path).record(stage=schema.SANITY, subject="x", metric="m", value=1.0)
    text = render_report("r", root=tmp_path, author="tester", targets_path=TARGETS).read_text()
    template = TEMPLATE.read_text()
    for heading in _headings(template):
        assert heading in text, heading
    for header in _table_headers(template):
        assert header in text, header
    for row in ("| 최종 이미지 ckpt |", "| Teacher (SAM3) |", "| 작은 물체 분할 안정성 |", "| qat_int4 (optional) |",
                "| NPU 활용률 |", "| 전체 디스크 사용량 |", "- 배포 바이너리(.pte):"):
        assert row in text, row
    for label in ("작성일", "작성자: `tester`", "실행 환경", "torch", "executorch"):
        assert label in text
    # Stage 4 notes: what every mode does to convolutions on each backend (issue 18)
    assert "- `int4`: Core ML: int4 weights per block of 16" in text and "- kept at higher precision:" in text
    assert "XNNPACK: int8 per-channel weights + int8 static activations calibrated on val images" in text


def test_cells_carry_provenance_and_missing_cells_say_why(tmp_path):
    store = ResultsStore("r", root=tmp_path)
    store.record(stage=schema.STAGE3, subject=schema.TEACHER, metric=schema.MIOU, value=0.8123, unit="fraction",
                 provenance="host CPU probe, eager fp32")
    store.record(stage=schema.STAGE5, subject="coreml", metric=schema.PTE_MB, value=12.5, unit="MB", target=50,
                 comparison="<", provenance="AOT: size of outputs/export/x.pte")
    text = render_report("r", root=tmp_path, targets_path=TARGETS).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| Teacher (SAM3)"))
    ref = re.search(r"0\.812\[\^(\d+)\]", row)
    assert ref, row
    assert f"[^{ref.group(1)}]: host CPU probe, eager fp32" in text
    missing = re.search(r"\| -\[\^(\d+)\] \|", row)
    assert missing and f"[^{missing.group(1)}]: not measured in run `r`" in text
    assert "12.5 ✅" in text and "목표 `< 50 MB`" in text


def test_failed_gate_is_listed_in_stage3_comments(tmp_path):
    store = ResultsStore("r", root=tmp_path)
    store.record(stage=schema.STAGE3, subject=schema.STUDENT_PHASE2, metric=schema.MIOU_RATIO, value=0.5, target=0.9,
                 comparison=">=", provenance="test")
    text = render_report("r", root=tmp_path, targets_path=TARGETS).read_text()
    line = next(line for line in text.splitlines() if line.startswith("- 실패/회귀 항목"))
    assert "student/phase2 miou_ratio" in line


def test_header_names_the_targets_file_and_its_sha256(tmp_path, monkeypatch):
    ResultsStore("r", root=tmp_path).record(stage=schema.SANITY, subject="x", metric="m", value=1.0)
    planted = tmp_path / "strict.yaml"
    planted.write_text("targets:\n  image_latency_ms: {metric: image_latency_ms, comparison: '<', value: 1, "
                       "unit: ms}\n")
    monkeypatch.setenv("SAM3M4_TARGETS", str(planted))  # the env var is honoured, like the CLI and pytest
    text = render_report("r", root=tmp_path).read_text()
    sha = hashlib.sha256(planted.read_bytes()).hexdigest()
    assert f"> 목표 파일: `{planted} (sha256 {sha}, $SAM3M4_TARGETS)`" in text
    assert "목표 `< 1 ms`" in text  # the stage 5 remark uses the planted target
    monkeypatch.delenv("SAM3M4_TARGETS")
    monkeypatch.chdir(tmp_path)  # nothing given, no acceptance/targets.yaml here: rendered, and said so
    text = render_report("r", root=tmp_path).read_text()
    assert "> 목표 파일: 없음 (acceptance/targets.yaml: targets file not found in" in text


@pytest.mark.parametrize("body, fragment", [
    ("targets: [\n", "line 2 column 1: expected the node content"),
    ("targets:\n  pte_size_mb: {metric: pte_mb, comparison: '<', value: 50, colour: red}\n",
     "targets.pte_size_mb.colour: unknown key"),
    ("targets:\n  pte_size_mb: {metric: pte_mb, comparison: '<', value: fifty}\n",
     "targets.pte_size_mb.value: expected a number"),
    ("targets:\n  pte_size_mb: {metric: pte_mb, value: 50}\n", "targets.pte_size_mb.comparison: missing key"),
])
def test_broken_targets_stop_the_report(tmp_path, monkeypatch, capsys, body, fragment):
    from sam3m4.cli import main

    ResultsStore("r", root=tmp_path).record(stage=schema.SANITY, subject="x", metric="m", value=1.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text(body)
    with pytest.raises(ConfigError) as err:
        render_report("r", root=tmp_path, targets_path=bad)
    assert str(err.value).startswith(f"{bad}: ") and fragment in str(err.value)
    assert not (tmp_path / "r" / "report.md").exists()
    monkeypatch.setenv("SAM3M4_TARGETS", str(bad))
    assert main(["report", "--run", "r", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sam3m4: error: {bad}: ") and fragment in err and err.count("\n") == 1, err
    assert not (tmp_path / "r" / "report.md").exists()


def test_stage4_and_5_name_the_shipped_pte_and_its_deployed_scores(tmp_path):
    """Eager vs deployed next to each other for each exported mode, the runtime p50 in Avg ms where measured, and
    the same .pte named by Stage 4's per-backend decision and Stage 5's scored-where table (issue 24)."""
    store = ResultsStore("r", root=tmp_path)
    pte = tmp_path / "sam3m4_tiny_xnnpack_int8_int4.pte"
    pte.write_bytes(b"pte")
    decision = tmp_path / "decision.json"
    decision.write_text("{}")
    for mode, miou, ms in (("fp16", 0.60, 20.0), ("int8_int4", 0.59, 61.0)):
        store.record(stage=schema.STAGE4, subject=mode, metric=schema.MIOU, value=miou, unit="fraction",
                     provenance="eager")
        store.record(stage=schema.STAGE4, subject=mode, metric=schema.AVG_MS, value=ms, unit="ms", provenance="eager")
    store.record(stage=schema.STAGE4, subject="decision/xnnpack", metric=schema.CHOSEN_MODE, value="int8_int4",
                 artifact=decision, note=pte.name, provenance="per backend")
    x = dict(stage=schema.STAGE5, subject="xnnpack/int8_int4", artifact=pte)
    store.record(**x, metric=schema.PTE_MB, value=7.1, unit="MB")
    store.record(**x, metric=schema.SHIPPED, value="decision")
    store.record(**x, metric=schema.MIOU, value=0.5871, unit="fraction", provenance="ExecuTorch runtime")
    store.record(**x, metric=schema.PRESENCE_F1, value=0.81, unit="fraction", provenance="ExecuTorch runtime")
    store.record(**x, metric=schema.HOST_IMAGE_LATENCY_MS, value=12.25, unit="ms", provenance="runtime p50")
    store.record(stage=schema.STAGE5, subject="coreml/int4", metric=schema.PTE_MB, value=4.0, unit="MB",
                 artifact=tmp_path / "sam3m4_tiny_coreml_int4.pte")
    store.record(stage=schema.STAGE5, subject="coreml/int4", metric=schema.DEPLOYED_MIOU_DROP, value=None,
                 outcome="not_measurable", note="not measured here: Core ML executes only on macOS/iOS")
    text = render_report("r", root=tmp_path, targets_path=TARGETS).read_text()
    assert "| Mode | Size (MB) | Compression | mIoU | Presence F1 | Avg ms |" in text  # the template's table kept
    first = lambda start: next(line for line in text.splitlines() if line.startswith(start))  # noqa: E731
    assert "12.2" in first("| int8_int4 |") and "(`xnnpack` .pte p50)" in first("| int8_int4 |")
    assert "(host eager)" in first("| fp16 |") and "20.0" in first("| fp16 |")
    deployed = first("| int8_int4 | `sam3m4_tiny_xnnpack")  # eager 0.590 next to the .pte's 0.587
    assert re.search(r"\| 0\.590\[\^\d+\] \| 0\.587\[\^\d+\] \|", deployed), deployed
    assert "xnnpack `int8_int4` -> `sam3m4_tiny_xnnpack_int8_int4.pte`" in text and "(`decision.json`)" in text
    scored = next(line for line in text.splitlines() if line.startswith("| `sam3m4_tiny_xnnpack_int8_int4.pte` |"))
    assert "Stage 4 결정" in scored and "this host, sha256" in scored
    core = next(line for line in text.splitlines() if line.startswith("| `sam3m4_tiny_coreml_int4.pte` |"))
    note = re.search(r"not scored\[\^(\d+)\]", core)
    assert note and f"[^{note.group(1)}]: not measured here: Core ML executes only on macOS/iOS" in text


def test_stage5_says_not_attempted_where_the_export_was_not_attempted(tmp_path):
    """No QNN SDK: the export was never attempted, so the Stage 5 table says so instead of 실패 (a failure)."""
    store = ResultsStore("r", root=tmp_path)
    store.record(stage=schema.STAGE5, subject="qnn/int8_int4", metric=schema.EXPORT_OK, value=False,
                 outcome="not_measurable",
                 note="QNN SDK not found (set QNN_SDK_ROOT)", provenance="AOT: ExecuTorch on the host")
    store.record(stage=schema.STAGE5, subject="coreml/int4", metric=schema.EXPORT_OK, value=False, failed_stage="lower",
                 note="unsupported op", provenance="AOT: ExecuTorch on the host")
    text = render_report("r", root=tmp_path, targets_path=TARGETS).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| Export 성공"))
    ios, android = row.split(" | ")[1:3]
    assert android.startswith("not attempted (QNN SDK not found)[^") and "실패" not in android, row
    assert ios.startswith("실패"), row  # an export that ran and failed still reads as a failure


def test_artifacts_under_the_project_are_shown_relative_to_it(tmp_path, monkeypatch):
    from sam3m4.paths import PROJECT_ROOT_ENV

    monkeypatch.setenv(PROJECT_ROOT_ENV, str(tmp_path))
    preds = tmp_path / "reports" / "r" / "saco" / "student_image_preds.json"
    preds.parent.mkdir(parents=True)
    preds.write_text("[]")
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere.pt"
    store = ResultsStore("r", root=tmp_path / "reports")
    store.record(stage=schema.STAGE3, subject=schema.TEACHER, metric=schema.MIOU, value=0.8, unit="fraction",
                 provenance="p", artifact=preds)
    store.record(stage=schema.STAGE3, subject=schema.STUDENT_PHASE2, metric=schema.MIOU, value=0.7,
                 unit="fraction", provenance="q", artifact=outside)
    text = render_report("r", root=tmp_path / "reports", targets_path=TARGETS).read_text()
    assert "(artifact `reports/r/saco/student_image_preds.json`, sha256 " in text
    assert str(tmp_path) + "/reports" not in text and f"(artifact `{outside}`)" in text
