"""Export wrappers: tuple-returning ``nn.Module`` views of a :class:`~sam3m4.models.student.Student`.

``torch.export`` wants plain tensors in and out, and the phone wants separate methods so that a phrase is
encoded once and its embedding cached. Each wrapper has static shapes for a given batch and the preset's
input size; no resizing happens inside (masks come out at stride 4, the app resizes them).

Methods (B = batch, S = preset input size, T = 32 tokens, D = model width, OUTPUT_NAMES below):

* ``forward`` (image path, cached prompt): pixel_values (B,3,S,S), prompt_tokens (B,T,D), prompt_mask (B,T)
  -> OUTPUT_NAMES;
* ``encode_text``: input_ids (B,T) int64, attention_mask (B,T) int64 -> prompt_tokens (B,T,D),
  prompt_mask (B,T) float32;
* ``encode_image``: pixel_values (B,3,S,S) -> p4 (B,D,S/4,S/4), p16 (B,D,S/16,S/16);
* ``decode``: p4, p16, prompt_tokens, prompt_mask -> OUTPUT_NAMES.

A phone ships ``encode_text`` + ``forward`` (or ``encode_text`` + ``encode_image`` + ``decode``): every
method carries its own copy of the weights it uses, so putting all four in one ``.pte`` duplicates the image
encoder. :class:`ExportableStudent` is the all-in-one (pixels + token ids -> OUTPUT_NAMES).

    programs = export_programs(build_student("tiny").eval(), batch=1)   # {name: ExportedProgram}
    # executorch: to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()]).to_executorch()
"""

from __future__ import annotations

import torch
from torch import nn

from sam3m4.models.student import Student
from sam3m4.models.text_encoder import VOCAB_SIZE, PromptEmbedding
from sam3m4.models.tokenizer import EOT_ID, SOT_ID
from sam3m4.models.layers import key_padding_bias

OUTPUT_NAMES = ("mask_logits", "query_logits", "boxes_xyxy", "presence_logit", "semantic_logits")
METHODS = ("forward", "encode_text", "encode_image", "decode")


class ExportableStudent(nn.Module):
    """pixel_values (B,3,S,S) in [-1,1], input_ids (B,T) int64, attention_mask (B,T) -> OUTPUT_NAMES tuple."""

    def __init__(self, model: Student):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, input_ids, attention_mask):
        return self.model(pixel_values, input_ids, attention_mask).as_tuple()


class ImagePath(nn.Module):
    """The per-frame path with a cached prompt: pixels + prompt embedding -> OUTPUT_NAMES tuple."""

    def __init__(self, model: Student):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, prompt_tokens, prompt_mask):
        feats = self.model.encode_image(pixel_values)
        return self.model.decode(feats, PromptEmbedding(prompt_tokens, prompt_mask)).as_tuple()


class TextEncoderMethod(nn.Module):
    """input_ids (B,T) int64 + attention_mask (B,T) -> (prompt_tokens (B,T,D), prompt_mask (B,T) float32)."""

    def __init__(self, model: Student):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.encode_text(input_ids, attention_mask).as_tuple()


class ImageEncoderMethod(nn.Module):
    """pixel_values (B,3,S,S) -> (p4, p16): the neck maps :class:`DecodeMethod` reads (p8 is only for training)."""

    def __init__(self, model: Student):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        p4, _, p16 = self.model.encode_image(pixel_values)
        return p4, p16


class DecodeMethod(nn.Module):
    """(p4, p16, prompt_tokens, prompt_mask) -> OUTPUT_NAMES tuple."""

    def __init__(self, model: Student):
        super().__init__()
        self.model = model

    def forward(self, p4, p16, prompt_tokens, prompt_mask):
        return self.model.decode((p4, None, p16), PromptEmbedding(prompt_tokens, prompt_mask)).as_tuple()


