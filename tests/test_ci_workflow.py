"""The CI workflow: one job per backend, each runs tooling/ci/<backend>.sh and uploads the page and the report."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "acceptance.yml"
BACKENDS = ("xnnpack", "coreml", "qnn")


@pytest.fixture(scope="module")
def jobs() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("jobs"), dict), WORKFLOW
    return data["jobs"]


def test_one_job_per_backend_on_the_right_runner(jobs):
    assert set(jobs) == set(BACKENDS)
    assert jobs["xnnpack"]["runs-on"] == "ubuntu-latest"
    assert jobs["coreml"]["runs-on"] == "macos-14"
    assert "self-hosted" in jobs["qnn"]["runs-on"] and "qnn" in jobs["qnn"]["runs-on"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_job_runs_its_script(jobs, backend):
    runs = [step.get("run", "") for step in jobs[backend]["steps"]]
    assert any(f"bash tooling/ci/{backend}.sh" in run for run in runs), runs
    script = ROOT / "tooling" / "ci" / f"{backend}.sh"
    assert script.is_file(), script
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    mode = subprocess.run(["git", "ls-files", "-s", str(script.relative_to(ROOT))], cwd=ROOT, capture_output=True,
                          text=True, timeout=30).stdout.split()[:1] if shutil.which("git") else []
    assert mode in ([], ["100755"]), f"{script}: committed without the executable bit ({mode})"  # [] : not in git
    assert os.access(script, os.X_OK), f"{script}: not executable in this checkout"
    if shutil.which("bash"):
        for path in (script, ROOT / "tooling" / "ci" / "_stage5.sh"):
            check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
            assert check.returncode == 0, check.stderr
    common = (ROOT / "tooling" / "ci" / "_stage5.sh").read_text(encoding="utf-8")
    for part in ('-m "stage5 and $backend"', '--run "$run"', '--html="reports/$run/acceptance.html"',
                 "--self-contained-html", 'sam3m4" report --run "$run"', "make setup"):
        assert part in common, part
    assert f"run_stage5 {backend}" in text


@pytest.mark.parametrize("backend", BACKENDS)
def test_job_uploads_page_and_report_even_on_failure(jobs, backend):
    uploads = [s for s in jobs[backend]["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert len(uploads) == 1, jobs[backend]["steps"]
    step = uploads[0]
    paths = step["with"]["path"].split()
    assert f"reports/ci-{backend}/acceptance.html" in paths and f"reports/ci-{backend}/report.md" in paths
    assert step.get("if") == "always()"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_qnn_script_fails_clearly_without_sdk():
    env = {k: v for k, v in os.environ.items() if k != "QNN_SDK_ROOT"}
    out = subprocess.run(["bash", str(ROOT / "tooling" / "ci" / "qnn.sh")], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=30)
    assert out.returncode != 0
    assert "QNN_SDK_ROOT is not set" in out.stderr and out.stdout == ""
