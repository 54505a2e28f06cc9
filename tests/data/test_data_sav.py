"""SA-V reader: per-video masklet JSON (annotated at 6 fps) + JPEG frames extracted at 24 fps.

The SA-V folder is written here from a synthetic video (sam3m4.data.synth.render_video) in the release's
layout, with its float-typed sizes; broken copies check that errors name the file and the field.

    python -m pytest tests/data/test_data_sav.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam3m4.data.rle import encode_mask
from sam3m4.data.sav import SavDataset
from sam3m4.data.synth import render_video
from sam3m4.errors import DataFormatError

SIZE, FRAMES, EVERY = 48, 9, 4  # annotated frames 0, 4, 8


def _write_sav(root: Path, name: str = "sav_000001") -> tuple[Path, np.ndarray]:
    video = render_video(seed=0, index=1, image_size=SIZE, n_frames=FRAMES)
    (root / "JPEGImages_24fps" / name).mkdir(parents=True)
    for t, frame in enumerate(video.frames):
        Image.fromarray(frame).save(root / "JPEGImages_24fps" / name / f"{t:05d}.jpg", quality=95)
    ids = sorted(set(np.unique(video.labels).tolist()) - {0})
    masks = np.stack([video.labels == k for k in ids])  # (N, T, S, S)
    masklet = [[encode_mask(masks[n, t]) for n in range(len(ids))]
               for t in range(0, FRAMES, EVERY)]
    data = {"video_id": name, "video_duration": FRAMES / 24, "video_frame_count": float(FRAMES),
            "video_height": float(SIZE), "video_width": float(SIZE), "video_environment": "Indoor",
            "masklet": masklet, "masklet_id": list(range(len(ids))), "masklet_num": len(ids), "masklet_type": "manual"}
    path = root / f"{name}_manual.json"
    path.write_text(json.dumps(data))
    return path, masks[:, ::EVERY]


def test_sav_reads_annotated_frames_and_masklets(tmp_path):
    path, want = _write_sav(tmp_path)
    ds = SavDataset(tmp_path)
    assert len(ds) == 1 and ds.videos[0]["num_annotated"] == 3 and ds.videos[0]["height"] == SIZE
    s = ds[0]
    assert s.frames.shape == (3, SIZE, SIZE, 3) and s.frames.dtype == np.uint8
    assert s.file_names == ["sav_000001/00000.jpg", "sav_000001/00004.jpg", "sav_000001/00008.jpg"]
    assert np.array_equal(s.masks, want) and np.array_equal(s.visible, want.any(axis=(2, 3)))
    assert s.phrase == "" and s.present
    assert len(SavDataset(path)) == 1  # one file works as well as a folder


@pytest.mark.parametrize("edit, fields", [
    (lambda d: d.pop("masklet_id"), ["masklet_id", "missing key"]),
    (lambda d: d.update(video_height=47.5), ["video_height", "whole number"]),
    (lambda d: d["masklet"][1].pop(), ["masklet[1]", "RLEs"]),
    (lambda d: d["masklet"][2][0].update(size=[10, 10]), ["masklet[2][0]"]),
    (lambda d: d.update(video_frame_count=5.0), ["masklet", "video_frame_count"]),
    (lambda d: d.update(video_height=1e12), ["video_height", "<= 16384"]),        # before any allocation
    (lambda d: d.update(video_width=True), ["video_width", "expected number, got bool"]),
    (lambda d: d.update(video_width=-48.0), ["video_width", "positive whole number"]),
    (lambda d: d.update(video_height=float("nan")), ["NaN is not a finite number"]),  # json.dumps writes NaN
    (lambda d: d.update(video_frame_count=float("inf")), ["Infinity is not a finite number"]),
    (lambda d: d.update(video_id="../../elsewhere"), ["video_id", "relative path inside"]),
    (lambda d: d.update(video_id=""), ["video_id", "relative path inside"]),
    (lambda d: d.update(video_id=7), ["video_id", "expected str"]),
    (lambda d: d.update(masklet_id=[0, 0, *d["masklet_id"][2:]]), ["masklet_id[1]", "duplicate id 0"]),
    (lambda d: d.update(masklet={}), ["masklet", "expected list"]),
    (lambda d: d["masklet"].__setitem__(0, None), ["masklet[0]", "expected list, got null"]),
])
def test_sav_bad_json_names_file_and_field(tmp_path, edit, fields):
    path, _ = _write_sav(tmp_path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError) as info:
        SavDataset(tmp_path)
    message = str(info.value)
    assert "sav_000001_manual.json" in message and "\n" not in message
    assert all(f in message for f in fields), message


def test_sav_size_the_frames_do_not_have_is_refused_before_allocating(tmp_path):
    path, _ = _write_sav(tmp_path)
    data = json.loads(path.read_text())
    data.update(video_height=16384.0, video_width=16384.0)
    for frame in data["masklet"]:
        for rle in frame:
            rle["size"] = [16384, 16384]
    path.write_text(json.dumps(data))
    ds = SavDataset(tmp_path)
    with pytest.raises(DataFormatError, match=r"sav_000001_manual.json: masklet\[0\] \(frame 0\): .*48x48 .*16384x16384"):
        ds[0]


def test_sav_missing_frame_and_empty_folder(tmp_path):
    _write_sav(tmp_path)
    (tmp_path / "JPEGImages_24fps" / "sav_000001" / "00004.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"sav_000001_manual.json: masklet\[1\] \(frame 4\): image file not found"):
        SavDataset(tmp_path)[0]
    with pytest.raises(DataFormatError, match="no \\*_manual.json"):
        SavDataset(tmp_path / "JPEGImages_24fps")