class DecoderPart(nn.Module):
    """The image path between the neck and the mask head (bench's latency split): stride-16 map + prompt ->
    (memory_map (B,D,h16,w16), queries (B,Q,D), text_vec (B,D), query_logits (B,Q), boxes_xyxy (B,Q,4),
    presence_logit (B,1)). Fusion encoder + query decoder + detection heads, as :meth:`Student.decode` runs them."""

    def __init__(self, model: Student):
        super().__init__()
        self.model = model

    def forward(self, p16, prompt_tokens, prompt_mask):

        m = self.model
        b, d, h, w = p16.shape
        tbias = key_padding_bias(prompt_mask)  # (B, 1, 1, T)
        memory = m.fusion(p16.flatten(2).transpose(1, 2), m.memory_pos, prompt_tokens, tbias)  # (B, N, D)
        queries, presence = m.decoder(prompt_tokens, tbias, memory, m.memory_pos)[-1]
        text_vec = m.heads.pooled_text(prompt_tokens, prompt_mask)  # (B, D)
        logits, boxes, presence_logit = m.heads(queries, presence, text_vec)
        return memory.transpose(1, 2).reshape(b, d, h, w), queries, text_vec, logits, boxes, presence_logit


class MaskHeadPart(nn.Module):
    """p4 (B,D,h4,w4), memory_map (B,D,h16,w16), queries (B,Q,D), text_vec (B,D) -> (mask_logits, semantic)."""

    def __init__(self, model: Student):
        super().__init__()
        self.model = model

    def forward(self, p4, memory_map, queries, text_vec):
        return self.model.mask_head(p4, memory_map, queries, text_vec)


COMPONENTS = ("encode_image", "decoder_part", "mask_head_part")
"""Wrappers of the image path's parts, timed one by one by ``sam3m4 bench`` (backbone + FPN, decoder, mask head)."""


def example_inputs(model: Student, method: str, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """Static example inputs of ``method`` for the model's preset (random pixels, a 3-token phrase)."""
    s, t, d = model.image_size, model.context_length, model.dim
    g4, g16 = model.mask_size, model.memory_grid
    pixels = torch.rand(batch, 3, s, s) * 2 - 1  # (B, 3, S, S) in [-1, 1]
    ids = torch.zeros(batch, t, dtype=torch.long)
    rows = model.text_encoder.token_embedding.num_embeddings
    # <start> token <end>, then padding 0; a restricted table (sam3m4.export.token_table.Vocabulary) holds sorted
    # CLIP ids, so its last two rows are <start_of_text> and <end_of_text> (the two largest ids) and row 0 the pad
    ids[:, :3] = torch.tensor([SOT_ID, 1000, EOT_ID] if rows == VOCAB_SIZE else [rows - 2, 1, rows - 1])
    mask = (ids != 0).long()  # (B, T)
    tokens = torch.randn(batch, t, d)
    fmask = mask.float()
    if method == "full":
        return pixels, ids, mask
    if method == "forward":
        return pixels, tokens, fmask
    if method == "encode_text":
        return ids, mask
    if method == "encode_image":
        return (pixels,)
    if method == "decode":
        return torch.randn(batch, d, g4, g4), torch.randn(batch, d, g16, g16), tokens, fmask
    if method == "decoder_part":
        return torch.randn(batch, d, g16, g16), tokens, fmask
    if method == "mask_head_part":
        return (torch.randn(batch, d, g4, g4), torch.randn(batch, d, g16, g16),
                torch.randn(batch, model.num_queries, d), torch.randn(batch, d))
    raise ValueError(f"export method '{method}': unknown; choices: full, {', '.join(METHODS)}")


_WRAPPERS = {"full": ExportableStudent, "forward": ImagePath, "encode_text": TextEncoderMethod,
             "encode_image": ImageEncoderMethod, "decode": DecodeMethod, "decoder_part": DecoderPart,
             "mask_head_part": MaskHeadPart}


def wrap(model: Student, method: str) -> nn.Module:
    """The tuple-returning module for ``method`` ('full' or one of :data:`METHODS`)."""
    if method not in _WRAPPERS:
        raise ValueError(f"export method '{method}': unknown; choices: {', '.join(_WRAPPERS)}")
    return _WRAPPERS[method](model)


def export_programs(model: Student, batch: int = 1, methods=METHODS) -> dict:
    """``torch.export.export`` each method with static shapes -> {method: ExportedProgram}.

    The model should be in eval mode (BatchNorm in the backbone); a dict of programs lowers to one multi-method
    ExecuTorch ``.pte`` with ``to_edge_transform_and_lower``.
    """
    if model.training:
        raise ValueError("export_programs: the student is in train mode; call model.eval() first (BatchNorm)")
    programs = {}
    with torch.no_grad():
        for name in methods:
            programs[name] = torch.export.export(wrap(model, name), example_inputs(model, name, batch))
    return programs
