"""Quantization modes on the tiny student: what gets quantized, deployable size, safe save/load, decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from sam3m4.errors import DataFormatError
from sam3m4.models import build_student
from sam3m4.models.export_wrappers import example_inputs
from sam3m4.quantize import modes
from sam3m4.quantize.compare import ModeResult, decide, format_table
from sam3m4.quantize.convs import COREML_BLOCK, WEIGHT_BITS_ATTR, coreml_block_sizes, coreml_compress_weights
from sam3m4.quantize.storage import load_quantized, save_quantized
from sam3m4.results.targets import Target

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_student("tiny").eval()


def _clone(model):
    fresh = build_student("tiny").eval()
    fresh.load_state_dict(model.state_dict())
    return fresh


def _outputs(model):
    torch.manual_seed(1)  # the same random pixels for every model
    with torch.no_grad():
        out = model(*example_inputs(model, "full"))
    return out.mask_logits, out.query_logits, out.presence_logit


UNUSED_BY_FORWARD = {"image_encoder.neck.smooth.1.dw", "image_encoder.neck.smooth.1.pw"}
"""The neck's stride-8 smoothing: computed by the neck, used by no output of ``forward`` (not in its graph)."""


def test_deployable_bytes_packs_int4_two_per_byte_plus_fp16_group_scales():
    from torchao.quantization import quantize_

    layer = nn.Sequential(nn.Linear(64, 8))
    assert modes.deployable_bytes(layer)["total"] == (64 * 8 + 8) * 2  # all fp16
    quantize_(layer, modes.linear_config(modes.MODES["int4"]))
    sizes = modes.deployable_bytes(layer)
    assert sizes["quantized"] == 64 * 8 / 2 + (64 * 8 // 32) * 2  # nibbles + one fp16 scale per 32 weights
    assert sizes["fp16"] == 8 * 2 and sizes["total"] == sizes["quantized"] + sizes["fp16"]


@pytest.mark.parametrize("mode", ["int4", "int8_int4"])
def test_modes_quantize_linear_and_token_table_keep_convs_and_stay_close(student, mode):
    from torchao.quantization import IntxUnpackedToInt8Tensor

    q = modes.apply_mode(_clone(student), mode)
    lin = [m for m in q.modules() if type(m) is nn.Linear]
    assert lin and all(isinstance(m.weight, IntxUnpackedToInt8Tensor) for m in lin if m.in_features % 32 == 0)
    emb = [m for m in q.modules() if type(m) is nn.Embedding]
    assert emb and all(isinstance(m.weight, IntxUnpackedToInt8Tensor) for m in emb)
    convs = [m for m in q.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m.weight) is nn.Parameter for m in convs)  # float on the host, marked for the size
    if mode == "int4":  # Core ML: coremltools compresses the eligible convs
        assert all(hasattr(m, WEIGHT_BITS_ATTR) for m in convs if coreml_block_sizes(tuple(m.weight.shape)) is not None)
    else:  # XNNPACK: PT2E int8 convs at export (static activations: depthwise too); marked here for the size
        unmarked = {n for n, m in q.named_modules() if isinstance(m, nn.Conv2d) and not hasattr(m, WEIGHT_BITS_ATTR)}
        assert unmarked <= UNUSED_BY_FORWARD, unmarked
    ref, got = (torch.cat([t.flatten() for t in _outputs(m)]) for m in (student, q))
    assert torch.corrcoef(torch.stack([ref, got]))[0, 1] > 0.9  # close to fp32, not identical
    assert not torch.equal(ref, got)
    fp16 = modes.deployable_bytes(modes.apply_mode(_clone(student), "fp16"))["total"]
    bound = 0.6 if mode == "int4" else 0.7  # 4-bit table (int8 in fp16); Linear 4-bit (int4) / 8-bit (int8_int4)
    assert modes.deployable_bytes(q)["total"] < bound * fp16


