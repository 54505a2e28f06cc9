"""The teacher-feature cache pass, one process or sharded over ``torchrun`` ranks on one or several machines.

    report = build_cache(teacher, [train, val], cache, rank=rank, world_size=world)   # every rank calls it
    cache, info = ensure_cache(cfg, rank, world, device, [train, val])   # a recipe's cache: open, fill what is missing
    torchrun --nproc_per_node=4 -m sam3m4 distill cache --config configs/distill_phase2.yaml device=cuda

* Work units: the splits' unique pair keys in split then file order (a key seen twice is computed once), cut
  into units of ``shard_size`` pairs, each cut into batches of ``batch_size`` pairs; an image's FPN features
  belong to the batch of its first pair. Units and batches depend only on the data and those two sizes, never
  on what is cached or on the number of ranks, and a unit is written as one shard named after it
  (``shard-u<unit>-<12 hex of its keys>.safetensors``): a unit's bytes are the same in any process, so N ranks
  write the same cache as one process (same threads, same device kind).
* Rank 0 lists the units that lack a pair or an image (what is stored is skipped) and broadcasts the list;
  rank r takes units r, r + N, r + 2N, ... of it: each missing item is computed by exactly one rank.
* A killed pass loses only its unwritten units: a rerun (any number of ranks) lists what is still missing.
* At the end every rank's written shards go to rank 0 (``all_gather_object``), which alone writes the
  folder's ``index.json``; the other ranks read it after a barrier.
* Every recipe that reads the cache (Phase 1 and 2, QAT, ``sam3m4 distill cache``) opens it through
  :func:`ensure_cache` (a complete cache: no teacher is loaded; keys missing: one line naming them and the
  :func:`fill_command`, then the ranks fill them, or with ``cache_fill: false`` a stop); :func:`load_splits` gives
  the train / val pair sets of a config, :func:`fill_cache` is ``sam3m4 distill cache``.

Fault injection for the resume test: ``SAM3M4_CACHE_EXIT_AFTER=image:<rank>:<k>`` makes that rank exit (code
75, no clean-up, like a killed process) right after writing its k-th shard (``video:<rank>:<k>``: the video
teacher's cache, :func:`sam3m4.distill.video_run.teacher_cache`).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from sam3m4 import paths
from sam3m4.distill.cache import FeatureCache, PairSet, run_teacher, teacher_id, teacher_resolution
from sam3m4.distill.runtime import barrier, broadcast_object, gather_objects, init_distributed, select_device
from sam3m4.errors import DataFormatError, Sam3m4Error
from sam3m4.fileio import remove_stale_temporaries
from sam3m4.models import build_student
from sam3m4.teacher.sam3 import load_teacher

FAULT_ENV = "SAM3M4_CACHE_EXIT_AFTER"
FAULT_EXIT_CODE = 75


@dataclass(frozen=True)
class Batch:
    pairs: tuple[tuple[int, int], ...]
    """(split, position) of each pair the batch computes."""
    images: tuple[str, ...]
    """Image hashes whose features this batch stores (their first pair is in it)."""


@dataclass(frozen=True)
class Unit:
    index: int
    batches: tuple[Batch, ...]


@dataclass
class CacheReport:
    total_pairs: int
    computed_pairs: int
    """Pairs stored by this pass, all ranks together."""
    skipped_pairs: int
    seconds: float
    teacher: dict | None = None
    """Teacher timings of this pass, all ranks together: ``vision_s``/``images``, ``heads_s``/``pairs``
    (see :func:`sam3m4.distill.cache.run_teacher`)."""
    units: int = 0
    units_todo: int = 0
    world_size: int = 1


def _splits(data) -> list[PairSet]:
    return [data] if isinstance(data, PairSet) else list(data)


def _image_of(splits: Sequence[PairSet], s: int, p: int) -> str:
    return splits[s].image_hashes[int(splits[s].image_of[p])]


def plan_units(splits: Sequence[PairSet], shard_size: int, batch_size: int) -> list[Unit]:
    """The pass's work units (module docstring); a function of the data and the two sizes only."""
    seen_keys, seen_images, order = set(), set(), []
    for s, d in enumerate(splits):
        for p, key in enumerate(d.keys):
            if key not in seen_keys:
                seen_keys.add(key)
                order.append((s, p))
    units = []
    shard_size, batch_size = max(int(shard_size), 1), max(int(batch_size), 1)
    for u, start in enumerate(range(0, len(order), shard_size)):
        chunk, batches = order[start:start + shard_size], []
        for b in range(0, len(chunk), batch_size):
            pairs, owned = tuple(chunk[b:b + batch_size]), []
            for s, p in pairs:
                h = _image_of(splits, s, p)
                if h not in seen_images:
                    seen_images.add(h)
                    owned.append(h)
            batches.append(Batch(pairs, tuple(owned)))
        units.append(Unit(u, tuple(batches)))
    return units


