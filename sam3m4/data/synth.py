"""Synthetic SA-Co data: coloured shapes on cluttered backgrounds, written in both real formats.

The embedded default data set that every later stage trains a tiny SAM 3 on in minutes of CPU. Concepts
are colour x shape phrases ("red circle", "blue triangle", 16 of them) and shape-only phrases ("star",
covering every colour). Images hold 2-4 instances inside the frame, small (<= 1 % of the image; 15 % of
them) or 3-22 % of it, that overlap (never with a shape of the same colour) but each keep >= 70 % of their
area visible, so every shape stays identifiable from pixels (a mask is the visible part).
Each image gives positive pairs (concepts present) and negative pairs (absent ones, including hard
negatives: a present shape in an absent colour). Videos hold 2-5 objects on smooth trajectories that
enter, leave and occlude each other; a masklet is null in frames where its object is invisible.

Output is byte-identical for a seed (numpy PCG64 seeded per item from SeedSequence([seed, kind, index]);
JPEG quality 90, 4:4:4). Layout under ``out_dir``::

    saco_image/images/{train,val}/<index:06d>.jpg     saco_image/{train,val}.json   (SA-Co image JSON)
    saco_video/JPEGImages/{train,val}/<index:06d>/<frame:05d>.jpg
                                                      saco_video/{train,val}.json   (SA-Co video JSON)
    manifest.json                                     (seed, sizes, concepts, per-split counts)

Run: ``python -c "from sam3m4.data import generate; generate('data/synth', 600, 24, seed=0)"``.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sam3m4.data._render import (COLOURS, SHAPES, Shape, background, compose, concept_rgb, label_map,
                                  radius_for_area)
from sam3m4.data.rle import encode_mask
from sam3m4.errors import ConfigError, DataFormatError
from sam3m4.fileio import atomic_path, atomic_write_json
from sam3m4.progress import progress_bar
from sam3m4.schemas import load_file
from sam3m4.schemas.pipeline import SynthManifest

__all__ = ["generate", "render_image", "render_video", "CONCEPTS", "SynthImage", "SynthVideo"]

GENERATOR = "sam3m4.data.synth"
VERSION = 2
MIN_VISIBLE_PX = 20             # an image instance with fewer pixels is not drawn
MIN_VISIBLE_FRACTION = 0.7      # an image instance keeps at least this share of its area visible
PLACE_TRIES = 20                # positions tried per image instance before it is left out
MIN_INSTANCES, MAX_INSTANCES = 2, 4
SMALL_FRACTION = (0.004, 0.01)  # area range of small instances (fraction of the image)
LARGE_FRACTION = (0.03, 0.22)   # log-uniform area range of the other instances
P_SMALL = 0.15
JPEG = {"quality": 90, "subsampling": 0}
MAX_IMAGE_SIZE, MAX_FRAMES = 2048, 256  # a video is drawn in memory: <= 256 x 2048^2 x 4 B (RGB + labels)
_IMAGE, _VIDEO = 0, 1           # SeedSequence kinds

# id, name, colour (None for shape-only), shape: colour-major colour x shape phrases, then shapes
CONCEPTS: list[dict] = (
    [{"name": f"{c} {s}", "colour": c, "shape": s} for c in COLOURS for s in SHAPES]
    + [{"name": s, "colour": None, "shape": s} for s in SHAPES])
for _i, _c in enumerate(CONCEPTS):
    _c["id"] = _i + 1
_CONCEPT_ID = {c["name"]: c["id"] for c in CONCEPTS}


@dataclass
class SynthImage:
    rgb: np.ndarray           # (S, S, 3) uint8 RGB as drawn (before JPEG)
    labels: np.ndarray        # (S, S) uint8: 0 background, k + 1 where shapes[k] is visible
    shapes: list[Shape]


@dataclass
class SynthVideo:
    frames: np.ndarray        # (T, S, S, 3) uint8 RGB as drawn (before JPEG)
    labels: np.ndarray        # (T, S, S) uint8: 0 background, k + 1 where object k is visible
    objects: list[Shape]      # per object its pose in frame 0 (shape, colour and rgb are fixed)


def _rng(seed: int, kind: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, kind, index])))


def _matches(phrase: str, s: Shape) -> bool:
    return phrase in (s.phrase, s.shape)


def _choose_pairs(rng: np.random.Generator, shapes: list[Shape], max_hard: int, max_other: int) -> list[str]:
    """Phrases to ask: every present concept, then hard negatives (present shape, absent colour) and
    other absent concepts. Returns phrases in CONCEPTS order for positives, then negatives."""
    names = [c["name"] for c in CONCEPTS]
    present = [n for n in names if any(_matches(n, s) for s in shapes)]
    shapes_seen = {s.shape for s in shapes}
    hard = [n for n in names if n not in present and " " in n and n.split(" ")[1] in shapes_seen]
    hard = [hard[i] for i in sorted(rng.choice(len(hard), min(max_hard, len(hard)), replace=False))]
    other = [n for n in names if n not in present and n not in hard]
    other = [other[i] for i in sorted(rng.choice(len(other), min(max_other, len(other)), replace=False))]
    return present + hard + other


def _dilate(mask: np.ndarray, px: int = 2) -> np.ndarray:
    """(S, S) bool mask grown by ``px`` pixels (square neighbourhood)."""
    out = mask.copy()
    for dy in range(-px, px + 1):
        for dx in range(-px, px + 1):
            out |= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out


def render_image(seed: int, index: int, image_size: int) -> SynthImage:
    """Draw image ``index`` of the data set generated with ``seed`` (what :func:`generate` writes).

    Instances lie inside the frame and may overlap, but each keeps at least ``MIN_VISIBLE_FRACTION`` of
    its area visible, so its shape stays identifiable from pixels (a position that would hide more of a
    new or an earlier instance is re-drawn, up to ``PLACE_TRIES`` times, else the instance is left out).
    """
    rng, size = _rng(seed, _IMAGE, index), image_size
    bg = background(rng, size)
    shapes: list[Shape] = []
    areas: list[int] = []          # full (unoccluded) area of each placed shape, pixels
    fulls: list[np.ndarray] = []   # (S, S) bool full mask of each placed shape
    for _ in range(int(rng.integers(MIN_INSTANCES, MAX_INSTANCES + 1))):
        shape, colour = SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))]
        if rng.random() < P_SMALL:
            frac = rng.uniform(*SMALL_FRACTION)
        else:
            frac = math.exp(rng.uniform(math.log(LARGE_FRACTION[0]), math.log(LARGE_FRACTION[1])))
        r = radius_for_area(shape, frac * size * size)
        rgb, angle = concept_rgb(rng, colour), float(rng.uniform(0, 2 * math.pi))
        for _try in range(PLACE_TRIES):
            cx, cy = rng.uniform(r + 1, size - r - 1, size=2) if size > 2 * r + 2 else (size / 2, size / 2)
            cand = Shape(shape, colour, rgb, float(cx), float(cy), r, angle)
            full_mask = label_map([cand], size) > 0  # (S, S)
            full = int(full_mask.sum())
            labels = label_map(shapes + [cand], size)
            visible = np.bincount(labels.ravel(), minlength=len(shapes) + 2)[1:]
            need = MIN_VISIBLE_FRACTION * np.array(areas + [full])
            grown = _dilate(full_mask)  # same-colour shapes may not touch: their boundary would be invisible
            touches = any(o.colour == colour and (f & grown).any() for o, f in zip(shapes, fulls))
            if full >= MIN_VISIBLE_PX and (visible >= need).all() and not touches:
                shapes.append(cand)
                areas.append(full)
                fulls.append(full_mask)
                break
    labels = label_map(shapes, size)
    return SynthImage(compose(bg, shapes, labels, rng), labels, shapes)


def _crossing(rng, size, r, n_frames, t_a, t_b) -> np.ndarray:
    """(T, 2) centres moving in a straight line from outside one side (at time t_a) to outside another
    (at time t_b); at t <= t_a and t >= t_b the shape is entirely outside the frame."""
    m = r + 2.0
    sides = rng.choice(4, size=2, replace=False)
    ends = []
    for side in sides:
        u = rng.uniform(0.15 * size, 0.85 * size)
        ends.append({0: (-m, u), 1: (size + m, u), 2: (u, -m), 3: (u, size + m)}[int(side)])
    s, e = np.array(ends[0]), np.array(ends[1])
    t = np.arange(n_frames, dtype=np.float64)[:, None]
    return s + (e - s) * (t - t_a) / (t_b - t_a)


def _wander(rng, size, n_frames) -> np.ndarray:
    """(T, 2) centres drifting slowly with a sinusoidal wobble (mostly inside the frame)."""
    c = rng.uniform(0.2 * size, 0.8 * size, size=2)
    v = rng.normal(0, 0.012 * size, size=2)
    amp = rng.uniform(0, 0.08 * size, size=2)
    omega, phase = rng.uniform(0.1, 0.4, size=2), rng.uniform(0, 2 * math.pi, size=2)
    t = np.arange(n_frames, dtype=np.float64)[:, None]
    return c + v * (t - n_frames / 2) + amp * np.sin(omega * t + phase)


def render_video(seed: int, index: int, image_size: int, n_frames: int) -> SynthVideo:
    """Draw video ``index`` of the data set generated with ``seed``. Object 0 of the draw list enters
    after frame 0 and object 1 leaves before the last frame (their z-order is then shuffled)."""
    rng, size, n = _rng(seed, _VIDEO, index), image_size, n_frames
    bg = background(rng, size)
    objects, paths, spins = [], [], []
    for k in range(int(rng.integers(2, 6))):
        shape, colour = SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))]
        frac = math.exp(rng.uniform(math.log(0.004), math.log(0.08)))
        r = radius_for_area(shape, frac * size * size)
        if k == 0:      # enters
            path = _crossing(rng, size, r, n, rng.uniform(1, max(1.5, n / 3)), rng.uniform(n - 1, 1.6 * n))
        elif k == 1:    # leaves
            path = _crossing(rng, size, r, n, rng.uniform(-0.6 * n, 0),
                             rng.uniform(min(2 * n / 3, n - 2), n - 2))  # n < 6 frames: 2n/3 > n - 2
        elif rng.random() < 0.5:
            t_a = rng.uniform(-0.5 * n, 0.5 * n)
            path = _crossing(rng, size, r, n, t_a, t_a + rng.uniform(0.6 * n, 1.5 * n))
        else:
            path = _wander(rng, size, n)
        objects.append(Shape(shape, colour, concept_rgb(rng, colour), 0.0, 0.0, r,
                             float(rng.uniform(0, 2 * math.pi))))
        paths.append(path)
        spins.append(float(rng.uniform(-0.08, 0.08)))
    order = rng.permutation(len(objects))
    objects, paths, spins = [objects[i] for i in order], [paths[i] for i in order], [spins[i] for i in order]

    def pose(t: int, keep: list[int]) -> list[Shape]:
        return [Shape(objects[k].shape, objects[k].colour, objects[k].rgb, float(paths[k][t, 0]),
                      float(paths[k][t, 1]), objects[k].radius, objects[k].angle + spins[k] * t) for k in keep]

    everyone = list(range(len(objects)))
    labels = np.stack([label_map(pose(t, everyone), size) for t in range(n)])  # (T, S, S)
    seen = np.bincount(labels.ravel(), minlength=len(objects) + 1)[1:]
    keep = [k for k in everyone if seen[k] > 0]          # objects never visible are dropped
    if len(keep) != len(objects):
        labels = np.stack([label_map(pose(t, keep), size) for t in range(n)])
    frames = np.stack([compose(bg, pose(t, keep), labels[t], rng) for t in range(n)])  # (T, S, S, 3)
    return SynthVideo(frames, labels, pose(0, keep))


# --- writing -----------------------------------------------------------------------------------------

def _annotation(mask: np.ndarray) -> tuple[dict, list[int], int]:
    """RLE, xywh bbox (pixel edges) and area of a non-empty (H, W) bool mask."""
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    bbox = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
    return encode_mask(mask), bbox, int(mask.sum())


def _write_json(path: Path, obj: dict) -> None:
    """Write obj atomically (a temporary file renamed over path)."""
    atomic_write_json(path, obj, newline=True, separators=(",", ":"))


def _split_count(n: int, val_fraction: float) -> int:
    """Number of val items: round(n * val_fraction), at least 1 when n >= 2 and val_fraction > 0."""
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    return min(n_val, max(n - 1, 0))


def _check_args(n_images, n_videos, seed, image_size, n_frames, val_fraction, video_size=0) -> None:
    """Refuse values the generator cannot use; the message names the parameter (and its --option)."""
    def whole(value, low: int, high: int | None = None) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool) and value >= low
                and (high is None or value <= high))

    checks = [("n_images (--images)", n_images, whole(n_images, 0), "an int >= 0"),
              ("n_videos (--videos)", n_videos, whole(n_videos, 0), "an int >= 0"),
              ("seed (--seed)", seed, whole(seed, 0), "an int >= 0"),
              ("image_size (--image-size)", image_size, whole(image_size, 32, MAX_IMAGE_SIZE),
               f"an int in [32, {MAX_IMAGE_SIZE}]"),
              ("video_size (--video-size)", video_size, video_size == 0 or whole(video_size, 32, MAX_IMAGE_SIZE),
               f"0 (= image_size) or an int in [32, {MAX_IMAGE_SIZE}]"),
              ("n_frames (--frames)", n_frames, whole(n_frames, 4, MAX_FRAMES), f"an int in [4, {MAX_FRAMES}]"),
              ("val_fraction (--val-fraction)", val_fraction, isinstance(val_fraction, (int, float))
               and not isinstance(val_fraction, bool) and 0 <= val_fraction < 1, "a number in [0, 1)")]
    for name, value, ok, need in checks:
        if not ok:
            raise ConfigError(f"synth.generate: {name}: must be {need}, got {value!r}")
    if n_images + n_videos == 0:
        raise ConfigError("synth.generate: n_images, n_videos (--images, --videos): both 0, nothing to generate")


def _generated_by_us(manifest: Path) -> bool:
    """True when ``manifest`` is a valid :class:`sam3m4.schemas.pipeline.SynthManifest` written by this generator."""
    try:
        return load_file(manifest, SynthManifest).generator == GENERATOR
    except DataFormatError:
        return False


def _prepare(out_dir: Path) -> None:
    """Remove a previous generator output (so reruns are exact); refuse to touch anything else."""
    for folder in (out_dir, *out_dir.parents):  # the nearest existing one must be a folder
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(f"synth.generate: out_dir (--out): {folder} is a file, not a folder")
            break
    manifest = out_dir / "manifest.json"
    ours = manifest.is_file() and _generated_by_us(manifest)
    if manifest.exists() and not ours:
        raise ConfigError(f"{manifest}: exists and is not a synth manifest; choose an empty output directory")
    for sub in ("saco_image", "saco_video"):
        if (out_dir / sub).exists():
            if not ours:
                raise ConfigError(f"{out_dir / sub}: exists and {manifest} is not a synth manifest; "
                                  "choose an empty output directory")
            shutil.rmtree(out_dir / sub)


def _image_split(seed, indices, split, size, root, bar) -> tuple[dict, dict]:
    """Render images ``indices`` into root/images/<split>/ and return (SA-Co image JSON, counts)."""
    images, annotations = [], []
    stats = {"images": len(indices), "pairs": 0, "positive_pairs": 0, "negative_pairs": 0, "instances": 0}
    for index in indices:
        scene = render_image(seed, index, size)
        file_name = f"{split}/{index:06d}.jpg"
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        with atomic_path(root / "images" / file_name) as tmp:
            Image.fromarray(scene.rgb).save(tmp, format="JPEG", **JPEG)
        anns = [_annotation(scene.labels == k + 1) for k in range(len(scene.shapes))]
        stats["instances"] += len(scene.shapes)
        for phrase in _choose_pairs(_rng(seed, _IMAGE + 2, index), scene.shapes, max_hard=2, max_other=2):
            pair_id = len(images) + 1
            images.append({"id": pair_id, "file_name": file_name, "height": size, "width": size,
                           "text_input": phrase, "queried_category": _CONCEPT_ID[phrase],
                           "is_instance_exhaustive": 1})
            hits = [k for k, s in enumerate(scene.shapes) if _matches(phrase, s)]
            stats["positive_pairs" if hits else "negative_pairs"] += 1
            for k in hits:
                rle, bbox, area = anns[k]
                annotations.append({"id": len(annotations) + 1, "image_id": pair_id, "bbox": bbox,
                                    "segmentation": rle, "area": area,
                                    "category_id": _CONCEPT_ID[phrase], "iscrowd": 0})
        bar.update(1)
    stats["pairs"] = len(images)
    return _format_json(split, "image", images=images, annotations=annotations), stats


def _video_split(seed, indices, split, size, n_frames, root, bar) -> tuple[dict, dict]:
    """Render videos ``indices`` into root/JPEGImages/<split>/ and return (SA-Co video JSON, counts)."""
    videos, np_pairs, annotations = [], [], []
    stats = {"videos": len(indices), "video_np_pairs": 0, "positive_pairs": 0, "negative_pairs": 0,
             "objects": 0, "null_frames": 0}
    for index in indices:
        video = render_video(seed, index, size, n_frames)
        folder = root / "JPEGImages" / split / f"{index:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        names = [f"{split}/{index:06d}/{t:05d}.jpg" for t in range(n_frames)]
        for t, name in enumerate(names):
            with atomic_path(root / "JPEGImages" / name) as tmp:
                Image.fromarray(video.frames[t]).save(tmp, format="JPEG", **JPEG)
        video_id = index + 1
        videos.append({"id": video_id, "file_names": names, "height": size, "width": size, "length": n_frames})
        tracks = []
        for k in range(len(video.objects)):
            per_frame = [_annotation(video.labels[t] == k + 1) if (video.labels[t] == k + 1).any() else None
                         for t in range(n_frames)]
            tracks.append(per_frame)
            stats["null_frames"] += sum(a is None for a in per_frame)
        stats["objects"] += len(video.objects)
        for phrase in _choose_pairs(_rng(seed, _VIDEO + 2, index), video.objects, max_hard=2, max_other=1):
            np_pairs.append({"video_id": video_id, "category_id": _CONCEPT_ID[phrase], "noun_phrase": phrase})
            hits = [k for k, s in enumerate(video.objects) if _matches(phrase, s)]
            stats["positive_pairs" if hits else "negative_pairs"] += 1
            for k in hits:
                annotations.append({
                    "id": len(annotations) + 1, "video_id": video_id, "category_id": _CONCEPT_ID[phrase],
                    "segmentations": [a and a[0] for a in tracks[k]],
                    "bboxes": [a and a[1] for a in tracks[k]],
                    "areas": [a and a[2] for a in tracks[k]], "iscrowd": 0})
        bar.update(1)
    stats["video_np_pairs"] = len(np_pairs)
    return _format_json(split, "video", videos=videos, video_np_pairs=np_pairs, annotations=annotations), stats


def _format_json(split: str, kind: str, **parts) -> dict:
    info = {"description": f"sam3m4 synthetic SA-Co {kind} data ({GENERATOR} v{VERSION})", "split": split}
    cats = [{"id": c["id"], "name": c["name"]} for c in CONCEPTS]
    if kind == "image":
        return {"info": info, "images": parts["images"], "annotations": parts["annotations"], "categories": cats}
    return {"info": info, "videos": parts["videos"], "categories": cats,
            "video_np_pairs": parts["video_np_pairs"], "annotations": parts["annotations"]}


def generate(out_dir: str | Path, n_images: int, n_videos: int, seed: int, image_size: int = 224,
             n_frames: int = 16, val_fraction: float = 0.2, progress: bool = True, video_size: int = 0) -> dict:
    """Write a synthetic SA-Co data set (images and videos, train/val, both JSON formats) to out_dir.

    Items are numbered globally; the last ``round(n * val_fraction)`` (at least 1 when n >= 2) go to val.
    A previous output of this generator in out_dir is replaced. Returns the manifest (also written to
    ``out_dir/manifest.json``): generator, version, seed, image_size, n_frames, val_fraction, concepts
    (id, name, colour, shape), colours (name -> RGB), shapes, files (relative JSON paths), counts
    (images / image_pairs / videos / video_np_pairs per split) and splits (detailed counts per split).
    """
    _check_args(n_images, n_videos, seed, image_size, n_frames, val_fraction, video_size)
    video_side = video_size or image_size
    out = Path(out_dir)
    _prepare(out)
    img_val, vid_val = _split_count(n_images, val_fraction), _split_count(n_videos, val_fraction)
    split_ids = {"image": {"train": range(n_images - img_val), "val": range(n_images - img_val, n_images)},
                 "video": {"train": range(n_videos - vid_val), "val": range(n_videos - vid_val, n_videos)}}
    splits: dict = {"train": {}, "val": {}}
    files: dict = {"saco_image": {}, "saco_video": {}}
    with progress_bar(total=n_images + n_videos, desc="synth", unit="item", enabled=progress) as bar:
        for split in ("train", "val"):
            data, stats = _image_split(seed, split_ids["image"][split], split, image_size,
                                       out / "saco_image", bar)
            _write_json(out / "saco_image" / f"{split}.json", data)
            splits[split]["image"] = stats
            files["saco_image"][split] = f"saco_image/{split}.json"
            data, stats = _video_split(seed, split_ids["video"][split], split, video_side, n_frames,
                                       out / "saco_video", bar)
            _write_json(out / "saco_video" / f"{split}.json", data)
            splits[split]["video"] = stats
            files["saco_video"][split] = f"saco_video/{split}.json"
    keys = (("images", "image", "images"), ("image_pairs", "image", "pairs"), ("videos", "video", "videos"),
            ("video_np_pairs", "video", "video_np_pairs"))
    counts = {name: {split: splits[split][kind][key] for split in ("train", "val")} for name, kind, key in keys}
    manifest = {"generator": GENERATOR, "version": VERSION, "seed": seed, "image_size": image_size,
                **({"video_size": video_size} if video_size else {}),
                "n_frames": n_frames, "val_fraction": val_fraction, "n_images": n_images, "n_videos": n_videos,
                "concepts": CONCEPTS, "colours": {k: list(v) for k, v in COLOURS.items()},
                "shapes": list(SHAPES), "min_visible_px": MIN_VISIBLE_PX, "jpeg": JPEG,
                "files": files, "counts": counts, "splits": splits}
    _write_json(out / "manifest.json", manifest)
    return manifest
