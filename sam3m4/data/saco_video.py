"""Reader for SA-Co video JSON (VEval, YouTube-VIS style): one item per (video, noun phrase) pair.

Format (from SAM 3's public loaders):

* ``videos[]``: ``{id, file_names (frame paths), height, width, length}``.
* ``categories[]``: ``{id, name}`` (name = noun phrase).
* ``video_np_pairs[]``: ``{video_id, category_id, noun_phrase}``; one item each. A pair without
  annotations is a negative (concept absent from the whole video).
* ``annotations[]``: ``{id, video_id, category_id, segmentations: [RLE or null per frame],
  bboxes: [xywh or null], areas: [int or null], iscrowd}``; one per object (masklet) and category.

The JSON is validated on load (:class:`sam3m4.schemas.saco.SacoVideoFile`: keys, types, ranges; then unique ids, non-empty phrases, frame counts, areas, boxes,
frame paths that stay under the frame root, RLE headers and sizes; limits in :mod:`sam3m4.data._checks`);
RLE counts and frame files are read in ``__getitem__``. Every defect is a one-line DataFormatError naming
file and field.
Annotations that no ``video_np_pairs`` entry asks for, and masklets that are null in every frame, are
skipped, listed in ``.skipped`` and reported in one warning.

    ds = SacoVideoDataset("data/saco_video/val.json")   # frames under data/saco_video/JPEGImages/
    s = ds[0]; s.frames (T,H,W,3) uint8, s.masks (N,T,H,W) bool, s.visible (N,T) bool
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sam3m4.data import _checks
from sam3m4.data.rle import check_rle_header, decode_rle
from sam3m4.errors import DataFormatError
from sam3m4.schemas import validate
from sam3m4.schemas.saco import SacoVideoFile

__all__ = ["VideoSample", "SacoVideoDataset", "items_with_objects"]


@dataclass
class VideoSample:
    """One (video, noun phrase) pair."""

    video_id: int
    category_id: int
    phrase: str
    """The noun phrase of the pair (``video_np_pairs[].noun_phrase``)."""
    frames: np.ndarray
    """(T, H, W, 3) uint8 RGB."""
    masks: np.ndarray
    """(N, T, H, W) bool, one masklet per object; all False in frames where its RLE is null."""
    visible: np.ndarray
    """(N, T) bool, True where the object's mask in that frame is non-empty."""
    present: bool
    """True when the concept appears in the video (N >= 1)."""
    file_names: list[str]
    """T frame paths relative to the frame root."""


def items_with_objects(dataset) -> list[int]:
    """Indices of the items with at least one object to track: SA-Co video pairs (``.pairs``) or SA-V videos
    (``.videos``); a ValueError when there is none."""
    entries = dataset.pairs if hasattr(dataset, "pairs") else dataset.videos
    items = [i for i, e in enumerate(entries) if e["num_objects"] > 0]
    if not items:
        raise ValueError(f"{dataset!r}: no item with an object to track")
    return items


