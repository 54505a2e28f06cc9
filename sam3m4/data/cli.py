"""``sam3m4 data``: write the synthetic SA-Co dataset (the embedded default) and check dataset files.

    sam3m4 data synth --out data/synth --images 600 --videos 24 --seed 0
    sam3m4 data check data/synth/saco_image/val.json data/synth/saco_video/val.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sam3m4.errors import ConfigError, DataFormatError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = sub.add_parser("synth", help="generate the synthetic dataset in both SA-Co formats (JPEG + JSON)")
    synth.add_argument("--out", default="data/synth", help="output folder (default: data/synth)")
    synth.add_argument("--images", type=int, default=600, help="number of images (train + val, >= 1)")
    synth.add_argument("--videos", type=int, default=24, help="number of videos (train + val, >= 1)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (>= 0): same seed, same bytes")
    synth.add_argument("--image-size", type=int, default=224, help="square image side in pixels (32..2048)")
    synth.add_argument("--frames", type=int, default=16, help="frames per video (4..256; the video stages use 16)")
    synth.add_argument("--val-fraction", type=float, default=0.2, help="share of items in the val split, in [0, 1)")
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
                        image_size=args.image_size, n_frames=args.frames, val_fraction=args.val_fraction)
    print(json.dumps({k: v for k, v in manifest.items() if k in ("seed", "counts", "image_size")}, indent=None))
    print(f"wrote {args.out}")
    return 0


def is_video_json(path: Path) -> bool:
    """True for SA-Co video (YouTube-VIS style) JSON: it has a top-level ``videos`` or ``video_np_pairs`` key.

    Looks at the first 4 KB, then parses the file; what it cannot parse is a one-line DataFormatError
    (the readers validate the rest).
    """
    from sam3m4.data import _checks as C

    with open(path, "rb") as handle:
        head = handle.read(4096)
    if b'"videos"' in head or b'"video_np_pairs"' in head:
        return True
    data = C.load_json(path)
    C.check_kind(path, "<top level>", data, "dict")
    return "videos" in data or "video_np_pairs" in data


def run_check(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sam3m4.data import SacoImageDataset, SacoVideoDataset

    if args.root is not None and not args.root.is_dir():
        raise ConfigError(f"data check: --root: {args.root}: " + ("not a folder" if args.root.exists() else
                                                                   "no such folder"))
    for path in args.json:
        if not path.is_file():
            raise DataFormatError(f"{path}: " + ("is a folder, expected a JSON file" if path.is_dir() else
                                                 "no such file"))
        video = is_video_json(path)
        ds = SacoVideoDataset(path, args.root) if video else SacoImageDataset(path, args.root)
        present = 0
        for i in tqdm(range(len(ds)), desc=f"check {path.name}", unit="pair", leave=False, disable=None):
            present += bool(ds[i].present)
        kind = "video" if video else "image"
        print(f"{path}: {kind}, {len(ds)} pairs ({present} present, {len(ds) - present} absent), "
              f"{len(ds.skipped)} skipped")
    return 0
