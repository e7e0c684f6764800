"""Issue 4's first pieces: the Lovasz hinge loss, test-time augmentation with exact inverses, the image-folder
adapter."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from seglib import tta
from seglib.competitions import get_competition
from seglib.losses import LovaszHinge, get_loss, lovasz_hinge


def reference_lovasz_hinge(labels, logits):
    """Berman et al.'s per-image Lovasz hinge, written plainly with numpy for one flat image."""
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    order = np.argsort(-errors, kind="stable")
    errors_sorted, labels_sorted = errors[order], labels[order]
    positives = labels_sorted.sum()
    intersection = positives - np.cumsum(labels_sorted)
    union = positives + np.cumsum(1.0 - labels_sorted)
    jaccard = 1.0 - intersection / union
    gradient = np.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return float(np.dot(np.maximum(errors_sorted, 0.0), gradient))


def random_batch(seed, shape=(3, 8, 8, 2)):
    rng = np.random.default_rng(seed)
    labels = (rng.random(shape) < 0.3).astype(np.float32)
    labels[0, ..., 0] = 0.0  # an empty mask
    return labels, rng.normal(size=shape).astype(np.float32)


def test_lovasz_hinge_equals_the_reference():
    labels, logits = random_batch(0)
    losses = lovasz_hinge(tf.constant(labels), tf.constant(logits)).numpy()
    assert losses.shape == (3, 2)
    for image in range(3):
        for channel in range(2):
            expected = reference_lovasz_hinge(labels[image, ..., channel].ravel(), logits[image, ..., channel].ravel())
            assert losses[image, channel] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_lovasz_gradient_is_finite_and_non_zero_with_empty_masks():
    labels, logits = random_batch(1)
    labels[:] = 0.0  # every mask empty
    logits = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = LovaszHinge()(tf.constant(labels), logits)
    gradient = tape.gradient(loss, logits).numpy()
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert np.isfinite(gradient).all() and np.abs(gradient).sum() > 0


def test_lovasz_is_zero_for_confident_correct_logits():
    labels, _ = random_batch(2)
    confident = np.where(labels > 0, 3.0, -3.0).astype(np.float32)  # margins beyond the hinge
    assert float(np.max(lovasz_hinge(tf.constant(labels), tf.constant(confident)))) == 0.0
    assert float(get_loss("lovasz")(labels, confident)) == pytest.approx(0.0, abs=1e-5)
    assert float(get_loss("lovasz")(labels, -confident)) > 1.0
    # Real logits: saturated pixels still have a gradient (no probabilities clipped back to logits).
    saturated = tf.Variable(np.where(labels > 0, -40.0, 40.0).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = get_loss("lovasz")(labels, saturated)
    assert np.abs(tape.gradient(loss, saturated).numpy()).sum() > 0


# --- TTA -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(tta.TTA_SETS["d4"]))
def test_every_transform_inverts_exactly(name):
    images = np.random.default_rng(3).random((2, 6, 6, 3))
    np.testing.assert_array_equal(tta.inverse_transform(tta.transform(images, name), name), images)


def test_d4_transforms_are_eight_different_symmetries():
    image = np.arange(16.0).reshape(1, 4, 4, 1)
    outputs = {tta.transform(image, name).tobytes() for name in tta.TTA_SETS["d4"]}
    assert len(outputs) == 8


def test_tta_of_an_equivariant_predictor_changes_nothing_and_of_a_biased_one_averages():
    images = np.random.default_rng(4).random((2, 8, 8, 1)).astype(np.float32)
    pixelwise = lambda batch: 1 / (1 + np.exp(-batch))  # noqa: E731  (commutes with every symmetry)
    np.testing.assert_allclose(tta.predict_tta(pixelwise, images, "d4"), pixelwise(images), atol=1e-6)
    # A predictor that only sees the left half: hflip TTA averages left and right.
    left_only = lambda batch: np.concatenate([batch[:, :, :4], 0 * batch[:, :, 4:]], axis=2)  # noqa: E731
    averaged = tta.predict_tta(left_only, images, "hflip")
    np.testing.assert_allclose(averaged, images / 2, atol=1e-6)


def test_tta_errors():
    with pytest.raises(ValueError, match="unknown TTA set"):
        tta.predict_tta(lambda batch: batch, np.zeros((1, 4, 4, 1)), "d8")
    with pytest.raises(ValueError, match="unknown transform"):
        tta.transform(np.zeros((1, 4, 4, 1)), "rotate45")
    with pytest.raises(ValueError, match="square images"):
        tta.predict_tta(lambda batch: batch, np.zeros((1, 4, 6, 1)), "d4")


# --- the generic image folder ------------------------------------------------------------------------------------

ISBI_DIR = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "isbi_membrane"


def write_folder(root, masks):
    """images/<n>.png (grayscale ramps) and masks/<n>.png in three encodings: 0/1, 0/255 and 16-bit."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index, mask in enumerate(masks):
        Image.fromarray((np.arange(mask.size).reshape(mask.shape) % 256).astype(np.uint8)).save(root / "images" / f"{index}.png")
        encoded = [mask.astype(np.uint8), mask.astype(np.uint8) * 255, mask.astype(np.uint16) * 65535][index % 3]
        Image.fromarray(encoded).save(root / "masks" / f"{index}.png")
    return root


def test_folder_adapter_reads_any_mask_encoding(tmp_path):
    rng = np.random.default_rng(5)
    masks = rng.random((4, 20, 30)) < 0.4
    competition = get_competition("folder", write_folder(tmp_path / "data", masks))
    assert competition.train_ids() == ["0", "1", "2", "3"] and competition.image_size == (20, 30)
    np.testing.assert_array_equal(competition.read_masks(competition.train_ids()), masks)
    assert competition.read_image("1").shape == (20, 30, 1)


def test_folder_adapter_errors(tmp_path):
    root = write_folder(tmp_path / "data", np.zeros((3, 8, 8), bool))
    (root / "masks" / "2.png").unlink()
    with pytest.raises(ValueError, match="images/2.png: no mask masks/2"):
        get_competition("folder", root).train_ids()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "masks" / "2.png")
    with pytest.raises(ValueError, match="masks/2.png: mask is 5x5, expected 8x8"):
        get_competition("folder", root).read_mask("2")


@pytest.mark.skipif(not ISBI_DIR.is_dir(), reason="the shared ISBI membrane data is not on this machine")
def test_folder_adapter_on_the_real_isbi_membranes():
    competition = get_competition("folder", ISBI_DIR)
    ids = competition.train_ids()
    assert len(ids) == 30 and competition.image_size == (512, 512)
    masks = competition.read_masks(ids[:3])
    assert 0.6 < masks.mean() < 0.9  # cell interiors are most of the image, membranes the rest
