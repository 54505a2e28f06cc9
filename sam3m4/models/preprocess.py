"""Image preprocessing shared by training, the Predictor and export: the student's pixel format.

HWC uint8 RGB of any size -> (B, 3, S, S) float32 in [-1, 1]: resized to S x S with PIL bilinear (no aspect
kept, as SAM 3 does), then x / 127.5 - 1 (mean = std = 0.5, SAM 3's normalisation).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image


def resize_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, PIL bilinear; returned as is when already that size."""
    if image.shape[:2] == (size, size):
        return np.array(image, dtype=np.uint8)  # a writable copy (torch.from_numpy needs one)
    return np.array(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def uint8_to_pixels(batch: torch.Tensor) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float32 in [-1, 1]."""
    return batch.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def to_pixels(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """B HWC uint8 RGB images -> (B, 3, size, size) float32 in [-1, 1]."""
    return uint8_to_pixels(torch.stack([torch.from_numpy(resize_uint8(im, size)) for im in images]))
