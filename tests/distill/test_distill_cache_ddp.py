"""The teacher caches under ``torchrun`` (2 CPU ranks, gloo) on the fixtures with random tiny teachers: the same
files, byte for byte, as one process; a rank killed mid-way (``SAM3M4_CACHE_EXIT_AFTER``) leaves a cache that
a rerun completes without computing anything twice; the recipe reads a complete cache without its teacher and
names what an incomplete one lacks.

    python -m pytest tests/distill/test_distill_cache_ddp.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sam3m4.distill import cache as feature_cache, cache_pass, recipe
from sam3m4.errors import DataFormatError

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "fixtures" / "synth"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny_teacher_kwargs) -> Path:
    return feature_cache.save_random_teacher(tmp_path_factory.mktemp("teacher") / "tiny-random", **tiny_teacher_kwargs)


def _torchrun(cwd: Path, *args: str, exit_after: str | None = None, module: bool = True) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node=2 --standalone [-m sam3m4] <args>`` on CPU, in ``cwd``
    (the run lock of rank 0 goes there)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop(cache_pass.FAULT_ENV, None)
    if exit_after:
        env[cache_pass.FAULT_ENV] = exit_after
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           *(["-m", "sam3m4"] if module else []), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".lock"}


def _same_files(a: Path, b: Path) -> None:
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    assert [n for n in fa if fa[n] != fb[n]] == []


def _image_overrides(teacher: Path, cache_dir: Path) -> list[str]:
    return [f"data_root={FIX}", f"teacher={teacher}", f"cache_dir={cache_dir}", "image_size=64", "threads=1",
            "progress=false", "cache_topk=4", "cache_batch_size=4", "cache_shard_size=4", "device=cpu"]


def test_the_recipe_reads_a_complete_cache_without_the_teacher(tmp_path, teacher_dir, monkeypatch):
    cfg = recipe.load_config(ROOT / "configs" / "distill_phase2.yaml",
                             _image_overrides(teacher_dir, tmp_path / "c") + ["train_limit=8", "val_limit=4"])
    train, val = cache_pass.load_splits(cfg, 64, False)
    with pytest.raises(DataFormatError, match=r"12 of 12 pairs missing .*\(first: train.json\[0\] .*fill it with: "
                                              r"sam3m4 distill cache data_root="):
        cache_pass.ensure_cache({**cfg, "cache_fill": False}, 0, 1, torch.device("cpu"), [train, val])
    cache_pass.fill_cache(cfg)

    def no_teacher(*a, **kw):
        raise AssertionError("the teacher was loaded")

    monkeypatch.setattr(cache_pass, "load_teacher", no_teacher)  # where ensure_cache looks it up
    cache, info = cache_pass.ensure_cache(cfg, 0, 1, torch.device("cpu"), [train, val])
    assert info["missing"] == info["computed"] == 0 and len(cache) == 12
    more, _ = cache_pass.load_splits({**cfg, "train_limit": 10}, 64, False)  # two pairs more than the cache holds
    with pytest.raises(DataFormatError, match=r": 2 of 14 pairs missing from the teacher cache \(first: train.json\[8\]"):
        cache_pass.ensure_cache({**cfg, "cache_fill": False}, 0, 1, torch.device("cpu"), [more, val])


def test_the_recipe_keeps_the_cache_helpers_it_moved_to_the_cache_pass():
    """recipe.ensure_cache / fill_cache / load_splits / fill_command are the cache pass's functions (one copy)."""
    for name in ("ensure_cache", "fill_cache", "load_splits", "fill_command", "CACHE_KEYS"):
        assert getattr(recipe, name) is getattr(cache_pass, name), name


def test_units_do_not_depend_on_the_cache_or_the_ranks(teacher_dir):
    train = feature_cache.PairSet(FIX / "saco_image" / "train.json", size=64, mask_size=16)
    val = feature_cache.PairSet(FIX / "saco_image" / "val.json", size=64, mask_size=16)
    units = cache_pass.plan_units([train, val], shard_size=5, batch_size=2)
    pairs = [pair for u in units for b in u.batches for pair in b.pairs]
    keys = [[train, val][s].keys[p] for s, p in pairs]
    assert len(keys) == len(set(keys)) == len(set(train.keys) | set(val.keys))  # every key once
    images = [h for u in units for b in u.batches for h in b.images]
    assert sorted(images) == sorted(set(train.image_hashes) | set(val.image_hashes))  # every image once
    assert all(len(u.batches) <= 3 for u in units) and units == cache_pass.plan_units([train, val], 5, 2)


# --- the video teacher's masklets ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def video_models(tmp_path_factory):
    from transformers import Sam3Model

    from sam3m4.checkpoint import atomic_torch_save
    from sam3m4.models import build_student
    from sam3m4.teacher.bootstrap_model import build_config
    from sam3m4.teacher.video import build_video_teacher

    root = tmp_path_factory.mktemp("video")
    torch.manual_seed(0)
    Sam3Model(build_config(image_size=56, hidden_size=64, vit_layers=1, vit_window=2, text_layers=1,
                           decoder_layers=1, num_queries=6)).save_pretrained(root / "image")
    build_video_teacher(root / "image", root / "video", score_threshold_detection=0.0, new_det_thresh=0.0)
    atomic_torch_save({"model": build_student("tiny").state_dict(), "preset": "tiny", "phase": 2, "epoch": 1,
                       "step": 1}, root / "phase2.pt")
    return root


