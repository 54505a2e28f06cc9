"""Quantization-aware fine-tune: a Phase 2 (or video) checkpoint, fake-quantized, trained briefly on Phase 2's
distillation loss against the cached teacher outputs, then converted to the real quantized layout.

    model, info = qat_finetune("checkpoints/distillation/phase2_best.pt", "qat_int8_int4", steps=60)

The run reuses :mod:`sam3m4.distill.recipe` with the checkpoint's own config (data, teacher, cache, loss
weights), so the teacher targets come from the same cache Phase 2 filled and the teacher never runs.
Fake quantization (torchao ``QATConfig(base, step="prepare")``) rounds Linear and token-table weights (and,
for ``int8_int4``, Linear activations) to the target grid in the forward pass, with straight-through
gradients; the optimizer then moves the fp32 weights so that their rounded values fit the teacher.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from sam3m4.quantize.modes import get_mode, qat_convert, qat_prepare


def qat_config(ckpt: str | Path, **overrides) -> dict:
    """The recipe config of ``ckpt``'s Phase 2 run, initialised from ``ckpt``, with ``overrides``."""
    from sam3m4.distill import recipe
    from sam3m4.checkpoint import load_checkpoint
    from sam3m4.errors import DataFormatError

    state = load_checkpoint(Path(ckpt))
    stored = state.get("config")
    if not isinstance(stored, dict):
        raise DataFormatError(f"{ckpt}: config: missing (QAT needs the Phase 2 run's data, teacher and cache)")
    cfg = {**recipe.DEFAULTS, **{k: v for k, v in stored.items() if k in recipe.DEFAULTS}}
    cfg.update(phase=2, init_from=str(ckpt), resume=False, results_run="", eval_every=0, vis_pairs=0,
               max_steps=0, save_every_steps=0)
    cfg.update(overrides)
    return cfg


def qat_finetune(ckpt: str | Path, mode: str, steps: int = 60, lr: float = 1e-4, batch_size: int = 16,
                 progress: bool = True, student_state: dict | None = None, **overrides) -> tuple[torch.nn.Module, dict]:
    """Fine-tune ``ckpt``'s student (or ``student_state``, same preset) with ``mode``'s fake quantization for
    ``steps`` steps, then convert.

    Returns (the converted model in eval mode on the CPU, info with losses and seconds).
    """
    from tqdm.auto import tqdm

    from sam3m4.distill import recipe
    from sam3m4.distill import optim

    spec = get_mode(mode)
    if not spec.qat:
        raise ValueError(f"mode {mode!r} is not a QAT mode")
    cfg = qat_config(ckpt, batch_size=batch_size, progress=progress, lr=lr, warmup_steps=min(5, steps), **overrides)
    t0 = time.time()
    run = recipe.setup(cfg)  # student from ckpt, train pairs, the teacher cache; frozen what the loss never reaches
    if student_state is not None:
        run.student.load_state_dict(student_state)
    qat_prepare(run.student, spec)
    run.net = run.student
    run.optimizer = optim.build_optimizer(run.student.named_parameters(), lr, cfg["weight_decay"])
    run.scheduler = optim.build_scheduler(run.optimizer, cfg["warmup_steps"], steps, cfg["min_lr_frac"])
    run.student.train()
    losses, per = [], cfg["batch_size"] * cfg["grad_accum"]
    order, refills = [], 0
    bar = tqdm(total=steps, desc=f"qat {mode}", unit="step", leave=False, disable=not progress)
    for step in range(steps):
        if len(order) < per:
            order += recipe.epoch_order(run, refills)  # a fresh seeded permutation of the train pairs
            refills += 1
        items, order = order[:per], order[per:]
        losses.append(recipe.train_step(run, items)["loss"])
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    model = qat_convert(run.student, spec).cpu().eval()
    info = {"steps": steps, "lr": lr, "batch_size": cfg["batch_size"], "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None, "seconds": round(time.time() - t0, 1),
            "setup_s": round(run.timings.get("load_data_s", 0.0) + run.timings.get("cache_s", 0.0), 1)}
    return model, info
