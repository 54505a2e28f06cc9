"""Stage 4's decision per backend: which quant mode each ExecuTorch backend ships, written to ``decision.json``.

    decisions = decide_per_backend(rows, target)           # {backend: BackendDecision}, rows judged vs fp16
    path = write_decision(out_dir, decisions, rows=rows, target=target, preset="tiny", source=ckpt)
    d = read_decision("checkpoints/quantized/decision.json")   # Decision (checked, one-line errors)
    d.backends["xnnpack"].mode, d.backends["xnnpack"].pte_name

A backend can only ship a mode it lowers: :data:`BACKEND_MODES` says which (XNNPACK has no weight-only int4,
Core ML no dynamic activations); :mod:`sam3m4.export.flows` checks at import that its flows agree, so the
table lives here, below export, where Stage 4 decides. Per backend the rule is :func:`sam3m4.quantize.compare.
decide`'s on that backend's modes only: the smallest quantized mode passing ``quant_miou_drop``, then the
smallest drop (0.1 point), then PTQ before QAT; fp16 when none passes. Stage 5 (``sam3m4 export --mode chosen``,
the pipeline's export stages) exports exactly these; the report's Stage 4 decision and Stage 5 rows name the
same ``.pte`` (:attr:`BackendDecision.pte_name`).

``decision.json`` (written atomically next to the ``<mode>/`` folders)::

    {"format": "sam3m4-decision/1", "preset": "tiny", "source": "<ckpt>", "num_pairs": 200,
     "target": {"name": "quant_miou_drop", "comparison": "<=", "value": 2.0, "unit": "points", "basis": "absolute"},
     "backends": {"xnnpack": {"mode": "int8_int4", "criterion_met": true, "candidates": [...], "passing": [...],
                              "miou": 0.567, "miou_drop": 0.4, "quantized": "int8_int4",
                              "pte_name": "sam3m4_tiny_xnnpack_int8_int4.pte", "presence_threshold": 0.315}, ...},
     "scores": {"fp16": {"miou": 0.571, "presence_f1": 0.82, "num_pairs": 200}, ...},
     "presence": {"int8_int4": {"threshold": 0.315, "how": "fitted", "calibration_pairs": 96, "held_out_pairs": 104,
                                "f1_calibration": 0.81, "f1_held_out": 0.79, "f1_held_out_at_default": 0.65,
                                "best_f1_held_out": 0.80, "split": "..."}, ...}}

``scores`` keeps every scored mode's host eager mIoU / Presence F1 (at SAM 3's 0.5): Stage 5 compares each deployed
``.pte`` with them (deployed drop vs fp16, export fidelity vs its own mode) without scoring eager again.
``presence`` is each mode's presence operating point (:mod:`sam3m4.metrics.operating_point`: fitted on a
calibration part of the val pairs, checked on the rest); a backend ships its chosen mode's threshold
(``presence_threshold``), which Stage 5's deployed evaluation and the app's predictor use. The file's format is
:class:`sam3m4.schemas.quantize.DecisionFile`: :func:`write_decision` checks a document against it before the
atomic write, :func:`read_decision` reads through it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sam3m4.errors import DataFormatError
from sam3m4.fileio import atomic_write_json
from sam3m4.metrics.operating_point import DEFAULT_THRESHOLD, OperatingPoint
from sam3m4.paths import project_root
from sam3m4.quantize.modes import MODES
from sam3m4.schemas import load_file, validate
from sam3m4.schemas.quantize import DECISION_FORMAT, DecisionFile

FORMAT = DECISION_FORMAT
DECISION_FILE = "decision.json"
BACKEND_MODES: dict[str, tuple[str, ...]] = {
    "coreml": ("fp16", "int4", "qat_int4"),
    "qnn": tuple(MODES),
    "xnnpack": ("fp16", "int8_int4", "qat_int8_int4"),
}
"""Backend -> the quant modes it lowers (the supported modes of :data:`sam3m4.export.flows.FLOWS`, which asserts
it agrees). QNN quantizes every mode with its own PT2E quantizer from the float student."""


def pte_name(preset: str, backend: str, mode: str, name: str | None = None) -> str:
    """The file ``sam3m4 export`` writes for a case: ``<name or sam3m4_<preset>>_<backend>_<mode>.pte``."""
    return f"{name or f'sam3m4_{preset}'}_{backend}_{mode}.pte"


@dataclass(frozen=True)
class BackendDecision:
    """What one backend ships."""

    backend: str
    """``coreml``, ``qnn`` or ``xnnpack``."""
    mode: str
    """The chosen quant mode (one of :data:`BACKEND_MODES` [backend])."""
    criterion_met: bool
    """True when a quantized mode of this backend passed ``quant_miou_drop`` (else fp16 is shipped)."""
    candidates: list[str]
    """The backend's modes Stage 4 scored (fp16 first), in table order."""
    passing: list[str]
    """Quantized candidates that passed the gate."""
    miou: float
    """Host eager mIoU of the chosen mode on Stage 4's val pairs (fraction)."""
    miou_drop: float
    """Its mIoU drop vs fp16, in the target's unit (0 for fp16)."""
    quantized: str
    """The ``<mode>/`` folder under the quantize output that Stage 5 exports."""
    pte_name: str
    """The ``.pte`` file name Stage 5 writes for it (the default ``--name``)."""
    presence_threshold: float = DEFAULT_THRESHOLD
    """The presence threshold the app ships with it: the chosen mode's operating point (``Decision.presence``)."""


