"""Student text encoder: a small MobileCLIP-like causal transformer over SAM 3's CLIP tokens.

Input: the teacher's tokenisation (:mod:`sam3m4.models.tokenizer`): ``input_ids`` (B, 32) int64 CLIP BPE ids
(vocabulary 49408, ``<start_of_text>`` 49406 ... ``<end_of_text>`` 49407, padded with 0) and
``attention_mask`` (B, 32) int64/bool/float, 1 on start..end tokens.

Output: a :class:`PromptEmbedding` (tokens (B, 32, D), mask (B, 32) float 1/0). It depends only on the
noun phrase, so a phone computes it once per phrase and reuses it for every frame or image
(``Student.encode_text`` -> cache -> ``Student.decode``).

Size: the token table is ``49408 x embed_dim`` parameters, the bulk of the text tower, so it is kept narrow
(``embed_dim`` 128 in the production presets: 6.3M parameters, 12.6 MB fp16, ~3.5 MB int4) and projected
up to the transformer width. Attention is causal like CLIP's, so the pad tokens after ``<end_of_text>``
never change the valid positions; the mask only matters where the prompt is read (decoder).

    enc = TextEncoder(embed_dim=64, width=64, layers=2, heads=2, out_dim=64)
    prompt = enc(input_ids, attention_mask)        # PromptEmbedding(tokens (B,32,64), mask (B,32))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sam3m4.models.layers import MASK_NEG, Attention, FeedForward, LayerNorm, init_weights

VOCAB_SIZE = 49408  # CLIP BPE (same ids as SAM 3's text encoder)
CONTEXT_LENGTH = 32  # SAM 3's text context


@dataclass
class PromptEmbedding:
    """A noun phrase encoded once, reusable for any number of images/frames."""

    tokens: torch.Tensor
    """(B, T, D) float: per-token prompt features in the student's model width D (T = 32)."""
    mask: torch.Tensor
    """(B, T) float32, 1.0 = valid token (start..end), 0.0 = padding."""

    def as_tuple(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, mask)`` for exported programs, which take and return plain tensors."""
        return self.tokens, self.mask

    def expand(self, batch: int) -> "PromptEmbedding":
        """One cached prompt (batch 1) broadcast to ``batch`` images (a view, no copy)."""
        return PromptEmbedding(self.tokens.expand(batch, -1, -1), self.mask.expand(batch, -1))


class TextBlock(nn.Module):
    """Pre-norm transformer block: causal self-attention + GELU MLP, (B, T, W) -> (B, T, W)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = LayerNorm(width)
        self.mlp = FeedForward(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, bias)  # (B, T, W)
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """CLIP ids (B, T) + attention mask (B, T) -> :class:`PromptEmbedding` with tokens (B, T, out_dim)."""

    def __init__(self, embed_dim: int, width: int, layers: int, heads: int, out_dim: int,
                 mlp_ratio: float = 4.0, vocab_size: int = VOCAB_SIZE, context_length: int = CONTEXT_LENGTH):
        super().__init__()
        self.context_length = context_length
        self.vocab_size = vocab_size
        self.token_embedding = nn.Embedding(vocab_size, embed_dim)  # the size driver: vocab x embed_dim
        self.embed_proj = nn.Linear(embed_dim, width) if embed_dim != width else nn.Identity()
        self.pos_embedding = nn.Parameter(torch.zeros(context_length, width))
        self.blocks = nn.ModuleList(TextBlock(width, heads, mlp_ratio) for _ in range(layers))
        self.norm = LayerNorm(width)
        self.out_proj = nn.Linear(width, out_dim)
        causal = torch.full((context_length, context_length), MASK_NEG).triu(1)  # (T, T): 0 on/below diag
        self.register_buffer("causal_bias", causal, persistent=False)
        init_weights(self)
        nn.init.normal_(self.pos_embedding, std=0.01)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> PromptEmbedding:
        t = input_ids.shape[1]
        x = self.embed_proj(self.token_embedding(input_ids))  # (B, T, W)
        x = x + self.pos_embedding[:t]
        bias = self.causal_bias[:t, :t]  # (T, T), broadcast over batch and heads
        for block in self.blocks:
            x = block(x, bias)
        tokens = self.out_proj(self.norm(x))  # (B, T, D)
        return PromptEmbedding(tokens=tokens, mask=attention_mask.to(torch.float32))
