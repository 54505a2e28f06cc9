"""`sam3m4 data ...` on bad input: exit 2 with one line on stderr that names the file and the field.

Each case writes a broken file (an edit of the committed fixtures in fixtures/synth, or raw text) into
tmp_path and runs the CLI entry point ``sam3m4.cli.main``; nothing here may end in "internal error".

    python -m pytest tests/data/test_data_bad_inputs.py -q
"""

from __future__ import annotations

import copy
import json
import struct
import zlib
from pathlib import Path

import pytest

from sam3m4.cli import main

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "synth"
IMAGE_JSON, IMAGE_ROOT = FIX / "saco_image" / "train.json", FIX / "saco_image" / "images"
VIDEO_JSON, FRAME_ROOT = FIX / "saco_video" / "train.json", FIX / "saco_video" / "JPEGImages"
IMAGE = json.loads(IMAGE_JSON.read_text())
VIDEO = json.loads(VIDEO_JSON.read_text())


def refused(capsys, argv: list[str], *texts: str) -> str:
    """Run the CLI; expect exit 2 and one stderr line ``sam3m4: error: ...`` containing every text."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, err)
    assert lines[0].startswith("sam3m4: error: "), err
    for text in texts:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def edited(data: dict, edit) -> dict:
    bad = copy.deepcopy(data)
    edit(bad)
    return bad


def image_ann(data: dict, a: int) -> int:
    """Index in images[] of the pair that annotations[a] belongs to."""
    return next(i for i, im in enumerate(data["images"]) if im["id"] == data["annotations"][a]["image_id"])


def shown(data: dict, a: int = 0) -> int:
    """First frame where video annotation a is not null."""
    return next(t for t, seg in enumerate(data["annotations"][a]["segmentations"]) if seg is not None)


# --- files JSON cannot parse, or that are not a JSON object --------------------------------------------

@pytest.mark.parametrize("content, texts", [
    pytest.param(b'{"images": [{"id": 1,', ["bad.json:1:22", "invalid JSON"], id="truncated"),
    pytest.param(b'{"videos": [', ["bad.json:1:13", "invalid JSON"], id="truncated-video"),
    pytest.param(b"", ["bad.json", "empty file"], id="empty"),
    pytest.param(b" \n\t\n", ["bad.json", "empty file"], id="blank"),
    pytest.param(b'\xff\xfe{"images": []}', ["bad.json", "not UTF-8"], id="not-utf8"),
    pytest.param(b'{"images": "\xe9t\xe9"}', ["bad.json", "not UTF-8", "byte 12"], id="latin1-inside"),
    pytest.param(b"null", ["bad.json", "<top level>", "got null"], id="null"),
    pytest.param(b"[1, 2]", ["bad.json", "<top level>", "got list"], id="list"),
    pytest.param(b"42", ["bad.json", "<top level>", "got int"], id="number"),
    pytest.param(b'"videos"', ["bad.json", "<top level>", "got str"], id="string-looks-like-video"),
    pytest.param(b'{"images": [],\n "x": NaN}', ["bad.json:2:7", "NaN is not a finite number"], id="nan"),
    pytest.param(b'{"images": [], "x": -Infinity}', ["bad.json:1:21", "-Infinity"], id="infinity"),
    pytest.param(b'{"images": [], "x": 1e400}', ["bad.json:1:21", "1e400"], id="float-overflow"),
    pytest.param(b'{"images": [], "x": ' + b"9" * 5000 + b"}", ["bad.json", "invalid JSON"], id="int-5000-digits"),
    pytest.param(b"[" * 100_000, ["bad.json", "invalid JSON"], id="nested-too-deep"),
    pytest.param(b"\xef\xbb\xbf{}", ["bad.json", "invalid JSON"], id="utf8-bom"),
    pytest.param(b'{"annotations": []}', ["bad.json", "images", "missing key"], id="no-images-no-videos"),
])
def test_check_unparsable_json(tmp_path, capsys, content, texts):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    refused(capsys, ["data", "check", str(path)], *texts)


def test_check_paths_on_the_command_line(tmp_path, capsys):
    refused(capsys, ["data", "check", str(tmp_path / "nope.json")], "nope.json", "no such file")
    refused(capsys, ["data", "check", str(tmp_path)], str(tmp_path), "is a folder")
    refused(capsys, ["data", "check", str(IMAGE_JSON), "--root", str(tmp_path / "gone")], "--root", "gone",
            "no such folder")
    refused(capsys, ["data", "check", str(IMAGE_JSON), "--root", str(IMAGE_JSON)], "--root", "not a folder")


def test_check_accepts_the_fixtures(capsys):
    assert main(["data", "check", str(IMAGE_JSON), str(VIDEO_JSON)]) == 0
    out = capsys.readouterr().out
    assert f"{IMAGE_JSON}: image, {len(IMAGE['images'])} pairs" in out
    frames = sum(v["length"] for v in VIDEO["videos"])
    assert (f"{VIDEO_JSON}: video, {len(VIDEO['videos'])} videos ({frames} frames), {len(VIDEO['video_np_pairs'])} "
            "pairs") in out


# --- SA-Co image JSON ----------------------------------------------------------------------------------

A = 0                       # an annotation of the fixture
K = image_ann(IMAGE, A)     # ... and its pair

IMAGE_CASES = [
    # sizes: checked before anything is allocated
    ("height-1e12", lambda d: d["images"][K].update(height=10**12), [f"images[{K}].height", "<= 16384"]),
    ("width-0", lambda d: d["images"][0].update(width=0), ["images[0].width", "> 0"]),
    ("width-negative", lambda d: d["images"][0].update(width=-96), ["images[0].width", "> 0"]),
    ("height-bool", lambda d: d["images"][0].update(height=True), ["images[0].height", "expected int, got bool"]),
    ("height-float", lambda d: d["images"][0].update(height=96.0), ["images[0].height", "expected int, got float"]),
    ("height-str", lambda d: d["images"][0].update(height="96"), ["images[0].height", "expected int, got str"]),
    ("width-missing", lambda d: d["images"][0].pop("width"), ["images[0].width", "missing key"]),
    # paths
    ("file-name-dotdot", lambda d: d["images"][1].update(file_name="../../etc/passwd"),
     ["images[1].file_name", "relative path inside"]),
    ("file-name-dotdot-inside", lambda d: d["images"][1].update(file_name="train/../../x.jpg"),
     ["images[1].file_name", "relative path inside"]),
    ("file-name-absolute", lambda d: d["images"][1].update(file_name="/etc/passwd"), ["images[1].file_name"]),
    ("file-name-windows", lambda d: d["images"][1].update(file_name="C:\\x.jpg"), ["images[1].file_name"]),
    ("file-name-backslash-dotdot", lambda d: d["images"][1].update(file_name="..\\x.jpg"), ["images[1].file_name"]),
    ("file-name-empty", lambda d: d["images"][1].update(file_name=""), ["images[1].file_name"]),
    ("file-name-nul", lambda d: d["images"][1].update(file_name="a\0.jpg"), ["images[1].file_name"]),
    ("file-name-int", lambda d: d["images"][1].update(file_name=7), ["images[1].file_name", "expected str"]),
    # phrases
    ("text-input-empty", lambda d: d["images"][2].update(text_input=""), ["images[2].text_input", "empty"]),
    ("text-input-blank", lambda d: d["images"][2].update(text_input=" \t"), ["images[2].text_input", "empty"]),
    ("text-input-list", lambda d: d["images"][2].update(text_input=["cat"]), ["images[2].text_input", "got list"]),
    ("images-dict", lambda d: d.update(images={}), ["images", "expected list, got dict"]),
    ("image-entry-str", lambda d: d["images"].__setitem__(0, "x"), ["images[0]", "expected object, got str"]),
    # annotations
    ("ann-id-duplicate", lambda d: d["annotations"][1].update(id=d["annotations"][0]["id"]),
     ["annotations[1].id", "duplicate id", "annotations[0].id"]),
    ("ann-id-str", lambda d: d["annotations"][1].update(id="2"), ["annotations[1].id", "expected int"]),
    ("area-negative", lambda d: d["annotations"][A].update(area=-4), [f"annotations[{A}].area", "got -4"]),
    ("area-too-big", lambda d: d["annotations"][A].update(area=96 * 96 + 1), [f"annotations[{A}].area", "9216"]),
    ("area-str", lambda d: d["annotations"][A].update(area="10"), [f"annotations[{A}].area", "expected number"]),
    ("area-bool", lambda d: d["annotations"][A].update(area=True), [f"annotations[{A}].area", "got bool"]),
    ("bbox-zero-width", lambda d: d["annotations"][A]["bbox"].__setitem__(2, 0), [f"annotations[{A}].bbox", "> 0"]),
    ("bbox-negative-height", lambda d: d["annotations"][A]["bbox"].__setitem__(3, -5),
     [f"annotations[{A}].bbox", "> 0"]),
    ("bbox-outside", lambda d: d["annotations"][A].update(bbox=[90, 0, 20, 10]), [f"annotations[{A}].bbox", "outside"]),
    ("bbox-negative-x", lambda d: d["annotations"][A].update(bbox=[-9, 0, 5, 5]), [f"annotations[{A}].bbox", "outside"]),
    ("bbox-three", lambda d: d["annotations"][A].update(bbox=[1, 2, 3]), [f"annotations[{A}].bbox", "[x, y, w, h]"]),
    ("bbox-bool", lambda d: d["annotations"][A].update(bbox=[0, 0, True, 4]), [f"annotations[{A}].bbox"]),
    ("bbox-dict", lambda d: d["annotations"][A].update(bbox={"x": 1}), [f"annotations[{A}].bbox"]),
    ("image-id-unknown", lambda d: d["annotations"][A].update(image_id=99999), [f"annotations[{A}].image_id", "99999"]),
    ("image-id-str", lambda d: d["annotations"][A].update(image_id="1"), [f"annotations[{A}].image_id", "expected int"]),
    ("category-id-unknown", lambda d: d["annotations"][A].update(category_id=999),
     [f"annotations[{A}].category_id", "unknown category id 999"]),
    ("category-id-float", lambda d: d["annotations"][A].update(category_id=1.5), [f"annotations[{A}].category_id"]),
    ("iscrowd-2", lambda d: d["annotations"][A].update(iscrowd=2), [f"annotations[{A}].iscrowd", "0 or 1"]),
    ("segmentation-missing", lambda d: d["annotations"][A].pop("segmentation"),
     [f"annotations[{A}].segmentation", "missing key"]),
    ("rle-size-mismatch", lambda d: d["annotations"][A]["segmentation"].update(size=[96, 95]),
     [f"annotations[{A}].segmentation.size", "!= image size [96, 96]"]),
    ("rle-size-bools", lambda d: d["annotations"][A]["segmentation"].update(size=[True, 96]),
     [f"annotations[{A}].segmentation.size", "ints"]),
    ("rle-counts-dict", lambda d: d["annotations"][A]["segmentation"].update(counts={}),
     [f"annotations[{A}].segmentation.counts", "got dict"]),
    ("rle-counts-floats", lambda d: d["annotations"][A]["segmentation"].update(counts=[9000.0, 216.0]),
     [f"annotations[{A}].segmentation.counts", "list of ints"]),
    ("polygon", lambda d: d["annotations"][A].update(segmentation=[[1, 2, 3, 4, 5, 6]]),
     [f"annotations[{A}].segmentation", "polygons"]),
    # categories
    ("category-name-empty", lambda d: d["categories"][0].update(name=""), ["categories[0].name", "empty"]),
    ("category-id-duplicate", lambda d: d["categories"][1].update(id=d["categories"][0]["id"]),
     ["categories[1].id", "duplicate id"]),
    # read lazily, when the pair is checked
    ("rle-counts-short", lambda d: d["annotations"][A]["segmentation"].update(counts="3"),
     [f"annotations[{A}].segmentation.counts", "corrupt"]),
    ("rle-runs-do-not-sum", lambda d: d["annotations"][A]["segmentation"].update(counts=[9000, 215]),
     [f"annotations[{A}].segmentation.counts", "do not sum to H*W = 9216"]),
    ("rle-runs-negative", lambda d: d["annotations"][A]["segmentation"].update(counts=[9300, -84]),
     [f"annotations[{A}].segmentation.counts", "negative"]),
    ("image-file-missing", lambda d: d["images"][K].update(file_name="train/nope.jpg"),
     [f"images[{K}].file_name", "not found", "nope.jpg"]),
]


@pytest.mark.parametrize("edit, texts", [pytest.param(e, t, id=i) for i, e, t in IMAGE_CASES])
def test_check_bad_image_json(tmp_path, capsys, edit, texts):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(edited(IMAGE, edit), indent=1))
    refused(capsys, ["data", "check", str(path), "--root", str(IMAGE_ROOT)], "bad.json", *texts)


def png_header(width: int, height: int) -> bytes:
    """A PNG file with a header and no pixel data: PIL opens it (and reads its size) but cannot decode it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height, texts", [
    pytest.param(16384, 11000, ["too large to decode"], id="decompression-bomb"),
    pytest.param(5000, 4000, ["is 4000x5000 (HxW)", "says 96x96"], id="header-size-mismatch"),
])
def test_check_image_file_size_from_its_header(tmp_path, capsys, width, height, texts):
    """The size in an image file's header is checked before its pixels are decoded (this one has none)."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "big.png").write_bytes(png_header(width, height))
    pair = {**IMAGE["images"][0], "file_name": "big.png"}
    if width == 16384:
        pair.update(height=height, width=width)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"images": [pair], "annotations": []}))
    refused(capsys, ["data", "check", str(path)], "bad.json", "images[0].file_name", "big.png", *texts)


# --- SA-Co video JSON ----------------------------------------------------------------------------------

T = shown(VIDEO)   # a frame where annotations[0] is not null

VIDEO_CASES = [
    ("height-1e12", lambda d: d["videos"][0].update(height=10**12), ["videos[0].height", "<= 16384"]),
    ("width-1e12", lambda d: d["videos"][0].update(width=10**12), ["videos[0].width", "<= 16384"]),
    ("width-negative", lambda d: d["videos"][0].update(width=-1), ["videos[0].width", "> 0"]),
    ("length-0", lambda d: d["videos"][0].update(length=0), ["videos[0].length", "> 0"]),
    ("length-mismatch", lambda d: d["videos"][0].update(length=10**9), ["videos[0].file_names", "length is"]),
    ("length-float", lambda d: d["videos"][0].update(length=16.0), ["videos[0].length", "got float"]),
    ("file-names-dict", lambda d: d["videos"][0].update(file_names={}), ["videos[0].file_names", "expected list"]),
    ("file-name-dotdot", lambda d: d["videos"][0]["file_names"].__setitem__(2, "../../x.jpg"),
     ["videos[0].file_names[2]", "relative path inside"]),
    ("file-name-absolute", lambda d: d["videos"][0]["file_names"].__setitem__(0, "/tmp/x.jpg"),
     ["videos[0].file_names[0]"]),
    ("file-name-null", lambda d: d["videos"][0]["file_names"].__setitem__(1, None),
     ["videos[0].file_names[1]", "got null"]),
    ("video-id-duplicate", lambda d: d["videos"].append(copy.deepcopy(d["videos"][0])), ["videos[1].id", "duplicate"]),
    ("videos-missing", lambda d: d.pop("videos"), ["videos", "missing key"]),
    ("noun-phrase-empty", lambda d: d["video_np_pairs"][0].update(noun_phrase=""),
     ["video_np_pairs[0].noun_phrase", "empty"]),
    ("noun-phrase-blank", lambda d: d["video_np_pairs"][0].update(noun_phrase="  "),
     ["video_np_pairs[0].noun_phrase", "empty"]),
    ("noun-phrase-int", lambda d: d["video_np_pairs"][0].update(noun_phrase=3),
     ["video_np_pairs[0].noun_phrase", "expected str"]),
    ("pair-category-unknown", lambda d: d["video_np_pairs"][0].update(category_id=999),
     ["video_np_pairs[0].category_id", "unknown category id"]),
    ("category-name-empty", lambda d: d["categories"][0].update(name=""), ["categories[0].name", "empty"]),
    ("category-id-duplicate", lambda d: d["categories"][1].update(id=d["categories"][0]["id"]),
     ["categories[1].id", "duplicate"]),
    ("ann-id-duplicate", lambda d: d["annotations"][1].update(id=d["annotations"][0]["id"]),
     ["annotations[1].id", "duplicate id"]),
    ("ann-video-unknown", lambda d: d["annotations"][0].update(video_id=4242), ["annotations[0].video_id", "4242"]),
    ("ann-category-unknown", lambda d: d["annotations"][0].update(category_id=999),
     ["annotations[0].category_id", "unknown category id"]),
    ("ann-video-id-str", lambda d: d["annotations"][0].update(video_id="1"),
     ["annotations[0].video_id", "expected int"]),
    ("segmentations-short", lambda d: d["annotations"][0]["segmentations"].pop(),
     ["annotations[0].segmentations", "15 entries", "length 16"]),
    ("segmentations-dict", lambda d: d["annotations"][0].update(segmentations={}),
     ["annotations[0].segmentations", "expected list"]),
    ("areas-long", lambda d: d["annotations"][0]["areas"].append(1), ["annotations[0].areas", "17 entries"]),
    ("area-negative", lambda d: d["annotations"][0]["areas"].__setitem__(T, -1), [f"annotations[0].areas[{T}]"]),
    ("area-str", lambda d: d["annotations"][0]["areas"].__setitem__(T, "1"),
     [f"annotations[0].areas[{T}]", "expected number"]),
    ("bbox-zero-height", lambda d: d["annotations"][0]["bboxes"][T].__setitem__(3, 0),
     [f"annotations[0].bboxes[{T}]", "> 0"]),
    ("bbox-negative-width", lambda d: d["annotations"][0]["bboxes"][T].__setitem__(2, -3),
     [f"annotations[0].bboxes[{T}]", "> 0"]),
    ("bbox-str", lambda d: d["annotations"][0]["bboxes"].__setitem__(T, "0 0 1 1"), [f"annotations[0].bboxes[{T}]"]),
    ("iscrowd-bool", lambda d: d["annotations"][0].update(iscrowd=False), ["annotations[0].iscrowd", "got bool"]),
    ("rle-size-mismatch", lambda d: d["annotations"][0]["segmentations"][T].update(size=[96, 48]),
     [f"annotations[0].segmentations[{T}].size", "!= image size"]),
    ("rle-list", lambda d: d["annotations"][0]["segmentations"].__setitem__(T, [1, 2]),
     [f"annotations[0].segmentations[{T}]", "polygons"]),
    # read lazily
    ("rle-runs-do-not-sum", lambda d: d["annotations"][0]["segmentations"][T].update(counts=[9000, 200]),
     [f"annotations[0].segmentations[{T}].counts", "do not sum"]),
    ("frame-missing", lambda d: d["videos"][0]["file_names"].__setitem__(3, "train/000000/gone.jpg"),
     ["videos[0].file_names[3]", "not found", "gone.jpg"]),
]


@pytest.mark.parametrize("edit, texts", [pytest.param(e, t, id=i) for i, e, t in VIDEO_CASES])
def test_check_bad_video_json(tmp_path, capsys, edit, texts):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(edited(VIDEO, edit), indent=1))
    refused(capsys, ["data", "check", str(path), "--root", str(FRAME_ROOT)], "bad.json", *texts)


def test_huge_video_is_refused_before_allocating(tmp_path, capsys):
    """The tester's 10^12-high video: refused on load, not a MemoryError after a 9.55 PiB np.zeros."""
    path = tmp_path / "bad.json"
    bad = edited(VIDEO, lambda d: d["videos"][0].update(height=10**12))
    for ann in bad["annotations"]:        # a consistent file: the RLE headers say the same size
        for seg in ann["segmentations"]:
            if seg is not None:
                seg["size"] = [10**12, 96]
    path.write_text(json.dumps(bad))
    refused(capsys, ["data", "check", str(path), "--root", str(FRAME_ROOT)], "bad.json", "videos[0].height",
            "<= 16384")


