"""Score quantization modes on the same val pairs, pick one, and write the Stage 4 table.

    rows = [measure(model, "int4", val, num_val=200)]      # one mode: size, mIoU, Presence F1, host ms
    decision = decide(rows, target)                        # per the targets file's quant_miou_drop
    print(format_table(rows))

Columns (the report template's Stage 4 table):

* Size (MB): :func:`sam3m4.quantize.modes.deployable_bytes` / 10^6: quantized weights at their bit width
  (4-bit: two values per byte) plus one fp16 scale per group of 32, every other weight fp16. The .pte of
  Stage 5 adds the program and delegate headers; its size is the cross-check.
* Compression: fp16 size / this size.
* mIoU, Presence F1: :func:`sam3m4.eval.image.evaluate_pairs` on the first ``num_val`` val pairs (SAM 3's
  keep rule, score >= 0.5), every mode on the same pairs. XNNPACK modes (``Mode.convs == "xnnpack_int8"``) are
  scored on the PT2E-converted image path XNNPACK lowers (:class:`sam3m4.quantize.convs.PT2EStudent`, static
  activations calibrated on the first of those pairs, :mod:`sam3m4.quantize.xnnpack_int8`); Core ML
  modes on the weights rounded by coremltools' own code (:func:`sam3m4.quantize.convs.coreml_compress_weights`).
* Avg ms: one image through ``encode_image`` + ``decode`` with a cached prompt, host CPU, torch eager with
  torchao's reference ops; 5 warm-up runs, then the median of ``runs`` (>= 20).
* mIoU drop: (fp16 mIoU - mode mIoU) in percent points (or percent of fp16 with ``basis: relative``).

Decision: a mode passes when its drop meets ``quant_miou_drop``; the chosen mode is the smallest passing
quantized mode, then the one with the smallest mIoU drop (to 0.1 point), then the first listed (PTQ before QAT);
fp16 is chosen only when nothing else passes. Host timings are reported but never decide: they change with the
host's load (one run picked qat_int4 over int4 on 0.9 ms), and host eager latency is not phone latency.
"""

from __future__ import annotations

import copy

import time
from dataclasses import dataclass, field

import torch

from sam3m4.metrics.latency import latency_stats
from sam3m4.metrics.operating_point import OperatingPoint, fit_operating_point
from sam3m4.quantize.modes import MODES, deployable_bytes
from sam3m4.eval.image import evaluate_pairs
from sam3m4.eval.video import evaluate_videos
from sam3m4.models.export_wrappers import example_inputs
from sam3m4.models.video import benchmark_track
from sam3m4.predict import Predictor, VideoPredictor
from sam3m4.quantize.convs import PT2EStudent
from sam3m4.quantize.xnnpack_int8 import calibration_inputs


@dataclass
class ModeResult:
    mode: str
    size_mb: float
    miou: float
    presence_f1: float
    avg_ms: float
    num_pairs: int
    qat: dict | None = None
    """QAT fine-tune info (steps, losses, seconds) for the QAT modes."""
    compression: float | None = None
    miou_drop: float | None = None
    passed: bool | None = None
    sizes: dict = field(default_factory=dict)
    image_size: int = 0
    jf: float | None = None
    """DAVIS J&F of the quantized tracker on the val videos (video checkpoints only)."""
    track_fps: float | None = None
    """Host streaming rate of the quantized ``track`` step, 1000 / p50 ms (video checkpoints only)."""
    presence_point: OperatingPoint | None = None
    """The mode's presence operating point: threshold fitted on the calibration part of the val pairs, F1 at it and
    at 0.5 on the held-out part (:func:`sam3m4.metrics.operating_point.fit_operating_point`)."""


def host_latency_ms(model, runs: int = 20, warmup: int = 5) -> float:
    """Median ms of ``decode(encode_image(x), prompt)`` for one image with a cached prompt (host eager)."""

    pixels, = example_inputs(model, "encode_image")
    ids, mask = example_inputs(model, "encode_text")
    times = []
    with torch.no_grad():
        prompt = model.encode_text(ids, mask)
        for i in range(warmup + max(runs, 20)):
            t0 = time.perf_counter()
            model.decode(model.encode_image(pixels), prompt)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return latency_stats(times)["p50_ms"]


def scored_model(student, mode: str, val=None, num_val: int | None = None):
    """What Stage 4 scores for ``mode``: the student itself, or for XNNPACK modes the PT2E-converted image path
    XNNPACK lowers (convolutions 8-bit, :class:`sam3m4.quantize.convs.PT2EStudent`), its static activation ranges
    calibrated on the first val pairs of ``val`` (of the ``num_val`` scored;
    :func:`sam3m4.quantize.xnnpack_int8.calibration_inputs`). XNNPACK modes need ``val``."""
    if MODES[mode].convs == "xnnpack_int8":
        if val is None:
            raise ValueError(f"scored_model: mode {mode} calibrates its static int8 activations on val pairs: pass val")
        # a copy: PT2E keeps references to the weights it converted, and ``.to()`` (VideoPredictor on the
        # tracker around ``student``) cannot swap torchao weights that something else still references
        copied = copy.deepcopy(student)
        return PT2EStudent(copied, calibration=calibration_inputs(copied, val, num_val))
    return student


def pair_groups(val, n: int) -> list[str]:
    """The split key of each of the first ``n`` pairs: the image's file name (a
    :class:`~sam3m4.data.SacoImageDataset`), else the pair's index."""
    pairs = getattr(val, "pairs", None)
    return [str(pairs[i]["file_name"]) if pairs is not None else str(i) for i in range(n)]


def measure(model, mode: str, val, num_val: int, runs: int = 20, progress: bool = True,
            videos=None, presence_fixed: float | None = None) -> ModeResult:
    """Size, accuracy on the first ``num_val`` pairs of ``val``, presence operating point and host latency of a
    quantized ``model`` (a student, or a tracker: then its image student is scored on ``val`` and the tracker on
    ``videos``). mIoU and Presence F1 are at SAM 3's 0.5 (what ``quant_miou_drop`` compares); the operating point
    is fitted on every pair's presence score (``presence_fixed``: a threshold the targets file pins)."""

    model.eval()
    student = getattr(model, "student", model)
    scored = scored_model(student, mode, val, num_val)
    res = evaluate_pairs(val, Predictor(scored).predict_pair, num=num_val, progress=progress, desc=f"eval {mode}")
    sizes = deployable_bytes(model)
    row = ModeResult(mode=mode, size_mb=sizes["total"] / 1e6, miou=res.miou, presence_f1=res.presence.f1,
                     avg_ms=host_latency_ms(scored, runs), num_pairs=res.num_pairs, sizes=sizes,
                     image_size=student.image_size,
                     presence_point=fit_operating_point(res.presence_scores, res.present,
                                                        pair_groups(val, res.num_pairs), fixed=presence_fixed))
    if student is not model:

        if videos is not None:
            row.jf = evaluate_videos(videos, VideoPredictor(model), progress=progress).jf_mean
        row.track_fps = benchmark_track(model, steps=50)["fps"]
    return row


def miou_drop(baseline: float, value: float, basis: str = "absolute") -> float:
    """mIoU lost vs the baseline: percent points (absolute) or percent of the baseline (relative)."""
    if basis == "relative":
        return (baseline - value) / max(baseline, 1e-9) * 100
    return (baseline - value) * 100


def judge(rows: list[ModeResult], target) -> None:
    """Fill compression, mIoU drop and the verdict of every row against the fp16 row (in place)."""
    base = next((r for r in rows if r.mode == "fp16"), None)
    if base is None:
        raise ValueError("the comparison needs the fp16 baseline row")
    for r in rows:
        r.compression = base.size_mb / r.size_mb
        r.miou_drop = miou_drop(base.miou, r.miou, target.basis)
        r.passed = None if r is base else target.check(r.miou_drop)  # the baseline is not gated


def decide(rows: list[ModeResult], target) -> dict:
    """The chosen mode: the smallest passing quantized mode; among equal sizes the smallest mIoU drop (rounded
    to 0.1 point), then the first in ``rows`` order (PTQ before QAT). fp16 when none passes. Deterministic for
    the same models and data: host timings do not enter it."""
    judge(rows, target)
    passing = [r for r in rows if r.mode != "fp16" and r.passed]
    chosen = "fp16"
    if passing:
        smallest = min(round(r.size_mb, 3) for r in passing)
        same_size = [r for r in passing if round(r.size_mb, 3) == smallest]
        chosen = min(same_size, key=lambda r: round(r.miou_drop, 1)).mode  # min keeps the first of equals
    return {"criterion_met": bool(passing), "chosen_mode": chosen,
            "passing": [r.mode for r in passing], "failing": [r.mode for r in rows if r.mode != "fp16" and not r.passed]}


def format_table(rows: list[ModeResult]) -> str:
    """A plain-text table of the rows (the report renders the same numbers from the store)."""
    head = f"{'Mode':<14}{'Size (MB)':>10}{'Compr.':>8}{'mIoU':>8}{'F1':>8}{'Avg ms':>9}{'drop pt':>9}  gate  notes"
    video = any(r.jf is not None or r.track_fps is not None for r in rows)
    if video:
        head = head.replace("  gate", f"{'J&F':>7}{'trk fps':>9}  gate")
    lines = [head, "-" * len(head)]
    for r in rows:
        extra = "" if not video else (f"{'-' if r.jf is None else f'{r.jf:.3f}':>7}"
                                      f"{'-' if r.track_fps is None else f'{r.track_fps:.1f}':>9}")
        verdict = "-" if r.passed is None else ("pass" if r.passed else "FAIL")
        comp = "-" if r.compression is None else f"{r.compression:.2f}x"
        drop = "-" if r.miou_drop is None else f"{r.miou_drop:+.2f}"
        lines.append(f"{r.mode:<14}{r.size_mb:>10.3f}{comp:>8}{r.miou:>8.3f}{r.presence_f1:>8.3f}{r.avg_ms:>9.1f}"
                     f"{drop:>9}{extra}  {verdict:<5} {MODES[r.mode].note if r.mode in MODES else ''}")
    return "\n".join(lines)
