"""``sam3m4 report --run NEW --compare BASE``: every metric of both runs, the change, regressions flagged (an
improvement is not), and the optional regression gate read from the targets file's ``regression_tolerance``."""

from __future__ import annotations

from pathlib import Path

import pytest

from sam3m4.cli import main
from sam3m4.report.compare import compare_runs
from sam3m4.results import ResultsStore, load_targets, schema

TARGETS = Path(__file__).resolve().parents[2] / "acceptance" / "targets.yaml"


def _seed(root: Path, run: str, *, drop: float, pte: float, latency: float, miou: float, fps: float) -> None:
    store = ResultsStore(run, root=root)
    store.record(stage=schema.STAGE4, subject="int4", metric=schema.MIOU_DROP, value=drop, unit="points", target=2.0,
                 comparison="<=")
    store.record(stage=schema.STAGE4, subject=schema.PLANTED_ONE_BIT, metric=schema.MIOU_DROP, value=12 + drop,
                 unit="points",
                 target=2.0, comparison="<=")  # a negative control: never gated
    store.record(stage=schema.STAGE5, subject="coreml/int4", metric=schema.PTE_MB, value=pte, unit="MB", target=50,
                 comparison="<")
    store.record(stage=schema.STAGE5, subject="xnnpack/int8_int4", metric=schema.HOST_IMAGE_LATENCY_MS, value=latency,
                 unit="ms", target=100, comparison="<")
    store.record(stage=schema.STAGE3, subject=schema.TEACHER, metric=schema.MIOU, value=miou, unit="fraction")
    store.record(stage=schema.STAGE3, subject=schema.STUDENT_VIDEO, metric=schema.HOST_FPS, value=fps, unit="fps")
    store.record(stage=schema.SUMMARY, subject=schema.RUN, metric=schema.FINAL_IMAGE_CKPT,
                 value=f"checkpoints/{run}.pt")


def _by(comparison):
    return {(c.subject, c.metric): c for c in comparison.changes}


def test_a_regression_is_flagged_and_an_improvement_is_not(tmp_path):
    _seed(tmp_path, "rc1", drop=0.3, pte=20.0, latency=30.0, miou=0.60, fps=100.0)
    # drop +1.2 points (tolerance 0.5: gated regression); .pte 3 MB smaller and latency 10 ms faster (better);
    # teacher mIoU 0.60 -> 0.55 (-8%, beyond 5%: flagged, not gated); FPS 100 -> 98 (within 5%)
    _seed(tmp_path, "rc2", drop=1.5, pte=17.0, latency=20.0, miou=0.55, fps=98.0)
    c = compare_runs("rc2", "rc1", root=tmp_path, targets=load_targets(TARGETS))
    by = _by(c)
    assert len(c.changes) == 7  # every metric of both runs
    drop = by[("int4", "miou_drop")]
    assert drop.regression and drop.gated and drop.better == "lower" and drop.tolerance == 0.5
    assert abs(drop.delta - 1.2) < 1e-9
    for key in (("coreml/int4", "pte_mb"), ("xnnpack/int8_int4", "host_image_latency_ms")):
        assert by[key].delta < 0 and not by[key].regression, key  # improvements
    assert by[("teacher", "miou")].regression and not by[("teacher", "miou")].gated
    assert not by[("student/video", "host_fps")].regression
    assert by[("planted/1bit", "miou_drop")].regression and not by[("planted/1bit", "miou_drop")].gated
    path = by[("run", "final_image_ckpt")]
    assert path.delta is None and path.better is None and not path.regression
    assert [(g.subject, g.metric) for g in c.gate_failures] == [("int4", "miou_drop")]
    # the other way round: the drop improves; the .pte (+3 MB, tolerance 2) and the latency (+10 ms, 5) regress
    back = compare_runs("rc1", "rc2", root=tmp_path, targets=load_targets(TARGETS))
    assert not _by(back)[("int4", "miou_drop")].regression
    assert sorted(g.metric for g in back.gate_failures) == ["host_image_latency_ms", "pte_mb"]


def test_report_compare_cli_prints_writes_and_gates(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _seed(tmp_path / "reports", "rc1", drop=0.3, pte=20.0, latency=30.0, miou=0.60, fps=100.0)
    _seed(tmp_path / "reports", "rc2", drop=1.5, pte=17.0, latency=20.0, miou=0.55, fps=98.0)
    base = ["report", "--run", "rc2", "--targets", str(TARGETS), "--compare", "rc1"]
    assert main(base) == 0  # without the gate: shown, not failed
    out = capsys.readouterr().out
    assert "| stage4 | int4 | miou_drop | 0.3 | 1.5 | +1.2 | REGRESSION (gate) |" in out
    assert "| stage5 | coreml/int4 | pte_mb | 20 | 17 | -3 |  |" in out
    assert "regression gate: FAIL (3 gated metrics compared, 1 failing)" in out
    assert (tmp_path / "reports" / "rc2" / "compare_rc1.md").read_text().startswith("# rc2 vs rc1")
    assert main(base + ["--regression-gate"]) == 1
    assert "regression gate failed vs rc1: int4 miou_drop" in capsys.readouterr().out
    _seed(tmp_path / "reports", "rc3", drop=0.6, pte=21.0, latency=33.0, miou=0.60, fps=100.0)  # within tolerances
    assert main(["report", "--run", "rc3", "--targets", str(TARGETS), "--compare", "rc1", "--regression-gate"]) == 0
    assert "regression gate: pass" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--compare", "nope"], "reports/nope/results.jsonl: no results store for run 'nope'"),
    (["--compare", "../x"], "--compare: '../x' is not a valid run name"),
    (["--regression-gate"], "--regression-gate: needs --compare BASELINE"),
    (["--compare", "rc1", "--tolerance", "-1"], "--tolerance -1.0: must be >= 0"),
])
def test_bad_compare_arguments_are_one_line_errors(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    for run in ("rc1", "rc2"):
        _seed(tmp_path / "reports", run, drop=0.3, pte=20.0, latency=30.0, miou=0.6, fps=100.0)
    assert main(["report", "--run", "rc2", "--targets", str(TARGETS), *argv]) == 2
    err = capsys.readouterr().err
    assert f"sam3m4: error: {message}" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "reports" / "rc2" / "report.md").exists()  # nothing written
