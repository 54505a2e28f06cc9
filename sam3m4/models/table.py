"""Size and compute of every student preset and of the SAM 3 teacher (``sam3m4 models table``).

    from sam3m4.models.table import model_table, format_table
    print(format_table(model_table()))

Columns (batch 1, the model's own input size):

* ``params``: all parameters (students: image path + text encoder; teacher: ``Sam3Model`` from the default
  ``Sam3Config()``, built on the 'meta' device so no memory is used and no weights are needed).
* ``fp16_mb``: params x 2 bytes (10^6 bytes per MB).
* ``int4_mb``: weight-only int4 estimate: every weight with >= 2 dims (Linear, Conv, Embedding) at 0.5 byte plus
  one fp16 scale per group of 32, everything else fp16. The quantize stage measures real ``.pte`` sizes.
* ``gflops``: ``torch.utils.flop_counter.FlopCounterMode`` on one full forward (2 FLOPs per multiply-add of
  matmul/conv/attention; element-wise ops not counted). ``gflops_frame``: the per-frame cost with the prompt
  cached (the full forward minus the text encoder). Teacher: counted on meta tensors; its DETR decoder
  calls ``torch.arange`` on tensor sizes, which meta tensors cannot read, so that one helper is given the
  static grid size during counting. Where counting fails the value is ``None`` ("not measured").
* ``cpu_ms`` (only with ``latency=True``): eager fp32 forward on this machine's CPU, median of a few runs.
"""

from __future__ import annotations

import statistics
import time
from typing import Iterable

from sam3m4.models.build import PRESETS, build_student
from sam3m4.models.export_wrappers import example_inputs

INT4_GROUP = 32


def _sizes(params) -> tuple[int, float, float]:
    """(count, fp16 MB, int4 weight-only MB) of an iterable of parameters."""
    n = 0
    int4_bytes = 0.0
    for p in params:
        k = p.numel()
        n += k
        int4_bytes += k * (0.5 + 2.0 / INT4_GROUP) if p.dim() >= 2 else 2.0 * k
    return n, n * 2 / 1e6, int4_bytes / 1e6


def count_flops(fn) -> tuple[float, dict]:
    """Total GFLOPs of ``fn()`` and GFLOPs per top-level submodule name."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn()
    per_module = {k: sum(v.values()) / 1e9 for k, v in counter.get_flop_counts().items() if k.count(".") == 1}
    return counter.get_total_flops() / 1e9, per_module


def student_row(preset: str, latency: bool = False) -> dict:
    """One table row for a student preset (builds it with random weights on the CPU)."""
    import torch

    model = build_student(preset).eval().requires_grad_(False)  # no autograd state for the flop counter
    n, fp16, int4 = _sizes(model.parameters())
    inputs = example_inputs(model, "full", batch=1)
    gflops, per_module = count_flops(lambda: model(*inputs))
    text = per_module.get("Student.text_encoder", 0.0)
    row = {"model": preset, "kind": "student", "input_px": model.image_size, "params": n, "fp16_mb": fp16,
           "int4_mb": int4, "gflops": gflops, "gflops_frame": gflops - text,
           "text_params": sum(p.numel() for p in model.text_encoder.parameters())}
    if latency:
        times = []
        with torch.no_grad():
            model(*inputs)  # warm-up
            for _ in range(5):
                t0 = time.perf_counter()
                model(*inputs)
                times.append((time.perf_counter() - t0) * 1e3)
        row["cpu_ms"] = statistics.median(times)
    return row


def teacher_row() -> dict:
    """The full SAM 3 (``Sam3Config()`` defaults, 1008 px) counted on the meta device."""
    import torch
    from transformers import Sam3Config, Sam3Model
    from transformers.models.sam3 import modeling_sam3

    config = Sam3Config()
    with torch.device("meta"):
        model = Sam3Model(config).eval()
    n, fp16, int4 = _sizes(model.parameters())
    backbone = config.vision_config.backbone_config
    size, grid = backbone.image_size, backbone.image_size // backbone.patch_size
    row = {"model": "teacher: SAM 3 (Sam3Config())", "kind": "teacher", "input_px": size, "params": n,
           "fp16_mb": fp16, "int4_mb": int4, "gflops": None, "gflops_frame": None,
           "text_params": sum(p.numel() for p in model.text_encoder.parameters())}

    def coords(self, height, width, dtype, device):  # static grid instead of arange(<meta tensor>)
        c = torch.arange(0, grid, device=device, dtype=dtype) / grid
        return c, c

    decoder_cls = modeling_sam3.Sam3DetrDecoder
    original = decoder_cls.__dict__.get("_get_coords")
    pixels = torch.empty(1, 3, size, size, device="meta")
    ids = torch.zeros(1, 32, dtype=torch.long, device="meta")
    try:
        decoder_cls._get_coords = coords
        # attention_mask=None: the text encoder's mask helper calls .item() on the mask (all-valid is the same
        # compute); every one of the 32 positions is processed either way
        gflops, per_module = count_flops(lambda: model(pixel_values=pixels, input_ids=ids, attention_mask=None))
        row["gflops"] = gflops
        row["gflops_frame"] = gflops - per_module.get("Sam3Model.text_encoder", 0.0)
    except Exception as exc:  # noqa: BLE001 - 'not measured' is a valid table entry; say why
        row["note"] = f"GFLOPs not measured: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    finally:
        if original is not None:
            decoder_cls._get_coords = original
    return row


def model_table(presets: Iterable[str] | None = None, teacher: bool = True, latency: bool = False) -> list[dict]:
    """Rows for ``presets`` (default: every preset in :data:`~sam3m4.models.build.PRESETS`) and the teacher."""
    names = list(PRESETS) if presets is None else list(presets)
    for name in names:
        if name not in PRESETS:
            build_student(name)  # raises the 'unknown preset' error listing the choices
    rows = [student_row(name, latency) for name in names]
    if teacher:
        rows.append(teacher_row())
    return rows


def format_table(rows: list[dict]) -> str:
    """Fixed-width text table of :func:`model_table` rows (``None`` shows as 'not measured')."""
    cols = [("model", "model", "{}"), ("input_px", "input px", "{}"), ("params", "params (M)", "{:.2f}"),
            ("text_params", "text (M)", "{:.2f}"), ("fp16_mb", "fp16 MB", "{:.1f}"),
            ("int4_mb", "int4 MB", "{:.1f}"), ("gflops", "GFLOPs", "{:.2f}"),
            ("gflops_frame", "GFLOPs/frame", "{:.2f}")]
    if any("cpu_ms" in r for r in rows):
        cols.append(("cpu_ms", "CPU ms", "{:.0f}"))

    def cell(row, key, fmt):
        value = row.get(key)
        if value is None:
            return "not measured" if key in ("gflops", "gflops_frame", "cpu_ms") else "-"
        if key in ("params", "text_params"):
            value = value / 1e6
        return fmt.format(value)

    table = [[title for _, title, _ in cols]] + [[cell(r, k, f) for k, _, f in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"{r['model']}: {r['note']}" for r in rows if r.get("note")]
    legend = ("params/fp16 MB: all weights (image path + text encoder); int4 MB: weight-only int4 estimate "
              f"(group {INT4_GROUP}, fp16 scales); GFLOPs: one forward at batch 1 (FlopCounterMode); "
              "GFLOPs/frame: without the text encoder (prompt cached)")
    return "\n".join(lines + [""] + notes + [legend])
