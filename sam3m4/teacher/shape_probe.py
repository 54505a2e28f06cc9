"""Can the embedded teacher's image encoder learn shape at all? A probe with a direct per-pixel shape target.

    from sam3m4.teacher.shape_probe import shape_probe
    shape_probe("data/synth", steps=1600, images_per_step=4)   # {"history": [{"step", "val_shape_acc", ...}]}
    shape_probe("data/synth", labels="concept", teacher=t)      # pre-trains t's image encoder in place

The bootstrap's image encoder (ViT + FPN of :func:`sam3m4.teacher.bootstrap_model.build_config`, width-aware
init) plus a 1x1 conv head is trained on 5-way per-pixel labels (background and the 4 synthetic shapes, from the
one-word phrases' union masks at the mask resolution) with the bootstrap's AdamW warm-up + cosine schedule and
horizontal flips. ``val_shape_acc`` is the share of val object pixels whose predicted shape (argmax over the 4
shapes) is right; ``val_majority`` is what always answering the most common shape scores. No text, no DETR: if
this stays at ``val_majority`` the image encoder does not learn shape in the step budget, whatever the loss.

``labels="concept"`` trains on the colour + shape phrases instead (background + one class per two-word phrase,
``red circle``, ...): ``val_concept_acc`` counts a pixel right when both words are, ``val_shape_acc`` when the
shape is. Given a ``teacher``, its own image encoder is trained in place. The training loop is
:func:`sam3m4.teacher.encoder_pretrain.dense_pretrain`, the bootstrap's pre-training phase
(``encoder_pretrain_steps``; reports/teacher/recipe.md).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import torch

from sam3m4.teacher.bootstrap import TRAIN_DEFAULTS
from sam3m4.teacher.bootstrap_data import PairTensors, saco_dir
from sam3m4.teacher.bootstrap_model import build_config, reinit_for_small_width
from sam3m4.teacher.encoder_pretrain import SHAPE_PHRASES, concept_phrases, dense_logits, dense_pretrain, shape_labels
from sam3m4.teacher.sam3 import Sam3Teacher

class ConvControl(torch.nn.Module):
    """A plain 7-layer conv net (stride 16, BatchNorm, ReLU) with the image encoder's output interface: the
    probe's control that says whether the shape task is learnable in the step budget at all."""

    def __init__(self, width: int):
        super().__init__()
        nn = torch.nn
        layers, c = [], 3
        for out, stride in ((32, 2), (width, 2), (width, 1), (width, 2), (width, 1), (width, 2), (width, 1)):
            layers += [nn.Conv2d(c, out, 3, stride, 1), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        self.body = nn.Sequential(*layers, nn.Upsample(scale_factor=4, mode="bilinear"), nn.Conv2d(c, c, 3, 1, 1))

    def forward(self, pixels):
        return SimpleNamespace(fpn_hidden_states=[self.body(pixels)])


def shape_probe(data_root: str | Path, steps: int = 1600, images_per_step: int = 4, lr: float = 5e-4,
                level: int = 0, seed: int = 0, evals: int = 4, threads: int | None = 1,
                control: bool = False, labels: str = "shape", teacher: Sam3Teacher | None = None,
                **model_kw) -> dict:
    """Train image encoder + head for ``steps`` steps of ``images_per_step`` train images (FPN level ``level``,
    0 = the finest); evaluate val accuracy ``evals`` times. ``model_kw``: sizes of :func:`build_config` (e.g.
    ``vit_layers=6``); ``control``: train :class:`ConvControl` instead of the ViT; ``labels``: ``shape`` or
    ``concept`` (module docstring); ``teacher``: train this teacher's image encoder in place instead of a new one.
    Returns ``history`` and ``val_majority``."""
    from transformers import Sam3Model

    if labels not in ("shape", "concept"):
        raise ValueError(f"shape_probe: labels must be 'shape' or 'concept', got {labels!r}")
    if teacher is not None and (model_kw or control):
        raise ValueError("shape_probe: a given teacher has its own sizes; model sizes and control=True do not apply")
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    if teacher is None:
        teacher = Sam3Teacher(Sam3Model(build_config(**{"decoder_layers": 3, **model_kw})))
        reinit_for_small_width(teacher.model)
    width = teacher.model.config.vision_config.fpn_hidden_size
    vision = ConvControl(width) if control else teacher.model.vision_encoder
    saco = saco_dir(Path(data_root))
    backbone = teacher.model.config.vision_config.backbone_config
    mask = 4 * backbone.image_size // backbone.patch_size
    train = PairTensors.from_json(saco / "train.json", teacher, mask, keep_full=False)
    val = PairTensors.from_json(saco / "val.json", teacher, mask, keep_full=False)
    names = SHAPE_PHRASES if labels == "shape" else concept_phrases(train)
    shape_of = torch.tensor([0] + [1 + SHAPE_PHRASES.index(n.split()[-1]) for n in names])  # class -> shape class
    y_train, y_val = shape_labels(train, names), shape_labels(val, names)
    share = torch.bincount(shape_of[y_val[y_val > 0]], minlength=5)[1:].float()
    head = torch.nn.Conv2d(width, 1 + len(names), 1)

    @torch.no_grad()
    def accuracy() -> dict:
        vision.eval()
        right = right_shape = total = 0
        for s in range(0, len(val.pixels), 32):
            scores = dense_logits(vision, head, val.pixels[s:s + 32], level, mask)  # (b, 1 + len(names), m, m)
            pred, y = scores[:, 1:].argmax(1) + 1, y_val[s:s + 32]
            pred, y = pred[y > 0], y[y > 0]
            right += int((pred == y).sum())
            right_shape += int((shape_of[pred] == shape_of[y]).sum())
            total += len(y)
        vision.train()
        out = {"val_shape_acc": right_shape / max(total, 1)}
        if labels == "concept":
            out["val_concept_acc"] = right / max(total, 1)
        return out

    history, t0 = [], time.process_time()

    def on_step(step: int, loss: torch.Tensor) -> None:
        if step % max(1, steps // evals) == 0:
            history.append({"step": step, "loss": float(loss.detach()), **accuracy(),
                            "cpu_s": time.process_time() - t0})

    dense_pretrain(vision, head, train.pixels, y_train, steps=steps, images_per_step=images_per_step, lr=lr,
                   seed=seed, level=level, warmup_frac=TRAIN_DEFAULTS["warmup_frac"],
                   min_lr_frac=TRAIN_DEFAULTS["min_lr_frac"], on_step=on_step)
    return {"history": history, "val_majority": float(share.max() / share.sum()), "steps": steps,
            "images_per_step": images_per_step, "lr": lr, "level": level, "seed": seed, "control": control,
            "labels": labels, "model": model_kw}
