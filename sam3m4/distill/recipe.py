"""Distillation recipe: SAM 3 teacher -> mobile student, one readable file (setup -> train -> save).

    python -m sam3m4.distill.recipe --config configs/distill_phase1.yaml
    python -m sam3m4.distill.recipe --config configs/distill_phase2.yaml epochs=3 lr=1e-3 [--resume] [--device cpu]
    torchrun --nproc_per_node=2 -m sam3m4.distill.recipe --config configs/distill_phase2.yaml
    python -m sam3m4.distill.recipe --config configs/distill_phase2.yaml --benchmark-cache

Features:

* Phase 1 (``phase: 1``): the student's neck maps learn the teacher's FPN maps through 1x1 projections
  (MSE + cosine); only the image encoder trains; one item = one unique image.
* Phase 2 (``phase: 2``): end-to-end output distillation (presence, semantic map, Hungarian-matched queries'
  masks/boxes/logits) plus optional ground-truth loss; one item = one (image, phrase) pair; starts from the
  latest Phase 1 checkpoint (``init_from``).
* Teacher outputs come from the teacher-feature cache (:mod:`sam3m4.distill.cache`, built on first use and
  sharded across ranks) or from the live teacher (``teacher_source: live``).
* AdamW with warm-up + cosine, gradient clipping and accumulation, AMP where it helps (bf16 on CUDA),
  device autodetect cuda > mps > cpu, seeds; DDP under ``torchrun`` (gloo on CPU, nccl on CUDA).
* Deterministic data order per epoch (DistributedSampler seeded by seed + epoch): ``--resume`` continues
  from the latest checkpoint and reproduces the uninterrupted loss curve.
* Rank 0 writes scalars (CSV, TensorBoard when installed), PNG visualisations, atomic student-only
  checkpoints (keep-last-K + best) and ``<log_dir>/phase{P}_summary.json``. A NaN/inf loss stops the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from sam3m4 import checkpoint, paths
from sam3m4.distill import cache as feature_cache, losses as distill_losses
# the recipe's settings (defaults, ranges, loader) and the teacher-cache helpers have modules of their own; setup()
# uses some of them, the others stay reachable as recipe.<name> for callers
from sam3m4.distill.cache_pass import CACHE_KEYS, ensure_cache, fill_cache, fill_command, load_splits  # noqa: F401
from sam3m4.distill.evaluation import evaluate_features, evaluate_outputs
from sam3m4.distill.logs import ScalarLogger, Throughput, record_results
from sam3m4.distill.optim import build_optimizer, build_scheduler
from sam3m4.distill.runtime import (amp_dtype, autocast, barrier, init_distributed,
                                    mean_across_ranks, select_device, seed_everything)
from sam3m4.distill.settings import (ABOVE_ZERO, AT_LEAST_ONE, DEFAULTS, FRACTIONS,  # noqa: F401
                                     check_ranges, load_config)
from sam3m4.distill.visualise import visualise_features, visualise_pairs
from sam3m4.errors import ConfigError, Sam3m4Error, TrainingDiverged
from sam3m4.fileio import atomic_write_json
from sam3m4.models import build_student
from sam3m4.models.pretrained import init_backbone
from sam3m4.progress import StepProgress
from sam3m4.teacher.sam3 import load_teacher



class Phase1Net(nn.Module):
    """Student image encoder + projections: pixels (B, 3, S, S) -> projected maps at the teacher's sizes."""

    def __init__(self, student, projector: distill_losses.FeatureProjector, levels: list[int], sizes: list[tuple[int, int]]):
        super().__init__()
        self.student, self.projector, self.levels, self.sizes = student, projector, list(levels), sizes

    def forward(self, pixel_values):
        feats = self.student.encode_image(pixel_values)  # (p4, p8, p16)
        return self.projector([feats[i] for i in self.levels], self.sizes)


