"""How much faster int8 is than fp32 on this host's XNNPACK, one layer at a time.

    rows = kernel_ratios(threads=2)          # [{"kernel", "scheme", "shipped", "fp32_ms", "int8_ms", "ratio"}, ...]
    print(kernel_table(rows, isa=int8_dot_isa()))

Whether an int8 program can beat fp32 depends first on the CPU: with int8 dot-product instructions (x86 VNNI,
ARM dotprod / i8mm, :func:`sam3m4.env.int8_dot_isa`) XNNPACK's int8 GEMMs do 2-4x the multiply-adds of fp32 FMA;
without them (AVX2 only) they widen to 16-bit lanes and are no faster. ``sam3m4 bench`` prints these ratios next
to the image path's int8 / fp32 ratio, so a missed speed target shows whether the program or the host is the limit.

Each layer has a shape of ``repvit_m0_9_504`` and is lowered twice per scheme (fp32 and int8) with the same
quantizers the modes use (:mod:`sam3m4.quantize.convs`, :data:`sam3m4.quantize.xnnpack_int8.XNNPACK_INT8`),
plus the other scheme XNNPACK offers (dynamic conv activations, 4-bit Linear weights). All programs are timed
interleaved in one process (``runs`` rounds, p50), so host load hits fp32 and int8 alike.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from sam3m4.metrics.latency import latency_stats
from sam3m4.quantize.convs import pt2e_convs
from sam3m4.quantize.xnnpack_int8 import XNNPACK_INT8

KERNELS = (
    ("1x1 conv 48->96, 126x126 (backbone stage 1)", lambda: nn.Conv2d(48, 96, 1), (1, 48, 126, 126)),
    ("1x1 conv 192->384, 32x32 (backbone stage 3)", lambda: nn.Conv2d(192, 384, 1), (1, 192, 32, 32)),
    ("3x3 depthwise conv 48, 126x126 (backbone stage 1)", lambda: nn.Conv2d(48, 48, 3, padding=1, groups=48),
     (1, 48, 126, 126)),
    ("Linear 128->512, 1024 tokens (fusion encoder MLP)", lambda: nn.Linear(128, 512), (1, 1024, 128)),
)
"""(label, layer factory, input shape): the layer kinds that hold the image path's multiply-adds."""


def _schemes(layer: nn.Module) -> list[tuple[str, bool, object]]:
    """(scheme, shipped in int8_int4, quantize(module, inputs) -> module) for one layer kind."""
    if isinstance(layer, nn.Linear):
        from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
        from torchao.quantization.granularity import PerAxis, PerGroup

        def torchao(config):
            def apply(module, inputs):
                module = copy.deepcopy(module)
                quantize_(module, config)
                return module
            return apply
        int8 = XNNPACK_INT8.linear_weight_bits == 8  # what int8_int4 ships (sam3m4.quantize.xnnpack_int8)
        return [("int8 dynamic act x int4 weights, group 32", not int8, torchao(
                    Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(32)))),
                ("int8 dynamic act x int8 weights per channel", int8, torchao(
                    Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))))]
    shipped_dynamic = XNNPACK_INT8.conv_dynamic
    dynamic = ("int8 dynamic act x int8 weights per channel (PT2E)", layer.groups == 1 and shipped_dynamic,
               lambda module, inputs: pt2e_convs(module, inputs, dynamic=True))
    static = ("int8 static act x int8 weights per channel (PT2E)", not shipped_dynamic,
              lambda module, inputs: pt2e_convs(module, inputs, dynamic=False))
    return [dynamic, static] if layer.groups == 1 else [static]  # no dynamic depthwise kernel in XNNPACK


class _Program:
    """``module`` lowered to XNNPACK and loaded in the ExecuTorch runtime; ``execute(inputs)`` runs ``forward``.
    Holds the serialized bytes and the program: the runtime reads them in place (freed bytes crash it)."""

    def __init__(self, module: nn.Module, inputs: tuple):
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
        from executorch.runtime import Runtime

        with torch.no_grad():
            edge = to_edge_transform_and_lower(torch.export.export(module, inputs), partitioner=[XnnpackPartitioner()])
        self.buffer = edge.to_executorch().buffer
        self.program = Runtime.get().load_program(self.buffer)
        self.method = self.program.load_method("forward")

    def execute(self, inputs: list):
        return self.method.execute(inputs)


def _time(methods: dict, inputs: list, runs: int, warmup: int = 3) -> dict[str, float]:
    """p50 ms of each method (:func:`~sam3m4.metrics.latency.latency_stats`), timed round-robin (one run of each
    per round)."""
    for method in methods.values():
        for _ in range(warmup):
            method.execute(inputs)
    times = {name: [] for name in methods}
    for _ in range(runs):
        for name, method in methods.items():
            t0 = time.perf_counter()
            method.execute(inputs)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: latency_stats(ts)["p50_ms"] for name, ts in times.items()}


def kernel_ratios(threads: int | None = None, runs: int = 30, kernels=KERNELS, seed: int = 0) -> list[dict]:
    """int8 / fp32 p50 of each layer of ``kernels`` for each int8 scheme, on this host's XNNPACK runtime.

    ``threads``: ExecuTorch's threadpool size (process-wide; None leaves it). Returns one dict per (layer, scheme):
    ``kernel``, ``scheme``, ``shipped`` (what ``int8_int4`` uses), ``fp32_ms``, ``int8_ms``, ``ratio``."""
    from executorch.extension.pybindings import portable_lib

    if threads is not None:
        portable_lib._unsafe_reset_threadpool(threads)
    rows = []
    for label, factory, shape in kernels:
        torch.manual_seed(seed)
        layer = factory().eval().requires_grad_(False)
        inputs = (torch.randn(*shape),)
        methods = {"fp32": _Program(layer, inputs)}
        schemes = _schemes(layer)
        for scheme, _, quantize in schemes:
            methods[scheme] = _Program(quantize(layer, inputs), inputs)
        p50 = _time(methods, list(inputs), runs)
        rows += [{"kernel": label, "scheme": scheme, "shipped": shipped, "fp32_ms": p50["fp32"],
                  "int8_ms": p50[scheme], "ratio": p50[scheme] / p50["fp32"]} for scheme, shipped, _ in schemes]
    return rows


def kernel_table(rows: list[dict], isa: str, threads: int | None = None) -> str:
    """Markdown table of :func:`kernel_ratios` rows, with the CPU's int8 dot-product instructions."""
    lines = ["| layer (repvit_m0_9_504 shape) | int8 scheme | in int8_int4 | fp32 p50 ms | int8 p50 ms | int8 / fp32 |",
             "|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['kernel']} | {r['scheme']} | {'yes' if r['shipped'] else 'no'} | {r['fp32_ms']:.2f} | "
                     f"{r['int8_ms']:.2f} | {r['ratio']:.2f}x |")
    lines.append(f"\nSingle layers lowered to XNNPACK and timed interleaved in one process (p50, ExecuTorch runtime, "
                 f"threadpool {threads if threads is not None else 'default'}). This CPU's int8 dot-product "
                 f"instructions: {isa}.")
    return "\n".join(lines)
