"""Skip or fail: what a gate does with a record that has no number to judge, decided from the record's fields.

    rec = settle(records.get("export_ok"), release=release, what="export coreml/int4", why="no export record")
    # returns the record when it carries a value to gate; else pytest.skip / pytest.fail with the reason

The decision reads :attr:`~sam3m4.results.store.Record.failed_stage` and
:attr:`~sam3m4.results.store.Record.outcome` (written by ``sam3m4 export`` and ``sam3m4 device import``),
never the note's wording: a note is shown, not matched.

============================================  ==========  =====================
record                                        default     ``--release``
============================================  ==========  =====================
has a value (``export_ok``: True)             gate it     gate it
``failed_stage`` set                          fail        fail
``outcome`` unsupported / not_measurable      skip        fail
no record at all                              skip        fail
no value and neither field (an old record)    fail        fail
============================================  ==========  =====================
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sam3m4.results import schema
from sam3m4.results.store import Record

_SAID = {schema.UNSUPPORTED_OUTCOME: "unsupported on this backend", schema.NOT_MEASURABLE: "not measurable here"}


@dataclass(frozen=True)
class Decision:
    """What to do instead of gating. ``outcome``: the gate's outcome as a value (:mod:`sam3m4.results.schema`:
    ``fail``, ``not measured`` or ``unsupported``); ``reason`` is the one-line message; ``action`` (``skip`` or
    ``fail``) follows from the outcome."""

    outcome: str
    reason: str

    @property
    def action(self) -> str:
        return "fail" if self.outcome == schema.FAIL else "skip"

    @property
    def gate_outcome(self) -> schema.GateOutcome:
        return schema.GateOutcome(self.outcome, self.reason)


def decide(rec: Record | None, *, release: bool, what: str, why: str) -> Decision | None:
    """None when ``rec`` has a value to gate; else the :class:`Decision` (table in the module docstring).

    ``what`` names the measurement in messages (``export coreml/int4``, ``image_latency_ms``); ``why`` says
    why there may be no record (shown when there is none).
    """
    release_ = "release: " if release else ""
    fail = schema.FAIL
    if rec is not None and rec.failed_stage:
        return Decision(fail, f"{what} failed at {rec.failed_stage}: {rec.note or 'no detail recorded'}")
    if rec is not None and rec.value is not None and rec.value is not False:
        if rec.outcome is None:
            return None
        return Decision(fail, f"{what}: a value and outcome {rec.outcome!r} in one record; re-measure")
    if rec is None:
        return Decision(fail if release else schema.NOT_MEASURED, f"{release_}{what} not measured: {why}")
    if rec.outcome in schema.RECORD_OUTCOMES:
        return Decision(fail if release else schema.gate_outcome_of_record(rec.outcome),
                        f"{release_}{what} {_SAID[rec.outcome]}: {rec.note or 'no detail recorded'}")
    if rec.outcome is not None:
        return Decision(fail, f"{what}: unknown outcome {rec.outcome!r} in the record (expected one of "
                              f"{schema.RECORD_OUTCOMES})")
    return Decision(fail, f"{what}: no value, and the record says neither where it failed nor that it is "
                          f"unsupported or not measurable here (note: {rec.note or '-'}); re-measure")


def settle(rec: Record | None, *, release: bool, what: str, why: str) -> Record:
    """``rec`` when it has a value to gate; else ``pytest.skip`` / ``pytest.fail`` as :func:`decide` says."""
    decision = decide(rec, release=release, what=what, why=why)
    if decision is None:
        return rec
    if decision.action == "fail":
        pytest.fail(decision.reason)
    pytest.skip(decision.reason)
