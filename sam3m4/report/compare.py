"""Compare two runs: every metric in both, the change, regressions flagged, and the release regression gate.

    sam3m4 report --run rc2 --compare rc1                      # table on stdout + reports/rc2/compare_rc1.md
    sam3m4 report --run rc2 --compare rc1 --regression-gate    # exit 1 when a gated metric regressed

Each run contributes its latest record per (stage, subject, metric). Which way is better comes from the targets
file when a gate of that metric exists (``<``/``<=``: lower is better), else from the unit (``ms``, ``MB``,
``points``: lower; ``fraction``, ``fps``, ``percent``, ``ratio``, ``x``: higher); metrics with
neither (a path, a verdict, an error) are listed with their change and never flagged.

A change is a regression when it is worse by more than the tolerance: the gate's ``regression_tolerance``
from the targets file (absolute, in its unit) when it has one, else ``tolerance`` x |baseline| (relative,
5% by default). The regression gate: no gate record whose target carries a ``regression_tolerance`` may be
worse than the baseline's by more than that tolerance; and it fails, with its reason, when such a metric of the
baseline is missing from this run or is not a finite number here, or when the two runs share no gated metric at
all (nothing was compared, so nothing passed).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from sam3m4.errors import Sam3m4Error
from sam3m4.fileio import atomic_write_text
from sam3m4.paths import REPORTS_ROOT
from sam3m4.results.store import Record, ResultsStore
from sam3m4.results.targets import Target

LOWER_IS_BETTER = {"ms", "MB", "points", "s"}
HIGHER_IS_BETTER = {"fraction", "fps", "percent", "ratio", "x"}
NEGATIVE_CONTROLS = ("planted/",)
"""Subjects that must fail their gate (acceptance/test_stage4.py's 1-bit model): compared, never gated."""


@dataclass(frozen=True)
class Change:
    """One metric of the two runs."""

    stage: str
    subject: str
    metric: str
    unit: str
    baseline: object
    """The baseline run's value (None: not in that run)."""
    current: object
    """This run's value (None: not in this run)."""
    delta: float | None
    """current - baseline, when both are numbers."""
    better: str | None
    """``higher``, ``lower`` or None (no direction known: never flagged)."""
    tolerance: float | None
    """The largest change for the worse that is not a regression, in ``unit``."""
    regression: bool
    gated: bool
    """A gate whose target has a ``regression_tolerance``: a regression here fails the regression gate."""
    target: str = ""
    """Key of the target that gave the direction / tolerance."""
    gate_problem: str = ""
    """Why this gated metric fails the regression gate (regressed, missing, not finite); "" when it does not."""


@dataclass(frozen=True)
class Comparison:
    run: str
    baseline: str
    changes: tuple[Change, ...]

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.regression]

    @property
    def gate_failures(self) -> list[Change]:
        """Gated metrics that fail ``--regression-gate``: regressed, missing or not finite in this run."""
        return [c for c in self.changes if c.gated and c.gate_problem]

    @property
    def shared_gated(self) -> list[Change]:
        """Gated metrics both runs measured (the ones the gate compared)."""
        return [c for c in self.changes if c.gated and c.baseline is not None and c.current is not None]

    @property
    def gate_reasons(self) -> list[str]:
        """Why the regression gate fails, one entry per cause; empty when it passes."""
        reasons = [f"{c.subject} {c.metric}: {c.gate_problem}" for c in self.gate_failures]
        if not self.shared_gated and not self.gate_failures:
            reasons.append(f"{self.run} and {self.baseline} share no gated metric (a gate record whose target has a "
                           "regression_tolerance), so nothing was compared")
        return reasons

    @property
    def gate_passed(self) -> bool:
        return not self.gate_reasons


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _latest(records: list[Record]) -> dict[tuple[str, str, str], Record]:
    out: dict[tuple[str, str, str], Record] = {}
    for rec in records:
        out[(rec.stage, rec.subject, rec.metric)] = rec
    return out


def _target_for(rec: Record, targets: dict[str, Target]) -> Target | None:
    """The target of a record's metric: the one with the record's own threshold first, else the first by metric."""
    same = [t for t in targets.values() if t.metric == rec.metric]
    exact = [t for t in same if rec.target is not None and t.value == rec.target and t.comparison == rec.comparison]
    return (exact or same or [None])[0]


def _direction(rec: Record, target: Target | None) -> str | None:
    if target is not None:
        return "lower" if target.comparison in ("<", "<=") else "higher"
    if rec.comparison in ("<", "<="):
        return "lower"
    if rec.comparison in (">", ">="):
        return "higher"
    return "lower" if rec.unit in LOWER_IS_BETTER else "higher" if rec.unit in HIGHER_IS_BETTER else None


