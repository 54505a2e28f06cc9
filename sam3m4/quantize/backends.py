"""Each backend's own quantizer settings, as data: what the Core ML, XNNPACK and QNN flows hand their quantizer.

The export flows declare theirs by pointing at these objects (``Flow.quantizer_settings`` in
:mod:`sam3m4.export.flows`); Stage 4's host simulation of the same quantizer (:mod:`sam3m4.quantize.convs`, used by
:mod:`.modes` and :mod:`.compare`) reads the same objects, so what Stage 4 scores is what the flow lowers. The
data sits here, below both: quantize imports it and export references it (export may import quantize, never the
reverse).

=========  ===============================================================  =========================================
flow       quantizer (where it runs)                                        settings (``config``)
=========  ===============================================================  =========================================
coreml     coremltools ``linear_quantize_weights`` (compile spec            int4 linear symmetric, per block of 16
           ``op_linear_quantizer_config``, at lowering)                     input channels, weights > 2048 values
xnnpack    PT2E ``XNNPACKQuantizer`` on the convolutions (export)           int8 per-channel symmetric weights, int8
                                                                            static per-tensor activations (calibrated
                                                                            on val images; the per-layer plan:
                                                                            :mod:`.xnnpack_int8`)
qnn        PT2E ``QnnQuantizer`` on the whole graph (export)                per-channel conv and Linear weights; the
                                                                            dtype per mode is ``ModeSupport.pt2e``
=========  ===============================================================  =========================================

    from sam3m4.quantize.backends import QUANTIZERS
    QUANTIZERS["xnnpack"].config        # {"is_per_channel": True, "is_dynamic": False}
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuantizerSettings:
    """One backend's quantizer, as data."""

    backend: str
    """The flow's name (``coreml``, ``qnn``, ``xnnpack``): a key of :data:`sam3m4.export.flows.FLOWS`."""
    quantizer: str
    """The backend's own quantizer and where it runs."""
    convs: str | None
    """The ``Mode.convs`` value (:data:`sam3m4.quantize.modes.MODES`) of the modes whose convolutions this quantizer
    takes; None: it takes the whole graph from the float student (QNN)."""
    config: dict
    """Keyword arguments of the quantizer's config call: coremltools ``OpLinearQuantizerConfig`` as ExecuTorch's
    Core ML compile spec takes it (a dict), XNNPACK's ``get_symmetric_quantization_config``, QNN's
    ``QnnQuantizer.set_default_quant_config`` (besides the dtype)."""


# --- Core ML --------------------------------------------------------------------------------------------------
COREML_BLOCK = 16
"""Input channels per int4 block for the convolutions (repvit's 48/96/192/384 and efficientvit's widths divide by
16, not all by 32)."""
COREML_WEIGHT_CONFIG = {"mode": "linear_symmetric", "dtype": "int4", "granularity": "per_block",
                        "block_size": COREML_BLOCK, "weight_threshold": 2048}
"""coremltools ``OpLinearQuantizerConfig`` as ExecuTorch's Core ML compile spec takes it (a dict)."""
COREML_QUANTIZER = QuantizerSettings(
    backend="coreml", convs="coreml_int4", config=COREML_WEIGHT_CONFIG,
    quantizer="coremltools linear_quantize_weights, applied by ExecuTorch's Core ML backend at lowering (compile "
              "spec op_linear_quantizer_config) to every weight still float after torchao")

# --- XNNPACK --------------------------------------------------------------------------------------------------
XNNPACK_QUANTIZER = QuantizerSettings(
    backend="xnnpack", convs="xnnpack_int8", config={"is_per_channel": True, "is_dynamic": False},
    quantizer="PT2E XNNPACKQuantizer annotating the convolutions of the exported method, depthwise included, static "
              "activations calibrated on Stage 4's val pairs (torchao already quantized the Linear layers: "
              "sam3m4.quantize.xnnpack_int8)")

# --- QNN ------------------------------------------------------------------------------------------------------
QNN_QUANTIZER = QuantizerSettings(
    backend="qnn", convs=None, config={"is_conv_per_channel": True, "is_linear_per_channel": True},
    quantizer="PT2E QnnQuantizer on the whole exported graph of the float student, calibrated")

QUANTIZERS: dict[str, QuantizerSettings] = {q.backend: q for q in (COREML_QUANTIZER, QNN_QUANTIZER, XNNPACK_QUANTIZER)}
