"""Streaming mean/std images against numpy over the stacked images."""

import numpy as np
import pytest

from seglib import stats
from seglib.artifacts import save_npz
from seglib.errors import SeglibError


def check_against_numpy(result, stacked):
    stacked = stacked.astype(np.float64)
    np.testing.assert_allclose(result.mean_image, stacked.mean(axis=0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.std_image, stacked.std(axis=0), rtol=0, atol=1e-6)
    channels = stacked.reshape(stacked.shape[:3] + (-1,))
    np.testing.assert_allclose(result.channel_mean, channels.mean(axis=(0, 1, 2)), rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.channel_std, channels.std(axis=(0, 1, 2)), rtol=0, atol=1e-6)
    assert result.count == len(stacked)


@pytest.mark.parametrize("batch_size", [1, 8, 37, 100])
def test_uint8_colour_images(batch_size):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(37, 9, 7, 3), dtype=np.uint8)
    result = stats.mean_std(iter(images), batch_size=batch_size)
    assert result.mean_image.shape == (9, 7, 3) and result.channel_mean.shape == (3,)
    check_against_numpy(result, images)


def test_grayscale_images_keep_their_shape():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(23, 10, 12), dtype=np.uint8)
    result = stats.mean_std(list(images), batch_size=5)
    assert result.mean_image.shape == (10, 12) and result.std_image.shape == (10, 12)
    assert result.channel_mean.shape == (1,)
    check_against_numpy(result, images)


def test_large_offset_keeps_precision():
    # A plain sum of squares would lose about 1e-4 of the std here to cancellation.
    rng = np.random.default_rng(2)
    images = 1e6 + rng.normal(size=(300, 6, 5, 2))
    result = stats.mean_std(images, batch_size=8)
    check_against_numpy(result, images)
    np.testing.assert_allclose(result.std_image, images.std(axis=0), rtol=1e-9)
    assert np.all(np.abs(result.channel_std - 1.0) < 0.1)


def test_float32_images_added_to_running_moments():
    rng = np.random.default_rng(3)
    images = (rng.random((30, 4, 4, 3)) * 255).astype(np.float32)
    moments = stats.RunningMoments(batch_size=7)
    for image in images:
        moments.add(image)
    check_against_numpy(moments.result(), images)


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    result = stats.mean_std(rng.integers(0, 256, size=(11, 5, 5, 3)), batch_size=4)
    path = stats.save_mean_std(tmp_path / "mean_std.npz", result)
    loaded = stats.load_mean_std(path)
    for field in ("mean_image", "std_image", "channel_mean", "channel_std"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(result, field))
    assert loaded.count == 11
    assert [p.name for p in tmp_path.iterdir()] == ["mean_std.npz"]  # no temporary left behind


def test_a_foreign_npz_is_named(tmp_path):
    path = save_npz(tmp_path / "mean_std.npz", mean_image=np.zeros((2, 2)))
    with pytest.raises(SeglibError, match="mean_std.npz is not a mean/std file: it lacks std_image"):
        stats.load_mean_std(path)


def test_empty_input_raises():
    with pytest.raises(SeglibError, match="no images"):
        stats.mean_std([])


def test_shape_change_raises_naming_both_shapes():
    images = [np.zeros((4, 4, 3))] * 5 + [np.zeros((4, 5, 3))]
    with pytest.raises(SeglibError, match=r"image 5 has shape \(4, 5, 3\).*\(4, 4, 3\)"):
        stats.mean_std(images, batch_size=2)


def test_bad_arguments_raise():
    with pytest.raises(SeglibError, match="batch_size"):
        stats.mean_std([np.zeros((2, 2))], batch_size=0)
    with pytest.raises(SeglibError, match=r"shape \(4,\)"):
        stats.mean_std([np.zeros(4)])


@pytest.mark.parametrize("dtype, low, high", [(np.uint8, 0, 256), (np.uint16, 60000, 65536)])
def test_integer_images_across_many_batches(dtype, low, high):
    rng = np.random.default_rng(5)
    images = rng.integers(low, high, size=(29, 6, 5, 3)).astype(dtype)
    check_against_numpy(stats.mean_std(iter(images), batch_size=5), images)


def test_uint16_large_offset_small_spread_is_exact():
    rng = np.random.default_rng(6)
    images = (65000 + rng.integers(0, 3, size=(50, 4, 4))).astype(np.uint16)
    result = stats.mean_std(images, batch_size=16)
    stacked = images.astype(np.float64)
    np.testing.assert_allclose(result.std_image, stacked.std(axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(result.mean_image, stacked.mean(axis=0), rtol=1e-15, atol=0)


def test_uint8_extremes_over_many_batches():
    images = np.zeros((1000, 1, 1), dtype=np.uint8)
    images[::2] = 255
    result = stats.mean_std(images)
    expected = images.astype(np.float64)
    assert result.count == 1000
    np.testing.assert_allclose(result.mean_image, expected.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(result.std_image, expected.std(axis=0), rtol=1e-14)


def test_bool_masks_and_mixed_dtypes():
    rng = np.random.default_rng(7)
    masks = rng.random((13, 5, 4)) < 0.3
    check_against_numpy(stats.mean_std(masks, batch_size=4), masks)
    uint8 = rng.integers(0, 256, size=(9, 3, 3, 2), dtype=np.uint8)
    floats = rng.random((7, 3, 3, 2)).astype(np.float32) * 255
    mixed = list(uint8[:4]) + list(floats) + list(uint8[4:])
    expected = np.concatenate([uint8, floats.astype(np.float64)])
    check_against_numpy(stats.mean_std(mixed, batch_size=3), expected)


def test_running_moments_count_and_results_do_not_change_later():
    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, size=(10, 4, 4, 3), dtype=np.uint8)
    moments = stats.RunningMoments(batch_size=3)
    for image in images[:5]:
        moments.add(image)
    assert moments.count == 5
    first = moments.result()
    kept = first.mean_image.copy()
    for image in list(images[5:]) + [images[0].astype(np.float32)]:
        moments.add(image)
    assert moments.count == 11
    np.testing.assert_array_equal(first.mean_image, kept)
    check_against_numpy(moments.result(), np.concatenate([images, images[:1]]))
    with pytest.raises(SeglibError, match=r"\(4, 4\).*\(4, 4, 3\)"):
        moments.add(np.zeros((4, 4), dtype=np.uint8))
