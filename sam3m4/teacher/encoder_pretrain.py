"""Dense pre-training of a teacher's image encoder: per-pixel colour + shape classes before the set loss.

    names = concept_phrases(train)                       # "blue circle", ..., the split's colour + shape phrases
    head = torch.nn.Conv2d(width, 1 + len(names), 1)
    dense_pretrain(teacher.model.vision_encoder, head, train.pixels, shape_labels(train, names), steps=3200)

At the embedded teacher's size the SAM 3 ViT does not learn shape from the set loss in the recipe's steps: what
limits the teacher is its image encoder (reports/teacher/recipe.md). This phase trains the image encoder (ViT +
FPN neck) in place with a 1x1 conv head on one FPN level and a per-pixel cross-entropy (background weighted 0.2)
against labels from the phrases' union masks, AdamW with :func:`schedule`'s warm-up + cosine, random horizontal
flips. :func:`sam3m4.teacher.bootstrap.bootstrap_teacher` runs it before the recipe when
``encoder_pretrain_steps`` > 0; :func:`sam3m4.teacher.shape_probe.shape_probe` runs it to measure what the
encoder can learn.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch
import torch.nn.functional as F

from sam3m4.errors import TrainingDiverged
from sam3m4.progress import StepProgress

SHAPE_PHRASES = ("circle", "square", "star", "triangle")


def schedule(frac: float, warmup_frac: float, min_lr_frac: float) -> float:
    """The learning-rate factor at ``frac`` = step / steps: linear warm-up for ``warmup_frac`` of the steps (from
    0.02), then cosine down to ``min_lr_frac``."""
    if frac < warmup_frac:
        return max(frac / warmup_frac, 0.02)
    cos = 0.5 * (1 + math.cos(math.pi * (frac - warmup_frac) / (1 - warmup_frac)))
    return min_lr_frac + (1 - min_lr_frac) * cos


def shape_labels(data, names: tuple[str, ...] = SHAPE_PHRASES) -> torch.Tensor:
    """(I, m, m) int64 per-pixel labels of a :class:`~sam3m4.teacher.bootstrap_data.PairTensors`: 0 background,
    1 + index in ``names`` where that phrase's mask is."""
    maps = torch.zeros(len(data.pixels), len(names), *data.phrase_maps.shape[-2:])  # (I, N, m, m)
    for k, name in enumerate(names):
        if name in data.phrases:  # a split without that phrase leaves it empty
            maps[:, k] = data.phrase_maps[:, data.phrases.index(name)].float()
    lab = maps.argmax(1) + 1
    lab[maps.amax(1) < 0.5] = 0
    return lab


def concept_phrases(data) -> tuple[str, ...]:
    """The split's colour + shape phrases (two words, the second a shape), sorted: the concept classes."""
    return tuple(sorted(p for p in data.phrases if len(p.split()) == 2 and p.split()[1] in SHAPE_PHRASES))


def dense_logits(vision, head, pixels: torch.Tensor, level: int, size: int) -> torch.Tensor:
    """(I, 3, S, S) -> (I, C, size, size): ``head`` on FPN level ``level`` of ``vision``, upsampled. A SAM 3
    vision model (``backbone`` + ``neck``) runs that level's neck layer only, as its forward computes it."""
    if hasattr(vision, "backbone") and hasattr(vision, "neck"):  # transformers' Sam3VisionModel
        tokens = vision.backbone(pixels).last_hidden_state  # (I, g * g, D)
        g = pixels.shape[-1] // vision.config.backbone_config.patch_size
        feats = vision.neck.fpn_layers[level](tokens.view(len(pixels), g, g, -1).permute(0, 3, 1, 2))
    else:
        feats = vision(pixels).fpn_hidden_states[level]
    return F.interpolate(head(feats), size=(size, size), mode="bilinear")


def dense_pretrain(vision, head, pixels: torch.Tensor, labels: torch.Tensor, *, steps: int,
                   images_per_step: int = 8, lr: float = 4e-3, seed: int = 0, level: int = 0,
                   warmup_frac: float = 0.05, min_lr_frac: float = 0.02, progress: bool = False,
                   on_step: Callable[[int, torch.Tensor], None] | None = None) -> dict:
    """Train ``vision`` (an image encoder with ``fpn_hidden_states``) and ``head`` in place for ``steps`` steps of
    ``images_per_step`` images drawn from ``pixels`` (I, 3, S, S) against ``labels`` (I, m, m), class 0 the
    background; each batch moves to ``head``'s device. ``on_step(step, loss)`` runs after each step (1-based); a
    non-finite loss stops with :class:`~sam3m4.errors.TrainingDiverged` naming the step. Returns ``steps``,
    ``pretrain_s`` (wall), ``first_loss`` and ``final_loss`` (mean of the last 20 steps)."""
    params = list(vision.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    gen = torch.Generator().manual_seed(seed)
    device = head.weight.device
    weight = torch.ones(int(head.out_channels), device=device)
    weight[0] = 0.2
    size = labels.shape[-1]
    bar = StepProgress(steps, "pre-train image encoder", enabled=progress)
    losses, start = [], time.time()
    vision.train()
    for step in range(steps):
        scale = schedule(step / steps, warmup_frac, min_lr_frac)
        for group in opt.param_groups:
            group["lr"] = lr * scale
        idx = torch.randperm(len(pixels), generator=gen)[:images_per_step]
        px, y = pixels[idx].to(device), labels[idx].to(device)
        flip = (torch.rand(len(idx), generator=gen) < 0.5).to(device)
        px = torch.where(flip[:, None, None, None], px.flip(-1), px)
        y = torch.where(flip[:, None, None], y.flip(-1), y)
        loss = F.cross_entropy(dense_logits(vision, head, px, level, size), y, weight=weight)
        losses.append(float(loss.detach()))
        TrainingDiverged.check(losses[-1], "encoder pre-training loss", step + 1)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        bar.update(1, loss=sum(losses[-10:]) / len(losses[-10:]), lr=lr * scale)
        if on_step is not None:
            on_step(step + 1, loss)
    bar.close()
    return {"steps": steps, "pretrain_s": round(time.time() - start, 1),
            "first_loss": losses[0] if losses else float("nan"),
            "final_loss": sum(losses[-20:]) / max(len(losses[-20:]), 1)}
