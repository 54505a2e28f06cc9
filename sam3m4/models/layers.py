"""Small building blocks shared by the student's text encoder, decoder and mask head.

Everything here is written with plain ``matmul``/``softmax``/``LayerNorm``/``Linear`` so that
``torch.export`` gives a static graph that lowers to ExecuTorch XNNPACK and Core ML without special
attention kernels: no boolean indexing, no data-dependent Python control flow, masks are additive float
biases (0 = keep, ``MASK_NEG`` = drop) rather than boolean masks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MASK_NEG = -1.0e4  # additive attention bias for a dropped key; finite so fp16 softmax stays NaN-free


def key_padding_bias(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) float/int/bool, 1 = valid key -> (B, 1, 1, T) float additive bias (0 valid, ``MASK_NEG`` pad)."""
    b, t = mask.shape
    return (1.0 - mask.to(torch.float32)).reshape(b, 1, 1, t) * MASK_NEG  # (B, 1, 1, T)


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the valid tokens: ``tokens`` (B, T, D), ``mask`` (B, T) 1 = valid -> (B, D).

    A row with no valid token gives zeros (the denominator is clamped to 1), never NaN.
    """
    b, t, d = tokens.shape
    m = mask.to(tokens.dtype).reshape(b, 1, t)  # (B, 1, T)
    total = torch.bmm(m, tokens)  # (B, 1, D)
    # count as a 4-D mean (XNNPACK delegates mean over dims (2, 3) of 4-D tensors, not sum)
    count = m.reshape(b, 1, t, 1).mean(dim=(2, 3), keepdim=True).reshape(b, 1, 1) * t  # (B, 1, 1)
    return (total / count.clamp(min=1.0)).reshape(b, d)  # (B, D)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dim, written as 4-D mean/rsqrt ops (same parameters and numbers).

    ExecuTorch's XNNPACK partitioner has no layer-norm op and its mean is only delegated for 4-D tensors over
    dims (2, 3); viewing (..., D) as (R, 1, D, 1) keeps every op of the norm inside the delegate instead of
    splitting the graph at each norm. Core ML's converter fuses the pattern back into ``layer_norm``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x4 = x.reshape(-1, 1, shape[-1], 1)  # (R, 1, D, 1)
        mean = x4.mean(dim=(2, 3), keepdim=True)  # (R, 1, 1, 1)
        xc = x4 - mean
        var = (xc * xc).mean(dim=(2, 3), keepdim=True)  # (R, 1, 1, 1) biased, like nn.LayerNorm
        y = (xc * torch.rsqrt(var + self.eps)).reshape(shape)  # (..., D)
        return y * self.weight + self.bias


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v projections, plain matmul + softmax.

    ``forward(q (B, Nq, D), k (B, Nk, D), v (B, Nk, D), bias=None) -> (B, Nq, D)``; ``bias`` is an additive
    float tensor broadcastable to (B, H, Nq, Nk) (see :func:`key_padding_bias`).
    """

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        kv_dim = kv_dim or dim
        self.heads = heads
        self.head_dim = dim // heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(kv_dim, dim)
        self.v_proj = nn.Linear(kv_dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        b, nq, _ = q.shape
        nk = k.shape[1]
        h, hd = self.heads, self.head_dim
        # 3-D bmm on (B*H, N, hd) rather than 4-D matmul: no broadcast expand copies in the exported graph
        q = self.q_proj(q).reshape(b, nq, h, hd).transpose(1, 2).reshape(b * h, nq, hd)  # (B*H, Nq, hd)
        k = self.k_proj(k).reshape(b, nk, h, hd).transpose(1, 2).reshape(b * h, nk, hd)  # (B*H, Nk, hd)
        v = self.v_proj(v).reshape(b, nk, h, hd).transpose(1, 2).reshape(b * h, nk, hd)  # (B*H, Nk, hd)
        attn = torch.bmm(q * (1.0 / math.sqrt(hd)), k.transpose(1, 2))  # (B*H, Nq, Nk)
        if bias is not None:
            attn = (attn.reshape(b, h, nq, nk) + bias).reshape(b * h, nq, nk)
        out = torch.bmm(attn.softmax(dim=-1), v)  # (B*H, Nq, hd)
        return self.out_proj(out.reshape(b, h, nq, hd).transpose(1, 2).reshape(b, nq, h * hd))  # (B, Nq, D)


class FeedForward(nn.Module):
    """Linear -> GELU (tanh approximation, lowers everywhere) -> Linear: (..., D) -> (..., D)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class MLP(nn.Module):
    """``layers`` Linear layers with ReLU between them: (..., in_dim) -> (..., out_dim) (DETR's head MLP)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int):
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def sine_pos_2d(height: int, width: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """DETR's normalised 2-D sine position encoding for an (height, width) grid -> (height*width, dim).

    The first dim/2 channels encode y, the rest x; positions are normalised to (0, 2*pi]. ``height`` and
    ``width`` are Python ints (static under ``torch.export``), so the result is a constant of the graph.
    """
    if dim % 4:
        raise ValueError(f"sine position width {dim} must be divisible by 4")
    npf = dim // 4
    y = (torch.arange(height, device=device, dtype=dtype) + 1.0) / height * (2 * math.pi)  # (h,)
    x = (torch.arange(width, device=device, dtype=dtype) + 1.0) / width * (2 * math.pi)  # (w,)
    freq = 10000.0 ** (torch.arange(npf, device=device, dtype=dtype) / npf)  # (npf,)
    py = y[:, None] / freq  # (h, npf)
    px = x[:, None] / freq  # (w, npf)
    py = torch.cat([py.sin(), py.cos()], dim=-1)  # (h, dim/2)
    px = torch.cat([px.sin(), px.cos()], dim=-1)  # (w, dim/2)
    pos = torch.cat([py[:, None, :].expand(height, width, 2 * npf),
                     px[None, :, :].expand(height, width, 2 * npf)], dim=-1)  # (h, w, dim)
    return pos.reshape(height * width, dim)


def init_weights(module: nn.Module) -> None:
    """Width-aware init: Linear weights truncated-normal with std 1 / sqrt(fan_in) (variance-preserving; the
    ViT/DETR default std 0.02 shrinks every 64-wide layer's output ~6x, which left the tiny student's presence
    and score heads constant after Phase 2), Embedding weights N(0, 0.02), zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=m.in_features ** -0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.trunc_normal_(m.weight, std=0.02)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
