"""``checkpoints/quantized/<mode>/quantized.json``: what :func:`sam3m4.quantize.storage.save_quantized` wrote next
to ``model.safetensors``. Mode and preset names are checked against their registries by the loader."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from sam3m4.schemas._base import External, NonEmpty, Text


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
