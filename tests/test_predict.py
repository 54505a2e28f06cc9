"""Predictor API and `sam3m4 predict`: masks at image resolution, cached prompts, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sam3m4.checkpoint import save_checkpoint
from sam3m4.errors import DataFormatError
from sam3m4.models import build_student
from sam3m4.predict import Predictor, overlay


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_student("tiny")
    out = tmp_path_factory.mktemp("ckpt")
    res = save_checkpoint(out, phase=2, epoch=0, step=1, state={"model": model.state_dict(), "preset": "tiny"})
    return res["path"]


def test_predict_shapes_and_prompt_cache(ckpt):
    predictor = Predictor.from_checkpoint(ckpt, threshold=0.0)  # keep every query: shapes are checked
    image = np.random.default_rng(0).integers(0, 255, (97, 131, 3), dtype=np.uint8)
    pred = predictor.predict(image, "red circle")
    q = len(pred.all_scores)
    assert pred.masks.shape == (q, 97, 131) and pred.masks.dtype == bool
    assert pred.scores.shape == (q,) and pred.boxes.shape == (q, 4) and 0.0 <= pred.presence <= 1.0
    first = predictor.prompt("red circle")
    predictor.predict(image, "red circle ")
    assert predictor.prompt("red circle") is first and len(predictor._prompts) == 1


def test_threshold_keeps_only_confident_queries(ckpt):
    predictor = Predictor.from_checkpoint(ckpt, threshold=0.5)
    pred = predictor.predict(np.zeros((64, 64, 3), np.uint8), "star")
    assert np.all(pred.scores >= 0.5) and len(pred.masks) == int((pred.all_scores >= 0.5).sum())


def test_bad_checkpoint_and_image_are_clear_errors(tmp_path, ckpt):
    broken = tmp_path / "phase2_epoch0_step1.pt"
    broken.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(DataFormatError, match="corrupt or truncated"):
        Predictor.from_checkpoint(broken)
    with pytest.raises(ValueError, match="uint8"):
        Predictor.from_checkpoint(ckpt).predict(np.zeros((8, 8), np.float32), "star")


def test_overlay_tints_masked_pixels():
    image = np.zeros((10, 10, 3), np.uint8)
    mask = np.zeros((1, 10, 10), bool)
    mask[0, 2:6, 2:6] = True
    out = overlay(image, mask)
    assert out[4, 4].sum() > 0 and out[8, 8].sum() == 0


def test_cli_writes_masks_overlay_and_summary(tmp_path, ckpt):
    img = tmp_path / "photo.png"
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(img)
    out = subprocess.run([sys.executable, "-m", "sam3m4", "predict", "--ckpt", str(ckpt), "--image", str(img),
                          "--prompt", "blue square", "--out", str(tmp_path / "out"), "--threshold", "0"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "out" / "photo.json").read_text())
    queries = build_student("tiny").decoder.num_queries  # scores are >= 0: threshold 0 keeps every query
    assert summary["prompt"] == "blue square" and summary["instances"] == queries == len(summary["scores"])
    assert Image.open(tmp_path / "out" / "photo_overlay.png").size == (64, 48)
    bad = subprocess.run([sys.executable, "-m", "sam3m4", "predict", "--ckpt", str(ckpt), "--image",
                          str(tmp_path / "nope.jpg"), "--prompt", "x", "--out", str(tmp_path / "o2")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "nope.jpg" in bad.stderr and bad.stderr.count("\n") == 1
