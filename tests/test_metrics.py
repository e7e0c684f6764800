"""TGS Salt and Dice scores: hand-worked cases, a textbook reference, and the vectorised sweeps."""

import numpy as np
import pytest

from seglib import metrics

TGS, DICE = metrics.get_metric("tgs"), metrics.get_metric("dice")
TEXTBOOK_THRESHOLDS = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


def textbook_tgs(true_masks, pred_masks):
    """The competition's definition, one image and one threshold at a time."""
    image_scores = []
    for true, pred in zip(true_masks, pred_masks):
        true, pred = true > 0, pred > 0
        if not true.any() and not pred.any():
            image_scores.append(1.0)
            continue
        iou = np.logical_and(true, pred).sum() / np.logical_or(true, pred).sum()
        image_scores.append(np.mean([iou > threshold for threshold in TEXTBOOK_THRESHOLDS]))
    return np.mean(image_scores)


def textbook_dice(true_masks, pred_masks):
    image_scores = []
    for true, pred in zip(true_masks, pred_masks):
        true, pred = true > 0, pred > 0
        total = true.sum() + pred.sum()
        image_scores.append(1.0 if total == 0 else 2 * np.logical_and(true, pred).sum() / total)
    return np.mean(image_scores)


def masks_with_iou(intersection, union, size=10):
    """A true/predicted pair of 1 x size masks with the given intersection and union pixel counts."""
    true = np.zeros((1, size), dtype=np.uint8)
    pred = np.zeros((1, size), dtype=np.uint8)
    true[0, :intersection] = 1
    pred[0, :union] = 1
    return true, pred


def random_masks(rng, num_images=60, shape=(13, 11)):
    """Random masks with varied coverage, about a quarter of them empty."""
    coverage = rng.random((num_images, 1, 1))
    coverage[rng.random(num_images) < 0.25] = 0.0
    return (rng.random((num_images,) + shape) < coverage).astype(np.uint8)


def test_thresholds_are_the_kaggle_literals():
    assert metrics.TGS_IOU_THRESHOLDS.tolist() == TEXTBOOK_THRESHOLDS


def test_both_empty_scores_one():
    empty = np.zeros((5, 5))
    assert metrics.tgs_score(empty, empty) == 1.0
    assert metrics.mean_dice(empty, empty) == 1.0


def test_one_empty_scores_zero():
    empty, full = np.zeros((5, 5)), np.ones((5, 5))
    assert metrics.tgs_score(empty, full) == 0.0
    assert metrics.tgs_score(full, empty) == 0.0
    assert metrics.mean_dice(full, empty) == 0.0


def test_perfect_prediction_scores_one():
    mask = np.zeros((5, 5))
    mask[1:3] = 1
    assert metrics.tgs_score(mask, mask) == 1.0


@pytest.mark.parametrize(
    "intersection, union, expected",
    [
        (5, 10, 0.0),  # IoU 0.5 does not pass 0.5: the comparison is strict
        (18, 25, 0.5),  # IoU 0.72 passes 0.50 0.55 0.60 0.65 0.70
        (7, 10, 0.4),  # IoU 0.7 exactly passes only 0.50 .. 0.65
        (19, 20, 0.9),  # IoU 0.95 passes all but 0.95
        (24, 25, 1.0),  # IoU 0.96
        (1, 10, 0.0),
    ],
)
def test_hand_worked_iou(intersection, union, expected):
    true, pred = masks_with_iou(intersection, union, size=25)
    assert metrics.tgs_score(true, pred) == pytest.approx(expected, abs=1e-12)


