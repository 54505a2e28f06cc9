"""Bootstrap the embedded default teacher: a small SAM 3-architecture model trained on synthetic SA-Co.

The real SAM 3 is gated and far too slow for this project's CPUs, so the pipeline ships a tiny model of
exactly SAM 3's architecture (transformers ``Sam3Model``: ViT + FPN neck, CLIP text encoder, DETR
encoder/decoder with presence token, MaskFormer-style mask decoder) trained from scratch on the synthetic
dataset's ground truth with the SAM 3-style set-prediction loss (:mod:`sam3m4.losses.set_prediction`).
It is written with ``save_pretrained`` and loaded back with :func:`sam3m4.teacher.sam3.load_teacher`, the
same code path as ``facebook/sam3``.

    python -m sam3m4.teacher.bootstrap --config configs/teacher_bootstrap.yaml data_root=data/synth

Recipe: setup (config, data into memory) -> train ``max_steps`` steps (AdamW, linear warm-up then cosine
over the steps; never cut by the clock, so a slow host trains the same teacher, only later) -> save -> reload via the adapter -> evaluate on val (union of
kept masks mIoU, Presence F1 with SAM 3's score >= 0.5 rule).
"""

from __future__ import annotations

import inspect
import json
import math
import random
import time
import typing
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sam3m4 import config
from sam3m4.data.saco_image import SacoImageDataset
from sam3m4.errors import ConfigError, Sam3m4Error, TrainingDiverged
from sam3m4.losses.set_prediction import SetLossWeights, set_prediction_loss
from sam3m4.metrics import MIoUMeter, PresenceMeter, is_present
from sam3m4.paths import BOOTSTRAP_METRICS
from sam3m4.models.layers import masked_mean
from sam3m4.teacher.sam3 import Sam3Teacher, instances_from_output, load_teacher

# --- defaults (configs/teacher_bootstrap.yaml mirrors these) ---------------------------------------------
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
)
TRAIN_DEFAULTS = dict(
    batch_size=8,  # pairs per step
    pairs_per_image=1,  # pairs drawn from each sampled image (they share one image-encoder pass)
    lr=2e-3,
    weight_decay=0.05,
    warmup_frac=0.05,  # of max_steps
    min_lr_frac=0.02,
    grad_clip=1.0,
    hflip=True,
    max_steps=1600,  # training length; the LR schedule follows step / max_steps (never the clock)
    reinit=True,  # width-aware re-initialisation (reinit_for_small_width)
    colour_patch_init=True,  # reinit: 48 patch-embedding channels start as 4 x 4 sub-cell colour averages
    freeze_token_embedding=True,  # keep CLIP's 49408 x D token table at its random init (saves ~15% step time)
    dense_aux=2.0,  # weight of the training-only dense phrase loss (DensePhraseAux); 0 = off
    eval_batch_size=32,
    log_every=10,
)
LOSS_KEYS = set(SetLossWeights.__dataclass_fields__)


def build_config(**kw):
    """A SAM 3-architecture ``Sam3Config`` from flat sizes (see ``MODEL_DEFAULTS``); dropout off."""
    from transformers import Sam3Config

    c = {**MODEL_DEFAULTS, **kw}
    s, p, h, nh = c["image_size"], c["patch_size"], c["hidden_size"], c["num_heads"]
    if s % p:
        raise ConfigError(f"image_size: {s} is not a multiple of patch_size {p}")
    g = s // p
    ffn = 2 * h
    layer = dict(hidden_size=h, num_attention_heads=nh, intermediate_size=ffn, dropout=0.0)
    return Sam3Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam3_vit_model", hidden_size=h, intermediate_size=ffn,
                num_hidden_layers=c["vit_layers"], num_attention_heads=nh, image_size=s, patch_size=p,
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
    import torch.nn as nn

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


