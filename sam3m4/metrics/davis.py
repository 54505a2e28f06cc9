"""DAVIS region (J) and boundary (F) measures and the J&F-Mean aggregation, as davis2017-evaluation does them.

- J (:func:`jaccard`): IoU of two boolean masks; 1.0 when both are empty.
- F (:func:`boundary_f`): davis2017-evaluation's ``f_measure``. Boundary maps come from :func:`seg2bmap`;
  the tolerance is ``bound_th`` pixels when ``bound_th >= 1``, else ``ceil(bound_th * sqrt(H^2 + W^2))``
  (8 px at 480x854); each boundary is dilated with a disk of that radius (skimage's ``disk``:
  ``x^2 + y^2 <= r^2``); precision = predicted boundary pixels inside the dilated GT boundary / predicted
  boundary pixels, recall likewise for GT; F = 2PR / (P + R), 0 when P + R == 0.
  A mask with no boundary pixels counts as empty here (as in DAVIS): an all-ones mask has no boundary.
- J&F (:class:`JFMeter`): per object the mean over its frames (optionally dropping the first and last,
  as the semi-supervised protocol does); J-Mean / F-Mean are means over objects; J&F = (J-Mean + F-Mean) / 2.

Void pixels and seg2bmap's resize branch are not ported (ground truth and prediction share one size).
Tests: ``python -m pytest tests/metrics/test_metrics_davis.py -q``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "jaccard",
    "seg2bmap",
    "disk",
    "boundary_tolerance",
    "boundary_precision_recall",
    "boundary_f",
    "JFResult",
    "JFMeter",
]


def _pair_2d(gt, pred, fn: str) -> tuple[np.ndarray, np.ndarray]:
    """Validates two 2-D masks of one shape and returns them as bool arrays."""
    g, p = np.asarray(gt), np.asarray(pred)
    if g.ndim != 2 or p.ndim != 2:
        raise ValueError(f"{fn}: expected 2-D (H, W) masks, got gt shape {g.shape} and pred shape {p.shape}")
    if g.shape != p.shape:
        raise ValueError(f"{fn}: gt shape {g.shape} and pred shape {p.shape} differ")
    return g != 0, p != 0


def _jaccard_frames(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """J over the last two axes of bool arrays of one shape (..., H, W) -> (...) float64."""
    inter = np.count_nonzero(gt & pred, axis=(-2, -1))  # (...)
    union = np.count_nonzero(gt | pred, axis=(-2, -1))  # (...)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def jaccard(gt, pred) -> float:
    """Region similarity J: IoU of two (H,W) masks (bool or 0/1), in [0, 1]; 1.0 when both are empty.

    Raises ValueError when an input is not 2-D or the shapes differ.
    """
    g, p = _pair_2d(gt, pred, "jaccard")
    return float(_jaccard_frames(g, p))


def _seg2bmap(seg: np.ndarray) -> np.ndarray:
    """davis2017's ``_seg2bmap`` (same-size case) over the last two axes of a bool (..., H, W) array."""
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[..., :, :-1] = seg[..., :, 1:]  # east neighbour
    s[..., :-1, :] = seg[..., 1:, :]  # south neighbour
    se[..., :-1, :-1] = seg[..., 1:, 1:]  # south-east neighbour
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[..., -1, :] = seg[..., -1, :] ^ e[..., -1, :]  # last row: east only
    b[..., :, -1] = seg[..., :, -1] ^ s[..., :, -1]  # last column: south only
    b[..., -1, -1] = False  # bottom-right pixel is never boundary
    return b


def seg2bmap(mask) -> np.ndarray:
    """Boundary map of an (H,W) mask (bool or 0/1), exactly davis2017-evaluation's ``_seg2bmap``.

    A pixel is boundary when it differs from its east, south or south-east neighbour (pixels outside the
    image count as background); the last row is compared with its east neighbour only, the last column
    with its south neighbour only, and the bottom-right pixel is never boundary. Boundaries therefore sit
    half a pixel towards the origin: a 2x2 square gives the 8-pixel ring of the 3x3 block above-left of it.

    Returns:
        (H,W) bool boundary map.
    """
    m = np.asarray(mask)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"seg2bmap: expected a non-empty 2-D (H, W) mask, got shape {m.shape}")
    return _seg2bmap(m != 0)


