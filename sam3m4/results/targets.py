"""Release targets, read from one YAML file (``acceptance/targets.yaml``); nothing hard-codes them.

Each entry names a metric, a comparison and a threshold; :meth:`Target.check` applies it. The CLI
(``device import``, ``report``, ``quantize``, ``bench``), the pytest gates and the Markdown report all find
the file with the one rule of :func:`locate_targets`:

1. the file given (``--targets FILE``; ``render_report(targets_path=...)``);
2. else ``$SAM3M4_TARGETS``;
3. else ``acceptance/targets.yaml`` in the current folder or the nearest parent that has one.

An entry may also give ``regression_tolerance`` (a number >= 0, in its unit): the regression gate of
``sam3m4 report --compare``. A file that is given (1 or 2) must exist. Bad content (bad YAML, an unknown or
duplicate key, a wrong type, a missing ``metric`` / ``comparison`` / ``value``) is a
:class:`~sam3m4.errors.ConfigError` naming the file and the key, never a silent fallback. The pytest-html page and the report name the file and its sha256.

    tf = load_targets_file()                     # TargetsFile(path, origin, sha256, targets)
    tf.targets["pte_size_mb"].check(41.3)        # True: 41.3 < 50
    load_targets()["pte_size_mb"]                # the same dict, when only the targets matter
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

from sam3m4.errors import ConfigError
from sam3m4.fileio import read_regular_bytes
from sam3m4.safeyaml import MAX_BYTES, load_yaml_text
from sam3m4.results.store import _COMPARE, compare

DEFAULT_TARGETS = Path("acceptance") / "targets.yaml"
TARGETS_ENV = "SAM3M4_TARGETS"


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
    presence_threshold: float | None = None
    """The presence threshold the app ships (a detection score in [0, 1]; a pair is present when a detection
    scores >= it), for the gates judged at it (``presence_threshold_on_plateau``); None: SAM 3's 0.5."""
    regression_tolerance: float | None = None
    """Optional regression gate (``sam3m4 report --compare BASE --regression-gate``): how much worse than the
    baseline run this gate's measurement may get, in ``unit`` (worse: lower for ``>``/``>=``, higher for
    ``<``/``<=``); None: not part of the regression gate."""

    def check(self, measured: float) -> bool:
        return compare(float(measured), self.comparison, self.value)

    def describe(self) -> str:
        """``< 50 MB`` style text for tables."""
        unit = {"percent": "%", "ratio": "x"}.get(self.unit, " " + self.unit if self.unit else "")
        return f"{self.comparison} {self.value:g}{unit}"


class TargetsNotFound(ConfigError):
    """No file was given and there is no ``acceptance/targets.yaml`` in or above the current folder."""


@dataclass(frozen=True)
class TargetsFile:
    """The targets in force, and which file they came from."""

    path: Path
    """The file read."""
    origin: str
    """How it was chosen: ``given``, ``$SAM3M4_TARGETS`` or ``default`` (see :func:`locate_targets`)."""
    sha256: str
    """Hex sha256 of the bytes parsed."""
    targets: dict[str, Target]
    """Key in the file -> :class:`Target`."""

    def describe(self) -> str:
        """``acceptance/targets.yaml (sha256 <64 hex>, default)``: the path relative to the cwd when under it."""
        return f"{display_path(self.path)} (sha256 {self.sha256}, {self.origin})"