@dataclass(frozen=True)
class Decision:
    """``decision.json``: every backend's :class:`BackendDecision`, and what they were judged on."""

    path: Path
    preset: str
    source: str
    num_pairs: int
    target: dict
    backends: dict[str, BackendDecision]
    scores: dict[str, dict]
    """Mode -> ``{"miou", "presence_f1", "num_pairs"}``: Stage 4's host eager scores of every mode it ran."""
    presence: dict[str, OperatingPoint] = field(default_factory=dict)
    """Mode -> its presence operating point (:mod:`sam3m4.metrics.operating_point`); empty in older files."""

    def cases(self) -> list[tuple[str, str]]:
        """``[(backend, mode)]`` in backend order: what Stage 5 exports."""
        return [(b, d.mode) for b, d in self.backends.items()]


def _threshold(row) -> float:
    point = getattr(row, "presence_point", None)
    return DEFAULT_THRESHOLD if point is None else float(point.threshold)


def decide_per_backend(rows, target) -> dict[str, BackendDecision]:
    """{backend: :class:`BackendDecision`} from judged Stage 4 rows (:class:`~sam3m4.quantize.compare.ModeResult`
    with ``miou_drop`` / ``passed`` filled by :func:`~sam3m4.quantize.compare.judge`). A backend none of whose
    quantized modes was scored ships fp16. The ``.pte`` names need the preset: see :func:`write_decision`."""
    by_mode = {r.mode: r for r in rows}
    if "fp16" not in by_mode:
        raise ValueError("the per-backend decision needs the fp16 baseline row")
    out = {}
    for backend, modes in BACKEND_MODES.items():
        cands = [by_mode[m] for m in by_mode if m in modes]  # rows order: fp16, PTQ, QAT
        passing = [r for r in cands if r.mode != "fp16" and r.passed]
        chosen = by_mode["fp16"]
        if passing:
            smallest = min(round(r.size_mb, 3) for r in passing)
            chosen = min((r for r in passing if round(r.size_mb, 3) == smallest), key=lambda r: round(r.miou_drop, 1))
        out[backend] = BackendDecision(backend=backend, mode=chosen.mode, criterion_met=bool(passing),
                                       candidates=[r.mode for r in cands], passing=[r.mode for r in passing],
                                       miou=float(chosen.miou), miou_drop=float(chosen.miou_drop or 0.0),
                                       quantized=chosen.mode, pte_name="",
                                       presence_threshold=_threshold(chosen))
    return out