def _batch_missing(splits, cache: FeatureCache, batch: Batch) -> bool:
    return (any(not cache.has_pair(splits[s].keys[p]) for s, p in batch.pairs)
            or any(not cache.has_image(h) for h in batch.images))


def missing_pairs(splits: Sequence[PairSet], cache: FeatureCache) -> list[tuple[int, int]]:
    """(split, position) of the unique pairs whose record, or whose image's features, the cache lacks."""
    seen, out = set(), []
    for s, d in enumerate(splits):
        for p, key in enumerate(d.keys):
            if key in seen:
                continue
            seen.add(key)
            if not (cache.has_pair(key) and cache.has_image(_image_of(splits, s, p))):
                out.append((s, p))
    return out


def missing_line(splits: Sequence[PairSet], cache: FeatureCache, missing: Sequence[tuple[int, int]], command: str,
                 first: int = 3) -> str:
    """One line: how many pairs the cache lacks, the first few (file[position] 'phrase' key), how to fill it."""
    total = len({k for d in splits for k in d.keys})
    names = [f"{splits[s].json_path.name}[{p}] {splits[s].phrases[p]!r} ({splits[s].keys[p]})"
             for s, p in missing[:first]]
    more = ", ..." if len(missing) > first else ""
    return (f"{cache.dir}: {len(missing)} of {total} pairs missing from the teacher cache (first: "
            f"{', '.join(names)}{more}); fill it with: {command}")


def shard_name(unit: int, pairs: Sequence[str], images: Sequence[str]) -> str:
    """``shard-u<unit>-<12 hex>.safetensors``: the unit and the sha256 of the keys it stores."""
    h = hashlib.sha256("\n".join(sorted(f"pair.{k}" for k in pairs) + sorted(f"image.{k}" for k in images)).encode())
    return f"shard-u{unit:05d}-{h.hexdigest()[:12]}.safetensors"


def fault_exit_after(rank: int, which: str = "image") -> int | None:
    """The k of ``SAM3M4_CACHE_EXIT_AFTER=<which>:<rank>:<k>`` when it names this pass (``image`` or
    ``video``) and this rank."""
    parts = os.environ.get(FAULT_ENV, "").split(":")
    if len(parts) != 3 or parts[0] != which:
        return None
    return int(parts[2]) if int(parts[1]) == rank else None


