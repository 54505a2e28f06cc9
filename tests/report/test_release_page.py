"""The release at a glance: the gate matrix built from records (sam3m4.report.release), the plots
(sam3m4.report.plots) and the top of acceptance.html in headless Chromium at 1366x768.

    python -m pytest tests/report/test_release_page.py -q
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from release_seed import seed_run

from sam3m4.report.plots import PLOTS, write_plots
from sam3m4.report.release import (FAIL, GO, NO_GO, NOT_MEASURED, PASS, SPAN, UNSUPPORTED, build_matrix,
                                   release_matrix)
from sam3m4.results import Record, ResultsStore, load_targets, schema
from sam3m4.results.schema import PTE_METHODS
from sam3m4.results.store import NOT_MEASURABLE
from sam3m4.results.store import UNSUPPORTED as UNSUPPORTED_OUTCOME

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ROOT / "acceptance" / "targets.yaml"


def _rec(stage, subject, metric, value, **kw) -> Record:
    return Record(run="r", stage=stage, subject=subject, metric=metric, value=value, **kw)


def _row(matrix, gate):
    return next(r for r in matrix.rows if r.gate == gate)


# --- the matrix builder --------------------------------------------------------------------------------------
def test_seeded_run_gives_every_kind_of_cell(tmp_path):
    seed_run(tmp_path / "reports", "seeded", logs=tmp_path / "logs")
    m = release_matrix("seeded", root=tmp_path / "reports", targets_path=TARGETS)
    assert m.modes == {"coreml": "int4", "qnn": "int8_int4", "xnnpack": "int8_int4"}
    status = {(r.gate, col): c.status for r in m.rows for col, c in r.cells.items()}
    assert status[("student_miou_ratio", SPAN)] == PASS
    assert status[("embedded_teacher_miou", SPAN)] == FAIL  # 0.562 against >= 0.70
    assert status[("pte_size_mb", "coreml")] == PASS and _row(m, "pte_size_mb").cells["coreml"].shown == "4.19 MB"
    # the export's own record has no target: the targets file judges it
    assert status[("pte_size_mb", "xnnpack")] == PASS and _row(m, "pte_size_mb").cells["xnnpack"].value == 7.05
    # no QNN SDK: every QNN cell after the export says so, the Stage 4 one still has its number
    for gate in ("pte_size_mb", "npu_utilisation", "image_latency_ms", "video_fps"):
        cell = _row(m, gate).cells["qnn"]
        assert cell.status == NOT_MEASURED and "QNN SDK not found" in cell.reason, gate
    assert status[("quant_miou_drop", "qnn")] == PASS
    assert status[("npu_utilisation", "xnnpack")] == status[("xnnpack_mask_iou", "coreml")] == UNSUPPORTED
    ios = _row(m, "image_latency_ms").cells["coreml"]
    assert ios.status == NOT_MEASURED and "Core ML executes only on macOS/iOS" in ios.reason
    android = _row(m, "video_fps").cells["xnnpack"]
    assert android.status == NOT_MEASURED and "android/xnnpack/int8_int4" in android.reason
    assert m.verdict == NO_GO
    blocking = [b.label for b in m.blocking()]
    assert blocking[0] == "Stage 3 embedded teacher mIoU (all targets): 0.562, target >= 0.7"
    assert all(b.cell.status == FAIL for b in m.blocking())  # only a failed gate blocks ...
    warnings = [w.label for w in m.warnings()]  # ... a gate not measured warns
    assert any(w.startswith("Stage 5 .pte size (Android QNN): QNN SDK not found") for w in warnings)
    assert not any("mask IoU" in b for b in blocking + warnings)  # a pass and unsupported cells never block


def test_failed_stages_and_unsupported_outcomes_are_read_from_fields_not_notes():
    targets = load_targets(TARGETS)
    records = [
        _rec(schema.STAGE5, "coreml/int4", schema.EXPORT_OK, False, failed_stage="lower",
             note="unsupported op aten::foo"),
        _rec(schema.STAGE5, "xnnpack/int4", schema.EXPORT_OK, False, outcome=UNSUPPORTED_OUTCOME,
             note="4-bit weight-only does not lower on XNNPACK"),
        _rec(schema.STAGE5, "xnnpack/int8_int4", schema.EXPORT_OK, True),
        _rec(schema.STAGE5, "xnnpack/int8_int4", schema.PTE_MB, 61.0, unit="MB", note="not measured"),  # over 50 MB
        _rec(schema.STAGE5, "android/xnnpack/int8_int4", schema.IMAGE_LATENCY_MS, None, failed_stage="load",
             note="load_status 34"),
        _rec(schema.STAGE5, "qnn/int8_int4", schema.EXPORT_OK, False, outcome=NOT_MEASURABLE, note="fine"),
        _rec(schema.STAGE4, schema.DECISION, schema.CHOSEN_MODE, "int4"),
    ]
    m = build_matrix(records, targets, run="r")
    assert m.modes["xnnpack"] == "int8_int4"  # int4 was chosen, but its XNNPACK export wrote no .pte
    core = _row(m, "pte_size_mb").cells["coreml"]
    assert core.status == FAIL and core.reason == "failed at lower: unsupported op aten::foo"
    big = _row(m, "pte_size_mb").cells["xnnpack"]
    assert big.status == FAIL and big.value == 61.0  # the note's words change nothing
    assert _row(m, "image_latency_ms").cells["xnnpack"].status == FAIL
    assert _row(m, "pte_size_mb").cells["qnn"].status == NOT_MEASURED  # an outcome, whatever its note says
    only_unsupported = build_matrix(records[1:2], targets, run="r")
    assert _row(only_unsupported, "pte_size_mb").cells["xnnpack"].status == UNSUPPORTED
    nothing = build_matrix([], targets, run="r")
    assert all(c.status in (NOT_MEASURED, UNSUPPORTED) for _, _, c in nothing.cells())
    assert nothing.verdict == NO_GO and "embedded_teacher_miou" not in [r.gate for r in nothing.rows]


def test_go_when_every_cell_passes_or_is_unsupported():
    targets = load_targets(TARGETS)
    records = [_rec(schema.STAGE3, schema.STUDENT_PHASE2, schema.MIOU_RATIO, 0.95),
               _rec(schema.STAGE3, schema.STUDENT_PHASE2, schema.PRESENCE_F1_RATIO, 0.97),
               _rec(schema.STAGE3, schema.STUDENT_VIDEO, schema.JF_RATIO, 1.0),
               _rec(schema.STAGE3, schema.STUDENT_VIDEO, schema.MIOU_COST, 0.2)]
    for backend, platform, mode in (("coreml", "ios", "int4"), ("qnn", "android", "int8_int4"),
                                    ("xnnpack", "android", "int8_int4")):
        records += [_rec(schema.STAGE4, mode, schema.MIOU_DROP, 0.4),
                    _rec(schema.STAGE5, f"{backend}/{mode}", schema.EXPORT_OK, True),
                    _rec(schema.STAGE5, f"{backend}/{mode}", schema.PTE_MB, 20.0),
                    _rec(schema.STAGE5, f"{backend}/{mode}", schema.NPU_PERCENT, 97.0),
                    _rec(schema.STAGE5, f"{platform}/{backend}/{mode}", schema.IMAGE_LATENCY_MS, 41.0),
                    _rec(schema.STAGE5, f"{platform}/{backend}/{mode}", schema.VIDEO_FPS, 24.0),
                    _rec(schema.STAGE5, f"{backend}/{mode}", schema.DEPLOYED_MIOU_DROP, 0.6),
                    _rec(schema.STAGE5, f"{backend}/{mode}", schema.EXPORT_MIOU_GAP, 0.2)]
    records += [_rec(schema.STAGE5, "xnnpack/int8_int4", "mask_iou/forward", 0.99),
                _rec(schema.STAGE5, "xnnpack/int8_int4", "max_abs_error/encode_text", 0.03),
                _rec(schema.STAGE5, "xnnpack/int8_int4", "max_abs_error/forward", 0.3),
                _rec(schema.STAGE5, "xnnpack/int8_int4", schema.HOST_IMAGE_LATENCY_MS, 30.0),
                _rec(schema.STAGE5, "xnnpack/int8_int4", schema.XNNPACK_INT8_MAC_SHARE, 95.0),
                _rec(schema.STAGE4, "int4", schema.PRESENCE_F1_GAP, 0.004),
                _rec(schema.STAGE4, "int8_int4", schema.PRESENCE_F1_GAP, 0.0),
                _rec(schema.STAGE4, "int4", schema.PRESENCE_ECE_RISE, 0.01),
                _rec(schema.STAGE4, "int8_int4", schema.PRESENCE_ECE_RISE, 0.02)]
    m = build_matrix(records, targets, run="r")
    # unsupported: NPU coverage on XNNPACK; the XNNPACK-only gates (mask IoU, host latency, max |error| per method)
    # in the 2 NPU columns; `track` of an image-only .pte
    unsupported = 1 + 2 * (3 + len(PTE_METHODS)) + 1
    assert m.verdict == GO and m.count(FAIL) == m.count(NOT_MEASURED) == 0 and m.count(UNSUPPORTED) == unsupported
    track = next(r for r in m.rows if r.gate == "xnnpack_max_abs_error_track").cells["xnnpack"]
    assert track.status == UNSUPPORTED and "no `track` method" in track.reason
    wrong = build_matrix(records + [_rec(schema.STAGE5, "xnnpack/int8_int4", "max_abs_error/forward", 9.0)], targets,
                         run="r")
    assert wrong.verdict == NO_GO and "max |error| (forward)" in wrong.blocking()[0].label
    slow = build_matrix(records + [_rec(schema.STAGE5, "ios/coreml/int4", schema.IMAGE_LATENCY_MS, 140.0)], targets,
                        run="r")
    assert slow.verdict == NO_GO and [b.label for b in slow.blocking()] == [
        "Stage 5 on-device image latency (iOS Core ML): 140.0 ms, target < 100 ms"]
    broken = build_matrix(records + [_rec(schema.STAGE5, "xnnpack/int8_int4", schema.EXPORT_MIOU_GAP, 3.1)], targets,
                          run="r")
    assert broken.verdict == NO_GO and _row(broken, "export_fidelity_miou").cells["xnnpack"].status == FAIL
    no_phone = build_matrix([r for r in records if not r.subject.startswith(("ios/", "android/"))], targets, run="r")
    assert no_phone.verdict == GO and not no_phone.blocking()  # not measured: a warning, not a blocker
    assert {(w.row.gate, w.column) for w in no_phone.warnings()} == {
        (g, c) for g in ("image_latency_ms", "video_fps") for c in ("iOS Core ML", "Android QNN", "host XNNPACK")}


def test_calibration_and_int8_share_rows_judge_what_ships():
    """The two presence calibration gates and the XNNPACK int8 MAC share are rows of the matrix: a failed cell
    blocks, a "not measured" one (ECE rise not resolvable on the pairs) only warns, a float program is unsupported."""
    targets = load_targets(TARGETS)
    base = [_rec(schema.STAGE4, "decision/coreml", "chosen_mode", "int4"),
            _rec(schema.STAGE4, "decision/xnnpack", "chosen_mode", "fp16"),
            _rec(schema.STAGE5, "coreml/int4", "export_ok", True), _rec(schema.STAGE5, "xnnpack/fp16", "export_ok", True),
            _rec(schema.STAGE5, "xnnpack/fp16", "xnnpack_int8_mac_share", 0.0)]
    recs = base + [_rec(schema.STAGE4, "int4", "presence_f1_gap", 0.002),
                   _rec(schema.STAGE5, "coreml/int4", "presence_f1_gap", 0.03),
                   _rec(schema.STAGE4, "fp16", "presence_f1_gap", 0.005),
                   _rec(schema.STAGE4, "int4", "presence_ece_rise", None, outcome=NOT_MEASURABLE,
                        note="not resolvable on 200 pairs: interval spans zero")]
    m = build_matrix(recs, targets, run="r")
    plateau = _row(m, "presence_threshold_on_plateau").cells
    # the .pte's own record wins over Stage 4's eager one; without a scored .pte the eager one stands, said so
    assert plateau["coreml"].status == FAIL and plateau["coreml"].value == 0.03
    assert plateau["coreml"].subject == "coreml/int4"
    assert plateau["xnnpack"].status == PASS and plateau["xnnpack"].reason == "host eager: the .pte was not scored"
    ece = _row(m, "presence_ece_rise").cells
    assert ece["coreml"].status == NOT_MEASURED and "not resolvable on 200 pairs" in ece["coreml"].reason
    assert ece["xnnpack"].status == NOT_MEASURED and "acceptance/test_stage4.py" in ece["xnnpack"].reason
    share = _row(m, "xnnpack_int8_mac_share").cells
    assert share["xnnpack"].status == UNSUPPORTED and "float program" in share["xnnpack"].reason  # its 0% not judged
    assert share["coreml"].status == UNSUPPORTED
    assert [b.label for b in m.blocking()] == [
        "Stage 4 shipped presence threshold on the F1 plateau (held-out pairs) (iOS Core ML): 0.030, target <= 0.01"]
    assert any(w.row.gate == "presence_ece_rise" and w.column == "iOS Core ML" for w in m.warnings())
    int8 = build_matrix(base[:3] + [_rec(schema.STAGE5, "xnnpack/int8_int4", "export_ok", True),
                                    _rec(schema.STAGE4, "decision/xnnpack", "chosen_mode", "int8_int4"),
                                    _rec(schema.STAGE5, "xnnpack/int8_int4", "xnnpack_int8_mac_share", 81.6)],
                       targets, run="r")
    cell = _row(int8, "xnnpack_int8_mac_share").cells["xnnpack"]
    assert cell.status == FAIL and cell.value == 81.6
    rise = build_matrix(base + [_rec(schema.STAGE4, "int4", "presence_ece_rise", 0.08)], targets, run="r")
    assert _row(rise, "presence_ece_rise").cells["coreml"].status == FAIL


def _write_accepted(tmp_path, text: str) -> None:
    (tmp_path / "reports" / "seeded").mkdir(parents=True, exist_ok=True)
    (tmp_path / "reports" / "seeded" / "accepted.yaml").write_text(text)


def test_a_release_manager_accepts_a_not_measured_gate_for_one_run(tmp_path):
    """reports/<run>/accepted.yaml marks not-measured cells as accepted (who, why); it never passes a failure and
    another run does not see it."""
    from sam3m4.report.release_page import matrix_html

    seed_run(tmp_path / "reports", "seeded", logs=tmp_path / "logs")
    _write_accepted(tmp_path, "video_fps:\n  reason: no phone this week\n  by: J. Doe (release manager)\n"
                              "  columns: [qnn]\nembedded_teacher_miou:\n  reason: x\n  by: y\n")
    m = release_matrix("seeded", root=tmp_path / "reports", targets_path=TARGETS)
    qnn, ios = _row(m, "video_fps").cells["qnn"], _row(m, "video_fps").cells["coreml"]
    assert qnn.status == NOT_MEASURED and qnn.accepted == "accepted by J. Doe (release manager): no phone this week"
    assert ios.status == NOT_MEASURED and not ios.accepted  # another column: not covered
    teacher = _row(m, "embedded_teacher_miou").cells[SPAN]
    assert teacher.status == FAIL and not teacher.accepted  # an acceptance never covers a failure
    assert [w.cell.accepted for w in m.warnings()][-1] and not m.warnings()[0].cell.accepted  # open ones first
    page = matrix_html(m)
    assert "not measured, accepted for this release" in page and "J. Doe (release manager)" in page
    assert "a failed gate blocks the release" in page
    seed_run(tmp_path / "reports", "other", logs=tmp_path / "logs2")
    other = release_matrix("other", root=tmp_path / "reports", targets_path=TARGETS)
    assert not any(w.cell.accepted for w in other.warnings())


@pytest.mark.parametrize("text, where", [
    ("video_fps:\n  reason: no phone\n", "video_fps.by"),
    ("video_fps:\n  reason: ' '\n  by: me\n", "video_fps.reason"),
    ("video_fps:\n  reason: r\n  by: me\n  colums: [qnn]\n", "video_fps.colums"),
    ("video_fps:\n  reason: r\n  by: me\n  columns: [android]\n", "video_fps.columns"),
    ("video_fsp:\n  reason: r\n  by: me\n", "video_fsp: not a gate"),
    ("- video_fps\n", "top level must be a mapping"),
])
def test_a_malformed_acceptance_file_is_one_line_naming_the_file_and_field(tmp_path, text, where):
    from sam3m4.errors import ConfigError

    seed_run(tmp_path / "reports", "seeded", logs=tmp_path / "logs")
    _write_accepted(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        release_matrix("seeded", root=tmp_path / "reports", targets_path=TARGETS)
    msg = str(err.value)
    assert "accepted.yaml" in msg and where in msg and "\n" not in msg, msg


# --- plots ---------------------------------------------------------------------------------------------------
def test_plots_are_written_and_a_missing_one_says_why(tmp_path):
    seed_run(tmp_path / "reports", "seeded", logs=tmp_path / "logs")
    plots = write_plots("seeded", root=tmp_path / "reports", targets=load_targets(TARGETS))
    assert [p.name for p in plots] == [name for name, _, _ in PLOTS]
    for p in plots:
        assert p.path == tmp_path / "reports" / "seeded" / "plots" / f"{p.name}.png", p
        assert p.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # only sanity records: nothing to draw, each plot says why, and the old PNGs go
    (tmp_path / "reports" / "seeded" / "pipeline_state.json").unlink()
    bare = write_plots("seeded", root=tmp_path / "reports", records=[_rec(schema.SANITY, "gt", schema.MIOU, 1.0)])
    assert all(p.path is None and p.note for p in bare)
    assert not list((tmp_path / "reports" / "seeded" / "plots").glob("*.png"))
    assert "pipeline_state.json: run `seeded` was not made by `sam3m4 pipeline`" in bare[3].note
    # a pipeline state that is not JSON: that plot says so, the others are still drawn
    (tmp_path / "reports" / "seeded" / "pipeline_state.json").write_text("{not json")
    again = write_plots("seeded", root=tmp_path / "reports", targets=load_targets(TARGETS))
    assert again[3].path is None and "unreadable" in again[3].note
    assert [p.path is not None for p in again] == [True, True, True, False, True, True]


def test_report_md_links_the_plots(tmp_path):
    from sam3m4.report import render_report

    seed_run(tmp_path / "reports", "seeded", logs=tmp_path / "logs")
    text = render_report("seeded", root=tmp_path / "reports", targets_path=TARGETS).read_text()
    for name, _, _ in PLOTS:
        assert f"](plots/{name}.png)" in text, name
    store = ResultsStore("bare", root=tmp_path / "reports")
    store.record(stage=schema.SANITY, subject="gt", metric=schema.MIOU, value=1.0)
    text = render_report("bare", root=tmp_path / "reports", targets_path=TARGETS).read_text()
    assert "- Pipeline timeline: 그리지 않음 (no " in text and "](plots/" not in text


# --- the page in headless Chromium ---------------------------------------------------------------------------
PROBE = '''
def test_gate(gate):
    rec = gate(stage="stage5", subject="xnnpack/int8_int4", metric="pte_mb", value=7.05, target="pte_size_mb",
               provenance="probe")
    assert rec.passed
'''


def _page(tmp_path: Path) -> Path:
    """acceptance.html of a pytest session (the project conftest) over a seeded demo-like run."""
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "acceptance").mkdir()
    shutil.copy(TARGETS, tmp_path / "acceptance" / "targets.yaml")
    (tmp_path / "test_probe.py").write_text(PROBE)
    seed_run(tmp_path / "reports", "seeded", logs=tmp_path / "logs")
    env = {k: v for k, v in os.environ.items() if k != "SAM3M4_TARGETS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "--run",
                          "seeded", "test_probe.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return tmp_path / "reports" / "seeded" / "acceptance.html"


@pytest.mark.slow
def test_top_of_the_page_in_headless_chromium(tmp_path, chromium):
    from playwright.sync_api import sync_playwright

    page = _page(tmp_path)
    problems = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            tab = browser.new_page(viewport={"width": 1366, "height": 768})
            tab.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
            tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            tab.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            tab.goto(page.as_uri())
            tab.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=15000)
            tab.screenshot(path=str(tmp_path / "top-1366x768.png"))
            for selector in ("#release-verdict", "#gate-matrix"):
                box = tab.locator(selector).bounding_box()
                assert box is not None and box["width"] > 0, selector
                assert box["x"] >= 0 and box["y"] >= 0, (selector, box)
                assert box["x"] + box["width"] <= 1366 and box["y"] + box["height"] <= 768, (selector, box)
            assert tab.locator(".verdict-word").inner_text() == "NO-GO"
            assert "embedded teacher mIoU (all targets)" in tab.inner_text("#release-verdict")
            # lifted above the environment table and the test table
            order = tab.evaluate("""() => ['sam3m4-release', 'environment', 'results-table'].map(
                id => document.getElementById(id).getBoundingClientRect().top)""")
            assert order == sorted(order), order
            statuses = tab.evaluate("Array.from(document.querySelectorAll('#gate-matrix td.cell'))"
                                    ".map(td => td.dataset.status)")
            assert {PASS, FAIL, NOT_MEASURED, UNSUPPORTED} <= set(statuses), statuses
            sizes = tab.evaluate("Array.from(document.querySelectorAll('#sam3m4-release img'))"
                                 ".map(i => [i.alt, i.naturalWidth])")
            assert len(sizes) == len(PLOTS) and all(w > 0 for _, w in sizes), sizes
        finally:
            browser.close()
    assert not problems, problems
