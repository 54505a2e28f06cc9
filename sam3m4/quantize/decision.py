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
                              "pte_name": "sam3m4_tiny_xnnpack_int8_int4.pte"}, ...},
     "scores": {"fp16": {"miou": 0.571, "presence_f1": 0.82, "num_pairs": 200}, ...}}

``scores`` keeps every scored mode's host eager mIoU / Presence F1: Stage 5 compares each deployed ``.pte``
with them (deployed drop vs fp16, export fidelity vs its own mode) without scoring eager again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from sam3m4.data._checks import check_kind, get, load_json
from sam3m4.errors import DataFormatError
from sam3m4.fileio import atomic_write_json
from sam3m4.quantize.modes import MODES

FORMAT = "sam3m4-decision/1"
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

    def cases(self) -> list[tuple[str, str]]:
        """``[(backend, mode)]`` in backend order: what Stage 5 exports."""
        return [(b, d.mode) for b, d in self.backends.items()]


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
                                       quantized=chosen.mode, pte_name="")
    return out


def write_decision(out_dir: str | Path, decisions: dict[str, BackendDecision], *, rows, target, preset: str,
                   source: str | Path) -> Path:
    """Write ``<out_dir>/decision.json`` atomically (``.pte`` names filled from ``preset``); returns its path."""
    backends = {b: {**asdict(d), "pte_name": pte_name(preset, b, d.mode)} for b, d in decisions.items()}
    for d in backends.values():
        d.pop("backend")
    doc = {"format": FORMAT, "preset": preset, "source": str(source), "num_pairs": int(rows[0].num_pairs),
           "target": {"name": target.name, "comparison": target.comparison, "value": target.value,
                      "unit": target.unit, "basis": target.basis},
           "backends": backends,
           "scores": {r.mode: {"miou": float(r.miou), "presence_f1": float(r.presence_f1), "num_pairs": int(r.num_pairs)}
                      for r in rows}}
    path = Path(out_dir) / DECISION_FILE
    atomic_write_json(path, doc, indent=1)
    return path


def read_decision(path: str | Path) -> Decision:
    """:class:`Decision` from ``decision.json`` (or the quantize output folder holding it); a missing file or a
    bad field is a :class:`~sam3m4.errors.DataFormatError` naming the file and the field."""
    path = Path(path)
    if path.is_dir():
        path = path / DECISION_FILE
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file (Stage 4 writes it: `sam3m4 quantize --mode compare --out "
                              f"{path.parent}`)")
    doc = check_kind(path, "top level", load_json(path), "dict")
    if get(path, doc, "", "format", "str") != FORMAT:
        raise DataFormatError(f"{path}: format: expected {FORMAT!r}, got {doc['format']!r}")
    preset = get(path, doc, "", "preset", "str")
    backends = {}
    for backend, item in get(path, doc, "", "backends", "dict").items():
        where = f"backends.{backend}"
        if backend not in BACKEND_MODES:
            raise DataFormatError(f"{path}: {where}: unknown backend; choices: {', '.join(BACKEND_MODES)}")
        check_kind(path, where, item, "dict")
        mode = get(path, item, where, "mode", "str")
        if mode not in BACKEND_MODES[backend]:
            raise DataFormatError(f"{path}: {where}.mode: {mode!r} is not a mode {backend} lowers "
                                  f"({', '.join(BACKEND_MODES[backend])})")
        lists = {k: [check_kind(path, f"{where}.{k}[{i}]", v, "str")
                     for i, v in enumerate(get(path, item, where, k, "list"))] for k in ("candidates", "passing")}
        met = item.get("criterion_met")
        if not isinstance(met, bool):
            raise DataFormatError(f"{path}: {where}.criterion_met: expected a bool, got {met!r}")
        backends[backend] = BackendDecision(
            backend=backend, mode=mode, criterion_met=met, **lists,
            miou=float(get(path, item, where, "miou", "number")),
            miou_drop=float(get(path, item, where, "miou_drop", "number")),
            quantized=get(path, item, where, "quantized", "str"), pte_name=get(path, item, where, "pte_name", "str"))
    scores = {}
    for mode, item in get(path, doc, "", "scores", "dict").items():
        where = f"scores.{mode}"
        if mode not in MODES:
            raise DataFormatError(f"{path}: {where}: unknown mode; choices: {', '.join(MODES)}")
        check_kind(path, where, item, "dict")
        scores[mode] = {"miou": float(get(path, item, where, "miou", "number")),
                        "presence_f1": float(get(path, item, where, "presence_f1", "number")),
                        "num_pairs": get(path, item, where, "num_pairs", "int")}
    return Decision(path=path, preset=preset, scores=scores, source=get(path, doc, "", "source", "str"),
                    num_pairs=get(path, doc, "", "num_pairs", "int"), target=get(path, doc, "", "target", "dict"),
                    backends=backends)
