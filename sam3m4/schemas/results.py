"""The results store's records (``reports/<run>/results.jsonl``, one JSON object a line) and the release targets
(``acceptance/targets.yaml``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from sam3m4.schemas._base import Bool, Finite, Id, NonEmpty, NonNeg, Own, Text

Comparison = Literal["<", "<=", ">", ">=", "=="]
Value = Bool | Id | Finite | Text | None | list[Any] | dict[str, Any]
"""A record's value: a finite number, a string (a verdict, a path), a bool, null (with ``failed_stage`` or
``outcome``), or a JSON list / object (a structured fact). NaN and Infinity are never written (:meth:`sam3m4.results.store.ResultsStore.append`)."""


class ResultRecord(Own):
    """One line of ``results.jsonl``; the fields of :class:`sam3m4.results.store.Record`."""

    run: NonEmpty
    stage: NonEmpty
    subject: NonEmpty
    metric: NonEmpty
    value: Value
    unit: Text = ""
    target: Finite | None = None
    comparison: Comparison | None = None
    passed: Bool | None = None
    provenance: Text = ""
    artifact: Text | None = None
    sha256: Text | None = None
    """sha256 of ``artifact`` (hex)."""
    note: Text = ""
    failed_stage: Text | None = None
    outcome: Literal["unsupported", "not_measurable"] | None = None
    timestamp: Text = ""


class TargetEntry(Own):
    """One release threshold in ``acceptance/targets.yaml``: ``measured <comparison> value``."""

    metric: NonEmpty
    comparison: Comparison
    value: Finite
    unit: Text = ""
    basis: Literal["absolute", "relative"] = "absolute"
    description: Text = ""
    regression_tolerance: NonNeg | None = None
    """How much worse than the baseline run the regression gate allows, in ``unit``; None: not gated."""


class TargetsFile(Own):
    """``acceptance/targets.yaml``: ``targets: {name: TargetEntry}``, at least one."""

    targets: Annotated[dict[NonEmpty, TargetEntry], Field(min_length=1)]
