"""Stage 4 as library calls: quantize a checkpoint in one mode, or compare every mode and pick one.

    from sam3m4.quantize.stage import quantize_compare, quantize_mode
    r = quantize_compare("checkpoints/video_distillation/video_epoch2.pt", out_dir="checkpoints/quantized",
                         num_val=200, qat="always", run="demo")
    r.chosen_mode, r.criterion_met, r.qat_ran, [row.miou for row in r.rows], print(r.table)
    one = quantize_mode("checkpoints/distillation/phase2_best.pt", "int4", out_dir="checkpoints/quantized")
    one.row.size_mb, one.path

What ``sam3m4 quantize`` does (:mod:`sam3m4.quantize.cli` only parses its flags and calls these). Each mode's model
is saved under ``<out_dir>/<mode>/`` (safetensors, :mod:`sam3m4.quantize.storage`) and scored on the first
``num_val`` val pairs (:func:`sam3m4.quantize.compare.measure`). :func:`quantize_compare` scores every
post-training mode, runs the QAT modes when none of them passes the targets file's ``quant_miou_drop`` gate
(``qat="auto"``; or ``"always"`` / ``"never"``), decides per backend among the modes it lowers
(:mod:`sam3m4.quantize.decision`, written to ``<out_dir>/decision.json``: what Stage 5 exports), records every
row and the decisions in ``reports/<run>/results.jsonl`` (report section 4) and returns them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from sam3m4.checkpoint import Checkpoint
from sam3m4.errors import ConfigError
from sam3m4.progress import progress_bar
from sam3m4.quantize import compare
from sam3m4.quantize.compare import ModeResult
from sam3m4.quantize.decision import BackendDecision, decide_per_backend, write_decision
from sam3m4.quantize.modes import MODES, PTQ_MODES, QAT_MODES
from sam3m4.quantize.qat_recipe import settings
from sam3m4.quantize.pipeline import (build_mode, load_val, phase2_source, record, record_backend_decisions,
                                      record_decision)
from sam3m4.quantize.storage import QuantizedModel, QuantizedSet, read_meta, save_quantized
from sam3m4.results import ResultsStore
from sam3m4.results.targets import Target, load_targets

QAT_CHOICES = ("auto", "always", "never")


@dataclass(frozen=True)
class QuantizeResult:
    """One mode quantized, saved and scored (:func:`quantize_mode`)."""

    row: ModeResult
    """Size, mIoU, Presence F1, host ms [, J&F, track FPS] and QAT info of the mode."""
    path: Path
    """The saved folder ``<out_dir>/<mode>/``."""
    data_root: Path
    """The dataset whose val pairs scored it."""
    quantized: QuantizedModel | None = None
    """The saved model as Stage 5 takes it (held in memory: nothing rereads it)."""

    @property
    def table(self) -> str:
        return compare.format_table([self.row])


@dataclass(frozen=True)
class CompareResult:
    """Every mode compared against fp16 and the choice (:func:`quantize_compare`)."""

    rows: tuple[ModeResult, ...]
    """One row per mode run, fp16 first, PTQ modes then QAT modes (when they ran); judged against the target."""
    decision: dict
    """:func:`sam3m4.quantize.compare.decide`'s dict plus ``qat_ran`` (bool) and ``qat_why`` (text)."""
    target: Target
    """The targets file's ``quant_miou_drop``."""
    out_dir: Path
    """``<out_dir>/<mode>/`` holds each mode's saved model."""
    data_root: Path
    """The dataset whose val pairs scored every mode."""
    backends: dict[str, BackendDecision] | None = None
    """What each backend ships (:func:`sam3m4.quantize.decision.decide_per_backend`), as in ``decision.json``."""
    decision_file: Path | None = None
    """``<out_dir>/decision.json``: the per-backend decisions Stage 5 exports."""
    quantized: QuantizedSet | None = None
    """The modes of :attr:`rows` as saved under ``out_dir`` (metadata read, weights loaded on first use): what
    Stage 5 takes."""

    @property
    def chosen_mode(self) -> str:
        return self.decision["chosen_mode"]

    @property
    def criterion_met(self) -> bool:
        return self.decision["criterion_met"]

    @property
    def qat_ran(self) -> bool:
        return self.decision["qat_ran"]

    @property
    def table(self) -> str:
        return compare.format_table(list(self.rows))

    @property
    def summary(self) -> str:
        """The decision line ``sam3m4 quantize --mode compare`` prints under the table."""
        d = self.decision
        per = "; ".join(f"{b}: {x.mode}" for b, x in (self.backends or {}).items())
        return (f"decision: {d['chosen_mode']} (gate {self.target.describe()} mIoU drop vs fp16; passing: "
                f"{', '.join(d['passing']) or 'none'}; QAT: {d['qat_why']})"
                + (f"\nper backend ({self.decision_file}): {per}" if per else ""))


