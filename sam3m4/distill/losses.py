"""Distillation losses: Phase 1 (encoder features) and Phase 2 (end-to-end outputs, optional ground truth).

Phase 1 - the student's neck maps learn the teacher's FPN maps: each chosen student level goes through a
1x1 conv to the teacher's width, is bilinearly resized to the teacher map's size, and is scored with a
relative MSE (MSE / mean square of the teacher map: SAM-style FPN maps have magnitudes in the hundreds)
+ (1 - cosine similarity over channels).

Phase 2 - the student's whole pipeline (text-image fusion included) learns the teacher's outputs:

* presence: soft BCE of the student's presence logit against the teacher's presence *probability*;
* semantic map: soft BCE against sigmoid(teacher semantic logits) (resized to the student's mask size), plus
  dice on the pairs the teacher calls present (the map is mostly background: dice weighs the foreground);
* queries: the teacher's confident queries (score = sigmoid(query) * sigmoid(presence) >= ``match_threshold``,
  or the ``match_topk`` best) are Hungarian-matched to student queries (``sam3m4.losses.set_prediction``'s
  matcher, soft teacher masks as targets); matched queries get mask BCE + dice against the teacher's mask
  probabilities, box L1 + GIoU against the teacher's boxes, and a classification target equal to the
  teacher's query probability; all other queries a classification target of 0;
* joint score (``score``): SAM 3 calls a pair present when max_q sigmoid(q) * sigmoid(presence) >= 0.5; each
  factor distilled alone regresses towards the mean and their product lands below 0.5 (measured: student
  recall 0.5 where the teacher's is 0.9), so the product itself gets a soft BCE against the teacher's;
* earlier decoder layers (``aux``): presence, classification and boxes again, with the final layer's matching;
* ground truth (when labels exist and ``gt`` > 0): SAM 3's set-prediction loss, scaled by ``gt``.

Every soft BCE is reported as binary KL (BCE minus the target's entropy): same gradients, but 0 when the
student matches the teacher, so the logged loss says how far from the teacher the student is.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import box_convert, generalized_box_iou
from transformers.loss.loss_for_object_detection import dice_loss

from sam3m4.losses.set_prediction import SetLossWeights, hungarian_match, set_prediction_loss


# --- Phase 1 ----------------------------------------------------------------------------------------------
class FeatureProjector(nn.Module):
    """1x1 convs mapping student neck levels (C_s channels) to teacher FPN widths (C_t); distillation-only."""

    def __init__(self, student_channels: list[int], teacher_channels: list[int]):
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise ValueError(f"{len(student_channels)} student levels vs {len(teacher_channels)} teacher levels")
        self.proj = nn.ModuleList(nn.Conv2d(cs, ct, kernel_size=1) for cs, ct in zip(student_channels, teacher_channels))

    def forward(self, feats: list[torch.Tensor], sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """feats: (B, C_s, h_s, w_s) per level -> (B, C_t, h_t, w_t) per level (bilinear to ``sizes``)."""
        out = []
        for conv, f, size in zip(self.proj, feats, sizes):
            y = conv(f)  # (B, C_t, h_s, w_s)
            if tuple(y.shape[-2:]) != tuple(size):
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)  # (B, C_t, h_t, w_t)
            out.append(y)
        return out


def feature_distill_loss(projected: list[torch.Tensor], teacher: list[torch.Tensor], mse: float = 1.0,
                         cosine: float = 1.0) -> dict[str, torch.Tensor]:
    """Sum over levels of ``mse`` * MSE / mean(teacher^2) + ``cosine`` * mean(1 - cos) (cosine over channels,
    per pixel)."""
    terms = {}
    for i, (s, t) in enumerate(zip(projected, teacher)):
        s, t = s.float(), t.float()
        terms[f"mse{i}"] = mse * F.mse_loss(s, t) / t.pow(2).mean().clamp(min=1e-6)  # relative: scale-free
        terms[f"cos{i}"] = cosine * (1 - F.cosine_similarity(s, t, dim=1, eps=1e-6)).mean()
    terms["loss"] = sum(terms.values())
    return terms


# --- Phase 2 ----------------------------------------------------------------------------------------------
@dataclass
class OutputDistillWeights:
    """Phase 2 weights (config keys ``w_<name>``)."""

    presence: float = 2.0
    """soft BCE of the presence logit against the teacher's presence probability."""
    semantic: float = 1.0
    """soft BCE of the semantic map against sigmoid(teacher semantic logits)."""
    cls: float = 2.0
    """query classification (matched: teacher's query probability, unmatched: 0)."""
    pos_weight: float = 5.0
    """weight of matched queries inside the classification BCE."""
    mask_bce: float = 5.0
    mask_dice: float = 5.0
    box_l1: float = 5.0
    box_giou: float = 2.0
    semantic_dice: float = 1.0
    """dice of the semantic map against the teacher's, on pairs the teacher calls present (foreground-balanced)."""
    score: float = 0.0
    """soft BCE of the student's best joint score max_q sigmoid(q) * sigmoid(presence) against the teacher's:
    SAM 3 decides presence on this product, and distilling its two factors separately leaves it too low."""
    aux: float = 0.5
    """scale of the earlier decoder layers' presence / classification / box terms (final layer's matching;
    needs the student's ``aux`` outputs, ``forward(..., with_aux=True)``)."""
    gt: float = 0.0
    """scale of the ground-truth set-prediction loss (0 = distillation only)."""
    gt_score: float = 0.0
    """BCE of the student's best joint score against the ground-truth presence (when labels exist): the
    decision Presence F1 scores, learnt from the labels where the teacher's own decision is wrong."""
    match_threshold: float = 0.5
    """teacher queries with score >= this are targets (SAM 3's keep rule)."""
    match_topk: int = 0
    """also take the teacher's ``match_topk`` best queries (0 = threshold only)."""


