"""The five quantization modes, how each touches the student, and the deployable size they give.

    from sam3m4.quantize.modes import MODES, apply_mode, deployable_bytes
    apply_mode(model, "int8_int4")           # in place: torchao quantize_ on Linear + Embedding, rest fp16
    deployable_bytes(model)                  # bytes of the weights a phone loads

What each mode does (torchao 0.18; ``quantize_`` and QAT only reach ``nn.Linear`` and ``nn.Embedding``):

* ``fp16``: every floating weight stored in fp16 (the baseline, Compression 1.0x), except the token table:
  int8 values per group of 32 (half its bytes; on the demo's val pairs the answers are the same as with an fp16
  table, see docs/quantization.md).
* ``int4`` (Core ML path): Linear weights 4-bit, symmetric, per group of 32 input channels
  (``IntxWeightOnlyConfig``); activations stay fp16.
* ``int8_int4`` (XNNPACK path): Linear layers take 8-bit dynamic per-token activations and 8-bit per-channel
  weights (``Int8DynamicActivationIntxWeightConfig``; XNNPACK's int8-weight GEMM beat its 4-bit one on a CPU with
  int8 dot products: :data:`sam3m4.quantize.xnnpack_int8.XNNPACK_INT8`); the token table is 4-bit.
* ``qat_int4`` / ``qat_int8_int4``: the same targets after a short quantization-aware fine-tune
  (:mod:`sam3m4.quantize.qat_recipe`).

In every non-fp16 mode the CLIP token table (``nn.Embedding``, 49408 x d: most of the tiny student) is 4-bit
per group of 32 as well (weight-only: a table lookup has no activations to quantize). Linear layers whose input
width is not a multiple of 32 stay fp16.

Convolutions (the timm backbone, the FPN and mask-head 1x1s) are quantized by each backend's own quantizer
(:mod:`sam3m4.quantize.convs`; ``Mode.convs``):

* ``int4`` / ``qat_int4`` (Core ML): coremltools linear int4 per block of 16 input channels, applied at lowering
  (compile spec ``op_linear_quantizer_config``); :func:`apply_mode` rounds the weights with the same coremltools
  code, so Stage 4 scores what the phone gets.
* ``int8_int4`` / ``qat_int8_int4`` (XNNPACK): PT2E ``XNNPACKQuantizer``, 8-bit per-channel weights with 8-bit
  static activations calibrated on Stage 4's val images, applied to the exported graph, every convolution
  (depthwise included; :mod:`sam3m4.quantize.xnnpack_int8`); :func:`apply_mode` leaves them float (marked 8-bit
  for the size, found by exporting ``forward``), and Stage 4 scores the converted graph
  (:class:`sam3m4.quantize.convs.PT2EStudent`).
* QNN: ``QnnQuantizer`` quantizes the whole graph from the float student (:mod:`sam3m4.export.flows`).

On this host the quantized model runs eagerly in fp32 arithmetic: torchao's reference ops dequantize the
4-bit weights (and quantize activations for ``int8_int4``), and fp16-stored weights are rounded to fp16 then
computed in fp32. So accuracy reflects the deployed weights' precision, and host latency is not the phone's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from sam3m4.errors import ConfigError
from sam3m4.quantize.convs import WEIGHT_BITS_ATTR, coreml_compress_weights, mark_xnnpack_convs
from sam3m4.quantize.xnnpack_int8 import XNNPACK_INT8, linear_config as xnnpack_linear_config

GROUP_SIZE = 32


@dataclass(frozen=True)
class Mode:
    name: str
    linear: str | None
    """``int4`` (weight-only, 4-bit), ``int8_int4`` (XNNPACK: 8-bit dynamic activations x the weights of
    :data:`~sam3m4.quantize.xnnpack_int8.XNNPACK_INT8`) or None (fp16)."""
    qat: bool
    backend: str
    """The ExecuTorch backend the mode is meant for."""
    table_bits: int = 4
    """Bits of the CLIP token table's values (weight-only, per group of 32): 8 in ``fp16`` (int8 rows halve the
    table; measured answers on the demo are the same as fp16's), 4 in the quantized modes."""
    convs: str | None = None
    """``coreml_int4`` (coremltools int4 weights, block 16), ``xnnpack_int8`` (PT2E 8-bit weights + static
    activations) or None (fp16)."""

    @property
    def note(self) -> str:
        """The table's notes column: what is quantized and how, convolutions included."""
        if self.linear is None:
            return "all weights fp16 except the token table (int8 rows, group 32); convs fp16"
        lin = "Linear 4-bit weights (group 32)" if self.linear == "int4" else _XNN_LINEAR
        qat = "; QAT fine-tune on cached teacher outputs" if self.qat else ""
        return f"{lin}; token table 4-bit; {CONV_NOTES[self.convs]}{qat}; {self.backend}"


