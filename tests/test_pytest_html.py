"""pytest-html integration: a session using the project conftest writes acceptance.html with the
Measured / Target / Provenance columns and renders report.md from the same store."""

from __future__ import annotations

import html
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GATE_TEST = '''
def test_gate(gate):
    rec = gate(stage="stage5", subject="coreml", metric="pte_mb", value=12.5, target="pte_size_mb",
               provenance="AOT probe file")
    assert rec.passed
'''


def test_html_and_report_are_written(tmp_path):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    shutil.copytree(ROOT / "acceptance", tmp_path / "acceptance", ignore=shutil.ignore_patterns("test_*", "__pycache__"))
    (tmp_path / "test_probe.py").write_text(GATE_TEST)
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--run", "probe",
                          "-o", "addopts=", "test_probe.py"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    page = (tmp_path / "reports" / "probe" / "acceptance.html").read_text()
    assert "sam3m4 release acceptance" in page
    page = html.unescape(html.unescape(page))  # pytest-html embeds rows as escaped JSON
    for text in ("<th>Measured</th>", "<th>Provenance</th>", "<td>coreml pte_mb = 12.5 MB</td>",
                 "<td>AOT probe file</td>", "<td>< 50</td>", "torchao"):
        assert text in page, text
    report = (tmp_path / "reports" / "probe" / "report.md").read_text()
    assert "12.5 ✅" in report and "AOT probe file" in report