# --- data --------------------------------------------------------------------------------------------------
class PairTensors:
    """A split held in memory: unique images preprocessed once, per-pair targets at mask resolution.

    ``pixels`` (I, 3, S, S) float32 in [-1, 1]; ``image_of`` (P,) int64 index into pixels; ``phrase_of`` (P,)
    into ``phrases``; ``masks[p]`` (N, m, m) float in [0, 1] (area-downsampled); ``boxes[p]`` (N, 4) XYXY in
    [0, 1]; ``present`` (P,) bool; ``gt_full[p]`` (N, H, W) bool at image resolution (val only).
    """

    def __init__(self, samples, teacher, mask_size: int, keep_full: bool):
        """``samples``: iterable of :class:`sam3m4.data.saco_image.ImageSample`-like objects (``file_name``,
        ``image`` (H, W, 3) uint8, ``phrase``, ``masks`` (N, H, W) bool, ``boxes`` (N, 4) XYXY px, ``present``)."""
        index: dict[str, int] = {}
        images, image_of, phrase_list, masks, boxes, present, full, sizes = [], [], [], [], [], [], [], []
        for s in samples:
            if s.file_name not in index:
                index[s.file_name] = len(images)
                images.append(np.ascontiguousarray(s.image))
            h, w = s.image.shape[:2]
            image_of.append(index[s.file_name])
            phrase_list.append(s.phrase)
            m = torch.from_numpy(np.asarray(s.masks, dtype=np.float32))  # (N, H, W)
            if len(m):
                m = F.interpolate(m[None], size=(mask_size, mask_size), mode="area")[0]  # (N, m, m)
            else:
                m = torch.zeros(0, mask_size, mask_size)
            masks.append(m)
            boxes.append(torch.from_numpy(np.asarray(s.boxes, np.float32)).reshape(-1, 4) / torch.tensor([w, h, w, h]))
            present.append(bool(s.present))
            sizes.append((h, w))
            full.append(np.asarray(s.masks, bool) if keep_full else None)
        self.phrases = sorted(set(phrase_list))
        tok = teacher.tokenize(self.phrases)
        self.input_ids, self.attention_mask = tok["input_ids"], tok["attention_mask"]  # (T, 32) each
        self.pixels = torch.cat([teacher.preprocess_images(images[i : i + 64]) for i in range(0, len(images), 64)])
        self.image_of = torch.tensor(image_of)
        self.phrase_of = torch.tensor([self.phrases.index(p) for p in phrase_list])
        self.masks, self.boxes, self.gt_full, self.sizes = masks, boxes, full, sizes
        self.present = torch.tensor(present)
        # per image, every phrase's union mask (phrases not asked as positives are absent): (I, T, m, m)
        self.phrase_maps = torch.zeros(len(images), len(self.phrases), mask_size, mask_size, dtype=torch.float16)
        for p in range(len(masks)):
            if present[p] and len(masks[p]):
                self.phrase_maps[image_of[p], self.phrase_of[p]] = masks[p].amax(0).half()

    @classmethod
    def from_json(cls, json_path: Path, teacher, mask_size: int, keep_full: bool, limit: int | None = None):
        """Read an SA-Co image JSON (and its images) with :class:`sam3m4.data.saco_image.SacoImageDataset`."""
        ds = SacoImageDataset(json_path)
        n = len(ds) if limit is None else min(limit, len(ds))
        return cls((ds[i] for i in range(n)), teacher, mask_size, keep_full)

    def __len__(self) -> int:
        return len(self.image_of)

    def pairs_of_image(self) -> list[torch.Tensor]:
        """For each image, the (n_i,) int64 indices of its pairs."""
        order = torch.argsort(self.image_of, stable=True)
        counts = torch.bincount(self.image_of, minlength=len(self.pixels)).tolist()
        return list(torch.split(order, counts))

    def batch(self, idx, hflip: torch.Tensor | None = None):
        """Model inputs and loss targets for pair indices ``idx`` (B,).

        ``hflip`` (B,) bool flips a pair left-right (pairs of one image must agree). Images are sent once:
        ``pixel_values`` (I, 3, S, S) with ``image_index`` (B,) mapping pairs to them.
        """
        img, image_index, flip_img = self._images(idx, hflip)
        px = self.pixels[img]  # (I, 3, S, S)
        targets = []
        for j, p in enumerate(idx.tolist()):
            m, b = self.masks[p], self.boxes[p]
            if hflip is not None and hflip[j]:
                m = m.flip(-1)
                b = torch.stack([1 - b[:, 2], b[:, 1], 1 - b[:, 0], b[:, 3]], dim=1) if len(b) else b
            targets.append({"masks": m, "boxes_xyxy": b})
        px = torch.where(flip_img[:, None, None, None], px.flip(-1), px)
        t = self.phrase_of[idx]
        inputs = {"pixel_values": px, "input_ids": self.input_ids[t], "attention_mask": self.attention_mask[t],
                  "image_index": image_index}
        return inputs, targets

    def phrase_targets(self, idx, hflip: torch.Tensor | None = None) -> torch.Tensor:
        """(I, T, m, m) float: every phrase's union mask on each image of :meth:`batch` ``(idx, hflip)``, in
        the order of its ``pixel_values``."""
        img, _, flip_img = self._images(idx, hflip)
        maps = self.phrase_maps[img].float()  # (I, T, m, m)
        return torch.where(flip_img[:, None, None, None], maps.flip(-1), maps)

    def _images(self, idx, hflip: torch.Tensor | None):
        """Distinct images of pairs ``idx``: indices (I,), each pair's position among them (B,), and whether
        each image is flipped (I,) bool (its pairs' ``hflip``; all False without one)."""
        img, image_index = torch.unique(self.image_of[idx], return_inverse=True)  # (I,), (B,)
        flip_img = torch.zeros(len(img), dtype=torch.bool)
        if hflip is not None:
            flip_img = flip_img.index_put_((image_index,), hflip)
        return img, image_index, flip_img


