"""The mobile student: image encoder + text encoder + fusion/decoder + mask head, with SAM 3's output contract.

    model = build_student("tiny").eval()                          # sam3m4.models.build
    out = model(pixel_values, input_ids, attention_mask)           # StudentOutput
    # phone-style: encode the phrase once, reuse it for every image/frame
    prompt = model.encode_text(input_ids, attention_mask)          # PromptEmbedding
    feats = model.encode_image(pixel_values)                       # (p4, p8, p16)
    out = model.decode(feats, prompt)                              # same numbers as model(...)

Inputs (the teacher's conventions, see :mod:`sam3m4.teacher.sam3`):

* ``pixel_values`` (B, 3, S, S) float32 RGB resized to the preset's S (``model.image_size``) without keeping
  aspect, rescaled to [0, 1] then normalised with mean = std = 0.5 -> range [-1, 1];
* ``input_ids`` (B, 32) int64 CLIP BPE ids and ``attention_mask`` (B, 32) (1 = valid) from
  :func:`sam3m4.models.tokenizer.get_tokenizer`.

Outputs live at stride 4 of the student's input (Hm = Wm = ceil(S / 4)); the teacher's live at stride
patch/4 of its own input, so distillation resizes one to the other. ``forward`` returns a dataclass; the
exportable tuple-returning modules are in :mod:`sam3m4.models.export_wrappers`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sam3m4.models.decoder import DetectionHeads, FusionEncoder, QueryDecoder
from sam3m4.models.image_encoder import NECK_STRIDES, ImageEncoder
from sam3m4.models.layers import key_padding_bias, sine_pos_2d
from sam3m4.models.mask_head import MaskHead
from sam3m4.models.text_encoder import PromptEmbedding, TextEncoder


@dataclass
class StudentOutput:
    """What the student predicts for B (image, phrase) pairs; same meaning as :class:`TeacherOutput`."""

    mask_logits: torch.Tensor
    """(B, Q, Hm, Wm) float: per-query mask logits at stride 4 of the input (sigmoid > 0.5 = foreground)."""
    query_logits: torch.Tensor
    """(B, Q) float in [-12, 12]: per-query match logits."""
    boxes_xyxy: torch.Tensor
    """(B, Q, 4) float in [0, 1]: XYXY boxes normalised by the input width/height."""
    presence_logit: torch.Tensor
    """(B, 1) float in [-10, 10]: 'is the phrase in the image' logit."""
    semantic_logits: torch.Tensor
    """(B, 1, Hm, Wm) float: semantic (union of instances) mask logits."""
    neck_features: tuple[torch.Tensor, ...]
    """FPN maps fine to coarse, (B, D, ceil(S/s), ceil(S/s)) for s = 4, 8, 16; text-independent. For Phase-1
    feature distillation against the teacher's ``fpn_features`` (stride patch/4, patch/2, patch) through a
    projection that lives in the distillation code."""
    query_embeddings: torch.Tensor
    """(B, Q, D): last decoder layer's (layer-normed) query states, the heads' input."""
    aux: dict | None = None
    """With ``decode(..., with_aux=True)``: every decoder layer's heads, like the teacher's ``aux``:
    ``query_logits`` (L, B, Q), ``boxes_xyxy`` (L, B, Q, 4), ``presence_logit`` (L, B, 1)."""

    @property
    def scores(self) -> torch.Tensor:
        """(B, Q) in [0, 1]: SAM 3's detection score sigmoid(query_logit) * sigmoid(presence_logit)."""
        return self.query_logits.sigmoid() * self.presence_logit.sigmoid()

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        """``(mask_logits, query_logits, boxes_xyxy, presence_logit, semantic_logits)`` (export order)."""
        return self.mask_logits, self.query_logits, self.boxes_xyxy, self.presence_logit, self.semantic_logits


def _grid(size: int, stride: int) -> int:
    """Feature-map side after log2(stride) stride-2 stages with 'same' padding: ceil at every stage."""
    for _ in range(stride.bit_length() - 1):
        size = (size + 1) // 2
    return size


