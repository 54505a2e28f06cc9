"""QAT recipe: a Phase 2 (or video) checkpoint, fake-quantized, trained briefly on Phase 2's distillation loss
against the cached teacher outputs, then converted to the real quantized layout. One readable file, setup ->
train -> convert, as torchtune keeps ``qat_single_device.py`` next to its fine-tune recipes.

    model, info = qat_finetune("checkpoints/distillation/phase2_best.pt", "qat_int8_int4", steps=60)
    settings = load_config("configs/qat.yaml", ["steps=120"])   # QAT's own keys, typed and range-checked
    model, info = qat_finetune("checkpoints/distillation/phase2_best.pt", "qat_int8_int4", **settings)
    sam3m4 quantize --mode qat_int8_int4 --qat-config configs/qat.yaml [--qat-steps 60]   # Stage 4 runs it

Features:

* Settings, two kinds. QAT's own (:data:`DEFAULTS`, ``configs/qat.yaml``): optimizer steps, peak learning rate,
  micro-batch, warm-up. Inherited from the checkpoint's Phase 2 run (:func:`qat_config`): the data, the teacher
  and its cache, the loss weights and the optimizer's shape (weight decay, accumulation, clipping, cosine floor),
  so QAT trains on what Phase 2 trained on; keys an older checkpoint lacks take the distillation defaults
  (:data:`sam3m4.distill.settings.DEFAULTS`). ``**overrides`` of :func:`qat_finetune` replace either kind.
* Teacher targets come from the cache Phase 2 filled, opened through :func:`sam3m4.distill.cache_pass.ensure_cache`
  (filled there if it is missing); the teacher does not run otherwise.
* Fake quantization (torchao ``QATConfig(base, step="prepare")``) rounds Linear and token-table weights (and, for
  ``int8_int4``, Linear activations) to the target grid in the forward pass, with straight-through gradients;
  AdamW (the distillation recipe's parameter groups, warm-up then cosine) moves the fp32 weights so that their
  rounded values fit the teacher.
* Items are drawn as Phase 2 draws them: a permutation seeded by ``seed + epoch`` (the same as a one-process
  ``DistributedSampler``), refilled when a batch would run short.
* A NaN/inf loss stops the run (:class:`~sam3m4.errors.TrainingDiverged`); the result is the converted model on the
  CPU in eval mode with the first and final loss and the seconds spent.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from sam3m4 import config
from sam3m4.checkpoint import Checkpoint, load_model_state
from sam3m4.distill import cache as feature_cache
from sam3m4.distill import losses as distill_losses
from sam3m4.distill import optim, runtime
from sam3m4.distill.cache_pass import ensure_cache
from sam3m4.distill.settings import DEFAULTS as PHASE2_DEFAULTS
from sam3m4.errors import ConfigError, DataFormatError, TrainingDiverged
from sam3m4.models import build_student
from sam3m4.progress import StepProgress
from sam3m4.quantize.modes import get_mode, qat_convert, qat_prepare


DEFAULTS = dict(
    steps=60,  # optimizer steps, each of batch_size x grad_accum pairs (grad_accum: the Phase 2 run's)
    lr=1.0e-4,  # peak learning rate: AdamW, linear warm-up then cosine down to min_lr_frac x lr
    batch_size=16,  # pairs per micro-batch
    warmup_steps=5,  # linear warm-up steps (at most `steps`)
)
"""QAT's own settings, as ``configs/qat.yaml`` holds them; every other key comes from the Phase 2 run."""
AT_LEAST_ONE = ("steps", "batch_size")


def load_config(path: str | Path | None, overrides=()) -> dict:
    """``configs/qat.yaml`` (or None) + ``key=value`` overrides -> QAT's settings, typed by :data:`DEFAULTS`
    (:func:`sam3m4.config.load_config`: an unknown key or a badly typed value is a one-line ConfigError naming the
    file or override and the key); ``steps`` and ``batch_size`` >= 1, ``lr`` > 0, ``warmup_steps`` >= 0."""
    cfg = config.load_config(path, overrides, DEFAULTS)
    for key, value in cfg.items():
        low, ok = ((">= 1", value >= 1) if key in AT_LEAST_ONE else ("> 0", value > 0) if key == "lr"
                   else (">= 0", value >= 0))
        if not ok:
            raise ConfigError(f"{cfg.where(key)}: {key}: must be {low}, got {value!r}")
    return dict(cfg)


def settings(loaded: dict | None = None, **given) -> dict:
    """QAT's settings for one Stage 4 run: ``loaded`` (:func:`load_config`'s result; None: :data:`DEFAULTS`) with
    the keyword arguments that are not None on top (``sam3m4 quantize --qat-steps / --qat-lr``)."""
    unknown = sorted(set(loaded or {}) - set(DEFAULTS)) + sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"QAT settings: {unknown[0]}: unknown key; choices: {', '.join(DEFAULTS)}")
    return {**DEFAULTS, **(loaded or {}), **{k: v for k, v in given.items() if v is not None}}


def qat_config(ckpt: Checkpoint | str | Path, **overrides) -> dict:
    """The distillation config of ``ckpt``'s Phase 2 run (keys it lacks: the distillation defaults), with
    ``overrides``. ``ckpt``: an opened :class:`~sam3m4.checkpoint.Checkpoint` or a path (read once)."""
    ck = Checkpoint.open(ckpt)
    stored = ck.state.get("config")
    if not isinstance(stored, dict):
        raise DataFormatError(f"{ck.path}: config: missing (QAT needs the Phase 2 run's data, teacher and cache)")
    cfg = {**PHASE2_DEFAULTS, **{k: v for k, v in stored.items() if k in PHASE2_DEFAULTS}}
    cfg.update(phase=2, init_from=str(ck.path))
    cfg.update(overrides)
    return cfg


def item_order(num_items: int, seed: int, epoch: int, take: int) -> list[int]:
    """The first ``take`` of a permutation of ``range(num_items)`` seeded by ``seed + epoch`` (what a one-process
    ``DistributedSampler(shuffle=True, drop_last=True)`` with ``set_epoch(epoch)`` yields)."""
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    return torch.randperm(num_items, generator=g).tolist()[:take]


def qat_finetune(ckpt: Checkpoint | str | Path, mode: str, steps: int = DEFAULTS["steps"],
                 lr: float = DEFAULTS["lr"], batch_size: int = DEFAULTS["batch_size"], progress: bool = True,
                 student_state: dict | None = None, **overrides) -> tuple[torch.nn.Module, dict]:
    """Fine-tune ``ckpt``'s student (or ``student_state``, same preset) with ``mode``'s fake quantization for
    ``steps`` optimizer steps of ``batch_size`` pairs, then convert.

    ``overrides``: ``warmup_steps`` (:data:`DEFAULTS`, at most ``steps``) or keys of the Phase 2 config
    (``grad_accum``, loss weights ``w_*``...).
    Returns (the converted model in eval mode on the CPU, info with the first and final loss and seconds).
    """
    spec = get_mode(mode)
    if not spec.qat:
        raise ValueError(f"mode {mode!r} is not a QAT mode")
    ckpt = Checkpoint.open(ckpt)  # read once; qat_config and the student's weights use the same object
    warmup = min(overrides.pop("warmup_steps", DEFAULTS["warmup_steps"]), steps)
    cfg = qat_config(ckpt, batch_size=batch_size, progress=progress, lr=lr, warmup_steps=warmup, **overrides)
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
    cache, _ = ensure_cache(cfg, 0, 1, device, [train])  # opens it; fills what is missing (teacher runs)
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
