"""``runtime.mask_agreement`` (what the ``xnnpack_mask_iou`` gate rests on) on hand-worked masks.

Each mask is 8 x 8; the expected IoU is counted by hand from the pixels in the comment, not from the code.
"""

from __future__ import annotations

import pytest
import torch

from sam3m4.export.runtime import KEEP_SCORE, mask_agreement


def _logits(*rows: tuple[int, int, int, int]) -> torch.Tensor:
    """(1, Q, 8, 8) logits: +3 inside each query's box (r0, r1, c0, c1) (half-open), -3 elsewhere; None -> empty."""
    out = torch.full((1, len(rows), 8, 8), -3.0)
    for q, box in enumerate(rows):
        if box is not None:
            r0, r1, c0, c1 = box
            out[0, q, r0:r1, c0:c1] = 3.0
    return out


KEEP_ALL = torch.ones(1, 1)


def test_disjoint_masks_agree_zero():
    left, right = _logits((0, 8, 0, 4)), _logits((0, 8, 4, 8))  # 32 px each, no pixel shared
    assert mask_agreement(left, right, KEEP_ALL)[0] == 0.0


def test_half_overlap():
    top, whole = _logits((0, 4, 0, 8)), _logits((0, 8, 0, 8))  # 32 px inside 64 px: 32 / 64
    assert mask_agreement(top, whole, KEEP_ALL)[0] == pytest.approx(0.5)
    a, b = _logits((0, 4, 0, 8)), _logits((2, 6, 0, 8))  # rows 0-3 vs 2-5: 16 shared of 48 -> 1/3
    assert mask_agreement(a, b, KEEP_ALL)[0] == pytest.approx(1 / 3)


def test_empty_against_empty_agrees_fully_and_empty_against_a_mask_not_at_all():
    empty = _logits(None)
    assert mask_agreement(empty, empty, KEEP_ALL)[0] == 1.0
    assert mask_agreement(empty, _logits((0, 1, 0, 1)), KEEP_ALL)[0] == 0.0  # a missed single pixel: 0 / 1


def test_a_logit_of_exactly_zero_is_background():
    zero = torch.zeros(1, 1, 8, 8)  # mask_logits > 0 is the mask: 0 is not in it
    assert mask_agreement(zero, _logits(None), KEEP_ALL)[0] == 1.0
    assert mask_agreement(zero, _logits((0, 8, 0, 8)), KEEP_ALL)[0] == 0.0


def test_only_the_queries_eager_keeps_are_averaged():
    pte = _logits((0, 8, 0, 8), (0, 8, 0, 4), (0, 4, 0, 8))
    eager = _logits((0, 8, 0, 8), (0, 8, 4, 8), (0, 8, 0, 8))  # per query: 1, 0, 0.5
    scores = torch.tensor([[0.9, 0.1, KEEP_SCORE]])  # query 1 dropped (< 0.5); 0.5 itself is kept
    iou, which = mask_agreement(pte, eager, scores)
    assert iou == pytest.approx((1.0 + 0.5) / 2) and which.startswith("kept by eager (2 of 3")
    iou, which = mask_agreement(pte, eager, torch.full((1, 3), 0.1))  # none kept: all three
    assert iou == pytest.approx((1.0 + 0.0 + 0.5) / 3) and which.startswith("all 3")


def test_max_abs_error_counts_equal_infinities_as_equal_and_keeps_a_nan():
    import math

    from sam3m4.export.runtime import _max_abs_error

    inf = float("inf")
    eager = torch.tensor([[-inf, 1.0, 2.0]])
    assert _max_abs_error(torch.tensor([[-inf, 1.25, 2.0]]), eager) == 0.25  # the masked -inf agrees
    assert _max_abs_error(torch.tensor([[inf, 1.0, 2.0]]), eager) == inf  # the opposite infinity does not
    assert math.isnan(_max_abs_error(torch.tensor([[-inf, float("nan"), 2.0]]), eager))
