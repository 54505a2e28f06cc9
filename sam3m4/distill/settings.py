"""The distillation recipe's settings: every key of ``configs/distill_phase{1,2}.yaml`` with its default and range,
and the loader that reads such a file (flat YAML + ``key=value`` overrides, :mod:`sam3m4.config`).

    cfg = load_config("configs/distill_phase2.yaml", ["epochs=3", "lr=5e-4"])   # dict; ConfigError naming the key

The Phase 1 / Phase 2 recipe (:mod:`sam3m4.distill.recipe`) trains with them; the QAT recipe
(:mod:`sam3m4.quantize.qat_recipe`) reads a Phase 2 checkpoint's stored config through :data:`DEFAULTS` (keys an
older checkpoint lacks take these values).
"""

from __future__ import annotations

from pathlib import Path

from sam3m4 import config, paths
from sam3m4.errors import ConfigError
from sam3m4.results.runs import check_run_name

DEFAULTS = dict(
    phase=2,  # 1 = encoder features, 2 = end-to-end outputs
    data_root=paths.SYNTH_DATA,  # holds saco_image/{train,val}.json
    teacher=paths.TEACHER_DIR,  # save_pretrained folder of a Sam3Model
    student_preset="tiny",  # sam3m4.models.build.PRESETS
    student_init="",  # backbone weights: a timm state-dict file or a model id in the local HF cache ("" = random)
    image_size=0,  # student input side in px (0 = the preset's; tests use 64)
    init_from="",  # phase 2: "" (random), "latest"/"best" phase-1 checkpoint, or a path
    teacher_source="cache",  # cache | live
    cache_dir="",  # "" -> <data_root>/cached_features
    cache_batch_size=32, cache_topk=16, cache_min_score=0.05, cache_shard_size=512,  # masks: <= topk with score >= min
    cache_fill=True,  # false: a run whose cache lacks keys stops, naming them and the fill command, instead of filling it
    teacher_levels=[1, 2],  # teacher FPN levels cached and distilled (0 = stride patch/4, 2 = stride patch)
    student_levels=[1, 2],  # student neck levels matched to them in order (0 = stride 4, 2 = stride 16)
    train_limit=0, val_limit=0,  # use only the first N pairs of a split (0 = all)
    epochs=3, epoch_items=0,  # items per epoch, a seeded per-epoch sample (0 = all)
    batch_size=16, grad_accum=1, lr=1.0e-3, weight_decay=0.05, warmup_steps=20, min_lr_frac=0.05, grad_clip=1.0,
    max_steps=0,  # stop after this many optimizer steps (0 = all); the schedule still spans `epochs`
    seed=0, device="auto", amp="auto", threads=0,  # threads: torch CPU threads (0 = torch default)
    w_mse=1.0, w_cos=1.0,  # phase 1
    w_presence=2.0, w_semantic=1.0, w_cls=2.0, w_pos_weight=5.0, w_mask_bce=5.0, w_mask_dice=5.0,
    w_box_l1=5.0, w_box_giou=2.0, w_semantic_dice=1.0, w_aux=0.5, w_score=0.0, w_gt=0.0, w_gt_score=0.0,
    w_match_threshold=0.5, w_match_topk=0,  # phase 2
    eval_every=1, eval_batch_size=32, val_items=0, vis_pairs=4, log_every=10, progress=True,
    save_every_steps=0, keep_last=3, resume=False,
    checkpoint_dir=paths.DISTILL_DIR, log_dir=paths.DISTILL_LOG_DIR,
    benchmark_steps=20, results_run="",  # results_run: also record metrics in reports/<run>/
)


# ranges of the numeric keys, checked when the config is read (before any cache or checkpoint is written):
# every number is finite and >= 0; these must be >= 1 (counts) or > 0 (rates), or lie in [0, 1] (fractions)
AT_LEAST_ONE = ("epochs", "batch_size", "grad_accum", "cache_batch_size", "cache_topk", "cache_shard_size",
                "eval_batch_size", "log_every", "keep_last", "benchmark_steps")  # eval_every 0: no evaluation
ABOVE_ZERO = ("lr",)
FRACTIONS = ("cache_min_score", "min_lr_frac", "w_match_threshold")


def check_ranges(cfg) -> None:
    """One-line ConfigError naming where the first out-of-range number was set (``override 'epochs=0': epochs:
    must be >= 1, got 0``); ``cfg`` is a :class:`sam3m4.config.Config`."""
    for key, value in cfg.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key in AT_LEAST_ONE:
            ok, want = value >= 1, ">= 1"
        elif key in ABOVE_ZERO:
            ok, want = value > 0, "> 0"
        elif key in FRACTIONS:
            ok, want = 0 <= value <= 1, "in [0, 1]"
        else:
            ok, want = value >= 0, ">= 0"
        if not ok:  # NaN and inf were refused when the value was read (sam3m4.config.coerce)
            raise ConfigError(f"{cfg.where(key)}: {key}: must be {want}, got {value!r}")
    for key in ("teacher_levels", "student_levels"):
        if not cfg[key] or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in cfg[key]):
            raise ConfigError(f"{cfg.where(key)}: {key}: expected a non-empty list of levels (whole numbers >= 0), "
                              f"got {cfg[key]!r}")


def load_config(path: str | Path | None, overrides=()) -> dict:
    """Flat YAML + ``key=value`` overrides -> full config, typed by ``DEFAULTS`` (:func:`sam3m4.config.load_config`:
    unknown keys and badly typed values are a one-line ConfigError naming the file or override and the key;
    out-of-range numbers too, :func:`check_ranges`)."""
    cfg = config.load_config(path, overrides, DEFAULTS)
    if cfg["phase"] not in (1, 2) or cfg["teacher_source"] not in ("cache", "live"):
        raise ConfigError(f"phase: {cfg['phase']} / teacher_source: {cfg['teacher_source']}: expected 1|2 / cache|live")
    check_ranges(cfg)
    if cfg["results_run"]:  # "" = record nothing
        check_run_name(cfg["results_run"], "results_run")
    return dict(cfg)
