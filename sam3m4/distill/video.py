"""Train the student tracker's video memory on clips (:mod:`sam3m4.models.video`).

Targets are per-frame object masks with fixed ids: today the ground-truth masklets of SA-Co video / SA-V
items (``VideoSample.masks``); the SAM 3 video teacher's cached per-frame outputs plug in the same way
(issue 4 follow-up). The image student is frozen by default (``freeze_image``), so only the memory and the
query carry learn and image quality cannot drop.

    tracker = StudentTracker(student)
    stats = train_tracker(tracker, SacoVideoDataset("data/synth/saco_video/train.json"), steps=200)
"""

from __future__ import annotations

import math
import random
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from sam3m4.data.saco_video import items_with_objects
from sam3m4.distill.video_losses import VideoDistillWeights, video_distill_loss
from sam3m4.errors import TrainingDiverged
from sam3m4.models.preprocess import to_pixels
from sam3m4.models.tokenizer import get_tokenizer
from sam3m4.progress import StepProgress


MAX_SKIPPED_STEPS = 10  # non-finite gradients in a row before the run stops


def clip_targets(masks: np.ndarray, mask_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, T, H, W) bool masklets -> masks (T, N, m, m) float in [0, 1] (area-downsampled) and visible (T, N)."""
    m = torch.from_numpy(np.ascontiguousarray(masks.transpose(1, 0, 2, 3))).float()  # (T, N, H, W)
    if m.shape[1]:
        m = F.interpolate(m, size=(mask_size, mask_size), mode="area")
    else:
        m = m.new_zeros(m.shape[0], 0, mask_size, mask_size)
    return m, m.flatten(2).amax(2) > 0


def tracker_optimizer(tracker, lr: float = 1e-3, freeze_image: bool = True) -> torch.optim.AdamW:
    """AdamW (constant ``lr``) over the trainable part: the memory and carry, plus the image student unless
    ``freeze_image``."""
    tracker.student.requires_grad_(not freeze_image)
    return torch.optim.AdamW([p for p in tracker.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)


def train_tracker(tracker, dataset, *, steps: int, lr: float = 1e-3, clip_len: int = 8, freeze_image: bool = True,
                  seed: int = 0, grad_clip: float = 1.0, weights: VideoDistillWeights = VideoDistillWeights(),
                  progress: bool = True, targets=None, optimizer: torch.optim.Optimizer | None = None,
                  cache: dict | None = None, first_step: int = 0, last_checkpoint=None, log=None,
                  scheduler=None, max_skips: int = MAX_SKIPPED_STEPS) -> dict:
    """``steps`` AdamW steps, one random clip of ``clip_len`` frames from a present pair each; returns stats.

    ``targets(i, sample, mask_size)`` -> list of ``(masks (T, N, m, m), visible (T, N), weight)`` target sets for
    pair ``i`` (each set is matched and scored on its own, then weighted); default: the ground truth only.
    ``optimizer``: from :func:`tracker_optimizer` (its state carries over between calls); default a new one.
    ``cache``: a dict kept between calls (epochs) so each pair's frames and targets are prepared once.
    A non-finite tracker output or loss stops with :class:`sam3m4.errors.TrainingDiverged` naming the step
    (``first_step`` + this call's step, 1-based) and ``last_checkpoint``, before the optimizer touches the
    weights. ``log(step, {"loss": loss})`` is called after each step (``first_step`` + this call's step,
    1-based): the video run's ``logs/distillation/video.csv``. ``scheduler`` (from
    :func:`sam3m4.distill.optim.build_scheduler`) steps after every step.

    Back-propagation runs through the clip's recurrent state (latents and query carry), where gradients can
    explode: the unscheduled lr of 2e-3 once drove the gradient norm from ~1 to 2.6e6 within four steps and to
    inf six later, and ``clip_grad_norm_`` cannot rescale an infinite norm, so NaN reached the weights. A step
    whose gradient norm is not finite is skipped (nothing updated, a warning names it, as AMP's GradScaler
    does); ``max_skips`` skipped steps in a row stop the run with :class:`TrainingDiverged`."""
    targets = targets or (lambda i, s, size: [(*clip_targets(s.masks, size), 1.0)])
    rng = random.Random(seed)
    torch.manual_seed(seed)
    present = items_with_objects(dataset)
    student, tok = tracker.student, get_tokenizer()
    opt = optimizer or tracker_optimizer(tracker, lr, freeze_image)  # a given one continues (resume)
    params = [p for group in opt.param_groups for p in group["params"]]
    tracker.train()
    student.eval()  # BatchNorm statistics stay the image model's
    cache = {} if cache is None else cache
    losses, t0, skipped, total_skipped = [], time.time(), 0, 0
    bar = StepProgress(steps, "video memory", enabled=progress)
    for step in range(steps):
        i = rng.choice(present)
        if i not in cache:
            s = dataset[i]
            ids = tok([s.phrase])
            cache[i] = (to_pixels(list(s.frames), student.image_size), targets(i, s, student.mask_size),
                        ids["input_ids"], ids["attention_mask"])
        pixels, sets, input_ids, attention_mask = cache[i]
        start = rng.randrange(max(1, len(pixels) - clip_len + 1))
        sl = slice(start, start + clip_len)
        prompt = student.encode_text(input_ids, attention_mask)
        state, logits, scores = tracker.init_state(1), [], []
        for frame in pixels[sl]:
            lg, sc, state = tracker.track(frame[None], prompt.tokens, prompt.mask, state)
            logits.append(lg[0])
            scores.append(sc[0])
        logits, scores = torch.stack(logits), torch.stack(scores)  # (T, Q, m, m), (T, Q)
        # the score BCE refuses NaN inputs (clamp keeps NaN): check the outputs before the loss sees them
        TrainingDiverged.check(float(logits.detach().sum() + scores.detach().sum()),
                               "video distillation tracker output", first_step + step + 1, last_checkpoint)
        loss = sum(w * video_distill_loss(logits, scores, m[sl], v[sl], weights)["loss"] for m, v, w in sets)
        TrainingDiverged.check(float(loss.detach()), "video distillation loss", first_step + step + 1, last_checkpoint)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip or math.inf))
        if math.isfinite(norm):
            opt.step()
            skipped = 0
        else:  # an exploded gradient: skip it rather than write NaN into the weights
            opt.zero_grad(set_to_none=True)
            skipped, total_skipped = skipped + 1, total_skipped + 1
            warnings.warn(f"video distillation step {first_step + step + 1}: gradient norm {norm}, step skipped",
                          stacklevel=2)
            TrainingDiverged.check(math.inf if skipped >= max_skips else 0.0,
                                   f"video distillation gradient ({skipped} steps in a row not finite)",
                                   first_step + step + 1, last_checkpoint)
        if scheduler is not None:
            scheduler.step()
        losses.append(float(loss.detach()))
        if log is not None:
            log(first_step + step + 1, {"loss": losses[-1]})
        bar.update(1, loss=float(np.mean(losses[-10:])))
    bar.close()
    tracker.eval()
    k = max(1, min(10, steps // 3))  # loss averaged over the first and the last k steps
    return {"steps": steps, "train_s": round(time.time() - t0, 1), "first_loss": float(np.mean(losses[:k])),
            "final_loss": float(np.mean(losses[-k:])), "trainable_params": sum(p.numel() for p in params),
            "skipped_steps": total_skipped}
