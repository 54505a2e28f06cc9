"""The release at a glance: the verdict (GO / NO-GO) and the gate matrix, built from a run's results store.

Rows are the Stage 3, 4 and 5 gates of the targets file; columns the three targets a release ships to
(iOS Core ML, Android QNN, the host XNNPACK reference). Each cell is the latest measured value against its
target and one of :data:`PASS`, :data:`FAIL`, :data:`NOT_MEASURED` (with the reason) or :data:`UNSUPPORTED`,
decided from the record's fields (``passed``, ``failed_stage``, ``outcome``), never from note text:

* Stage 3 gates (student vs teacher, host eager) hold for every target: one cell spans the columns;
* Stage 4 (``quant_miou_drop``): the mIoU drop of the quant mode each target ships (the mode of its export);
  the presence calibration gates: the shipped threshold on the F1 plateau (the ``.pte``'s held-out pairs when it
  was scored here, else the mode's host eager score) and the ECE rise vs fp16 ("not measured" when the bootstrap
  cannot resolve it on the pairs scored: a warning);
* Stage 5: the ``.pte`` of each target; a failed or impossible export decides every cell of its column;
  on-device latency / FPS come from ``sam3m4 device import`` (iOS Core ML: a Mac's timing when no phone's).

The verdict rule: a cell that **fails** blocks the release (NO-GO); a cell that is **not measured** (no phone,
no QNN SDK, Core ML off a Mac) only warns, and a release manager accepts it for this one release in
``reports/<run>/accepted.yaml`` (:mod:`sam3m4.report.accepted`), shown next to the cell; **unsupported** cells
(the target does not apply) neither block nor warn. A run in which no cell passes is NO-GO (nothing was shown
to work). The verdict names the cells that block, then the warnings.

    matrix = release_matrix("demo")              # reports/demo/results.jsonl + acceptance/targets.yaml
    matrix.verdict, [b.label for b in matrix.blocking()], [w.label for w in matrix.warnings()]
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Callable

from sam3m4.paths import REPORTS_ROOT
from sam3m4.quantize.modes import MODES
from sam3m4.report.accepted import Acceptance, load_accepted
from sam3m4.results import schema
from sam3m4.results.schema import (FAIL, GATE_OUTCOMES, NOT_MEASURABLE, NOT_MEASURED, PASS, UNSUPPORTED,
                                   UNSUPPORTED_OUTCOME)
from sam3m4.results.store import Record, ResultsStore
from sam3m4.results.targets import Target, TargetsFile, load_targets_file

STATUSES = GATE_OUTCOMES  # a cell's status is a gate outcome (sam3m4.results.schema)
GO, NO_GO = "GO", "NO-GO"
VERDICT_RULE = ("Rule: a failed gate blocks the release (NO-GO); a gate not measured only warns, and a release "
                "manager accepts it for this release in reports/<run>/accepted.yaml (gate, reason, by); unsupported "
                "cells do not apply. A run with no passing gate is NO-GO.")
SPAN = "all"
"""Column key of a cell that holds for every target (Stage 3)."""


@dataclass(frozen=True)
class Column:
    """One release target."""

    key: str
    """Backend name as exports record it: ``coreml``, ``qnn``, ``xnnpack``."""
    label: str
    """Column heading."""
    platform: str
    """Where on-device results of this backend are recorded: ``ios/<backend>/<mode>``, ``android/...``."""


COLUMNS = (Column("coreml", "iOS Core ML", "ios"), Column("qnn", "Android QNN", "android"),
           Column("xnnpack", "host XNNPACK", "android"))


@dataclass(frozen=True)
class Cell:
    """One gate for one target (or for all of them)."""

    status: str
    """One of :data:`STATUSES`."""
    value: float | None = None
    """The measured number (None when there is none)."""
    unit: str = ""
    reason: str = ""
    """Why it is not measured / unsupported / failed without a number; empty for an ordinary measurement."""
    subject: str = ""
    """The record's subject (``coreml/int4``, ``ios/coreml/int4``, ``int4``, ``student/phase2``)."""
    provenance: str = ""
    accepted: str = ""
    """For a not-measured cell: ``accepted by <who>: <reason>`` from the run's ``accepted.yaml``; else empty."""

    @property
    def shown(self) -> str:
        """The value as displayed: ``4.19 MB``, ``97.3%``, ``0.912``; ``-`` when there is none."""
        return format_measure(self.value, self.unit)


