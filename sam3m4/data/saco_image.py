"""Reader for SA-Co image JSON (SA-Co/Gold style): one item per (image, noun phrase) pair.

Format (COCO-like; from SAM 3's public loaders):

* ``images[]``: ``{id, file_name, height, width, text_input, queried_category?, is_instance_exhaustive?}``;
  each entry is one (image, noun phrase) pair, several entries may share a ``file_name``.
* ``annotations[]``: ``{id, image_id, bbox (xywh), segmentation (COCO RLE), area, category_id, iscrowd}``;
  ``image_id`` points at a pair. A pair without annotations is a negative (concept absent).
* ``categories[]``: ``{id, name}`` (optional here, checked when present).

The whole JSON is validated on load (:class:`sam3m4.schemas.saco.SacoImageFile`: keys, types, ranges; then unique ids, non-empty phrases, areas, boxes, paths that
stay under the image root, RLE headers and sizes; limits in :mod:`sam3m4.data._checks`); RLE counts and
image files are read in ``__getitem__``, and their defects raise the same one-line DataFormatError naming
file and field. An annotation whose segmentation is null/empty is skipped; a pair left with no usable annotation is
dropped (it would otherwise look like a negative). Both are listed in ``.skipped`` with one warning.

    ds = SacoImageDataset("data/saco_image/val.json")   # images under data/saco_image/images/
    s = ds[0]; s.image (H,W,3) uint8, s.masks (N,H,W) bool, s.present
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sam3m4.data import _checks
from sam3m4.data.rle import check_rle_header, decode_rle, masks_to_boxes
from sam3m4.errors import DataFormatError
from sam3m4.schemas import validate
from sam3m4.schemas.saco import SacoImageFile

__all__ = ["ImageSample", "SacoImageDataset"]


@dataclass
class ImageSample:
    """One (image, noun phrase) pair."""

    pair_id: int
    """``images[].id`` in the JSON."""
    file_name: str
    """Image path relative to the image root."""
    image: np.ndarray
    """(H, W, 3) uint8 RGB."""
    phrase: str
    """The noun phrase (``text_input``)."""
    masks: np.ndarray
    """(N, H, W) bool instance masks; N = 0 when the concept is absent."""
    boxes: np.ndarray
    """(N, 4) float32 XYXY pixel boxes, the tight boxes of ``masks`` (x2 = last column + 1)."""
    present: bool
    """True when the concept is in the image (N >= 1)."""


class SacoImageDataset:
    """SA-Co image pairs from ``json_path``; images under ``image_root`` (default ``json_path.parent/images``).

    Attributes: ``pairs`` (list of dicts: id, file_name, height, width, text_input, num_instances),
    ``phrases`` (sorted unique noun phrases), ``skipped`` (list of reasons, one per skipped item).
    """

    def __init__(self, json_path: str | Path, image_root: str | Path | None = None):
        self.json_path = Path(json_path)
        self.image_root = Path(image_root) if image_root is not None else self.json_path.parent / "images"
        self.skipped: list[str] = []
        file = self.json_path
        doc = validate(_checks.load_json(file), SacoImageFile, source=file)  # keys, types, ranges, paths
        categories: dict[int, str] = {}                  # category id -> field
        for i, cat in enumerate(doc.categories):
            _checks.unique_id(file, f"categories[{i}].id", cat.id, categories)

        pairs: list[dict] = []
        index_of: dict[int, int] = {}                     # image id -> position in pairs
        for i, img in enumerate(doc.images):
            if img.id in index_of:
                raise DataFormatError(f"{file}: images[{i}].id: duplicate id {img.id} "
                                      f"(also images[{index_of[img.id]}])")
            index_of[img.id] = i
            pairs.append({"id": img.id, "file_name": img.file_name, "height": img.height, "width": img.width,
                          "text_input": img.text_input, "num_instances": 0})

        anns: list[list[tuple[str, dict]]] = [[] for _ in pairs]  # per pair: (field, rle)
        had_ann = [False] * len(pairs)
        ann_ids: dict[int, str] = {}                     # annotation id -> field
        for j, ann in enumerate(doc.annotations):
            field = f"annotations[{j}]"
            if ann.id is not None:                        # optional (COCO writes it); unique when present
                _checks.unique_id(file, f"{field}.id", ann.id, ann_ids)
            image_id = ann.image_id
            if image_id not in index_of:
                raise DataFormatError(f"{file}: {field}.image_id: unknown image id {image_id}")
            k = index_of[image_id]
            h, w = pairs[k]["height"], pairs[k]["width"]
            if categories and ann.category_id is not None and ann.category_id not in categories:
                raise DataFormatError(f"{file}: {field}.category_id: unknown category id {ann.category_id}")
            if ann.area is not None:
                _checks.check_area(file, f"{field}.area", ann.area, h, w)
            if ann.bbox is not None:
                _checks.check_bbox(file, f"{field}.bbox", ann.bbox, h, w)
            had_ann[k] = True
            seg = ann.segmentation
            if seg is None or seg == [] or seg == {}:
                self.skipped.append(f"{field}: empty segmentation (image id {image_id})")
                continue
            try:
                check_rle_header(seg, h, w, where=f"{file}: {field}.segmentation")
            except DataFormatError as exc:
                raise DataFormatError(f"{exc} (image id {image_id})") from None
            anns[k].append((f"{field}.segmentation", seg))

        keep = [k for k in range(len(pairs)) if not (had_ann[k] and not anns[k])]
        for k in range(len(pairs)):
            if had_ann[k] and not anns[k]:
                self.skipped.append(f"images[{k}]: pair dropped, all its annotations were skipped")
        for k in keep:
            pairs[k]["num_instances"] = len(anns[k])
        self._fields = [f"images[{k}]" for k in keep]           # JSON path of each kept pair
        self.pairs = [pairs[k] for k in keep]
        self._anns = [anns[k] for k in keep]
        self.phrases = sorted({p["text_input"] for p in self.pairs})
        if self.skipped:
            warnings.warn(f"{file}: skipped {len(self.skipped)} item(s) with no usable segmentation "
                          f"(first: {self.skipped[0]}); see dataset.skipped", stacklevel=2)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> ImageSample:
        pair = self.pairs[i]
        anns = self._anns[i]
        file, h, w = self.json_path, pair["height"], pair["width"]
        image = _checks.read_rgb(file, f"{self._fields[i]}.file_name", self.image_root / pair["file_name"], h, w)
        masks = self.masks(i)
        return ImageSample(pair_id=pair["id"], file_name=pair["file_name"], image=image,
                           phrase=pair["text_input"], masks=masks, boxes=masks_to_boxes(masks),
                           present=len(anns) > 0)

    def masks(self, i: int) -> np.ndarray:
        """Pair i's instance masks, (N, H, W) bool, without reading the image."""
        pair, file = self.pairs[i], self.json_path
        masks = np.zeros((len(self._anns[i]), pair["height"], pair["width"]), dtype=bool)  # (N, H, W)
        for n, (field, rle) in enumerate(self._anns[i]):
            masks[n] = decode_rle(rle, pair["height"], pair["width"], where=f"{file}: {field}")
        return masks

    def __repr__(self) -> str:
        return f"SacoImageDataset({str(self.json_path)!r}, pairs={len(self)}, phrases={len(self.phrases)})"
