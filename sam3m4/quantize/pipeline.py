"""The steps behind ``sam3m4 quantize``: build a mode's model from a checkpoint, load the val pairs, record.

Records (``reports/<run>/results.jsonl``, stage ``stage4``): per mode ``size_mb``, ``compression``, ``miou``,
``presence_f1`` (at SAM 3's 0.5), ``avg_ms`` and ``miou_drop`` (the gate), the presence operating point
(``presence_threshold``, ``presence_f1_held_out`` at it and ``presence_f1_held_out_05`` at 0.5 on the held-out pairs); subject ``decision``: ``criterion_met``,
``chosen_mode``, ``qat`` (report section 4's bullets); subject ``decision/<backend>``: ``chosen_mode`` of that
backend, with ``decision.json`` as the artifact and the ``.pte`` it ships in the note.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sam3m4.checkpoint import KIND_TRACKER, Checkpoint
from sam3m4.data import SacoImageDataset, SacoVideoDataset
from sam3m4.env import host_summary
from sam3m4.errors import DataFormatError
from sam3m4.paths import SYNTH_DATA
from sam3m4.predict import load_student, load_tracker
from sam3m4.quantize.decision import read_decision
from sam3m4.quantize.modes import MODES, apply_mode, get_mode
from sam3m4.quantize.qat_recipe import qat_finetune, settings
from sam3m4.results import ResultsStore, schema


def load_source(ckpt: Checkpoint | str | Path):
    """(float model, kind): a Phase 2 student (``kind`` "student") or, from ``video_epoch*.pt``, the
    :class:`~sam3m4.models.video.StudentTracker` (student + video memory, ``kind`` "tracker"). ``ckpt``: an opened
    :class:`~sam3m4.checkpoint.Checkpoint` (built from its tensors, nothing reread) or a path (read once)."""
    ck = Checkpoint.open(ckpt)
    if ck.kind == KIND_TRACKER:
        return load_tracker(ck), "tracker"
    return load_student(ck), "student"


def image_model(model):
    """The image student of a student or a tracker."""
    return getattr(model, "student", model)


def phase2_source(ckpt: Checkpoint | str | Path) -> Checkpoint:
    """The Phase 2 checkpoint whose config (data, teacher, cache) QAT trains with: ``ckpt`` itself, or the one a
    video checkpoint was distilled from (``config.ckpt``, opened here)."""
    ck = Checkpoint.open(ckpt)
    if ck.kind != KIND_TRACKER:
        return ck
    src = ck.config.get("ckpt")
    if not isinstance(src, str) or not Path(src).is_file():
        raise DataFormatError(f"{ck.path}: config.ckpt: the Phase 2 checkpoint it came from is missing ({src}); "
                              "QAT needs it for the data, teacher and cache")
    return Checkpoint.open(src)


def build_mode(ckpt: Checkpoint | str | Path, mode: str, qat_steps: int | None = None, qat_lr: float | None = None,
               progress: bool = True, phase2: Checkpoint | None = None, qat_settings: dict | None = None):
    """(quantized model on the CPU in eval mode, QAT info or None) for ``mode`` from a Phase 2 or video checkpoint
    (an opened :class:`~sam3m4.checkpoint.Checkpoint`, or a path read once here).

    A tracker's memory and query carry are quantized like the student's Linear layers. For the QAT modes the
    image student is fine-tuned (from the tracker's own student weights) on Phase 2's loss; the memory, which
    that loss does not reach, is quantized post-training. ``phase2``: :func:`phase2_source` of ``ckpt`` when the
    caller already opened it (a compare runs two QAT modes); None: opened here when a QAT mode needs it.
    ``qat_settings``: the QAT recipe's settings (None: its defaults), ``qat_steps`` / ``qat_lr`` winning where given.
    """
    spec = get_mode(mode)
    ck = Checkpoint.open(ckpt)
    model, kind = load_source(ck)
    if not spec.qat:
        return apply_mode(model, spec), None
    student, info = qat_finetune(phase2 or phase2_source(ck), mode, progress=progress,
                                 student_state=image_model(model).state_dict(),
                                 **settings(qat_settings, steps=qat_steps, lr=qat_lr))
    if kind == "student":
        return student, info
    model.student = student
    apply_mode(nn.ModuleDict({"memory": model.memory, "carry": model.carry}), spec)  # in place, shared modules
    info["memory"] = "post-training (QAT covers the image student)"
    return model.eval(), info


def load_val(ckpt: Checkpoint | str | Path | None, data: Path | None):
    """(val image pairs, val video pairs or None, data root): ``data`` or the checkpoint's own data root (``ckpt``
    is opened only then; an opened :class:`~sam3m4.checkpoint.Checkpoint` is not reread)."""
    root = Path(data) if data else Path(Checkpoint.open(ckpt).data_root or SYNTH_DATA)
    val_json = root / "saco_image" / "val.json"
    if not val_json.is_file():
        raise FileNotFoundError(f"{val_json}: no such file (pass --data, or generate it with `sam3m4 data synth`)")
    videos = root / "saco_video" / "val.json"
    return SacoImageDataset(val_json), SacoVideoDataset(videos) if videos.is_file() else None, root


def provenance(row, data_root: Path, ckpt) -> str:
    qat = f"; QAT {row.qat['steps']} steps lr {row.qat['lr']:g} on cached teacher outputs" if row.qat else ""
    return (f"host CPU ({host_summary()}), torch {torch.__version__} eager + torchao reference ops (fp32 arithmetic "
            f"on the quantized weights), {MODES[row.mode].note}{qat}; {row.num_pairs} val pairs of {data_root}; "
            f"from {ckpt}")


def _store(run):
    return run if isinstance(run, ResultsStore) else ResultsStore(run)


def record(run: str | ResultsStore, rows, out: Path, data_root: Path, ckpt, target=None) -> None:
    """Every row's metrics into the results store (``run``: a store or a run name, i.e. ``reports/<run>/``;
    ``miou_drop`` as a gate when ``target`` is given)."""
    store = _store(run)
    for r in rows:
        prov = provenance(r, data_root, ckpt)
        art = out / r.mode / "model.safetensors"
        size_how = ("deployable weights: quantized values packed at their bit width + fp16 group scales, other "
                    f"weights fp16 ({r.sizes['quantized_params']} quantized / {r.sizes['fp16_params']} fp16 values)")
        store.record(stage=schema.STAGE4, subject=r.mode, metric=schema.SIZE_MB, value=r.size_mb, unit="MB",
                     provenance=size_how, artifact=art)
        if r.compression is not None:
            store.record(stage=schema.STAGE4, subject=r.mode, metric=schema.COMPRESSION, value=r.compression, unit="x",
                         provenance="fp16 size / this size; " + size_how)
        for metric in (schema.MIOU, schema.PRESENCE_F1):
            store.record(stage=schema.STAGE4, subject=r.mode, metric=metric, value=getattr(r, metric), unit="fraction",
                         provenance=prov, artifact=art)
        store.record(stage=schema.STAGE4, subject=r.mode, metric=schema.AVG_MS, value=r.avg_ms, unit="ms",
                     provenance=prov.split(";")[0] + f"; one {r.image_size} px image, cached prompt, 5 warm-up then "
                     "median of 20+ runs (not phone latency: Stage 5 measures that)")
        if r.jf is not None:
            store.record(stage=schema.STAGE4, subject=r.mode, metric=schema.JF, value=r.jf, unit="fraction", artifact=art,
                         provenance=prov.replace("val pairs", "val image pairs") + "; DAVIS J&F-Mean of the quantized "
                         "tracker on the val videos")
        if r.track_fps is not None:
            store.record(stage=schema.STAGE4, subject=r.mode, metric=schema.TRACK_FPS, value=r.track_fps, unit="fps",
                         provenance=prov.split(";")[0] + f"; track step at {r.image_size} px, 10 warm-up then "
                         "1000 / median of 50 steps (host, not phone)")
        op = r.presence_point
        if op is not None:
            how = (f"{op.how} presence threshold ({op.split}; {op.calibration_pairs} calibration / "
                   f"{op.held_out_pairs} held-out pairs); {prov}")
            for metric, value in ((schema.PRESENCE_THRESHOLD, op.threshold), (schema.PRESENCE_F1_HELD_OUT, op.f1_held_out),
                                  (schema.PRESENCE_F1_HELD_OUT_05, op.f1_held_out_at_default)):
                store.record(stage=schema.STAGE4, subject=r.mode, metric=metric, value=float(value),
                             unit=schema.FRACTION, provenance=how, artifact=art)
        if target is not None and r.miou_drop is not None and r.mode != "fp16":
            store.record(stage=schema.STAGE4, subject=r.mode, metric=schema.MIOU_DROP, value=r.miou_drop, unit=target.unit,
                         target=target.value, comparison=target.comparison, provenance=prov)


def record_decision(run: str | ResultsStore, decision: dict, target, rows) -> None:
    """The decision's three records (criterion met, chosen mode, whether QAT ran) into the results store."""
    store = _store(run)
    drops = ", ".join(f"{r.mode} {r.miou_drop:+.2f}" for r in rows if r.mode != "fp16")
    how = f"quant_miou_drop gate {target.describe()} ({target.basis}) vs fp16 on {rows[0].num_pairs} val pairs"
    met = "충족" if decision["criterion_met"] else "미충족"
    store.record(stage=schema.STAGE4, subject=schema.DECISION, metric=schema.CRITERION_MET,
                 value=f"{met} (mIoU 하락 pt: {drops})", provenance=how)
    chosen = decision["chosen_mode"]
    why = "smallest passing mode, then smallest mIoU drop (0.1 pt), then PTQ first; host timings do not decide" if decision["criterion_met"] else "no quantized mode passed: fp16 kept"
    store.record(stage=schema.STAGE4, subject=schema.DECISION, metric=schema.CHOSEN_MODE, value=chosen, provenance=f"{why}; {how}")
    qat = ("수행" if decision["qat_ran"] else "미수행") + f": {decision['qat_why']}"
    store.record(stage=schema.STAGE4, subject=schema.DECISION, metric=schema.QAT, value=qat, provenance=how)


def record_backend_decisions(run: str | ResultsStore, path: Path, target) -> None:
    """One ``chosen_mode`` record per backend (subject ``decision/<backend>``) from ``decision.json`` at ``path``
    (its sha256 recorded with it); the note names the ``.pte`` Stage 5 writes for it."""
    store, decision = _store(run), read_decision(path)
    for backend, d in decision.backends.items():
        why = (f"smallest passing of {backend}'s modes ({', '.join(d.candidates)}), then smallest mIoU drop"
               if d.criterion_met else f"none of {backend}'s quantized modes ({', '.join(d.candidates[1:]) or 'none scored'}) "
               f"passed: fp16 shipped")
        store.record(stage=schema.STAGE4, subject=schema.decision_subject(backend), metric=schema.CHOSEN_MODE,
                     value=d.mode, artifact=path, note=d.pte_name,
                     provenance=f"{why}; quant_miou_drop {target.describe()} vs fp16 on {decision.num_pairs} val pairs; "
                                f"Stage 5 exports {d.quantized}/ as {d.pte_name}")