@dataclass(frozen=True)
class GateRow:
    """One gate of the targets file across the targets."""

    stage: str
    """``Stage 3``, ``Stage 4``, ``Stage 5``."""
    gate: str
    """Key in the targets file (``pte_size_mb``)."""
    label: str
    target: str
    """``< 50 MB`` style text (empty when the targets file lacks the gate)."""
    cells: dict[str, Cell]
    """Column key -> cell; a single :data:`SPAN` key when the gate holds for every target."""


@dataclass(frozen=True)
class Blocker:
    """A cell that keeps the release from shipping."""

    row: GateRow
    column: str
    """Column label, or ``all targets``."""
    cell: Cell

    @property
    def label(self) -> str:
        what = f"{self.row.stage} {self.row.label} ({self.column})"
        if self.cell.status == FAIL and self.cell.value is not None:
            return f"{what}: {self.cell.shown}, target {self.row.target}"
        return f"{what}: {self.cell.reason}" + (f" ({self.cell.accepted})" if self.cell.accepted else "")


@dataclass(frozen=True)
class ReleaseMatrix:
    """The verdict and the gate matrix of one run."""

    run: str
    columns: tuple[Column, ...]
    modes: dict[str, str | None]
    """Column key -> the quant mode its export shipped (None: no export record)."""
    rows: tuple[GateRow, ...]
    targets_line: str = ""
    """Which targets file judged it (path and sha256)."""

    def cells(self):
        """``(row, column label, cell)`` for every cell, in display order."""
        labels = {c.key: c.label for c in self.columns}
        for row in self.rows:
            for key, cell in row.cells.items():
                yield row, labels.get(key, "all targets"), cell

    def blocking(self) -> list[Blocker]:
        """The failed cells: each one blocks the release."""
        return [Blocker(r, col, c) for r, col, c in self.cells() if c.status == FAIL]

    def warnings(self) -> list[Blocker]:
        """The cells not measured (they warn, never block): the ones nobody accepted first."""
        found = [Blocker(r, col, c) for r, col, c in self.cells() if c.status == NOT_MEASURED]
        return sorted(found, key=lambda b: bool(b.cell.accepted))

    def count(self, status: str) -> int:
        return sum(1 for _, _, c in self.cells() if c.status == status)

    @property
    def verdict(self) -> str:
        """NO-GO when a cell fails or none passes; not-measured cells only warn (see the module docstring)."""
        return GO if self.rows and not self.blocking() and self.count(PASS) else NO_GO


