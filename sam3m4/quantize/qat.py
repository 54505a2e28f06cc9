"""Quantization-aware fine-tune: a Phase 2 (or video) checkpoint, fake-quantized, trained briefly on Phase 2's
distillation loss against the cached teacher outputs, then converted to the real quantized layout.

    model, info = qat_finetune("checkpoints/distillation/phase2_best.pt", "qat_int8_int4", steps=60)

Setup -> train -> convert, top to bottom: the checkpoint's own Phase 2 config gives the data, the teacher cache
and the loss weights (:func:`qat_config`), so the teacher targets come from the cache Phase 2 filled (filled here
if it is missing) and the teacher does not run otherwise. Fake quantization (torchao
``QATConfig(base, step="prepare")``) rounds Linear and token-table weights (and, for ``int8_int4``, Linear
activations) to the target grid in the forward pass, with straight-through gradients; AdamW (the distillation
recipe's parameter groups, warm-up then cosine) moves the fp32 weights so that their rounded values fit the
teacher. Items are drawn as Phase 2 draws them: a permutation seeded by ``seed + epoch`` (the same as a
one-process ``DistributedSampler``), refilled when a batch would run short.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from sam3m4.checkpoint import Checkpoint, load_model_state
from sam3m4.distill import cache as feature_cache
from sam3m4.distill import losses as distill_losses
from sam3m4.distill import optim, recipe, runtime
from sam3m4.errors import DataFormatError, TrainingDiverged
from sam3m4.models import build_student
from sam3m4.progress import StepProgress
from sam3m4.quantize.modes import get_mode, qat_convert, qat_prepare


def qat_config(ckpt: Checkpoint | str | Path, **overrides) -> dict:
    """The distillation config of ``ckpt``'s Phase 2 run (missing keys: the recipe's defaults), with ``overrides``.
    ``ckpt``: an opened :class:`~sam3m4.checkpoint.Checkpoint` or a path (read once)."""
    ck = Checkpoint.open(ckpt)
    stored = ck.state.get("config")
    if not isinstance(stored, dict):
        raise DataFormatError(f"{ck.path}: config: missing (QAT needs the Phase 2 run's data, teacher and cache)")
    cfg = {**recipe.DEFAULTS, **{k: v for k, v in stored.items() if k in recipe.DEFAULTS}}
    cfg.update(phase=2, init_from=str(ck.path))
    cfg.update(overrides)
    return cfg


def item_order(num_items: int, seed: int, epoch: int, take: int) -> list[int]:
    """The first ``take`` of a permutation of ``range(num_items)`` seeded by ``seed + epoch`` (what a one-process
    ``DistributedSampler(shuffle=True, drop_last=True)`` with ``set_epoch(epoch)`` yields)."""
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    return torch.randperm(num_items, generator=g).tolist()[:take]


def qat_finetune(ckpt: Checkpoint | str | Path, mode: str, steps: int = 60, lr: float = 1e-4, batch_size: int = 16,
                 progress: bool = True, student_state: dict | None = None, **overrides) -> tuple[torch.nn.Module, dict]:
    """Fine-tune ``ckpt``'s student (or ``student_state``, same preset) with ``mode``'s fake quantization for
    ``steps`` optimizer steps of ``batch_size`` pairs, then convert.

    ``overrides``: keys of the Phase 2 config (``grad_accum``, ``warmup_steps``, loss weights ``w_*``...).
    Returns (the converted model in eval mode on the CPU, info with the first and final loss and seconds).
    """
    spec = get_mode(mode)
    if not spec.qat:
        raise ValueError(f"mode {mode!r} is not a QAT mode")
    ckpt = Checkpoint.open(ckpt)  # read once; qat_config and the student's weights use the same object
    cfg = qat_config(ckpt, batch_size=batch_size, progress=progress, lr=lr, warmup_steps=min(5, steps), **overrides)
    t0 = time.time()

    # --- setup: student, train pairs, the teacher cache ---
    if cfg["threads"]:  # as Phase 2 ran (the setting stays for the process, as it does after a recipe run)
        torch.set_num_threads(int(cfg["threads"]))
    runtime.seed_everything(cfg["seed"])
    device = runtime.select_device(cfg["device"])
    amp = runtime.amp_dtype(device, cfg["amp"])
    student = build_student(cfg["student_preset"]).to(device)
    load_model_state(student, student_state if student_state is not None else ckpt.model,
                     ckpt.path, note=f"student_preset '{cfg['student_preset']}'")
    size = cfg["image_size"] or student.image_size
    train = feature_cache.PairSet(Path(cfg["data_root"]) / "saco_image" / "train.json", size, -(-size // 4),
                                  limit=cfg["train_limit"], progress=progress)  # masks at stride 4
    cache, _ = recipe.ensure_cache(cfg, 0, 1, device, [train])  # opens it; fills what is missing (teacher runs)
    weights = distill_losses.weights_from_config(cfg)
    qat_prepare(student, spec)
    optimizer = optim.build_optimizer(student.named_parameters(), lr, cfg["weight_decay"])
    scheduler = optim.build_scheduler(optimizer, cfg["warmup_steps"], steps, cfg["min_lr_frac"])
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    setup_s = time.time() - t0

    def loss_of(idx: list[int]) -> torch.Tensor:
        """Phase 2's distillation loss of the pairs ``idx`` against their cached teacher outputs."""
        target = feature_cache.collate_pairs([cache.get_pair(train.keys[p]) for p in idx], device)
        gt = train.gt_targets(idx, device) if weights.gt > 0 or weights.gt_score > 0 else None
        with runtime.autocast(device, amp):
            out = student(**train.student_inputs(idx, device), with_aux=weights.aux > 0)
        return distill_losses.output_distill_loss(vars(out), target, weights, gt)["loss"]

    # --- train: `steps` optimizer steps of batch_size x grad_accum pairs ---
    batch, accum = cfg["batch_size"], cfg["grad_accum"]
    per = batch * accum
    take = max(min(cfg["epoch_items"] or len(train), len(train)) // per, 1) * per  # Phase 2's items per epoch
    student.train()
    losses, order, refills = [], [], 0
    bar = StepProgress(steps, f"qat {mode}", enabled=progress)
    for step in range(steps):
        if len(order) < per:
            order += item_order(len(train), cfg["seed"], refills, take)
            refills += 1
        items, order = order[:per], order[per:]
        optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        for a in range(accum):
            part = loss_of(items[a * batch:(a + 1) * batch])
            scaler.scale(part / accum).backward()
            loss += float(part.detach()) / accum
        TrainingDiverged.check(loss, f"qat {mode} loss", step + 1)
        scaler.unscale_(optimizer)
        if cfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg["grad_clip"])
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        losses.append(loss)
        bar.update(1, loss=loss)
    bar.close()

    # --- convert: fake-quantized fp32 weights -> the real quantized layout ---
    model = qat_convert(student, spec).cpu().eval()
    info = {"steps": steps, "lr": lr, "batch_size": cfg["batch_size"], "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None, "seconds": round(time.time() - t0, 1),
            "setup_s": round(setup_s, 1)}
    return model, info