class Student(nn.Module):
    """Mobile concept-segmentation model; see the module docstring for inputs and outputs.

    Built by :func:`sam3m4.models.build.build_student`; the parts are passed in already constructed.
    """

    def __init__(self, image_encoder: ImageEncoder, text_encoder: TextEncoder, fusion: FusionEncoder,
                 decoder: QueryDecoder, heads: DetectionHeads, mask_head: MaskHead, image_size: int,
                 preset: str = "custom"):
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.fusion = fusion
        self.decoder = decoder
        self.heads = heads
        self.mask_head = mask_head
        self.image_size = image_size
        self.preset = preset
        self.dim = image_encoder.dim
        self.num_queries = decoder.num_queries
        self.context_length = text_encoder.context_length
        self.memory_grid = _grid(image_size, NECK_STRIDES[-1])  # stride-16 side for the preset's input
        g = self.memory_grid
        self.register_buffer("memory_pos", sine_pos_2d(g, g, self.dim), persistent=False)  # (g*g, D)

    @property
    def mask_size(self) -> int:
        """Side of the mask/semantic logits for the preset's input (stride 4)."""
        return _grid(self.image_size, 4)

    # --- the three phone methods --------------------------------------------------------------------
    def encode_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, 3, S, S) in [-1, 1] -> neck maps (p4, p8, p16), each (B, D, ceil(S/s), ceil(S/s))."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values: expected (B, 3, H, W), got {tuple(pixel_values.shape)}")
        return self.image_encoder(pixel_values)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> PromptEmbedding:
        """CLIP ids (B, T<=32) + mask (B, T) -> :class:`PromptEmbedding` (tokens (B, T, D), mask (B, T)).

        Depends on the phrase only: compute once, reuse for any image (``prompt.expand(B)`` for a batch).
        """
        if input_ids.ndim != 2 or input_ids.shape[1] > self.context_length:
            raise ValueError(f"input_ids: expected (B, T<={self.context_length}), got {tuple(input_ids.shape)}")
        return self.text_encoder(input_ids, attention_mask)

    def decode(self, image_features: tuple[torch.Tensor, ...], prompt: PromptEmbedding,
               with_aux: bool = False, query_init: torch.Tensor | None = None) -> StudentOutput:
        """Neck maps from :meth:`encode_image` + a prompt from :meth:`encode_text` -> :class:`StudentOutput`.

        A batch-1 prompt is broadcast to the B images (one cached phrase, many frames). ``with_aux`` adds every
        decoder layer's heads (deep supervision); it is a Python flag, so exported graphs leave it False.
        ``query_init`` (B, Q, D) is added to the object queries (:mod:`sam3m4.models.video` carries the previous
        frame's queries this way).
        """
        p4, _, p16 = image_features
        b, d, h, w = p16.shape
        if prompt.tokens.shape[0] != b:  # static shapes: a trace-time decision, not graph control flow
            prompt = prompt.expand(b)
        text, text_mask = prompt.tokens, prompt.mask  # (B, T, D), (B, T)
        tbias = key_padding_bias(text_mask)  # (B, 1, 1, T)
        # (N, D): the buffer for the preset's size, else computed (a static choice under torch.export)
        pos = self.memory_pos if (h, w) == (self.memory_grid,) * 2 else sine_pos_2d(h, w, d, p16.device, p16.dtype)
        memory = p16.flatten(2).transpose(1, 2)  # (B, N, D)
        memory = self.fusion(memory, pos, text, tbias)  # (B, N, D) phrase-aware
        states = self.decoder(text, tbias, memory, pos, query_init)  # L x ((B, Q, D), (B, 1, D))
        text_vec = self.heads.pooled_text(text, text_mask)  # (B, D)
        queries, presence = states[-1]
        query_logits, boxes, presence_logit = self.heads(queries, presence, text_vec)
        memory_map = memory.transpose(1, 2).reshape(b, d, h, w)  # (B, D, H16, W16)
        masks, semantic = self.mask_head(p4, memory_map, queries, text_vec)
        aux = None
        if with_aux:
            per_layer = [self.heads(q, p, text_vec) for q, p in states]
            aux = {"query_logits": torch.stack([x[0] for x in per_layer]),  # (L, B, Q)
                   "boxes_xyxy": torch.stack([x[1] for x in per_layer]),  # (L, B, Q, 4)
                   "presence_logit": torch.stack([x[2] for x in per_layer])}  # (L, B, 1)
        return StudentOutput(mask_logits=masks, query_logits=query_logits, boxes_xyxy=boxes,
                             presence_logit=presence_logit, semantic_logits=semantic,
                             neck_features=tuple(image_features), query_embeddings=queries, aux=aux)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                with_aux: bool = False) -> StudentOutput:
        """B images (B, 3, S, S) in [-1, 1] + B tokenised phrases (B, 32) -> :class:`StudentOutput`."""
        return self.decode(self.encode_image(pixel_values), self.encode_text(input_ids, attention_mask), with_aux)