# --- value display -------------------------------------------------------------------------------------------
def format_measure(value, unit: str = "") -> str:
    """``4.19 MB``, ``97.3%``, ``0.912``, ``1.02x``, ``2.73 ms``, ``0.40 pt``; ``-`` for None."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if unit == "fraction":
        return f"{value:.3f}"
    if unit == "percent":
        return f"{value:.1f}%"
    if unit in ("ratio", "x"):
        return f"{value:.2f}x"
    if unit == "points":
        return f"{value:.2f} pt"
    digits = 2 if abs(value) < 100 else 1
    return f"{value:.{digits}f} {unit}".strip()


def target_text(target: Target) -> str:
    """``< 50 MB``, ``>= 0.9x``, ``<= 2 pt``, ``> 90%``, ``>= 0.7`` (a fraction): short enough for a table cell."""
    unit = {"fraction": "", "points": " pt", "ratio": "x", "x": "x", "percent": "%"}.get(
        target.unit, f" {target.unit}" if target.unit else "")
    return f"{target.comparison} {target.value:g}{unit}"


# --- the gates as data -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Gate:
    stage: str
    target: str
    """Key in the targets file."""
    label: str
    find: Callable[["_Records", Column, str], tuple[Record | None, str]] | None = None
    """Per-target lookup: (records, column, its mode) -> (the record or None, a note shown with the value);
    absent for the gates that hold for every target."""
    subject: str = ""
    """Spanning gates: the subject of the gate record."""
    metric: str = ""
    applies: tuple[str, ...] = ("coreml", "qnn", "xnnpack")
    why_not: str = ""
    """Shown in the columns the gate does not apply to (they are :data:`UNSUPPORTED`)."""
    optional: bool = False
    """Shown only when the run has a record for it (the embedded teacher's own targets)."""
    after_export: bool = True
    """A failed / impossible export of the column decides the cell when no record does."""
    on_device: bool = False
    """Measured on a phone (``sam3m4 device import``), not on the host."""
    absent: Callable[["_Records", Column, str], str | None] | None = None
    """When no record is found: (records, column, its mode) -> why the gate does not apply to this ``.pte`` (the
    cell is then :data:`UNSUPPORTED`), or None (not measured)."""
    how: str = ""
    """The command that fills a missing record ({subject}, {run}); empty: :data:`HOW_TO_FILL` of the stage."""


class _Records:
    """The latest record per (stage, subject, metric) of one run."""

    def __init__(self, records: list[Record]):
        self.latest: dict[tuple[str, str, str], Record] = {}
        for rec in records:
            self.latest[(rec.stage, rec.subject, rec.metric)] = rec

    def get(self, stage: str, subject: str, metric: str) -> Record | None:
        return self.latest.get((stage, subject, metric))

    def first(self, stage: str, subject: str, *metrics: str) -> Record | None:
        """The first of ``metrics`` with a value, else the first one recorded at all."""
        recs = [r for r in (self.get(stage, subject, m) for m in metrics) if r is not None]
        return next((r for r in recs if r.value is not None), recs[0] if recs else None)


def _stage5(*metrics: str):
    """The AOT / host record of the column's ``.pte`` (``<backend>/<mode>``): the first of ``metrics`` with a value."""
    def find(recs: _Records, col: Column, mode: str) -> tuple[Record | None, str]:
        return recs.first(schema.STAGE5, f"{col.key}/{mode}", *metrics), ""
    return find


def _method_absent(method: str):
    """A per-method numerics gate of a ``.pte`` whose other methods were checked but not ``method`` (an image-only
    student has no ``track``): the gate does not apply to it."""
    def absent(recs: _Records, col: Column, mode: str) -> str | None:
        checked = [m for m in schema.PTE_METHODS
                   if recs.get(schema.STAGE5, f"{col.key}/{mode}", schema.max_abs_error(m)) is not None]
        return f"the .pte has no `{method}` method (checked: {', '.join(checked)})" if checked else None
    return absent


def _on_device(metric: str):
    """The phone's record (``<platform>/<backend>/<mode>``); for Core ML a Mac's timing when no phone's; else the
    export's "not measured on a phone" record."""
    def find(recs: _Records, col: Column, mode: str) -> tuple[Record | None, str]:
        rec = recs.get(schema.STAGE5, f"{col.platform}/{col.key}/{mode}", metric)
        if rec is not None and (rec.value is not None or rec.failed_stage):
            return rec, ""
        mac = recs.get(schema.STAGE5, f"{col.key}/{mode}", "host_" + metric) if col.key == "coreml" else None
        if mac is not None and mac.value is not None:
            return mac, "on a Mac, not a phone"
        return rec or recs.get(schema.STAGE5, f"{col.key}/{mode}", metric), ""
    return find


def _stage4(recs: _Records, col: Column, mode: str) -> tuple[Record | None, str]:
    return recs.get(schema.STAGE4, mode, schema.MIOU_DROP), ""


def _shipped_then_eager(metric: str):
    """The column's ``.pte`` record (Stage 5, scored through the runtime) when it has a value or failed, else Stage 4's
    record of its mode (host eager; the note says so), else the ``.pte``'s "not measured" record."""
    def find(recs: _Records, col: Column, mode: str) -> tuple[Record | None, str]:
        pte = recs.get(schema.STAGE5, f"{col.key}/{mode}", metric)
        if pte is not None and (pte.value is not None or pte.failed_stage):
            return pte, ""
        eager = recs.get(schema.STAGE4, mode, metric)
        if eager is not None:
            why = f" ({pte.note})" if pte is not None and pte.note else ""
            return eager, f"host eager: the .pte was not scored{why}"
        return pte, ""
    return find


def _of_mode(metric: str):
    """Stage 4's record of the column's mode (``metric``)."""
    def find(recs: _Records, col: Column, mode: str) -> tuple[Record | None, str]:
        return recs.get(schema.STAGE4, mode, metric), ""
    return find


def _float_program(recs: _Records, col: Column, mode: str) -> str | None:
    """A float XNNPACK program has no int8 layers by design: the int8 MAC share does not apply to it."""
    spec = MODES.get(mode)
    return f"{mode}: a float program (no int8 layers by design)" if spec is not None and spec.linear is None else None


def _int8_share(recs: _Records, col: Column, mode: str) -> tuple[Record | None, str]:
    """The int8 MAC share of an integer-mode ``.pte`` (a float program's share, recorded too, is not judged)."""
    if _float_program(recs, col, mode):
        return None, ""
    return recs.get(schema.STAGE5, f"{col.key}/{mode}", schema.XNNPACK_INT8_MAC_SHARE), ""


HOW_TO_FILL = {  # why a cell has no record: the command that fills it ({subject}: the record's, {run})
    "Stage 4": "no stage4 {subject} miou_drop record: run `sam3m4 quantize --mode compare --run {run}`",
    "Stage 5": "no stage5 {subject} record: run the Stage 5 gates (`pytest acceptance/test_stage5.py --run {run}`)",
    "device": "no {subject} result imported: run the ExecuTorch benchmark app with the .pte on a phone, then "
              "`sam3m4 device import FILE --run {run}`",
}


GATES = (
    _Gate("Stage 3", "student_miou_ratio", "student / teacher mIoU", subject=schema.STUDENT_PHASE2, metric=schema.MIOU_RATIO),
    _Gate("Stage 3", "student_presence_f1_ratio", "student / teacher Presence F1", subject=schema.STUDENT_PHASE2,
          metric=schema.PRESENCE_F1_RATIO),
    _Gate("Stage 3", "student_video_jf_ratio", "+Video / teacher J&F", subject=schema.STUDENT_VIDEO, metric=schema.JF_RATIO),
    _Gate("Stage 3", "video_distill_miou_cost", "mIoU cost of video distillation", subject=schema.STUDENT_VIDEO,
          metric=schema.MIOU_COST),
    _Gate("Stage 3", "embedded_teacher_miou", "embedded teacher mIoU", subject=schema.TEACHER_EMBEDDED, metric=schema.MIOU,
          optional=True),
    _Gate("Stage 3", "embedded_teacher_presence_f1", "embedded teacher Presence F1", subject=schema.TEACHER_EMBEDDED,
          metric=schema.PRESENCE_F1, optional=True),
    _Gate("Stage 4", "quant_miou_drop", "mIoU drop of the shipped mode vs fp16", find=_stage4, after_export=False),
    _Gate("Stage 4", "presence_threshold_on_plateau", "shipped presence threshold on the F1 plateau (held-out pairs)",
          find=_shipped_then_eager(schema.PRESENCE_F1_GAP), after_export=False,
          how="no {subject} presence_f1_gap record: run the Stage 4 gates (`pytest acceptance/test_stage4.py --run "
              "{run}`) or score the .pte (`sam3m4 export ... --run {run}`)"),
    _Gate("Stage 4", "presence_ece_rise", "presence ECE rise of the shipped mode vs fp16", find=_of_mode(
          schema.PRESENCE_ECE_RISE), after_export=False,
          how="no stage4 {subject} presence_ece_rise record: run the Stage 4 gates (`pytest acceptance/test_stage4.py "
              "--run {run}`)"),
    _Gate("Stage 5", "pte_size_mb", ".pte size", find=_stage5(schema.PTE_MB)),
    _Gate("Stage 5", "npu_utilisation", "NPU coverage", find=_stage5(schema.ANE_PERCENT, schema.NPU_PERCENT),
          applies=("coreml", "qnn"), why_not="a CPU backend: no NPU"),
    _Gate("Stage 5", "xnnpack_mask_iou", ".pte vs eager mask IoU", find=_stage5(schema.MASK_IOU, "mask_iou/forward"),
          applies=("xnnpack",), why_not="numerics are checked where the .pte runs: the host XNNPACK reference"),
    _Gate("Stage 5", "xnnpack_int8_mac_share", "image path MACs in XNNPACK int8 kernels",
          find=_int8_share, applies=("xnnpack",),
          why_not="an XNNPACK figure (read from its lowered graph)", absent=_float_program),
    _Gate("Stage 5", "deployed_miou_drop", ".pte mIoU drop vs fp16 eager (runtime, val pairs)",
          find=_stage5(schema.DEPLOYED_MIOU_DROP)),
    _Gate("Stage 5", "export_fidelity_miou", ".pte vs its own mode's eager mIoU", find=_stage5(schema.EXPORT_MIOU_GAP)),
    *(_Gate("Stage 5", f"xnnpack_max_abs_error_{method}", f".pte vs eager max |error| ({method})",
            find=_stage5(schema.max_abs_error(method)), applies=("xnnpack",),
            why_not="numerics are checked where the .pte runs: the host XNNPACK reference",
            absent=_method_absent(method))
      for method in schema.PTE_METHODS),
    _Gate("Stage 5", "host_xnnpack_latency_ms", "host image latency p50", find=_stage5(schema.HOST_IMAGE_LATENCY_MS),
          applies=("xnnpack",), why_not="a gate of the host XNNPACK reference"),
    _Gate("Stage 5", "image_latency_ms", "on-device image latency", find=_on_device(schema.IMAGE_LATENCY_MS),
          on_device=True),
    _Gate("Stage 5", "video_fps", "on-device video FPS", find=_on_device(schema.VIDEO_FPS), on_device=True),
)


# --- judging a record ------------------------------------------------------------------------------------------
def _judge(rec: Record, target: Target | None = None, note: str = "") -> Cell:
    """A record as a cell: ``failed_stage`` -> fail, ``outcome`` -> unsupported / not measured, a number -> its
    verdict (the record's own, else ``target``'s)."""
    base = dict(unit=rec.unit or (target.unit if target is not None else ""), subject=rec.subject,
                provenance=rec.provenance)
    if rec.failed_stage:
        return Cell(FAIL, reason=f"failed at {rec.failed_stage}: {rec.note or 'no detail recorded'}", **base)
    if rec.outcome == UNSUPPORTED_OUTCOME:
        return Cell(UNSUPPORTED, reason=rec.note or "unsupported on this backend", **base)
    if rec.outcome == NOT_MEASURABLE:
        return Cell(NOT_MEASURED, reason=rec.note or "not measurable on the host that ran it", **base)
    value = rec.value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        why = f"no number recorded ({rec.note})" if rec.note else "no number recorded"
        return Cell(NOT_MEASURED, reason=why, **base)
    passed = rec.passed if rec.passed is not None else (target.check(value) if target is not None else None)
    if passed is None:
        return Cell(NOT_MEASURED, value=value, reason="no target to judge it by", **base)
    return Cell(PASS if passed else FAIL, value=value, reason=note, **base)


def _export_cell(recs: _Records, col: Column, mode: str | None) -> Cell | None:
    """The column's export when it did not produce a .pte (failed, unsupported, impossible here); else None."""
    rec = recs.get(schema.STAGE5, f"{col.key}/{mode}", schema.EXPORT_OK)
    if rec is None or rec.value is True:
        return None
    cell = _judge(rec)
    return cell if cell.status != PASS else None


def shipped_modes(recs: _Records, records: list[Record]) -> dict[str, str | None]:
    """Column key -> the quant mode of its export (``<backend>/<mode>`` export_ok records): among the exports that
    wrote a ``.pte`` (else all of them), Stage 4's decision for the backend (``decision/<backend>``) when there,
    else its overall chosen mode, else the latest."""
    overall = recs.get(schema.STAGE4, schema.DECISION, schema.CHOSEN_MODE)
    modes: dict[str, str | None] = {}
    for col in COLUMNS:
        chosen = recs.get(schema.STAGE4, schema.decision_subject(col.key), schema.CHOSEN_MODE) or overall
        exported = [r.subject.split("/", 1)[1] for r in records if r.stage == schema.STAGE5 and r.metric == schema.EXPORT_OK
                    and r.subject.count("/") == 1 and r.subject.startswith(col.key + "/")]
        written = [m for m in exported if recs.get(schema.STAGE5, f"{col.key}/{m}", schema.EXPORT_OK).value is True]
        candidates = written or exported
        if chosen is not None and str(chosen.value) in candidates:
            modes[col.key] = str(chosen.value)
        else:
            modes[col.key] = candidates[-1] if candidates else None
    return modes


def build_matrix(records: list[Record], targets: dict[str, Target], run: str = "",
                 targets_line: str = "", accepted: dict[str, Acceptance] | None = None) -> ReleaseMatrix:
    """The :class:`ReleaseMatrix` of ``records`` (one run's, file order) judged by ``targets``; ``accepted``
    (gate -> :class:`~sam3m4.report.accepted.Acceptance`) marks the not-measured cells a release manager accepted."""
    accepted = accepted or {}
    recs = _Records(records)
    modes = shipped_modes(recs, records)
    rows = []
    for gate in GATES:
        target = targets.get(gate.target)
        if gate.find is None:  # holds for every target
            rec = recs.get(schema.STAGE3, gate.subject, gate.metric)
            if rec is None and gate.optional:
                continue
            cell = _judge(rec, target) if rec is not None else Cell(
                NOT_MEASURED, subject=gate.subject,
                reason=f"no stage3 {gate.subject} {gate.metric} record: run the Stage 3 gates "
                       f"(`pytest acceptance/test_stage3.py acceptance/test_stage3_video.py --run {run or 'RUN'}`)")
            cells = {SPAN: cell}
        else:
            cells = {col.key: _column_cell(gate, recs, col, modes[col.key], target, run) for col in COLUMNS}
        acc = accepted.get(gate.target)
        if acc is not None:
            cells = {k: replace(c, accepted=acc.shown) if c.status == NOT_MEASURED and acc.covers(k) else c
                     for k, c in cells.items()}
        rows.append(GateRow(gate.stage, gate.target, gate.label, target_text(target) if target else "", cells))
    return ReleaseMatrix(run=run, columns=COLUMNS, modes=modes, rows=tuple(rows), targets_line=targets_line)


def _column_cell(gate: _Gate, recs: _Records, col: Column, mode: str | None, target: Target | None,
                 run: str) -> Cell:
    if col.key not in gate.applies:
        return Cell(UNSUPPORTED, reason=gate.why_not)
    if mode is None:
        return Cell(NOT_MEASURED, reason=f"no {col.key} export in run `{run}`: run `sam3m4 export --backend "
                                         f"{col.key} --mode MODE --run {run or 'RUN'}`")
    rec, note = gate.find(recs, col, mode)
    cell = _judge(rec, target, note) if rec is not None else None
    failed_export = _export_cell(recs, col, mode) if gate.after_export else None
    if failed_export is not None and (cell is None or cell.value is None and cell.status != FAIL):
        return failed_export
    if cell is None and gate.absent is not None and (why := gate.absent(recs, col, mode)):
        return Cell(UNSUPPORTED, subject=f"{col.key}/{mode}", reason=why)
    if cell is None:
        subject = (f"{col.platform}/{col.key}/{mode}" if gate.on_device else mode if gate.stage == "Stage 4"
                   else f"{col.key}/{mode}")
        how = gate.how or HOW_TO_FILL["device" if gate.on_device else gate.stage]
        return Cell(NOT_MEASURED, subject=subject, reason=how.format(subject=subject, run=run or "RUN"))
    return cell


def release_matrix(run: str, root: str | os.PathLike = REPORTS_ROOT, targets_file: TargetsFile | None = None,
                   targets_path: str | os.PathLike | None = None) -> ReleaseMatrix:
    """:func:`build_matrix` of ``<root>/<run>/results.jsonl`` with the targets file (given, or by the one rule)."""
    tf = targets_file or load_targets_file(targets_path)
    accepted = load_accepted(run, root, gates=tuple(tf.targets))
    return build_matrix(ResultsStore(run, root=root).records(), tf.targets, run=run, targets_line=tf.describe(),
                        accepted=accepted)

