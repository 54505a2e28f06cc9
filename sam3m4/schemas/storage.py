"""The storage prune's logs (``logs/storage_prune_{dry_run,apply}_<time>.log``, :mod:`sam3m4.storage.prune`):
readable text, then one ``SAM3M4_PRUNE {json}`` line, the :class:`PruneLog` below."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from sam3m4.schemas._base import json_array, Bool, Count, Hex64, NonEmpty, Own, Text

Key = Annotated[tuple[NonEmpty, Count, Count], BeforeValidator(json_array)]
"""``[path, size, mtime_ns]`` of a file (path relative to the project root)."""


class PruneSettings(Own):
    """What a prune keeps (:class:`sam3m4.storage.prune.Settings`)."""

    keep_last: Annotated[int, Field(strict=True, ge=0)]
    vis_keep_every: Annotated[int, Field(strict=True, ge=1)]
    include_cache: Bool


class PruneLog(Own):
    """The machine-readable line of a prune log; ``--apply`` runs only when a dry run's matches the tree now."""

    version: Literal[1]
    mode: Literal["dry_run", "apply"]
    timestamp: NonEmpty
    root: NonEmpty
    settings: PruneSettings
    fingerprint: Hex64
    delete: list[Key]
    """Every planned deletion."""
    before: dict[str, Count]
    """Bytes per root and ``total``."""
    planned_after: dict[str, int]
    after: dict[str, int] | None = None
    dry_run_log: Text | None = None
    """(apply) the dry-run log it executed."""
    deleted: list[Key] | None = None
    skipped: list[Text] | None = None
    removed_dirs: list[Text] | None = None