def build_cache(teacher, data: PairSet | Sequence[PairSet], cache: FeatureCache, *, batch_size: int = 32,
                topk: int = 16, min_score: float = 0.0, fpn_levels: Sequence[int] = (1, 2), shard_size: int = 512,
                rank: int = 0, world_size: int = 1, progress: bool = True, desc: str = "cache") -> CacheReport:
    """Store the teacher's outputs for every pair of ``data`` (one split or several) the cache lacks, and its
    image's features, as in the module docstring. Collective when ``world_size`` > 1: every rank calls it."""
    from tqdm.auto import tqdm

    t0 = time.time()
    splits = _splits(data)
    units = plan_units(splits, shard_size, batch_size)
    if rank == 0:
        remove_stale_temporaries(cache.dir)  # a killed pass's half-written shard; before any rank writes
    cache.refresh()
    todo = broadcast_object([u.index for u in units if any(_batch_missing(splits, cache, b) for b in u.batches)]
                            if rank == 0 else None, world_size)
    missing = len(broadcast_object(missing_pairs(splits, cache) if rank == 0 else None, world_size))
    mine = [units[i] for i in todo[rank::world_size]]
    exit_after = fault_exit_after(rank)
    bar = tqdm(total=sum(len(b.pairs) for u in mine for b in u.batches), desc=desc, unit="pair", leave=False,
               disable=None if progress and rank == 0 else True)  # rate and ETA on a terminal only
    computed, timings, written = 0, {}, {}
    for n, unit in enumerate(mine):
        pend_pairs: dict[str, dict] = {}
        pend_images: dict[str, dict] = {}
        for batch in unit.batches:
            if not _batch_missing(splits, cache, batch):
                bar.update(len(batch.pairs))
                continue
            hashes = list(dict.fromkeys(_image_of(splits, s, p) for s, p in batch.pairs))  # unique, first-seen order
            where = {_image_of(splits, s, p): (s, int(splits[s].image_of[p])) for s, p in batch.pairs}
            recs, feats = run_teacher(teacher, [splits[where[h][0]].images[where[h][1]] for h in hashes],
                                      [hashes.index(_image_of(splits, s, p)) for s, p in batch.pairs],
                                      [splits[s].phrases[p] for s, p in batch.pairs], topk, fpn_levels, min_score,
                                      timings)
            for (s, p), r in zip(batch.pairs, recs):
                if not cache.has_pair(splits[s].keys[p]):
                    pend_pairs[splits[s].keys[p]] = r
            for h, f in zip(hashes, feats):
                if h in batch.images and not cache.has_image(h):
                    pend_images[h] = f
            bar.update(len(batch.pairs))
        if pend_pairs or pend_images:
            name = shard_name(unit.index, pend_pairs, pend_images)
            computed += cache.write_shard(pend_pairs, pend_images, rank, name=name)
            written[name] = (sorted(pend_pairs), sorted(pend_images))
        if exit_after is not None and n + 1 >= exit_after:
            bar.close()
            print(f"{FAULT_ENV}: rank {rank} exits after {n + 1} shard(s)", file=sys.stderr, flush=True)
            os._exit(FAULT_EXIT_CODE)
    bar.close()
    parts = gather_objects({"computed": computed, "timings": timings, "written": written}, world_size)
    if rank == 0:
        cache.refresh()
        for part in parts:
            for name, (pairs, images) in part["written"].items():
                cache.register(name, pairs, images)
        cache.write_index()
    barrier(world_size)
    cache.refresh()
    total_t: dict = {}
    for part in parts:
        for k, v in part["timings"].items():
            total_t[k] = total_t.get(k, 0) + v
    return CacheReport(total_pairs=sum(len(d) for d in splits), computed_pairs=sum(p["computed"] for p in parts),
                       skipped_pairs=sum(len(d) for d in splits) - missing, seconds=round(time.time() - t0, 2),
                       teacher=total_t, units=len(units), units_todo=len(todo), world_size=world_size)


# --- opening and filling the cache for a recipe (distillation phases, QAT, `sam3m4 distill cache`) -----------
CACHE_KEYS = ("data_root", "teacher", "cache_dir", "train_limit", "val_limit", "cache_topk", "cache_min_score",
              "teacher_levels", "cache_batch_size", "cache_shard_size", "device")  # what decides a cache pass


def fill_command(cfg: dict, world: int) -> str:
    """The ``sam3m4 distill cache`` command that fills the cache ``cfg`` reads, on ``world`` ranks."""
    import shlex

    def value(v):
        return "[" + ",".join(map(str, v)) + "]" if isinstance(v, (list, tuple)) else str(v)

    keys = " ".join(shlex.quote(f"{k}={value(cfg[k])}") for k in CACHE_KEYS if cfg[k] != "")
    launcher = f"torchrun --nproc_per_node={world} -m sam3m4" if world > 1 else "sam3m4"
    return f"{launcher} distill cache {keys}"


