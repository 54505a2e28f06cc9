"""Teacher-feature cache: keys, equivalence with the teacher adapter, skip/resume, fp16 storage, file lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from sam3m4.distill import cache as feature_cache, cache_pass

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "synth" / "saco_image"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny_teacher_kwargs) -> Path:
    return feature_cache.save_random_teacher(tmp_path_factory.mktemp("teacher") / "tiny-random", **tiny_teacher_kwargs)


@pytest.fixture(scope="module")
def teacher(teacher_dir):
    from sam3m4.teacher.sam3 import load_teacher

    return load_teacher(teacher_dir)


@pytest.fixture(scope="module")
def pairs() -> feature_cache.PairSet:
    return feature_cache.PairSet(FIXTURE / "train.json", size=64, mask_size=16, limit=24)


def test_keys_follow_content_phrase_and_teacher(tmp_path, teacher_dir, tiny_teacher_kwargs):
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 1
    assert feature_cache.image_hash(a) == feature_cache.image_hash(a.copy()) != feature_cache.image_hash(b)
    assert feature_cache.image_hash(a) != feature_cache.image_hash(np.zeros((4, 16, 3), np.uint8))  # same bytes, other shape
    assert feature_cache.pair_key("ab", "red circle") != feature_cache.pair_key("ab", "blue circle")
    other = feature_cache.save_random_teacher(tmp_path / "tiny-random", seed=1, **tiny_teacher_kwargs)  # same name, other weights
    assert feature_cache.teacher_id(teacher_dir) != feature_cache.teacher_id(other)
    assert feature_cache.teacher_id(teacher_dir) == feature_cache.teacher_id(teacher_dir)
    cache = feature_cache.FeatureCache(tmp_path / "c", feature_cache.teacher_id(teacher_dir), 56)
    assert cache.dir.name.endswith("_56px")


def test_grouped_teacher_matches_adapter(teacher, pairs):
    idx = [0, 1, 12]
    images = [pairs.images[int(pairs.image_of[p])] for p in idx]
    phrases = [pairs.phrases[p] for p in idx]
    with torch.no_grad():
        ref, ref_img = feature_cache.compact_outputs(teacher(**teacher.prepare(images, phrases)), 4, (1, 2))
    uniq = sorted({int(pairs.image_of[p]) for p in idx})
    recs, feats = feature_cache.run_teacher(teacher, [pairs.images[u] for u in uniq],
                                [uniq.index(int(pairs.image_of[p])) for p in idx], phrases, 4, (1, 2))
    for r, g in zip(ref, recs):
        for k in feature_cache.PAIR_FIELDS:
            torch.testing.assert_close(r[k], g[k], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ref_img[0]["fpn2"], feats[0]["fpn2"], atol=1e-5, rtol=1e-5)


class FlakyTeacher(torch.nn.Module):
    """Delegates to a teacher; raises on call number ``fail_at`` (a killed cache pass) and counts calls."""

    def __init__(self, teacher, fail_at: int | None = None):
        super().__init__()
        self.t, self.fail_at, self.calls = teacher, fail_at, 0
        self.model = teacher.model

    def preprocess_images(self, images):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt("killed")
        return self.t.preprocess_images(images)

    def tokenize(self, phrases):
        return self.t.tokenize(phrases)


def test_cache_pass_stores_fp16_skips_and_resumes(tmp_path, teacher, pairs):
    cache = feature_cache.FeatureCache(tmp_path, "t", 56)
    killed = FlakyTeacher(teacher, fail_at=3)
    with pytest.raises(KeyboardInterrupt):  # dies in the 3rd batch: 2 shards of 8 pairs are on disk
        cache_pass.build_cache(killed, pairs, cache, batch_size=8, shard_size=8, topk=4, progress=False)
    assert len(list(cache.dir.glob("shard-*.safetensors"))) == 2
    assert not list(cache.dir.glob("*.tmp"))
    resumed = FlakyTeacher(teacher)
    report = cache_pass.build_cache(resumed, pairs, feature_cache.FeatureCache(tmp_path, "t", 56), batch_size=8, topk=4, progress=False)
    assert report.skipped_pairs == 16 and report.computed_pairs == len(pairs) - 16 and resumed.calls == 1
    fresh = feature_cache.FeatureCache(tmp_path, "t", 56)
    assert len(fresh) == len(pairs) and all(fresh.has_pair(k) for k in pairs.keys)
    again = cache_pass.build_cache(FlakyTeacher(teacher, fail_at=1), pairs, fresh, progress=False)  # nothing to do
    assert again.computed_pairs == 0 and again.skipped_pairs == len(pairs)
    rec = fresh.get_pair(pairs.keys[0])
    assert rec["mask_logits"].dtype == torch.float16 and rec["mask_logits"].shape == (4, 16, 16)
    assert rec["query_logits"].shape == (8,) and rec["mask_index"].dtype == torch.int64
    img = fresh.get_image(pairs.image_hashes[0], (1, 2))
    assert img["fpn1"].dtype == torch.float16 and img["fpn1"].shape == (32, 8, 8)
    batch = feature_cache.collate_pairs([rec, fresh.get_pair(pairs.keys[1])])
    assert batch["semantic_logits"].shape == (2, 1, 16, 16) and batch["semantic_logits"].dtype == torch.float32


WRITER = textwrap.dedent("""
    import sys, torch
    from sam3m4.distill.cache import FeatureCache
    root, who = sys.argv[1], int(sys.argv[2])
    cache = FeatureCache(root, "t", 56)
    for start in range(0, 40, 4):  # both writers store keys 0..39, in shards of 4, racing each other
        keys = range(start, start + 4) if who == 0 else range(36 - start, 40 - start)
        recs = {f"k{k}": {"query_logits": torch.full((3,), float(k))} for k in keys}
        cache.write_shard(recs, {}, rank=who)
""")


def test_file_lock_two_processes_store_each_key_once(tmp_path):
    from safetensors import safe_open

    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), str(w)], cwd=ROOT)
             for w in (0, 1)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    names = []
    for shard in (tmp_path / "cache" / "t_56px").glob("shard-*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            names += list(f.keys())
    assert sorted(names) == sorted(f"pair.k{k}.query_logits" for k in range(40))