_XNN_LINEAR = ("Linear 8-bit dynamic activations + 8-bit weights per channel" if XNNPACK_INT8.linear_weight_bits == 8
               else f"Linear 8-bit dynamic activations + {XNNPACK_INT8.linear_weight_bits}-bit weights (group "
                    f"{XNNPACK_INT8.linear_group})")
_XNN_CONVS = ("int8 per-channel weights + int8 static activations calibrated on val images (PT2E "
              "XNNPACKQuantizer), depthwise convs included")
CONV_NOTES = {
    None: "convs fp16",
    "coreml_int4": "convs int4 per block of 16 (coremltools, at Core ML lowering)",
    "xnnpack_int8": "convs " + _XNN_CONVS,
}
MODES = {m.name: m for m in (
    Mode("fp16", None, False, "Core ML / XNNPACK baseline", table_bits=8),
    Mode("int4", "int4", False, "Core ML", convs="coreml_int4"),
    Mode("int8_int4", "int8_int4", False, "XNNPACK", convs="xnnpack_int8"),
    Mode("qat_int4", "int4", True, "Core ML", convs="coreml_int4"),
    Mode("qat_int8_int4", "int8_int4", True, "XNNPACK", convs="xnnpack_int8"),
)}
_QAT_CONVS = "; QAT reaches Linear + token table, convs post-training"
CONVS_PER_BACKEND = {
    "fp16": {"Core ML": "fp16", "XNNPACK": "fp32 (fp16-rounded weights)", "QNN": "fp16"},
    "int4": {"Core ML": "int4 weights per block of 16 input channels (coremltools, at lowering)",
             "XNNPACK": "mode not supported (no weight-only int4)",
             "QNN": "4-bit weights, 16-bit activations (QnnQuantizer 16a4w, untested here)"},
    "int8_int4": {"Core ML": "mode not supported (no dynamic activations)",
                  "XNNPACK": _XNN_CONVS + "; Linear weights 8-bit per channel, not the 4-bit the mode's name says "
                                          "(XNNPACK's int8-weight GEMM is the faster one; sam3m4.quantize.xnnpack_int8)",
                  "QNN": "4-bit weights, 8-bit activations (QnnQuantizer 8a4w, untested here)"},
}
CONVS_PER_BACKEND["qat_int4"] = {k: v + (_QAT_CONVS if "not" not in v else "")
                                 for k, v in CONVS_PER_BACKEND["int4"].items()}
CONVS_PER_BACKEND["qat_int8_int4"] = {k: v + (_QAT_CONVS if "not" not in v else "")
                                      for k, v in CONVS_PER_BACKEND["int8_int4"].items()}
XNNPACK_CONVS_FLOAT = ("XNNPACK int8 modes quantize every convolution with static activations, depthwise and "
                       "reshape-fed ones included (with dynamic activations XNNPACK has no depthwise kernel, and "
                       "ExecuTorch 1.5.1's channels-last pass made reshape-fed convs unrunnable: see "
                       "sam3m4.quantize.convs.nhwc_input); none stays float")
"""Which convolutions the XNNPACK modes keep float, and why (none since static activations, 2026-12-06)."""
KEPT_HIGHER = ("attention matmuls and softmax, LayerNorm, GELU, the residual adds and the mask dot products stay "
               "fp32 on XNNPACK / fp16 on Core ML in every mode (no quantizer annotates them here)")
"""The Stage 4 table's notes: what each mode does to convolutions on each backend, and what stays float."""
PTQ_MODES = [m for m in MODES if not MODES[m].qat]
QAT_MODES = [m for m in MODES if MODES[m].qat]


def get_mode(name: str) -> Mode:

    if name not in MODES:
        raise ConfigError(f"--mode {name!r}: unknown; choices: {', '.join(MODES)}")
    return MODES[name]


def linear_config(mode: Mode):
    """The torchao base config for ``mode``'s Linear layers."""
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup

    if mode.linear == "int4":
        return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(GROUP_SIZE))
    return xnnpack_linear_config(XNNPACK_INT8)  # int8_int4: XNNPACK's per-layer plan


def embedding_config(bits: int = 4):
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup

    return IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{bits}"), granularity=PerGroup(GROUP_SIZE))


def is_quantizable_linear(module: nn.Module, fqn: str = "") -> bool:
    return type(module) is nn.Linear and module.in_features % GROUP_SIZE == 0


def is_quantizable_embedding(module: nn.Module, fqn: str = "") -> bool:
    return type(module) is nn.Embedding and module.embedding_dim % GROUP_SIZE == 0