def test_frame_smaller_than_the_json_says_is_refused_before_allocating(tmp_path, capsys):
    """A size under the limit that the frames do not have: the first frame read says so."""
    path = tmp_path / "bad.json"
    bad = edited(VIDEO, lambda d: d["videos"][0].update(height=16384, width=16384))
    bad["annotations"] = []
    path.write_text(json.dumps(bad))
    refused(capsys, ["data", "check", str(path), "--root", str(FRAME_ROOT)], "bad.json", "videos[0].file_names[0]",
            "96x96", "16384x16384")


# --- sam3m4 data synth ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args, texts", [
    pytest.param(["--images", "0", "--videos", "0"], ["--images 0: must be >= 1"], id="no-items"),
    pytest.param(["--images", "-3"], ["--images -3: must be >= 1"], id="images-negative"),
    pytest.param(["--videos", "0"], ["--videos 0: must be >= 1"], id="videos-0"),
    pytest.param(["--seed", "-1"], ["--seed", "-1"], id="seed-negative"),
    pytest.param(["--image-size", "16"], ["--image-size", "[32, 2048]"], id="image-size-small"),
    pytest.param(["--image-size", "100000"], ["--image-size", "100000"], id="image-size-huge"),
    pytest.param(["--frames", "2"], ["--frames", "[4, 256]"], id="frames-2"),
    pytest.param(["--frames", "1000000"], ["--frames"], id="frames-huge"),
    pytest.param(["--val-fraction", "1"], ["--val-fraction", "[0, 1)"], id="val-fraction-1"),
    pytest.param(["--val-fraction", "-0.1"], ["--val-fraction"], id="val-fraction-negative"),
    pytest.param(["--val-fraction", "nan"], ["--val-fraction", "nan"], id="val-fraction-nan"),
])
def test_synth_bad_arguments(tmp_path, capsys, args, texts):
    out = tmp_path / "synth"
    refused(capsys, ["data", "synth", "--out", str(out), "--images", "2", "--videos", "1", *args], *texts)
    assert not out.exists()


def test_synth_refuses_an_out_it_does_not_own(tmp_path, capsys):
    small = ["--images", "1", "--videos", "1", "--image-size", "32", "--frames", "4"]
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    refused(capsys, ["data", "synth", "--out", str(a_file), *small], "--out", "a_file", "is a file")
    refused(capsys, ["data", "synth", "--out", str(a_file / "sub"), *small], "--out", "a_file", "is a file")
    refused(capsys, ["data", "synth", "--out", " ", *small], "--out", "empty")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"someone": "else"}')
    refused(capsys, ["data", "synth", "--out", str(foreign), *small], "manifest.json", "not a synth manifest")
    assert a_file.read_text() == "keep me" and (foreign / "manifest.json").read_text() == '{"someone": "else"}'
    assert sorted(p.name for p in foreign.iterdir()) == ["manifest.json"]


@pytest.mark.parametrize("option", ["--images", "--seed", "--val-fraction"])
def test_synth_non_numbers_exit_2_naming_the_option(tmp_path, capsys, option):
    """argparse's own type check: usage line + one error line naming the option, exit 2."""
    with pytest.raises(SystemExit) as info:
        main(["data", "synth", "--out", str(tmp_path / "s"), option, "ten"])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert option in last and "ten" in last, last
