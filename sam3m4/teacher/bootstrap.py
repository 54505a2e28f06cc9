"""Bootstrap the embedded default teacher: a small SAM 3-architecture model trained on synthetic SA-Co.

The real SAM 3 is gated and far too slow for this project's CPUs, so the pipeline ships a tiny model of
exactly SAM 3's architecture (transformers ``Sam3Model``: ViT + FPN neck, CLIP text encoder, DETR
encoder/decoder with presence token, MaskFormer-style mask decoder) trained from scratch on the synthetic
dataset's ground truth with the SAM 3-style set-prediction loss (:mod:`sam3m4.losses.set_prediction`).
It is written with ``save_pretrained`` and loaded back with :func:`sam3m4.teacher.sam3.load_teacher`, the
same code path as ``facebook/sam3``.

    sam3m4 teacher bootstrap --config configs/teacher_bootstrap.yaml data_root=data/synth
    bootstrap_teacher("data/synth", "checkpoints/teacher/sam3-tiny-synth", max_steps=1600)   # the same, from Python

Recipe: setup (config, data into memory) -> optionally pre-train the image encoder on dense colour + shape
labels for ``encoder_pretrain_steps`` steps (:mod:`sam3m4.teacher.encoder_pretrain`) -> train ``max_steps``
steps (AdamW, linear warm-up then cosine over the steps; never cut by the clock, so a slow host trains the same
teacher, only later) -> save -> reload via the adapter -> evaluate on val (union of kept masks mIoU, Presence F1
with SAM 3's score >= 0.5 rule).

The model parts live in :mod:`sam3m4.teacher.bootstrap_model`, the in-memory data in
:mod:`sam3m4.teacher.bootstrap_data`; :func:`load_config` reads ``configs/teacher_bootstrap.yaml`` and its
``key=value`` overrides (:mod:`sam3m4.config`).
"""

from __future__ import annotations

import inspect
import random
import time
import typing
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sam3m4 import config
from sam3m4.errors import ConfigError, TrainingDiverged
from sam3m4.fileio import atomic_folder, atomic_write_json
from sam3m4.losses.set_prediction import SetLossWeights, set_prediction_loss
from sam3m4.metrics import MIoUMeter, PresenceMeter, is_present
from sam3m4.paths import BOOTSTRAP_METRICS
from sam3m4.progress import StepProgress
from sam3m4.teacher.bootstrap_data import PairTensors, saco_dir
from sam3m4.teacher.bootstrap_model import (MODEL_DEFAULTS, DensePhraseAux, build_config, pooled_text,
                                            reinit_for_small_width)
from sam3m4.teacher.encoder_pretrain import concept_phrases, dense_pretrain, schedule, shape_labels
from sam3m4.teacher.sam3 import Sam3Teacher, instances_from_output, load_teacher

# --- defaults (configs/teacher_bootstrap.yaml mirrors these and MODEL_DEFAULTS) ---------------------------
TRAIN_DEFAULTS = dict(
    batch_size=8,  # pairs per step
    pairs_per_image=1,  # pairs drawn from each sampled image (they share one image-encoder pass)
    lr=2e-3,
    image_encoder_lr_mult=1.0,  # the image encoder (ViT + FPN neck) trains at lr * this
    weight_decay=0.05,
    warmup_frac=0.05,  # of max_steps
    min_lr_frac=0.02,
    grad_clip=1.0,
    hflip=True,
    dihedral=False,  # with hflip: each sampled image gets one of the 8 square symmetries (shapes are rotated anyway)
    balance_pairs=False,  # pairs drawn 50/50 by phrase kind (one word / colour + shape) and by present / absent
    hard_negatives=0,  # per sampled image, this many extra absent pairs one word away from a present phrase
    max_steps=1600,  # training length; the LR schedule follows step / max_steps (never the clock)
    reinit=True,  # width-aware re-initialisation (reinit_for_small_width)
    colour_patch_init=True,  # reinit: 48 patch-embedding channels start as 4 x 4 sub-cell colour averages
    freeze_token_embedding=True,  # keep CLIP's 49408 x D token table at its random init (saves ~15% step time)
    dense_aux=2.0,  # weight of the training-only dense phrase loss (DensePhraseAux); 0 = off
    dense_aux_text="model",  # its phrase vectors: "model" (the model's pooled text) or "table" (its own table)
    encoder_pretrain_steps=0,  # before the recipe: dense colour + shape pre-training of the image encoder (0 = off)
    encoder_pretrain_images=8,  # its images per step
    encoder_pretrain_lr=4e-3,  # its AdamW peak lr (the same warm-up + cosine schedule over its own steps)
    encoder_pretrain_level=0,  # the FPN level its head reads: 0 the mask grid, 2 the ViT's grid (faster, see yaml)
    eval_batch_size=32,
    log_every=10,
)
LOSS_KEYS = set(SetLossWeights.__dataclass_fields__)


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
        **_attribute_aucs(max_scores, data),
    }