def test_image_scores_and_dice_by_hand():
    true = np.array([[[1, 1, 0, 0]], [[0, 0, 0, 0]], [[1, 0, 0, 0]]])
    pred = np.array([[[1, 1, 1, 0]], [[0, 0, 0, 0]], [[0, 1, 0, 0]]])
    # IoU 2/3 passes 0.50 0.55 0.60 0.65; the empty pair scores 1; disjoint masks score 0.
    np.testing.assert_allclose(metrics.tgs_image_scores(true, pred), [0.4, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(metrics.dice_scores(true, pred), [0.8, 1.0, 0.0], atol=1e-12)
    assert metrics.mean_dice(true, pred) == pytest.approx(0.6)


def test_accepts_lists_and_channel_axis():
    rng = np.random.default_rng(1)
    true, pred = random_masks(rng, 5), random_masks(rng, 5)
    expected = metrics.tgs_score(true, pred)
    assert metrics.tgs_score(list(true), list(pred)) == expected
    assert metrics.tgs_score(true[..., None], pred) == expected
    assert metrics.tgs_score(true[0], pred[0]) == metrics.tgs_image_scores(true, pred)[0]


def test_matches_textbook_reference_on_random_masks():
    rng = np.random.default_rng(2)
    true, pred = random_masks(rng), random_masks(rng)
    pred[:5] = true[:5]  # some perfect predictions, so high IoUs occur too
    assert abs(metrics.tgs_score(true, pred) - textbook_tgs(true, pred)) < 1e-12
    assert abs(metrics.mean_dice(true, pred) - textbook_dice(true, pred)) < 1e-12


def sweep_case(seed=3):
    rng = np.random.default_rng(seed)
    true = random_masks(rng)
    noise = rng.random(true.shape)
    probabilities = np.clip(0.6 * true + 0.5 * noise, 0.0, 1.0)
    # Round some probabilities onto the thresholds so that `>` versus `>=` would show.
    probabilities[:, :4] = np.round(probabilities[:, :4], 1)
    thresholds = np.array([0.0, 0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0, 0.45, 0.25])
    return true, probabilities, thresholds


@pytest.mark.parametrize("name", ["tgs", "dice"])
def test_sweep_equals_score_at_every_threshold(name):
    metric = metrics.get_metric(name)
    true, probabilities, thresholds = sweep_case()
    assert np.isin(probabilities, thresholds).any()
    expected = [metric.score(true, probabilities > threshold) for threshold in thresholds]
    swept = metric.sweep(true, probabilities, thresholds)
    assert swept.shape == thresholds.shape
    np.testing.assert_allclose(swept, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["tgs", "dice"])
def test_sweep_of_float32(name):
    metric = metrics.get_metric(name)
    true, probabilities, thresholds = sweep_case(seed=4)
    probabilities = probabilities.astype(np.float32)
    expected = [metric.score(true, probabilities > threshold) for threshold in thresholds]
    np.testing.assert_allclose(metric.sweep(true, probabilities, thresholds), expected, rtol=0, atol=1e-12)


def test_sweep_of_one_image():
    true, probabilities, thresholds = sweep_case()
    expected = [metrics.tgs_score(true[0], probabilities[0] > threshold) for threshold in thresholds]
    np.testing.assert_allclose(metrics.get_metric("tgs").sweep(true[0], probabilities[0], thresholds), expected, atol=1e-12)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 5, 5\).*\(2, 5, 6\)"):
        metrics.tgs_score(np.zeros((2, 5, 5)), np.zeros((2, 5, 6)))
    with pytest.raises(ValueError, match="probabilities"):
        DICE.sweep(np.zeros((2, 5, 5)), np.zeros((3, 5, 5)), [0.5])
    with pytest.raises(ValueError, match="pred_masks"):
        metrics.tgs_score(np.zeros((2, 5, 5)), [np.zeros((5, 5)), np.zeros((4, 5))])


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        metrics.tgs_score(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="no images"):
        metrics.tgs_score(np.zeros((0, 5, 5)), np.zeros((0, 5, 5)))
    with pytest.raises(ValueError, match="thresholds"):
        TGS.sweep(np.zeros((2, 5, 5)), np.zeros((2, 5, 5)), [])
    with pytest.raises(ValueError, match="NaN"):
        TGS.sweep(np.zeros((2, 5, 5)), np.full((2, 5, 5), np.nan), [0.5])
    with pytest.raises(ValueError, match="NaN"):
        TGS.sweep(np.zeros((2, 5, 5)), np.zeros((2, 5, 5)), [0.5, np.nan])
    with pytest.raises(ValueError, match="real numbers"):
        TGS.sweep(np.zeros((2, 5, 5)), np.zeros((2, 5, 5), dtype=complex), [0.5])


def test_registry():
    assert metrics.get_metric("tgs") is metrics.METRICS["tgs"] and metrics.get_metric("dice").name == "dice"
    with pytest.raises(ValueError, match="dice, tgs"):
        metrics.get_metric("jaccard")


def brute_force_counts(true_masks, probabilities, thresholds):
    true = true_masks.reshape(len(true_masks), -1) > 0
    predicted = [probabilities.reshape(len(true), -1) > threshold for threshold in thresholds]
    return (
        np.stack([np.count_nonzero(pred & true, axis=1) for pred in predicted], axis=1),
        np.stack([np.count_nonzero(pred, axis=1) for pred in predicted], axis=1),
    )


def tricky_values(rng, thresholds, size):
    """Values on, next to and between the thresholds, in float64 and float32 steps, plus extremes."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    as_float32 = thresholds.astype(np.float32)
    candidates = np.concatenate(
        [
            thresholds,
            np.nextafter(thresholds, np.inf),
            np.nextafter(thresholds, -np.inf),
            as_float32,
            np.nextafter(as_float32, np.float32(np.inf)),
            np.nextafter(as_float32, np.float32(-np.inf)),
            [0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45, 3.4e38, 3.5e38, -1e300, 1e300, 0.5, 1.0, -1.0],
            rng.normal(size=50),
            rng.random(50),
        ]
    )
    return rng.choice(candidates, size=size)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int64, np.uint8])
@pytest.mark.parametrize("seed", range(6))
def test_sweep_counts_equal_brute_force_on_tricky_values(dtype, seed):
    rng = np.random.default_rng(seed)
    thresholds = np.concatenate(
        [
            rng.normal(size=8),
            [0.0, -0.0, 0.5, 0.5, 0.5000001, 0.50000001, 1.0, 1e-300, 1e300, -np.inf, np.inf, 200.0, 255.0],
            0.3 + 1e-9 * np.arange(4),  # several distinct thresholds that round to one float32
            # Just outside a float32 value's interval, where float64 values still round onto it.
            [0.25 - 2.0**-40, float(np.nextafter(np.float32(0.75), np.float32(0))) + 2.0**-40],
        ]
    )
    rng.shuffle(thresholds)
    with np.errstate(over="ignore", invalid="ignore"):
        values = tricky_values(rng, thresholds, size=(7, 9, 11))
        if np.issubdtype(dtype, np.integer):
            values = rng.integers(0, 256, size=values.shape)
        values = values.astype(dtype)
    true = rng.random(values.shape) < 0.4
    intersection, predicted, true_count = metrics.sweep_counts(true, values, thresholds)
    expected_intersection, expected_predicted = brute_force_counts(true, values, thresholds)
    np.testing.assert_array_equal(intersection, expected_intersection)
    np.testing.assert_array_equal(predicted, expected_predicted)
    np.testing.assert_array_equal(true_count[:, 0], true.reshape(7, -1).sum(axis=1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize(
    "thresholds",
    [
        np.linspace(0.02, 0.98, 50),  # the usual sweep
        np.linspace(0.0, 1.0, 21),
        [-0.0, 0.5],  # -0.0 must count as +0.0
        [0.5],
        [1e-45, 3e-38, 1.0, 3.4e38, np.inf],
    ],
)
def test_sweep_counts_with_non_negative_thresholds(dtype, thresholds):
    rng = np.random.default_rng(7)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    with np.errstate(over="ignore"):
        values = tricky_values(rng, thresholds, size=(5, 8, 9)).astype(dtype)
    true = rng.random(values.shape) < 0.5
    intersection, predicted, _ = metrics.sweep_counts(true, values, thresholds)
    expected_intersection, expected_predicted = brute_force_counts(true, values, thresholds)
    np.testing.assert_array_equal(intersection, expected_intersection)
    np.testing.assert_array_equal(predicted, expected_predicted)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_sweep_counts_of_integers_beyond_float64_precision(dtype):
    # numpy's `>` compares these as float64, which rounds some of them onto the thresholds: the sweep must too.
    midpoint = 2**60 + 2**36
    values = [midpoint + k for k in (-300, -1, 0, 1, 2, 300)] + [2**60, 2**60 + 2**37]
    values = np.array([values], dtype=dtype)
    thresholds = [float(midpoint), 2.0**60 + 2.0**40]
    true = np.array([[True, False] * 4])
    intersection, predicted, _ = metrics.sweep_counts(true, values, thresholds)
    expected_intersection, expected_predicted = brute_force_counts(true, values, thresholds)
    np.testing.assert_array_equal(intersection, expected_intersection)
    np.testing.assert_array_equal(predicted, expected_predicted)


@pytest.mark.parametrize("nan", [np.nan, -np.nan])
def test_sweep_rejects_one_nan_among_the_scores(nan):
    true, probabilities, thresholds = sweep_case()
    probabilities = probabilities.astype(np.float32)
    probabilities[40, 3, 2] = nan
    with pytest.raises(ValueError, match="NaN"):
        TGS.sweep(true, probabilities, thresholds)


def test_sweep_of_big_endian_scores_with_a_channel_axis():
    true, probabilities, thresholds = sweep_case()
    expected = DICE.sweep(true, probabilities.astype(np.float32), thresholds)
    swapped = probabilities.astype(">f4")[..., np.newaxis]
    np.testing.assert_array_equal(DICE.sweep(true, swapped, thresholds), expected)


def test_bootstrap_interval_brackets_the_mean_and_is_exact_for_constant_scores():
    scores = np.random.default_rng(1).random(200)
    low, high = metrics.bootstrap_interval(scores)
    assert low < scores.mean() < high and high - low < 0.2
    assert metrics.bootstrap_interval(np.full(50, 0.7)) == pytest.approx((0.7, 0.7))
    assert metrics.bootstrap_interval(scores, seed=3) == metrics.bootstrap_interval(scores, seed=3)
