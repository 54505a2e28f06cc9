"""The teacher-feature cache pass, one process or sharded over ``torchrun`` ranks on one or several machines.

    report = build_cache(teacher, [train, val], cache, rank=rank, world_size=world)   # every rank calls it
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
from typing import Sequence

from sam3m4.distill.cache import FeatureCache, PairSet, run_teacher
from sam3m4.distill.runtime import barrier, broadcast_object, gather_objects
from sam3m4.fileio import remove_stale_temporaries

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
