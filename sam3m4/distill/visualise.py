"""Pictures of a distillation run (rank 0, per epoch): image | teacher | student strips under ``<log_dir>/vis``.

    visualise_pairs(student, val, teacher_fn, Path("logs/distillation/vis"), "phase2_epoch1", n=4, device=device)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sam3m4.distill.evaluation import teacher_kept, union_masks
from sam3m4.distill.runtime import autocast


def save_triptych(path: Path, image: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
    """PNG of ``image`` | ``left`` | ``right``: image (H, W, 3) uint8; masks/maps (h, w) bool or float,
    resized to (H, W) and drawn as a red overlay (bool) or a grey-scale heat map (float, min-max scaled)."""
    h, w = image.shape[:2]

    def panel(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype == bool:
            m = np.asarray(Image.fromarray(x.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 127
            out = image.astype(np.float32).copy()
            out[m] = 0.45 * out[m] + 0.55 * np.array([255, 0, 0], np.float32)
            return out.astype(np.uint8)
        x = x.astype(np.float32)
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-6)
        g = np.asarray(Image.fromarray((x * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR))
        return np.repeat(g[..., None], 3, axis=2)

    strip = np.concatenate([image, panel(left), panel(right)], axis=1)  # (H, 3W, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(path)


@torch.no_grad()
def visualise_pairs(student, data, teacher_fn, out_dir: Path, tag: str, n: int, device, amp=None) -> list[Path]:
    """PNG per val pair (the first ``n`` present pairs): image | teacher kept masks | student kept masks."""
    idx = [p for p in range(len(data)) if data.present[p]][:n]
    if not idx:
        return []
    student.eval()
    with autocast(device, amp):
        out = student(**data.student_inputs(idx, device))
    tgt = teacher_fn(idx)
    student.train()
    paths = []
    for j, p in enumerate(idx):
        size = data.sizes[p]
        s_kept, _ = union_masks(out.mask_logits[j], out.query_logits[j], out.presence_logit[j], size)
        t_kept = teacher_kept(tgt, j, size)
        path = Path(out_dir) / f"{tag}_{j}.png"
        save_triptych(path, data.images[int(data.image_of[p])], t_kept.any(0) if len(t_kept) else np.zeros(size, bool),
                      s_kept.any(0) if len(s_kept) else np.zeros(size, bool))
        paths.append(path)
    return paths


@torch.no_grad()
def visualise_features(net, data, teacher_fn, out_dir: Path, tag: str, n: int, device, amp=None) -> list[Path]:
    """PNG per val image: image | teacher map energy | projected student map energy (coarsest level)."""
    idx = list(range(min(n, data.num_images)))
    if not idx:
        return []
    net.eval()
    with autocast(device, amp):
        pred = net(data.image_pixels(idx, device))
    tgt = teacher_fn(idx)
    net.train()
    paths = []
    for j, u in enumerate(idx):
        path = Path(out_dir) / f"{tag}_{j}.png"
        save_triptych(path, data.images[u], tgt[-1][j].float().norm(dim=0).cpu().numpy(),
                      pred[-1][j].float().norm(dim=0).cpu().numpy())
        paths.append(path)
    return paths
