"""Convolutions in the quantized modes: each backend's own quantizer, and its effect simulated on the host.

torchao's ``quantize_`` reaches ``nn.Linear`` and ``nn.Embedding`` only, so the timm backbone, the FPN and the
mask-head 1x1 convolutions need the backend's own tool (:data:`sam3m4.quantize.modes.MODES` says which mode
uses which):

* Core ML (``int4``, ``qat_int4``): coremltools' weight compression, applied by ExecuTorch's Core ML backend
  after conversion (compile spec ``op_linear_quantizer_config`` = :data:`COREML_WEIGHT_CONFIG`: linear
  symmetric int4, per block of 16 input channels). It compresses every float weight that is
  still float after torchao, i.e. the convolutions (BatchNorm is folded in first; per-output-row blocks make
  that fold commute with the rounding). :func:`coreml_compress_weights` applies the *same* coremltools code
  (``linear_quantize_weights.blockwise_compress`` / ``decompress``) to the PyTorch weights, with the pass's own
  eligibility rule, so Stage 4 scores the weights the phone gets.
* XNNPACK (``int8_int4``, ``qat_int8_int4``): PT2E ``XNNPACKQuantizer`` annotates the convolutions only
  (torchao already quantized the Linear layers), with the settings of
  :data:`sam3m4.quantize.xnnpack_int8.XNNPACK_INT8`: 8-bit per-channel symmetric weights with 8-bit static
  per-tensor activations calibrated on val images (XNNPACK's ``qs8`` convolution and depthwise kernels).
  :func:`pt2e_convs` converts an exported method; :class:`PT2EStudent` runs the converted image path for
  Stage 4's scoring.
* QNN: ``QnnQuantizer`` quantizes the whole graph, convolutions included (:mod:`sam3m4.export.flows`).

Each backend's settings (``COREML_WEIGHT_CONFIG``, ``XNNPACK_QUANTIZER.config``) are data in
:mod:`sam3m4.quantize.backends`, which the export flows declare as their ``quantizer_settings``.

    n = coreml_compress_weights(model)                 # in place; returns {"compressed": k, "skipped": [...]}
    gm = pt2e_convs(wrap(student, "forward"), inputs)  # GraphModule with q/dq around every convolution
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from sam3m4.models.export_wrappers import example_inputs, wrap
from sam3m4.models.student import StudentOutput
from sam3m4.quantize.backends import COREML_BLOCK, COREML_WEIGHT_CONFIG, XNNPACK_QUANTIZER  # noqa: F401
from sam3m4.quantize.xnnpack_int8 import XNNPACK_INT8, conv_quantizer

WEIGHT_BITS_ATTR = "_sam3m4_weight_bits"
"""Set on a module whose float weight the backend stores at this bit width (size accounting)."""


# --- Core ML --------------------------------------------------------------------------------------------------
def coreml_block_sizes(shape: tuple[int, ...], config: dict = COREML_WEIGHT_CONFIG) -> list[int] | None:
    """coremltools' per-block sizes for a conv (Cout, Cin/g, kh, kw) or linear (Dout, Din) weight, or None when
    the pass leaves it float (too small: <= ``weight_threshold`` values; or Cin not divisible by the block)."""
    numel = 1
    for s in shape:
        numel *= s
    if len(shape) < 2 or numel <= config["weight_threshold"] or shape[1] % config["block_size"]:
        return None
    return [1, config["block_size"]] + [0] * (len(shape) - 2)


def _ct_roundtrip(weight: torch.Tensor, block_sizes: list[int], config: dict) -> tuple[torch.Tensor, int]:
    """(the weight after coremltools' own quantize + dequantize, number of scales)."""
    import numpy as np
    from coremltools.optimize.coreml._quantization_passes import linear_quantize_weights as coreml_pass

    nbits = int(config["dtype"].removeprefix("int"))
    data = weight.detach().to(torch.float16).float().numpy()  # the converter casts to fp16 first (FLOAT16)
    params = coreml_pass.blockwise_compress(data, nbits, config["mode"].upper(), True, block_sizes)
    if params is None:
        return weight, 0
    out = np.asarray(coreml_pass.decompress(params), dtype=np.float16).reshape(data.shape)  # Core ML computes in fp16
    return torch.from_numpy(out).to(weight.dtype), int(np.asarray(params.scale).size)


def coreml_compress_weights(model: nn.Module, config: dict = COREML_WEIGHT_CONFIG) -> dict:
    """Every plain-float ``nn.Conv2d`` / ``nn.Linear`` weight that Core ML's pass compresses, rounded to its grid
    in place (values kept float for host compute) and marked ``WEIGHT_BITS_ATTR``. Idempotent.

    Returns ``{"compressed": n, "skipped": [names left float]}``."""
    out = {"compressed": 0, "skipped": []}
    bits = int(config["dtype"].removeprefix("int"))
    for name, m in model.named_modules():
        if type(m) not in (nn.Conv2d, nn.Linear) or type(m.weight) is not nn.Parameter:
            continue  # torchao-quantized Linear weights are tensor subclasses: already compressed
        blocks = coreml_block_sizes(tuple(m.weight.shape), config)
        if blocks is None:
            out["skipped"].append(name)
            continue
        with torch.no_grad():
            new, scales = _ct_roundtrip(m.weight, blocks, config)
            m.weight.copy_(new)
        setattr(m, WEIGHT_BITS_ATTR, (bits, scales))
        out["compressed"] += 1
    return out


# --- XNNPACK --------------------------------------------------------------------------------------------------
_CONV_TARGETS = ("aten.conv2d", "aten.conv1d", "aten._convolution", "aten.convolution")
_RELU_TARGETS = ("aten.relu.default", "aten.relu_.default")
_NHWC_PRODUCERS = _CONV_TARGETS + ("aten.upsample_bilinear2d", "aten.upsample_nearest2d", "aten.max_pool2d",
                                   "aten.avg_pool2d", "aten.adaptive_avg_pool2d")
"""Ops XNNPACK's ``ChannelsLastTaggedReshapePass`` makes channels-last (NHWC)."""
_LAYOUT_FREE = ("aten.dropout", "aten.relu", "aten.hardswish", "aten.hardsigmoid", "aten.gelu", "aten.silu",
                "aten.sigmoid", "aten.clamp", "aten.hardtanh", "aten.batch_norm",
                "aten._native_batch_norm_legit_no_training", "aten.add", "aten.sub", "aten.mul", "aten.div",
                "aten.clone", "aten.contiguous", "<built-in function getitem>")
"""Elementwise ops that take the layout of their inputs (NHWC in, NHWC out)."""


def nhwc_input(node, depth: int = 64) -> bool:
    """True when a convolution's input reaches XNNPACK channels-last: every 4-D tensor it depends on, through
    elementwise ops only, comes from a convolution / upsample / pool or is a graph input.

    Why (measured here, ExecuTorch 1.5.1): for a *dynamically* quantized conv whose input is channels-first
    (made by a reshape / transpose, e.g. the mask head's ``memory_proj`` on the decoder's (B, HW, D) memory, or
    EfficientViT's ``LiteMLA.proj`` after its attention), ``ChannelsLastTaggedReshapePass.input_to_nhwc`` walks
    ``args[0]`` back past the q/dq pair and past that reshape up to the first node without a node argument (a
    graph input or a ``cat``), inserts a channels-last copy there and rewires *every* user of that ancestor to
    it. The program lowers, but the runtime refuses it: ``XNNExecutor: Propagating input shapes failed with code:
    xnn_status_invalid_parameter``. Such convs stay float (static q/dq takes the normal path)."""
    import torch

    if node.op == "placeholder":
        return True
    if node.op != "call_function" or depth == 0:
        return False
    target = str(node.target)
    if target.startswith(_NHWC_PRODUCERS):
        return True
    if not target.startswith(_LAYOUT_FREE):
        return False  # reshape, transpose, permute, matmul, cat, pad, ...: channels-first or unknown
    ins = [a for a in node.all_input_nodes if a.op != "get_attr"
           and isinstance(a.meta.get("val"), torch.Tensor) and a.meta["val"].dim() == 4]
    return all(nhwc_input(a, depth - 1) for a in ins)


def conv_module_name(node) -> str:
    """The ``nn.Conv2d``'s qualified name in the student (``image_encoder.neck.lateral.0``) from the exported
    node's module stack (wrappers' ``model.`` prefix dropped), or "" when unknown."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = str(list(stack.values())[-1][0])
    return path.removeprefix("model.")


def _is_conv(node, dynamic: bool = True) -> bool:
    """Filter for the quantizer: True for the convolutions XNNPACK takes quantized, and for non-op nodes
    (weights, inputs), which the annotators check along with the op of each matched pattern; False for every
    other op (Linear, add, ...). ``dynamic``: also False for a conv whose input is channels-first
    (:func:`nhwc_input`); static: also True for a ReLU right after a convolution, because the quantizer's
    ``conv_relu`` pattern (one partition, conv and ReLU) is the only one that takes such a conv (the FPN's
    separable smoothing: depthwise conv -> ReLU -> pointwise conv)."""
    if node.op != "call_function":
        return True
    target = str(node.target)
    if not dynamic and target.startswith(_RELU_TARGETS):
        src = node.args[0]
        return getattr(src, "op", "") == "call_function" and str(src.target).startswith(_CONV_TARGETS)
    if not target.startswith(_CONV_TARGETS):
        return False
    return not dynamic or nhwc_input(node.args[0])


def xnnpack_conv_names(module, inputs: tuple, dynamic: bool = XNNPACK_INT8.conv_dynamic) -> list[str]:
    """Names of the convolutions of the exported ``module(*inputs)`` whose weights :func:`xnnpack_conv_quantizer`
    annotates (its own annotation pass, so the quantizer's own skips count: depthwise convs with dynamic
    activations, and patterns it does not match)."""
    import torch

    quantizer = xnnpack_conv_quantizer(dynamic)
    graph = quantizer.transform_for_annotation(torch.export.export(module, inputs).module())
    quantizer.annotate(graph)
    names = []
    for n in graph.graph.nodes:
        note = n.meta.get("quantization_annotation")
        if n.op == "call_function" and str(n.target).startswith(_CONV_TARGETS) and note is not None \
                and n.args[1] in note.input_qspec_map:
            names.append(conv_module_name(n))
    return names


def mark_xnnpack_convs(model: nn.Module, dynamic: bool = XNNPACK_INT8.conv_dynamic) -> int:
    """Mark the float ``nn.Conv2d`` s that :func:`xnnpack_conv_quantizer` takes in the image path as stored 8-bit
    per output channel (size accounting; found by exporting ``forward`` of ``model``, a student or a tracker
    around one, at batch 1); returns how many (0, without exporting, for a module with no float conv)."""
    if not any(type(m) is nn.Conv2d and type(m.weight) is nn.Parameter for m in model.modules()):
        return 0  # e.g. a tracker's memory and query carry, quantized on their own: nothing to export
    student = getattr(model, "student", model)
    # export a copy: torch.export leaves weakrefs on the tensors it traced, and torchao's tensor subclasses must be
    # swapped by a later .cpu() / .to(), which a weakref forbids ("Cannot swap t1 because it has weakref")
    copied = copy.deepcopy(student)
    names = set(xnnpack_conv_names(wrap(copied, "forward"), example_inputs(copied, "forward", batch=1), dynamic))
    prefix = "student." if student is not model else ""
    n = 0
    for name, m in model.named_modules():
        if type(m) is nn.Conv2d and type(m.weight) is nn.Parameter and name.removeprefix(prefix) in names:
            setattr(m, WEIGHT_BITS_ATTR, (8, m.weight.shape[0]))
            n += 1
    return n


def xnnpack_conv_quantizer(dynamic: bool = XNNPACK_INT8.conv_dynamic):
    """``XNNPACKQuantizer`` (settings: :func:`sam3m4.quantize.xnnpack_int8.conv_quantizer`) annotating convolutions
    only: 8-bit per-channel symmetric weights, 8-bit per-tensor activations (``dynamic``: computed at run time,
    channels-last inputs only (:func:`nhwc_input`); else static, from calibration, every convolution)."""
    return conv_quantizer(dynamic).set_filter_function(lambda node: _is_conv(node, dynamic))


def pt2e_convs(module: nn.Module, inputs: tuple, dynamic: bool = XNNPACK_INT8.conv_dynamic, calibration=None):
    """``module`` (tuple in, tuple out; eval) -> PT2E-converted ``GraphModule`` whose convolutions are 8-bit.

    ``calibration``: iterable of input tuples for static activations, e.g.
    :func:`sam3m4.quantize.xnnpack_int8.calibration_inputs` (default: ``inputs`` once)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    with torch.no_grad():
        graph = torch.export.export(module, inputs).module()
        if not any(n.op == "call_function" and str(n.target).startswith(_CONV_TARGETS) for n in graph.graph.nodes):
            return graph  # no convolution (encode_text): nothing to quantize, nothing to run
        prepared = prepare_pt2e(graph, xnnpack_conv_quantizer(dynamic))
        for batch in calibration or [inputs]:
            prepared(*batch)
        return convert_pt2e(prepared)


class PT2EStudent(nn.Module):
    """A student whose image path (``forward`` method) runs as the PT2E-converted graph XNNPACK lowers.

    Enough of :class:`~sam3m4.models.student.Student`'s interface for :class:`~sam3m4.predict.Predictor` and
    Stage 4's host timing: ``encode_text`` (the torchao text encoder, unchanged), ``encode_image`` (defers),
    ``decode`` (runs the converted graph at batch 1). ``calibration``: ``forward`` input tuples for the static
    activation ranges (:func:`sam3m4.quantize.xnnpack_int8.calibration_inputs` on Stage 4's val pairs)."""

    def __init__(self, student: nn.Module, dynamic: bool = XNNPACK_INT8.conv_dynamic, calibration=None):
        super().__init__()

        self.student = student
        self.image_size, self.preset = student.image_size, student.preset
        self.context_length, self.dim = student.context_length, student.dim
        self.mask_size, self.memory_grid = student.mask_size, student.memory_grid
        self.image_path = pt2e_convs(wrap(student, "forward"), example_inputs(student, "forward"), dynamic, calibration)

    @property
    def text_encoder(self) -> nn.Module:
        """The student's (unchanged) text encoder: its token table's rows size the example token ids."""
        return self.student.text_encoder

    def train(self, mode: bool = True):
        """Only the flag: an exported graph refuses ``train()`` / ``eval()`` (it is always in eval)."""
        self.training = mode
        self.student.train(mode)
        return self

    def to(self, *args, **kwargs):
        """Host CPU only: the converted graph holds references to the student's torchao weights, which
        ``nn.Module.to`` cannot swap (``Couldn't swap Embedding.weight``); nothing moves."""
        return self

    def encode_text(self, input_ids, attention_mask):
        return self.student.encode_text(input_ids, attention_mask)

    def encode_image(self, pixel_values):
        return pixel_values  # the converted graph takes pixels and the prompt together

    def decode(self, pixel_values, prompt):

        masks, logits, boxes, presence, semantic = self.image_path(pixel_values, *prompt.expand(1).as_tuple())
        return StudentOutput(mask_logits=masks, query_logits=logits, boxes_xyxy=boxes, presence_logit=presence,
                             semantic_logits=semantic, neck_features=(), query_embeddings=logits[..., None])