def weights_from_config(cfg: dict) -> OutputDistillWeights:
    """``w_<field>`` keys of a flat config -> :class:`OutputDistillWeights`."""
    return OutputDistillWeights(**{f.name: cfg[f"w_{f.name}"] for f in fields(OutputDistillWeights)
                                   if f"w_{f.name}" in cfg})


def soft_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
             reduction: str = "mean") -> torch.Tensor:
    """Binary KL divergence KL(target || sigmoid(logits)) = BCE - entropy(target): the soft BCE with its floor
    removed (0 when the student matches the teacher; same gradient as BCE). ``target`` in [0, 1]."""
    t = target.clamp(0, 1)
    ent = -(torch.xlogy(t, t) + torch.xlogy(1 - t, 1 - t))  # binary entropy, 0 at t in {0, 1}
    kl = F.binary_cross_entropy_with_logits(logits, t, reduction="none") - ent
    if weight is not None:
        kl = kl * weight
    return kl.mean() if reduction == "mean" else kl


def best_log_score(query_logits: torch.Tensor, presence_logit: torch.Tensor) -> torch.Tensor:
    """(B, Q), (B, 1) logits -> (B,) log of SAM 3's best joint score max_q sigmoid(q) * sigmoid(presence)."""
    return (F.logsigmoid(query_logits) + F.logsigmoid(presence_logit.reshape(-1, 1))).amax(dim=1)