@dataclass
class Run:
    """Everything :func:`setup` builds; the loop reads and updates it."""

    cfg: dict
    rank: int
    world: int
    device: torch.device
    amp: torch.dtype | None
    student: nn.Module
    net: nn.Module  # what trains: student (phase 2) or Phase1Net; DDP-wrapped when world > 1
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: object
    train: feature_cache.PairSet
    val: feature_cache.PairSet | None
    cache: feature_cache.FeatureCache | None
    teacher: nn.Module | None
    weights: distill_losses.OutputDistillWeights
    steps_per_epoch: int
    total_steps: int
    projector: nn.Module | None = None
    step: int = 0
    best: float | None = None
    last_checkpoint: Path | None = None
    losses: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    teacher_val: dict | None = None
    init: dict = field(default_factory=dict)  # where the student's weights started (saved in every checkpoint)


# --- teacher targets (cache or live) -------------------------------------------------------------------------
def teacher_pairs(run: Run, data: feature_cache.PairSet, idx) -> dict:
    """Collated teacher records (fp32 on run.device) for pair indices ``idx``."""
    if run.cache is not None:
        return feature_cache.collate_pairs([run.cache.get_pair(data.keys[p]) for p in idx], run.device)
    uniq = sorted({int(data.image_of[p]) for p in idx})
    recs, _ = feature_cache.run_teacher(run.teacher, [data.images[u] for u in uniq], [uniq.index(int(data.image_of[p])) for p in idx],
                            [data.phrases[p] for p in idx], run.cfg["cache_topk"], (), run.cfg["cache_min_score"])
    return feature_cache.collate_pairs(recs, run.device)


def teacher_images(run: Run, data: feature_cache.PairSet, img_idx) -> list[torch.Tensor]:
    """Teacher FPN maps (list over ``teacher_levels`` of (B, C, h, w) fp32) for unique-image indices."""
    levels = run.cfg["teacher_levels"]
    if run.cache is not None:
        return feature_cache.collate_images([run.cache.get_image(data.image_hashes[u], levels) for u in img_idx], run.device)
    _, feats = feature_cache.run_teacher(run.teacher, [data.images[u] for u in img_idx], fpn_levels=levels)
    return feature_cache.collate_images(feats, run.device)


def batch_loss(run: Run, data: feature_cache.PairSet, idx: list[int], net=None) -> dict:
    """Loss terms for one micro-batch of items (images in phase 1, pairs in phase 2)."""
    net = net or run.net
    if run.cfg["phase"] == 1:
        target = teacher_images(run, data, idx)
        with autocast(run.device, run.amp):
            pred = net(data.image_pixels(idx, run.device))
        return distill_losses.feature_distill_loss(pred, target, run.cfg["w_mse"], run.cfg["w_cos"])
    target = teacher_pairs(run, data, idx)
    gt = data.gt_targets(idx, run.device) if run.weights.gt > 0 or run.weights.gt_score > 0 else None
    with autocast(run.device, run.amp):
        out = net(**data.student_inputs(idx, run.device), with_aux=run.weights.aux > 0)
    return distill_losses.output_distill_loss(vars(out), target, run.weights, gt)


