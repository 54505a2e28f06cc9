"""SA-Co files: the image GT (SA-Co/Gold, COCO-like), the video GT (SA-Co/VEval, YouTube-VIS-like) and the
prediction files Meta's evaluators read. Formats from SAM 3's public loaders and writers; other keys are kept.

What needs another file or the image size (unique and known ids, a box inside the image, an area <= H*W, RLE
headers and counts) is checked by the readers (:mod:`sam3m4.data.saco_image`, :mod:`sam3m4.data.saco_video`,
:mod:`sam3m4.eval.saco_format`); a segmentation is any JSON value here and a COCO RLE there
(:func:`sam3m4.data.rle.check_rle_header`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictInt

from sam3m4.schemas._base import (Bool, External, Id, NonEmpty, NonNeg, Prob, RelPath, Side, Positive,
                                  Xywh)

def _zero_or_one(value: int) -> int:
    if value not in (0, 1):
        raise ValueError(f"must be 0 or 1, got {value}")
    return value


Crowd = Annotated[StrictInt, AfterValidator(_zero_or_one)]
"""``iscrowd``: 0 or 1 (an int, as pycocotools writes it; not a bool)."""


class Category(External):
    id: Id
    name: NonEmpty
    """The noun phrase (video) or the category name (image)."""


# --- image GT ------------------------------------------------------------------------------------------------
class ImagePair(External):
    """``images[]``: one (image, noun phrase) pair; several pairs may share a ``file_name``."""

    id: Id
    file_name: RelPath
    """Image path relative to the image root."""
    height: Side
    width: Side
    text_input: NonEmpty
    """The noun phrase."""
    queried_category: Id | None = None
    is_instance_exhaustive: Bool | Literal[0, 1] | None = None
    """Whether every instance is annotated (the official evaluator scores only these)."""


class ImageAnnotation(External):
    """``annotations[]``: one instance of a pair."""

    id: Id | None = None
    image_id: Id
    """``images[].id`` of its pair."""
    category_id: Id | None = None
    bbox: Xywh | None = None
    """``[x, y, w, h]`` pixels; w, h > 0 and inside the image (checked by the reader)."""
    area: NonNeg | None = None
    """Mask area in pixels, <= H*W (checked by the reader)."""
    iscrowd: Crowd = 0
    segmentation: Any = Field()
    """A COCO RLE ``{size: [H, W], counts}`` (null / empty: the annotation is skipped)."""


class SacoImageFile(External):
    """An SA-Co image GT file (``val.json``)."""

    images: list[ImagePair]
    annotations: list[ImageAnnotation]
    categories: list[Category] = []


# --- video GT ------------------------------------------------------------------------------------------------
class Video(External):
    """``videos[]``."""

    id: Id
    file_names: list[RelPath]
    """T frame paths relative to the frame root."""
    height: Side
    width: Side
    length: Positive
    """T, the number of frames (= ``len(file_names)``, checked by the reader)."""


class VideoPair(External):
    """``video_np_pairs[]``: one (video, noun phrase) pair."""

    video_id: Id
    category_id: Id
    noun_phrase: NonEmpty


class VideoAnnotation(External):
    """``annotations[]``: one masklet (object) of a (video, category) pair; per-frame lists have T entries."""

    id: Id | None = None
    video_id: Id
    category_id: Id
    segmentations: list[Any]
    """T COCO RLEs, null where the object is not in the frame."""
    bboxes: list[Xywh | None] | None = None
    areas: list[NonNeg | None] | None = None
    iscrowd: Crowd = 0


class SacoVideoFile(External):
    """An SA-Co/VEval video GT file."""

    videos: list[Video]
    categories: list[Category]
    video_np_pairs: list[VideoPair]
    annotations: list[VideoAnnotation]


# --- predictions ---------------------------------------------------------------------------------------------
def _box_sizes(box: list[float]) -> list[float]:
    if box[2] < 0 or box[3] < 0:
        raise ValueError(f"width and height must be >= 0, got {box}")
    return box


PredBox = Annotated[Xywh, AfterValidator(_box_sizes)]
"""A predicted ``[x, y, w, h]``: w, h >= 0 (``[0, 0, 0, 0]`` for an empty mask)."""


class ImagePrediction(External):
    """One detection: ``{image_id, category_id, segmentation, bbox?, score}`` (``sam3m4 eval --saco-preds``)."""

    image_id: Id
    """The pair id (``images[].id`` of the GT)."""
    category_id: Id
    segmentation: dict[str, Any]
    """COCO RLE of the full-resolution mask (decoded against the GT's size by the checker)."""
    bbox: PredBox | None = None
    """``[x, y, w, h]`` pixels, w and h >= 0."""
    score: Prob


class VideoPrediction(External):
    """One masklet: ``{video_id, category_id, segmentations [T], bboxes [T], areas [T], score}``."""

    video_id: Id
    category_id: Id
    segmentations: list[dict[str, Any] | None]
    bboxes: list[PredBox]
    """T boxes, ``[0, 0, 0, 0]`` where the object is absent; w and h >= 0."""
    areas: list[NonNeg | None]
    """T mask areas in pixels (>= 0; null allowed)."""
    score: Prob


ImagePredictions = list[ImagePrediction]
VideoPredictions = list[VideoPrediction]
