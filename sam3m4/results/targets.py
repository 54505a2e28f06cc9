"""Release targets, read from one YAML file (``acceptance/targets.yaml``); nothing hard-codes them.

Each entry names a metric, a comparison and a threshold; :meth:`Target.check` applies it. Tests,
the quantization decision and the report all read the same file. Unknown keys are an error that
names the file and the key.

    targets = load_targets()                     # acceptance/targets.yaml from the project root
    targets["pte_size_mb"].check(41.3)           # True: 41.3 < 50
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from sam3m4.errors import ConfigError
from sam3m4.results.store import _COMPARE, compare

DEFAULT_TARGETS = Path("acceptance") / "targets.yaml"


@dataclass(frozen=True)
class Target:
    """One release threshold: the measured ``metric`` must satisfy ``measured <comparison> value``."""

    name: str
    """Key in the targets file, e.g. ``pte_size_mb``."""
    metric: str
    """Metric name as recorded in the results store."""
    comparison: str
    """``<``, ``<=``, ``>``, ``>=``."""
    value: float
    """The threshold."""
    unit: str = ""
    """Unit of ``value`` (``MB``, ``ms``, ``fps``, ``points``, ``ratio``, ``percent``)."""
    basis: str = "absolute"
    """``absolute`` or ``relative`` (for drops: percent points vs percent of the baseline)."""
    description: str = ""
    """What the gate protects, for people reading a failure."""

    def check(self, measured: float) -> bool:
        return compare(float(measured), self.comparison, self.value)

    def describe(self) -> str:
        """``< 50 MB`` style text for tables."""
        unit = {"percent": "%", "ratio": "x"}.get(self.unit, " " + self.unit if self.unit else "")
        return f"{self.comparison} {self.value:g}{unit}"


def find_targets_file(path: str | os.PathLike | None = None) -> Path:
    """The targets file: ``path``, else ``$SAM3M4_TARGETS``, else ``acceptance/targets.yaml`` above the cwd."""
    if path is None:
        path = os.environ.get("SAM3M4_TARGETS")
    if path is not None:
        return Path(path)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / DEFAULT_TARGETS
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{DEFAULT_TARGETS}: targets file not found from {here} (set SAM3M4_TARGETS)")


def load_targets(path: str | os.PathLike | None = None) -> dict[str, Target]:
    """Parse the targets file into ``{name: Target}``; bad content -> ConfigError naming file and key."""
    path = find_targets_file(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read targets: {str(err).splitlines()[0]}") from err
    if not isinstance(raw, dict) or not isinstance(raw.get("targets"), dict):
        raise ConfigError(f"{path}: targets: missing mapping 'targets:'")
    allowed = {f.name for f in fields(Target)} - {"name"}
    out: dict[str, Target] = {}
    for name, entry in raw["targets"].items():
        where = f"{path}: targets.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping")
        for key in entry:
            if key not in allowed:
                raise ConfigError(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in ("metric", "comparison", "value"):
            if key not in entry:
                raise ConfigError(f"{where}.{key}: missing key")
        if entry["comparison"] not in _COMPARE:
            raise ConfigError(f"{where}.comparison: {entry['comparison']!r} is not one of {sorted(_COMPARE)}")
        if isinstance(entry["value"], bool) or not isinstance(entry["value"], (int, float)):
            raise ConfigError(f"{where}.value: expected a number, got {entry['value']!r}")
        if entry.get("basis", "absolute") not in ("absolute", "relative"):
            raise ConfigError(f"{where}.basis: expected 'absolute' or 'relative'")
        out[name] = Target(name=name, **{**entry, "value": float(entry["value"])})
    return out
