"""Student model: output contract, prompt reuse, score rule, torch.export, presets and the size table.

    .venv/bin/python -m pytest tests/models/test_models.py -q -x -m "not slow"     # fast part (tiny preset)
    .venv/bin/python -m pytest tests/models/test_models.py -q -x                   # + production presets export
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import torch

from sam3m4.errors import ConfigError, Sam3m4Error
from sam3m4.models import PRESETS, PRODUCTION_PRESETS, build_student
from sam3m4.models.export_wrappers import METHODS, example_inputs, export_programs, wrap
from sam3m4.models.tokenizer import CONTEXT_LENGTH, EOT_ID, SOT_ID


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_student("tiny").eval()


def _inputs(model, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = model.image_size
    pixels = torch.rand(batch, 3, s, s, generator=g) * 2 - 1  # (B, 3, S, S) in [-1, 1]
    ids = torch.zeros(batch, CONTEXT_LENGTH, dtype=torch.long)
    mask = torch.zeros(batch, CONTEXT_LENGTH, dtype=torch.long)
    for b in range(batch):  # phrases of different lengths: <start> w1..wn <end> pad...
        n = 2 + b
        ids[b, : n + 2] = torch.tensor([SOT_ID, *torch.randint(1, 49000, (n,), generator=g).tolist(), EOT_ID])
        mask[b, : n + 2] = 1
    return pixels, ids, mask


def test_tiny_output_contract(tiny):
    pixels, ids, mask = _inputs(tiny, batch=2)
    with torch.no_grad():
        out = tiny(pixels, ids, mask)
    q, hm = tiny.num_queries, tiny.image_size // 4
    assert out.mask_logits.shape == (2, q, hm, hm)
    assert out.query_logits.shape == (2, q)
    assert out.boxes_xyxy.shape == (2, q, 4)
    assert out.presence_logit.shape == (2, 1)
    assert out.semantic_logits.shape == (2, 1, hm, hm)
    assert out.query_embeddings.shape == (2, q, tiny.dim)
    assert [f.shape[-1] for f in out.neck_features] == [hm, hm // 2, hm // 4]  # fine to coarse
    assert all(f.shape[:2] == (2, tiny.dim) for f in out.neck_features)
    boxes = out.boxes_xyxy
    assert boxes.min() >= 0 and boxes.max() <= 1
    assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()
    assert out.aux is None
    assert len(out.as_tuple()) == 5


def test_scores_rule(tiny):
    pixels, ids, mask = _inputs(tiny, batch=2)
    with torch.no_grad():
        out = tiny(pixels, ids, mask)
    expected = torch.sigmoid(out.query_logits) * torch.sigmoid(out.presence_logit)
    assert torch.equal(out.scores, expected)
    assert out.scores.shape == (2, tiny.num_queries)


def test_prompt_embedding_reuse_matches_forward(tiny):
    pixels, ids, mask = _inputs(tiny, batch=2)
    ids, mask = ids[:1].expand(2, -1), mask[:1].expand(2, -1)  # one phrase for two images
    with torch.no_grad():
        full = tiny(pixels, ids, mask)
        prompt = tiny.encode_text(ids[:1], mask[:1])  # computed once (batch 1) ...
        feats = tiny.encode_image(pixels)
        reused = [tiny.decode(feats, prompt.expand(2)), tiny.decode(feats, prompt)]  # ... used twice (broadcast)
    for out in reused:
        for a, b in zip(full.as_tuple(), out.as_tuple()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_padding_tokens_do_not_matter(tiny):
    pixels, ids, mask = _inputs(tiny, batch=2)
    other = ids.masked_fill(mask == 0, 123)  # different ids where the mask is 0
    with torch.no_grad():
        a, b = tiny(pixels, ids, mask), tiny(pixels, other, mask)
    for x, y in zip(a.as_tuple(), b.as_tuple()):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-5)


def test_aux_outputs_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = build_student("tiny").train()
    pixels, ids, mask = _inputs(model, batch=2)
    out = model(pixels, ids, mask, with_aux=True)
    layers = len(model.decoder.layers)
    assert out.aux["query_logits"].shape == (layers, 2, model.num_queries)
    assert out.aux["boxes_xyxy"].shape == (layers, 2, model.num_queries, 4)
    assert out.aux["presence_logit"].shape == (layers, 2, 1)
    torch.testing.assert_close(out.aux["query_logits"][-1], out.query_logits)
    loss = sum(t.float().square().mean() for t in out.as_tuple()) + sum(v.square().mean() for v in out.aux.values())
    loss = loss + sum(f.square().mean() for f in out.neck_features)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_bad_inputs_are_clear_errors(tiny):
    with pytest.raises(ValueError, match="pixel_values"):
        tiny.encode_image(torch.zeros(1, 224, 224))
    with pytest.raises(ValueError, match="input_ids"):
        tiny.encode_text(torch.zeros(1, 40, dtype=torch.long), torch.ones(1, 40))


def test_unknown_preset_names_it_and_lists_choices():
    with pytest.raises(ConfigError) as err:
        build_student("mobilesam_xl")
    msg = str(err.value)
    assert "mobilesam_xl" in msg and all(name in msg for name in PRESETS)
    assert isinstance(err.value, Sam3m4Error)


def test_presets_registry():
    assert "tiny" in PRESETS and len(PRODUCTION_PRESETS) >= 2
    assert set(PRODUCTION_PRESETS) <= set(PRESETS)


def test_tiny_torch_export_every_method(tiny):
    programs = export_programs(tiny, batch=1, methods=("full",) + METHODS)
    for name, program in programs.items():
        inputs = example_inputs(tiny, name, batch=1)
        with torch.no_grad():
            expected = wrap(tiny, name)(*inputs)
            got = program.module()(*inputs)
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_export_refuses_train_mode():
    with pytest.raises(ValueError, match="eval"):
        export_programs(build_student("tiny").train(), methods=("full",))


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRODUCTION_PRESETS)
def test_production_preset_exports_with_static_shapes(preset):
    model = build_student(preset).eval()
    program = export_programs(model, batch=1, methods=("full",))["full"]
    inputs = example_inputs(model, "full", batch=1)
    with torch.no_grad():
        masks, logits, boxes, presence, semantic = program.module()(*inputs)
    q, hm = model.num_queries, model.mask_size
    assert model.image_size == 504 and hm == 126
    assert masks.shape == (1, q, hm, hm) and semantic.shape == (1, 1, hm, hm)
    assert logits.shape == (1, q) and boxes.shape == (1, q, 4) and presence.shape == (1, 1)


def test_models_table_lists_every_preset_and_teacher(capsys):
    from sam3m4.models import cli

    parser = argparse.ArgumentParser(prog="sam3m4 models")
    cli.add_arguments(parser)
    args = parser.parse_args(["table", "--json"])
    assert args.func(args) == 0
    rows = json.loads(capsys.readouterr().out)
    names = [r["model"] for r in rows]
    assert names[: len(PRESETS)] == list(PRESETS)
    assert any(r["kind"] == "teacher" for r in rows)
    for r in rows:
        assert r["params"] > 0 and r["fp16_mb"] > 0 and r["int4_mb"] > 0, r
        assert r["gflops"] is not None and r["gflops"] > 0, r
    teacher = next(r for r in rows if r["kind"] == "teacher")
    assert teacher["params"] > 500e6 and teacher["input_px"] == 1008
    for r in rows:
        if r["model"] in PRODUCTION_PRESETS:
            assert r["fp16_mb"] <= 45, r  # leaves >= 5 MB of a 50 MB fp16 .pte for the video module
            assert r["int4_mb"] <= 20, r
    args = parser.parse_args(["table", "--presets", "tiny", "--no-teacher"])
    args.func(args)
    text = capsys.readouterr().out
    assert "tiny" in text and "GFLOPs" in text


def test_models_cli_does_not_import_torch():
    code = "import sys, sam3m4.models.cli; assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