class SacoVideoDataset:
    """SA-Co video pairs from ``json_path``; frames under ``frame_root`` (default ``json_path.parent/JPEGImages``).

    Attributes: ``pairs`` (list of dicts: video_id, category_id, noun_phrase, length, height, width,
    num_objects), ``videos`` (video id -> dict id, file_names, height, width, length), ``phrases`` (sorted
    unique noun phrases), ``skipped`` (list of reasons).
    """

    def __init__(self, json_path: str | Path, frame_root: str | Path | None = None):
        self.json_path = Path(json_path)
        self.frame_root = Path(frame_root) if frame_root is not None else self.json_path.parent / "JPEGImages"
        self.skipped: list[str] = []
        file = self.json_path
        doc = validate(_checks.load_json(file), SacoVideoFile, source=file)  # keys, types, ranges, paths

        self.videos: dict[int, dict] = {}
        self._video_field: dict[int, str] = {}
        for i, vid in enumerate(doc.videos):
            field = f"videos[{i}]"
            if vid.id in self.videos:
                raise DataFormatError(f"{file}: {field}.id: duplicate id {vid.id} "
                                      f"(also {self._video_field[vid.id]})")
            if len(vid.file_names) != vid.length:
                raise DataFormatError(f"{file}: {field}.file_names: {len(vid.file_names)} frame names but "
                                      f"length is {vid.length}")
            self.videos[vid.id] = {"id": vid.id, "file_names": list(vid.file_names), "length": vid.length,
                                   "height": vid.height, "width": vid.width}
            self._video_field[vid.id] = field

        categories: dict[int, str] = {}
        for i, cat in enumerate(doc.categories):
            if cat.id in categories:
                raise DataFormatError(f"{file}: categories[{i}].id: duplicate id {cat.id}")
            categories[cat.id] = cat.name

        self.pairs: list[dict] = []
        pair_of: dict[tuple[int, int], int] = {}
        for i, np_pair in enumerate(doc.video_np_pairs):
            field = f"video_np_pairs[{i}]"
            key = (self._known_video(np_pair.video_id, field), self._known_category(np_pair.category_id, field,
                                                                                   categories))
            if key in pair_of:
                raise DataFormatError(f"{file}: {field}: duplicate pair (video_id {key[0]}, category_id "
                                      f"{key[1]}), also video_np_pairs[{pair_of[key]}]")
            pair_of[key] = i
            video = self.videos[key[0]]
            self.pairs.append({"video_id": key[0], "category_id": key[1], "noun_phrase": np_pair.noun_phrase,
                               "length": video["length"], "height": video["height"],
                               "width": video["width"], "num_objects": 0})

        self._anns: list[list[tuple[str, list]]] = [[] for _ in self.pairs]  # per pair: (field, rles)
        ann_ids: dict[int, str] = {}                              # annotation id -> field
        for j, ann in enumerate(doc.annotations):
            field = f"annotations[{j}]"
            if ann.id is not None:                        # optional (YouTube-VIS writes it); unique when present
                _checks.unique_id(file, f"{field}.id", ann.id, ann_ids)
            key = (self._known_video(ann.video_id, field), self._known_category(ann.category_id, field, categories))
            video = self.videos[key[0]]
            length, h, w = video["length"], video["height"], video["width"]
            segs = ann.segmentations
            if len(segs) != length:
                raise DataFormatError(f"{file}: {field}.segmentations: {len(segs)} entries but video "
                                      f"{key[0]} has length {length}")
            for name, check in (("bboxes", _checks.check_bbox), ("areas", _checks.check_area)):
                extra = getattr(ann, name)
                if extra is not None and len(extra) != length:
                    raise DataFormatError(f"{file}: {field}.{name}: {len(extra)} entries but video "
                                          f"{key[0]} has length {length}")
                for t, value in enumerate(extra or []):
                    if value is not None:                 # null where the object is not in frame t
                        check(file, f"{field}.{name}[{t}]", value, h, w)
            for t, seg in enumerate(segs):
                if seg is not None:
                    check_rle_header(seg, h, w, where=f"{file}: {field}.segmentations[{t}]")
            if key not in pair_of:
                self.skipped.append(f"{field}: no video_np_pairs entry for (video_id {key[0]}, "
                                    f"category_id {key[1]})")
            elif all(seg is None for seg in segs):
                self.skipped.append(f"{field}: null in every frame")
            else:
                self._anns[pair_of[key]].append((f"{field}.segmentations", list(segs)))
        for pair, anns in zip(self.pairs, self._anns):
            pair["num_objects"] = len(anns)
        self.phrases = sorted({p["noun_phrase"] for p in self.pairs})
        if self.skipped:
            warnings.warn(f"{file}: skipped {len(self.skipped)} annotation(s) (first: {self.skipped[0]}); "
                          f"see dataset.skipped", stacklevel=2)

    def _known_video(self, vid_id: int, field: str) -> int:
        if vid_id not in self.videos:
            raise DataFormatError(f"{self.json_path}: {field}.video_id: unknown video id {vid_id}")
        return vid_id

    def _known_category(self, cat_id: int, field: str, categories: dict[int, str]) -> int:
        if cat_id not in categories:
            raise DataFormatError(f"{self.json_path}: {field}.category_id: unknown category id {cat_id}")
        return cat_id

    def __len__(self) -> int:
        return len(self.pairs)

    def first_pairs(self, n: int) -> "SacoVideoDataset":
        """A view of the first ``n`` pairs that have an object to track (``n`` = 0: this dataset): a smoke or
        rehearsal run over a slice of a large set (frames are still read lazily, per item)."""
        if not n:
            return self
        import copy

        keep = [i for i, p in enumerate(self.pairs) if p["num_objects"] > 0][:n]
        view = copy.copy(self)
        view.pairs = [self.pairs[i] for i in keep]
        view._anns = [self._anns[i] for i in keep]
        view.phrases = sorted({p["noun_phrase"] for p in view.pairs})
        return view

    def __getitem__(self, i: int) -> VideoSample:
        pair = self.pairs[i]
        anns = self._anns[i]
        video = self.videos[pair["video_id"]]
        for t in range(video["length"]):
            rgb = self.frame(video["id"], t)
            if t == 0:  # allocated once frame 0 has shown that the JSON's size is real
                frames = np.empty((video["length"], *rgb.shape), dtype=np.uint8)  # (T, H, W, 3)
            frames[t] = rgb
        masks = self.masks(i)
        visible = masks.any(axis=(2, 3))                        # (N, T)
        return VideoSample(video_id=video["id"], category_id=pair["category_id"],
                           phrase=pair["noun_phrase"], frames=frames, masks=masks, visible=visible,
                           present=len(anns) > 0, file_names=list(video["file_names"]))

    def frame(self, video_id: int, t: int) -> np.ndarray:
        """Frame t of a video, (H, W, 3) uint8 RGB (a video's frames are shared by all its pairs)."""
        video = self.videos[video_id]
        return _checks.read_rgb(self.json_path, f"{self._video_field[video_id]}.file_names[{t}]",
                          self.frame_root / video["file_names"][t], video["height"], video["width"])

    def masks(self, i: int) -> np.ndarray:
        """Pair i's masklets, (N, T, H, W) bool (all False where an RLE is null), without reading frames."""
        video = self.videos[self.pairs[i]["video_id"]]
        h, w = video["height"], video["width"]
        masks = np.zeros((len(self._anns[i]), video["length"], h, w), dtype=bool)  # (N, T, H, W)
        for n, (field, segs) in enumerate(self._anns[i]):
            for t, seg in enumerate(segs):
                if seg is not None:
                    masks[n, t] = decode_rle(seg, h, w, where=f"{self.json_path}: {field}[{t}]")
        return masks

    def __repr__(self) -> str:
        return (f"SacoVideoDataset({str(self.json_path)!r}, pairs={len(self)}, videos={len(self.videos)}, "
                f"phrases={len(self.phrases)})")
