"""Per-epoch validation of the distillation phases: kept masks by SAM 3's rule, mIoU / Presence F1 of the
student and the teacher against ground truth (Phase 2), and the feature loss on val images (Phase 1).

    res = evaluate_outputs(student, val, teacher_fn, loss_fn, device)   # student_miou, teacher_miou, ...
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sam3m4.distill.runtime import autocast
from sam3m4.metrics import MIoUMeter, PresenceMeter


def union_masks(mask_logits: torch.Tensor, query_logits: torch.Tensor, presence_logit: torch.Tensor,
                size: tuple[int, int], threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One pair's kept masks at image size (SAM 3's rule): mask_logits (Q or K, m, m) with their
    query_logits (same length), presence_logit (1,) -> ((N, H, W) bool kept masks, (len,) scores)."""
    scores = (query_logits.float().sigmoid() * presence_logit.float().sigmoid()).cpu()  # (Q,)
    keep = torch.nonzero(scores >= threshold).flatten()
    if len(keep) == 0:
        return np.zeros((0, *size), bool), scores.numpy()
    logits = F.interpolate(mask_logits[keep].float()[None], size=size, mode="bilinear", align_corners=False)[0]
    return (logits > 0).cpu().numpy(), scores.numpy()


def teacher_kept(records: dict, j: int, size: tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """Kept masks (N, H, W) bool of pair ``j`` of collated teacher records (padding slots skipped)."""
    idx = records["mask_index"][j]  # (K,), -1 = padding
    valid = idx >= 0
    q = records["query_logits"][j, idx[valid]]  # (K',) logits of the stored masks
    kept, _ = union_masks(records["mask_logits"][j, valid], q, records["presence_logit"][j], size, threshold)
    return kept


class PairMetrics:
    """mIoU (union of kept masks vs union of ground truth) and presence F1 over (image, phrase) pairs."""

    def __init__(self):
        self.miou, self.presence = MIoUMeter(), PresenceMeter()

    def add(self, kept_masks: np.ndarray, gt_masks: np.ndarray, gt_present: bool) -> None:
        self.miou.add(kept_masks, gt_masks)
        self.presence.add(len(kept_masks) > 0, bool(gt_present))

    def result(self) -> dict[str, float]:
        r = self.presence.result()
        return {"miou": self.miou.result().miou, "presence_f1": r.f1, "presence_precision": r.precision,
                "presence_recall": r.recall}


@torch.no_grad()
def evaluate_outputs(student, data, teacher_fn, loss_fn, device, amp=None, batch_size: int = 32, limit: int = 0,
                     teacher_metrics: bool = True) -> dict:
    """Phase 2 validation: student vs teacher mIoU / Presence F1 against ground truth, and the distill loss.

    ``data``: a :class:`~sam3m4.distill.cache.PairSet` with ``gt_full``; ``teacher_fn(idx)`` -> collated teacher
    records; ``loss_fn(student_output_dict, teacher_records)`` -> loss terms. Returns ``student_miou``,
    ``student_presence_f1``, (``teacher_miou``, ``teacher_presence_f1``, ``miou_ratio``, ``f1_ratio``), ``val_loss``.
    """
    student.eval()
    n = min(limit or len(data), len(data))
    s_m, t_m, loss_sum, batches = PairMetrics(), PairMetrics(), 0.0, 0
    for start in range(0, n, batch_size):
        idx = list(range(start, min(start + batch_size, n)))
        with autocast(device, amp):
            out = student(**data.student_inputs(idx, device))
        tgt = teacher_fn(idx)
        loss_sum += float(loss_fn(vars(out), tgt)["loss"])
        batches += 1
        for j, p in enumerate(idx):
            kept, _ = union_masks(out.mask_logits[j], out.query_logits[j], out.presence_logit[j], data.sizes[p])
            s_m.add(kept, data.gt_full[p], bool(data.present[p]))
            if teacher_metrics:
                kept = teacher_kept(tgt, j, data.sizes[p])
                t_m.add(kept, data.gt_full[p], bool(data.present[p]))
    student.train()
    res = {f"student_{k}": v for k, v in s_m.result().items()}
    if teacher_metrics:
        res.update({f"teacher_{k}": v for k, v in t_m.result().items()})
        res["miou_ratio"] = res["student_miou"] / max(res["teacher_miou"], 1e-9)
        res["f1_ratio"] = res["student_presence_f1"] / max(res["teacher_presence_f1"], 1e-9)
    res["val_loss"] = loss_sum / max(batches, 1)
    res["val_pairs"] = n
    return res


@torch.no_grad()
def evaluate_features(net, data, teacher_fn, loss_fn, device, amp=None, batch_size: int = 32, limit: int = 0) -> dict:
    """Phase 1 validation: mean feature-distillation loss over the first ``limit`` unique images."""
    net.eval()
    n = min(limit or data.num_images, data.num_images)
    total, batches = 0.0, 0
    for start in range(0, n, batch_size):
        idx = list(range(start, min(start + batch_size, n)))
        with autocast(device, amp):
            pred = net(data.image_pixels(idx, device))
        total += float(loss_fn(pred, teacher_fn(idx))["loss"])
        batches += 1
    net.train()
    return {"val_loss": total / max(batches, 1), "val_images": n}
