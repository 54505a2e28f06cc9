"""Student image encoder: a timm mobile backbone (``features_only=True``) plus a light FPN neck.

Input is SAM 3's pixel format: ``pixel_values`` (B, 3, S, S) float32 RGB, resized to the preset's S x S
without keeping aspect (like SAM 3), rescaled to [0, 1] and normalised with mean = std = 0.5, so values lie
in [-1, 1]. The encoder converts that to the ImageNet normalisation timm backbones are trained with
(a fixed per-channel affine, foldable into the first convolution), so an ImageNet-pretrained backbone can be
loaded later without changing the student's input contract. Backbones are always built with
``pretrained=False`` (no network here).

Output: the neck maps fine to coarse, each (B, D, ceil(S/s), ceil(S/s)) for strides s = 4, 8, 16; the
stride-32 backbone map only feeds the top-down path. Text-independent: computed once per image.

    enc = ImageEncoder("efficientvit_b0", dim=64)
    p4, p8, p16 = enc(torch.zeros(1, 3, 224, 224))   # (1,64,56,56), (1,64,28,28), (1,64,14,14)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam3m4.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONE_STRIDES = (4, 8, 16, 32)  # backbone levels the FPN reads
NECK_STRIDES = (4, 8, 16)  # neck levels returned (fine to coarse)


def create_backbone(name: str) -> nn.Module:
    """timm ``name`` with ``features_only=True`` returning exactly the stride 4/8/16/32 maps (random init)."""
    import timm

    try:
        model = timm.create_model(name, pretrained=False, features_only=True)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ConfigError(f"backbone '{name}': {exc}") from exc
    reductions = list(model.feature_info.reduction())
    if reductions[-len(BACKBONE_STRIDES):] != list(BACKBONE_STRIDES) or len(reductions) != len(BACKBONE_STRIDES):
        missing = [s for s in BACKBONE_STRIDES if s not in reductions]
        if missing:
            raise ConfigError(f"backbone '{name}': no feature map at stride(s) {missing} (has {reductions})")
        indices = tuple(model.feature_info.out_indices[reductions.index(s)] for s in BACKBONE_STRIDES)
        model = timm.create_model(name, pretrained=False, features_only=True, out_indices=indices)
    return model


class SeparableConv(nn.Module):
    """3x3 depthwise + 1x1 pointwise conv (+ ReLU between): (B, D, H, W) -> (B, D, H, W)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.pw = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(F.relu(self.dw(x)))


class FPNNeck(nn.Module):
    """Top-down FPN: 1x1 laterals to width D, bilinear upsample + add, separable 3x3 smoothing per output.

    ``forward([c4, c8, c16, c32])`` (backbone maps, fine to coarse) -> ``(p4, p8, p16)`` each (B, D, h_s, w_s).
    Upsampling uses the next finer map's static size, so odd sizes (504 px -> 63 at stride 8) work.
    """

    def __init__(self, in_channels: list[int], dim: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.smooth = nn.ModuleList(SeparableConv(dim) for _ in NECK_STRIDES)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]  # each (B, D, h_s, w_s)
        x = laterals[-1]  # (B, D, h32, w32)
        merged = []
        for lat in reversed(laterals[:-1]):  # s16, s8, s4
            x = lat + F.interpolate(x, size=lat.shape[-2:], mode="bilinear", align_corners=False)  # (B, D, h, w)
            merged.append(x)
        merged = merged[::-1]  # fine to coarse: s4, s8, s16
        return tuple(smooth(m) for smooth, m in zip(self.smooth, merged))


class ImageEncoder(nn.Module):
    """Backbone + FPN: ``pixel_values`` (B, 3, S, S) in [-1, 1] -> (p4, p8, p16), each (B, dim, h_s, w_s)."""

    def __init__(self, backbone: str, dim: int):
        super().__init__()
        self.backbone_name = backbone
        self.backbone = create_backbone(backbone)
        self.neck = FPNNeck(list(self.backbone.feature_info.channels()), dim)
        self.dim = dim
        # [-1, 1] (mean = std = 0.5) -> ImageNet normalisation: x_in = x * scale + shift
        mean = torch.tensor(IMAGENET_MEAN)
        std = torch.tensor(IMAGENET_STD)
        self.register_buffer("input_scale", (0.5 / std).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", ((0.5 - mean) / std).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = pixel_values * self.input_scale + self.input_shift  # (B, 3, S, S) ImageNet-normalised
        feats = self.backbone(x)  # [c4, c8, c16, c32], channels per timm feature_info
        return self.neck(feats)  # (p4, p8, p16)
