"""The pipeline's own files: the run state (``reports/<run>/pipeline_state.json``, :mod:`sam3m4.pipeline.runner`),
the run manifest (``reports/<run>/manifest.json``, :mod:`sam3m4.pipeline.artifacts`) and the synthetic data set's
manifest (``data/<set>/manifest.json``, :mod:`sam3m4.data.synth`)."""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from sam3m4.schemas._base import json_array, Count, Hex64, Id, NonEmpty, NonNeg, Own, Text, External

STATE_FORMAT = "sam3m4-pipeline-state-v1"
MANIFEST_FORMAT = "sam3m4-run-manifest-v1"
def _utc(text: str) -> str:
    try:
        _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise ValueError(f"expected a UTC time like 2025-01-31T12:00:00Z, got {text!r:.40}") from None
    return text


UtcTime = Annotated[Text, AfterValidator(_utc)]
"""``2025-01-01T12:00:00Z``."""


class StageState(Own):
    """What a stage left behind when it last ran (the skip decision compares these)."""

    argv: list[list[Text]]
    """Each command's arguments, without the interpreter path."""
    inputs: Hex64
    """sha256 over the stage's input paths (:class:`sam3m4.pipeline.runner.Hasher`)."""
    outputs: Hex64
    rc: Annotated[int, Field(strict=True, ge=-255, le=255)]
    """Exit code (negative: killed by that signal)."""
    seconds: NonNeg
    started: UtcTime | None = None
    finished: UtcTime
    peak_rss_mb: NonNeg | None = None


FileMemo = Annotated[tuple[Count, Count, Hex64], BeforeValidator(json_array)]
"""``[size, mtime_ns, sha256]`` of a hashed file."""


class PipelineState(Own):
    """``pipeline_state.json``."""

    format: Literal["sam3m4-pipeline-state-v1"]
    stages: dict[NonEmpty, StageState]
    hashes: dict[NonEmpty, FileMemo] = {}


class StageTiming(External):
    """The part of a stage's state the report's timeline and the cost plan read."""

    rc: Annotated[int, Field(strict=True, ge=-255, le=255)] = 0
    seconds: NonNeg | None = None
    started: UtcTime | None = None
    finished: UtcTime | None = None
    peak_rss_mb: NonNeg | None = None


class StateTimings(External):
    """``pipeline_state.json`` as the report reads it: each stage's timing (the rest is the runner's)."""

    format: Literal["sam3m4-pipeline-state-v1"]
    stages: dict[NonEmpty, StageTiming]


class Artifact(Own):
    """One file (or folder) of the run: ``sha256`` is null for a folder."""

    kind: Literal["checkpoint", "quantized", "pte", "log", "visual"]
    path: NonEmpty
    bytes: Count
    sha256: Hex64 | None


class RunManifest(Own):
    """``reports/<run>/manifest.json``: what the run made; ``sam3m4 prune`` keeps every path listed."""

    format: Literal["sam3m4-run-manifest-v1"]
    run: NonEmpty
    config: Text
    written: Text
    """UTC ISO-8601 time."""
    settings: dict[str, Any]
    """The pipeline config the run used (checked by :mod:`sam3m4.config` when it was read)."""
    artifacts: list[Artifact]


class ArtifactRef(External):
    path: NonEmpty


class ManifestReferences(External):
    """A run manifest as ``sam3m4 prune`` reads it: the paths it protects, as artifact objects (``{path, ...}``)
    or plain paths, in a list or by name. Anything else stops the prune (it cannot tell what is protected)."""

    artifacts: list[ArtifactRef | NonEmpty] | dict[str, ArtifactRef | NonEmpty] = []

    def paths(self) -> list[str]:
        items = self.artifacts.values() if isinstance(self.artifacts, dict) else self.artifacts
        return [item if isinstance(item, str) else item.path for item in items]


class SynthManifest(External):
    """``manifest.json`` of a generated data set: written by ``sam3m4 data synth``, read to recognise (and
    replace) its own output."""

    generator: NonEmpty
    seed: Count
    image_size: Annotated[Id, Field(gt=0)]