def _attribute_aucs(max_scores: list[float], data: PairTensors) -> dict:
    """Which attribute the presence decision sees: AUC of present colour + shape pairs against the absent
    colour + shape pairs of an image that shows the same colour in another shape (``presence_auc_shape``: 0.5
    = shape is not seen) or the same shape in another colour (``presence_auc_colour``); NaN without such pairs."""
    words = [ph.split(" ") for ph in data.phrases]
    shown: dict[int, set[tuple[str, str]]] = {}
    for p in range(len(data)):
        w = words[int(data.phrase_of[p])]
        if data.present[p] and len(w) == 2:
            shown.setdefault(int(data.image_of[p]), set()).add((w[0], w[1]))
    pos, shape_neg, colour_neg = [], [], []
    for p, score in enumerate(max_scores):
        w = words[int(data.phrase_of[p])]
        if len(w) != 2:
            continue
        on = shown.get(int(data.image_of[p]), set())
        if data.present[p]:
            pos.append(score)
        elif any(c == w[0] for c, _ in on):
            shape_neg.append(score)
        elif any(s == w[1] for _, s in on):
            colour_neg.append(score)
    return {"presence_auc_shape": _auc(pos + shape_neg, [True] * len(pos) + [False] * len(shape_neg)),
            "presence_auc_colour": _auc(pos + colour_neg, [True] * len(pos) + [False] * len(colour_neg))}


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
    if tr["dense_aux_text"] not in ("model", "table"):
        raise ConfigError(f"bootstrap: dense_aux_text: expected 'model' or 'table', got {tr['dense_aux_text']!r}")
    if tr["dense_aux"]:
        levels = len(model.config.vision_config.backbone_feature_sizes)
        table = len(train.phrases) if tr["dense_aux_text"] == "table" else 0
        dense = DensePhraseAux(model.config.detr_encoder_config.hidden_size, levels, table).to(device)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if dense is not None:
        params += [(f"dense_aux.{n}", p) for n, p in dense.named_parameters()]
    groups = []  # (weight decay, lr multiplier) groups: matrices decay, embeddings / norms / biases do not
    for image in (True, False):
        mult = tr["image_encoder_lr_mult"] if image else 1.0
        part = [(n, p) for n, p in params if n.startswith("vision_encoder.") == image]
        for decays in (True, False):
            chosen = [p for n, p in part if (p.ndim >= 2 and "embed" not in n) == decays]
            if chosen:
                groups.append({"params": chosen, "weight_decay": tr["weight_decay"] if decays else 0.0,
                               "lr_mult": mult})
    opt = torch.optim.AdamW(groups, lr=tr["lr"], betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(seed)
    if tr["balance_pairs"] or tr["hard_negatives"]:
        train.add_absent_pairs()
    if tr["balance_pairs"]:
        cells = train.balanced_cells()
    by_image = train.pairs_of_image()
    if tr["hard_negatives"]:
        near = train.near_misses()
        anchors = [pairs[torch.tensor([len(near[q]) > 0 for q in pairs.tolist()], dtype=torch.bool)]
                   for pairs in by_image]  # per image, its present pairs that have a hard negative

    # --- train -------------------------------------------------------------------------------------------
    bar = StepProgress(max_steps, "bootstrap teacher", enabled=progress)
    losses, first_loss, start, history, eval_s = [], None, time.time(), [], 0.0
    for step in range(max_steps):
        if eval_data is not None and eval_every and step and step % eval_every == 0:
            t_eval = time.time()
            history.append({"step": step, **evaluate(teacher, eval_data)})
            model.train()
            eval_s += time.time() - t_eval
        lr_scale = schedule(step / max_steps, tr["warmup_frac"], tr["min_lr_frac"])
        for group in opt.param_groups:
            group["lr"] = tr["lr"] * group["lr_mult"] * lr_scale
        n_img = max(1, tr["batch_size"] // tr["pairs_per_image"])
        imgs = torch.randperm(len(by_image), generator=gen)[:n_img]  # (n_img,) distinct images
        if tr["balance_pairs"]:  # the phrase alone must not tell presence: each kind present half the time
            picks = [_balanced_pick(cells[i], tr["pairs_per_image"], gen) for i in imgs.tolist()]
        else:
            picks = [by_image[i][torch.randperm(len(by_image[i]), generator=gen)[: tr["pairs_per_image"]]]
                     for i in imgs.tolist()]  # k natural pairs per image (all of them when it has fewer)
        if tr["hard_negatives"]:  # the same image asked for a near miss of what it shows
            picks = [torch.cat([p, _hard_pick(anchors[i], near, tr["hard_negatives"], gen)])
                     for p, i in zip(picks, imgs.tolist())]
        idx = torch.cat(picks)  # (B,) pair indices, grouped by image
        flip = None
        if tr["hflip"]:
            code = (torch.randint(0, 8, (n_img,), generator=gen) if tr["dihedral"]
                    else (torch.rand(n_img, generator=gen) < 0.5))  # (n_img,) per-image symmetry
            flip = code.repeat_interleave(torch.tensor([len(p) for p in picks]))
        inputs, targets = train.batch(idx, flip)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        out = teacher(**inputs, with_aux=True)
        terms = set_prediction_loss(vars(out), targets, weights)
        if dense is not None:
            first = torch.zeros(len(inputs["pixel_values"]), dtype=torch.long, device=device)
            first[inputs["image_index"]] = torch.arange(len(idx), device=device)  # a pair of each image
            fpn = [f[first] for f in out.fpn_features]  # (I, D, h, w) per level
            text = (None if dense.table is not None  # (T, D) or the head's own table
                    else pooled_text(model, train.input_ids.to(device), train.attention_mask.to(device)))
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
        bar.update(1, loss=float(np.mean(losses[-tr["log_every"]:])), lr=tr["lr"] * lr_scale)
    train_s = time.time() - start - eval_s
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


def _balanced_pick(cells: list[torch.Tensor], k: int, gen: torch.Generator) -> torch.Tensor:
    """``k`` pair indices of one image: each draws a phrase kind and present / absent at 50/50 (a cell with no
    pair falls back to the other presence, then to any pair of the image), then a pair of that cell."""
    out = []
    for _ in range(k):
        kind, present = (torch.rand(2, generator=gen) < 0.5).tolist()
        order = [2 * kind + present, 2 * kind + (1 - present), 2 * (1 - kind) + present, 2 * (1 - kind) + (1 - present)]
        cell = next(cells[c] for c in order if len(cells[c]))
        out.append(cell[torch.randint(len(cell), (1,), generator=gen)])
    return torch.cat(out)


def _hard_pick(anchors: torch.Tensor, near: list[torch.Tensor], k: int, gen: torch.Generator) -> torch.Tensor:
    """``k`` hard negatives of one image (``near`` from :meth:`PairTensors.near_misses`): each a random near miss
    of a random present pair among ``anchors`` (n,) int64; none when the image has no such pair."""
    if not len(anchors):
        return anchors
    out = []
    for a in anchors[torch.randint(len(anchors), (k,), generator=gen)].tolist():
        out.append(near[a][torch.randint(len(near[a]), (1,), generator=gen)])
    return torch.cat(out)


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


def bootstrap_teacher(
    data_root: str | Path,
    out_dir: str | Path,
    *,
    time_budget_s: float | None = None,
    seed: int = 0,
    threads: int | None = 1,
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
    ``steps``, ``steps_per_s``, ``train_s``, ``final_loss``, ``first_loss``, val ``miou``/``presence_f1``/...,
    and with a pre-training phase ``pretrain_s`` (its wall time, not in ``train_s`` nor the budget warning)."""
    from transformers import Sam3Model

    model_kw, tr, loss_kw = _split_kwargs(kw)
    weights = SetLossWeights(**loss_kw)
    if threads:
        torch.set_num_threads(int(threads))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    saco = saco_dir(Path(data_root))
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

    pretrain = None
    if tr["encoder_pretrain_steps"]:  # the image encoder sees colour + shape before the set loss
        levels = len(sam3_config.vision_config.backbone_feature_sizes)
        if not 0 <= tr["encoder_pretrain_level"] < levels:
            raise ConfigError(f"bootstrap: encoder_pretrain_level: expected 0 to {levels - 1} (the FPN levels), "
                              f"got {tr['encoder_pretrain_level']!r}")
        names = concept_phrases(train)
        if not names:
            raise ConfigError(f"bootstrap: encoder_pretrain_steps: {saco / 'train.json'} has no colour + shape phrase")
        head = torch.nn.Conv2d(sam3_config.vision_config.fpn_hidden_size, 1 + len(names), 1).to(device)
        pretrain = dense_pretrain(teacher.model.vision_encoder.to(device), head, train.pixels,
                                  shape_labels(train, names), steps=tr["encoder_pretrain_steps"],
                                  images_per_step=tr["encoder_pretrain_images"], lr=tr["encoder_pretrain_lr"],
                                  level=tr["encoder_pretrain_level"], seed=seed, warmup_frac=tr["warmup_frac"],
                                  min_lr_frac=tr["min_lr_frac"], progress=progress)
    stats = train_loop(teacher, train, time_budget_s=time_budget_s, seed=seed, device=device,
                       progress=progress, weights=weights, **tr)
    model = teacher.model

    # --- save + reload through the adapter ------------------------------------------------------------------
    with atomic_folder(out_dir) as tmp:  # a run killed mid-save leaves the old teacher's files whole
        model.save_pretrained(tmp)
        teacher.image_processor.save_pretrained(tmp)
    result = {
        **stats,
        **({"pretrain_s": pretrain["pretrain_s"], "pretrain_final_loss": pretrain["final_loss"]} if pretrain else {}),
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
    atomic_write_json(out_dir / BOOTSTRAP_METRICS, result, indent=2, default=str)
    return result


# --- config -------------------------------------------------------------------------------------------------
# keys that must be > 0 (every other number must be >= 0)
POSITIVE_KEYS = {"image_size", "patch_size", "hidden_size", "vit_layers", "vit_window", "text_layers",
                 "decoder_layers", "num_queries", "num_heads", "vit_mlp_ratio", "batch_size", "pairs_per_image", "lr",
                 "eval_batch_size", "log_every", "max_steps", "time_budget_s", "encoder_pretrain_images",
                 "encoder_pretrain_lr"}


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
