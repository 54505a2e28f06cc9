"""SA-Co image and video readers on bad input: every defect is a one-line DataFormatError naming the file
and the field. The broken JSONs are edits of the committed fixtures (fixtures/synth), written to tmp_path.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from sam3m4.data import SacoImageDataset, SacoVideoDataset, encode_mask
from sam3m4.errors import DataFormatError

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "synth"
IMAGE_JSON = FIX / "saco_image" / "train.json"
IMAGE_ROOT = FIX / "saco_image" / "images"
VIDEO_JSON = FIX / "saco_video" / "train.json"
FRAME_ROOT = FIX / "saco_video" / "JPEGImages"


@pytest.fixture(scope="module")
def image_data() -> dict:
    return json.loads(IMAGE_JSON.read_text())


@pytest.fixture(scope="module")
def video_data() -> dict:
    return json.loads(VIDEO_JSON.read_text())


def write(tmp_path: Path, data: dict | str, name: str = "bad.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=1))
    return path


def expect_error(fn, *fields: str) -> str:
    """Run fn, expect a one-line DataFormatError naming bad.json and every field in fields."""
    with pytest.raises(DataFormatError) as info:
        fn()
    message = str(info.value)
    assert "bad.json" in message and "\n" not in message, message
    for field in fields:
        assert field in message, (field, message)
    return message


def first_positive(data: dict) -> tuple[int, int]:
    """(images index, annotations index) of the first annotated pair."""
    ann_index = 0
    image_id = data["annotations"][ann_index]["image_id"]
    return next(i for i, im in enumerate(data["images"]) if im["id"] == image_id), ann_index


# --- SA-Co image ------------------------------------------------------------------------------------

def test_image_fixture_reads(image_data):
    ds = SacoImageDataset(IMAGE_JSON)
    assert len(ds) == len(image_data["images"]) and not ds.skipped
    s = ds[0]
    assert s.image.shape == (96, 96, 3) and s.image.dtype == np.uint8
    assert s.masks.shape[1:] == (96, 96) and s.boxes.shape == (len(s.masks), 4)


def edit_image(data, fn):
    bad = copy.deepcopy(data)
    fn(bad)
    return bad


@pytest.mark.parametrize("edit, fields", [
    (lambda d: d["images"][0].pop("height"), ["images[0].height", "missing key"]),
    (lambda d: d["images"][1].update(width="96"), ["images[1].width", "expected int, got str"]),
    (lambda d: d["images"][2].update(text_input=None), ["images[2].text_input", "expected str, got null"]),
    (lambda d: d["images"][0].update(height=0), ["images[0].height", "> 0"]),
    (lambda d: d["images"][1].update(id=d["images"][0]["id"]), ["images[1].id", "duplicate"]),
    (lambda d: d.pop("images"), ["images", "missing key"]),
    (lambda d: d.update(annotations={}), ["annotations", "expected list, got dict"]),
    (lambda d: d["annotations"].__setitem__(1, 5), ["annotations[1]", "expected object"]),
    (lambda d: d["annotations"][2].update(image_id=99999), ["annotations[2].image_id", "unknown image id 99999"]),
    (lambda d: d["annotations"][0].pop("image_id"), ["annotations[0].image_id", "missing key"]),
    (lambda d: d["annotations"][0].pop("segmentation"), ["annotations[0].segmentation", "missing key"]),
    (lambda d: d["annotations"][0]["segmentation"].update(size=[10, 12]),
     ["annotations[0].segmentation.size", "[10, 12] != image size [96, 96]"]),
    (lambda d: d["annotations"][0]["segmentation"].pop("counts"), ["annotations[0].segmentation.counts"]),
    (lambda d: d["annotations"][1].update(segmentation=[[1, 2, 3, 4, 5, 6]]),
     ["annotations[1].segmentation", "polygons"]),
    (lambda d: d["annotations"][0].update(bbox="0 0 1 1"), ["annotations[0].bbox"]),
    (lambda d: d["categories"][0].pop("name"), ["categories[0].name", "missing key"]),
])
def test_image_bad_json_fields(tmp_path, image_data, edit, fields):
    path = write(tmp_path, edit_image(image_data, edit))
    expect_error(lambda: SacoImageDataset(path, IMAGE_ROOT), *fields)


def test_image_top_level_and_parse_errors(tmp_path, image_data):
    expect_error(lambda: SacoImageDataset(write(tmp_path, [1, 2]), IMAGE_ROOT), "<top level>", "expected object")
    text = json.dumps(image_data, indent=1)
    broken = text[: len(text) // 2]                    # truncated file
    message = expect_error(lambda: SacoImageDataset(write(tmp_path, broken), IMAGE_ROOT), "invalid JSON")
    assert re.search(r"bad\.json:\d+:\d+: invalid JSON", message), message
    message = expect_error(lambda: SacoImageDataset(write(tmp_path, '{"images": [1,]}'), IMAGE_ROOT))
    assert "bad.json:1:15: invalid JSON" in message, message
    expect_error(lambda: SacoImageDataset(tmp_path / "bad.json.missing"), "file not found")


def test_image_lazy_errors_name_file_and_field(tmp_path, image_data):
    k, a = first_positive(image_data)
    # corrupt RLE counts: caught when the pair is read
    bad = edit_image(image_data, lambda d: d["annotations"][a]["segmentation"].update(counts="3"))
    ds = SacoImageDataset(write(tmp_path, bad), IMAGE_ROOT)
    expect_error(lambda: ds[k], f"annotations[{a}].segmentation.counts", "corrupt")
    # missing image file
    bad = edit_image(image_data, lambda d: d["images"][k].update(file_name="train/nope.jpg"))
    ds = SacoImageDataset(write(tmp_path, bad), IMAGE_ROOT)
    expect_error(lambda: ds[k], f"images[{k}].file_name", "not found", "nope.jpg")
    # undecodable image file
    root = tmp_path / "images"
    root.mkdir()
    (root / "junk.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    bad = edit_image(image_data, lambda d: d["images"][k].update(file_name="junk.jpg"))
    ds = SacoImageDataset(write(tmp_path, bad))          # image_root defaults to tmp_path/images
    expect_error(lambda: ds[k], f"images[{k}].file_name", "cannot decode image", "junk.jpg")
    # image file whose size differs from height/width
    bad = edit_image(image_data, lambda d: d["images"][k].update(height=64))
    bad["annotations"] = [x for x in bad["annotations"] if x["image_id"] != bad["images"][k]["id"]]
    ds = SacoImageDataset(write(tmp_path, bad), IMAGE_ROOT)
    expect_error(lambda: ds[k], f"images[{k}].file_name", "96x96", "64x96")


def test_image_uncompressed_rle_and_skipped_annotations(tmp_path, image_data):
    k, a = first_positive(image_data)
    good = SacoImageDataset(IMAGE_JSON, IMAGE_ROOT)[k]
    # uncompressed (list) counts are read too
    mask = good.masks[0]
    flat = mask.T.ravel().astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(bounds).tolist()
    runs = [0] + runs if flat[0] else runs
    uncompressed = {"size": [96, 96], "counts": runs}
    bad = edit_image(image_data, lambda d: d["annotations"][a].update(segmentation=uncompressed))
    np.testing.assert_array_equal(SacoImageDataset(write(tmp_path, bad), IMAGE_ROOT)[k].masks, good.masks)
    assert encode_mask(mask)["counts"] == image_data["annotations"][a]["segmentation"]["counts"]
    # a null segmentation is skipped, counted and warned about once
    bad = edit_image(image_data, lambda d: d["annotations"][a].update(segmentation=None))
    with pytest.warns(UserWarning, match=r"bad\.json: skipped \d+ item"):
        ds = SacoImageDataset(write(tmp_path, bad), IMAGE_ROOT)
    assert ds.skipped and ds.skipped[0].startswith(f"annotations[{a}]")
    n_left = sum(1 for x in image_data["annotations"] if x["image_id"] == image_data["images"][k]["id"]) - 1
    if n_left == 0:   # the pair lost its only annotation: dropped, not turned into a negative
        assert len(ds) == len(image_data["images"]) - 1 and len(ds.skipped) == 2
    else:
        assert len(ds) == len(image_data["images"]) and ds[k].masks.shape[0] == n_left


# --- SA-Co video ------------------------------------------------------------------------------------

def test_video_fixture_reads(video_data):
    ds = SacoVideoDataset(VIDEO_JSON)
    assert len(ds) == len(video_data["video_np_pairs"]) and not ds.skipped
    s = ds[0]
    assert s.frames.shape == (16, 96, 96, 3) and s.masks.shape[1:] == (16, 96, 96)
    assert s.visible.shape == s.masks.shape[:2]


def nonnull_frame(data: dict, a: int = 0) -> int:
    return next(t for t, seg in enumerate(data["annotations"][a]["segmentations"]) if seg is not None)


@pytest.mark.parametrize("edit, fields", [
    (lambda d: d["videos"][0]["file_names"].pop(), ["videos[0].file_names", "15 frame names but length is 16"]),
    (lambda d: d["videos"][0].update(length=17), ["videos[0].file_names", "length is 17"]),
    (lambda d: d["videos"][0].update(length="16"), ["videos[0].length", "expected int"]),
    (lambda d: d["videos"][0]["file_names"].__setitem__(2, 7), ["videos[0].file_names[2]", "expected str"]),
    (lambda d: d["videos"][0].pop("height"), ["videos[0].height", "missing key"]),
    (lambda d: d["annotations"][0]["segmentations"].pop(), ["annotations[0].segmentations", "15 entries", "16"]),
    (lambda d: d["annotations"][0]["bboxes"].append(None), ["annotations[0].bboxes", "17 entries"]),
    (lambda d: d["annotations"][0].update(video_id=424242),
     ["annotations[0].video_id", "unknown video id 424242"]),
    (lambda d: d["annotations"][0].update(category_id=999), ["annotations[0].category_id", "unknown category id"]),
    (lambda d: d["video_np_pairs"][0].update(video_id=424242), ["video_np_pairs[0].video_id", "unknown video id"]),
    (lambda d: d["video_np_pairs"][0].pop("noun_phrase"), ["video_np_pairs[0].noun_phrase", "missing key"]),
    (lambda d: d["video_np_pairs"].append(dict(d["video_np_pairs"][0])), ["video_np_pairs[", "duplicate pair"]),
    (lambda d: d.pop("video_np_pairs"), ["video_np_pairs", "missing key"]),
    (lambda d: d["categories"][0].update(id="1"), ["categories[0].id", "expected int"]),
    (lambda d: d["annotations"][0]["segmentations"][nonnull_frame(d)].update(size=[48, 96]),
     ["annotations[0].segmentations[", "].size", "[48, 96] != image size [96, 96]"]),
    (lambda d: d["annotations"][0]["segmentations"].__setitem__(nonnull_frame(d), "abc"),
     ["annotations[0].segmentations[", "expected a COCO RLE dict"]),
])
def test_video_bad_json_fields(tmp_path, video_data, edit, fields):
    bad = copy.deepcopy(video_data)
    edit(bad)
    path = write(tmp_path, bad)
    expect_error(lambda: SacoVideoDataset(path, FRAME_ROOT), *fields)


def test_video_parse_and_lazy_errors(tmp_path, video_data):
    text = json.dumps(video_data, indent=1)
    message = expect_error(lambda: SacoVideoDataset(write(tmp_path, text[:-40]), FRAME_ROOT), "invalid JSON")
    assert re.search(r"bad\.json:\d+:\d+: invalid JSON", message), message
    # a frame file that does not exist
    bad = copy.deepcopy(video_data)
    bad["videos"][0]["file_names"][3] = "train/000000/missing.jpg"
    ds = SacoVideoDataset(write(tmp_path, bad), FRAME_ROOT)
    expect_error(lambda: ds[0], "videos[0].file_names[3]", "not found", "missing.jpg")
    # corrupt counts in one frame
    bad = copy.deepcopy(video_data)
    t = nonnull_frame(bad)
    bad["annotations"][0]["segmentations"][t]["counts"] = "0" + bad["annotations"][0]["segmentations"][t]["counts"]
    ds = SacoVideoDataset(write(tmp_path, bad), FRAME_ROOT)
    pair = next(i for i, p in enumerate(ds.pairs) if p["num_objects"])
    expect_error(lambda: ds[pair], f"annotations[0].segmentations[{t}].counts", "corrupt")


def test_video_unreferenced_and_all_null_annotations_are_counted(tmp_path, video_data):
    bad = copy.deepcopy(video_data)
    ann = bad["annotations"][0]
    bad["video_np_pairs"] = [p for p in bad["video_np_pairs"]
                             if (p["video_id"], p["category_id"]) != (ann["video_id"], ann["category_id"])]
    bad["annotations"][1]["segmentations"] = [None] * 16
    with pytest.warns(UserWarning, match=r"bad\.json: skipped \d+ annotation"):
        ds = SacoVideoDataset(write(tmp_path, bad), FRAME_ROOT)
    assert any(s.startswith("annotations[0]: no video_np_pairs entry") for s in ds.skipped)
    assert any(s.startswith("annotations[1]: null in every frame") for s in ds.skipped)
