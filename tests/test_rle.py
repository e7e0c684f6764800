"""Kaggle run-length encoding: hand-worked cases, every decode error, and round trips."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from seglib import rle
from seglib.errors import SeglibError


def small_mask():
    """A 4x3 mask whose runs differ between column-major and row-major order.

    [[0 0 1]
     [1 0 0]
     [1 0 0]
     [0 0 0]]
    Column-major pixels: 0 1 1 0 | 0 0 0 0 | 1 0 0 0 -> runs at 1-indexed 2 (length 2) and 9 (length 1).
    Row-major pixels:    0 0 1 | 1 0 0 | 1 0 0 | 0 0 0 -> runs at 3 (length 2) and 7 (length 1).
    """
    mask = np.zeros((4, 3), dtype=np.uint8)
    mask[1:3, 0] = 1
    mask[0, 2] = 1
    return mask


@pytest.mark.parametrize("order, text", [("F", "2 2 9 1"), ("C", "3 2 7 1")])
def test_hand_worked_mask(order, text):
    assert rle.encode(small_mask(), order=order) == text
    np.testing.assert_array_equal(rle.decode(text, (4, 3), order=order), small_mask().astype(bool))


def test_default_order_is_column_major():
    assert rle.encode(small_mask()) == "2 2 9 1"


@pytest.mark.parametrize("order", rle.ORDERS)
def test_empty_mask_is_empty_string(order):
    assert rle.encode(np.zeros((5, 7)), order=order) == ""
    decoded = rle.decode("", (5, 7), order=order)
    assert decoded.shape == (5, 7) and decoded.dtype == bool and not decoded.any()


@pytest.mark.parametrize("order", rle.ORDERS)
def test_full_mask_is_one_run(order):
    assert rle.encode(np.ones((5, 7)), order=order) == "1 35"
    assert rle.decode("1 35", (5, 7), order=order).all()


@pytest.mark.parametrize("missing", [None, float("nan"), np.nan, "   "])
def test_missing_rle_decodes_empty(missing):
    assert not rle.decode(missing, (3, 4)).any()


def test_foreground_is_anything_positive():
    mask = np.array([[0.0, 0.2], [-1.0, 3.0]])
    assert rle.encode(mask, order="C") == "2 1 4 1"


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 2 5", "odd count"),
        ("1 0", "not positive"),
        ("3 -2", "not positive"),
        ("0 2", "below 1"),
        ("11 3", "past the end"),
        ("1 3 2 2", "unsorted or overlap"),
        ("6 2 1 2", "unsorted or overlap"),
        ("1 2.5", "not a whole number"),
        ("1 x", "not a whole number"),
    ],
)
def test_decode_errors_name_the_image(text, message):
    with pytest.raises(SeglibError, match=message) as raised:
        rle.decode(text, (3, 4), name="image_42")
    assert "image_42" in str(raised.value)


def test_non_string_rle_is_rejected():
    with pytest.raises(SeglibError, match="image_7"):
        rle.decode(12, (3, 4), name="image_7")


def test_bad_order_and_shape_are_rejected():
    with pytest.raises(SeglibError, match="order"):
        rle.encode(small_mask(), order="K")
    with pytest.raises(SeglibError, match="order"):
        rle.decode("1 1", (4, 3), order="K")
    with pytest.raises(SeglibError, match="2-D"):
        rle.encode(np.zeros((2, 3, 4)))


def test_run_touching_the_last_pixel_is_allowed():
    assert rle.decode("10 3", (3, 4))[2, 3]


masks = hnp.arrays(
    dtype=np.uint8,
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
    elements=st.integers(0, 1),
)


@settings(max_examples=150, deadline=None)
@given(mask=masks, order=st.sampled_from(rle.ORDERS))
def test_round_trip(mask, order):
    text = rle.encode(mask, order=order)
    np.testing.assert_array_equal(rle.decode(text, mask.shape, order=order), mask.astype(bool))


@settings(max_examples=150, deadline=None)
@given(mask=masks, order=st.sampled_from(rle.ORDERS))
def test_encoded_runs_are_sorted_positive_and_in_bounds(mask, order):
    numbers = np.array(rle.encode(mask, order=order).split(), dtype=np.int64)
    starts, lengths = numbers[0::2], numbers[1::2]
    assert (starts >= 1).all() and (lengths >= 1).all()
    ends = starts + lengths - 1  # 1-indexed last pixel of each run
    assert (ends <= mask.size).all()
    # Runs are separated by at least one background pixel, otherwise they would be one run.
    assert (starts[1:] > ends[:-1] + 1).all()
    assert lengths.sum() == np.count_nonzero(mask)


def test_carvana_sized_mask_round_trips_in_row_major_order():
    rng = np.random.default_rng(0)
    # Blocky random mask: long runs like a real car mask, plus isolated pixels.
    mask = np.repeat(rng.random((1918 // 2, 1280 // 64)) > 0.5, 2, axis=0).repeat(64, axis=1)
    mask[rng.integers(0, 1918, 500), rng.integers(0, 1280, 500)] ^= True
    text = rle.encode(mask, order="C")
    np.testing.assert_array_equal(rle.decode(text, (1918, 1280), order="C"), mask)


def classic_kernel_encode(mask, order):
    """The padded-copy RLE every Kaggle kernel used; encode must give the same string, however it gets there."""
    pixels = np.concatenate([[0], (np.asarray(mask) > 0).flatten(order=order), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


@settings(max_examples=150, deadline=None)
@given(mask=masks, order=st.sampled_from(rle.ORDERS))
def test_encode_matches_the_classic_kernel_for_any_dtype_and_memory_layout(mask, order):
    # encode takes a different path for bool masks and for C-contiguous, F-contiguous and strided arrays.
    expected = classic_kernel_encode(mask, order)
    padded = np.zeros((mask.shape[0] * 2, mask.shape[1] * 3), dtype=bool)
    padded[::2, ::3] = mask
    for layout in (mask.astype(bool), np.asfortranarray(mask), np.asfortranarray(mask.astype(bool)), padded[::2, ::3]):
        assert rle.encode(layout, order=order) == expected
    assert rle.encode(mask.astype(np.float32) - 0.5 * (mask == 0), order=order) == expected  # negatives are background
