"""Student prompt fusion and DETR-style decoder with a presence token (the light version of SAM 3's
DETR encoder + decoder + scoring heads).

1. :class:`FusionEncoder`: the stride-16 image tokens attend to themselves (optional) and to the prompt
   tokens, so the image memory becomes phrase-aware (SAM 3's DETR encoder does the same with 6 layers).
2. :class:`QueryDecoder`: Q learned object queries plus one learned presence token attend to each other, to
   the prompt tokens and to the fused image memory (pre-norm layers).
3. Heads: per-query match logit = scaled dot product of the query with the mean-pooled prompt (SAM 3's
   ``DotProductScoring``), box = sigmoid(learned reference box + MLP offset) in cxcywh -> XYXY in [0, 1],
   presence logit = MLP of the presence token. Logits are clamped like the teacher's (query [-12, 12],
   presence [-10, 10]).

Shapes: image memory (B, N, D) with N = h16 * w16, prompt tokens (B, T, D) + mask (B, T) float 1 = valid.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sam3m4.models.layers import MLP, Attention, FeedForward, LayerNorm, init_weights, masked_mean

QUERY_LOGIT_CLAMP = 12.0  # Sam3DotProductScoring clamps to [-12, 12]
PRESENCE_LOGIT_CLAMP = 10.0  # Sam3 decoder clamps presence logits to [-10, 10]


class FusionLayer(nn.Module):
    """Image tokens: [self-attention] -> cross-attention to prompt tokens -> MLP. (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, self_attn: bool):
        super().__init__()
        self.self_attn = Attention(dim, heads) if self_attn else None
        self.norm_sa = LayerNorm(dim) if self_attn else None
        self.norm_ca = LayerNorm(dim)
        self.cross_attn = Attention(dim, heads)
        self.norm_mlp = LayerNorm(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x, pos, text, text_bias):
        if self.self_attn is not None:
            h = self.norm_sa(x)
            x = x + self.self_attn(h + pos, h + pos, h)  # (B, N, D)
        x = x + self.cross_attn(self.norm_ca(x) + pos, text, text, text_bias)  # (B, N, D)
        return x + self.mlp(self.norm_mlp(x))


