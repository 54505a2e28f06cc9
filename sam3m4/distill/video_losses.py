"""Video distillation loss for :class:`sam3m4.models.video.StudentTracker`: one identity per object per clip.

The teacher (SAM 3's video path, or ground truth) gives, per frame, a mask for each of N objects with fixed
ids (zeros where an object is not visible). The tracker's query q is meant to follow one object for the
whole clip, so queries are matched to objects once per clip: Hungarian on the matching cost summed over the
frames where each object is visible (mask BCE + dice, minus the query's score). Then, on every frame:

* a matched query's mask gets BCE + dice against its object's mask where the object is visible;
* scores (sigmoid(q) * sigmoid(presence), the tracker's output) get BCE against "this query's object is
  visible here" (matched) or 0 (unmatched), with ``pos_weight`` on the positives.

A query that jumps to another object mid-clip pays for it on every frame after the jump, which per-frame
matching would not notice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from sam3m4.losses.set_prediction import _pairwise_mask_costs


@dataclass
class VideoDistillWeights:
    mask_bce: float = 5.0
    mask_dice: float = 5.0
    score: float = 2.0
    pos_weight: float = 5.0
    """weight of (query, frame) positives inside the score BCE."""


@torch.no_grad()
def match_clip(mask_logits: torch.Tensor, scores: torch.Tensor, masks: torch.Tensor,
               visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mask_logits (T, Q, m, m), scores (T, Q) in [0, 1], masks (T, N, m, m) in [0, 1], visible (T, N) bool ->
    (query_idx, object_idx), each (min(Q, N),) int64: one query per object for the whole clip."""
    t_len, q, n = scores.shape[0], scores.shape[1], masks.shape[1]
    if n == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    cost = torch.zeros(q, n)
    for t in range(t_len):
        bce, dice = _pairwise_mask_costs(mask_logits[t].flatten(1).float(), masks[t].flatten(1).float())  # (Q, N)
        cost += ((bce + dice) - scores[t][:, None].float()) * visible[t][None].float()
    qi, oi = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(qi, dtype=torch.long), torch.as_tensor(oi, dtype=torch.long)


def video_distill_loss(mask_logits: torch.Tensor, scores: torch.Tensor, masks: torch.Tensor, visible: torch.Tensor,
                       w: VideoDistillWeights = VideoDistillWeights()) -> dict[str, torch.Tensor]:
    """One clip: the tracker's per-frame ``mask_logits`` (T, Q, m, m) and ``scores`` (T, Q), the teacher's
    per-object ``masks`` (T, N, m, m) in [0, 1] and ``visible`` (T, N) bool -> named terms and ``loss``."""
    qi, oi = match_clip(mask_logits.detach(), scores.detach(), masks, visible)
    target = torch.zeros_like(scores)  # (T, Q)
    target[:, qi] = visible[:, oi].float()
    weight = torch.where(target > 0, w.pos_weight, 1.0)
    s = scores.float().clamp(1e-6, 1 - 1e-6)
    out = {"score": w.score * F.binary_cross_entropy(s, target, weight=weight, reduction="sum") / weight.sum()}
    vis = visible[:, oi]  # (T, M) bool
    if vis.any():
        src = mask_logits[:, qi][vis].flatten(1).float()  # (K, m*m): matched (frame, object) with the object visible
        tgt = masks[:, oi][vis].flatten(1).float()
        out["mask_bce"] = w.mask_bce * F.binary_cross_entropy_with_logits(src, tgt)
        prob = src.sigmoid()
        dice = 1 - (2 * (prob * tgt).sum(1) + 1) / (prob.sum(1) + tgt.sum(1) + 1)
        out["mask_dice"] = w.mask_dice * dice.mean()
    else:
        out["mask_bce"] = out["mask_dice"] = mask_logits.sum() * 0
    out["loss"] = sum(out.values())
    out["num_matched"] = torch.tensor(float(len(qi)))
    return out
