"""Progress bars for long loops: tqdm with its rate and ETA on a terminal, silent anywhere else.

    for case in progress_bar(cases, desc="bench tiny", unit="case"):
        ...

``disable=None`` is tqdm's "only on a TTY": a pipeline stage's log file, CI and pytest stay free of bar
redraws. ``enabled=False`` (a ``--no-progress`` flag, a non-zero rank) silences it on a terminal too.
"""

from __future__ import annotations


def progress_bar(iterable=None, *, desc: str, unit: str = "it", total: int | None = None, enabled: bool = True):
    """A ``tqdm`` over ``iterable`` (or a manual one of ``total``) that shows only on a terminal."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit=unit, total=total, disable=None if enabled else True, leave=False,
                dynamic_ncols=True)