def check_quantize_args(ckpt: Checkpoint | str | Path, *, num_val: int, out_dir: str | Path,
                        data: str | Path | None = None, qat: str = "auto", qat_steps: int | None = None,
                        qat_lr: float | None = None, runs: int = 20, threads: int = 0) -> None:
    """Every argument checked before the checkpoint loads: one line naming the ``sam3m4 quantize`` flag.
    ``qat_steps`` / ``qat_lr`` None: the QAT settings' own (``configs/qat.yaml``)."""
    for flag, value, low in (("--num-val", num_val, 1), ("--qat-steps", qat_steps, 1), ("--runs", runs, 1),
                             ("--threads", threads, 0)):
        if value is not None and value < low:
            raise ConfigError(f"{flag} {value}: must be >= {low}")
    if qat_lr is not None and not (qat_lr > 0 and math.isfinite(qat_lr)):
        raise ConfigError(f"--qat-lr {qat_lr}: must be a positive number")
    if qat not in QAT_CHOICES:
        raise ConfigError(f"--qat {qat!r}: choose from {', '.join(QAT_CHOICES)}")
    if data is not None and not Path(data).is_dir():
        raise ConfigError(f"--data {data}: no such folder")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a folder")
    if not Path(ckpt).is_file():
        raise ConfigError(f"--ckpt {ckpt}: no such checkpoint (run `sam3m4 distill phase2` first)")


def _add_mode(ckpt: Checkpoint, mode: str, out_dir: Path, val, videos, num_val: int, runs: int, qat: dict,
              progress: bool, echo: Callable[[str], None], phase2: Checkpoint | None = None,
              held: dict | None = None) -> ModeResult:
    """Build, save and score one mode (one line printed per mode); ``qat``: the QAT recipe's settings
    (:func:`sam3m4.quantize.qat_recipe.settings`); ``held``: mode -> model, filled when given."""
    model, qat_info = build_mode(ckpt, mode, progress=progress, phase2=phase2, qat_settings=qat)
    if held is not None:
        held[mode] = model
    path = out_dir / mode
    preset = getattr(model, "student", model).preset
    save_quantized(model, path, mode=mode, preset=preset, source=ckpt, extra={"qat": qat_info})
    row = compare.measure(model, mode, val, num_val, runs=runs, progress=progress, videos=videos,
                          presence_fixed=pinned_presence_threshold())
    row.qat = qat_info
    video = "" if row.jf is None else f", J&F {row.jf:.3f}, track {row.track_fps:.1f} fps"
    op = row.presence_point
    point = "" if op is None else (f" (presence threshold {op.threshold:.3f} {op.how}: held-out F1 "
                                   f"{op.f1_held_out:.3f} vs {op.f1_held_out_at_default:.3f} at 0.5)")
    echo(f"{mode}: {row.size_mb:.3f} MB, mIoU {row.miou:.3f}, Presence F1 {row.presence_f1:.3f} at 0.5{point}, "
         f"{row.avg_ms:.1f} ms{video} (saved {path})")
    return row


def pinned_presence_threshold() -> float | None:
    """The presence threshold the targets file pins (``presence_threshold_on_plateau.presence_threshold``), else
    None: each mode's threshold is fitted on the val pairs (:mod:`sam3m4.metrics.operating_point`)."""
    target = load_targets().get("presence_threshold_on_plateau")
    return None if target is None else target.presence_threshold


def _start(threads: int, echo: Callable[[str], None] | None) -> Callable[[str], None]:
    """Set torch's CPU threads for the process (0: leave the default); the echo function (None: silent)."""
    if threads:
        torch.set_num_threads(threads)
    return echo or (lambda line: None)


