"""The distillation optimizer and learning-rate schedule (shared by Phase 1/2, the video run and QAT).

    optimizer = build_optimizer(model.named_parameters(), lr=1e-3, weight_decay=0.05)
    scheduler = build_scheduler(optimizer, warmup_steps=20, total_steps=600)   # step it after every step
"""

from __future__ import annotations

import math

import torch


def build_optimizer(named_params, lr: float, weight_decay: float, betas=(0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms and embeddings (1-D tensors or names with 'embed')."""
    decay, no_decay = [], []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embed" not in name else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=tuple(betas))


def build_scheduler(optimizer, warmup_steps: int, total_steps: int, min_lr_frac: float = 0.05):
    """Linear warm-up over ``warmup_steps`` then cosine to ``min_lr_frac`` * lr at ``total_steps``."""

    def scale(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(warmup_steps, 1)
        frac = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return min_lr_frac + (1 - min_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, scale)
