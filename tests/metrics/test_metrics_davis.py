"""Tests for sam3m4.metrics.davis: hand-counted J/F examples, properties, DAVIS aggregation, errors.

Run: python -m pytest tests/metrics/test_metrics_davis.py -q
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from sam3m4.metrics import (
    JFMeter,
    boundary_f,
    boundary_precision_recall,
    boundary_tolerance,
    disk,
    jaccard,
    seg2bmap,
)


def box(h, w, rows, cols):
    """(h,w) bool mask with rows[0]..rows[1]-1 x cols[0]..cols[1]-1 set."""
    m = np.zeros((h, w), dtype=bool)
    m[rows[0] : rows[1], cols[0] : cols[1]] = True
    return m


def pixels(mask):
    return set(map(tuple, np.argwhere(mask).tolist()))


# 8x8 masks reused below.
SQ2 = box(8, 8, (2, 4), (2, 4))  # 2x2 square, rows 2-3, cols 2-3
SQ3 = box(8, 8, (2, 5), (2, 5))  # 3x3 square, rows 2-4, cols 2-4
EMPTY = np.zeros((8, 8), dtype=bool)


# --- seg2bmap by hand -----------------------------------------------------------------------------


def test_seg2bmap_square_is_ring_offset_towards_origin():
    # A pixel is boundary when it differs from E, S or SE. Around the 2x2 square at rows/cols 2-3 that is
    # the 3x3 block rows/cols 1-3 except (2,2) (whose E, S, SE are all inside the square): 8 pixels.
    ring = {(1, 1), (1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2), (3, 3)}
    assert pixels(seg2bmap(SQ2)) == ring
    # 3x3 square: the 4x4 block rows/cols 1-4 minus the 2x2 block rows/cols 2-3 (E, S, SE all inside) = 12.
    assert len(pixels(seg2bmap(SQ3))) == 12
    assert pixels(seg2bmap(SQ3)) == pixels(box(8, 8, (1, 5), (1, 5))) - pixels(box(8, 8, (2, 4), (2, 4)))


def test_seg2bmap_edge_rules():
    # Only the bottom-right pixel set (4x4): (2,2) differs from its SE; (2,3) is in the last column and
    # differs from its south; (3,2) is in the last row and differs from its east; (3,3) is forced to 0.
    m = box(4, 4, (3, 4), (3, 4))
    assert pixels(seg2bmap(m)) == {(2, 2), (2, 3), (3, 2)}
    # Last column all set: the column itself is compared to the south only (equal) -> not boundary, even
    # though its padded east neighbour is 0; column 2 differs from its east (rows 0-2) and (3,2) from its
    # east in the last row -> boundary = column 2, 4 pixels.
    m = box(4, 4, (0, 4), (3, 4))
    assert pixels(seg2bmap(m)) == {(0, 2), (1, 2), (2, 2), (3, 2)}
    # All ones: nothing differs inside, the last row/column compare to east/south only -> no boundary.
    assert not seg2bmap(np.ones((4, 4), dtype=bool)).any()
    # 0/1 ints are accepted.
    assert seg2bmap(m.astype(np.uint8)).dtype == bool


def naive_seg2bmap(m):
    """The rule written pixel by pixel (reference for the vectorised one)."""
    h, w = m.shape
    b = np.zeros_like(m)
    for i in range(h):
        for j in range(w):
            at = lambda y, x: m[y, x] if y < h and x < w else False  # noqa: E731
            if i == h - 1 and j == w - 1:
                continue
            if i == h - 1:
                b[i, j] = m[i, j] != at(i, j + 1)
            elif j == w - 1:
                b[i, j] = m[i, j] != at(i + 1, j)
            else:
                b[i, j] = m[i, j] != at(i, j + 1) or m[i, j] != at(i + 1, j) or m[i, j] != at(i + 1, j + 1)
    return b


# --- disk and tolerance ---------------------------------------------------------------------------


def test_disk_matches_skimage():
    # skimage.morphology.disk(1) is the 4-neighbourhood cross; disk(2) the 13-pixel diamond-ish disk.
    assert disk(0).tolist() == [[True]]
    assert disk(1).astype(int).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert disk(2).astype(int).tolist() == [
        [0, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 0, 0],
    ]


def test_boundary_tolerance():
    assert boundary_tolerance((480, 854)) == 8  # ceil(0.008 * 979.64) = ceil(7.84)
    assert boundary_tolerance((8, 8)) == 1  # ceil(0.008 * 11.31) = ceil(0.09)
    assert boundary_tolerance((8, 8), 3) == 3  # >= 1: a pixel radius
    assert boundary_tolerance((8, 8), 0) == 0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="bound_th"):
            boundary_tolerance((8, 8), bad)


# --- J and F by hand ------------------------------------------------------------------------------


def test_jaccard_by_hand():
    assert jaccard(SQ2, SQ3) == pytest.approx(4 / 9)  # 2x2 inside 3x3
    assert jaccard(EMPTY, EMPTY) == 1.0
    assert jaccard(EMPTY, SQ2) == 0.0
    assert jaccard(SQ2.astype(np.uint8), SQ2.astype(np.int64)) == 1.0


def test_boundary_f_square_in_bigger_square_radius_1():
    # GT ring G (8 px, see above), pred ring P = 4x4 block rows/cols 1-4 minus rows/cols 2-3 (12 px).
    # Radius 1 = the 4-neighbourhood. P pixels with a G pixel at most one step away: all but (4,4)
    # (neighbours (3,4), (4,3), (5,4), (4,5) are not in G) -> precision 11/12. Every G pixel is in P or next
    # to one ((2,3)-(2,4), (3,2)-(4,2), (3,3)-(3,4)) -> recall 8/8. F = 2 * 11/12 / (11/12 + 1) = 22/23.
    p, r = boundary_precision_recall(SQ2, SQ3, bound_th=1)
    assert (p, r) == (pytest.approx(11 / 12), 1.0)
    assert boundary_f(SQ2, SQ3, bound_th=1) == pytest.approx(22 / 23)
    # The default 0.008 gives radius ceil(0.008 * sqrt(128)) = 1 on 8x8, so the same number.
    assert boundary_f(SQ2, SQ3) == pytest.approx(22 / 23)
    # Swapping gt and pred swaps precision and recall; F is unchanged.
    assert boundary_precision_recall(SQ3, SQ2, bound_th=1) == (1.0, pytest.approx(11 / 12))
    assert boundary_f(SQ3, SQ2, bound_th=1) == pytest.approx(22 / 23)


def test_boundary_f_radius_0():
    # No tolerance: matched = |P & G| = (1,1), (1,2), (1,3), (2,1), (3,1) = 5. P = 5/12, R = 5/8,
    # F = 2 * (5/12)(5/8) / (5/12 + 5/8) = (50/96) / (25/24) = 0.5.
    assert boundary_precision_recall(SQ2, SQ3, bound_th=0) == (pytest.approx(5 / 12), pytest.approx(5 / 8))
    assert boundary_f(SQ2, SQ3, bound_th=0) == pytest.approx(0.5)


def test_boundary_f_shifted_square_radius_1_and_2():
    # GT ring G = rows 1-3 x cols 1-3 minus (2,2); pred = the square shifted 3 columns right (cols 5-6),
    # ring P = rows 1-3 x cols 4-6 minus (2,5).
    # Radius 1: P's column 4 ((1,4), (2,4), (3,4)) touches G's column 3; nothing else -> P = 3/8, by symmetry
    # R = 3/8 -> F = 3/8.
    shifted = box(8, 8, (2, 4), (5, 7))
    assert boundary_f(SQ2, shifted, bound_th=1) == pytest.approx(3 / 8)
    # Radius 2 (disk(2) adds offsets (0, +-2), (+-2, 0), (+-1, +-1)): also (1,5) and (3,5) reach (1,3), (3,3)
    # two columns away; (1,6), (2,6), (3,6) are 3 away -> P = 5/8, R = 5/8 by symmetry -> F = 5/8.
    assert boundary_f(SQ2, shifted, bound_th=2) == pytest.approx(5 / 8)


def test_boundary_f_empty_cases():
    assert boundary_precision_recall(SQ2, EMPTY) == (1.0, 0.0)  # no pred, some GT
    assert boundary_precision_recall(EMPTY, SQ2) == (0.0, 1.0)  # some pred, no GT
    assert boundary_precision_recall(EMPTY, EMPTY) == (1.0, 1.0)
    assert boundary_f(SQ2, EMPTY) == 0.0
    assert boundary_f(EMPTY, SQ2) == 0.0
    assert boundary_f(EMPTY, EMPTY) == 1.0
    # DAVIS quirk kept: an all-ones mask has no boundary pixels, so it "matches" an empty one in F.
    full = np.ones((8, 8), dtype=bool)
    assert boundary_f(EMPTY, full) == 1.0
    assert jaccard(EMPTY, full) == 0.0


def test_shape_errors():
    for fn in (jaccard, boundary_f, boundary_precision_recall):
        with pytest.raises(ValueError, match=r"\(8, 8\).*\(8, 9\)"):
            fn(SQ2, np.zeros((8, 9), dtype=bool))
        with pytest.raises(ValueError, match="2-D"):
            fn(SQ2[None], SQ2[None])
    with pytest.raises(ValueError, match="2-D"):
        seg2bmap(np.zeros((2, 3, 3), dtype=bool))
    with pytest.raises(ValueError, match="O, T, H, W"):
        JFMeter().add_video(SQ2[None, None], SQ2[None, None, :, :7])
    with pytest.raises(ValueError, match="T=2"):
        JFMeter(drop_first_last=True).add_video(np.stack([SQ2, SQ2])[None], np.stack([SQ2, SQ2])[None])
    with pytest.raises(ValueError, match="no objects"):
        JFMeter().result()


# --- properties -----------------------------------------------------------------------------------


def naive_f(gt, pred, radius):
    """Brute force: a boundary pixel is matched when a boundary pixel of the other map is within radius."""
    gb, pb = np.argwhere(naive_seg2bmap(gt)), np.argwhere(naive_seg2bmap(pred))
    if len(pb) == 0 or len(gb) == 0:
        p, r = {(0, 0): (1, 1), (0, 1): (1, 0), (1, 0): (0, 1)}[(int(len(pb) > 0), int(len(gb) > 0))]
    else:
        d2 = ((pb[:, None, :] - gb[None, :, :]) ** 2).sum(-1)  # (n_pred, n_gt)
        p = (d2.min(1) <= radius**2).mean()
        r = (d2.min(0) <= radius**2).mean()
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def davis_f_full_frame(gt, pred, bound_th=0.008):
    """davis2017's f_measure transcribed (full-frame dilation, no cropping)."""
    radius = boundary_tolerance(gt.shape, bound_th)
    fg_b, gt_b = naive_seg2bmap(pred), naive_seg2bmap(gt)
    fg_dil = ndimage.binary_dilation(fg_b, disk(radius))
    gt_dil = ndimage.binary_dilation(gt_b, disk(radius))
    n_fg, n_gt = fg_b.sum(), gt_b.sum()
    if n_fg == 0 and n_gt > 0:
        p, r = 1, 0
    elif n_fg > 0 and n_gt == 0:
        p, r = 0, 1
    elif n_fg == 0 and n_gt == 0:
        p, r = 1, 1
    else:
        p, r = (fg_b & gt_dil).sum() / float(n_fg), (gt_b & fg_dil).sum() / float(n_gt)
    return 0 if p + r == 0 else 2 * p * r / (p + r)


