"""pytest-html integration: a session using the project conftest writes acceptance.html with the
Measured / Target / Provenance columns and renders report.md from the same store; the targets file is
found by the one rule (--targets > $SAM3M4_TARGETS > acceptance/targets.yaml) and a broken one stops the session."""

from __future__ import annotations

import hashlib
import html
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

GATE_TEST = '''
def test_gate(gate):
    rec = gate(stage="stage5", subject="coreml", metric="pte_mb", value=12.5, target="pte_size_mb",
               provenance="AOT probe file")
    assert rec.passed
'''


def _session(tmp_path: Path, *args: str, targets_env: str | None = None) -> subprocess.CompletedProcess:
    """A pytest session in ``tmp_path`` with a copy of the project conftest and acceptance/targets.yaml."""
    if not (tmp_path / "conftest.py").exists():
        shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
        shutil.copytree(ROOT / "acceptance", tmp_path / "acceptance",
                        ignore=shutil.ignore_patterns("test_*", "__pycache__"))
        (tmp_path / "test_probe.py").write_text(GATE_TEST)
    env = {k: v for k, v in os.environ.items() if k != "SAM3M4_TARGETS"}
    if targets_env is not None:
        env["SAM3M4_TARGETS"] = targets_env
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", *args,
                           "test_probe.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)


def _page(tmp_path: Path, run: str) -> str:
    page = (tmp_path / "reports" / run / "acceptance.html").read_text()
    assert "sam3m4 release acceptance" in page
    return html.unescape(html.unescape(page))  # pytest-html embeds rows as escaped JSON


def test_html_and_report_are_written(tmp_path):
    out = _session(tmp_path, "--run", "probe")
    assert out.returncode == 0, out.stdout + out.stderr
    page = _page(tmp_path, "probe")
    for text in ("<th>Measured</th>", "<th>Provenance</th>", "<td>coreml pte_mb = 12.5 MB</td>",
                 "<td>AOT probe file</td>", "<td>< 50</td>", "torchao"):
        assert text in page, text
    default = tmp_path / "acceptance" / "targets.yaml"
    sha = hashlib.sha256(default.read_bytes()).hexdigest()
    assert f"{default} (default)" in page and sha in page  # environment table: Targets file / Targets sha256
    report = (tmp_path / "reports" / "probe" / "report.md").read_text()
    assert "12.5 ✅" in report and "AOT probe file" in report
    assert f"> 목표 파일: `acceptance/targets.yaml (sha256 {sha}, default)`" in report


def test_gates_use_sam3m4_targets_and_a_broken_file_stops_the_session(tmp_path):
    planted = tmp_path / "planted.yaml"  # a 1 MB .pte budget: the 12.5 MB probe must fail under it
    planted.write_text("targets:\n  pte_size_mb: {metric: pte_mb, comparison: '<', value: 1, unit: MB}\n")
    out = _session(tmp_path, "--run", "planted", targets_env=str(planted))
    assert out.returncode == 1 and "1 failed" in out.stdout, out.stdout + out.stderr
    page = _page(tmp_path, "planted")
    assert f"{planted} ($SAM3M4_TARGETS)" in page and hashlib.sha256(planted.read_bytes()).hexdigest() in page
    assert "<td>< 1</td>" in page
    planted.write_text("targets:\n  pte_size_mb: {metric: pte_mb, comparison: '<', value: 1, colour: red}\n")
    out = _session(tmp_path, "--run", "broken", targets_env=str(planted))
    assert out.returncode == 4, out.stdout + out.stderr  # pytest's usage error: no test ran
    assert f"ERROR: {planted}: targets.pte_size_mb.colour: unknown key" in out.stderr, out.stderr
    assert not (tmp_path / "reports" / "broken" / "results.jsonl").exists()


def _tree(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes (empty when the folder does not exist)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_collecting_and_help_write_nothing_under_reports(tmp_path):
    assert _session(tmp_path, "--run", "probe").returncode == 0  # a real run: results, page, report, plots
    before = _tree(tmp_path / "reports")
    assert (Path("probe") / "report.md") in before and (Path("probe") / "results.jsonl") in before
    for args in (["--collect-only", "--fresh-results", "--html", "reports/probe/x.html"], ["--help"]):
        out = _session(tmp_path, "--run", "probe", *args)
        assert out.returncode == 0, out.stdout + out.stderr
        assert _tree(tmp_path / "reports") == before, args  # not re-rendered, not moved aside, no new page


BOUND_TEST = '''
def test_wrong_target(gate):
    gate(stage="stage5", subject="coreml/int4", metric="pte_mb", value=70.0, target="image_latency_ms",
         provenance="a size offered to a latency target")
'''


def test_a_measurement_offered_to_another_metrics_target_fails_the_test_in_one_line(tmp_path):
    _session(tmp_path, "--collect-only")  # sets up the folder
    (tmp_path / "test_probe.py").write_text(BOUND_TEST)
    out = _session(tmp_path, "--run", "bound")
    assert out.returncode == 1, out.stdout + out.stderr
    line = next(x for x in out.stdout.splitlines() if "targets.image_latency_ms: judges metric" in x)
    assert "'image_latency_ms' (ms)" in line and "coreml/int4 pte_mb" in line
    assert not (tmp_path / "reports" / "bound" / "results.jsonl").exists()  # refused: nothing recorded