def compare_records(current: list[Record], baseline: list[Record], targets: dict[str, Target], *, run: str = "",
                    baseline_run: str = "", tolerance: float = 0.05) -> Comparison:
    """The :class:`Comparison` of two runs' records (file order each)."""
    now, base = _latest(current), _latest(baseline)
    changes = []
    for key in list(base) + [k for k in now if k not in base]:
        cur, old = now.get(key), base.get(key)
        rec = cur or old
        target = _target_for(rec, targets)
        better = _direction(rec, target)
        gated = (any(r is not None and r.target is not None for r in (cur, old)) and target is not None
                 and target.regression_tolerance is not None and not rec.subject.startswith(NEGATIVE_CONTROLS))
        delta = tol = None
        regression = False
        problem = ""
        if gated and old is not None and cur is None:
            problem = f"missing in {run or 'this run'} (measured in {baseline_run or 'the baseline'})"
        elif gated and cur is not None and not _number(cur.value):
            problem = f"not a finite number in {run or 'this run'} ({_show(cur.value)})"
        if cur is not None and old is not None and _number(cur.value) and _number(old.value):
            delta = float(cur.value) - float(old.value)
            if better is not None:
                tol = target.regression_tolerance if target is not None and target.regression_tolerance is not None \
                    else tolerance * abs(float(old.value))
                worse = -delta if better == "higher" else delta
                regression = worse > tol + 1e-12
                if regression and gated:
                    problem = f"regressed {_show(old.value)} -> {_show(cur.value)} (tolerance {tol:.4g} {rec.unit})"
        changes.append(Change(stage=key[0], subject=key[1], metric=key[2], unit=rec.unit or (target.unit if target
                              else ""), baseline=None if old is None else old.value,
                              current=None if cur is None else cur.value, delta=delta, better=better, tolerance=tol,
                              regression=regression, gated=gated, target=target.name if target else "",
                              gate_problem=problem))
    return Comparison(run=run, baseline=baseline_run, changes=tuple(changes))


def compare_runs(run: str, baseline: str, root: str | os.PathLike = REPORTS_ROOT, targets: dict[str, Target] | None = None,
                 tolerance: float = 0.05) -> Comparison:
    """Compare ``<root>/<run>/results.jsonl`` with ``<root>/<baseline>/results.jsonl``; a missing store is an error."""
    stores = [ResultsStore(name, root=root) for name in (run, baseline)]
    for store in stores:
        if not store.path.is_file():
            raise Sam3m4Error(f"{store.path}: no results store for run {store.run!r} (nothing to compare)")
    if not math.isfinite(tolerance) or tolerance < 0:
        raise Sam3m4Error(f"--tolerance: expected a finite number >= 0, got {tolerance}")
    return compare_records(stores[0].records(), stores[1].records(), targets or {}, run=run, baseline_run=baseline,
                           tolerance=tolerance)


def _show(value) -> str:
    if value is None:
        return "-"
    if _number(value):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def format_comparison(c: Comparison) -> str:
    """Markdown: a summary line, the regressions, then every metric of either run."""
    gate = "pass" if c.gate_passed else "FAIL"
    lines = [f"# {c.run} vs {c.baseline}", "",
             f"{len(c.changes)} metrics; {len(c.regressions)} regressions beyond tolerance; regression gate: {gate} "
             f"({len(c.shared_gated)} gated metrics compared, {len(c.gate_failures)} failing)", ""]
    if not c.gate_passed:
        lines += ["## Regression gate", "", *(f"- {reason}" for reason in c.gate_reasons), ""]
    if c.regressions:
        lines += ["## Regressions", ""]
        lines += [f"- {'**GATE** ' if r.gated else ''}{r.stage} {r.subject} {r.metric}: {_show(r.baseline)} -> "
                  f"{_show(r.current)} ({r.delta:+.4g} {r.unit}; {r.better} is better, tolerance {r.tolerance:.4g})"
                  for r in c.regressions]
        lines.append("")
    lines += ["## Every metric", "", f"| stage | subject | metric | {c.baseline} | {c.run} | change | |",
              "|---|---|---|---:|---:|---:|---|"]
    for ch in c.changes:
        delta = "-" if ch.delta is None else f"{ch.delta:+.4g}"
        flag = ("REGRESSION (gate)" if ch.gated else "REGRESSION") if ch.regression else (
            f"only in {c.baseline}" if ch.current is None else f"only in {c.run}" if ch.baseline is None else "")
        lines.append(f"| {ch.stage} | {ch.subject} | {ch.metric} | {_show(ch.baseline)} | {_show(ch.current)} | "
                     f"{delta} | {flag} |")
    return "\n".join(lines) + "\n"


def write_comparison(c: Comparison, root: str | os.PathLike = REPORTS_ROOT) -> Path:
    """``<root>/<run>/compare_<baseline>.md``, written atomically."""
    out = Path(root) / c.run / f"compare_{c.baseline}.md"
    return atomic_write_text(out, format_comparison(c))
