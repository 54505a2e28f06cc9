"""Shared pieces of the distillation loop: device/AMP choice, seeds, optimizer + schedule, distributed
set-up, CSV/TensorBoard logging, evaluation and visualisations. The loop itself is in
:mod:`sam3m4.distill.recipe` (one readable file); these are the parts it would otherwise repeat.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sam3m4.errors import ConfigError
from sam3m4.metrics import MIoUMeter, PresenceMeter
from sam3m4.results import ResultsStore
from sam3m4.results import schema


# --- device, precision, seeds -----------------------------------------------------------------------------
def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> cuda > mps > cpu; else the named device (``cuda`` uses ``cuda:<local_rank>``)."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device: cuda requested but torch.cuda.is_available() is False")
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device: mps requested but not available")
    return torch.device(name)


def amp_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """Autocast dtype: ``auto`` -> bf16 on CUDA (fp16 if the GPU lacks bf16), fp32 (None) on MPS and CPU;
    ``bf16`` / ``fp16`` / ``off`` force it."""
    amp = (amp or "auto").lower()
    if amp == "off" or device.type == "cpu" and amp == "auto":
        return None
    if amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None  # MPS: fp32 is the safe default; amp=fp16 opts in
    if amp in ("bf16", "bfloat16"):
        return torch.bfloat16
    if amp in ("fp16", "float16"):
        return torch.float16
    raise ConfigError(f"amp: unknown value '{amp}' (auto, bf16, fp16, off)")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast context for ``dtype`` on ``device``; a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- optimizer and schedule -------------------------------------------------------------------------------
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


# --- distributed ------------------------------------------------------------------------------------------
def init_distributed(device_name: str = "auto") -> tuple[int, int, int]:
    """Under ``torchrun`` (WORLD_SIZE > 1): init the process group (nccl on CUDA, gloo otherwise).

    Returns (rank, world_size, local_rank); (0, 1, 0) when not distributed.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and (device_name or "auto").lower() in ("auto", "cuda")
        if use_nccl:
            torch.cuda.set_device(local % torch.cuda.device_count())
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    return rank, world, local


def barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def mean_across_ranks(value: torch.Tensor, world_size: int) -> torch.Tensor:
    """Average a (detached) tensor over ranks; identity when not distributed."""
    if world_size <= 1:
        return value
    import torch.distributed as dist

    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world_size


# --- logging ----------------------------------------------------------------------------------------------
class ScalarLogger:
    """Scalars to ``<log_dir>/phase{P}.csv`` (training steps) and ``<log_dir>/phase{P}_val.csv`` (validation),
    one row per logged step, and to TensorBoard when it is installed (optional dependency). ``name`` replaces
    ``phase{P}`` in the file names (the video run: ``video.csv``).

    Only rank 0 writes; other ranks get a logger that does nothing. A resumed run appends to the CSVs.
    """

    def __init__(self, log_dir: Path, phase: int, enabled: bool = True, tensorboard: bool = True,
                 name: str | None = None):
        self.enabled, self.log_dir, self.phase = enabled, Path(log_dir), phase
        self.name = name or f"phase{phase}"
        self.columns: dict[Path, list[str]] = {}
        self.tb = None
        if not enabled:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package

                self.tb = SummaryWriter(str(self.log_dir / "tensorboard" / self.name))
            except Exception:  # tensorboard not installed: CSV only
                self.tb = None

    def path(self, stream: str) -> Path:
        return self.log_dir / (f"{self.name}.csv" if stream == "train" else f"{self.name}_{stream}.csv")

    def log(self, step: int, scalars: dict[str, float], stream: str = "train") -> None:
        if not self.enabled:
            return
        path = self.path(stream)
        row = {"step": step, **{k: float(v) for k, v in scalars.items()}}
        cols = self.columns.get(path)
        if cols is None and path.is_file() and path.stat().st_size:
            with open(path, newline="") as f:
                cols = next(csv.reader(f), None)
        if cols is None:
            cols = list(row)
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(cols)
        self.columns[path] = cols
        with open(path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in cols])
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(f"{stream}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def save_triptych(path: Path, image: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
    """PNG of ``image`` | ``left`` | ``right``: image (H, W, 3) uint8; masks/maps (h, w) bool or float,
    resized to (H, W) and drawn as a red overlay (bool) or a grey-scale heat map (float, min-max scaled)."""
    from PIL import Image

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


# --- evaluation -------------------------------------------------------------------------------------------
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


class Throughput:
    """Images per second over the last ``window`` seconds-ish (reset per log line)."""

    def __init__(self):
        self.t, self.n = time.perf_counter(), 0

    def add(self, n: int) -> None:
        self.n += n

    def rate(self) -> float:
        now = time.perf_counter()
        r = self.n / max(now - self.t, 1e-9)
        self.t, self.n = now, 0
        return r


# --- per-epoch evaluation and pictures (rank 0) ---------------------------------------------------------
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


def record_results(run_name: str, subject: str, metrics: dict, artifact: str, provenance: str) -> None:
    """Append final validation metrics to ``reports/<run_name>/results.jsonl`` (``teacher_*`` under subject
    ``teacher``, the rest under ``subject``)."""
    store = ResultsStore(run_name)
    prov = f"{provenance}, {metrics.get('val_pairs', metrics.get('val_images', '?'))} val items"
    for k, v in metrics.items():
        if isinstance(v, float):
            who, name = ("teacher", k[len("teacher_"):]) if k.startswith("teacher_") else (subject, k.replace("student_", ""))
            store.record(stage=schema.STAGE3, subject=who, metric=name, value=v,
                         unit="" if "loss" in k or "ratio" in k else "fraction", provenance=prov, artifact=artifact)