def quantize_mode(ckpt: Checkpoint | str | Path, mode: str, *, out_dir: str | Path, num_val: int = 200,
                  data: str | Path | None = None, qat_steps: int | None = None, qat_lr: float | None = None,
                  qat_settings: dict | None = None, runs: int = 20, threads: int = 0,
                  store: ResultsStore | None = None, run: str = "demo", progress: bool = True,
                  echo: Callable[[str], None] | None = print) -> QuantizeResult:
    """Quantize ``ckpt`` (a Phase 2 or video checkpoint) in ``mode``, save it under ``<out_dir>/<mode>/``, score it
    on the first ``num_val`` val pairs of ``data`` (default: the checkpoint's data root) and record the row in
    ``store`` (default ``ResultsStore(run)``, i.e. ``reports/<run>/``). ``runs``: timed host runs after 5 warm-up.
    ``threads``: torch CPU threads for the process (0: torch's default). ``echo``: status lines (None: silent).
    QAT modes: ``qat_settings`` (:func:`sam3m4.quantize.qat_recipe.load_config` of ``configs/qat.yaml``; None: the
    recipe's defaults), with ``qat_steps`` / ``qat_lr`` winning where given."""
    check_quantize_args(ckpt, num_val=num_val, out_dir=out_dir, data=data, qat_steps=qat_steps, qat_lr=qat_lr,
                        runs=runs, threads=threads)
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: unknown; choices: {', '.join(MODES)}")
    echo, out = _start(threads, echo), Path(out_dir)
    ckpt = Checkpoint.open(ckpt)  # read once: every step below takes this object
    val, videos, data_root = load_val(ckpt, Path(data) if data else None)
    held = {}
    qat = settings(qat_settings, steps=qat_steps, lr=qat_lr)
    rows = [_add_mode(ckpt, m, out, val, videos, num_val, runs, qat, progress, echo, held=held)
            for m in progress_bar([mode], desc=f"quantize {mode}", unit="mode", enabled=progress)]
    record(store if store is not None else run, rows, out, data_root, ckpt)
    return QuantizeResult(row=rows[0], path=out / mode, data_root=data_root,
                          quantized=QuantizedModel.held(held[mode], out / mode, read_meta(out / mode)))


def quantize_compare(ckpt: Checkpoint | str | Path, *, out_dir: str | Path, num_val: int = 200,
                     data: str | Path | None = None, qat: str = "auto", qat_steps: int | None = None,
                     qat_lr: float | None = None, qat_settings: dict | None = None, runs: int = 20, threads: int = 0,
                     store: ResultsStore | None = None, run: str = "demo", progress: bool = True,
                     echo: Callable[[str], None] | None = print) -> CompareResult:
    """Every post-training mode of ``ckpt`` (and the QAT modes per ``qat``) saved, scored, judged against fp16 with
    the targets file's ``quant_miou_drop``; the chosen mode and every row recorded in ``reports/<run>/``.

    ``qat``: ``auto`` runs the QAT modes only when no post-training mode passes, ``always`` or ``never``. The other
    arguments as in :func:`quantize_mode`. Deterministic for the same checkpoint, data and seed (host timings are
    reported but never decide)."""
    check_quantize_args(ckpt, num_val=num_val, out_dir=out_dir, data=data, qat=qat, qat_steps=qat_steps,
                        qat_lr=qat_lr, runs=runs, threads=threads)
    echo, out = _start(threads, echo), Path(out_dir)
    ckpt = Checkpoint.open(ckpt)  # read once: every step below takes this object
    val, videos, data_root = load_val(ckpt, Path(data) if data else None)
    qat_cfg = settings(qat_settings, steps=qat_steps, lr=qat_lr)
    rows = [_add_mode(ckpt, m, out, val, videos, num_val, runs, qat_cfg, progress, echo)
            for m in progress_bar(PTQ_MODES, desc="quantize compare", unit="mode", enabled=progress)]
    target = load_targets()["quant_miou_drop"]
    compare.judge(rows, target)
    ptq_passed = any(r.passed for r in rows if r.mode != "fp16")
    qat_why = ("requested (--qat always)" if qat == "always" else
               "no post-training mode met the mIoU gate" if qat == "auto" and not ptq_passed else None)
    if qat_why:
        phase2 = phase2_source(ckpt)  # a video checkpoint's Phase 2 file: opened once for both QAT modes
        rows += [_add_mode(ckpt, m, out, val, videos, num_val, runs, qat_cfg, progress, echo, phase2)
                 for m in progress_bar(QAT_MODES, desc="quantize compare (QAT)", unit="mode", enabled=progress)]
    decision = compare.decide(rows, target)
    decision["qat_ran"], decision["qat_why"] = bool(qat_why), qat_why or (
        "skipped (--qat never)" if qat == "never" else "not needed: a post-training mode met the mIoU gate")
    store = store if store is not None else ResultsStore(run)
    record(store, rows, out, data_root, ckpt, target=target)
    record_decision(store, decision, target, rows)
    backends = decide_per_backend(rows, target)
    quantized = QuantizedSet(dir=out, models={r.mode: QuantizedModel.open(out / r.mode) for r in rows})
    path = write_decision(out, backends, rows=rows, target=target, preset=quantized["fp16"].preset, source=ckpt)
    record_backend_decisions(store, path, target)
    return CompareResult(rows=tuple(rows), decision=decision, target=target, out_dir=out, data_root=data_root,
                         backends=backends, decision_file=path, quantized=quantized)