def test_int4_rounds_conv_weights_with_coremltools_own_code_and_counts_them_at_4_bits(student):
    """Core ML modes: each eligible conv row block of 16 input channels holds at most 16 levels (int4), the
    rounding is idempotent (Core ML re-quantizes these values at lowering to the same grid), small convs and
    widths not divisible by 16 are left float, like coremltools' pass."""
    q = modes.apply_mode(_clone(student), "int4")
    done = [m for m in q.modules() if type(m) is nn.Conv2d and hasattr(m, WEIGHT_BITS_ATTR)]
    left = [m for m in q.modules() if type(m) is nn.Conv2d and not hasattr(m, WEIGHT_BITS_ATTR)]
    assert done and left and all(coreml_block_sizes(tuple(m.weight.shape)) is None for m in left)
    for m in done:
        cout, cin = m.weight.shape[:2]
        blocks = m.weight.detach().reshape(cout, cin // COREML_BLOCK, COREML_BLOCK, -1).transpose(1, 2)
        levels = max(len(torch.unique(b)) for b in blocks.reshape(cout * (cin // COREML_BLOCK), -1))
        assert levels <= 16, f"{levels} levels in one int4 block"
    before = [m.weight.detach().clone() for m in done]
    assert coreml_compress_weights(q)["compressed"] == len(done)
    assert all(torch.allclose(a, m.weight, atol=1e-3 * float(a.abs().max())) for a, m in zip(before, done))
    w = done[0].weight
    sizes = modes.deployable_bytes(nn.Sequential(done[0]))
    bits, scales = getattr(done[0], WEIGHT_BITS_ATTR)
    assert bits == 4 and scales == w.numel() // COREML_BLOCK
    assert sizes["quantized"] == w.numel() / 2 + scales * 2


def test_qat_prepare_fake_quantizes_then_convert_gives_the_ptq_layout(student):
    from torchao.quantization import IntxUnpackedToInt8Tensor
    from torchao.quantization.qat.linear import FakeQuantizedLinear

    model = _clone(student).train()
    modes.qat_prepare(model, "qat_int8_int4")
    assert any(isinstance(m, FakeQuantizedLinear) for m in model.modules())
    out = model(*example_inputs(model, "full"))
    out.presence_logit.sum().backward()  # straight-through gradients reach the fp32 weights
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    modes.qat_convert(model, "qat_int8_int4")
    assert not any(isinstance(m, FakeQuantizedLinear) for m in model.modules())
    assert isinstance(model.text_encoder.token_embedding.weight, IntxUnpackedToInt8Tensor)


@pytest.mark.parametrize("mode", ["fp16", "int4", "int8_int4"])
def test_save_load_round_trip_without_pickles(student, mode, tmp_path):
    q = modes.apply_mode(_clone(student), mode)
    path = save_quantized(q, tmp_path / mode, mode=mode, preset="tiny", source="phase2_best.pt")
    assert path.read_bytes()[:8] != b"PK\x03\x04"  # safetensors, not a torch zip pickle
    back, meta = load_quantized(tmp_path / mode)
    assert meta["mode"] == mode and meta["preset"] == "tiny"
    assert modes.deployable_bytes(back)["total"] == pytest.approx(modes.deployable_bytes(q)["total"])
    for a, b in zip(_outputs(q), _outputs(back)):
        assert torch.equal(a, b)


def test_load_errors_name_the_file_and_field(student, tmp_path):
    out = tmp_path / "int4"
    save_quantized(modes.apply_mode(_clone(student), "int4"), out, mode="int4", preset="tiny")
    (out / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(DataFormatError, match="model.safetensors: unreadable"):
        load_quantized(out)
    (out / "quantized.json").write_text(json.dumps({"mode": "int4"}))
    with pytest.raises(DataFormatError, match=r"quantized.json: preset: missing"):
        load_quantized(out)
    with pytest.raises(DataFormatError, match="not a quantized model folder"):
        load_quantized(tmp_path / "nothing")


def _row(mode, size, miou, ms=10.0):
    return ModeResult(mode=mode, size_mb=size, miou=miou, presence_f1=0.8, avg_ms=ms, num_pairs=200)


def test_decision_picks_the_smallest_passing_mode_then_the_most_accurate():
    gate = Target(name="quant_miou_drop", metric="miou_drop", comparison="<=", value=2.0, unit="points")
    rows = [_row("fp16", 8.0, 0.60), _row("int4", 2.0, 0.575), _row("int8_int4", 2.0, 0.59, ms=30),
            _row("qat_int4", 2.0, 0.595, ms=20)]
    d = decide(rows, gate)
    assert d["criterion_met"] and d["passing"] == ["int8_int4", "qat_int4"] and d["failing"] == ["int4"]
    assert d["chosen_mode"] == "qat_int4"  # same size as int8_int4, 0.5 point closer to fp16
    tie = [_row("fp16", 8.0, 0.60), _row("int4", 2.0, 0.595, ms=14.7), _row("qat_int4", 2.0, 0.5952, ms=3.0)]
    assert decide(tie, gate)["chosen_mode"] == "int4"  # equal to 0.1 point: the mode listed first (PTQ) wins
    slow_host = [_row(r.mode, r.size_mb, r.miou, ms=r.avg_ms * (7 if r.mode == "qat_int4" else 1)) for r in rows]
    assert decide(slow_host, gate)["chosen_mode"] == "qat_int4"  # host timings never change the decision
    assert rows[1].miou_drop == pytest.approx(2.5) and rows[1].passed is False
    assert rows[1].compression == pytest.approx(4.0)
    assert "FAIL" in format_table(rows)
    none = decide([_row("fp16", 8.0, 0.60), _row("int4", 2.0, 0.50)], gate)
    assert not none["criterion_met"] and none["chosen_mode"] == "fp16"
    rel = Target(name="quant_miou_drop", metric="miou_drop", comparison="<=", value=5.0, unit="percent",
                 basis="relative")
    assert decide([_row("fp16", 8.0, 0.60), _row("int4", 2.0, 0.575)], rel)["chosen_mode"] == "int4"  # 4.2% < 5%


def test_cli_parses_and_rejects_unknown_modes(capsys, tmp_path, monkeypatch):
    from sam3m4.cli import main

    monkeypatch.chdir(tmp_path)  # quantize takes the run lock of its folder: not the repo's, where training may run

    with pytest.raises(SystemExit):
        main(["quantize", "--mode", "int2"])
    assert "invalid choice: 'int2'" in capsys.readouterr().err
    assert main(["quantize", "--mode", "int4", "--ckpt", "no/such.pt"]) == 2
    assert "no/such.pt: no such checkpoint" in capsys.readouterr().err


def test_python_dash_m_entry_point_is_the_same_command():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "sam3m4.quantize", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "--mode" in out.stdout and "compare" in out.stdout


def test_a_video_checkpoint_quantizes_the_memory_too_and_round_trips(student, tmp_path):
    from torchao.quantization import IntxUnpackedToInt8Tensor

    from sam3m4.checkpoint import atomic_torch_save
    from sam3m4.models.video import StudentTracker
    from sam3m4.quantize.pipeline import build_mode, image_model

    torch.manual_seed(0)
    tracker = StudentTracker(_clone(student))
    for p in list(tracker.memory.parameters()) + list(tracker.carry.parameters()):  # as if trained (zero-init)
        torch.nn.init.normal_(p, std=0.05)
    atomic_torch_save({"model": tracker.state_dict(), "preset": "tiny", "num_latents": tracker.num_latents,
                       "phase": 3, "epoch": 1, "step": 1}, tmp_path / "video_epoch1.pt")
    q, info = build_mode(tmp_path / "video_epoch1.pt", "int8_int4")
    assert info is None and isinstance(q, StudentTracker)
    assert isinstance(q.carry.weight, IntxUnpackedToInt8Tensor)
    assert isinstance(image_model(q).text_encoder.token_embedding.weight, IntxUnpackedToInt8Tensor)
    save_quantized(q, tmp_path / "q", mode="int8_int4", preset="tiny")
    back, meta = load_quantized(tmp_path / "q")
    assert meta["kind"] == "tracker" and isinstance(back, StudentTracker)
    torch.manual_seed(2)
    frame, state = torch.rand(1, 3, 224, 224) * 2 - 1, q.init_state(1)
    prompt = image_model(q).encode_text(*example_inputs(image_model(q), "encode_text"))
    with torch.no_grad():
        a = q.track(frame, prompt.tokens, prompt.mask, state)
        b = back.track(frame, prompt.tokens, prompt.mask, state)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.slow
@pytest.mark.xnnpack
def test_pt2e_student_scores_the_converted_graph_with_8bit_convs(student):
    """The PT2E image path (8-bit convolutions) through the Predictor, on the host CPU: what Stage 4 scores for
    the XNNPACK modes, calibrated on val images; the size counts the same convolutions at 8 bits (all of them:
    static activations reach depthwise and reshape-fed convolutions too)."""
    import numpy as np

    from sam3m4.predict import Predictor
    from sam3m4.quantize.compare import scored_model
    from sam3m4.quantize.convs import PT2EStudent

    from sam3m4.data import SacoImageDataset

    val = SacoImageDataset(Path(__file__).resolve().parents[2] / "fixtures" / "synth" / "saco_image" / "val.json")
    q = modes.apply_mode(_clone(student), "int8_int4")
    scored = scored_model(q, "int8_int4", val, 2)
    assert isinstance(scored, PT2EStudent) and scored_model(q, "int4") is q
    marked = {n for n, m in q.named_modules() if hasattr(m, "_sam3m4_weight_bits")}
    assert "mask_head.pixel_proj" in marked and "mask_head.memory_proj" in marked  # reshape-fed: static int8 too
    targets = [str(n.target) for n in scored.image_path.graph.nodes if n.op == "call_function"]
    convs = sum(1 for m in q.modules() if type(m) is nn.Conv2d)
    assert sum("dequantize_per_channel" in t for t in targets) >= convs // 2  # BN-folded convs, 8-bit weights
    pred = Predictor(scored).predict(np.zeros((40, 50, 3), np.uint8), "a red ball")
    assert pred.all_scores.shape == (student.num_queries,) and pred.masks.shape[1:] == (40, 50)
    from sam3m4.quantize.compare import host_latency_ms

    assert host_latency_ms(scored, runs=1, warmup=0) > 0  # Stage 4's host timing of the XNNPACK modes
