"""``checkpoints/quantized/<mode>/quantized.json`` (what :func:`sam3m4.quantize.storage.save_quantized` wrote next
to ``model.safetensors``) and ``checkpoints/quantized/decision.json`` (Stage 4's per-backend decision,
:mod:`sam3m4.quantize.decision`). Mode, backend and preset names are checked against their registries by the
loaders (this package imports no registry)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictInt

from sam3m4.schemas._base import Bool, External, Finite, NonEmpty, Own, Prob, Text, Count


class QuantizedMeta(External):
    """Unknown keys are kept: ``save_quantized(extra=...)`` adds the caller's facts (calibration, QAT steps)."""

    mode: NonEmpty
    """A quantization mode of :data:`sam3m4.quantize.modes.MODES`."""
    preset: NonEmpty
    """A student preset of :data:`sam3m4.models.build.PRESETS`."""
    kind: Literal["student", "tracker"] = "student"
    source: Text | None = None
    """The checkpoint it was quantized from."""
    num_latents: Annotated[int, Field(strict=True, ge=1, le=4096)] = 8
    """(tracker) memory latents."""


# --- checkpoints/quantized/decision.json ----------------------------------------------------------------------
DECISION_FORMAT = "sam3m4-decision/1"


def _file_name(value: str) -> str:
    if "/" in value or "\\" in value or value in (".", "..") or "\0" in value or not value.endswith(".pte"):
        raise ValueError(f"expected a .pte file name without a folder, got {value!r:.80}")
    return value


PteName = Annotated[NonEmpty, AfterValidator(_file_name)]
"""A ``.pte`` file name (no folder part: Stage 5 writes it into its own output folder)."""


class DecisionTarget(Own):
    """The ``quant_miou_drop`` target the decision was judged by (a copy of the targets file's entry)."""

    name: NonEmpty
    comparison: Literal["<", "<=", ">", ">="]
    value: Finite
    unit: Text
    basis: Literal["absolute", "relative"] = "absolute"


class BackendEntry(Own):
    """What one backend ships (:class:`sam3m4.quantize.decision.BackendDecision`); mode names are checked against
    the backend's modes by the reader."""

    mode: NonEmpty
    criterion_met: Bool
    candidates: list[NonEmpty]
    passing: list[NonEmpty]
    miou: Prob
    """Host eager mIoU of the chosen mode on Stage 4's val pairs."""
    miou_drop: Finite
    """Its drop vs fp16 in the target's unit (0 for fp16)."""
    quantized: NonEmpty
    """The ``<mode>/`` folder Stage 5 exports."""
    pte_name: PteName
    presence_threshold: Prob = 0.5
    """The presence threshold the app ships with this backend's ``.pte`` (the chosen mode's operating point,
    ``presence[mode].threshold``); files written before the operating point was fitted: SAM 3's 0.5."""


class ModeScores(Own):
    """Stage 4's host eager scores of one mode at SAM 3's 0.5."""

    miou: Prob
    presence_f1: Prob
    num_pairs: Count


class PresenceOperatingPoint(Own):
    """One mode's presence threshold, fitted on the calibration part of the val pairs and checked on the held-out
    part (:func:`sam3m4.metrics.operating_point.fit_operating_point`)."""

    threshold: Prob
    """The shipped threshold: a pair is present (a detection kept) when its score is >= it."""
    how: Literal["fitted", "fixed", "default"]
    """``fitted`` on the calibration part; ``fixed`` by the targets file's ``presence_threshold``; ``default``:
    SAM 3's 0.5 because the calibration part could not fit one (too few pairs, one class only)."""
    calibration_pairs: Count
    held_out_pairs: Count
    f1_calibration: Prob
    """Presence F1 at ``threshold`` on the calibration part."""
    f1_held_out: Prob
    """Presence F1 at ``threshold`` on the held-out part."""
    f1_held_out_at_default: Prob
    """Presence F1 at SAM 3's 0.5 on the held-out part."""
    best_f1_held_out: Prob
    """The best Presence F1 on the held-out part at any threshold (what ``threshold`` is judged against)."""
    split: Text
    """How the pairs were split (the rule, so Stage 5 splits a ``.pte``'s pairs the same way)."""


class DecisionFile(Own):
    """``decision.json``: what each backend ships, and what it was judged on."""

    format: Literal["sam3m4-decision/1"]
    preset: NonEmpty
    source: Text
    num_pairs: Annotated[StrictInt, Field(ge=1)]
    target: DecisionTarget
    backends: dict[str, BackendEntry]
    scores: dict[str, ModeScores]
    presence: dict[str, PresenceOperatingPoint] = {}
    """Mode -> its fitted presence operating point (absent in files written before it was fitted)."""