class DensePhraseAux(torch.nn.Module):
    """Training-only dense phrase loss for the bootstrap (not part of the saved SAM 3 model).

    Every FPN level's pixel features are scored against every training phrase's pooled text feature
    (LSeg-style: logit = <conv1x1(pixel), linear(text)> / sqrt(D) + bias) and trained with BCE against the
    phrase's union mask on that image. It gives the image encoder a dense, text-aligned signal for every
    concept on every image in each step (the set loss sees one phrase per pair). Measured on the synthetic
    data in the 5-minute budget: it sharpens colour binding and the semantic map, but the ViT still learns
    no shape (see docs/measurements.md, the embedded teacher). The heads are dropped: only ``model`` is saved.
    """

    def __init__(self, dim: int, levels: int):
        super().__init__()
        self.pixel = torch.nn.ModuleList(torch.nn.Conv2d(dim, dim, 1) for _ in range(levels))
        self.text = torch.nn.Linear(dim, dim)
        self.bias = torch.nn.Parameter(torch.full((levels,), -2.0))

    def forward(self, fpn: list[torch.Tensor], text: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """fpn: per level (I, D, h, w); text (T, D) pooled phrase features; targets (I, T, m, m) -> scalar."""
        t = self.text(text)  # (T, D)
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


@torch.no_grad()
def evaluate(teacher, data: PairTensors, batch_size: int = 32, threshold: float = 0.5) -> dict:
    """Union-of-kept-masks mIoU and presence metrics (SAM 3's score >= threshold rule) over all pairs."""
    teacher.eval()
    miou, pres = MIoUMeter(), PresenceMeter()
    miou_pos, miou_sem = MIoUMeter(), MIoUMeter()
    max_scores, labels = [], []
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        inputs, _ = data.batch(idx)
        device = next(teacher.parameters()).device
        out = teacher(**{k: v.to(device) for k, v in inputs.items()})
        sem = F.interpolate(out.semantic_logits.float(), size=data.sizes[int(idx[0])], mode="bilinear")  # (b,1,H,W)
        for j, p in enumerate(idx.tolist()):
            miou_sem.add((sem[j, 0] > 0).cpu().numpy(), data.gt_full[p])
        max_scores += out.scores.max(1).values.tolist()
        labels += data.present[idx].tolist()
        for j, inst in enumerate(instances_from_output(out, [data.sizes[p] for p in idx.tolist()], threshold)):
            p = int(idx[j])
            gt = data.gt_full[p]
            miou.add(inst.masks, gt)
            if data.present[p]:
                miou_pos.add(inst.masks, gt)
            pres.add(is_present(inst.scores, threshold), bool(data.present[p]))
    r = pres.result()
    return {
        "miou": miou.result().miou,
        "miou_present_pairs": miou_pos.result().miou if len(miou_pos) else float("nan"),
        "presence_f1": r.f1,
        "presence_precision": r.precision,
        "presence_recall": r.recall,
        "il_mcc": r.il_mcc,
        "num_pairs": len(data),
        # diagnostics independent of the 0.5 threshold
        "semantic_miou": miou_sem.result().miou,  # semantic head > 0 vs the union of instances
        "presence_auc": _auc(max_scores, labels),  # best query score ranks present over absent pairs
    }


def _auc(scores: list[float], labels: list[bool]) -> float:
    """ROC AUC (Mann-Whitney U) of ``scores`` for binary ``labels``; NaN when a class is missing."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels, bool)
    if y.all() or not y.any():
        return float("nan")
    ranks = np.empty(len(s))
    ranks[np.argsort(s, kind="stable")] = np.arange(1, len(s) + 1)
    return float((ranks[y].sum() - y.sum() * (y.sum() + 1) / 2) / (y.sum() * (~y).sum()))


# --- recipe ------------------------------------------------------------------------------------------------
def train_loop(
    teacher,
    train: PairTensors,
    *,
    time_budget_s: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    weights: SetLossWeights = SetLossWeights(),
    eval_data: PairTensors | None = None,
    eval_every: int = 0,
    **tr,
) -> dict:
    """Train ``teacher.model`` in place on ``train`` for exactly ``max_steps`` steps.

    AdamW, linear warm-up for ``warmup_frac`` of the steps then cosine to ``min_lr_frac``; the schedule's clock
    is step / max_steps. The wall clock never changes the model: ``time_budget_s`` only warns (and sets
    ``over_time_budget``) when training took longer, so a busy host trains the same teacher, later. A
    non-finite loss stops training with :class:`TrainingDiverged` naming the step. Returns step/loss/speed
    stats; with ``eval_data`` and ``eval_every`` > 0 also ``history`` (val metrics every that many steps; the
    time spent evaluating is not counted in ``train_s``).
    """
    tr = {**TRAIN_DEFAULTS, **tr}
    max_steps = tr["max_steps"]
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ConfigError(f"bootstrap: max_steps: expected a positive integer, got {max_steps!r}")
    model = teacher.model.to(device).train()
    if tr["freeze_token_embedding"]:
        model.text_encoder.get_input_embeddings().requires_grad_(False)
    dense = None
    if tr["dense_aux"]:
        levels = len(model.config.vision_config.backbone_feature_sizes)
        dense = DensePhraseAux(model.config.detr_encoder_config.hidden_size, levels).to(device)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if dense is not None:
        params += [(f"dense_aux.{n}", p) for n, p in dense.named_parameters()]
    decay = [p for n, p in params if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in params if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tr["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tr["lr"], betas=(0.9, 0.999),
    )
    gen = torch.Generator().manual_seed(seed)
    by_image = train.pairs_of_image()

    # --- train -------------------------------------------------------------------------------------------
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_steps, unit="step", desc="bootstrap teacher", leave=False)
    losses, first_loss, start, history, eval_s = [], None, time.time(), [], 0.0
    for step in range(max_steps):
        if eval_data is not None and eval_every and step and step % eval_every == 0:
            t_eval = time.time()
            history.append({"step": step, **evaluate(teacher, eval_data)})
            model.train()
            eval_s += time.time() - t_eval
        frac = step / max_steps
        warm = tr["warmup_frac"]
        if frac < warm:
            lr_scale = max(frac / warm, 0.02)
        else:
            cos = 0.5 * (1 + math.cos(math.pi * (frac - warm) / (1 - warm)))
            lr_scale = tr["min_lr_frac"] + (1 - tr["min_lr_frac"]) * cos
        for group in opt.param_groups:
            group["lr"] = tr["lr"] * lr_scale
        n_img = max(1, tr["batch_size"] // tr["pairs_per_image"])
        imgs = torch.randperm(len(by_image), generator=gen)[:n_img]  # (n_img,) distinct images
        idx = torch.cat([by_image[i][torch.randperm(len(by_image[i]), generator=gen)[: tr["pairs_per_image"]]]
                         for i in imgs.tolist()])  # (B,) pair indices, k per image
        flip = None
        if tr["hflip"]:
            flip = (torch.rand(n_img, generator=gen) < 0.5).repeat_interleave(
                torch.tensor([min(len(by_image[i]), tr["pairs_per_image"]) for i in imgs.tolist()]))
        inputs, targets = train.batch(idx, flip)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        out = teacher(**inputs, with_aux=True)
        terms = set_prediction_loss(vars(out), targets, weights)
        if dense is not None:
            first = torch.zeros(len(inputs["pixel_values"]), dtype=torch.long, device=device)
            first[inputs["image_index"]] = torch.arange(len(idx), device=device)  # a pair of each image
            fpn = [f[first] for f in out.fpn_features]  # (I, D, h, w) per level
            text = pooled_text(model, train.input_ids.to(device), train.attention_mask.to(device))  # (T, D)
            maps = train.phrase_targets(idx, flip).to(device)  # (I, T, m, m)
            terms["dense_aux"] = tr["dense_aux"] * dense(fpn, text, maps)
            terms["loss"] = terms["loss"] + terms["dense_aux"]
        loss = float(terms["loss"].detach())
        TrainingDiverged.check(loss, "teacher bootstrap loss", step + 1)  # nothing saved yet
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if tr["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tr["grad_clip"])
        opt.step()
        losses.append(loss)
        first_loss = loss if first_loss is None else first_loss
        if bar is not None:
            bar.update(1)
            if (step + 1) % tr["log_every"] == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-tr['log_every']:]):.3f}", lr=f"{tr['lr'] * lr_scale:.1e}")
    train_s = time.time() - start - eval_s
    if bar is not None:
        bar.close()
    over = time_budget_s is not None and train_s > time_budget_s
    if over:
        warnings.warn(f"teacher bootstrap: {max_steps} steps took {train_s:.0f} s, over time_budget_s="
                      f"{time_budget_s:g} (a slow or busy host; the teacher is the same, only later)", stacklevel=2)

    return {
        "steps": len(losses),
        "train_s": round(train_s, 1),
        "steps_per_s": round(len(losses) / max(train_s, 1e-9), 3),
        "over_time_budget": over,
        "batch_size": tr["batch_size"],
        "first_loss": first_loss,
        "final_loss": float(np.mean(losses[-20:])) if losses else float("nan"),
        **({"history": history} if history else {}),
    }


def _split_kwargs(kw: dict) -> tuple[dict, dict, dict]:
    model, train, loss = {}, {}, {}
    for k, v in kw.items():
        if k in MODEL_DEFAULTS:
            model[k] = v
        elif k in TRAIN_DEFAULTS:
            train[k] = v
        elif k.startswith("loss_") and k[5:] in LOSS_KEYS:
            loss[k[5:]] = v
        else:
            raise ConfigError(f"bootstrap: unknown key '{k}'")
    return model, {**TRAIN_DEFAULTS, **train}, loss


def _saco_dir(data_root: Path) -> Path:
    for cand in (data_root / "saco_image", data_root):
        if (cand / "train.json").is_file():
            return cand
    raise Sam3m4Error(f"{data_root}: no saco_image/train.json (generate it with 'sam3m4 data synth')")


def bootstrap_teacher(
    data_root: str | Path,
    out_dir: str | Path,
    *,
    time_budget_s: float | None = None,
    seed: int = 0,
    threads: int | None = 2,
    progress: bool = True,
    train_limit: int | None = None,
    val_limit: int | None = None,
    evaluate_val: bool = True,
    device: str = "cpu",
    **kw,
) -> dict:
    """Train a tiny SAM 3 on ``data_root``'s synthetic SA-Co train split, save it to ``out_dir``, evaluate.

    ``kw``: model sizes (``MODEL_DEFAULTS``), training settings (``TRAIN_DEFAULTS``) and loss weights as
    ``loss_<field of SetLossWeights>``. Training runs ``max_steps`` steps whatever the host's speed;
    ``time_budget_s`` only warns when the loop took longer (data loading, saving and evaluation are outside it
    and reported separately). Returns a dict of metrics and timings:
    ``steps``, ``steps_per_s``, ``train_s``, ``final_loss``, ``first_loss``, val ``miou``/``presence_f1``/...
    """
    from transformers import Sam3Model

    model_kw, tr, loss_kw = _split_kwargs(kw)
    weights = SetLossWeights(**loss_kw)
    if threads:
        torch.set_num_threads(int(threads))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    saco = _saco_dir(Path(data_root))
    out_dir = Path(out_dir)

    # --- setup -------------------------------------------------------------------------------------------
    t0 = time.time()
    sam3_config = build_config(**model_kw)
    teacher = Sam3Teacher(Sam3Model(sam3_config))
    if tr["reinit"]:
        reinit_for_small_width(teacher.model, tr["colour_patch_init"])
    backbone = sam3_config.vision_config.backbone_config
    g = backbone.image_size // backbone.patch_size
    train = PairTensors.from_json(saco / "train.json", teacher, 4 * g, keep_full=False, limit=train_limit)
    load_s = time.time() - t0

    stats = train_loop(teacher, train, time_budget_s=time_budget_s, seed=seed, device=device,
                       progress=progress, weights=weights, **tr)
    model = teacher.model

    # --- save + reload through the adapter ------------------------------------------------------------------
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    teacher.image_processor.save_pretrained(out_dir)
    result = {
        **stats,
        "load_s": round(load_s, 1),
        "train_pairs": len(train),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "config": {**MODEL_DEFAULTS, **model_kw},
        "train": tr,
        "loss_weights": vars(weights),
        "seed": seed,
        "time_budget_s": time_budget_s,
    }
    if evaluate_val and (saco / "val.json").is_file():
        t1 = time.time()
        reloaded = load_teacher(out_dir, device=device)
        val = PairTensors.from_json(saco / "val.json", reloaded, 4 * g, keep_full=True, limit=val_limit)
        result.update({f"val_{k}": v for k, v in evaluate(reloaded, val, tr["eval_batch_size"]).items()})
        result["eval_s"] = round(time.time() - t1, 1)
    (out_dir / BOOTSTRAP_METRICS).write_text(json.dumps(result, indent=2, default=str))
    return result


# --- config -------------------------------------------------------------------------------------------------
# keys that must be > 0 (every other number must be >= 0)
POSITIVE_KEYS = {"image_size", "patch_size", "hidden_size", "vit_layers", "vit_window", "text_layers",
                 "decoder_layers", "num_queries", "num_heads", "batch_size", "pairs_per_image", "lr",
                 "eval_batch_size", "log_every", "max_steps", "time_budget_s"}


def config_defaults() -> tuple[dict, dict]:
    """(defaults, types) of every key the config / overrides may set: :func:`bootstrap_teacher`'s arguments
    (typed by their annotations; ``data_root`` and ``out_dir`` have no default), ``MODEL_DEFAULTS`` /
    ``TRAIN_DEFAULTS`` and ``loss_<SetLossWeights field>`` (typed by their defaults)."""
    hints = typing.get_type_hints(bootstrap_teacher)
    defaults, types = {}, {}
    for name, param in inspect.signature(bootstrap_teacher).parameters.items():
        if param.kind is param.VAR_KEYWORD:
            continue
        defaults[name] = "" if param.default is param.empty else param.default
        types[name] = tuple(typing.get_args(hints[name])) or (hints[name],)  # "int | None" -> (int, NoneType)
    defaults.update(MODEL_DEFAULTS)
    defaults.update(TRAIN_DEFAULTS)
    defaults.update({f"loss_{name}": f.default for name, f in SetLossWeights.__dataclass_fields__.items()})
    return defaults, types


def load_config(path: str | Path, overrides=()) -> dict:
    """The YAML file plus ``key=value`` overrides (:func:`sam3m4.config.load_config`), keys and types checked
    before any data is read; ``data_root`` and ``out_dir`` are required; numbers must be >= 0 (> 0 for
    ``POSITIVE_KEYS``). Returns only the keys that were set (the rest keep ``bootstrap_teacher``'s defaults)."""
    defaults, types = config_defaults()
    cfg = config.load_config(path, overrides, defaults, types=types, required=("data_root", "out_dir"))
    for key in cfg.origins:
        value = cfg[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not (value > 0 if key in POSITIVE_KEYS else value >= 0):  # NaN fails both
                low = "> 0" if key in POSITIVE_KEYS else ">= 0"
                raise ConfigError(f"{cfg.where(key)}: {key}: must be {low}, got {value!r}")
    return {key: cfg[key] for key in cfg.origins}


def add_arguments(parser) -> None:
    """Arguments of ``sam3m4 teacher bootstrap`` (also used by ``python -m sam3m4.teacher.bootstrap``)."""
    parser.add_argument("--config", default="configs/teacher_bootstrap.yaml", help="flat YAML config")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. max_steps=200")
    parser.set_defaults(func=run)


def run(args) -> dict:
    cfg = load_config(args.config, args.overrides)  # types and keys checked before any data is read
    result = bootstrap_teacher(cfg.pop("data_root"), cfg.pop("out_dir"), **cfg)
    print(json.dumps({k: v for k, v in result.items() if k not in ("train", "loss_weights")}, indent=2, default=str))
    return result


if __name__ == "__main__":
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m sam3m4.teacher.bootstrap", description=__doc__.split("\n")[0])
    add_arguments(ap)
    a = ap.parse_args()
    try:
        run(a)
    except Sam3m4Error as err:
        print(f"sam3m4: error: {err}", file=sys.stderr)
        sys.exit(2)
