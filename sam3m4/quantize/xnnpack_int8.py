"""XNNPACK's integer modes per layer: the one place their quantizer settings live, and their calibration images.

    from sam3m4.quantize.xnnpack_int8 import XNNPACK_INT8, calibration_inputs, conv_quantizer, linear_config
    calib = calibration_inputs(student, val, num_val)  # [(pixels (1,3,S,S), prompt tokens (1,T,D), mask (1,T)), ...]
    quantizer = conv_quantizer(XNNPACK_INT8.conv_dynamic)  # ExecuTorch's XNNPACKQuantizer, static int8
    linear_config()                                     # torchao config of the Linear layers

What ``int8_int4`` / ``qat_int8_int4`` give each layer on XNNPACK (:data:`XNNPACK_INT8`), chosen for a CPU with
int8 dot products (x86 VNNI / AMX, ARM dotprod / i8mm) from ``sam3m4 bench --kernels-only`` single-layer ratios
(reports/int8/measurements.md):

* every convolution, depthwise and reshape-fed ones included: int8 per-output-channel symmetric weights x int8
  *static* per-tensor activations (ExecuTorch's ``XNNPACKQuantizer`` with
  ``get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)``, PT2E ``prepare_pt2e`` ->
  calibration -> ``convert_pt2e``; XNNPACK's ``qs8`` convolution and depthwise kernels). Static 1x1 convs ran
  0.51-0.78x of fp32 against 0.58-1.02x with dynamic activations, and XNNPACK has no dynamic depthwise kernel;
  static q/dq also avoids the channels-last rewiring that made reshape-fed dynamic convs unrunnable
  (:func:`sam3m4.quantize.convs.nhwc_input`);
* Linear layers (decoder projections and MLPs, text encoder): int8 dynamic per-token activations x int8
  per-output-channel weights (torchao ``Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8,
  weight_granularity=PerAxis(0))``, XNNPACK's ``qd8-f32-qc8w`` GEMM): 0.46-0.49x of fp32 against 0.50-0.65x for
  4-bit weights per group of 32. The CLIP token table stays 4-bit (a lookup, no multiply-adds), so the mode's
  name still says ``int4``;
* left float: the attention matmuls (both operands are activations; XNNPACK's int8 batch matmul needs a constant
  second operand), softmax, LayerNorm, GELU and the residual adds.

Calibration: static activation ranges come from the first :data:`CALIBRATION_PAIRS` val pairs (at most the
``num_val`` pairs the mode is scored on), each passed through the library as Stage 4's
:class:`sam3m4.predict.Predictor` passes it: the image through :func:`sam3m4.models.preprocess.to_pixels`, the
phrase through the CLIP tokenizer (32 tokens) and the student's ``encode_text``. Stage 4 (:func:`sam3m4.quantize.compare.scored_model`) and Stage 5's export
(:func:`sam3m4.export.case.export_case`) calibrate on the same pairs, so the ``.pte`` is the graph Stage 4 scored.
Without val pairs (``sam3m4 bench`` on random weights, unit tests) the example inputs calibrate once: a
well-formed program with the same kernels, not an accurate one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sam3m4.models.preprocess import to_pixels
from sam3m4.quantize.backends import XNNPACK_QUANTIZER
from sam3m4.models.tokenizer import get_tokenizer

PROMPT_TOKENS = 32
"""Token length of a prompt, as :class:`sam3m4.predict.Predictor` tokenizes it."""
CALIBRATION_PAIRS = 16
"""Val pairs that calibrate the static activation ranges (the first ones; fewer when fewer are scored)."""


@dataclass(frozen=True)
class XnnpackInt8Plan:
    """Per-layer quantization of the XNNPACK integer modes (see the module docstring for the measurements)."""

    conv_dynamic: bool = XNNPACK_QUANTIZER.config["is_dynamic"]
    """False: convolutions take int8 static per-tensor activations (calibrated); True: dynamic (no calibration,
    depthwise and reshape-fed convolutions left float). From the flow's settings (:mod:`.backends`)."""
    conv_per_channel: bool = XNNPACK_QUANTIZER.config["is_per_channel"]
    """int8 convolution weights per output channel (symmetric)."""
    linear_weight_bits: int = 8
    """Bits of the Linear weights (8: per output channel; 4: per group of 32) under int8 dynamic activations."""
    linear_group: int = 32
    """Group size of 4-bit Linear weights (unused with 8-bit weights)."""

    @property
    def summary(self) -> str:
        """One line for notes and tables: what each layer kind gets."""
        act = "dynamic" if self.conv_dynamic else "static (calibrated on val images)"
        lin = "int8 weights per channel" if self.linear_weight_bits == 8 else \
            f"int{self.linear_weight_bits} weights per group of {self.linear_group}"
        return (f"convs (depthwise included) int8 per-channel weights + int8 {act} activations; Linear {lin} + "
                f"int8 dynamic activations; attention matmuls, softmax and norms float")