shapes = st.tuples(st.integers(1, 8), st.integers(1, 8))
mask_pairs = shapes.flatmap(lambda s: st.tuples(arrays(bool, s), arrays(bool, s)))
thresholds = st.sampled_from([0.008, 0.1, 0.3, 0, 1, 2, 3])
fast = settings(max_examples=50, deadline=None)


@fast
@given(mask_pairs, thresholds)
def test_properties_of_j_and_f(pair, th):
    gt, pred = pair
    j, f = jaccard(gt, pred), boundary_f(gt, pred, th)
    assert 0.0 <= j <= 1.0 and 0.0 <= f <= 1.0
    assert jaccard(gt, gt) == 1.0 and boundary_f(gt, gt, th) == 1.0
    assert jaccard(pred, gt) == j
    assert boundary_f(pred, gt, th) == pytest.approx(f)
    p, r = boundary_precision_recall(gt, pred, th)
    assert boundary_precision_recall(pred, gt, th) == (r, p)
    np.testing.assert_array_equal(seg2bmap(gt), naive_seg2bmap(gt))
    assert f == pytest.approx(naive_f(gt, pred, boundary_tolerance(gt.shape, th)))


@fast
@given(mask_pairs)
def test_disjoint_nonempty_jaccard_is_zero(pair):
    a, b = pair
    b = b & ~a
    if a.any() and b.any():
        assert jaccard(a, b) == 0.0


