"""Synthetic SA-Co generator: determinism, both formats read back exactly, and the scene properties the
later stages rely on (positives/negatives, small objects, occlusion, videos with objects entering/leaving).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_erosion

from sam3m4.data import SacoImageDataset, SacoVideoDataset, generate
from sam3m4.data._render import COLOURS
from sam3m4.data.synth import CONCEPTS, MIN_VISIBLE_PX, render_image, render_video
from sam3m4.errors import ConfigError

FIX = Path(__file__).resolve().parents[2] / "fixtures"
SIZE, FRAMES, SEED = 96, 16, 3
CONFIG = dict(n_images=10, n_videos=2, seed=SEED, image_size=SIZE, n_frames=FRAMES, progress=False)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    return out, generate(out, **CONFIG)


@pytest.fixture(scope="module")
def image_sets(synth):
    out, _ = synth
    return {split: SacoImageDataset(out / "saco_image" / f"{split}.json") for split in ("train", "val")}


@pytest.fixture(scope="module")
def video_sets(synth):
    out, _ = synth
    return {split: SacoVideoDataset(out / "saco_video" / f"{split}.json") for split in ("train", "val")}


def test_layout_and_manifest(synth):
    out, manifest = synth
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["counts"]["images"] == {"train": 8, "val": 2}
    assert manifest["counts"]["videos"] == {"train": 1, "val": 1}
    assert len(manifest["concepts"]) == 20 and {"red circle", "star"} <= {c["name"] for c in manifest["concepts"]}
    val_images = sorted(p.name for p in (out / "saco_image" / "images" / "val").iterdir())
    assert val_images == ["000008.jpg", "000009.jpg"]
    assert len(list((out / "saco_video" / "JPEGImages" / "train" / "000000").glob("*.jpg"))) == FRAMES
    image_json = json.loads((out / "saco_image" / "train.json").read_text())
    assert set(image_json["images"][0]) == {"id", "file_name", "height", "width", "text_input",
                                            "queried_category", "is_instance_exhaustive"}
    assert set(image_json["annotations"][0]) == {"id", "image_id", "bbox", "segmentation", "area",
                                                 "category_id", "iscrowd"}
    video_json = json.loads((out / "saco_video" / "val.json").read_text())
    assert set(video_json["videos"][0]) == {"id", "file_names", "height", "width", "length"}
    assert set(video_json["annotations"][0]) == {"id", "video_id", "category_id", "segmentations", "bboxes",
                                                 "areas", "iscrowd"}


def test_deterministic_for_a_seed(tmp_path, synth):
    out, _ = synth
    again = tmp_path / "again"
    generate(again, **CONFIG)
    assert files(again) == files(out)
    generate(again, **CONFIG)                     # rerun into the same folder: replaced, same bytes
    assert files(again) == files(out)
    other = tmp_path / "other"
    generate(other, **{**CONFIG, "seed": SEED + 1})
    a, b = files(out), files(other)
    assert a["saco_image/train.json"] != b["saco_image/train.json"]
    assert a["saco_image/images/train/000000.jpg"] != b["saco_image/images/train/000000.jpg"]
    assert a["saco_video/val.json"] != b["saco_video/val.json"]


def test_committed_fixtures_are_current(tmp_path):
    """fixtures/synth matches what fixtures/make_fixtures.py writes (JSON exactly, JPEG pixels closely)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", FIX / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = tmp_path / "fresh"
    generate(fresh, progress=False, **module.CONFIG)
    new, old = files(fresh), files(FIX / "synth")
    assert sorted(new) == sorted(old), "run: python fixtures/make_fixtures.py"
    for name in new:
        if name.endswith(".json"):
            assert new[name] == old[name], f"{name} is stale; run: python fixtures/make_fixtures.py"
    name = "saco_image/images/train/000000.jpg"
    pixels = [np.asarray(Image.open(root / name), dtype=np.int16) for root in (fresh, FIX / "synth")]
    assert np.abs(pixels[0] - pixels[1]).mean() < 2


def test_bad_arguments_and_foreign_folder(tmp_path):
    with pytest.raises(ConfigError, match="n_frames"):
        generate(tmp_path / "a", 1, 1, seed=0, n_frames=1, progress=False)
    (tmp_path / "b" / "saco_image").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not a synth manifest"):
        generate(tmp_path / "b", 1, 0, seed=0, progress=False)


