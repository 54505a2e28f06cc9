"""Run an exported XNNPACK ``.pte`` with the ExecuTorch runtime on this host: numerics vs eager, and latency.

    checks = check_pte(result.path, model, tracker=tracker)       # {method: MethodCheck}
    checks["forward"].max_abs_err["mask_logits"], checks["forward"].mask_iou
    lat = benchmark_pte(result.path, "forward", model)            # {"p50_ms", "p90_ms", "trimmed_mean_ms", ...}
    lat = benchmark_pte(result.path, "track", model, tracker=tracker)   # + "fps" = 1000 / p50

Only ``.pte`` files whose delegates are registered in the pip runtime execute here (XNNPACK and the portable /
quantized CPU kernels); Core ML needs macOS / iOS and QNN a Snapdragon phone. Host latency is *not* a phone's:
the provenance string says what ran (host CPU cores, ExecuTorch version, threadpool size).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from sam3m4.export.export import method_inputs, method_module
from sam3m4.metrics.latency import latency_stats
from sam3m4.models.export_wrappers import OUTPUT_NAMES
from sam3m4.progress import progress_bar

OUTPUTS = {"forward": OUTPUT_NAMES, "encode_text": ("prompt_tokens", "prompt_mask"),
           "track": ("mask_logits", "scores", "state")}
KEEP_SCORE = 0.5  # SAM 3's keep threshold on sigmoid(query) * sigmoid(presence)


@dataclass
class MethodCheck:
    """One method of a ``.pte`` against the eager module on the same seeded inputs (batch 1)."""

    method: str
    """``encode_text``, ``forward`` or ``track``."""
    max_abs_err: dict[str, float] = field(default_factory=dict)
    """Output name -> max |pte - eager| over all elements (float32)."""
    ref_max_abs: dict[str, float] = field(default_factory=dict)
    """Output name -> max |eager| (the scale ``max_abs_err`` is relative to)."""
    mask_iou: float | None = None
    """Mean IoU in [0, 1] of (mask_logits > 0) from the .pte vs eager (both empty = 1); None without masks."""
    iou_queries: str = ""
    """Which queries the IoU averages: ``kept by eager (k of Q, score >= 0.5)`` or ``all Q (none kept)``."""

    def to_dict(self) -> dict:
        return {"method": self.method, "max_abs_err": self.max_abs_err, "ref_max_abs": self.ref_max_abs,
                "mask_iou": self.mask_iou,
                "iou_queries": self.iou_queries}



def _max_abs_error(pte: torch.Tensor, eager: torch.Tensor) -> float:
    """max |pte - eager|; equal values (the same infinity included) differ by 0, a NaN on either side makes it NaN
    (a program that returns NaN where eager does not is wrong, and the record says so)."""
    diff = (pte - eager).abs()
    return float(torch.where(pte == eager, torch.zeros_like(diff), diff).max()) if diff.numel() else 0.0

def load_program(path: str | Path):
    """``executorch.runtime`` Program of a ``.pte`` (raises RuntimeError naming the file when it cannot load)."""
    from executorch.runtime import Runtime

    try:
        return Runtime.get().load_program(Path(path))
    except Exception as err:  # noqa: BLE001
        raise RuntimeError(f"{path}: ExecuTorch runtime could not load the program ({type(err).__name__}: "
                           f"{err})") from err


def mask_agreement(pte_masks: torch.Tensor, eager_masks: torch.Tensor, eager_scores: torch.Tensor):
    """(1,Q,m,m) logits x 2, eager scores (1,Q) -> (mean IoU of the > 0 masks, which queries it averages)."""
    a, b = pte_masks[0] > 0, eager_masks[0] > 0  # (Q, m, m) bool
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))  # (Q,)
    kept = eager_scores[0] >= KEEP_SCORE
    if kept.any():
        return float(iou[kept].mean()), f"kept by eager ({int(kept.sum())} of {len(iou)}, score >= {KEEP_SCORE})"
    return float(iou.mean()), f"all {len(iou)} (none kept by eager)"


@torch.no_grad()
def check_pte(path: str | Path, model, *, tracker=None, methods=None, seed: int = 0,
              references: dict | None = None) -> dict[str, MethodCheck]:
    """Run each method of the ``.pte`` (default: all it has) on :func:`method_inputs` (seeded) and compare to the
    eager wrapper, or to ``references[method]`` (a module taking the same inputs: for XNNPACK's static int8 image
    path, the PT2E-converted graph Stage 4 scores, whose activation ranges clip as the program's do).
    ``track`` needs ``tracker``. Returns {method: :class:`MethodCheck`}."""
    program = load_program(path)
    out = {}
    for name in methods or sorted(program.method_names):
        inputs = method_inputs(model, name, tracker, seed=seed)
        pte = [t.float() for t in program.load_method(name).execute(list(inputs))]
        reference = (references or {}).get(name) or method_module(model, name, tracker)
        eager = [t.float() for t in reference(*inputs)]
        names = OUTPUTS.get(name, tuple(f"out{i}" for i in range(len(eager))))
        check = MethodCheck(name, {n: _max_abs_error(p, e) for n, p, e in zip(names, pte, eager)},
                            {n: float(e.abs().max()) for n, e in zip(names, eager)})
        if name == "forward":
            scores = eager[1].sigmoid() * eager[3].sigmoid()  # (1, Q): query x presence
            check.mask_iou, check.iou_queries = mask_agreement(pte[0], eager[0], scores)
        elif name == "track":
            check.mask_iou, check.iou_queries = mask_agreement(pte[0], eager[0], eager[1])
        out[name] = check
    return out


def host_provenance(threads: int | None = None) -> str:
    """``host 2-core x86_64 Linux, ExecuTorch 1.5.1 runtime (pip wheel), threadpool 1``: what a host latency means."""
    return (f"host {os.cpu_count()}-core {platform.machine()} {platform.system()}, ExecuTorch "
            f"{metadata.version('executorch')} runtime (pip wheel), threadpool {threads if threads is not None else 'default'}")


@torch.no_grad()
def benchmark_pte(path: str | Path, method: str, model, *, tracker=None, warmup: int = 10, runs: int = 50,
                  threads: int | None = None, seed: int = 0) -> dict:
    """Host latency of one method: ``warmup`` untimed runs, then ``runs`` timed ones (>= 1), batch 1.

    ``track`` feeds each step's new state into the next (streaming), and adds ``fps`` = 1000 / p50.
    ``threads``: resize ExecuTorch's threadpool first (it is process-wide; None leaves it as it is).
    Returns :func:`latency_stats` + ``method``, ``warmup``, ``threads`` (the threadpool size used), ``provenance``.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    from executorch.extension.pybindings import portable_lib

    if threads is not None:
        portable_lib._unsafe_reset_threadpool(threads)
    used = portable_lib._threadpool_get_thread_count()
    compiled = load_program(path).load_method(method)
    inputs = list(method_inputs(model, method, tracker, seed=seed))
    times = []
    for i in progress_bar(range(warmup + runs), desc=f"time {Path(path).name} {method}", unit="run"):
        t0 = time.perf_counter()
        outputs = compiled.execute(inputs)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
        if method == "track":
            inputs[3] = outputs[2]  # the new state (1, L + Q, D)
    stats = {"method": method, **latency_stats(times), "warmup": warmup, "threads": used,
             "provenance": host_provenance(used)}
    if method == "track":
        stats["fps"] = 1000.0 / stats["p50_ms"]
    return stats