class FusionEncoder(nn.Module):
    """Stack of :class:`FusionLayer`: image memory (B, N, D) + pos (N, D) + prompt -> fused memory (B, N, D)."""

    def __init__(self, dim: int, heads: int, layers: int, mlp_ratio: float = 4.0, self_attn: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(FusionLayer(dim, heads, mlp_ratio, self_attn) for _ in range(layers))
        self.norm = LayerNorm(dim)
        init_weights(self)

    def forward(self, memory, pos, text, text_bias):
        for layer in self.layers:
            memory = layer(memory, pos, text, text_bias)
        return self.norm(memory)


class DecoderLayer(nn.Module):
    """Queries (B, Q+1, D): self-attn -> cross-attn prompt -> cross-attn image memory -> MLP (pre-norm)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.norm2 = LayerNorm(dim)
        self.text_attn = Attention(dim, heads)
        self.norm3 = LayerNorm(dim)
        self.image_attn = Attention(dim, heads)
        self.norm4 = LayerNorm(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x, query_pos, text, text_bias, memory, memory_pos):
        n = self.norm1(x)
        x = x + self.self_attn(n + query_pos, n + query_pos, n)  # (B, Q+1, D)
        x = x + self.text_attn(self.norm2(x) + query_pos, text, text, text_bias)  # (B, Q+1, D)
        x = x + self.image_attn(self.norm3(x) + query_pos, memory + memory_pos, memory)  # (B, Q+1, D)
        return x + self.mlp(self.norm4(x))


class QueryDecoder(nn.Module):
    """Learned object queries + a presence token decoded against prompt and fused image memory.

    ``forward(text, text_bias, memory, memory_pos)`` -> list over layers of (queries (B, Q, D),
    presence (B, 1, D)), each already layer-normed (the heads' input).
    """

    def __init__(self, dim: int, heads: int, layers: int, num_queries: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.num_queries = num_queries
        self.query_embed = nn.Parameter(torch.zeros(num_queries + 1, dim))  # last row: presence token
        self.query_pos = nn.Parameter(torch.zeros(num_queries + 1, dim))
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, mlp_ratio) for _ in range(layers))
        self.norm = LayerNorm(dim)
        init_weights(self)
        nn.init.normal_(self.query_embed, std=0.02)
        nn.init.normal_(self.query_pos, std=0.02)

    def forward(self, text, text_bias, memory, memory_pos, query_init=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``query_init`` (B, Q, D) or None: added to the learned object queries (the video tracker passes the
        previous frame's queries through, so query q keeps following the same object)."""
        b = memory.shape[0]
        n, d = self.query_embed.shape
        x = self.query_embed.reshape(1, n, d).expand(b, n, d)  # (B, Q+1, D)
        if query_init is not None:
            x = x + torch.cat([query_init, query_init.new_zeros(b, 1, d)], dim=1)  # presence token untouched
        pos = self.query_pos.reshape(1, n, d)  # (1, Q+1, D)
        states = []
        for layer in self.layers:
            x = layer(x, pos, text, text_bias, memory, memory_pos)
            h = self.norm(x)  # (B, Q+1, D)
            states.append((h[:, : self.num_queries], h[:, self.num_queries:]))  # (B, Q, D), (B, 1, D)
        return states


class DetectionHeads(nn.Module):
    """Per-layer heads: query match logits (B, Q), boxes XYXY in [0, 1] (B, Q, 4), presence logit (B, 1)."""

    def __init__(self, dim: int, num_queries: int):
        super().__init__()
        self.text_mlp = MLP(dim, dim, dim, 2)
        self.text_proj = nn.Linear(dim, dim)
        self.query_proj = nn.Linear(dim, dim)
        self.score_bias = nn.Parameter(torch.zeros(()))
        self.box_mlp = MLP(dim, dim, 4, 3)
        self.presence_mlp = MLP(dim, dim, 1, 3)
        # reference boxes (cx, cy, w, h) in logit space: a spread of centres, 0.1-sized boxes
        g = torch.Generator().manual_seed(0)
        ref = torch.cat([torch.rand(num_queries, 2, generator=g) * 0.8 + 0.1, torch.full((num_queries, 2), 0.1)], 1)
        self.ref_boxes = nn.Parameter(torch.logit(ref))  # (Q, 4)
        # cxcywh -> xyxy as a constant matmul (lowers to one delegated op, unlike unbind + stack)
        to_xyxy = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]])
        self.register_buffer("cxcywh_to_xyxy", to_xyxy, persistent=False)  # (4, 4)
        init_weights(self)
        nn.init.zeros_(self.box_mlp.layers[-1].weight)  # start at the reference boxes
        nn.init.zeros_(self.box_mlp.layers[-1].bias)

    def pooled_text(self, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Prompt tokens (B, T, D) + mask (B, T) -> projected pooled prompt (B, D) for scoring."""
        pooled = masked_mean(text, text_mask)  # (B, D)
        pooled = pooled + self.text_mlp(pooled)
        return self.text_proj(pooled)  # (B, D)

    def forward(self, queries, presence, text_vec):
        """``queries`` (B, Q, D), ``presence`` (B, 1, D), ``text_vec`` (B, D) from :meth:`pooled_text`
        -> query logits (B, Q), boxes XYXY (B, Q, 4) in [0, 1], presence logit (B, 1)."""
        b, nq, d = queries.shape
        q = self.query_proj(queries)  # (B, Q, D)
        logits = torch.bmm(q, text_vec[:, :, None]).reshape(b, nq) / math.sqrt(d) + self.score_bias  # (B, Q)
        logits = logits.clamp(-QUERY_LOGIT_CLAMP, QUERY_LOGIT_CLAMP)
        cxcywh = (self.ref_boxes + self.box_mlp(queries)).sigmoid()  # (B, Q, 4)
        boxes = torch.matmul(cxcywh, self.cxcywh_to_xyxy).clamp(0.0, 1.0)  # (B, Q, 4) XYXY
        presence_logit = self.presence_mlp(presence).reshape(b, 1)  # (B, 1)
        return logits, boxes, presence_logit.clamp(-PRESENCE_LOGIT_CLAMP, PRESENCE_LOGIT_CLAMP)
