"""A full-size SAM 3 checkpoint with random weights: the rehearsal's stand-in for ``facebook/sam3``.

``facebook/sam3`` is one ``Sam3VideoModel`` checkpoint (detector + tracker, ``model_type: sam3_video``):
``Sam3Model.from_pretrained`` reads its detector, ``Sam3VideoModel.from_pretrained`` all of it. This module
writes the same kind of folder from the library's default configs (``Sam3VideoConfig()``: ViT 1024-d x 32
layers at 1008 px, 200 queries, 288 x 288 masks) with random weights, so every stage can run the real path at
real dimensions without the gated weights; the image teacher then loads through the same
:func:`sam3m4.teacher.sam3.load_teacher` as ``facebook/sam3``.

    sam3m4 teacher full --out checkpoints/rehearsal/teacher/sam3-full-random      # ~3.4 GB, about a minute
    write_random_teacher("out", config=video_config(build_config()))              # any size (tests: tiny)

The folder also gets ``sam3m4_teacher.json``: parameter counts (detector, whole checkpoint), seed, and that
the weights are random (no result measured with it says anything about SAM 3's accuracy).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from sam3m4.fileio import atomic_folder, atomic_write_json

INFO_FILE = "sam3m4_teacher.json"


def write_random_teacher(out_dir: str | Path, *, seed: int = 0, config=None) -> dict:
    """Build ``Sam3VideoModel(config)`` (default: ``Sam3VideoConfig()``, SAM 3's own sizes) with random
    weights from ``seed``, ``save_pretrained`` it (safetensors) and the matching ``Sam3ImageProcessor`` to
    ``out_dir``; returns (and writes to ``sam3m4_teacher.json``) its facts: parameter counts, image size,
    queries, mask side, seconds to build and to save, bytes on disk."""
    from transformers import Sam3ImageProcessor, Sam3VideoConfig, Sam3VideoModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = config if config is not None else Sam3VideoConfig()
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = Sam3VideoModel(config).eval()
    built = time.perf_counter() - t0
    det = config.detector_config
    side = int(det.vision_config.backbone_config.image_size)
    grid = side // int(det.vision_config.backbone_config.patch_size)
    t0 = time.perf_counter()
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        Sam3ImageProcessor(size={"height": side, "width": side}).save_pretrained(tmp)
    saved = time.perf_counter() - t0
    info = {
        "format": "sam3m4-random-teacher-v1",
        "weights": "random (not SAM 3's trained weights): shapes, memory and time are real, accuracy is not",
        "seed": seed,
        "detector_params": sum(p.numel() for p in model.detector_model.parameters()),
        "checkpoint_params": sum(p.numel() for p in model.parameters()),
        "image_size": side,
        "num_queries": int(det.detr_decoder_config.num_queries),
        "mask_side": 4 * grid,
        "build_s": round(built, 1),
        "save_s": round(saved, 1),
        "bytes": sum(f.stat().st_size for f in out.iterdir() if f.is_file()),
    }
    atomic_write_json(out / INFO_FILE, info, indent=1)
    return info