def soft_bce_prob(log_p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`soft_bce` for a probability given as its log (``log_p`` <= 0), mean over elements."""
    t = target.clamp(0, 1)
    log_q = torch.log1p(-log_p.exp().clamp(max=1 - 1e-6))  # log(1 - p)
    ent = -(torch.xlogy(t, t) + torch.xlogy(1 - t, 1 - t))
    return (-(t * log_p + (1 - t) * log_q) - ent).mean()


def _resize_logits(x: torch.Tensor, size) -> torch.Tensor:
    """(..., h, w) logits -> (..., H, W) bilinear (no-op when the size matches)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    lead = x.shape[:-2]
    y = F.interpolate(x.reshape(-1, 1, *x.shape[-2:]), size=tuple(size), mode="bilinear", align_corners=False)
    return y.reshape(*lead, *size)


def select_teacher_queries(teacher: dict, b: int, threshold: float, topk: int) -> torch.Tensor:
    """Positions (into the stored top-K masks) of pair ``b``'s confident teacher queries, (n,) int64."""
    idx = teacher["mask_index"][b]  # (K,) query ids, best score first; -1 = padding
    valid = idx >= 0
    scores = teacher["query_logits"][b, idx.clamp(min=0)].sigmoid() * teacher["presence_logit"][b].sigmoid()  # (K,)
    keep = valid & (scores >= threshold)
    if topk:
        keep[:topk] |= valid[:topk]
    return torch.nonzero(keep).flatten()


def output_distill_loss(student: dict, teacher: dict, w: OutputDistillWeights, targets: list[dict] | None = None,
                        gt_weights: SetLossWeights | None = None) -> dict[str, torch.Tensor]:
    """Phase 2 loss for B pairs.

    student: ``mask_logits`` (B, Q, m, m), ``query_logits`` (B, Q), ``boxes_xyxy`` (B, Q, 4) in [0, 1],
    ``presence_logit`` (B, 1), ``semantic_logits`` (B, 1, m, m).
    teacher: :func:`sam3m4.distill.cache.collate_pairs` output (any mask size; resized to m).
    targets: ground truth as for :func:`set_prediction_loss` (masks at m x m, boxes in [0, 1]) or None.
    Returns weighted named terms, ``loss`` (their sum) and ``num_matched``.
    """
    ml, ql, bx = student["mask_logits"].float(), student["query_logits"].float(), student["boxes_xyxy"].float()
    pl, sem = student["presence_logit"].float(), student["semantic_logits"].float()
    B, Q = ql.shape
    m = ml.shape[-2:]
    cost_w = gt_weights or SetLossWeights()
    out: dict[str, torch.Tensor] = {}

    out["presence"] = w.presence * soft_bce(pl.flatten(), teacher["presence_logit"].flatten().sigmoid())
    t_sem = _resize_logits(teacher["semantic_logits"], sem.shape[-2:]).sigmoid()  # (B, 1, m, m)
    out["semantic"] = w.semantic * soft_bce(sem, t_sem)
    t_present = teacher["presence_logit"].flatten() > 0  # (B,)
    if w.semantic_dice and t_present.any():
        k = int(t_present.sum())
        out["semantic_dice"] = w.semantic_dice * dice_loss(sem[t_present].flatten(1), t_sem[t_present].flatten(1), k)

    # --- match student queries to the teacher's confident queries --------------------------------------------
    bi, qi, tm, tb, tq = [], [], [], [], []
    for b in range(B):
        pos = select_teacher_queries(teacher, b, w.match_threshold, w.match_topk)  # (n,)
        if len(pos) == 0:
            continue
        t_ids = teacher["mask_index"][b, pos]  # (n,) teacher query ids
        t_masks = _resize_logits(teacher["mask_logits"][b, pos], m).sigmoid()  # (n, m, m) in [0, 1]
        t_boxes = teacher["boxes_xyxy"][b, t_ids].clamp(0, 1)  # (n, 4)
        q, k = hungarian_match(ql[b], ml[b], bx[b], t_masks, t_boxes, cost_w)
        bi.append(torch.full_like(q, b))
        qi.append(q)
        tm.append(t_masks[k])
        tb.append(t_boxes[k])
        tq.append(teacher["query_logits"][b, t_ids[k]].sigmoid())
    cls_target = torch.zeros_like(ql)  # (B, Q)
    weight = torch.ones_like(ql)
    if bi:
        bi, qi = torch.cat(bi).to(ql.device), torch.cat(qi).to(ql.device)
        tm, tb, tq = torch.cat(tm), torch.cat(tb), torch.cat(tq)  # (M, m, m), (M, 4), (M,)
        n = len(qi)
        cls_target[bi, qi] = tq
        weight[bi, qi] = w.pos_weight
        src_m = ml[bi, qi]  # (M, m, m)
        out["mask_bce"] = w.mask_bce * soft_bce(src_m, tm)
        out["mask_dice"] = w.mask_dice * dice_loss(src_m.flatten(1), tm.flatten(1), n)
        src_b = bx[bi, qi]  # (M, 4)
        out["box_l1"] = w.box_l1 * F.l1_loss(box_convert(src_b, "xyxy", "cxcywh"),
                                             box_convert(tb, "xyxy", "cxcywh"), reduction="sum") / n
        out["box_giou"] = w.box_giou * (1 - torch.diag(generalized_box_iou(src_b, tb))).sum() / n
    else:
        n = 0
        zero = ml.sum() * 0 + bx.sum() * 0
        out["mask_bce"] = out["mask_dice"] = out["box_l1"] = out["box_giou"] = zero
    def cls_term(logits):  # (B, Q) -> scalar
        return soft_bce(logits, cls_target, weight, reduction="none").sum() / weight.sum()

    out["cls"] = w.cls * cls_term(ql)
    if w.score:
        out["score"] = w.score * soft_bce_prob(best_log_score(ql, pl), best_log_score(
            teacher["query_logits"].float(), teacher["presence_logit"].float()).exp())
    aux = student.get("aux")
    if aux is not None and w.aux:  # earlier decoder layers, with the final layer's matching
        t_pres = teacher["presence_logit"].flatten().sigmoid()
        for layer in range(aux["query_logits"].shape[0] - 1):
            term = w.presence * soft_bce(aux["presence_logit"][layer].float().flatten(), t_pres)
            term = term + w.cls * cls_term(aux["query_logits"][layer].float())
            if n:
                src_b = aux["boxes_xyxy"][layer].float()[bi, qi]  # (M, 4)
                term = term + w.box_l1 * F.l1_loss(box_convert(src_b, "xyxy", "cxcywh"),
                                                   box_convert(tb, "xyxy", "cxcywh"), reduction="sum") / n
                term = term + w.box_giou * (1 - torch.diag(generalized_box_iou(src_b, tb))).sum() / n
            out[f"aux{layer}"] = w.aux * term

    if targets is not None and w.gt_score > 0:
        present = torch.tensor([float(len(t["boxes_xyxy"]) > 0) for t in targets], device=pl.device)
        out["gt_score"] = w.gt_score * soft_bce_prob(best_log_score(ql, pl), present)
    if targets is not None and w.gt > 0:
        gt = set_prediction_loss({"mask_logits": ml, "query_logits": ql, "boxes_xyxy": bx, "presence_logit": pl,
                                  "semantic_logits": sem}, targets, gt_weights or SetLossWeights())
        out["gt"] = w.gt * gt["loss"]
    out["loss"] = sum(out.values())
    out["num_matched"] = torch.tensor(float(n))
    return out
