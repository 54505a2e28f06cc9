"""The report's presence calibration: the table in the Stage 4 section, the two gates' lines, and the reliability
diagram (teacher, student, shipped mode) drawn from the per-pair scores files.

Run: python -m pytest tests/report/test_report_calibration.py -q
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sam3m4.eval.calibration import record_calibration
from sam3m4.report import render_report
from sam3m4.report.plots import shipped_subject, write_plots
from sam3m4.results import ResultsStore, schema
from sam3m4.results.targets import load_targets

TARGETS = Path(__file__).resolve().parents[2] / "acceptance" / "targets.yaml"


def _scores(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    s = rng.uniform(size=n)
    return s, rng.uniform(size=n) < s


def _run(tmp_path) -> ResultsStore:
    store = ResultsStore("r", root=tmp_path)
    for i, (stage, subject) in enumerate([(schema.STAGE3, schema.TEACHER), (schema.STAGE3, schema.STUDENT_PHASE2),
                                          (schema.STAGE4, "fp16"), (schema.STAGE4, "int4")]):
        s, y = _scores(i)
        record_calibration(store, stage=stage, subject=subject, scores=s, labels=y, provenance="synthetic scores")
    store.record(stage=schema.STAGE4, subject="int4", metric=schema.SACO_CGF1_AT_BEST, value=0.4321, unit="fraction")
    for metric, value in ((schema.PRESENCE_THRESHOLD, 0.317), (schema.PRESENCE_F1_HELD_OUT_05, 0.648),
                          (schema.PRESENCE_F1_HELD_OUT, 0.787)):
        store.record(stage=schema.STAGE4, subject="int4", metric=metric, value=value, unit="fraction",
                     provenance="fitted presence threshold")
    s, y = _scores(9)
    record_calibration(store, stage=schema.STAGE5, subject="xnnpack/int8_int4", scores=s, labels=y, provenance=".pte")
    store.record(stage=schema.STAGE4, subject="int4", metric=schema.PRESENCE_F1_GAP, value=0.004, unit="fraction",
                 target=0.01, comparison="<=", provenance="plateau gate")
    store.record(stage=schema.STAGE4, subject="int4", metric=schema.PRESENCE_ECE_RISE, value=None, unit="fraction",
                 outcome=schema.NOT_MEASURABLE, note="not resolvable on 60 pairs: ...", provenance="ece gate")
    return store


def test_report_has_the_calibration_table_and_gate_lines(tmp_path):
    _run(tmp_path)
    text = render_report("r", root=tmp_path, targets_path=TARGETS).read_text()
    stage4 = text[text.index("## 4) Stage 4"):text.index("## 5) Stage 5")]
    assert "### Presence calibration" in stage4
    rows = [line for line in stage4.splitlines() if line.startswith("| ") and "[^" in line and " @ " in line]
    assert [r.split(" | ")[0] for r in rows] == ["| Teacher (SAM3)", "| Student (Phase2 final)", "| fp16", "| int4",
                                                 "| .pte xnnpack/int8_int4"]
    assert "43.2" in rows[-2]                                     # cgF1 at best, in percent like SAM 3's paper
    assert "0.317: 0.648 -> 0.787" in rows[-2] and "fitted by Stage 4 on a calibration part" in stage4
    assert "presence_threshold_on_plateau `int4`: 0.004 (목표 <= 0.01) 통과" in stage4
    assert "presence_ece_rise `int4`: 미측정 - not resolvable on 60 pairs" in stage4


def test_report_without_calibration_says_why(tmp_path):
    ResultsStore("r", root=tmp_path).record(stage="sanity", subject="x", metric="m", value=1.0)
    text = render_report("r", root=tmp_path, targets_path=TARGETS).read_text()
    assert "### Presence calibration" in text and "acceptance/test_stage4.py" in text


def test_reliability_plot_draws_teacher_student_and_shipped(tmp_path):
    store = _run(tmp_path)
    assert shipped_subject(store.records()) == "int4"              # the mode the plateau gate judged
    store.record(stage=schema.STAGE4, subject=schema.DECISION, metric=schema.CHOSEN_MODE, value="fp16")
    assert shipped_subject(store.records()) == "fp16"              # the decision wins
    plots = {p.name: p for p in write_plots("r", root=tmp_path, targets=load_targets(TARGETS))}
    plot = plots["reliability"]
    assert plot.path is not None and plot.path.stat().st_size > 1000, plot.note
    assert "stage3 teacher" in plot.note and "stage4 fp16" in plot.note


def test_reliability_plot_without_scores_is_not_drawn(tmp_path):
    ResultsStore("r", root=tmp_path).record(stage="sanity", subject="x", metric="m", value=1.0)
    plot = {p.name: p for p in write_plots("r", root=tmp_path)}["reliability"]
    assert plot.path is None and "no presence scores" in plot.note
