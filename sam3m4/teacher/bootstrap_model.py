"""The embedded default teacher's model parts: a SAM 3-architecture ``Sam3Config`` from flat sizes, the
width-aware re-initialisation that lets it train from scratch, and the training-only dense phrase head.

    config = build_config(image_size=168, hidden_size=64)      # transformers Sam3Config, dropout off
    model = Sam3Model(config); reinit_for_small_width(model)

Used by the bootstrap recipe (:mod:`sam3m4.teacher.bootstrap`); ``MODEL_DEFAULTS`` are mirrored by
``configs/teacher_bootstrap.yaml``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from sam3m4.errors import ConfigError
from sam3m4.models.layers import masked_mean

MODEL_DEFAULTS = dict(
    image_size=168,  # model input (px, multiple of patch_size); masks come out at 4 * image_size / patch
    patch_size=14,
    hidden_size=64,  # ViT width = FPN/DETR/mask-decoder width = text width
    vit_layers=3,
    vit_window=6,  # windowed attention size (tokens); the last ViT layer is global
    text_layers=2,
    encoder_layers=1,
    decoder_layers=2,
    num_queries=16,
    num_heads=2,
    vit_hidden_size=0,  # ViT width (0 = hidden_size); the FPN neck projects it to hidden_size, as SAM 3's 1024 -> 256
    vit_mlp_ratio=2,  # ViT MLP width = vit_mlp_ratio * ViT width (SAM 3: 4)
    vit_heads=0,  # ViT attention heads (0 = num_heads)
)

def build_config(**kw):
    """A SAM 3-architecture ``Sam3Config`` from flat sizes (see ``MODEL_DEFAULTS``); dropout off."""
    from transformers import Sam3Config

    c = {**MODEL_DEFAULTS, **kw}
    s, p, h, nh = c["image_size"], c["patch_size"], c["hidden_size"], c["num_heads"]
    if s % p:
        raise ConfigError(f"image_size: {s} is not a multiple of patch_size {p}")
    g = s // p
    ffn = 2 * h
    vh = c["vit_hidden_size"] or h
    for what, width, heads in (("hidden_size", h, nh), ("vit_hidden_size", vh, c["vit_heads"] or nh)):
        if width % heads:
            raise ConfigError(f"{what}: {width} is not a multiple of the attention heads ({heads})")
    layer = dict(hidden_size=h, num_attention_heads=nh, intermediate_size=ffn, dropout=0.0)
    return Sam3Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam3_vit_model", hidden_size=vh, intermediate_size=c["vit_mlp_ratio"] * vh,
                num_hidden_layers=c["vit_layers"], num_attention_heads=c["vit_heads"] or nh, image_size=s, patch_size=p,
                window_size=c["vit_window"], global_attn_indexes=[c["vit_layers"] - 1], pretrain_image_size=s,
            ),
            fpn_hidden_size=h,
            backbone_feature_sizes=[[4 * g, 4 * g], [2 * g, 2 * g], [g, g]],
        ),
        text_config=dict(hidden_size=h, intermediate_size=ffn, num_hidden_layers=c["text_layers"],
                         num_attention_heads=nh, projection_dim=h, max_position_embeddings=32),
        geometry_encoder_config=dict(hidden_size=h, num_layers=1, num_attention_heads=nh, intermediate_size=ffn),
        detr_encoder_config={**layer, "num_layers": c["encoder_layers"]},
        detr_decoder_config={**layer, "num_layers": c["decoder_layers"], "num_queries": c["num_queries"]},
        mask_decoder_config=dict(hidden_size=h, num_attention_heads=nh),
    )


def reinit_for_small_width(model, colour_patch_init: bool = True) -> None:
    """Re-initialise a freshly built small ``Sam3Model`` so it trains fast from scratch.

    transformers initialises every Linear/Conv with N(0, 0.02), tuned for 1024-wide layers; at width 64 that
    shrinks each layer's output ~6x and stalls training. Here Linear/Conv layers outside the CLIP text encoder
    (which has its own width-aware init) get PyTorch's default (Kaiming-uniform) init, the DETR queries get
    unit-variance embeddings, and the reference boxes start on a grid covering the image (cx, cy) with w = h =
    0.25 instead of all at the centre, so queries are not born identical.
    """
    for name, module in model.named_modules():
        if name.startswith("text_encoder"):
            continue
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            module.reset_parameters()
    # patch embedding: the first 48 channels average the colour of a 4 x 4 grid of sub-cells of the patch,
    # i.e. exactly the cells of the stride patch/4 mask grid, so masks can be decoded from tokens at once
    proj = model.vision_encoder.backbone.embeddings.patch_embeddings.projection  # Conv2d(3, D, p, p)
    p = proj.kernel_size[0]
    if colour_patch_init and proj.out_channels >= 48:
        cell = (torch.arange(p) * 4) // p  # (p,) sub-cell index of each pixel row/column
        with torch.no_grad():
            for c in range(3):
                for i in range(4):
                    for j in range(4):
                        w = torch.zeros(3, p, p)
                        w[c] = ((cell[:, None] == i) & (cell[None, :] == j)).float()
                        proj.weight[c * 16 + i * 4 + j] = w / w.sum()
    dec = model.detr_decoder
    with torch.no_grad():
        q = dec.query_embed.weight.shape[0]
        nn.init.normal_(dec.query_embed.weight, std=1.0)
        side = math.ceil(math.sqrt(q))
        k = torch.arange(q, dtype=torch.float32)
        cx, cy = ((k % side) + 0.5) / side, ((k // side) + 0.5) / math.ceil(q / side)  # (Q,) each
        boxes = torch.stack([cx, cy, torch.full_like(cx, 0.25), torch.full_like(cx, 0.25)], 1)  # (Q, 4) cxcywh
        dec.reference_points.weight.copy_(torch.logit(boxes.clamp(1e-3, 1 - 1e-3)))


class DensePhraseAux(torch.nn.Module):
    """Training-only dense phrase loss for the bootstrap (not part of the saved SAM 3 model).

    Every FPN level's pixel features are scored against every training phrase's pooled text feature
    (LSeg-style: logit = <conv1x1(pixel), linear(text)> / sqrt(D) + bias) and trained with BCE against the
    phrase's union mask on that image. It gives the image encoder a dense, text-aligned signal for every
    concept on every image in each step (the set loss sees one phrase per pair). Measured on the synthetic
    data in the 5-minute budget: it sharpens colour binding and the semantic map, but the ViT still learns
    no shape (see docs/measurements.md, the embedded teacher). The heads are dropped: only ``model`` is saved.

    With ``phrases`` > 0 the phrase vectors are this head's own (phrases, D) table instead of the model's text
    features: the model's text encoder collapses the shape words ("green square" and "green triangle" end up
    at cosine 0.99) and then the loss has no gradient that tells the pixels one shape from another; a table
    keeps every phrase its own target, so the image encoder is taught shape whatever the text encoder does.
    """

    def __init__(self, dim: int, levels: int, phrases: int = 0):
        super().__init__()
        self.pixel = torch.nn.ModuleList(torch.nn.Conv2d(dim, dim, 1) for _ in range(levels))
        self.text = torch.nn.Linear(dim, dim)
        self.bias = torch.nn.Parameter(torch.full((levels,), -2.0))
        self.table = torch.nn.Parameter(torch.randn(phrases, dim)) if phrases else None

    def forward(self, fpn: list[torch.Tensor], text: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
        """fpn: per level (I, D, h, w); text (T, D) pooled phrase features, or None to use the head's own
        table; targets (I, T, m, m) -> scalar."""
        t = self.text(self.table if text is None else text)  # (T, D)
        loss = 0.0
        for k, f in enumerate(fpn):
            logits = torch.einsum("idhw,td->ithw", self.pixel[k](f), t) / f.shape[1] ** 0.5 + self.bias[k]
            tgt = F.interpolate(targets, size=f.shape[-2:], mode="area") if f.shape[-1] != targets.shape[-1] else targets
            loss = loss + F.binary_cross_entropy_with_logits(logits, tgt, pos_weight=logits.new_tensor(4.0))
        return loss / len(fpn)


def pooled_text(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(T, D): SAM 3's projected text features mean-pooled over valid tokens."""
    feats = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output  # (T, L, D)
    return masked_mean(feats, attention_mask)