def disk(radius: int) -> np.ndarray:
    """skimage.morphology.disk(radius) as bool: ``x^2 + y^2 <= r^2`` on a (2r+1, 2r+1) grid."""
    r = int(radius)
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r  # (2r+1, 2r+1)


def boundary_tolerance(shape: tuple[int, int], bound_th: float = 0.008) -> int:
    """Dilation radius in pixels: ``bound_th`` if ``bound_th >= 1`` else ``ceil(bound_th * ||shape||)``.

    A ``bound_th >= 1`` must be a whole number of pixels (DAVIS's ``disk`` of a fractional radius would be an
    even-sized, off-centre kernel); negative values are rejected.
    """
    if bound_th < 0:
        raise ValueError(f"boundary_f: bound_th must be >= 0, got {bound_th}")
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"boundary_f: bound_th >= 1 is a pixel radius and must be whole, got {bound_th}")
        return int(bound_th)
    # same float arithmetic as davis2017: np.ceil(bound_th * np.linalg.norm(shape))
    return int(np.ceil(bound_th * np.linalg.norm(np.asarray(shape, dtype=np.float64))))


def _matched(src: np.ndarray, dst: np.ndarray, radius: int) -> tuple[int, int]:
    """Counts of ``dst`` pixels within ``radius`` of a ``src`` pixel and vice versa (both non-empty).

    Dilation is done on the bounding box of both boundaries only: every boundary pixel lies inside it, so
    the dilation restricted to it equals the full-image dilation restricted to it.
    """
    rows = np.flatnonzero(np.any(src | dst, axis=1))
    cols = np.flatnonzero(np.any(src | dst, axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    src, dst = src[box], dst[box]  # (h, w) crops
    if radius == 0:
        n = int(np.count_nonzero(src & dst))
        return n, n
    k = disk(radius)  # (2r+1, 2r+1)
    dst_in_src_dil = int(np.count_nonzero(dst & ndimage.binary_dilation(src, structure=k)))
    src_in_dst_dil = int(np.count_nonzero(src & ndimage.binary_dilation(dst, structure=k)))
    return dst_in_src_dil, src_in_dst_dil


def _precision_recall(gt_b: np.ndarray, pred_b: np.ndarray, radius: int) -> tuple[float, float]:
    """davis2017's precision/recall from two (H,W) boundary maps and a dilation radius."""
    n_fg, n_gt = int(np.count_nonzero(pred_b)), int(np.count_nonzero(gt_b))
    if n_fg == 0 and n_gt > 0:
        return 1.0, 0.0
    if n_fg > 0 and n_gt == 0:
        return 0.0, 1.0
    if n_fg == 0 and n_gt == 0:
        return 1.0, 1.0
    fg_match, gt_match = _matched(gt_b, pred_b, radius)  # pred px near GT, GT px near pred
    return fg_match / float(n_fg), gt_match / float(n_gt)


def _f_from_pr(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def boundary_precision_recall(gt, pred, bound_th: float = 0.008) -> tuple[float, float]:
    """Boundary precision and recall of davis2017's ``f_measure`` for (H,W) masks (see module docstring).

    Empty boundaries: no pred & some GT -> (1, 0); some pred & no GT -> (0, 1); both empty -> (1, 1).
    """
    g, p = _pair_2d(gt, pred, "boundary_f")
    if 0 in g.shape:
        raise ValueError(f"boundary_f: empty masks, gt shape {g.shape} and pred shape {p.shape}")
    radius = boundary_tolerance(g.shape, bound_th)
    return _precision_recall(_seg2bmap(g), _seg2bmap(p), radius)


def boundary_f(gt, pred, bound_th: float = 0.008) -> float:
    """Contour accuracy F of davis2017-evaluation for (H,W) masks (bool or 0/1), in [0, 1].

    Args:
        gt, pred: (H,W) masks of one shape.
        bound_th: tolerance; a pixel radius when >= 1, else a fraction of the image diagonal.

    Raises ValueError when an input is not 2-D, the shapes differ, or ``bound_th`` is invalid.
    """
    return _f_from_pr(*boundary_precision_recall(gt, pred, bound_th))


# --- J&F-Mean over videos -------------------------------------------------------------------------


@dataclass(frozen=True)
class JFResult:
    """DAVIS aggregation over all objects of all videos added."""

    j_mean: float
    """Mean over objects of each object's mean J over its frames."""
    f_mean: float
    """Mean over objects of each object's mean F over its frames."""
    jf_mean: float
    """(j_mean + f_mean) / 2, DAVIS's J&F-Mean."""
    num_objects: int
    """Number of objects (masklets) averaged."""
    per_object_j: tuple[float, ...]
    """Each object's mean J, in the order added."""
    per_object_f: tuple[float, ...]
    """Each object's mean F, in the order added."""


class JFMeter:
    """Accumulates per-object J and F means over many videos (DAVIS aggregation).

    Args:
        drop_first_last: drop each video's first and last frame (DAVIS semi-supervised protocol).
        bound_th: boundary tolerance passed to the F measure.
    """

    def __init__(self, drop_first_last: bool = False, bound_th: float = 0.008) -> None:
        self.drop_first_last = drop_first_last
        self.bound_th = bound_th
        self.per_object_j: list[float] = []
        self.per_object_f: list[float] = []

    def add_video(self, gt, pred) -> tuple[np.ndarray, np.ndarray]:
        """Adds one video's objects.

        Args:
            gt: (O,T,H,W) bool (or 0/1) ground-truth masklets; a frame where the object is absent is all False.
            pred: (O,T,H,W) predicted masklets, object o matched to gt object o (zeros for a missed object).

        Returns:
            (j, f): (O,) float64 per-object means over the frames used.
        """
        g, p = np.asarray(gt), np.asarray(pred)
        if g.ndim != 4 or g.shape != p.shape:
            raise ValueError(
                f"JFMeter.add_video: expected gt and pred of one (O, T, H, W) shape, got gt shape {g.shape} "
                f"and pred shape {p.shape}"
            )
        if 0 in g.shape[2:]:
            raise ValueError(f"JFMeter.add_video: empty frames in gt shape {g.shape}")
        g, p = g != 0, p != 0
        if self.drop_first_last:
            if g.shape[1] < 3:
                raise ValueError(f"JFMeter.add_video: drop_first_last needs >= 3 frames, got T={g.shape[1]}")
            g, p = g[:, 1:-1], p[:, 1:-1]  # (O,T-2,H,W)
        elif g.shape[1] == 0:
            raise ValueError(f"JFMeter.add_video: no frames, gt shape {g.shape}")
        radius = boundary_tolerance(g.shape[2:], self.bound_th)
        j = _jaccard_frames(g, p)  # (O,T)
        gb, pb = _seg2bmap(g), _seg2bmap(p)  # (O,T,H,W) boundary maps
        f = np.empty(j.shape, dtype=np.float64)  # (O,T)
        for o, t in np.ndindex(*f.shape):
            f[o, t] = _f_from_pr(*_precision_recall(gb[o, t], pb[o, t], radius))
        j_obj, f_obj = j.mean(axis=1), f.mean(axis=1)  # (O,)
        self.per_object_j.extend(float(v) for v in j_obj)
        self.per_object_f.extend(float(v) for v in f_obj)
        return j_obj, f_obj

    def __len__(self) -> int:
        return len(self.per_object_j)

    def result(self) -> JFResult:
        """J-Mean, F-Mean and J&F-Mean over all objects added. Raises ValueError when there are none."""
        if not self.per_object_j:
            raise ValueError("JFMeter.result: no objects were added")
        j_mean, f_mean = float(np.mean(self.per_object_j)), float(np.mean(self.per_object_f))
        return JFResult(
            j_mean=j_mean,
            f_mean=f_mean,
            jf_mean=(j_mean + f_mean) / 2.0,
            num_objects=len(self.per_object_j),
            per_object_j=tuple(self.per_object_j),
            per_object_f=tuple(self.per_object_f),
        )