def display_path(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def locate_targets(path: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``(file, origin)`` by the one rule: ``path`` > ``$SAM3M4_TARGETS`` > ``acceptance/targets.yaml`` above the cwd.

    Raises :class:`TargetsNotFound` only when nothing was given and no default file exists; a given file that
    does not exist is reported when it is read (:func:`load_targets_file`).
    """
    if path is not None:
        return Path(path), "given"
    env = os.environ.get(TARGETS_ENV)
    if env is not None:
        if not env.strip():
            raise ConfigError(f"${TARGETS_ENV} is set but empty: unset it or name a targets file")
        return Path(env), f"${TARGETS_ENV}"
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / DEFAULT_TARGETS
        if candidate.is_file():
            return candidate, "default"
    raise TargetsNotFound(f"{DEFAULT_TARGETS}: targets file not found in {here} or above "
                          f"(pass --targets FILE or set {TARGETS_ENV})")


def find_targets_file(path: str | os.PathLike | None = None) -> Path:
    """The targets file :func:`locate_targets` chooses."""
    return locate_targets(path)[0]


def parse_targets(raw, where: str) -> dict[str, Target]:
    """``{"targets": {name: {metric, comparison, value, ...}}}`` -> ``{name: Target}``; ``where`` names the file
    (the format: :class:`sam3m4.schemas.results.TargetsFile`)."""
    try:
        return _parse_targets(raw, where)
    except RecursionError:  # a value nested thousands deep (its repr in a message recurses)
        raise ConfigError(f"{where}: targets: nested too deeply") from None


def _parse_targets(raw, where: str) -> dict[str, Target]:
    if not isinstance(raw, dict) or "targets" not in raw:
        raise ConfigError(f"{where}: targets: missing mapping 'targets:'")
    for key in raw:
        if key != "targets":
            raise ConfigError(f"{where}: {key}: unknown top-level key (allowed: targets)")
    if not isinstance(raw["targets"], dict) or not raw["targets"]:
        raise ConfigError(f"{where}: targets: expected a non-empty mapping of name -> target")
    allowed = {f.name for f in fields(Target)} - {"name"}
    out: dict[str, Target] = {}
    for name, entry in raw["targets"].items():
        at = f"{where}: targets.{name}"
        if not isinstance(name, str):
            raise ConfigError(f"{at}: the name must be a string, got {type(name).__name__}")
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: expected a mapping, got {type(entry).__name__}")
        for key in entry:
            if key not in allowed:
                raise ConfigError(f"{at}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in ("metric", "comparison", "value"):
            if key not in entry:
                raise ConfigError(f"{at}.{key}: missing key")
        for key in ("metric", "comparison", "unit", "basis", "description"):
            if key in entry and not isinstance(entry[key], str):
                raise ConfigError(f"{at}.{key}: expected a string, got {entry[key]!r}")
        if not entry["metric"].strip():
            raise ConfigError(f"{at}.metric: empty")
        if entry["comparison"] not in _COMPARE:
            raise ConfigError(f"{at}.comparison: {entry['comparison']!r} is not one of {sorted(_COMPARE)}")
        value = entry["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{at}.value: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{at}.value: expected a finite number, got {value!r}")
        tolerance = entry.get("regression_tolerance")
        if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
                                      or not math.isfinite(tolerance) or tolerance < 0):
            raise ConfigError(f"{at}.regression_tolerance: expected a finite number >= 0, got {tolerance!r}")
        shipped = entry.get("presence_threshold")
        if shipped is not None and (isinstance(shipped, bool) or not isinstance(shipped, (int, float))
                                    or not 0 <= shipped <= 1):
            raise ConfigError(f"{at}.presence_threshold: expected a number in [0, 1], got {shipped!r}")
        if entry.get("basis", "absolute") not in ("absolute", "relative"):
            raise ConfigError(f"{at}.basis: expected 'absolute' or 'relative', got {entry['basis']!r}")
        if shipped is not None:
            entry = {**entry, "presence_threshold": float(shipped)}
        out[name] = Target(name=name, **{**entry, "value": float(value),
                                         "regression_tolerance": None if tolerance is None else float(tolerance)})
    return out


def load_targets_file(path: str | os.PathLike | None = None) -> TargetsFile:
    """Locate (:func:`locate_targets`), read, hash and check the targets file; errors name the file and key."""
    path, origin = locate_targets(path)
    source = "" if origin == "given" else f" (from {origin})"
    try:
        data = read_regular_bytes(path, MAX_BYTES)  # not a FIFO, not a runaway file
    except OSError as err:
        raise ConfigError(f"{path}: cannot read targets{source}: {err.strerror or err}") from None
    try:
        raw = load_yaml_text(data.decode("utf-8"), "")  # no aliases, duplicate or non-text keys (sam3m4.safeyaml)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: cannot read targets{source}: not UTF-8 text (byte {err.start})") from None
    except ConfigError as err:
        raise ConfigError(f"{path}: cannot read targets{source}{err}") from None
    return TargetsFile(path=path, origin=origin, sha256=hashlib.sha256(data).hexdigest(),
                       targets=parse_targets(raw, str(path)))


def load_targets(path: str | os.PathLike | None = None) -> dict[str, Target]:
    """``{name: Target}`` of the targets file :func:`load_targets_file` reads."""
    return load_targets_file(path).targets