def test_image_pairs_read_back_exactly(synth, image_sets):
    _, manifest = synth
    shape_only_colours: dict[str, set[str]] = {}
    n_hard = n_small = n_large = 0
    for split, ds in image_sets.items():
        assert not ds.skipped and len(ds) == manifest["counts"]["image_pairs"][split]
        scenes = {}
        for i in range(len(ds)):
            s = ds[i]
            index = int(Path(s.file_name).stem)
            scene = scenes.setdefault(index, render_image(SEED, index, SIZE))
            hits = [k for k, sh in enumerate(scene.shapes) if s.phrase in (sh.phrase, sh.shape)]
            assert s.present == bool(hits) and len(s.masks) == len(hits)
            expected = np.stack([scene.labels == k + 1 for k in hits]) if hits else np.zeros((0, SIZE, SIZE), bool)
            np.testing.assert_array_equal(s.masks, expected)
            assert s.image.shape == (SIZE, SIZE, 3)
            assert s.masks.sum(axis=0).max(initial=0) <= 1          # occlusion: visible parts are disjoint
            for k, m in zip(hits, s.masks):
                sh = scene.shapes[k]
                assert m.sum() >= MIN_VISIBLE_PX
                assert (scene.rgb[m] == sh.rgb).all()               # mask == drawn pixels, exactly
                core = binary_erosion(m, iterations=2)
                if core.sum() >= 10:                                # and the JPEG keeps the concept colour
                    assert np.abs(np.median(s.image[core], axis=0) - COLOURS[sh.colour]).max() < 40
                n_small += m.sum() <= 0.01 * SIZE * SIZE
                n_large += m.sum() >= 0.08 * SIZE * SIZE
                if " " not in s.phrase:
                    shape_only_colours.setdefault(s.phrase, set()).add(sh.colour)
            if not s.present and " " in s.phrase:
                n_hard += any(sh.shape == s.phrase.split()[1] for sh in scene.shapes)
        for index, scene in scenes.items():      # every drawn instance is annotated under its phrase
            asked = {p["text_input"] for p in ds.pairs if Path(p["file_name"]).stem == f"{index:06d}"}
            present = {sh.phrase for sh in scene.shapes} | {sh.shape for sh in scene.shapes}
            assert present <= asked and asked - present      # all positives and >= 1 negative asked
    assert n_small >= 1 and n_large >= 1 and n_hard >= 1
    assert max(len(c) for c in shape_only_colours.values()) >= 2  # a shape-only phrase covers several colours


def test_videos_read_back_with_null_frames_entering_and_leaving(synth, video_sets):
    entering = leaving = moving = 0
    for split, ds in video_sets.items():
        assert not ds.skipped and len(ds) > 0
        video_index = {vid: vid - 1 for vid in ds.videos}
        rendered = {vid: render_video(SEED, video_index[vid], SIZE, FRAMES) for vid in ds.videos}
        negatives = 0
        for i in range(len(ds)):
            s = ds[i]
            video = rendered[s.video_id]
            hits = [k for k, ob in enumerate(video.objects) if s.phrase in (ob.phrase, ob.shape)]
            assert s.present == bool(hits) and s.masks.shape == (len(hits), FRAMES, SIZE, SIZE)
            negatives += not s.present
            assert s.frames.shape == (FRAMES, SIZE, SIZE, 3) and len(s.file_names) == FRAMES
            for k, m, vis in zip(hits, s.masks, s.visible):
                np.testing.assert_array_equal(m, video.labels == k + 1)
                np.testing.assert_array_equal(vis, m.any(axis=(1, 2)))
                assert vis.any()
                entering += (not vis[0]) and vis.any()
                leaving += (not vis[-1]) and vis.any()
                ys, xs = np.nonzero(m[vis.argmax()])
                later = np.flatnonzero(vis)[-1]
                ys2, xs2 = np.nonzero(m[later])
                moving += abs(xs.mean() - xs2.mean()) + abs(ys.mean() - ys2.mean()) > 2
            assert s.masks.sum(axis=0).max(initial=0) <= 1
        assert negatives >= 1
    assert entering >= 1 and leaving >= 1 and moving >= 1
    raw = json.loads((synth[0] / "saco_video" / "train.json").read_text())
    assert any(seg is None for ann in raw["annotations"] for seg in ann["segmentations"])  # null frames on disk