def write_decision(out_dir: str | Path, decisions: dict[str, BackendDecision], *, rows, target, preset: str,
                   source: str | Path) -> Path:
    """Write ``<out_dir>/decision.json`` atomically (``.pte`` names filled from ``preset``), checked against its
    schema first (what the reader would refuse is never written); returns its path."""
    backends = {b: {**asdict(d), "pte_name": pte_name(preset, b, d.mode)} for b, d in decisions.items()}
    for d in backends.values():
        d.pop("backend")
    doc = {"format": FORMAT, "preset": preset, "source": str(source), "num_pairs": int(rows[0].num_pairs),
           "target": {"name": target.name, "comparison": target.comparison, "value": target.value,
                      "unit": target.unit, "basis": target.basis},
           "backends": backends,
           "scores": {r.mode: {"miou": float(r.miou), "presence_f1": float(r.presence_f1), "num_pairs": int(r.num_pairs)}
                      for r in rows},
           "presence": {r.mode: r.presence_point.to_dict() for r in rows
                        if getattr(r, "presence_point", None) is not None}}
    path = Path(out_dir) / DECISION_FILE
    validate(doc, DecisionFile, source=path)
    atomic_write_json(path, doc, indent=1)  # os.replace: a symlink at the name is replaced, never written through
    return path


def _not_linked_out(path: Path) -> None:
    """Refuse a ``decision.json`` that is itself a symlink leading out of the project and out of its folder: Stage 4
    writes a regular file there (an atomic rename), so such a link was put there by something else. (A symlinked
    *folder*, checkpoints on another disk, is fine.)"""
    if not path.is_symlink():
        return
    real, root, folder = (os.path.realpath(p) for p in (path, project_root(), path.parent))
    if not any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in (root, folder)):
        raise DataFormatError(f"{path}: refused to read: a symlink leads it to {real}, outside the project root "
                              f"{root} (Stage 4 writes a regular file here)")


def read_decision(path: str | Path) -> Decision:
    """:class:`Decision` from ``decision.json`` (or the quantize output folder holding it), read through its schema
    (:class:`sam3m4.schemas.quantize.DecisionFile`); a missing file, a symlink leading out of the project, bad
    JSON, a bad field or a mode the backend does not lower is a :class:`~sam3m4.errors.DataFormatError` naming the
    file and the field."""
    path = Path(path)
    if path.is_dir():
        path = path / DECISION_FILE
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file (Stage 4 writes it: `sam3m4 quantize --mode compare --out "
                              f"{path.parent}`)")
    _not_linked_out(path)
    doc = load_file(path, DecisionFile)
    backends = {}
    for backend, item in doc.backends.items():
        where = f"backends.{backend}"
        if backend not in BACKEND_MODES:
            raise DataFormatError(f"{path}: {where}: unknown backend; choices: {', '.join(BACKEND_MODES)}")
        if item.mode not in BACKEND_MODES[backend]:
            raise DataFormatError(f"{path}: {where}.mode: {item.mode!r} is not a mode {backend} lowers "
                                  f"({', '.join(BACKEND_MODES[backend])})")
        for key in ("candidates", "passing"):
            bad = next((m for m in getattr(item, key) if m not in MODES), None)
            if bad is not None:
                raise DataFormatError(f"{path}: {where}.{key}: unknown mode {bad!r}; choices: {', '.join(MODES)}")
        backends[backend] = BackendDecision(backend=backend, **item.model_dump())
    for key in ("scores", "presence"):
        bad = next((m for m in getattr(doc, key) if m not in MODES), None)
        if bad is not None:
            raise DataFormatError(f"{path}: {key}.{bad}: unknown mode; choices: {', '.join(MODES)}")
    return Decision(path=path, preset=doc.preset, source=doc.source, num_pairs=doc.num_pairs,
                    target=doc.target.model_dump(), backends=backends,
                    scores={m: v.model_dump() for m, v in doc.scores.items()},
                    presence={m: OperatingPoint(**v.model_dump()) for m, v in doc.presence.items()})