XNNPACK_INT8 = XnnpackInt8Plan()
"""What ``int8_int4`` / ``qat_int8_int4`` use on XNNPACK."""


def conv_quantizer(dynamic: bool, plan: XnnpackInt8Plan = XNNPACK_INT8):
    """ExecuTorch's ``XNNPACKQuantizer`` with the plan's global config,
    ``get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)`` (``dynamic``: the plan's
    ``conv_dynamic``, or the other scheme where single-layer benchmarks compare both). The caller restricts it to
    the convolutions (:func:`sam3m4.quantize.convs.xnnpack_conv_quantizer`): torchao quantized the Linear layers."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)

    config = get_symmetric_quantization_config(**{**XNNPACK_QUANTIZER.config, "is_per_channel": plan.conv_per_channel,
                                                  "is_dynamic": dynamic})
    return XNNPACKQuantizer().set_global(config)


def linear_config(plan: XnnpackInt8Plan = XNNPACK_INT8):
    """torchao config of the Linear layers: int8 dynamic per-token activations x int8 per-channel (or 4-bit
    per-group) weights."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig
    from torchao.quantization.granularity import PerAxis, PerGroup

    if plan.linear_weight_bits == 8:
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))
    return Int8DynamicActivationIntxWeightConfig(weight_dtype=getattr(torch, f"int{plan.linear_weight_bits}"),
                                                 weight_granularity=PerGroup(plan.linear_group))


def calibration_pairs(num_val: int | None = None) -> int:
    """How many val pairs calibrate: :data:`CALIBRATION_PAIRS`, at most the ``num_val`` scored."""
    return CALIBRATION_PAIRS if num_val is None else max(1, min(CALIBRATION_PAIRS, num_val))


def calibration_inputs(student, val, num_val: int | None = None) -> list[tuple[torch.Tensor, ...]]:
    """Inputs of the ``forward`` method (image path with a cached prompt) for the first
    :func:`calibration_pairs` pairs of ``val`` (a :class:`~sam3m4.data.SacoImageDataset`-like sequence of samples
    with ``image`` (H, W, 3) uint8 and ``phrase``): ``[(pixel_values (1,3,S,S) float32, prompt_tokens (1,T,D),
    prompt_mask (1,T) float32), ...]``, made as Stage 4's :class:`~sam3m4.predict.Predictor` makes them (without
    its ``.to(device)``: a student torch.export has traced keeps weakrefs that forbid it).
    ``student``: a float or torchao-quantized :class:`~sam3m4.models.student.Student` (its ``encode_text`` runs)."""
    n = min(calibration_pairs(num_val), len(val))
    if n == 0:
        raise ValueError("calibration needs at least one val pair; the val set is empty")
    tokenizer = get_tokenizer(PROMPT_TOKENS)  # Predictor's tokenizer (not Predictor: see above)
    out = []
    with torch.no_grad():
        for i in range(n):
            sample = val[i]
            pixels = to_pixels([sample.image], student.image_size)  # (1, 3, S, S)
            tok = tokenizer([sample.phrase.strip()])
            prompt = student.encode_text(tok["input_ids"], tok["attention_mask"])  # as Predictor.prompt
            out.append((pixels, *prompt.as_tuple()))
    return out

