"""Stage 4 gates: every quantized mode keeps the fp16 student's mIoU within the targets file's drop.

The models are the ones ``sam3m4 quantize`` saved (``--stage4-dir checkpoints/quantized``, one folder per
mode); each is loaded from its safetensors file (no pickles) and scored again here on the same first
``--stage4-num-val`` val pairs as the fp16 baseline. Without ``--stage4-dir`` a small set is built once per
cache (a briefly trained tiny student, quantized in every mode with a short QAT): it checks the machinery
and the gate, not the embedded default's quality. A planted broken quantization (weights rounded to 1 bit)
must fail the same gate.
"""

from __future__ import annotations

import pytest
import torch

from sam3m4.eval.image import evaluate_pairs
from sam3m4.predict import Predictor
from sam3m4.quantize.compare import miou_drop, scored_model
from sam3m4.quantize.modes import MODES
from sam3m4.quantize.pipeline import image_model
from sam3m4.quantize.storage import load_quantized
from sam3m4.results import schema

pytestmark = [pytest.mark.stage4, pytest.mark.slow]


@pytest.fixture(scope="module")
def fp16(stage4_models, pytestconfig):
    model, _ = load_quantized(stage4_models.dir / "fp16")
    return _score(model, stage4_models, pytestconfig)


def _score(model, stage4_models, pytestconfig, mode="fp16"):
    """Image-path mIoU / Presence F1 of a student, or of a tracker's image student, as ``mode``'s backend runs it
    (XNNPACK modes: the PT2E-converted graph with 8-bit convolutions)."""
    return evaluate_pairs(stage4_models.val, Predictor(scored_model(image_model(model), mode)),
                          num=pytestconfig.getoption("--stage4-num-val"), progress=False)


def _gate_drop(gate, targets, subject, base, res, how):
    t = targets["quant_miou_drop"]
    drop = miou_drop(base.miou, res.miou, t.basis)
    return gate(stage=schema.STAGE4, subject=subject, metric=schema.MIOU_DROP, value=drop, target="quant_miou_drop",
                provenance=f"fp16 mIoU {base.miou:.4f} - {subject} mIoU {res.miou:.4f} on the same {res.num_pairs} "
                           f"val pairs ({t.basis}); {how}"), drop


@pytest.mark.parametrize("mode", [m for m in MODES if m != "fp16"])
def test_quantized_mode_keeps_fp16_miou(mode, stage4_models, fp16, gate, targets, pytestconfig):
    path = stage4_models.dir / mode
    if not (path / "model.safetensors").is_file():
        if MODES[mode].qat:
            pytest.skip(f"{path}: QAT mode not run (compare runs QAT only when no post-training mode passes, "
                        "or with --qat always)")
        pytest.fail(f"{path}: missing; run `sam3m4 quantize --mode compare --out {stage4_models.dir}`")
    model, meta = load_quantized(path)
    res = _score(model, stage4_models, pytestconfig, mode)
    rec, drop = _gate_drop(gate, targets, mode, fp16, res,
                           f"reloaded from {path}/model.safetensors, host CPU torch eager + torchao")
    assert rec.passed, f"metric above gate: {mode} loses {drop:.2f} mIoU points vs fp16, target " \
                       f"{rec.comparison} {rec.target}"


def _round_to_one_bit(model):
    """A planted broken quantization: every float weight matrix becomes sign(w) x mean|w| per output channel
    (a torchao-quantized one, such as the fp16 mode's int8 token table, is left as it is)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Embedding)) and type(m.weight) is torch.nn.Parameter:
                w = m.weight
                scale = w.abs().flatten(1).mean(1).reshape(-1, *[1] * (w.dim() - 1))
                w.copy_(torch.sign(w) * scale)
    return model


def test_gate_fails_a_planted_one_bit_quantization(stage4_models, fp16, gate, targets, pytestconfig):
    assert fp16.miou > 0.05, f"fp16 student mIoU {fp16.miou:.3f}: too weak for the planted check to mean anything"
    model, _ = load_quantized(stage4_models.dir / "fp16")
    res = _score(_round_to_one_bit(model), stage4_models, pytestconfig)
    rec, drop = _gate_drop(gate, targets, schema.PLANTED_ONE_BIT, fp16, res, "planted: weights rounded to 1 bit")
    assert rec.passed is False, f"the gate passed a 1-bit model (drop {drop:.2f} points): it cannot catch a " \
                                "broken quantization"
