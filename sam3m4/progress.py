"""Progress for long loops: tqdm with its rate and ETA on a terminal, a few plain lines anywhere else.

    for case in progress_bar(cases, desc="bench tiny", unit="case"):
        ...

    with StepProgress(max_steps, "bootstrap teacher", enabled=progress) as bar:
        for step in range(max_steps):
            ...
            bar.update(loss=loss)

``disable=None`` is tqdm's "only on a TTY": a pipeline stage's log file, CI and pytest stay free of bar
redraws. ``enabled=False`` (a ``--no-progress`` flag, a non-zero rank) silences it on a terminal too.
:class:`StepProgress` is for training loops: where stderr is not a terminal (a stage's log file) it writes one
line every ``every`` steps (about ``LOG_LINES`` lines per loop, so a stage log stays a few KB) with the step,
the latest values passed to :meth:`StepProgress.update` (loss, lr), the rate and the ETA.
"""

from __future__ import annotations

import math
import sys
import time

LOG_LINES = 40  # lines a loop writes to a log file (plus its last step)


def progress_bar(iterable=None, *, desc: str, unit: str = "it", total: int | None = None, enabled: bool = True):
    """A ``tqdm`` over ``iterable`` (or a manual one of ``total``) that shows only on a terminal."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit=unit, total=total, disable=None if enabled else True, leave=False,
                dynamic_ncols=True)


def is_terminal(stream=None) -> bool:
    """True when ``stream`` (default stderr, where tqdm draws) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def format_duration(seconds: float) -> str:
    """``1:02:03`` / ``4:08`` (h:mm:ss / m:ss) for a non-negative number of seconds; ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class StepProgress:
    """Progress of a loop of ``total`` steps: a tqdm bar on a terminal, otherwise one line every ``every`` steps.

    ``update(n, **values)`` advances ``n`` steps; ``values`` (floats or strings, e.g. ``loss=0.41``,
    ``lr=4e-4``) are shown in the bar's postfix and in the next log line. A log line reads
    ``bootstrap teacher: step 160/1600 (10%) loss 3.412 lr 4.9e-04 | 5.82 step/s, elapsed 0:27, ETA 4:08``.
    ``every`` defaults to ``ceil(total / LOG_LINES)``; ``initial`` is where a resumed loop starts (its rate
    counts only the steps of this run); ``enabled=False`` prints nothing anywhere; ``stream`` (default stderr)
    is where lines go and whose ``isatty`` picks the bar.
    """

    def __init__(self, total: int, desc: str, *, unit: str = "step", initial: int = 0, enabled: bool = True,
                 every: int | None = None, stream=None):
        self.total, self.desc, self.unit, self.enabled = int(total), desc, unit, enabled
        self.step, self._start_step = int(initial), int(initial)
        self.every = max(1, every or math.ceil(max(self.total, 1) / LOG_LINES))
        self.values: dict = {}
        self._stream = stream
        self._t0 = time.monotonic()
        self._bar = None
        if enabled and is_terminal(stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, initial=self.step, desc=desc, unit=unit, leave=False,
                             dynamic_ncols=True, file=stream)

    def update(self, n: int = 1, **values) -> None:
        """Advance ``n`` steps; remember ``values`` for the display (floats are formatted to 4 significant digits)."""
        self.step += n
        self.values.update(values)
        if self._bar is not None:
            self._bar.update(n)
            if values:
                self._bar.set_postfix({k: _fmt(v) for k, v in self.values.items()}, refresh=False)
        elif self.enabled and (self.step % self.every == 0 or self.step == self.total):
            self._line()

    def rate(self) -> float:
        """Steps per second over this run's steps (0 before the first)."""
        dt = time.monotonic() - self._t0
        return (self.step - self._start_step) / dt if dt > 0 else 0.0

    def line(self) -> str:
        """The log line for the current step (see the class docstring)."""
        rate, elapsed = self.rate(), time.monotonic() - self._t0
        eta = (self.total - self.step) / rate if rate > 0 else float("nan")
        pct = f" ({100 * self.step / self.total:.0f}%)" if self.total else ""
        vals = "".join(f" {k} {_fmt(v)}" for k, v in self.values.items())
        return (f"{self.desc}: {self.unit} {self.step}/{self.total}{pct}{vals} | {rate:.2f} {self.unit}/s, "
                f"elapsed {format_duration(elapsed)}, ETA {format_duration(eta)}")

    def _line(self) -> None:
        stream = sys.stderr if self._stream is None else self._stream
        print(self.line(), file=stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "StepProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.2e}" if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:.4g}"
    return str(v)
