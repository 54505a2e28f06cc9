"""A measurement judged by its own target: the binding rule, and ratios that may not be measurable.

    check_binding(targets["pte_size_mb"], metric="pte_mb", unit="MB")            # fine
    check_binding(targets["image_latency_ms"], metric="pte_mb", unit="MB")       # GateBindingError, one line
    r = ratio(student_miou, teacher_miou, what="teacher miou")
    r.value, r.outcome, r.reason      # (0.93, None, "") or (None, "not_measurable", "teacher miou 0 <= 0: ...")

A gate (the ``gate`` fixture of the acceptance suite, :func:`gate_record`) records one measurement against one
target of the targets file. The record's metric must be the target's metric and its unit, when it carries one,
the target's unit; anything else is refused with one line naming both, so a number can never be judged by a
threshold meant for another quantity (``pte_mb = 70`` against ``image_latency_ms < 100``). One exception is
declared here, not typed in a test: a host measurement of an on-device metric (:data:`HOST_STANDS_FOR`: Core ML
executed on a Mac) may be judged by the on-device target, as the release matrix reads it.

A ratio gate divides by a baseline (the teacher's score): a baseline <= 0 or not finite makes the ratio not
measurable, with the reason, instead of a division by ``max(teacher, 1e-9)`` that lets any student pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sam3m4.errors import ConfigError
from sam3m4.results import schema
from sam3m4.results.store import NOT_MEASURABLE, Record, ResultsStore
from sam3m4.results.targets import Target

HOST_STANDS_FOR = {schema.HOST_IMAGE_LATENCY_MS: schema.IMAGE_LATENCY_MS, schema.HOST_VIDEO_FPS: schema.VIDEO_FPS}
"""Host metric -> the on-device metric whose target may judge it (a ``.pte`` executed where it deploys: Core ML on
a Mac). Nothing else crosses metrics."""


class GateBindingError(ConfigError):
    """A measurement offered to a target that judges another metric or unit (a bug in the gate, not a result)."""


def check_binding(target: Target, *, metric: str, unit: str | None = None, subject: str = "") -> None:
    """Raise :class:`GateBindingError` unless ``metric`` is ``target.metric`` (or a host metric that stands for it,
    :data:`HOST_STANDS_FOR`) and ``unit`` (when given, non-empty) is ``target.unit``."""
    what = f"{subject} {metric}".strip()
    if metric != target.metric and HOST_STANDS_FOR.get(metric) != target.metric:
        raise GateBindingError(f"targets.{target.name}: judges metric {target.metric!r} ({target.unit}), but the "
                               f"measurement is {what} ({unit or 'no unit'}): refused, a gate reads its own target")
    if unit and target.unit and unit != target.unit:
        raise GateBindingError(f"targets.{target.name}: unit {target.unit!r}, but the measurement {what} is in "
                               f"{unit!r}: refused, convert it or gate it against a target in {unit!r}")


def gate_record(store: ResultsStore, targets: dict[str, Target], *, stage: str, subject: str, metric: str, value: Any,
                target: str | None = None, where: str = "targets", **fields: Any) -> Record:
    """Record a measurement in ``store``; with ``target`` (a key of ``targets``) bind it (:func:`check_binding`)
    and judge it: the record carries the threshold, comparison, unit and verdict (``passed``; None without a
    number). ``where`` names the targets file in the error for a missing key (:class:`ConfigError`)."""
    if target is not None:
        if target not in targets:
            raise ConfigError(f"{where}: targets.{target}: missing (this gate needs it)")
        t = targets[target]
        check_binding(t, metric=metric, unit=fields.get("unit"), subject=subject)
        fields.update(target=t.value, comparison=t.comparison, unit=fields.get("unit") or t.unit)
    return store.record(stage=stage, subject=subject, metric=metric, value=value, **fields)


@dataclass(frozen=True)
class Ratio:
    """``numerator / denominator``, or why it cannot be measured."""

    value: float | None
    """The ratio; None when not measurable."""
    reason: str = ""
    """Why not measurable (one line); empty when measured."""

    @property
    def outcome(self) -> str | None:
        """The record's ``outcome`` field: :data:`~sam3m4.results.schema.NOT_MEASURABLE` or None."""
        return None if self.value is not None else NOT_MEASURABLE


def ratio(numerator: float, denominator: float, *, what: str) -> Ratio:
    """``numerator / denominator`` when ``denominator`` (``what``: the baseline, e.g. ``teacher miou``) is a finite
    number > 0; else not measurable, saying why. A non-finite numerator gives a non-finite ratio (a failure)."""
    d = float(denominator)
    if not math.isfinite(d):
        return Ratio(None, f"{what} is {d!r}, not a finite number: the ratio is not measurable")
    if d <= 0:
        return Ratio(None, f"{what} {d:g} <= 0: the ratio is not measurable (a baseline that scores nothing "
                           "cannot be kept)")
    return Ratio(float(numerator) / d)