WORKER = textwrap.dedent("""
    import json, os, sys
    import torch.distributed as dist
    from sam3m4.distill import recipe, video_run
    image_args, video_args = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    image = recipe.fill_cache(recipe.load_config(image_args["config"], image_args["overrides"]))
    video = video_run.distill_video(**video_args, cache_only=True)
    if int(os.environ["RANK"]) == 0:
        print("IMAGE " + json.dumps(image))
        print("VIDEO " + json.dumps(video))
    dist.destroy_process_group()
""")


def _line(stdout: str, tag: str) -> dict:
    return json.loads(next(x for x in stdout.splitlines() if x.startswith(tag + " "))[len(tag) + 1:])


@pytest.mark.slow
def test_caches_under_torchrun_equal_one_process_and_a_killed_rank_resumes(tmp_path, teacher_dir, video_models):
    """Three 2-rank launches: (1) `sam3m4 distill cache`, rank 1 killed after its first shard; (2) both caches,
    the image one completes, rank 1 killed after its first video file; (3) the video cache completes. Each
    cache is then the same files, byte for byte, as one process's."""
    from sam3m4.data import SacoVideoDataset
    from sam3m4.distill import video_run

    overrides = _image_overrides(teacher_dir, tmp_path / "two")
    config = ROOT / "configs" / "distill_phase2.yaml"
    video = dict(ckpt=str(video_models / "phase2.pt"), teacher=str(video_models / "video"), data=str(FIX), threads=1)
    one = recipe.fill_cache(recipe.load_config(config, _image_overrides(teacher_dir, tmp_path / "one")))
    one_video = video_run.distill_video(**video, cache_dir=tmp_path / "one_video", cache_only=True)
    image_dir, video_dir = Path(one["cache_dir"]), Path(one_video["cache_dir"])
    shards = sorted(image_dir.glob("shard-u*.safetensors"))
    files = sorted(p.name for p in video_dir.glob("*.safetensors"))
    assert one["missing"] == one["computed"] == one["pairs"] > 8 and len(shards) >= 4
    assert sorted(json.loads((image_dir / feature_cache.INDEX_FILE).read_text())["shards"]) == [s.name for s in shards]
    assert one_video["world_size"] == 1 and one_video["teacher_cache"]["pairs"] == len(files) >= 3
    index = json.loads((video_dir / "index.json").read_text())["items"]
    assert sorted(index) == files and all(e["frames"] > 1 for e in index.values())
    ds = SacoVideoDataset(FIX / "saco_video" / "train.json")
    assert video_run._pair_name(ds, 0, {}) == video_run._pair_file(ds[0])  # the frame-by-frame hash is the clip's

    killed = _torchrun(tmp_path, "distill", "cache", "--config", str(config), *overrides, exit_after="image:1:1")
    assert killed.returncode != 0 and "rank 1 exits after 1 shard" in killed.stderr, killed.stderr[-3000:]
    partial = tmp_path / "two" / image_dir.name
    left = sorted(p.name for p in partial.glob("shard-u*.safetensors"))
    assert 1 <= len(left) < len(shards) and not (partial / feature_cache.INDEX_FILE).exists()
    args = [json.dumps({"config": str(config), "overrides": overrides}),
            json.dumps({**video, "cache_dir": str(tmp_path / "two_video")})]
    second = _torchrun(tmp_path, str(_worker(tmp_path)), *args, exit_after="video:1:1", module=False)
    assert second.returncode != 0 and "rank 1 exits after 1 file" in second.stderr, second.stderr[-3000:]
    assert "pairs missing from the teacher cache" in second.stdout
    assert "fill it with: torchrun --nproc_per_node=2 -m sam3m4 distill cache" in second.stdout
    _same_files(image_dir, partial)  # resumed by launch 2 before its video pass
    video_partial = tmp_path / "two_video" / video_dir.name
    video_left = len(list(video_partial.glob("*.safetensors")))
    assert 1 <= video_left < len(files) and not (video_partial / "index.json").exists()

    third = _torchrun(tmp_path, str(_worker(tmp_path)), *args, module=False)
    assert third.returncode == 0, third.stderr[-3000:]
    image, video_info = _line(third.stdout, "IMAGE"), _line(third.stdout, "VIDEO")
    assert image["missing"] == image["computed"] == 0 and video_info["world_size"] == 2
    assert video_info["teacher_cache"]["pairs"] == len(files) - video_left  # nothing computed twice
    _same_files(video_dir, video_partial)
    _same_files(image_dir, partial)


def _worker(tmp_path: Path) -> Path:
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    return path