def round_to_fp16(model: nn.Module) -> nn.Module:
    """Round every plain floating parameter and buffer to fp16 values in place (kept as fp32 for host compute)."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if type(t) in (torch.Tensor, nn.Parameter) and t.is_floating_point():
                t.copy_(t.half().float())
    return model


def apply_mode(model: nn.Module, mode: str | Mode) -> nn.Module:
    """Quantize ``model`` in place for a post-training ``mode`` (for QAT modes: the convert step's target)."""
    from torchao.quantization import quantize_

    mode = get_mode(mode) if isinstance(mode, str) else mode
    model.eval()
    quantize_(model, embedding_config(mode.table_bits), filter_fn=is_quantizable_embedding)
    if mode.linear is not None:
        quantize_(model, linear_config(mode), filter_fn=is_quantizable_linear)
    return apply_convs(round_to_fp16(model), mode)


def apply_convs(model: nn.Module, mode: Mode) -> nn.Module:
    """The mode's convolution treatment (:mod:`sam3m4.quantize.convs`) on a model already rounded to fp16."""

    if mode.convs == "coreml_int4":
        coreml_compress_weights(model)
    elif mode.convs == "xnnpack_int8":
        mark_xnnpack_convs(model)
    return model


def qat_prepare(model: nn.Module, mode: str | Mode) -> nn.Module:
    """Swap Linear / Embedding for torchao's fake-quantized versions of ``mode``'s target (in place)."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    mode = get_mode(mode) if isinstance(mode, str) else mode
    quantize_(model, QATConfig(embedding_config(mode.table_bits), step="prepare"), filter_fn=is_quantizable_embedding)
    quantize_(model, QATConfig(linear_config(mode), step="prepare"), filter_fn=is_quantizable_linear)
    return model


def qat_convert(model: nn.Module, mode: str | Mode) -> nn.Module:
    """Fake-quantized modules back to plain ones, then the real quantization (in place)."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig
    from torchao.quantization.qat.embedding import FakeQuantizedEmbedding
    from torchao.quantization.qat.linear import FakeQuantizedLinear

    mode = get_mode(mode) if isinstance(mode, str) else mode
    model.eval()
    quantize_(model, QATConfig(embedding_config(mode.table_bits), step="convert"),
              filter_fn=lambda m, fqn: isinstance(m, FakeQuantizedEmbedding))
    quantize_(model, QATConfig(linear_config(mode), step="convert"),
              filter_fn=lambda m, fqn: isinstance(m, FakeQuantizedLinear))
    return apply_convs(round_to_fp16(model), mode)


# --- size ----------------------------------------------------------------------------------------------------
def tensor_bytes(t: torch.Tensor) -> float:
    """Deployed bytes of one weight: a torchao int-x tensor packs its values (4-bit: two per byte) plus one fp16
    scale per group (symmetric: no zero points); any other floating tensor is fp16; integer buffers as stored."""
    from torchao.quantization import IntxUnpackedToInt8Tensor

    if isinstance(t, IntxUnpackedToInt8Tensor):
        bits = int(str(t.target_dtype).removeprefix("torch.int"))
        zero = 0 if not torch.count_nonzero(t.zero_point) else t.zero_point.numel()  # 1 byte each when asymmetric
        return t.qdata.numel() * bits / 8 + t.scale.numel() * 2 + zero
    if t.is_floating_point():
        return t.numel() * 2
    return t.numel() * t.element_size()


def deployable_bytes(model: nn.Module) -> dict:
    """Bytes of ``model``'s weights as a phone stores them, in total and per kind (shared tensors once).

    Returns ``{"total": B, "quantized": B, "fp16": B, "quantized_params": N, "fp16_params": N}``.
    """
    from torchao.quantization import IntxUnpackedToInt8Tensor


    seen, out = set(), {"total": 0.0, "quantized": 0.0, "fp16": 0.0, "quantized_params": 0, "fp16_params": 0}
    backend_bits = {id(m.weight): getattr(m, WEIGHT_BITS_ATTR) for m in model.modules()
                    if hasattr(m, WEIGHT_BITS_ATTR)}  # convs the backend quantizes: (bits, number of fp16 scales)
    for t in list(model.parameters()) + list(model.buffers()):
        key = id(t)
        if key in seen:
            continue
        seen.add(key)
        b = tensor_bytes(t)
        kind = "quantized" if isinstance(t, IntxUnpackedToInt8Tensor) or key in backend_bits else "fp16"
        if key in backend_bits:
            bits, scales = backend_bits[key]
            b = t.numel() * bits / 8 + scales * 2
        out[kind] += b
        out[f"{kind}_params"] += t.numel()
        out["total"] += b
    return out
