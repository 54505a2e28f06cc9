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