def ensure_cache(cfg: dict, rank: int, world: int, device, splits) -> tuple[FeatureCache, dict]:
    """Open the cache for ``cfg['teacher']``. Complete: nothing else runs (no teacher is loaded). Keys missing:
    rank 0 prints one line (how many, the first few, the command that fills it), then the ranks fill it
    together (:func:`build_cache`), or, with ``cache_fill: false``, every rank stops
    with that line."""
    t0 = time.time()
    root = cfg["cache_dir"] or Path(paths.feature_cache_dir(cfg["data_root"]))
    settings = {k: cfg[k] for k in ("cache_topk", "cache_min_score", "teacher_levels")}
    cache = FeatureCache(root, teacher_id(cfg["teacher"]), teacher_resolution(cfg["teacher"]), settings)
    missing = broadcast_object(missing_pairs(splits, cache) if rank == 0 else None, world)
    info = {"cache_dir": str(cache.dir), "pairs": sum(len(d) for d in splits), "missing": len(missing), "computed": 0}
    if missing:
        line = missing_line(splits, cache, missing, fill_command(cfg, world))
        if not cfg["cache_fill"]:
            raise DataFormatError(line)
        if rank == 0:
            print(f"{line}; filling it now on {world} rank(s)", flush=True)
        teacher = load_teacher(cfg["teacher"], device=device)
        rep = build_cache(teacher, splits, cache, batch_size=cfg["cache_batch_size"], topk=cfg["cache_topk"],
                          min_score=cfg["cache_min_score"], fpn_levels=cfg["teacher_levels"],
                          shard_size=cfg["cache_shard_size"], rank=rank, world_size=world,
                          progress=cfg["progress"], desc="cache")
        info["computed"] = rep.computed_pairs
        for k, v in (rep.teacher or {}).items():  # teacher seconds per image (vision) and per pair (heads), all ranks
            info[f"teacher_{k}"] = v
        del teacher
    info["seconds"] = round(time.time() - t0, 2)
    info["disk_mb"] = round(sum(p.stat().st_size for p in cache.dir.glob("shard-*")) / 2**20, 1)
    return cache, info


def load_splits(cfg: dict, size: int, progress: bool) -> tuple[PairSet, PairSet | None]:
    """Train (and val, when present) pairs of ``<data_root>/saco_image`` resized to ``size`` px."""
    saco = Path(cfg["data_root"]) / "saco_image"
    if not (saco / "train.json").is_file():
        raise Sam3m4Error(f"{saco / 'train.json'}: missing (generate data with 'sam3m4 data synth --out {cfg['data_root']}')")
    msize = -(-size // 4)  # the student's masks live at stride 4
    train = PairSet(saco / "train.json", size, msize, limit=cfg["train_limit"], progress=progress)
    val = PairSet(saco / "val.json", size, msize, keep_full_gt=True, limit=cfg["val_limit"]) \
        if (saco / "val.json").is_file() else None
    return train, val


def fill_cache(cfg: dict) -> dict:
    """``sam3m4 distill cache``: fill the teacher-feature cache for train + val; under ``torchrun`` the ranks
    share the missing pairs (:func:`build_cache`). Returns the pass's summary (the same on every
    rank: counts and teacher seconds of all ranks together)."""
    rank, world, local = init_distributed(cfg["device"])
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    size = cfg["image_size"] or build_student(cfg["student_preset"]).image_size
    train, val = load_splits(cfg, size, cfg["progress"] and rank == 0)
    _, info = ensure_cache({**cfg, "cache_fill": True}, rank, world, select_device(cfg["device"], local),
                           [train] + ([val] if val else []))
    info["world_size"] = world
    return info
