"""SAM 3-style set-prediction loss: Hungarian matching of queries to instances, then mask/box/score losses.

SAM 3 (like DETR / Mask2Former) predicts a fixed set of Q queries per (image, noun phrase) pair. Training
matches queries to ground-truth instances one-to-one (scipy ``linear_sum_assignment`` on a cost of
classification + mask BCE + mask dice + box L1 + box GIoU) and supervises:

* matched queries: mask BCE + dice, box L1 (cx, cy, w, h) + GIoU, classification positive;
* every other query: classification negative (SAM 3's IA-BCE: BCE with negatives down-weighted by p**gamma);
* the presence logit: BCE against "the phrase has >= 1 instance";
* absent pairs (no instance): classification negatives (weight ``absent_cls``) and presence negative only;
* optional: semantic map (BCE + dice against the union mask) and earlier decoder layers (score/box/presence,
  reusing the final layer's matching).

Reuses ``transformers.loss.loss_for_object_detection.dice_loss`` and ``torchvision.ops`` box IoU helpers.
Used by :mod:`sam3m4.teacher.bootstrap`; distillation can reuse :func:`hungarian_match` against teacher masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert, generalized_box_iou
from transformers.loss.loss_for_object_detection import dice_loss


@dataclass
class SetLossWeights:
    """Loss and matching-cost weights (SAM 3's own config uses ce 20, presence 20, L1 5, GIoU 2, dice 10)."""

    cls: float = 4.0
    """query classification (IA-BCE, mean over B*Q queries)."""
    cls_on_score: bool = True
    """classify SAM 3's final score sigmoid(q) * sigmoid(presence) (the number thresholded at 0.5) instead of
    sigmoid(q) alone, so the product is calibrated; the presence logit keeps its own BCE term as well."""
    pos_weight: float = 5.0
    """extra weight of matched (positive) queries inside the classification BCE."""
    neg_gamma: float = 0.0
    """negatives' BCE is scaled by p**neg_gamma (SAM 3's ``gamma``; 0 = plain BCE)."""
    absent_cls: float = 1.0
    """scale of the classification negatives on absent pairs (0 = SAM 3's presence-only decoupling)."""
    presence: float = 2.0
    presence_pos_weight: float = 1.0
    """BCE pos_weight of the presence logit (> 1 trades precision for recall at SAM 3's 0.5 threshold)."""
    mask_bce: float = 5.0
    mask_dice: float = 5.0
    box_l1: float = 5.0
    box_giou: float = 2.0
    semantic: float = 1.0
    """semantic map BCE + dice (present pairs) against the union of instance masks."""
    aux: float = 0.5
    """scale of the classification/box/presence losses of the earlier decoder layers."""
    cost_cls: float = 2.0
    cost_mask_bce: float = 5.0
    cost_mask_dice: float = 5.0
    cost_box_l1: float = 5.0
    cost_box_giou: float = 2.0


def _pairwise_mask_costs(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-pixel BCE and dice costs between Q predicted and N target masks.

    logits (Q, P) float, targets (N, P) float {0,1} -> two (Q, N) tensors.
    """
    P = logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")  # (Q, P)
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")  # (Q, P)
    bce = (pos @ targets.T + neg @ (1 - targets).T) / P  # (Q, N)
    prob = logits.sigmoid()  # (Q, P)
    dice = 1 - (2 * prob @ targets.T + 1) / (prob.sum(1, keepdim=True) + targets.sum(1)[None] + 1)  # (Q, N)
    return bce, dice


@torch.no_grad()
def hungarian_match(
    query_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    boxes_xyxy: torch.Tensor,
    tgt_masks: torch.Tensor,
    tgt_boxes_xyxy: torch.Tensor,
    w: SetLossWeights = SetLossWeights(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal one-to-one assignment of one pair's Q queries to its N instances.

    query_logits (Q,), mask_logits (Q, h, w), boxes_xyxy (Q, 4) in [0, 1]; tgt_masks (N, h, w) {0,1} at the
    prediction's mask resolution, tgt_boxes_xyxy (N, 4) in [0, 1]. Returns (query_idx, target_idx), each (N,)
    int64 (min(Q, N) long), sorted by query index.
    """
    Q, N = query_logits.shape[0], tgt_masks.shape[0]
    if N == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    prob = query_logits.float().sigmoid()  # (Q,)
    cost_cls = -prob[:, None].expand(Q, N)  # (Q, N): prefer confident queries
    bce, dice = _pairwise_mask_costs(mask_logits.flatten(1).float(), tgt_masks.flatten(1).float())
    pb = box_convert(boxes_xyxy.float(), "xyxy", "cxcywh")  # (Q, 4)
    tb = box_convert(tgt_boxes_xyxy.float(), "xyxy", "cxcywh")  # (N, 4)
    l1 = torch.cdist(pb, tb, p=1)  # (Q, N)
    giou = generalized_box_iou(boxes_xyxy.float(), tgt_boxes_xyxy.float())  # (Q, N)
    cost = (
        w.cost_cls * cost_cls
        + w.cost_mask_bce * bce
        + w.cost_mask_dice * dice
        + w.cost_box_l1 * l1
        - w.cost_box_giou * giou
    )
    qi, ti = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(qi, dtype=torch.long), torch.as_tensor(ti, dtype=torch.long)


def _cls_loss(
    logits: torch.Tensor, presence: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, w: SetLossWeights
) -> torch.Tensor:
    """SAM 3's IA-BCE (hard targets): pos_weight * BCE on positives + p**gamma * BCE on negatives, mean.

    logits (B, Q), presence (B, 1), target/weight (B, Q). With ``w.cls_on_score`` the probability is the
    final score p = sigmoid(q) * sigmoid(presence), else sigmoid(q).
    """
    if w.cls_on_score:
        log_p = F.logsigmoid(logits) + F.logsigmoid(presence)  # (B, Q) log of the final score
        log_1mp = torch.log1p(-log_p.exp().clamp(max=1 - 1e-6))  # (B, Q)
        bce = -(target * log_p + (1 - target) * log_1mp)
        prob = log_p.exp()
    else:
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # (B, Q)
        prob = logits.sigmoid()
    neg_scale = prob.detach() ** w.neg_gamma if w.neg_gamma else 1.0
    loss = bce * (target * w.pos_weight + (1 - target) * neg_scale)
    return (loss * weight).sum() / weight.sum().clamp(min=1)


def set_prediction_loss(
    pred: dict,
    targets: list[dict],
    w: SetLossWeights = SetLossWeights(),
) -> dict[str, torch.Tensor]:
    """Total SAM 3-style loss for a batch of B pairs.

    pred: ``mask_logits`` (B, Q, h, w), ``query_logits`` (B, Q), ``boxes_xyxy`` (B, Q, 4) in [0, 1],
    ``presence_logit`` (B, 1); optional ``semantic_logits`` (B, 1, h, w) and ``aux`` (dict with
    ``query_logits`` (L, B, Q), ``boxes_xyxy`` (L, B, Q, 4), ``presence_logit`` (L, B, 1); the last layer
    equals the main outputs and is skipped).
    targets: B dicts with ``masks`` (N, h, w) {0,1} at the mask-logit resolution and ``boxes_xyxy`` (N, 4)
    in [0, 1]; N = 0 for an absent pair.
    Returns a dict of named scalar terms (already weighted) plus ``loss`` (their sum) and ``num_matched``.
    """
    ml, ql, bx, pl = pred["mask_logits"], pred["query_logits"], pred["boxes_xyxy"], pred["presence_logit"]
    B, Q = ql.shape
    device = ql.device
    present = torch.tensor([len(t["boxes_xyxy"]) > 0 for t in targets], dtype=torch.float32, device=device)

    # --- matching ----------------------------------------------------------------------------------
    bi, qi, ti = [], [], []
    for b, t in enumerate(targets):
        q, k = hungarian_match(ql[b], ml[b], bx[b], t["masks"], t["boxes_xyxy"], w)
        bi.append(torch.full_like(q, b))
        qi.append(q)
        ti.append(k)
    bi, qi = torch.cat(bi).to(device), torch.cat(qi).to(device)
    n_match = max(len(qi), 1)
    tgt_m = torch.cat([t["masks"][k] for t, k in zip(targets, ti)]).to(device).float()  # (M, h, w)
    tgt_b = torch.cat([t["boxes_xyxy"][k] for t, k in zip(targets, ti)]).to(device).float()  # (M, 4)

    def box_terms(boxes):
        if len(qi) == 0:
            return boxes.sum() * 0, boxes.sum() * 0
        src = boxes[bi, qi]  # (M, 4)
        l1 = F.l1_loss(box_convert(src, "xyxy", "cxcywh"), box_convert(tgt_b, "xyxy", "cxcywh"), reduction="sum")
        giou = (1 - torch.diag(generalized_box_iou(src, tgt_b))).sum()
        return l1 / n_match, giou / n_match

    def cls_terms(logits, presence):
        target = torch.zeros_like(logits)  # (B, Q)
        target[bi, qi] = 1.0
        weight = torch.where(present[:, None] > 0, 1.0, w.absent_cls).expand(B, Q)  # (B, Q)
        cls = _cls_loss(logits, presence.reshape(B, 1), target, weight, w)
        pres = F.binary_cross_entropy_with_logits(
            presence.flatten(), present, pos_weight=torch.tensor(w.presence_pos_weight, device=device)
        )
        return cls, pres

    out: dict[str, torch.Tensor] = {}
    out["cls"], out["presence"] = (x * s for x, s in zip(cls_terms(ql, pl), (w.cls, w.presence)))
    l1, giou = box_terms(bx)
    out["box_l1"], out["box_giou"] = w.box_l1 * l1, w.box_giou * giou
    if len(qi):
        src_m = ml[bi, qi]  # (M, h, w)
        out["mask_bce"] = w.mask_bce * F.binary_cross_entropy_with_logits(src_m, tgt_m)
        out["mask_dice"] = w.mask_dice * dice_loss(src_m.flatten(1), tgt_m.flatten(1), n_match)
    else:
        out["mask_bce"] = out["mask_dice"] = ml.sum() * 0

    sem = pred.get("semantic_logits")
    if sem is not None and w.semantic:
        union = torch.stack(
            [t["masks"].amax(0) if len(t["masks"]) else torch.zeros(sem.shape[-2:], device=sem.device) for t in targets]
        ).to(device).float()  # (B, h, w)
        s = sem[:, 0]  # (B, h, w)
        sem_loss = F.binary_cross_entropy_with_logits(s, union)
        if present.sum() > 0:
            keep = present > 0
            sem_loss = sem_loss + dice_loss(s[keep].flatten(1), union[keep].flatten(1), int(keep.sum()))
        out["semantic"] = w.semantic * sem_loss

    aux = pred.get("aux")
    if aux is not None and w.aux:
        for layer in range(aux["query_logits"].shape[0] - 1):
            cls, pres = cls_terms(aux["query_logits"][layer], aux["presence_logit"][layer])
            l1, giou = box_terms(aux["boxes_xyxy"][layer])
            out[f"aux{layer}"] = w.aux * (w.cls * cls + w.presence * pres + w.box_l1 * l1 + w.box_giou * giou)

    out["loss"] = sum(out.values())
    out["num_matched"] = torch.tensor(float(len(qi)))
    return out
