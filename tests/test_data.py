"""The tf.data pipeline on the committed sample: shapes, normalisation, order, shuffling and augmentation."""

import numpy as np
import pytest
import tensorflow as tf

from seglib import SeglibError
from seglib.competitions import get_competition
from seglib.data import Normalization, make_augmenter, make_dataset, reader_errors
from seglib.geometry import Geometry
from seglib.stats import mean_std

BATCH = 16


@pytest.fixture(scope="module")
def competition(sample_dir):
    return get_competition("tgs", sample_dir)


@pytest.fixture(scope="module")
def train_ids(competition):
    return competition.train_ids()


@pytest.fixture(scope="module")
def train_images(competition, train_ids):
    return competition.read_images(train_ids)


@pytest.fixture(scope="module")
def normalization(train_images):
    return Normalization.from_mean_std(mean_std(train_images))


@pytest.fixture(scope="module")
def geometry():
    return Geometry("pad", 128, (101, 101))


def collect(dataset):
    """All batches of one pass, concatenated (a tuple of arrays for (images, masks) datasets)."""
    batches = list(dataset.as_numpy_iterator())
    if isinstance(batches[0], tuple):
        return tuple(np.concatenate(part) for part in zip(*batches))
    return np.concatenate(batches)


def test_batch_shapes_and_dtypes(competition, train_ids, geometry, normalization):
    dataset = make_dataset(competition, train_ids[:40], geometry, normalization, BATCH)
    batches = list(dataset)
    assert [len(images) for images, _ in batches] == [16, 16, 8]
    images, masks = batches[0]
    assert images.dtype == tf.float32 and masks.dtype == tf.float32
    assert tuple(images.shape) == (BATCH, 128, 128, 1)
    assert tuple(masks.shape) == (BATCH, 128, 128, 1)


def test_masks_are_binary_and_match_the_adapter(competition, train_ids, geometry, normalization):
    _, masks = collect(make_dataset(competition, train_ids, geometry, normalization, BATCH))
    assert set(np.unique(masks)) == {0.0, 1.0}
    cropped = geometry.to_original(masks)[..., 0]
    np.testing.assert_array_equal(cropped.astype(bool), competition.read_masks(train_ids))


def test_images_are_normalised_over_the_training_set(competition, train_ids, geometry, normalization):
    images, _ = collect(make_dataset(competition, train_ids, geometry, normalization, BATCH))
    original = geometry.to_original(images)  # the padding repeats pixels; measure the real ones
    assert abs(float(original.mean())) < 1e-3
    assert abs(float(original.std()) - 1.0) < 1e-3
    # The raw images were far from that.
    assert normalization.channel_mean[0] > 1 and normalization.channel_std[0] > 1


def test_order_kept_without_shuffle(competition, train_ids, train_images, geometry, normalization):
    ids = train_ids[::-1][:37]  # not the file order, and a ragged last batch
    images, masks = collect(make_dataset(competition, ids, geometry, normalization, 8))
    expected = geometry.to_model(normalization(competition.read_images(ids))).numpy()
    np.testing.assert_allclose(images, expected, rtol=0, atol=1e-6)
    expected_masks = geometry.to_model(competition.read_masks(ids)[..., None].astype(np.float32)).numpy()
    np.testing.assert_array_equal(masks, expected_masks)


def first_pass(competition, ids, geometry, normalization, seed):
    dataset = make_dataset(competition, ids, geometry, normalization, 10, shuffle=True, seed=seed)
    return collect(dataset)


def order_of(images, reference):
    """Index into ``reference`` of every image (images are distinct in the sample except all-black ones)."""
    flat_reference = reference.reshape(len(reference), -1)
    return [int(np.argmin(np.abs(flat_reference - image.reshape(1, -1)).sum(axis=1))) for image in images]


def test_shuffle_is_seeded(competition, train_ids, geometry, normalization):
    ids = train_ids[:50]
    reference, reference_masks = collect(make_dataset(competition, ids, geometry, normalization, 10))
    first_images, first_masks = first_pass(competition, ids, geometry, normalization, seed=11)
    again_images, again_masks = first_pass(competition, ids, geometry, normalization, seed=11)
    other_images, _ = first_pass(competition, ids, geometry, normalization, seed=12)
    np.testing.assert_array_equal(first_images, again_images)
    np.testing.assert_array_equal(first_masks, again_masks)
    order = order_of(first_images, reference)
    # A permutation of the ids, not the plain order, and another seed gives another order.
    assert sorted(reference[order].reshape(50, -1).sum(axis=1)) == sorted(reference.reshape(50, -1).sum(axis=1))
    assert order != list(range(50))
    assert order_of(other_images, reference) != order
    # Masks travel with their images.
    np.testing.assert_array_equal(first_masks, reference_masks[order])


def test_hflip_keeps_image_and_mask_aligned(competition, train_ids, geometry, normalization):
    # Only images that differ from their mirror tell flipped from unflipped.
    ids = train_ids[:32]
    plain_images, plain_masks = collect(make_dataset(competition, ids, geometry, normalization, 8))
    distinguishable = np.array([not np.array_equal(image, image[:, ::-1]) for image in plain_images])
    assert distinguishable.sum() >= 20
    dataset = make_dataset(competition, ids, geometry, normalization, 8, augmentations=("hflip",), seed=5)
    flipped = unflipped = 0
    for _ in range(4):  # several epochs: the flip is drawn per image
        images, masks = collect(dataset)
        assert images.shape == plain_images.shape and masks.shape == plain_masks.shape
        for index in range(len(ids)):
            image, mask = images[index], masks[index]
            mirror_image, mirror_mask = plain_images[index][:, ::-1], plain_masks[index][:, ::-1]
            as_original = np.allclose(image, plain_images[index], atol=1e-6)
            as_mirror = np.allclose(image, mirror_image, atol=1e-6)
            assert as_original or as_mirror, f"sample {index} is neither the image nor its mirror"
            if as_original:
                np.testing.assert_array_equal(mask, plain_masks[index])
            if as_mirror:
                np.testing.assert_array_equal(mask, mirror_mask)
            if distinguishable[index]:
                flipped += as_mirror
                unflipped += as_original
    assert flipped > 0 and unflipped > 0, (flipped, unflipped)


def test_unknown_augmentation(competition, train_ids, geometry, normalization):
    with pytest.raises(ValueError, match="cutmix"):
        make_dataset(competition, train_ids[:4], geometry, normalization, 2, augmentations=("hflip", "cutmix"))
    with pytest.raises(ValueError, match="cutmix"):
        make_augmenter(("cutmix",), seed=0)


def test_images_only_without_masks(competition, geometry, normalization):
    test_ids = competition.test_ids()
    dataset = make_dataset(competition, test_ids, geometry, normalization, 16, part="test", with_masks=False)
    assert isinstance(dataset.element_spec, tf.TensorSpec)
    images = collect(dataset)
    assert images.shape == (len(test_ids), 128, 128, 1) and images.dtype == np.float32
    expected = geometry.to_model(normalization(competition.read_images(test_ids, "test"))).numpy()
    np.testing.assert_allclose(images, expected, rtol=0, atol=1e-6)


def test_empty_id_list(competition, geometry, normalization):
    with pytest.raises(ValueError):
        make_dataset(competition, [], geometry, normalization, 4)


def test_a_broken_image_raises_the_adapters_error_not_tensorflows(make_tgs_folder, geometry, normalization):
    root, train_ids, _ = make_tgs_folder(num_train=4)
    (root / "train" / "images" / f"{train_ids[2]}.png").write_bytes(b"not a png")
    dataset = make_dataset(get_competition("tgs", root), train_ids, geometry, normalization, 2)
    with pytest.raises(SeglibError, match=f"images/{train_ids[2]}.png: cannot decode image") as raised:
        with reader_errors():
            list(dataset)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no TensorFlow trace
    # An error that no reader raised passes through unchanged.
    with pytest.raises(tf.errors.InvalidArgumentError):
        with reader_errors():
            tf.debugging.assert_equal(1, 2)
