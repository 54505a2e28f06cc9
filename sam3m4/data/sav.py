"""Reader for SA-V (the SAM 2 video set): per-video masklet JSON + extracted JPEG frames.

Layout (as SAM 2's training code expects it after frame extraction)::

    <root>/sav_000001_manual.json            masklets, annotated at 6 fps
    <frame_root>/sav_000001/00000.jpg ...    frames at 24 fps (default frame_root: <root>/JPEGImages_24fps)

JSON fields read (others are ignored): ``video_id`` (str), ``video_height``, ``video_width``,
``video_frame_count`` (numbers; the release writes them as floats such as 848.0), ``masklet`` (one entry
per annotated frame, each a list with one COCO RLE per object), ``masklet_id`` (one id per object).
Annotated frame k is video frame ``k * ann_every`` (4: 24 fps frames, 6 fps annotations).

SA-V has no noun phrases (SAM 2 is prompted by clicks and masks): items are :class:`VideoSample` with
``phrase = ""`` and ``category_id = -1``, used to train the video memory on real motion. The JSON is
validated on load (:class:`sam3m4.schemas.sav.SavVideo`); RLEs and frames are read in ``__getitem__``; every defect is a one-line DataFormatError
naming the file and the field.

    ds = SavDataset("data/sa_v/train")       # every *_manual.json under it
    s = ds[0]; s.frames (K,H,W,3) uint8, s.masks (N,K,H,W) bool, s.visible (N,K) bool
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sam3m4.data import _checks
from sam3m4.data.rle import check_rle_header, decode_rle
from sam3m4.data.saco_video import VideoSample
from sam3m4.errors import DataFormatError
from sam3m4.schemas import validate
from sam3m4.schemas.sav import SavVideo

__all__ = ["SavDataset"]


class SavDataset:
    """SA-V videos under ``root`` (a folder of ``*_manual.json`` or one such file); one item per video.

    Attributes: ``videos`` (list of dicts: json, video_id, height, width, frame_count, num_objects,
    num_annotated, masklet_ids).
    """

    def __init__(self, root: str | Path, frame_root: str | Path | None = None, ann_every: int = 4):
        root = Path(root)
        files = [root] if root.is_file() else sorted(root.glob("*_manual.json"))
        if not files:
            raise DataFormatError(f"{root}: no *_manual.json file (SA-V masklet annotations) found")
        base = root.parent if root.is_file() else root
        self.frame_root = Path(frame_root) if frame_root is not None else base / "JPEGImages_24fps"
        self.ann_every = ann_every
        self.videos = [self._read_header(f) for f in files]
        self._masklets: dict[int, list] = {}

    def _read_header(self, file: Path) -> dict:
        doc = validate(_checks.load_json(file), SavVideo, source=file)  # keys, types, ranges, the frame folder
        video_id, masklet, ids = doc.video_id, doc.masklet, doc.masklet_id
        h, w, frame_count = int(doc.video_height), int(doc.video_width), int(doc.video_frame_count)
        seen: dict[int, str] = {}
        for i, mid in enumerate(ids):
            _checks.unique_id(file, f"masklet_id[{i}]", mid, seen)
        for k, frame in enumerate(masklet):
            if len(frame) != len(ids):
                raise DataFormatError(f"{file}: masklet[{k}]: {len(frame)} RLEs but masklet_id lists {len(ids)} objects")
            for n, rle in enumerate(frame):
                check_rle_header(rle, h, w, where=f"{file}: masklet[{k}][{n}]")
        last = (len(masklet) - 1) * self.ann_every
        if masklet and last >= frame_count:
            raise DataFormatError(f"{file}: masklet: {len(masklet)} annotated frames every {self.ann_every} need "
                                  f"{last + 1} frames but video_frame_count is {frame_count}")
        return {"json": file, "video_id": video_id, "height": h, "width": w,
                "frame_count": frame_count, "num_objects": len(ids), "num_annotated": len(masklet),
                "masklet_ids": list(ids), "masklet": masklet}

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> VideoSample:
        v = self.videos[i]
        file, h, w, k_frames = v["json"], v["height"], v["width"], v["num_annotated"]
        names = [f"{v['video_id']}/{k * self.ann_every:05d}.jpg" for k in range(k_frames)]
        frames = np.zeros((0, h, w, 3), dtype=np.uint8)  # (K, H, W, 3); K = 0 when nothing is annotated
        for k, name in enumerate(names):
            rgb = _checks.read_rgb(file, f"masklet[{k}] (frame {k * self.ann_every})", self.frame_root / name, h, w)
            if k == 0:  # allocated once frame 0 has shown that the JSON's size is real
                frames = np.empty((k_frames, h, w, 3), dtype=np.uint8)
            frames[k] = rgb
        masks = np.zeros((v["num_objects"], k_frames, h, w), dtype=bool)  # (N, K, H, W)
        for k, frame in enumerate(v["masklet"]):
            for n, rle in enumerate(frame):
                masks[n, k] = decode_rle(rle, h, w, where=f"{file}: masklet[{k}][{n}]")
        return VideoSample(video_id=i, category_id=-1, phrase="", frames=frames, masks=masks,
                           visible=masks.any(axis=(2, 3)), present=v["num_objects"] > 0, file_names=names)

    def __repr__(self) -> str:
        return f"SavDataset(videos={len(self)}, frame_root={str(self.frame_root)!r})"