def test_matches_full_frame_transcription_on_larger_masks():
    # Cropped dilation must equal davis2017's full-frame dilation; blobs touching the image edges included.
    rng = np.random.default_rng(0)
    for _ in range(6):
        gt = ndimage.binary_opening(rng.random((60, 90)) < 0.55, iterations=2)
        pred = ndimage.binary_dilation(gt, iterations=int(rng.integers(0, 3))) ^ (rng.random((60, 90)) < 0.02)
        for th in (0.008, 0.03, 2):
            assert boundary_f(gt, pred, th) == davis_f_full_frame(gt, pred, th)


# --- DAVIS aggregation ----------------------------------------------------------------------------


def test_jf_meter_aggregation_by_hand():
    # Per-frame (J, F) on 8x8 with bound_th=1: same mask -> (1, 1); both empty -> (1, 1);
    # pred empty, GT not -> (0, 0); GT SQ2 vs pred SQ3 -> (4/9, 22/23) (worked out above).
    same, both_empty, missed, bigger = (SQ2, SQ2), (EMPTY, EMPTY), (SQ2, EMPTY), (SQ2, SQ3)

    def video(*objects):  # each object: list of (gt, pred) frames -> (O,T,H,W) gt and pred
        gt = np.stack([np.stack([g for g, _ in frames]) for frames in objects])
        pred = np.stack([np.stack([p for _, p in frames]) for frames in objects])
        return gt, pred

    video_a = video([same, bigger, missed, same])  # one object, 4 frames
    video_b = video([same, same, missed], [both_empty, missed, bigger])  # two objects, 3 frames

    # All frames. a: J = (1 + 4/9 + 0 + 1)/4 = 11/18, F = (1 + 22/23 + 0 + 1)/4 = 17/23.
    # b1: J = F = (1 + 1 + 0)/3 = 2/3. b2: J = (1 + 0 + 4/9)/3 = 13/27, F = (1 + 0 + 22/23)/3 = 15/23.
    # J-Mean = (11/18 + 2/3 + 13/27)/3 = (95/54)/3 = 95/162; F-Mean = (17/23 + 2/3 + 15/23)/3 = 142/207.
    meter = JFMeter(bound_th=1)
    j_a, f_a = meter.add_video(*video_a)
    np.testing.assert_allclose((j_a, f_a), [[11 / 18], [17 / 23]])
    meter.add_video(*video_b)
    res = meter.result()
    assert res.num_objects == 3
    np.testing.assert_allclose(res.per_object_j, [11 / 18, 2 / 3, 13 / 27])
    np.testing.assert_allclose(res.per_object_f, [17 / 23, 2 / 3, 15 / 23])
    assert res.j_mean == pytest.approx(95 / 162)
    assert res.f_mean == pytest.approx(142 / 207)
    assert res.jf_mean == pytest.approx((95 / 162 + 142 / 207) / 2)

    # drop_first_last. a keeps frames 1-2: J = (4/9 + 0)/2 = 2/9, F = (22/23 + 0)/2 = 11/23.
    # b1 keeps frame 1 (same): 1, 1. b2 keeps frame 1 (missed): 0, 0.
    # J-Mean = (2/9 + 1 + 0)/3 = 11/27; F-Mean = (11/23 + 1 + 0)/3 = 34/69. Objects weigh equally,
    # whatever their frame counts.
    meter = JFMeter(drop_first_last=True, bound_th=1)
    meter.add_video(*video_a)
    meter.add_video(*video_b)
    res = meter.result()
    np.testing.assert_allclose(res.per_object_j, [2 / 9, 1, 0])
    np.testing.assert_allclose(res.per_object_f, [11 / 23, 1, 0])
    assert (res.j_mean, res.f_mean) == (pytest.approx(11 / 27), pytest.approx(34 / 69))
    assert res.jf_mean == pytest.approx((11 / 27 + 34 / 69) / 2)


def test_jf_meter_matches_per_frame_functions():
    rng = np.random.default_rng(1)
    gt = rng.random((2, 3, 12, 16)) < 0.4  # (O,T,H,W)
    pred = gt ^ (rng.random(gt.shape) < 0.1)
    j, f = JFMeter().add_video(gt.astype(np.uint8), pred)
    for o in range(2):
        assert j[o] == pytest.approx(np.mean([jaccard(gt[o, t], pred[o, t]) for t in range(3)]))
        assert f[o] == pytest.approx(np.mean([boundary_f(gt[o, t], pred[o, t]) for t in range(3)]))
