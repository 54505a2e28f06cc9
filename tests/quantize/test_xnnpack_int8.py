"""XNNPACK integer modes per layer (issue 26): static int8 conv activations calibrated on val images, int8
depthwise convolutions, int8 Linear weights, and the tiny student's int8 MAC share against its target."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from sam3m4.data import SacoImageDataset
from sam3m4.models import build_student
from sam3m4.models.export_wrappers import example_inputs, wrap
from sam3m4.models.preprocess import to_pixels
from sam3m4.predict import Predictor
from sam3m4.quantize import xnnpack_int8
from sam3m4.quantize.convs import PT2EStudent, conv_module_name, xnnpack_conv_names
from sam3m4.quantize.modes import apply_mode
from sam3m4.results.targets import load_targets

ROOT = Path(__file__).resolve().parents[2]
VAL = ROOT / "fixtures" / "synth" / "saco_image" / "val.json"

pytestmark = [pytest.mark.xnnpack, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def val():
    return SacoImageDataset(VAL)


@pytest.fixture(scope="module")
def tiny_int8():
    torch.manual_seed(0)
    return apply_mode(build_student("tiny").eval(), "int8_int4")


def test_the_plan_is_static_int8_convs_and_int8_linear_weights():
    plan = xnnpack_int8.XNNPACK_INT8
    assert not plan.conv_dynamic and plan.conv_per_channel and plan.linear_weight_bits == 8
    config = xnnpack_int8.conv_quantizer(plan.conv_dynamic).global_config  # ExecuTorch's XNNPACKQuantizer
    assert not config.input_activation.is_dynamic and config.input_activation.dtype == torch.int8
    assert config.weight.qscheme == torch.per_channel_symmetric and config.weight.dtype == torch.int8
    from torchao.quantization.granularity import PerAxis

    lin = xnnpack_int8.linear_config(plan)
    assert lin.weight_dtype == torch.int8 and isinstance(lin.weight_granularity, PerAxis)


def test_int8_int4_linear_weights_are_int8_per_output_channel(tiny_int8):
    from torchao.quantization import IntxUnpackedToInt8Tensor

    weights = [m.weight for m in tiny_int8.modules() if type(m) is nn.Linear
               and isinstance(m.weight, IntxUnpackedToInt8Tensor)]
    assert weights, "no torchao-quantized Linear layer"
    for w in weights:
        assert w.target_dtype == torch.int8 and w.scale.numel() == w.shape[0]  # one scale per output row
    table = tiny_int8.text_encoder.token_embedding.weight
    assert table.target_dtype == torch.int4  # the token table stays 4-bit (a lookup, no multiply-adds)


def test_static_activations_reach_every_convolution_depthwise_included(tiny_int8):
    """The quantizer's own annotation of the tiny student's image path: with the plan's static activations every
    convolution is taken, the depthwise and reshape-fed ones that dynamic activations leave float included."""
    module, inputs = wrap(tiny_int8, "forward"), example_inputs(tiny_int8, "forward")
    convs = {n: m for n, m in tiny_int8.named_modules() if type(m) is nn.Conv2d}
    depthwise = {n for n, m in convs.items() if m.groups > 1 and m.groups == m.in_channels}
    assert depthwise, "the tiny student has depthwise convolutions"
    graph = torch.export.export(copy.deepcopy(module), inputs).module()
    graph.graph.eliminate_dead_code()  # the neck's stride-8 smoothing: computed, never used by forward
    in_graph = {conv_module_name(n) for n in graph.graph.nodes
                if n.op == "call_function" and "conv" in str(n.target)}  # convs whose output is used
    static = set(xnnpack_conv_names(module, inputs))  # the plan's default
    dynamic = set(xnnpack_conv_names(module, inputs, dynamic=True))
    assert static == in_graph and depthwise & in_graph and "mask_head.memory_proj" in static
    assert not dynamic & depthwise and "mask_head.memory_proj" not in dynamic  # what the plan fixes


def test_calibration_inputs_are_the_val_pairs_as_the_predictor_makes_them(tiny_int8, val):
    calib = xnnpack_int8.calibration_inputs(tiny_int8, val, num_val=3)
    assert len(calib) == 3
    predictor = Predictor(copy.deepcopy(tiny_int8))  # Stage 4's own prompt path
    for i, (pixels, tokens, mask) in enumerate(calib):
        sample = val[i]
        assert torch.equal(pixels, to_pixels([sample.image], tiny_int8.image_size))
        prompt = predictor.prompt(sample.phrase)
        assert torch.equal(tokens, prompt.tokens) and torch.equal(mask, prompt.mask)
    n = len(xnnpack_int8.calibration_inputs(tiny_int8, val))  # no num_val: the first CALIBRATION_PAIRS
    assert n == min(xnnpack_int8.CALIBRATION_PAIRS, len(val))


def _activation_scales(student) -> list[float]:
    """Scales of the static per-tensor activation quantize nodes of a PT2EStudent's converted graph."""
    return [float(n.args[1]) for n in student.image_path.graph.nodes
            if n.op == "call_function" and "quantize_per_tensor" in str(n.target) and "dequant" not in str(n.target)
            and isinstance(n.args[1], float)]


def test_static_ranges_come_from_the_calibration_images(tiny_int8, val):
    """Two different calibration sets give different activation ranges; the same set gives the same ones (the
    program Stage 5 exports is the graph Stage 4 scored)."""
    first = xnnpack_int8.calibration_inputs(tiny_int8, val, num_val=2)
    other = [(torch.flip(p, dims=(-1,)) * 0.25, t, m) for p, t, m in first]  # darker, mirrored images
    a = _activation_scales(PT2EStudent(copy.deepcopy(tiny_int8), calibration=first))
    b = _activation_scales(PT2EStudent(copy.deepcopy(tiny_int8), calibration=first))
    c = _activation_scales(PT2EStudent(copy.deepcopy(tiny_int8), calibration=other))
    assert a and len(a) == len(c)
    assert a == b
    assert a[0] != c[0]  # the pixel input's range follows the images


def test_stage4_scores_xnnpack_modes_calibrated_on_its_val_pairs(tiny_int8, val):
    from sam3m4.quantize.compare import scored_model

    with pytest.raises(ValueError, match="val"):
        scored_model(tiny_int8, "int8_int4")
    scored = scored_model(tiny_int8, "int8_int4", val, 2)
    direct = PT2EStudent(copy.deepcopy(tiny_int8), calibration=xnnpack_int8.calibration_inputs(tiny_int8, val, 2))
    assert _activation_scales(scored) == _activation_scales(direct)


@pytest.mark.slow
def test_tiny_int8_int4_mac_share_meets_its_target(tiny_int8, tmp_path):
    """The share of the tiny student's image-path MACs in XNNPACK int8 kernels, from the lowered graph, against
    ``xnnpack_int8_mac_share`` of the targets file (the Stage 5 gate's figure)."""
    from sam3m4.export.export import export_pte

    target = load_targets(ROOT / "acceptance" / "targets.yaml")["xnnpack_int8_mac_share"]
    r = export_pte(tiny_int8, backend="xnnpack", mode="int8_int4", out_dir=tmp_path, model_name="tiny",
                   methods=["forward"])
    assert r.ok, (r.failed_stage, r.error)
    share = r.int8["forward"]
    assert "conv" not in share.float_macs_by_kind, share.summary()  # every convolution int8
    assert target.check(100 * share.share), share.summary()
