"""COCO run-length encoding of binary masks, validated before pycocotools sees it.

SA-Co image and video JSON store masks as COCO RLE dicts ``{"size": [H, W], "counts": ...}``.
``counts`` is either the compressed string form (``str``; pycocotools returns ``bytes``, we store ``str``
so it is JSON-able) or the uncompressed form (a list of ints: alternating runs of 0 and 1 in column-major
order, starting with 0). pycocotools reads uninitialised memory on a compressed string whose runs do not
add up to H*W, so :func:`decode_rle` checks the runs first and turns every defect into a one-line
:class:`~sam3m4.errors.DataFormatError` naming file and field.

    >>> rle = encode_mask(mask)          # mask: (H, W) bool
    >>> decode_rle(rle, H, W, where="val.json: annotations[3].segmentation")
"""

from __future__ import annotations

import warnings

import numpy as np
from pycocotools import mask as mask_utils

from sam3m4.errors import DataFormatError

__all__ = ["encode_mask", "decode_rle", "check_rle_header", "masks_to_boxes"]

_MAX_GROUP = 7  # 7 * 5 = 35 bits: pycocotools stores runs as uint32, longer groups are corrupt


def encode_mask(mask: np.ndarray) -> dict:
    """Encode one mask as COCO compressed RLE.

    mask: (H, W) bool (or 0/1 integers). Returns ``{"size": [H, W], "counts": str}`` (JSON-able).
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"encode_mask: expected a 2-D (H, W) mask, got shape {m.shape}")
    rle = mask_utils.encode(np.asfortranarray(m.astype(bool).astype(np.uint8)))
    counts = rle["counts"]
    return {"size": [int(m.shape[0]), int(m.shape[1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _compressed_runs(s: str) -> np.ndarray | None:
    """Run lengths (int64) of a COCO compressed counts string, or None when the string is malformed.

    Mirrors pycocotools' ``rleFrString``: each run is a little-endian group of 5-bit chunks stored as
    ``chr(48 + chunk | 0x20 if more follows)``, sign-extended from the last chunk; runs after the third are
    stored as differences to the run two places earlier.
    """
    if not s or not s.isascii():
        return None
    c = np.frombuffer(s.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    if c.min() < 0 or c.max() > 63:
        return None
    more = (c & 0x20) != 0
    if more[-1]:
        return None                                   # last group never ends
    ends = np.flatnonzero(~more)                      # (M,) index of the last char of each run
    starts = np.concatenate([[0], ends[:-1] + 1])
    group_len = ends - starts + 1
    if group_len.max() > _MAX_GROUP:
        return None
    group = np.repeat(np.arange(len(ends)), group_len)  # (len(s),) run index of each char
    k = np.arange(len(c)) - starts[group]             # chunk position inside its run
    x = np.zeros(len(ends), dtype=np.int64)
    np.add.at(x, group, (c & 0x1F) << (5 * k))
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.left_shift(np.int64(1), 5 * group_len[negative])
    runs = x.copy()
    # runs[i] = x[i] + runs[i-2] for i >= 3: cumulative sums over odd indices from 1 and even from 2
    if len(runs) > 3:  # (for <= 3 runs there are no differences)
        runs[1::2] = np.cumsum(x[1::2])
        runs[2::2] = np.cumsum(x[2::2])
    return runs


def check_rle_header(rle: object, height: int, width: int, *, where: str) -> None:
    """Validate the keys, types and size of an RLE dict without decoding it (cheap; used at load time).

    where: ``"file: field"`` prefix for the error message. Raises DataFormatError.
    """
    if not isinstance(rle, dict):
        kind = "a list (polygons are not supported)" if isinstance(rle, list) else type(rle).__name__
        raise DataFormatError(f"{where}: expected a COCO RLE dict {{size, counts}}, got {kind}")
    for key in ("size", "counts"):
        if key not in rle:
            raise DataFormatError(f"{where}.{key}: missing key")
    size = rle["size"]
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
        raise DataFormatError(f"{where}.size: expected [height, width] ints, got {size!r:.60}")
    if size != [height, width]:
        raise DataFormatError(f"{where}.size: RLE size {size} != image size {[height, width]}")
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            raise DataFormatError(f"{where}.counts: uncompressed RLE counts must be a list of ints")
    elif not isinstance(counts, (str, bytes)):
        raise DataFormatError(f"{where}.counts: expected str, bytes or list of ints, "
                              f"got {type(counts).__name__}")


def decode_rle(rle: dict, height: int, width: int, *, where: str) -> np.ndarray:
    """Decode a COCO RLE dict (compressed str/bytes counts or uncompressed list counts) to a mask.

    height, width: the image size the RLE must have. where: ``"file: field"`` used in errors.
    Returns (H, W) bool. Raises DataFormatError on wrong keys/types, size mismatch or corrupt counts.
    """
    check_rle_header(rle, height, width, where=where)
    counts = rle["counts"]
    total = height * width
    if isinstance(counts, list):
        if any(v < 0 for v in counts) or sum(counts) != total:
            raise DataFormatError(f"{where}.counts: uncompressed runs are negative or do not sum to "
                                  f"H*W = {total}")
        coded = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    else:
        text = counts.decode("ascii", errors="replace") if isinstance(counts, bytes) else counts
        runs = _compressed_runs(text)
        if runs is None or (runs < 0).any() or int(runs.sum()) != total:
            raise DataFormatError(f"{where}.counts: corrupt compressed RLE (runs do not sum to "
                                  f"H*W = {total})")
        coded = {"size": [height, width], "counts": text.encode("ascii")}
    try:
        with warnings.catch_warnings():  # pycocotools' Cython decode trips numpy 2's __array__(copy=) check
            warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
            mask = mask_utils.decode(coded)
    except (ValueError, TypeError) as exc:  # defensive: pycocotools' own validation
        raise DataFormatError(f"{where}.counts: cannot decode RLE: {exc}") from None
    return mask.astype(bool)                           # (H, W) bool


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight boxes of masks. masks: (N, H, W) bool -> (N, 4) float32 XYXY in pixel-edge coordinates
    (x2 = last column + 1, as COCO's xywh w = number of columns); an empty mask gives [0, 0, 0, 0]."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)  # (N, 4)
    for i, m in enumerate(masks):
        cols = np.flatnonzero(m.any(axis=0))
        rows = np.flatnonzero(m.any(axis=1))
        if len(cols):
            boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes
