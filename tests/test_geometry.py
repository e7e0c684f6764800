"""Geometry: pad/resize to the model size and back, and the downscale round trip of masks."""

import json

import numpy as np
import pytest

from seglib.geometry import Geometry, downscale_roundtrip


@pytest.mark.parametrize("channels", [1, 3])
def test_pad_to_model_and_back_is_exact(channels):
    rng = np.random.default_rng(channels)
    images = rng.normal(size=(3, 101, 101, channels)).astype(np.float32)
    geometry = Geometry("pad", 128, (101, 101))
    padded = geometry.to_model(images)
    assert tuple(padded.shape) == (3, 128, 128, channels)
    restored = geometry.to_original(padded)
    assert restored.dtype == np.float32
    np.testing.assert_array_equal(restored, images)


@pytest.mark.parametrize("height, width, size", [(101, 101, 128), (100, 100, 128), (101, 100, 112),
                                                 (64, 63, 64), (7, 8, 12)])
def test_pad_inverse_exact_for_odd_and_even_sizes(height, width, size):
    rng = np.random.default_rng(height * 1000 + width)
    images = rng.uniform(-5, 5, size=(2, height, width, 2)).astype(np.float32)
    geometry = Geometry("pad", size, (height, width))
    padded = np.asarray(geometry.to_model(images))
    assert padded.shape == (2, size, size, 2)
    np.testing.assert_array_equal(geometry.to_original(padded), images)
    # The original sits in the padded image at (pad_top, pad_left), both within one pixel of centred.
    top, left = geometry.pad_top, geometry.pad_left
    assert abs((size - height - top) - top) <= 1 and abs((size - width - left) - left) <= 1
    np.testing.assert_array_equal(padded[:, top:top + height, left:left + width], images)


def test_padding_is_reflective():
    rng = np.random.default_rng(7)
    image = rng.normal(size=(1, 101, 101, 1)).astype(np.float32)
    geometry = Geometry("pad", 128, (101, 101))
    padded = np.asarray(geometry.to_model(image))
    top, left = geometry.pad_top, geometry.pad_left
    # Reflection without repeating the edge: padded row (top - k) equals original row k.
    for k in (1, 2, top):
        np.testing.assert_array_equal(padded[0, top - k, left:left + 101], image[0, k])
        np.testing.assert_array_equal(padded[0, top:top + 101, left - k], image[0, :, k])
    bottom = top + 100  # padded index of the original's last row
    np.testing.assert_array_equal(padded[0, bottom + 3, left:left + 101], image[0, 100 - 3])
    # A corner pixel reflects in both directions.
    assert padded[0, top - 2, left - 5, 0] == image[0, 2, 5, 0]


def test_resize_mode_returns_original_size():
    rng = np.random.default_rng(3)
    images = rng.uniform(size=(2, 101, 101, 1)).astype(np.float32)
    geometry = Geometry("resize", 64, (101, 101))
    small = geometry.to_model(images)
    assert tuple(small.shape) == (2, 64, 64, 1)
    back = geometry.to_original(small)
    assert back.shape == (2, 101, 101, 1) and back.dtype == np.float32
    # A constant image survives bilinear resizing both ways.
    constant = np.full((1, 101, 101, 1), 0.25, dtype=np.float32)
    np.testing.assert_allclose(geometry.to_original(geometry.to_model(constant)), constant, atol=1e-6)


def test_invalid_mode():
    with pytest.raises(ValueError, match="crop"):
        Geometry("crop", 128, (101, 101))


def test_pad_to_smaller_size():
    with pytest.raises(ValueError):
        Geometry("pad", 96, (101, 101))
    with pytest.raises(ValueError):
        Geometry("pad", 128, (101, 130))
    # Resizing down is what resize mode is for.
    assert Geometry("resize", 96, (101, 101)).size == 96


def test_pad_beyond_reflection_reach():
    with pytest.raises(ValueError):
        Geometry("pad", 32, (8, 8))


@pytest.mark.parametrize("mode, size", [("pad", 128), ("resize", 64)])
def test_to_dict_round_trip(mode, size):
    geometry = Geometry(mode, size, (101, 100))
    description = json.loads(json.dumps(geometry.to_dict()))  # survives JSON, as in train_config.json
    rebuilt = Geometry.from_dict(description)
    assert (rebuilt.mode, rebuilt.size, rebuilt.original_size) == (mode, size, (101, 100))
    assert (rebuilt.pad_top, rebuilt.pad_left) == (geometry.pad_top, geometry.pad_left)
    assert rebuilt.to_dict() == geometry.to_dict()


@pytest.mark.parametrize("size", [128, 64, 32, 16])
def test_downscale_roundtrip_full_and_empty(size):
    masks = np.stack([np.ones((101, 101), bool), np.zeros((101, 101), bool)])
    result = downscale_roundtrip(masks, size)
    assert result.shape == (2, 101, 101) and result.dtype == bool
    assert result[0].all()
    assert not result[1].any()


def test_downscale_roundtrip_loses_a_single_pixel_at_32():
    mask = np.zeros((1, 101, 101), bool)
    mask[0, 50, 50] = True
    assert not downscale_roundtrip(mask, 32).any()


def test_downscale_roundtrip_keeps_a_large_block():
    mask = np.zeros((1, 101, 101), bool)
    mask[0, 20:80, 30:90] = True
    result = downscale_roundtrip(mask, 32)[0]
    # The interior survives; only a band around the edges may move.
    assert result[30:70, 40:80].all()
    assert not result[:10].any() and not result[:, :20].any()
