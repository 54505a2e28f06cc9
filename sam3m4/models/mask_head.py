"""Student mask head: per-query masks and the semantic (union) map at stride 4 of the input.

Pixel embeddings are the stride-4 neck map plus the phrase-aware fused memory (stride 16) projected and
bilinearly upsampled, then a 1x1 conv to the mask width M. A query's mask logits are the dot product of its
mask embedding (MLP of the decoder state) with every pixel embedding (MaskFormer / SAM 3); the semantic
logits are the dot product of an embedding of the pooled prompt with the pixel embeddings. All 1x1 convs
and matmuls: cheap at stride 4 (126 x 126 at 504 px).

    head = MaskHead(dim=64, mask_dim=32)
    masks, semantic = head(p4, memory_map, queries, text_vec)   # (B,Q,H4,W4), (B,1,H4,W4)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam3m4.models.layers import MLP, init_weights


class MaskHead(nn.Module):
    """(p4 (B, D, H4, W4), memory map (B, D, H16, W16), queries (B, Q, D), text_vec (B, D))
    -> mask logits (B, Q, H4, W4), semantic logits (B, 1, H4, W4)."""

    def __init__(self, dim: int, mask_dim: int):
        super().__init__()
        self.memory_proj = nn.Conv2d(dim, dim, 1)
        self.pixel_proj = nn.Conv2d(dim, mask_dim, 1)
        self.mask_mlp = MLP(dim, dim, mask_dim, 3)
        self.semantic_mlp = MLP(dim, dim, mask_dim, 2)
        self.semantic_bias = nn.Parameter(torch.zeros(()))
        init_weights(self)

    def pixel_embeddings(self, p4: torch.Tensor, memory_map: torch.Tensor) -> torch.Tensor:
        """Stride-4 neck map (B, D, H4, W4) + fused memory map (B, D, H16, W16) -> (B, M, H4, W4)."""
        up = F.interpolate(self.memory_proj(memory_map), size=p4.shape[-2:], mode="bilinear",
                           align_corners=False)  # (B, D, H4, W4)
        return self.pixel_proj(F.relu(p4 + up))  # (B, M, H4, W4)

    def forward(self, p4, memory_map, queries, text_vec):
        pixel = self.pixel_embeddings(p4, memory_map)  # (B, M, H4, W4)
        b, m, h, w = pixel.shape
        flat = pixel.reshape(b, m, h * w)  # (B, M, H4*W4)
        mask_embed = self.mask_mlp(queries)  # (B, Q, M)
        masks = torch.bmm(mask_embed, flat).reshape(b, -1, h, w)  # (B, Q, H4, W4)
        sem_embed = self.semantic_mlp(text_vec).reshape(b, 1, m)  # (B, 1, M)
        semantic = (torch.bmm(sem_embed, flat) + self.semantic_bias).reshape(b, 1, h, w)  # (B, 1, H4, W4)
        return masks, semantic
