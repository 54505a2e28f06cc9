"""A 4-bit token table that the stock ExecuTorch CPU kernels can run: int8 rows + per-group scales.

In the quantized modes the CLIP token table (``nn.Embedding``, V x D, V = 49408) holds a torchao
``IntxUnpackedToInt8Tensor``: 4-bit values stored one per int8, one fp32 scale per group of 32. Exported as is,
ExecuTorch's quant fusion turns the lookup into ``quantized_decomposed::embedding_4bit``, a kernel the pip
runtime does not register (seen here: ``Missing operator: [1] quantized_decomposed::embedding_4bit.out``), and
without fusion ``torchao::dequantize_affine`` is missing as well. Phone builds that link ExecuTorch's quantized
kernels can run the fused op; any runtime can run this module's rewrite:

    ids (B,T) int64 -> rows = embedding(ids, qdata) (B,T,D) int8, s = embedding(ids, scale) (B,T,D/32)
                    -> (rows - zero_point) * s per group -> (B,T,D) float32

which is the same arithmetic as torchao's ``dequantize_affine`` followed by the lookup (bit-exact in fp32), and
stores the table at 1 byte per weight (int8 rows; nibble packing would need the quantized kernels).

    with int8_row_tables(model) as n:    # swaps every quantized nn.Embedding, restores them on exit
        ep = torch.export.export(...)
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class Int8RowEmbedding(nn.Module):
    """Lookup of a group-quantized table: ids (...) int64 -> (..., D) in the table's float dtype."""

    def __init__(self, weight):
        super().__init__()
        v, d = weight.qdata.shape
        self.group = int(weight.block_size[-1])
        if tuple(weight.block_size) != (1, self.group) or d % self.group:
            raise ValueError(f"token table: block_size {tuple(weight.block_size)} is not per-row groups of D={d}")
        self.register_buffer("qdata", weight.qdata.detach().clone())  # (V, D) int8, values in the int4 range
        self.register_buffer("scale", weight.scale.detach().clone().reshape(v, d // self.group))  # (V, D/g)
        zero = weight.zero_point.detach().clone().reshape(v, d // self.group)
        self.register_buffer("zero_point", zero if torch.count_nonzero(zero) else None)  # None: symmetric
        self.out_dtype = weight.dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.qdata).float()  # (..., D)
        rows = rows.unflatten(-1, (-1, self.group))  # (..., D/g, g)
        if self.zero_point is not None:
            rows = rows - F.embedding(ids, self.zero_point).float()[..., None]
        scale = F.embedding(ids, self.scale).float()[..., None]  # (..., D/g, 1)
        return (rows * scale).flatten(-2).to(self.out_dtype)


def _quantized_embeddings(model: nn.Module):
    from torchao.quantization import IntxUnpackedToInt8Tensor

    for name, module in model.named_modules():
        if type(module) is nn.Embedding and isinstance(module.weight, IntxUnpackedToInt8Tensor):
            if module.padding_idx is not None or module.max_norm is not None:
                raise ValueError(f"{name}: padding_idx / max_norm embeddings are not supported by the rewrite")
            yield name, module


@contextmanager
def int8_row_tables(model: nn.Module):
    """Swap every torchao-quantized ``nn.Embedding`` of ``model`` for :class:`Int8RowEmbedding` (same numbers),
    yield how many were swapped, and put the originals back on exit (also on error)."""
    swapped = []
    try:
        for name, module in list(_quantized_embeddings(model)):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, Int8RowEmbedding(module.weight))
            swapped.append((parent, attr, module))
        yield len(swapped)
    finally:
        for parent, attr, module in swapped:
            setattr(parent, attr, module)
