"""``sam3m4 data``: write the synthetic SA-Co dataset (the embedded default) and check dataset files.

    sam3m4 data synth --out data/synth --images 600 --videos 24 --seed 0
    sam3m4 data check data/synth/saco_image/val.json data/synth/saco_video/val.json
    sam3m4 data check gold_fg_food_merged_{a,b,c}_test.json --root data/gold/images   # a Gold triple

Files whose names differ only in a ``_a_`` / ``_b_`` / ``_c_`` part are one SA-Co/Gold subset (one file per
annotator): checked as the official evaluator reads them, for the same pairs, with each image read once.
A video file's frames are read once per video, not once per (video, phrase) pair.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from sam3m4.errors import ConfigError, DataFormatError
from sam3m4.flags import ranged
from sam3m4.paths import SYNTH_DATA


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = sub.add_parser("synth", help="generate the synthetic dataset in both SA-Co formats (JPEG + JSON)")
    synth.add_argument("--out", default=SYNTH_DATA, help=f"output folder (default: {SYNTH_DATA})")
    ranged(synth.add_argument("--images", type=int, default=600, help="number of images (train + val, >= 1)"), 1)
    ranged(synth.add_argument("--videos", type=int, default=24, help="number of videos (train + val, >= 1)"), 1)
    ranged(synth.add_argument("--seed", type=int, default=0, help="random seed (>= 0): same seed, same bytes"), 0)
    ranged(synth.add_argument("--image-size", type=int, default=224,
                              help="square image side in pixels (32..2048)"), 32, 2048)
    ranged(synth.add_argument("--video-size", type=int, default=0,
                              help="square video frame side (0 = --image-size)"), 32, 2048, zero_ok=True)
    ranged(synth.add_argument("--frames", type=int, default=16,
                              help="frames per video (4..256; the video stages use 16)"), 4, 256)
    ranged(synth.add_argument("--val-fraction", type=float, default=0.2,
                              help="share of items in the val split, in [0, 1)"), 0, 1,
           below_maximum=True)
    synth.set_defaults(func=run_synth)

    check = sub.add_parser("check", help="read every sample of SA-Co image/video JSON files and print counts")
    check.add_argument("json", nargs="+", type=Path, help="SA-Co image or video JSON files")
    check.add_argument("--root", type=Path, default=None, help="image/frame folder (default: next to the JSON)")
    check.set_defaults(func=run_check)


def run_synth(args: argparse.Namespace) -> int:
    from sam3m4.data.synth import generate

    if not args.out.strip():  # Path("") is the current folder
        raise ConfigError("data synth: --out: must not be empty")
    for option, value in (("--images", args.images), ("--videos", args.videos)):
        if value < 1:  # the library allows one kind to be 0; every later stage needs both
            raise ConfigError(f"data synth: {option}: must be >= 1, got {value}")
    manifest = generate(Path(args.out), n_images=args.images, n_videos=args.videos, seed=args.seed,
                        image_size=args.image_size, n_frames=args.frames, val_fraction=args.val_fraction,
                        video_size=args.video_size)
    print(json.dumps({k: v for k, v in manifest.items() if k in ("seed", "counts", "image_size")}, indent=None))
    print(f"wrote {args.out}")
    return 0


def is_video_json(path: Path) -> bool:
    """True for SA-Co video (YouTube-VIS style) JSON: it has a top-level ``videos`` or ``video_np_pairs`` key.

    Looks at the first 4 KB, then parses the file; what it cannot parse is a one-line DataFormatError
    (the readers validate the rest).
    """
    from sam3m4.data import _checks

    with open(path, "rb") as handle:
        head = handle.read(4096)
    if b'"videos"' in head or b'"video_np_pairs"' in head:
        return True
    data = _checks.load_json(path)
    _checks.check_kind(path, "<top level>", data, "dict")
    return "videos" in data or "video_np_pairs" in data


def annotator_groups(paths: list[Path]) -> list[list[Path]]:
    """Group the files of one SA-Co/Gold subset: names equal but for one ``_a_``/``_b_``/``_c_`` part (sorted a, b,
    c); every other file is a group of its own. Order of first appearance."""
    groups: dict[tuple, list[Path]] = {}
    for path in paths:
        parts = re.split(r"(?<=_)([abc])(?=[_.])", path.name)
        key = (path.parent, parts[0] + "?" + "".join(parts[2:])) if len(parts) == 3 else (path,)
        groups.setdefault(key, []).append(path)
    return [sorted(g, key=lambda p: p.name) for g in groups.values()]


def run_check(args: argparse.Namespace) -> int:
    if args.root is not None and not args.root.is_dir():
        raise ConfigError(f"data check: --root: {args.root}: " + ("not a folder" if args.root.exists() else
                                                                   "no such folder"))
    for path in args.json:
        if not path.is_file():
            raise DataFormatError(f"{path}: " + ("is a folder, expected a JSON file" if path.is_dir() else
                                                 "no such file"))
    for group in annotator_groups(args.json):
        if len(group) > 1:
            _check_gold(group, args.root)
        elif is_video_json(group[0]):
            _check_video(group[0], args.root)
        else:
            _check_image(group[0], args.root)
    return 0


def _check_image(path: Path, root: Path | None) -> None:
    from tqdm import tqdm

    from sam3m4.data import SacoImageDataset

    ds = SacoImageDataset(path, root)
    present = 0
    for i in tqdm(range(len(ds)), desc=f"check {path.name}", unit="pair", leave=False, disable=None):
        present += bool(ds[i].present)
    print(f"{path}: image, {len(ds)} pairs ({present} present, {len(ds) - present} absent), "
          f"{len(ds.skipped)} skipped")


def _check_video(path: Path, root: Path | None) -> None:
    """Every frame file read once per video, every RLE decoded once (a pair's masklets are its own)."""
    from tqdm import tqdm

    from sam3m4.data import SacoVideoDataset

    ds = SacoVideoDataset(path, root)
    frames = [(vid, t) for vid, video in ds.videos.items() for t in range(video["length"])]
    for vid, t in tqdm(frames, desc=f"check {path.name} frames", unit="frame", leave=False, disable=None):
        ds.frame(vid, t)
    for i in tqdm(range(len(ds)), desc=f"check {path.name} masks", unit="pair", leave=False, disable=None):
        ds.masks(i)
    present = sum(p["num_objects"] > 0 for p in ds.pairs)
    print(f"{path}: video, {len(ds.videos)} videos ({len(frames)} frames), {len(ds)} pairs ({present} present, "
          f"{len(ds) - present} absent), {len(ds.skipped)} skipped")


def _check_gold(paths: list[Path], root: Path | None) -> None:
    """One SA-Co/Gold subset, a file per annotator: each checked as SAM 3's CGF1Evaluator reads it (every RLE
    decoded), the same pairs in all, each image read once."""
    from tqdm import tqdm

    from sam3m4.data import SacoImageDataset
    from sam3m4.eval.saco_format import check_image_gt, check_same_pairs

    if any(is_video_json(p) for p in paths):
        raise DataFormatError(f"{paths[0]}: looks like one of an annotator group ({', '.join(p.name for p in paths)}) "
                              "but is SA-Co video JSON; pass video files on their own")
    gts = [check_image_gt(p) for p in paths]
    check_same_pairs(gts)
    ds = SacoImageDataset(paths[0], root)
    for i in tqdm(range(len(ds)), desc=f"check {paths[0].name} images", unit="pair", leave=False, disable=None):
        ds[i]
    scored = set.intersection(*(g.exhaustive for g in gts))
    print(f"{', '.join(str(p) for p in paths)}: SA-Co/Gold subset, {len(paths)} annotator files, {len(ds)} pairs "
          f"({len(scored)} exhaustive in every file: the pairs the official evaluator scores), images read once")
    for g in gts:
        print(f"  {g.path.name}: {len(g.positive)} present, {len(g.sizes) - len(g.positive)} absent")
