"""Teacher adapter and tokenizer: CLIP ids, offline loading (and its errors), typed output shapes.

    python -m pytest tests/teacher/test_teacher.py -q
"""

from __future__ import annotations

import importlib.util
import socket

import numpy as np
import pytest
import torch

from sam3m4.errors import Sam3m4Error
from sam3m4.teacher.bootstrap_model import build_config
from sam3m4.teacher.sam3 import TeacherOutput, instances_from_output, load_teacher
from sam3m4.models.tokenizer import EOT_ID, SOT_ID, default_bpe_path, get_tokenizer

PHRASES = ["red circle", "blue triangle", "star", "Yellow  School-Bus &amp; 2 cats", "x " * 40]


def _open_clip_simple_tokenizer():
    """open_clip's own SimpleTokenizer, loaded from its file (importing the package pulls in timm: slow)."""
    path = default_bpe_path().parent / "tokenizer.py"
    spec = importlib.util.spec_from_file_location("_open_clip_tokenizer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SimpleTokenizer(context_length=32)


def test_tokenizer_gives_clip_ids():
    enc = get_tokenizer()(PHRASES)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert ids.shape == mask.shape == (len(PHRASES), 32) and ids.dtype == torch.long
    assert ids[0, :4].tolist() == [SOT_ID, 736, 7117, EOT_ID] == [49406, 736, 7117, 49407]  # 'red', 'circle'
    assert mask[0].tolist() == [1] * 4 + [0] * 28 and ids[0, 4:].eq(0).all()
    assert ids[-1, -1] == EOT_ID and mask[-1].all()  # truncated, still ends with the end token
    assert torch.equal(ids, _open_clip_simple_tokenizer()(PHRASES))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random Sam3Model (56 px, patch 14 -> g = 4, masks 16 x 16, 6 queries) saved with save_pretrained."""
    from transformers import Sam3Model

    torch.manual_seed(0)
    cfg = build_config(image_size=56, hidden_size=32, vit_layers=1, vit_window=2, text_layers=1, num_queries=6)
    path = tmp_path_factory.mktemp("tiny_sam3")
    Sam3Model(cfg).save_pretrained(path)
    return path


def test_adapter_loads_tiny_model_and_returns_typed_output(tiny_dir):
    teacher = load_teacher(tiny_dir)
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]
    batch = teacher.prepare(images, ["red circle", "star"])
    assert batch["pixel_values"].shape == (2, 3, 56, 56) and batch["pixel_values"].abs().max() <= 1.0
    with torch.no_grad():
        out = teacher(**batch, with_aux=True)
    assert isinstance(out, TeacherOutput)
    B, Q, C, g = 2, 6, 32, 4
    assert out.mask_logits.shape == (B, Q, 4 * g, 4 * g)
    assert out.query_logits.shape == (B, Q) and out.presence_logit.shape == (B, 1)
    assert out.boxes_xyxy.shape == (B, Q, 4) and (out.boxes_xyxy[..., 2:] >= out.boxes_xyxy[..., :2]).all()
    assert out.semantic_logits.shape == (B, 1, 4 * g, 4 * g)
    assert [tuple(f.shape) for f in out.fpn_features] == [(B, C, 16, 16), (B, C, 8, 8), (B, C, 4, 4)]
    assert out.vit_features.shape == (B, 32, g, g) and out.encoder_memory.shape == (B, g * g, C)
    assert out.query_embeddings.shape == (B, Q, C) and out.text_features.shape == (B, 32, C)
    assert out.text_mask.dtype == torch.bool and out.text_mask.sum(1).tolist() == [4, 3]
    assert out.aux["query_logits"].shape == (2, B, Q)  # 2 decoder layers (build_config default)
    assert torch.allclose(out.aux["query_logits"][-1], out.query_logits)
    assert torch.allclose(out.aux["boxes_xyxy"][-1], out.boxes_xyxy)
    # one image encoder pass for several phrases gives the same result as repeating the image
    with torch.no_grad():
        shared = teacher(batch["pixel_values"][:1], batch["input_ids"], batch["attention_mask"],
                         image_index=torch.tensor([0, 0]))
        repeated = teacher(batch["pixel_values"][[0, 0]], batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(shared.mask_logits, repeated.mask_logits, atol=1e-5)
    inst = teacher.instances(out, [im.shape[:2] for im in images], threshold=0.0)
    assert inst[0].masks.shape == (Q, 40, 50) and inst[0].masks.dtype == bool
    assert inst[0].boxes.shape == (Q, 4) and inst[1].all_scores.shape == (Q,)


def test_instances_use_sam3_score_rule():
    Q = 3
    out = TeacherOutput(
        mask_logits=torch.tensor([[[[5.0, -5.0]], [[5.0, 5.0]], [[-5.0, -5.0]]]]),  # (1, 3, 1, 2)
        query_logits=torch.tensor([[4.0, 0.0, 4.0]]),  # sigmoid: 0.98, 0.5, 0.98
        boxes_xyxy=torch.tensor([[[0.0, 0.0, 0.5, 1.0]] * Q]),
        presence_logit=torch.tensor([[3.0]]),  # sigmoid 0.95
        semantic_logits=torch.zeros(1, 1, 1, 2), fpn_features=(), vit_features=torch.zeros(1),
        encoder_memory=torch.zeros(1), query_embeddings=torch.zeros(1), text_features=torch.zeros(1),
        text_mask=torch.ones(1, 1, dtype=torch.bool),
    )
    (inst,) = instances_from_output(out, [(2, 4)])
    expected = float(torch.sigmoid(torch.tensor(4.0)) * torch.sigmoid(torch.tensor(3.0)))  # 0.935; 0.5 * 0.95 dropped
    assert inst.scores.shape == (2,) and np.allclose(inst.scores, expected, atol=1e-5)
    assert inst.masks.shape == (2, 2, 4) and inst.masks[0, :, :2].all() and not inst.masks[0, :, 2:].any()
    assert np.allclose(inst.boxes[0], [0, 0, 2, 2])
    out.presence_logit = torch.tensor([[-3.0]])
    assert instances_from_output(out, [(2, 4)])[0].masks.shape == (0, 2, 4)


def _assert_one_line_how_to(err: Sam3m4Error):
    msg = str(err)
    assert "\n" not in msg
    assert "huggingface-cli download facebook/sam3 --local-dir" in msg and "--teacher" in msg


def test_missing_weights_dir_is_one_clear_error(tmp_path):
    with pytest.raises(Sam3m4Error) as exc:
        load_teacher(tmp_path / "no" / "such" / "dir")
    _assert_one_line_how_to(exc.value)
    with pytest.raises(Sam3m4Error) as exc:  # a directory without config.json
        load_teacher(tmp_path)
    _assert_one_line_how_to(exc.value)
    assert "config.json" in str(exc.value)


def test_hub_id_without_cache_fails_offline_without_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the loader tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(Sam3m4Error) as exc:
        load_teacher("facebook/sam3", cache_dir=tmp_path / "hf-cache")
    _assert_one_line_how_to(exc.value)
    assert "facebook/sam3" in str(exc.value)
