"""``sam3m4 distill video``: distil the video teacher into the student's memory, evaluate, record.

    sam3m4 distill video --ckpt checkpoints/distillation/phase2_best.pt \\
        --teacher checkpoints/teacher/sam3-tiny-synth-video --data data/synth --run demo

1. teacher cache: the video teacher's masklets for every train pair with objects, at the student's mask size,
   fp16 safetensors under ``<cache root>/<teacher id>_<m>m/`` (``--cache-dir``, default
   ``data/sa_v/cached_features``, the video cache's home whatever the video set), one file per pair keyed by the
   frames' content hash + phrase hash (written atomically under a file lock; existing files are reused, so
   the pass resumes);
2. training: the student's memory and query carry (image student frozen) on the teacher's masklets plus the
   ground truth (``--w-teacher``, ``--w-gt``), :func:`sam3m4.distill.video.train_tracker`;
3. checkpoints: ``checkpoints/video_distillation/video_epoch{E}.pt`` after each of ``--epochs`` (student +
   memory, optimizer, RNG; atomic; the last ``--keep-last`` kept; loads with ``weights_only=True``:
   :func:`sam3m4.predict.load_tracker`); ``--resume`` continues from the newest readable one (a corrupt newest file is
   skipped with a warning) and gives the same weights as an uninterrupted run; the training loss goes to
   ``<log dir>/video.csv`` (``--log-dir``, default ``logs/distillation``; one row a step);
4. evaluation into the results store (report section 2): J&F of ``teacher`` and ``student/video`` on the val
   videos, the +Video checkpoint's image-path mIoU / Presence F1 (the image methods a phone runs on photos;
   unchanged while the image student is frozen, the cost gate guards runs that unfreeze it), and the host
   latency of the streaming step;
5. SA-Co official metrics of the same predictions by Meta's evaluators (:mod:`sam3m4.eval.saco`): video cgF1 /
   pHOTA / IL_MCC of both on every val pair, image cgF1 / IL_MCC / pmF1 of the +Video image path; files under
   ``reports/<run>/saco/``. Without Meta's ``sam3`` package they are skipped with the reason.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sam3m4.checkpoint import (KIND_TRACKER, VIDEO_PHASE, atomic_save_safetensors, atomic_torch_save, checkpoint_metadata, clean_interrupted,
                               list_video_checkpoints, load_latest, load_model_state, rng_state,
                               set_rng_state, video_checkpoint_name)
from sam3m4.data import SacoImageDataset, SacoVideoDataset
from sam3m4.data.saco_video import items_with_objects
from sam3m4.distill.cache import image_hash, pair_key, teacher_id
from sam3m4.distill.cache_pass import FAULT_ENV, FAULT_EXIT_CODE, fault_exit_after
from sam3m4.distill.logs import ScalarLogger
from sam3m4.distill.optim import build_scheduler
from sam3m4.distill.runtime import barrier, gather_objects, init_distributed, select_device
from sam3m4.distill.video import clip_targets, tracker_optimizer, train_tracker
from sam3m4.env import host_summary
from sam3m4.errors import ConfigError, DataFormatError
from sam3m4.eval import saco
from sam3m4.eval.image import evaluate_pairs
from sam3m4.eval.saco_format import ImagePredictions, VideoPredictions, category_ids
from sam3m4.eval.video import evaluate_videos
from sam3m4.fileio import atomic_write_json, remove_stale_temporaries
from sam3m4.models.video import StudentTracker, benchmark_track
from sam3m4.paths import (DISTILL_LOG_DIR, PHASE2_BEST, SYNTH_DATA, VIDEO_CACHE_DIR, VIDEO_DIR, VIDEO_EPOCHS,
                          VIDEO_METRICS, VIDEO_TEACHER_DIR)
from sam3m4.predict import Predictor, VideoPredictor
from sam3m4.results import ResultsStore
from sam3m4.results import schema
from sam3m4.teacher.video import load_video_teacher


VIDEO_INDEX_FORMAT = "sam3m4-video-teacher-cache-index-v1"


def teacher_cache(teacher, teacher_dir, dataset, root: Path, mask_size: int, progress: bool = True,
                  stats: dict | None = None, rank: int = 0, world_size: int = 1) -> Path:
    """Cache the teacher's masklets of every pair with objects; returns the cache folder. ``stats`` (when given)
    gets ``pairs`` / ``frames`` computed, ``teacher_s`` (seconds in the teacher) and ``bytes`` written, all
    ranks together.

    Under ``torchrun`` (``world_size`` > 1, every rank calls it): the ranks name the pairs' files together,
    rank r computes missing pairs r, r + N, ... (a pair's file does not depend on who computes it), and rank 0
    alone writes the folder's ``index.json`` (file -> frames, masklets). A killed pass keeps its written files;
    a rerun on any number of ranks computes the rest. ``SAM3M4_CACHE_EXIT_AFTER=video:<rank>:<k>``: that rank
    exits after writing k files (the resume test)."""
    import os
    import sys
    import time

    from filelock import FileLock
    from tqdm.auto import tqdm

    folder = Path(root) / f"{teacher_id(teacher_dir)}_{mask_size}m"
    folder.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        remove_stale_temporaries(folder)  # a killed pass's half-written file; before any rank writes (collective next)
    memo: dict[int, str] = {}
    items = items_with_objects(dataset)
    named = gather_objects([(i, _pair_name(dataset, i, memo)) for i in items[rank::world_size]], world_size)
    names = dict(sorted(x for part in named for x in part))  # item -> file name, in item order
    seen, missing = set(), []
    for i, name in names.items():
        if name not in seen and not (folder / name).is_file():
            missing.append(i)
        seen.add(name)
    exit_after, written, mine = fault_exit_after(rank, "video"), {}, missing[rank::world_size]
    local: dict = {}
    for n, i in enumerate(tqdm(mine, desc="video teacher cache", unit="pair",
                               disable=None if progress and rank == 0 else True, leave=False)):  # terminal only
        s = dataset[i]
        path = folder / names[i]
        t0 = time.perf_counter()
        masks, scores = teacher.masklets(s.frames, s.phrase)  # (M, T, H, W) bool, (M, T)
        local["teacher_s"] = local.get("teacher_s", 0.0) + time.perf_counter() - t0
        local["pairs"], local["frames"] = local.get("pairs", 0) + 1, local.get("frames", 0) + len(s.frames)
        m = torch.from_numpy(masks).float()
        m = F.interpolate(m, size=(mask_size, mask_size), mode="area") if len(m) else m.new_zeros(0, m.shape[1], mask_size, mask_size)
        with FileLock(str(folder / ".lock")):
            atomic_save_safetensors({"masks": m.transpose(0, 1).contiguous().half(),
                                     "scores": torch.from_numpy(scores).T.contiguous().half()},
                                    path, metadata={"format": "sam3m4-video-teacher-v1"})
        local["bytes"] = local.get("bytes", 0) + path.stat().st_size
        written[path.name] = {"frames": int(m.shape[1]), "masklets": int(m.shape[0])}
        if exit_after is not None and n + 1 >= exit_after:
            print(f"{FAULT_ENV}: rank {rank} exits after {n + 1} file(s)", file=sys.stderr, flush=True)
            os._exit(FAULT_EXIT_CODE)
    parts = gather_objects({"stats": local, "written": written}, world_size)
    if stats is not None:
        for part in parts:
            for k, v in part["stats"].items():
                stats[k] = stats.get(k, 0) + v
    if rank == 0:
        _write_video_index(folder, sorted(seen), {k: v for part in parts for k, v in part["written"].items()})
    barrier(world_size)
    return folder


def _pair_name(dataset, i: int, memo: dict[int, str]) -> str:
    """Item i's file name (:func:`_pair_file`) with the frames read one at a time and each video hashed once."""
    import hashlib

    import numpy as np

    pair = dataset.pairs[i]
    vid = pair["video_id"]
    if vid not in memo:
        length = dataset.videos[vid]["length"]
        frames = [np.ascontiguousarray(dataset.frame(vid, t)) for t in range(length)]
        h = hashlib.sha256(str((length, *frames[0].shape)).encode())  # == image_hash of the (T, H, W, 3) clip
        for f in frames:
            h.update(f.tobytes())
        memo[vid] = h.hexdigest()[:16]
    return f"{pair_key(memo[vid], pair['noun_phrase'])}.safetensors"


def _pair_file(sample) -> str:
    """``<frames hash>-<phrase hash>.safetensors``: keyed by content, like the image cache."""
    return f"{pair_key(image_hash(sample.frames), sample.phrase)}.safetensors"


def _write_video_index(folder: Path, names: list[str], written: dict[str, dict]) -> None:
    """``index.json`` of the video cache: every file of this pass's items (this pass's and earlier ones) with
    its frames and masklets, read from the header when this pass did not write it (rank 0 only)."""
    import json

    from safetensors import safe_open

    path = folder / "index.json"
    try:
        old = json.loads(path.read_text(encoding="utf-8")).get("items", {})
    except (OSError, ValueError, AttributeError):
        old = {}
    items = dict(old)
    for name in names:
        if name in written:
            items[name] = written[name]
        elif name not in items and (folder / name).is_file():
            with safe_open(str(folder / name), framework="pt") as f:
                t, m = f.get_slice("masks").get_shape()[:2]  # (T, M, m, m)
            items[name] = {"frames": int(t), "masklets": int(m)}
    atomic_write_json(path, {"format": VIDEO_INDEX_FORMAT, "items": items}, indent=0, sort_keys=True, newline=True)


def cached_targets(folder: Path, w_teacher: float, w_gt: float):
    """``targets`` for :func:`train_tracker`: the cached teacher masklets (visible where the teacher output the
    object) and the ground truth, weighted."""
    from safetensors.torch import load_file

    def targets(i, sample, size):
        sets = []
        if w_teacher:
            path = folder / _pair_file(sample)
            if not path.is_file():
                raise DataFormatError(f"{path}: not in the video teacher cache (run the cache pass first)")
            rec = load_file(str(path))
            masks = rec["masks"].float()  # (T, M, m, m)
            if masks.shape[-1] != size:
                masks = F.interpolate(masks, size=(size, size), mode="area") if masks.shape[1] else masks
            visible = (rec["scores"].float() > 0) & (masks.flatten(2).amax(2) > 0.5)  # (T, M)
            sets.append((masks, visible, w_teacher))
        if w_gt:
            sets.append((*clip_targets(sample.masks, size), w_gt))
        return sets

    return targets


def _official(store, kind: str, subject: str, gt_json: Path, preds, prov: str) -> dict:
    """Score ``preds`` with Meta's SA-Co evaluator (:mod:`sam3m4.eval.saco`) and record the headline numbers;
    files under ``reports/<run>/saco/``. A model that outputs no masklet at all is recorded as not measured."""
    name = subject.replace("/", "_")
    score = saco.score_image if kind == "image" else saco.score_video
    evaluator = "CGF1Evaluator" if kind == "image" else "VEvalEvaluator"
    try:
        result, path = score(gt_json, preds, store.dir / "saco", name)
    except DataFormatError as exc:
        if preds.records:
            raise
        for metric in (m for m in saco.RECORDED if m.startswith("saco_video_") == (kind == "video")):
            store.record(stage=schema.STAGE3, subject=subject, metric=metric, value=None, note=f"not measured: {exc}")
        return {}
    values = saco.record(store, stage=schema.STAGE3, subject=subject, kind=kind, result=result, artifact=path,
                         provenance=f"SAM 3's {evaluator} (sam3 {saco.SAM3_VERSION}) on {path.name}; {prov}")
    return {f"{name}_{metric}": value for metric, value in values.items()}


def check_video_args(**values) -> None:
    """The numeric arguments of :func:`distill_video`, checked before any data is read or cache written: a
    one-line ConfigError naming the flag (``--steps -5: must be >= 1``). ``--steps`` below ``--epochs`` would
    leave an epoch without steps, so it is refused too."""
    least = {"steps": 1, "epochs": 1, "keep_last": 1, "clip_len": 2, "num_val": 1}
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{flag} {value}: must be a finite number")
        if name == "lr" and value <= 0:
            raise ConfigError(f"{flag} {value}: must be a positive number")
        if value < least.get(name, 0):
            raise ConfigError(f"{flag} {value}: must be >= {least.get(name, 0)}")
    if values["steps"] < values["epochs"]:
        raise ConfigError(f"--steps {values['steps']}: must be >= --epochs ({values['epochs']}): each epoch trains "
                          "steps // epochs steps")


def distill_video(ckpt: str | Path = PHASE2_BEST, teacher: str | Path = VIDEO_TEACHER_DIR, *,
                  data: str | Path = SYNTH_DATA, out: str | Path = VIDEO_DIR, log_dir: str | Path = DISTILL_LOG_DIR,
                  cache_dir: str | Path = VIDEO_CACHE_DIR, steps: int = 800, epochs: int = VIDEO_EPOCHS,
                  keep_last: int = 2, resume: bool = False, lr: float = 2e-3, clip_len: int = 8,
                  w_teacher: float = 1.0, w_gt: float = 1.0, num_val: int = 300, train_pairs: int = 0,
                  val_pairs: int = 0, seed: int = 0, no_eval: bool = False, threads: int = 1,
                  run: str = "demo", cache_only: bool = False, device: str = "cpu") -> dict:
    """Video distillation of ``ckpt``'s student (Phase 2 checkpoint) from the video ``teacher`` folder, steps 1-5
    of the module docstring. The arguments are ``sam3m4 distill video``'s flags by their names (and the keys of
    ``configs/distill_video.yaml``); ``threads`` 0 leaves torch's default. Returns the run's summary, also written
    to ``<out>/video_metrics.json``: ``train`` (steps, losses, seconds), ``checkpoint``, ``teacher_cache`` and,
    unless ``no_eval``, the J&F / mIoU / Presence F1 / SA-Co / track-speed figures recorded in
    ``reports/<run>/``.

    ``cache_only``: fill the teacher cache (step 1) and return ``{"cache_dir", "teacher_cache", "world_size"}``;
    the only mode that runs under ``torchrun``, where the ranks share the missing pairs (``device``: the video
    teacher's device, ``cuda`` = each rank's ``cuda:<local rank>``)."""
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()}  # saved in each checkpoint
    check_video_args(steps=steps, epochs=epochs, keep_last=keep_last, lr=lr, clip_len=clip_len, w_teacher=w_teacher,
                     w_gt=w_gt, num_val=num_val, train_pairs=train_pairs, val_pairs=val_pairs, threads=threads)
    rank, world, local = init_distributed(device)
    if world > 1 and not cache_only:
        raise ConfigError("cache_only: video training runs in one process; under torchrun run the teacher cache "
                          "only (--cache-only), then `sam3m4 distill video` without torchrun")
    if threads:
        torch.set_num_threads(threads)
    data = Path(data)
    train = SacoVideoDataset(data / "saco_video" / "train.json").first_pairs(train_pairs)
    val = SacoVideoDataset(data / "saco_video" / "val.json").first_pairs(val_pairs)
    video_teacher = load_video_teacher(teacher, device=str(select_device(device, local)))
    student = Predictor.from_checkpoint(ckpt).model
    cache_stats: dict = {}
    folder = teacher_cache(video_teacher, teacher, train, Path(cache_dir), student.mask_size, stats=cache_stats,
                           rank=rank, world_size=world)
    if cache_only:
        return {"cache_dir": str(folder), "teacher_cache": cache_stats, "world_size": world}
    torch.manual_seed(seed)  # the memory's initial weights
    tracker = StudentTracker(student)
    opt = tracker_optimizer(tracker, lr)
    per_epoch = max(1, steps // epochs)
    # warm-up then cosine over the whole run: a constant 2e-3 let the recurrent gradients explode late in epoch 2
    sched = build_scheduler(opt, warmup_steps=max(1, per_epoch * epochs // 20), total_steps=per_epoch * epochs,
                            min_lr_frac=0.02)
    out_dir, start, stats, last_good = Path(out), 0, {"steps": 0}, None
    if resume:
        path, state = load_latest(out_dir, phase=None)
        if path is not None:
            last_good = path
            load_model_state(tracker, state["model"], path, note="the video run's tracker")
            opt.load_state_dict(state["optimizer"])
            set_rng_state(state["rng"])
            start, stats["steps"] = int(state["epoch"]), int(state["step"])
            if "scheduler" in state:
                sched.load_state_dict(state["scheduler"])
            else:  # a checkpoint from before the schedule: continue it at the checkpoint's step
                for _ in range(stats["steps"]):
                    sched.step()
            print(f"resumed from {path}")
    logger = ScalarLogger(Path(log_dir), 0, name="video", tensorboard=False)
    clean_interrupted(out_dir, None, stats["steps"], [logger.path("train")])  # a killed run's files and CSV rows
    ckpt, prepared = None, {}
    targets = cached_targets(folder, w_teacher, w_gt)
    for epoch in range(start + 1, epochs + 1):
        ep = train_tracker(tracker, train, steps=per_epoch, clip_len=clip_len, seed=seed + epoch,
                           targets=targets, optimizer=opt, cache=prepared, first_step=stats["steps"],
                           last_checkpoint=last_good, log=logger.log, scheduler=sched)
        stats = {**ep, "steps": stats["steps"] + ep["steps"], "epochs": epoch}
        ckpt = out_dir / video_checkpoint_name(epoch)
        atomic_torch_save({"model": tracker.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict(), "rng": rng_state(),
                           "preset": student.preset, "num_latents": tracker.num_latents, "config": config,
                           **checkpoint_metadata(KIND_TRACKER, data), "phase": VIDEO_PHASE, "epoch": epoch,
                           "step": stats["steps"]}, ckpt)
        last_good = ckpt
        for old in list_video_checkpoints(out_dir)[: -keep_last]:
            old.unlink(missing_ok=True)
    ckpt = ckpt or load_latest(out_dir, phase=None)[0]
    tracker.eval()
    results = {"train": stats, "checkpoint": str(ckpt), "teacher_cache": cache_stats}
    if no_eval:
        return results
    where = f"host cpu ({host_summary()}), torch {torch.__version__} eager fp32"
    store = ResultsStore(run)
    official = saco.available() is None                # SA-Co official metrics (Meta's evaluators) can run here
    student_video = VideoPredictor(tracker)
    for subject, scored, artifact in ((schema.TEACHER, lambda s: video_teacher.masklets(s.frames, s.phrase), None),
                                      (schema.STUDENT_VIDEO, lambda s: student_video.scored_masklets(s.frames, s.phrase),
                                       ckpt)):
        preds = VideoPredictions(scored)              # keeps each masklet in the official format on the way
        t_eval = time.perf_counter()
        jf = evaluate_videos(val, preds)
        results[f"{subject}_eval_s"] = round(time.perf_counter() - t_eval, 1)
        results[f"{subject}_eval_frames"] = sum(p["length"] for p in val.pairs if p["num_objects"] > 0)
        prov = f"{where}, {len(val)} pairs of {data / 'saco_video' / 'val.json'}"
        store.record(stage=schema.STAGE3, subject=subject, metric=schema.JF, value=jf.jf_mean, unit="fraction", artifact=artifact,
                     provenance=f"{where}, DAVIS J&F-Mean over {jf.num_objects} objects of {len(val)} pairs of "
                                f"{data / 'saco_video' / 'val.json'}")
        results[f"{subject}_jf"] = jf.jf_mean
        if official:
            preds.fill(val)                           # the negative pairs too: the official IL_MCC needs them
            results.update(_official(store, "video", subject, data / "saco_video" / "val.json", preds, prov))
    images = SacoImageDataset(data / "saco_image" / "val.json")  # the checkpoint's image path (image methods)
    image_preds = ImagePredictions(category_ids(data / "saco_image" / "val.json"))
    res = evaluate_pairs(images, Predictor(tracker.student), num=num_val, desc="+Video image eval",
                         sink=image_preds)
    prov = (f"{where}, image path (encode_image + decode) of {ckpt.name}, {res.num_pairs} pairs "
            f"of {data / 'saco_image' / 'val.json'}")
    for metric, value in ((schema.MIOU, res.miou), (schema.PRESENCE_F1, res.presence.f1)):
        store.record(stage=schema.STAGE3, subject=schema.STUDENT_VIDEO, metric=metric, value=value, unit="fraction", artifact=ckpt,
                     provenance=prov)
        results[f"student_video_{metric}"] = value
    if official:
        results.update(_official(store, "image", "student/video", data / "saco_image" / "val.json", image_preds, prov))
    else:
        print(f"SA-Co official metrics not measured: {saco.available()}")
    bench = benchmark_track(tracker)
    store.record(stage=schema.STAGE3, subject=schema.STUDENT_VIDEO, metric=schema.HOST_FPS, value=bench["fps"], unit="fps",
                 provenance=f"{where}, {bench['threads']} thread(s), track step at {bench['image_size']} px, median of "
                            f"{bench['steps']} after {bench['warmup']} warm-up; host benchmark, not a device figure")
    results["host_track_ms_p50"] = bench["p50_ms"]
    atomic_write_json(out_dir / VIDEO_METRICS, results, indent=2, default=float)  # what `sam3m4 plan` reads
    print(json.dumps(results, indent=2, default=float))
    return results
