"""A release manager's acceptance of gates that could not be measured, for one release (one run).

A gate that fails blocks a release; a gate that is *not measured* (no phone for on-device latency, no QNN SDK)
only warns. To ship anyway, a release manager records, per run, which not-measured gates they accept, why, and
who they are, in ``reports/<run>/accepted.yaml``; the release page shows each acceptance next to its cell. An
acceptance never turns a failed gate into a pass, and it belongs to that run only (a new run starts with none).

    # reports/rc1/accepted.yaml
    image_latency_ms:
      reason: no Snapdragon phone in the lab this week; the host XNNPACK latency is 2.7 ms
      by: Jane Doe (release manager)
      columns: [qnn]          # optional: coreml / qnn / xnnpack / all; default: every column of the gate
    video_fps:
      reason: ...
      by: ...

    accepted = load_accepted("rc1")                  # {} when the file is absent
    accepted["image_latency_ms"].covers("qnn")       # True
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sam3m4.config import read_yaml
from sam3m4.errors import ConfigError
from sam3m4.paths import REPORTS_ROOT

ACCEPTED_FILE = "accepted.yaml"
COLUMN_KEYS = ("coreml", "qnn", "xnnpack", "all")


class Acceptance(BaseModel):
    """One gate accepted as not measured for this run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field(min_length=1)
    """Why shipping without the measurement is acceptable."""
    by: str = Field(min_length=1)
    """Who accepts it (name and role)."""
    columns: tuple[str, ...] = ()
    """Release targets it covers (``coreml``, ``qnn``, ``xnnpack``, ``all``); empty: every column of the gate."""

    @field_validator("reason", "by")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in v if c not in COLUMN_KEYS]
        if bad:
            raise ValueError(f"unknown column {bad[0]!r} (expected one of {', '.join(COLUMN_KEYS)})")
        return v

    def covers(self, column: str) -> bool:
        """True when this acceptance covers ``column`` (a column key, or ``all`` for a gate that spans them)."""
        return not self.columns or "all" in self.columns or column in self.columns

    @property
    def shown(self) -> str:
        return f"accepted by {self.by}: {self.reason}"


def accepted_path(run: str, root: str | os.PathLike = REPORTS_ROOT) -> Path:
    return Path(root) / run / ACCEPTED_FILE


def load_accepted(run: str, root: str | os.PathLike = REPORTS_ROOT,
                  gates: tuple[str, ...] | None = None) -> dict[str, Acceptance]:
    """Gate name -> :class:`Acceptance` from ``<root>/<run>/accepted.yaml`` ({} when absent).

    ``gates``: the known gate names (the targets file's); an unknown one is an error. A malformed file is a
    one-line :class:`~sam3m4.errors.ConfigError` naming the file and the field.
    """
    path = accepted_path(run, root)
    if not path.is_file():
        return {}
    out = {}
    for gate, entry in read_yaml(path).items():
        if gates is not None and gate not in gates:
            raise ConfigError(f"{path}: {gate}: not a gate of the targets file")
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {gate}: expected a mapping with reason and by")
        try:
            out[str(gate)] = Acceptance(**entry)
        except (ValidationError, TypeError) as exc:
            err = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": (), "msg": str(exc)}
            field = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"{path}: {gate}.{field}: {err['msg']}" if field else f"{path}: {gate}: {err['msg']}") from None
    return out