# --- setup ---------------------------------------------------------------------------------------------------
def setup(cfg: dict) -> Run:
    t0 = time.time()
    rank, world, local = init_distributed(cfg["device"])
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    device = select_device(cfg["device"], local)
    if world > 1 and device.type == "mps":  # gloo has no MPS tensors: the gradient all-reduce would not happen
        raise ConfigError("device: mps under torchrun: DDP cannot all-reduce MPS gradients (gloo supports CPU and "
                          "CUDA tensors only); train on one Mac, or fill the cache on several "
                          "(torchrun ... -m sam3m4 distill cache)")
    seed_everything(cfg["seed"])  # same seed on every rank -> identical initial weights
    student = build_student(cfg["student_preset"]).to(device)
    init = checkpoint.resolve_init(cfg["init_from"], cfg["checkpoint_dir"], phase=1) if cfg["phase"] == 2 else None
    init_record = initialise_student(student, cfg["student_init"], rank == 0) if init is None else {}
    train, val = load_splits(cfg, cfg["image_size"] or student.image_size, cfg["progress"] and rank == 0)
    splits = [train] + ([val] if val is not None else [])
    cache = teacher = None
    timings = {"load_data_s": time.time() - t0}
    if cfg["teacher_source"] == "cache":
        cache, info = ensure_cache(cfg, rank, world, device, splits)
        timings["cache_s"], timings["cache_computed_pairs"] = info["seconds"], info["computed"]
        timings.update({k: v for k, v in info.items() if k.startswith("teacher_")})
    else:
        teacher = load_teacher(cfg["teacher"], device=device)

    run = Run(cfg=cfg, rank=rank, world=world, device=device, amp=amp_dtype(device, cfg["amp"]), student=student,
              net=student, optimizer=None, scheduler=None, scaler=None, train=train, val=val, cache=cache,
              teacher=teacher, weights=distill_losses.weights_from_config(cfg), steps_per_epoch=0, total_steps=0, timings=timings)
    run.init = init_record
    if cfg["phase"] == 1:
        t_feats = teacher_images(run, train, [0])  # shapes of the teacher maps
        run.projector = distill_losses.FeatureProjector([student.dim] * len(cfg["student_levels"]),
                                           [f.shape[1] for f in t_feats]).to(device)
        run.net = Phase1Net(student, run.projector, cfg["student_levels"], [tuple(f.shape[-2:]) for f in t_feats])
    else:
        if init is not None:
            state = checkpoint.load_checkpoint(init)
            checkpoint.load_model_state(student, state["model"], init, note=f"student_preset '{cfg['student_preset']}'")
            timings["init_from"] = str(init)
            run.init = {"init_from": str(init), "student_init": state.get("init", {}).get("student_init")}
    # freeze what this phase's loss never reaches (phase 1: text tower and decoder; phase 2: the unused stride-8
    # neck output): DDP needs every trainable parameter to get a gradient, AdamW must not decay idle weights
    run.net.eval()  # no BatchNorm statistics update in this dry run
    batch_loss(run, train, list(range(min(2, train.num_images if cfg["phase"] == 1 else len(train)))))["loss"].backward()
    for p in run.net.parameters():
        if p.requires_grad and p.grad is None:
            p.requires_grad_(False)
            timings["frozen_params"] = timings.get("frozen_params", 0) + p.numel()
        p.grad = None
    run.net.train()
    if world > 1:
        run.net = nn.parallel.DistributedDataParallel(run.net, device_ids=[device.index] if device.type == "cuda" else None)

    n_items = train.num_images if cfg["phase"] == 1 else len(train)
    per_rank = (min(cfg["epoch_items"] or n_items, n_items)) // world
    run.steps_per_epoch = max(per_rank // (cfg["batch_size"] * cfg["grad_accum"]), 1)
    run.total_steps = cfg["epochs"] * run.steps_per_epoch
    run.optimizer = build_optimizer(run.net.named_parameters(), cfg["lr"], cfg["weight_decay"])
    run.scheduler = build_scheduler(run.optimizer, cfg["warmup_steps"], run.total_steps, cfg["min_lr_frac"])
    run.scaler = torch.amp.GradScaler(device.type, enabled=run.amp == torch.float16)

    if cfg["resume"]:
        path, state = checkpoint.load_latest(cfg["checkpoint_dir"], cfg["phase"])
        if path is not None:
            checkpoint.load_model_state(student, state["model"], path, note=f"preset {cfg['student_preset']!r}")
            if run.projector is not None:
                checkpoint.load_model_state(run.projector, state.get("projection", {}), path, field="projection")
            run.optimizer.load_state_dict(state["optimizer"])
            run.scheduler.load_state_dict(state["scheduler"])
            if "scaler" in state:
                run.scaler.load_state_dict(state["scaler"])
            run.step, run.best, run.last_checkpoint = int(state["step"]), state.get("best"), path
            run.init = state.get("init", run.init)
            checkpoint.set_rng_state(state["rng"])
            timings["resumed_from"] = str(path)
    timings["setup_s"] = time.time() - t0
    return run


def initialise_student(student, source: str, verbose: bool = True) -> dict:
    """Pretrained backbone weights (``student_init``) or random init; returns the record every checkpoint keeps."""
    if not source:
        return {"student_init": None}
    report = init_backbone(student.image_encoder.backbone, source)
    if verbose:
        print(report.summary(), flush=True)
    return {"student_init": report.as_dict()}


# --- train ---------------------------------------------------------------------------------------------------
def train_step(run: Run, items: list[int]) -> dict[str, float]:
    """One optimizer step over ``batch_size * grad_accum`` items (per rank): forward, backward, clip, step."""
    import contextlib

    cfg, B, A = run.cfg, run.cfg["batch_size"], run.cfg["grad_accum"]
    run.net.train()
    run.optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    loss_sum = torch.zeros((), device=run.device)
    for a in range(A):
        sync = a == A - 1 or run.world == 1
        with contextlib.nullcontext() if sync else run.net.no_sync():
            terms = batch_loss(run, run.train, items[a * B:(a + 1) * B])
            run.scaler.scale(terms["loss"] / A).backward()
        loss_sum += terms["loss"].detach() / A
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) / A
    loss = float(mean_across_ranks(loss_sum, run.world))
    TrainingDiverged.check(loss, f"phase{cfg['phase']} loss", run.step + 1, run.last_checkpoint)
    run.scaler.unscale_(run.optimizer)
    if cfg["grad_clip"]:
        sums["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(run.net.parameters(), cfg["grad_clip"]))
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.step += 1
    return {**sums, "loss": loss, "lr": run.optimizer.param_groups[0]["lr"]}


def epoch_order(run: Run, epoch: int) -> list[int]:
    """This rank's items for ``epoch``: a DistributedSampler permutation seeded by seed + epoch."""
    from torch.utils.data import DistributedSampler

    n_items = run.train.num_images if run.cfg["phase"] == 1 else len(run.train)
    sampler = DistributedSampler(range(n_items), num_replicas=run.world, rank=run.rank, shuffle=True,
                                 seed=run.cfg["seed"], drop_last=True)
    sampler.set_epoch(epoch)
    per_step = run.cfg["batch_size"] * run.cfg["grad_accum"]
    return list(sampler)[: run.steps_per_epoch * per_step]


def train(run: Run) -> dict:
    """Epoch loop from ``run.step`` to ``total_steps`` (or ``max_steps``): log, evaluate, visualise, checkpoint."""
    cfg, spe, main = run.cfg, run.steps_per_epoch, run.rank == 0
    logger = ScalarLogger(Path(cfg["log_dir"]), cfg["phase"], enabled=main)
    if main:  # a killed run's temporary checkpoint files, and its logged steps past run.step
        checkpoint.clean_interrupted(cfg["checkpoint_dir"], cfg["phase"], run.step, [logger.path("train"), logger.path("val")])
    stop = min(run.total_steps, cfg["max_steps"] or run.total_steps)
    bar = StepProgress(stop, f"phase{cfg['phase']}", initial=run.step, enabled=bool(cfg["progress"] and main))
    speed, per = Throughput(), cfg["batch_size"] * cfg["grad_accum"]  # items per step and rank
    t0, metrics = time.time(), {}
    while run.step < stop:
        epoch = run.step // spe
        order = epoch_order(run, epoch)
        for s in range(run.step % spe, spe):
            scalars = train_step(run, order[s * per:(s + 1) * per])
            run.losses.append(scalars["loss"])
            speed.add(per * run.world)
            if run.step % cfg["log_every"] == 0 or run.step == stop:
                rate = speed.rate()
                bar.update(1, loss=float(scalars["loss"]), img_s=round(rate, 1))
                logger.log(run.step, {**scalars, "epoch": epoch, "images_per_s": rate})
            else:
                bar.update(1)
            if cfg["save_every_steps"] and run.step % cfg["save_every_steps"] == 0 and run.step % spe:
                save(run, epoch + 1)
            if run.step >= stop:
                break
        if run.step % spe == 0:  # epoch finished
            e = run.step // spe
            metrics = {}
            if run.val is not None and cfg["eval_every"] and (e % cfg["eval_every"] == 0 or run.step == run.total_steps):
                if main:
                    metrics = evaluate(run)
                    visualise(run, e)
                    logger.log(run.step, {k: v for k, v in metrics.items() if isinstance(v, (int, float))}, "val")
                barrier(run.world)
            if metrics:  # best = highest val mIoU (phase 2) / lowest val feature loss (phase 1) ...
                best_of = (metrics["student_miou"], True) if cfg["phase"] == 2 else (metrics["val_loss"], False)
            else:  # ... or the lowest mean training loss of the epoch without validation
                best_of = (sum(run.losses[-spe:]) / len(run.losses[-spe:]), False)
            save(run, e, *best_of)
    if run.last_checkpoint is None or checkpoint.NAME.match(run.last_checkpoint.name)["step"] != str(run.step):
        save(run, (run.step + spe - 1) // spe)
    bar.close()
    logger.close()
    run.timings["train_s"] = time.time() - t0
    return metrics


def save(run: Run, epoch: int, metric: float | None = None, higher_is_better: bool = True) -> None:
    """Rank 0 writes ``phase{P}_epoch{E}_step{S}.pt`` (student + optimizer + scheduler + RNG + config)."""
    if run.rank == 0:
        state = {"model": run.student.state_dict(), "optimizer": run.optimizer.state_dict(),
                 "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
                 "config": dict(run.cfg), "preset": run.cfg["student_preset"], "init": run.init}
        if run.projector is not None:
            state["projection"] = run.projector.state_dict()
        if run.best is not None:
            state["best"] = run.best
        res = checkpoint.save_checkpoint(Path(run.cfg["checkpoint_dir"]), phase=run.cfg["phase"], epoch=epoch, step=run.step,
                                state=state, keep_last=run.cfg["keep_last"], metric=metric, best=run.best,
                                higher_is_better=higher_is_better)
        run.best = res["best"]
        run.last_checkpoint = res["path"]
    barrier(run.world)
    if run.rank != 0:
        run.last_checkpoint = Path(run.cfg["checkpoint_dir"]) / checkpoint.checkpoint_name(run.cfg["phase"], epoch, run.step)


def evaluate(run: Run) -> dict:
    """Validation metrics of the current weights (rank 0): phase 2 student vs teacher, phase 1 feature loss."""
    cfg = run.cfg
    if cfg["phase"] == 1:
        return evaluate_features(run.net.module if run.world > 1 else run.net, run.val,
                                   lambda idx: teacher_images(run, run.val, idx),
                                   lambda p, t: distill_losses.feature_distill_loss(p, t, cfg["w_mse"], cfg["w_cos"]),
                                   run.device, run.amp, cfg["eval_batch_size"], cfg["val_items"])
    res = evaluate_outputs(run.student, run.val, lambda idx: teacher_pairs(run, run.val, idx),
                             lambda o, t: distill_losses.output_distill_loss(o, t, run.weights), run.device, run.amp,
                             cfg["eval_batch_size"], cfg["val_items"], teacher_metrics=run.teacher_val is None)
    if run.teacher_val is None:  # the teacher does not change: score it once
        run.teacher_val = {k: v for k, v in res.items() if k.startswith("teacher_")}
    else:
        res.update(run.teacher_val)
        res["miou_ratio"] = res["student_miou"] / max(res["teacher_miou"], 1e-9)
        res["f1_ratio"] = res["student_presence_f1"] / max(res["teacher_presence_f1"], 1e-9)
    return res


def visualise(run: Run, epoch: int) -> None:
    """A few PNGs under ``<log_dir>/vis`` (rank 0)."""
    cfg, out = run.cfg, Path(run.cfg["log_dir"]) / paths.VIS_SUBDIR
    if not cfg["vis_pairs"]:
        return
    tag = f"phase{cfg['phase']}_epoch{epoch}"
    if cfg["phase"] == 1:
        visualise_features(run.net.module if run.world > 1 else run.net, run.val,
                             lambda idx: teacher_images(run, run.val, idx), out, tag, cfg["vis_pairs"], run.device, run.amp)
    else:
        visualise_pairs(run.student, run.val, lambda idx: teacher_pairs(run, run.val, idx), out, tag,
                          cfg["vis_pairs"], run.device, run.amp)


def benchmark_cache(cfg: dict) -> dict:
    """Phase 2 seconds per step (and per epoch) reading the cache vs running the teacher live; prints the ratio.

    One set-up (the cache is built first if needed, untimed); then the same batches are trained alternately
    with each teacher source (alternating order, so both see the same machine load), 2 warm-up rounds
    untimed; the median step time is scaled to the epoch's steps. Nothing is saved.
    """
    import statistics

    run = setup({**cfg, "phase": 2, "teacher_source": "cache", "resume": False})
    cache, teacher = run.cache, load_teacher(cfg["teacher"], device=run.device)
    per = cfg["batch_size"] * cfg["grad_accum"]
    order = epoch_order(run, 0)
    n = max(min(cfg["benchmark_steps"], len(order) // per - 2), 1)
    times: dict[str, list[float]] = {"cache": [], "live": []}
    for s in range(2 + n):
        items = order[(s % (len(order) // per)) * per:][:per]
        for source in (("cache", "live") if s % 2 == 0 else ("live", "cache")):
            run.cache, run.teacher = (cache, None) if source == "cache" else (None, teacher)
            t0 = time.perf_counter()
            train_step(run, items)
            if s >= 2:
                times[source].append(time.perf_counter() - t0)
    result = {"steps_timed": n, "steps_per_epoch": run.steps_per_epoch, "device": str(run.device),
              "threads": torch.get_num_threads()}
    for source, ts in times.items():
        result[f"{source}_s_per_step"] = round(statistics.median(ts), 4)
        result[f"{source}_s_per_epoch"] = round(statistics.median(ts) * run.steps_per_epoch, 1)
    result["live_over_cache"] = round(result["live_s_per_step"] / result["cache_s_per_step"], 2)
    if run.rank == 0:
        print(f"phase 2 epoch ({run.steps_per_epoch} steps of {per} pairs, {run.device}, {result['threads']} threads): "
              f"cache {result['cache_s_per_epoch']} s, live teacher {result['live_s_per_epoch']} s -> "
              f"live / cache = {result['live_over_cache']}")
        print(json.dumps(result))
    return result


# --- entry points --------------------------------------------------------------------------------------------
def main(cfg: dict) -> dict:
    """setup -> train -> save; returns (and rank 0 writes) the run summary."""
    run = setup(cfg)
    metrics = train(run)
    summary = {"phase": cfg["phase"], "steps": run.step, "steps_per_epoch": run.steps_per_epoch,
               "world_size": run.world, "device": str(run.device), "final_loss": run.losses[-1] if run.losses else None,
               "losses": run.losses, "checkpoint": str(run.last_checkpoint), "best": run.best,
               "timings": {k: round(v, 2) if isinstance(v, float) else v for k, v in run.timings.items()}, **metrics}
    if run.rank == 0:
        out = Path(cfg["log_dir"]) / paths.phase_summary_name(cfg["phase"])
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, summary, indent=2, default=str)
        if cfg["results_run"] and metrics:
            record_results(cfg["results_run"], f"student/phase{cfg['phase']}", metrics, str(run.last_checkpoint),
                             f"{run.device} x{run.world}, torch {torch.__version__}, teacher {cfg['teacher']}")
    if run.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return summary


def add_arguments(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
    parser.add_argument("--config", default=default_config, help="flat YAML config (first line: how to run it)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of this phase")
    parser.add_argument("--device", default=None, help="auto (cuda > mps > cpu), cuda, mps or cpu")
    parser.add_argument("--benchmark-cache", action="store_true",
                        help="time Phase 2 steps with the cache vs the live teacher and print the ratio")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. epochs=2 lr=5e-4")


def config_from_args(args, **forced) -> dict:
    extra = list(args.overrides) + [f"{k}={v}" for k, v in forced.items()]
    if args.resume:
        extra.append("resume=true")
    if args.device:
        extra.append(f"device={args.device}")
    return load_config(args.config, extra)


def run_from_args(args, **forced) -> dict:
    cfg = config_from_args(args, **forced)
    if args.benchmark_cache:
        return benchmark_cache(cfg)
    summary = main(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in summary.items() if k != "losses"}, indent=2, default=str))
    return summary


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(prog="python -m sam3m4.distill.recipe", description=__doc__.split("\n")[0])
    add_arguments(ap, "configs/distill_phase2.yaml")
    try:
        from sam3m4.runlock import run_lock

        with run_lock(".", name="python -m sam3m4.distill.recipe " + " ".join(sys.argv[1:])):  # rank 0 holds it
            run_from_args(ap.parse_args())
    except Sam3m4Error as err:
        print(f"sam3m4: error: {str(err).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
