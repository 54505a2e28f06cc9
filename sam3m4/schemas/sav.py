"""SA-V masklet files (``sav_000001_manual.json``, the SAM 2 video set); other keys are kept.

RLE headers are checked against the video size by :mod:`sam3m4.data.sav` (:func:`sam3m4.data.rle.check_rle_header`),
and so are the masklet count per frame and the frame count.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from sam3m4.schemas._base import MAX_SIDE, External, Finite, Id, RelPath


def _whole(value: float) -> float:
    if value != int(value) or value <= 0:
        raise ValueError(f"must be a positive whole number, got {value}")
    return value


Whole = Annotated[Finite, AfterValidator(_whole)]
"""A positive whole number that may be written as a float (the release writes ``848.0``)."""
WholeSide = Annotated[Finite, Field(le=MAX_SIDE), AfterValidator(_whole)]


class SavVideo(External):
    """One SA-V video's masklets: annotated frame k is video frame ``k * 4`` (24 fps frames, 6 fps annotations)."""

    video_id: RelPath
    """The frame folder's name under the frame root."""
    video_height: WholeSide
    video_width: WholeSide
    video_frame_count: Whole
    masklet: list[list[Any]]
    """One entry per annotated frame: one COCO RLE per object (in ``masklet_id`` order)."""
    masklet_id: list[Id]
    """One id per object (unique, checked by the reader)."""
