"""The seams issue 3 opened for every competition: multi-label scores, hole filling, grouped splits, the
"auto" geometry, the streaming mask survey, the colour augmentations and decoding a submission back to masks."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from seglib import eda, metrics, split
from seglib.competitions import get_competition
from seglib.data import fits_in_memory, make_augmenter
from seglib.geometry import Geometry, downscale_roundtrip
from seglib.policy import Policy, apply_policy, fit_policy
from seglib.submit import submission_masks


@pytest.fixture(scope="module")
def tgs(sample_dir):
    return get_competition("tgs", sample_dir)


def random_masks(shape, seed, density=0.3):
    return np.random.default_rng(seed).random(shape) < density


# --- multi-label metrics --------------------------------------------------------------------------------

def test_multilabel_dice_is_the_mean_over_images_and_classes():
    true = random_masks((4, 9, 11, 3), 0)
    pred = random_masks((4, 9, 11, 3), 1)
    true[0, ..., 1] = False  # an empty class, predicted non-empty: Dice 0
    true[1, ..., 2] = pred[1, ..., 2] = False  # both empty: Dice 1
    by_hand = np.array([[metrics.mean_dice(true[i, ..., c], pred[i, ..., c]) for c in range(3)] for i in range(4)])
    assert by_hand[0, 1] == 0.0 and by_hand[1, 2] == 1.0
    assert metrics.mean_dice(true, pred) == pytest.approx(by_hand.mean(), abs=1e-12)


def test_multilabel_sweep_matches_thresholding():
    rng = np.random.default_rng(2)
    true = random_masks((3, 8, 8, 4), 3)
    probabilities = np.clip(true * 0.6 + rng.random(true.shape) * 0.5, 0, 1)
    thresholds = np.linspace(0.1, 0.9, 9)
    swept = metrics.get_metric("dice").sweep(true, probabilities, thresholds)
    expected = [metrics.mean_dice(true, probabilities > threshold) for threshold in thresholds]
    np.testing.assert_allclose(swept, expected, atol=1e-12)


def test_policy_reports_the_score_of_every_class():
    true = np.zeros((5, 16, 16, 3), bool)
    true[:, 2:9, 3:12, :] = True
    probabilities = np.where(true, 0.8, 0.1)
    probabilities[..., 1] = 0.1  # class 1 is never found: Dice 0
    probabilities[:2, ..., 2] = 0.1  # class 2 missed on two of five images
    # One threshold only: each class's score then depends on its predictions alone (with a sweep, class 1
    # would pick a threshold below 0.1 and predict everything).
    policy, _ = fit_policy(true, probabilities, "dice", thresholds=[0.5])
    np.testing.assert_allclose(policy.class_scores, [1.0, 0.0, 3 / 5], atol=1e-12)
    assert policy.validation_score == pytest.approx(np.mean(policy.class_scores))
    assert fit_policy(true[..., 0], probabilities[..., 0], "dice")[0].class_scores is None


# --- hole filling in the policy ------------------------------------------------------------------------

def ring(size=24, outer=9, inner=4):
    rows, columns = np.mgrid[:size, :size]
    distance = np.hypot(rows - size / 2, columns - size / 2)
    return distance < outer, (distance < outer) & (distance >= inner)


def test_fill_holes_fills_batches_of_binary_and_multilabel_masks():
    disc, annulus = ring()
    filled = apply_policy(np.stack([annulus, annulus]) * 0.9, Policy(0.5, fill_holes=True))
    assert (filled == disc).all()
    multilabel = np.stack([annulus, np.zeros_like(annulus)], axis=-1)[np.newaxis] * 0.9
    filled = apply_policy(multilabel, Policy(0.5, fill_holes=True))
    assert (filled[0, ..., 0] == disc).all() and not filled[0, ..., 1].any()
    with pytest.raises(ValueError, match=r"batches \(N, H, W\)"):
        apply_policy(annulus * 0.9, Policy(0.5, fill_holes=True))


def test_policy_keeps_fill_holes_only_when_it_helps():
    disc, annulus = ring()
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 0.2, (6,) + disc.shape)
    # Solid true objects, predictions with a hole in the middle: filling helps.
    policy, surface = fit_policy(np.stack([disc] * 6), noise + 0.7 * annulus, "dice")
    assert policy.fill_holes is True
    assert policy.validation_score == pytest.approx(1.0)
    ring_dice = 2 * annulus.sum() / (annulus.sum() + disc.sum())
    assert surface.loc[~surface["fill_holes"], "score"].max() == pytest.approx(ring_dice) and ring_dice < 0.95
    assert (apply_policy((noise + 0.7 * annulus)[:1], policy)[0] == disc).all()
    # True rings predicted as rings: filling would hurt, so it stays off.
    policy, _ = fit_policy(np.stack([annulus] * 6), noise + 0.7 * annulus, "dice")
    assert policy.fill_holes is False and policy.validation_score == pytest.approx(1.0)


# --- grouped and generic splits ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_split_never_puts_a_group_on_both_sides(seed):
    groups = np.repeat([f"car{index}" for index in range(7)], 16)
    ids = [f"{group}_{angle:02d}" for group, angle in zip(groups, np.tile(np.arange(1, 17), 7))]
    train_ids, validation_ids = split.grouped_split(ids, groups, 0.3, seed)
    group_of = dict(zip(ids, groups))
    assert not {group_of[i] for i in train_ids} & {group_of[i] for i in validation_ids}
    assert sorted(train_ids + validation_ids) == sorted(ids)
    assert len(validation_ids) % 16 == 0 and validation_ids


def test_grouped_split_errors():
    with pytest.raises(ValueError, match="at least 2 groups"):
        split.grouped_split(["a", "b"], ["g", "g"], 0.5, 0)
    with pytest.raises(ValueError, match="2 ids but 1 groups"):
        split.grouped_split(["a", "b"], ["g"], 0.5, 0)


def test_holdout_split_stratifies_tgs(tgs):
    ids = tgs.train_ids()
    train_ids, validation_ids, summary = split.holdout_split(tgs, ids, 0.2, seed=42)
    assert list(summary.index) == ["train", "validation"]
    assert summary.loc["validation", "images"] == len(validation_ids) == 30
    assert summary.loc["train", "class 0"] + summary.loc["validation", "class 0"] == 57  # the empty masks
    assert (train_ids, validation_ids) == split.stratified_split(ids, tgs.stratify_labels(ids), 0.2, seed=42)


# --- geometry -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("original, size, mode", [((101, 101), 128, "pad"), ((1280, 1918), 128, "resize"),
                                                  ((101, 101), 64, "resize"), ((512, 512), 512, "pad"),
                                                  ((20, 20), 128, "resize")])
def test_auto_geometry_pads_when_it_can(original, size, mode):
    geometry = Geometry("auto", size, original)
    assert geometry.mode == mode
    assert Geometry.from_dict(geometry.to_dict()).mode == mode


def test_downscale_roundtrip_keeps_multilabel_shape():
    masks = random_masks((2, 40, 60, 3), 4, density=0.5)
    roundtrip = downscale_roundtrip(masks, 40)
    assert roundtrip.shape == masks.shape and roundtrip.dtype == bool
    for channel in range(3):
        np.testing.assert_array_equal(roundtrip[..., channel], downscale_roundtrip(masks[..., channel], 40))


# --- the streaming EDA ------------------------------------------------------------------------------------

def test_survey_equals_the_in_memory_tables(tgs):
    ids = tgs.train_ids()
    sizes = [32, 64, 101]
    survey = eda.survey_masks(tgs, ids, sizes, ceiling_images=len(ids), progress=False)
    masks = tgs.read_masks(ids)
    pd.testing.assert_frame_equal(survey.coverage, eda.coverage_table(tgs, ids, masks))
    assert survey.ceiling["size"].tolist() == sizes
    np.testing.assert_allclose(survey.ceiling["score"], eda.ceiling_image_scores(masks, sizes, "tgs").mean(axis=0))
    assert survey.class_overlap is None


def test_class_overlap_counts_by_brute_force():
    masks = random_masks((3, 10, 12, 4), 5, density=0.4)
    counts = eda.class_overlap_counts(masks)
    for first in range(4):
        for second in range(4):
            assert counts[first, second] == np.count_nonzero(masks[..., first] & masks[..., second])
    table = eda.overlap_table(counts, ["a", "b", "c", "d"])
    assert table.loc["a", "b"] == pytest.approx(counts[0, 1] / counts[0, 0])
    assert (np.diag(table) == 1).all()


def test_candidate_sizes():
    assert eda.candidate_sizes((101, 101), 128) == [32, 64, 100, 101, 128]
    assert eda.candidate_sizes((1280, 1918), 128) == [32, 64, 100, 128, 256, 512, 1024, 1918]


# --- augmentation ----------------------------------------------------------------------------------------

def test_colour_augmentations_need_rgb_and_leave_extra_channels_alone():
    with pytest.raises(ValueError, match="need RGB"):
        make_augmenter(("hue",), seed=0, channels=1)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (4, 32, 32, 6)), tf.float32)
    masks = tf.constant(random_masks((4, 32, 32, 1), 6), tf.float32)
    augmented, augmented_masks = make_augmenter(("saturation", "hue"), seed=3, channels=6)(images, masks)
    np.testing.assert_array_equal(augmented.numpy()[..., 3:], images.numpy()[..., 3:])
    assert np.abs(augmented.numpy()[..., :3] - images.numpy()[..., :3]).max() > 1.0
    np.testing.assert_array_equal(augmented_masks.numpy(), masks.numpy())


def test_rotate_zoom_moves_masks_with_images_and_keeps_them_binary():
    # The image is its own mask (x 255): after a joint rotation and zoom they must still agree.
    masks = np.zeros((4, 64, 64, 2), np.float32)
    masks[:, 16:48, 20:40, 0] = 1
    masks[:, 5:30, 5:60, 1] = 1
    images = masks[..., :1] * 255.0
    augmented, augmented_masks = make_augmenter(("rotate_zoom",), seed=1, channels=1)(images, masks)
    assert set(np.unique(augmented_masks.numpy())) <= {0.0, 1.0}
    assert (augmented_masks.numpy() != masks).any()
    agreement = ((augmented.numpy()[..., 0] > 127.5) == (augmented_masks.numpy()[..., 0] > 0.5)).mean()
    assert agreement > 0.99


def test_fits_in_memory(tgs):
    geometry = Geometry("pad", 128, (101, 101))
    assert fits_in_memory(tgs, 4000, geometry)  # 4000 x 128 x 128 x 2 x 4 bytes = 0.5 GiB
    assert not fits_in_memory(tgs, 20000, Geometry("resize", 512, (101, 101)))


# --- submissions decoded back -------------------------------------------------------------------------------

def test_submission_masks_decode_the_rows_back(tgs):
    ids = tgs.train_ids()[:6]
    masks = tgs.read_masks(ids)
    rows = [row for image_id, mask in zip(ids, masks) for row in tgs.submission_rows(image_id, mask)]
    table = pd.DataFrame(rows, columns=list(tgs.submission_columns))
    np.testing.assert_array_equal(submission_masks(table, tgs, ids), masks)
    with pytest.raises(ValueError, match="no row for"):
        submission_masks(table.iloc[1:], tgs, ids)


def test_fill_holes_matches_scipy_on_random_masks():
    """Filling within the bounding box gives binary_fill_holes' result, holes touching edges and corners included."""
    from scipy import ndimage

    rng = np.random.default_rng(11)
    masks = np.stack([rng.random((37, 53)) < density for density in (0.0, 0.3, 0.5, 0.6, 0.7, 1.0)])
    masks[0, 5:10, 5:10] = True
    expected = np.stack([ndimage.binary_fill_holes(mask) for mask in masks])
    np.testing.assert_array_equal(apply_policy(masks * 0.9, Policy(0.5, fill_holes=True)), expected)
    assert (expected != masks).any(), "the random masks have holes to fill"
