"""COCO RLE helpers: round trips (compressed str/bytes and uncompressed counts) and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sam3m4.data import decode_rle, encode_mask
from sam3m4.data.rle import masks_to_boxes
from sam3m4.errors import DataFormatError

WHERE = "val.json: annotations[3].segmentation"


def uncompressed(mask: np.ndarray) -> list[int]:
    """Column-major runs of 0s and 1s, starting with a (possibly empty) run of 0s."""
    flat = mask.T.ravel().astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat.size and flat[0] else runs


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 24).flatmap(lambda h: st.integers(1, 24).flatmap(
    lambda w: arrays(np.bool_, (h, w)))))
def test_round_trip_random_masks(mask):
    h, w = mask.shape
    rle = encode_mask(mask)
    assert rle["size"] == [h, w] and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(decode_rle(rle, h, w, where=WHERE), mask)
    as_bytes = {"size": [h, w], "counts": rle["counts"].encode()}
    np.testing.assert_array_equal(decode_rle(as_bytes, h, w, where=WHERE), mask)
    as_list = {"size": [h, w], "counts": uncompressed(mask)}
    np.testing.assert_array_equal(decode_rle(as_list, h, w, where=WHERE), mask)


def test_round_trip_large_structured_masks():
    rng = np.random.default_rng(0)
    for _ in range(5):
        h, w = rng.integers(50, 300, size=2)
        mask = np.zeros((h, w), bool)
        for _ in range(4):
            y, x = rng.integers(0, h), rng.integers(0, w)
            mask[y:y + rng.integers(1, 80), x:x + rng.integers(1, 80)] ^= True
        rle = encode_mask(mask)
        out = decode_rle(rle, int(h), int(w), where=WHERE)
        assert out.dtype == bool and out.shape == (h, w)
        np.testing.assert_array_equal(out, mask)
    full = np.ones((7, 5), bool)
    np.testing.assert_array_equal(decode_rle(encode_mask(full), 7, 5, where=WHERE), full)


def test_encode_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        encode_mask(np.zeros((2, 3, 4), bool))


def test_masks_to_boxes_xyxy_pixel_edges():
    masks = np.zeros((2, 10, 12), bool)
    masks[0, 2:5, 3:9] = True
    assert masks_to_boxes(masks).tolist() == [[3, 2, 9, 5], [0, 0, 0, 0]]
    assert masks_to_boxes(masks).dtype == np.float32


GOOD = encode_mask(np.eye(6, 8, dtype=bool))


@pytest.mark.parametrize("rle, field, text", [
    ({"counts": GOOD["counts"]}, ".size", "missing key"),
    ({"size": [6, 8]}, ".counts", "missing key"),
    ({"size": [10, 12], "counts": GOOD["counts"]}, ".size", "RLE size [10, 12] != image size [6, 8]"),
    ({"size": "6x8", "counts": GOOD["counts"]}, ".size", "expected [height, width]"),
    ({"size": [6, 8], "counts": 17}, ".counts", "expected str"),
    ({"size": [6, 8], "counts": ""}, ".counts", "corrupt"),
    ({"size": [6, 8], "counts": "3"}, ".counts", "corrupt"),           # runs sum to 3, not 48
    ({"size": [6, 8], "counts": GOOD["counts"] + "9"}, ".counts", "corrupt"),
    ({"size": [6, 8], "counts": "\x7f\x7f"}, ".counts", "corrupt"),    # not RLE characters
    ({"size": [6, 8], "counts": "a"}, ".counts", "corrupt"),           # group never ends
    ({"size": [6, 8], "counts": [40, 9]}, ".counts", "do not sum"),
    ({"size": [6, 8], "counts": [1, "2"]}, ".counts", "list of ints"),
    ([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], "", "polygons are not supported"),
    (None, "", "expected a COCO RLE dict"),
])
def test_bad_rle_names_file_and_field(rle, field, text):
    with pytest.raises(DataFormatError) as info:
        decode_rle(rle, 6, 8, where=WHERE)
    message = str(info.value)
    assert message.startswith(WHERE + field + ":"), message
    assert text in message and "\n" not in message
