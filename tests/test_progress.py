"""Long loops show tqdm's rate and ETA on a terminal and nothing anywhere else (sam3m4.progress)."""

from __future__ import annotations

import io
import sys

from sam3m4.progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_quiet_off_a_terminal_and_an_eta_on_one(monkeypatch):
    pipe = io.StringIO()  # a log file / CI: not a TTY
    monkeypatch.setattr(sys, "stderr", pipe)
    assert list(progress_bar(range(3), desc="export", unit="method")) == [0, 1, 2]
    assert pipe.getvalue() == ""
    tty = _Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    bar = progress_bar(range(3), desc="export", unit="method")
    for _ in bar:
        shown = tty.getvalue()
    assert "export:" in shown and "<" in shown  # tqdm's [elapsed<remaining, rate]
    muted = _Terminal()
    monkeypatch.setattr(sys, "stderr", muted)
    assert list(progress_bar(range(3), desc="x", enabled=False)) == [0, 1, 2] and muted.getvalue() == ""


def test_a_training_loop_in_a_log_file_writes_a_few_lines_with_step_loss_rate_and_eta(monkeypatch):
    from sam3m4.progress import LOG_LINES, StepProgress

    log = io.StringIO()  # a pipeline stage's log file
    monkeypatch.setattr(sys, "stderr", log)
    with StepProgress(1600, "bootstrap teacher") as bar:
        for step in range(1600):
            bar.update(1, loss=3.0 - step / 1000, lr=5e-4)
    lines = log.getvalue().splitlines()
    assert LOG_LINES <= len(lines) <= LOG_LINES + 1
    assert len(log.getvalue()) < 20_000
    assert lines[-1].startswith("bootstrap teacher: step 1600/1600 (100%) loss 1.401 lr 5.00e-04 | ")
    assert "step/s" in lines[0] and "ETA" in lines[0] and "\r" not in log.getvalue()
    assert lines[0].startswith("bootstrap teacher: step 40/1600 (2%)")


def test_a_training_loop_on_a_terminal_draws_a_bar_and_nothing_when_disabled(monkeypatch):
    from sam3m4.progress import StepProgress

    tty = _Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    with StepProgress(50, "phase2", initial=10) as bar:
        for _ in range(40):
            bar.update(1, loss=0.5)
    assert "phase2:" in tty.getvalue() and "\r" in tty.getvalue() and "ETA" not in tty.getvalue()
    for stream in (_Terminal(), io.StringIO()):
        monkeypatch.setattr(sys, "stderr", stream)
        with StepProgress(50, "x", enabled=False) as bar:
            bar.update(50, loss=1.0)
        assert stream.getvalue() == ""


def test_every_tqdm_in_the_library_shows_only_on_a_terminal():
    """The root of 188 KB stage logs: a bar built with ``disable=not progress`` (or none) redraws into a file.
    Every tqdm call outside sam3m4/progress.py must pass ``disable=None`` (tqdm's TTY check) when enabled."""
    import ast
    from pathlib import Path

    import sam3m4

    bad = []
    for path in Path(sam3m4.__file__).parent.rglob("*.py"):
        if path.name == "progress.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "tqdm":
                disable = [k.value for k in node.keywords if k.arg == "disable"]
                if not disable or "None" not in ast.unparse(disable[0]):
                    bad.append(f"{path.name}:{node.lineno}")
    assert not bad, f"tqdm bars that redraw into log files: {bad} (use sam3m4.progress)"
