"""The joint policy: threshold x minimum area x hole filling, per class, with bootstrap intervals.

Real numbers throughout: validation sets are planted so that the best policy is known, and every reported
score is checked against the metrics applied to the masks that ``apply_policy`` produces.
"""

import json
import weakref

import numpy as np
import pytest
from scipy import ndimage

from seglib import metrics
from seglib.policy import (DEFAULT_THRESHOLDS, Policy, _chunk_holes, apply_policy, area_threshold_table,
                           fit_policy, fit_policy_pairs, load_policy, save_policy, threshold_curve)

DICE = metrics.get_metric("dice")
SIZE = 101  # TGS images
SPECK_MAX, BLOB_SIDE = 25, 20  # speck areas 1..25 px, blobs 20 x 20 = 400 px


def disc(size, radius, center=None):
    rows, columns = np.mgrid[:size, :size]
    center = (size / 2, size / 2) if center is None else center
    return np.hypot(rows - center[0], columns - center[1]) < radius


@pytest.fixture(scope="module")
def specks():
    """Half the images hold a 20 x 20 blob at ~0.7 on a ~0.3 background; the others are empty in truth but
    hold small specks (1 to 25 px) at 0.9: only a minimum area between the two sizes gets every image right."""
    rng = np.random.default_rng(1)
    count = 40
    truth = np.zeros((count, SIZE, SIZE), bool)
    probabilities = rng.uniform(0.2, 0.4, truth.shape)
    for index in range(count):
        if index % 2 == 0:
            top, left = rng.integers(5, SIZE - BLOB_SIDE - 5, size=2)
            truth[index, top:top + BLOB_SIDE, left:left + BLOB_SIDE] = True
            probabilities[index][truth[index]] = rng.uniform(0.6, 0.8, BLOB_SIDE * BLOB_SIDE)
        else:
            for _ in range(3):
                height, width = rng.integers(1, 6, size=2)  # at most 5 x 5 = 25 px, apart from each other
                top, left = rng.integers(0, SIZE - 5, size=2)
                probabilities[index, top:top + height, left:left + width] = 0.9
    return truth, probabilities.astype(np.float32)


def test_planted_minimum_area_beats_the_threshold_alone(specks):
    truth, probabilities = specks
    policy, surface = fit_policy(truth, probabilities, "tgs")
    assert SPECK_MAX <= policy.min_area < BLOB_SIDE ** 2
    assert 0.3 < policy.threshold < 0.7
    assert policy.fill_holes is False  # filling does not help here, and ties go to no filling
    assert policy.validation_score == 1.0
    threshold_only = surface[(surface["min_area"] == 0) & ~surface["fill_holes"]]
    assert threshold_only["score"].max() < 0.6  # the specks cost every empty image at any useful threshold
    assert policy.default_score == pytest.approx(0.5)
    assert policy.gain_confidence_interval[0] > 0.3  # a real gain: the interval is well above 0
    # The reported score is what the masks of apply_policy score.
    assert metrics.tgs_score(truth, apply_policy(probabilities, policy)) == policy.validation_score
    assert list(surface.columns) == ["class", "threshold", "min_area", "fill_holes", "score"]
    # The default minimum areas: 0 to 5 % of the image.
    assert sorted(surface["min_area"].unique()) == [0, 5, 10, 26, 51, 102, 204, 510]


def test_surface_agrees_with_the_plain_sweep_and_direct_scoring(specks):
    truth, probabilities = specks
    policy, surface = fit_policy(truth, probabilities, "dice")
    plain = threshold_curve(surface, Policy(0.5))
    np.testing.assert_allclose(plain["threshold"], DEFAULT_THRESHOLDS)
    np.testing.assert_allclose(plain["score"], DICE.sweep(truth, probabilities, DEFAULT_THRESHOLDS), atol=1e-12)
    # Every scored combination, re-scored through apply_policy and metrics.mean_dice.
    for row in surface.sample(12, random_state=0).itertuples():
        masks = apply_policy(probabilities, Policy(row.threshold, int(row.min_area), bool(row.fill_holes)))
        assert metrics.mean_dice(truth, masks) == pytest.approx(row.score, abs=1e-12)


def test_planted_fill_holes_is_chosen_and_scores_one():
    rng = np.random.default_rng(2)
    solid, hole = disc(48, 16), disc(48, 6)
    truth = np.stack([solid] * 10)
    probabilities = np.where(solid & ~hole, 0.8, 0.1) + rng.uniform(0, 0.05, truth.shape)
    policy, surface = fit_policy(truth, probabilities, "dice")
    assert policy.fill_holes is True and policy.validation_score == pytest.approx(1.0)
    ring_dice = 2 * (solid & ~hole).sum() / ((solid & ~hole).sum() + solid.sum())
    assert 0.15 < policy.threshold < 0.8
    np.testing.assert_array_equal(apply_policy(probabilities, policy), truth)
    # Filling is scored at a subset of the thresholds: every 4th, the last, and near the best ones.
    filled = surface.loc[surface["fill_holes"], "threshold"].unique()
    assert set(DEFAULT_THRESHOLDS[::4]) <= set(filled) and len(filled) < len(DEFAULT_THRESHOLDS)
    best_without_fill = surface.loc[~surface["fill_holes"]].sort_values("score").iloc[-1]
    assert best_without_fill["score"] == pytest.approx(ring_dice)
    # Filled scores agree with scoring the filled masks directly.
    for row in surface[surface["fill_holes"]].sample(8, random_state=1).itertuples():
        masks = apply_policy(probabilities, Policy(row.threshold, int(row.min_area), True))
        assert metrics.mean_dice(truth, masks) == pytest.approx(row.score, abs=1e-12)


def test_hole_counts_match_binary_fill_holes():
    rng = np.random.default_rng(3)
    probability = ndimage.gaussian_filter(rng.random((70, 90)), 2)
    probability = (probability - probability.min()) / np.ptp(probability)
    truth = rng.random(probability.shape) < 0.5
    thresholds = np.linspace(0.05, 0.95, 19)
    counts = _chunk_holes(truth[None, ..., None], probability[None, ..., None], thresholds,
                          [np.arange(len(thresholds))])[0, 0]
    assert counts[:, 0].sum() > 100  # the test has holes to count
    for index, threshold in enumerate(thresholds):
        mask = probability > threshold
        holes = ndimage.binary_fill_holes(mask) & ~mask
        assert tuple(counts[index]) == (holes.sum(), (holes & truth).sum())


def per_class_data(count=24, seed=4):
    """Class 0 is found above 0.45 (0.8 on truth), class 1 only below 0.35 (0.35 on truth, 0.1 off), class 2
    is predicted as rings around solid truths: three different best policies."""
    rng = np.random.default_rng(seed)
    size = 40
    truth = np.zeros((count, size, size, 3), bool)
    probabilities = np.empty(truth.shape)
    for index in range(count):
        for c in range(3):
            center = rng.uniform(12, 28, size=2)
            truth[index, ..., c] = disc(size, rng.uniform(5, 9), center) if rng.random() < 0.8 else False
        inner = disc(size, 3, center) & truth[index, ..., 2]
        probabilities[index, ..., 0] = np.where(truth[index, ..., 0], 0.8, 0.45)
        probabilities[index, ..., 1] = np.where(truth[index, ..., 1], 0.35, 0.1)
        probabilities[index, ..., 2] = np.where(truth[index, ..., 2] & ~inner, 0.7, 0.2)
    probabilities += rng.normal(0, 0.03, truth.shape)
    return truth, probabilities.astype(np.float32)


def test_per_class_policies_differ_and_reproduce_the_score():
    truth, probabilities = per_class_data()
    policy, surface = fit_policy(truth, probabilities, "dice")
    assert 0.45 <= policy.thresholds[0] < 0.8
    assert 0.1 <= policy.thresholds[1] < 0.35
    assert policy.fill_holes_per_class == (False, False, True)
    assert len(policy.min_areas) == 3 and all(isinstance(area, int) for area in policy.min_areas)
    assert sorted(surface["class"].unique()) == [0, 1, 2]
    masks = apply_policy(probabilities, policy)
    assert metrics.mean_dice(truth, masks) == pytest.approx(policy.validation_score, abs=1e-12)
    class_scores = [metrics.mean_dice(truth[..., c], masks[..., c]) for c in range(3)]
    np.testing.assert_allclose(class_scores, policy.class_scores, atol=1e-12)
    assert policy.validation_score == pytest.approx(np.mean(policy.class_scores))
    # The scalar setting is the best shared one; no single setting serves classes 0 and 1.
    shared = Policy(policy.threshold, policy.min_area, policy.fill_holes)
    shared_score = metrics.mean_dice(truth, apply_policy(probabilities, shared))
    assert shared_score < policy.validation_score - 0.1
    by_setting = surface.groupby(["threshold", "min_area", "fill_holes"])["score"]
    assert shared_score == pytest.approx(by_setting.mean()[by_setting.size() == 3].max())
    # threshold_curve and area_threshold_table at the chosen settings peak at the policy's score per class.
    for c in range(3):
        curve = threshold_curve(surface, policy, class_index=c)
        assert curve["score"].max() == pytest.approx(policy.class_scores[c])
        table = area_threshold_table(surface, policy, class_index=c)
        assert table.to_numpy().max() == pytest.approx(policy.class_scores[c])
        assert table.loc[policy.min_areas[c], policy.thresholds[c]] == pytest.approx(policy.class_scores[c])
    # The mean over classes: thresholds scored for every class; a scalar policy applies to every class.
    assert list(area_threshold_table(surface, policy).index) == sorted(surface["min_area"].unique())
    plain = threshold_curve(surface, Policy(0.5))
    np.testing.assert_allclose(plain["score"], DICE.sweep(truth, probabilities, DEFAULT_THRESHOLDS), atol=1e-12)


def test_streaming_equals_in_memory():
    truth, probabilities = per_class_data(count=11, seed=5)
    calls = []

    def make_pairs():
        calls.append(1)
        return ((truth[index], probabilities[index]) for index in range(len(truth)))

    streamed = fit_policy_pairs(make_pairs, "dice", chunk_size=3)
    in_memory = fit_policy(truth, probabilities, "dice")
    assert streamed[0] == in_memory[0]
    assert streamed[1].equals(in_memory[1])
    assert len(calls) <= 2
    # Binary TGS too, with (H, W, 1) predictions as Keras returns them.
    binary = truth[..., 0], probabilities[..., :1]
    streamed = fit_policy_pairs(lambda: zip(*binary), "tgs", chunk_size=4)
    assert streamed[0] == fit_policy(*binary, "tgs")[0]


def test_streaming_holds_at_most_a_chunk_of_images():
    """20 images of 1024 x 1024 x 3 classes: the fit never holds more than a chunk of them."""
    rng = np.random.default_rng(6)
    size, count, chunk_size = 1024, 20, 4
    alive, most_alive = set(), []

    def make_pairs():
        for index in range(count):
            truth = np.zeros((size, size, 3), bool)
            probability = np.full((size, size, 3), 0.05, np.float32)
            for c in range(3):
                top, left = rng.integers(100, 800, size=2)
                truth[top:top + 80, left:left + 60, c] = True
                probability[top:top + 80, left:left + 60, c] = 0.7
                probability[top + 30:top + 40, left + 20:left + 30, c] = 0.01  # a hole
            for array in (truth, probability):
                alive.add((index, id(array)))
                weakref.finalize(array, alive.discard, (index, id(array)))
            yield truth, probability
            most_alive.append(len({image for image, _ in alive}))

    policy, _ = fit_policy_pairs(make_pairs, "dice", chunk_size=chunk_size, bootstrap=100)
    assert max(most_alive) <= chunk_size + 1
    assert policy.validation_score == pytest.approx(1.0)
    assert policy.fill_holes_per_class == (True,) * 3


def test_bootstrap_intervals():
    rng = np.random.default_rng(7)

    def noisy(count):
        truth = np.zeros((count, 32, 32), bool)
        truth[:, 8:24, 8:24] = True
        truth[: count // 3] = False
        probabilities = np.clip(truth * 0.5 + rng.uniform(0, 0.6, truth.shape), 0, 1)
        return truth, probabilities

    widths = []
    for count in (30, 480):
        policy, _ = fit_policy(*noisy(count), "tgs", min_areas=[0, 50], fill_holes_options=(False,))
        low, high = policy.confidence_interval
        assert low <= policy.validation_score <= high and low < high
        gain_low, gain_high = policy.gain_confidence_interval
        assert gain_low <= policy.validation_score - policy.default_score <= gain_high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # 16 times the images: about a quarter of the width
    # The same seed gives the same intervals, another seed others; 0 resamples skip them.
    data = noisy(60)
    first = fit_policy(*data, "tgs", fill_holes_options=(False,), bootstrap=200, seed=3)[0]
    assert first == fit_policy(*data, "tgs", fill_holes_options=(False,), bootstrap=200, seed=3)[0]
    other = fit_policy(*data, "tgs", fill_holes_options=(False,), bootstrap=200, seed=4)[0]
    assert other.confidence_interval != first.confidence_interval
    skipped = fit_policy(*data, "tgs", fill_holes_options=(False,), bootstrap=0)[0]
    assert skipped.confidence_interval is None and skipped.gain_confidence_interval is None


def test_gain_interval_is_zero_when_the_policy_is_the_default():
    truth = np.zeros((20, 16, 16), bool)
    truth[::2, 4:12, 4:12] = True
    probabilities = np.where(truth, 0.9, 0.1)  # perfectly separated: 0.5 is already perfect
    policy, _ = fit_policy(truth, probabilities, "tgs")
    assert (policy.threshold, policy.min_area, policy.fill_holes) == (0.5, 0, False)
    assert policy.validation_score == policy.default_score == 1.0
    assert policy.gain_confidence_interval == (0.0, 0.0)
    assert policy.confidence_interval == (1.0, 1.0)


def test_a_scalar_policy_applies_to_every_class():
    rng = np.random.default_rng(8)
    probabilities = rng.random((3, 10, 10, 2))
    np.testing.assert_array_equal(apply_policy(probabilities, Policy(0.5)), probabilities > 0.5)
    np.testing.assert_array_equal(apply_policy(probabilities[..., 0], Policy(0.5)), probabilities[..., 0] > 0.5)
    ring = disc(20, 8) & ~disc(20, 3)
    filled = apply_policy(np.stack([ring * 0.9] * 2), Policy(0.5, fill_holes=True))
    np.testing.assert_array_equal(filled, np.stack([disc(20, 8)] * 2))


def test_apply_policy_order_and_per_class_lists():
    ring = disc(20, 8) & ~disc(20, 6)
    filled_area, ring_area = disc(20, 8).sum(), ring.sum()
    probabilities = np.stack([ring, ring], axis=-1)[np.newaxis] * 0.9
    # The area is checked after filling: the ring alone is below min_area, the filled disc is not.
    policy = Policy(0.5, thresholds=(0.5, 0.5), min_areas=(int(ring_area) + 1,) * 2,
                    fill_holes_per_class=(True, False))
    masks = apply_policy(probabilities, policy)
    assert masks[0, ..., 0].sum() == filled_area and not masks[0, ..., 1].any()
    # Per-class thresholds.
    policy = Policy(0.5, thresholds=(0.5, 0.95), min_areas=(0, 0), fill_holes_per_class=(False, False))
    masks = apply_policy(probabilities, policy)
    assert masks[..., 0].sum() == ring_area and not masks[..., 1].any()
    with pytest.raises(ValueError, match="2 classes"):
        apply_policy(probabilities[..., 0], policy)


def test_save_and_load_round_trip(tmp_path):
    truth, probabilities = per_class_data(count=8, seed=9)
    policy, _ = fit_policy(truth, probabilities, "dice", bootstrap=50)
    path = save_policy(tmp_path / "policy.json", policy)
    assert load_policy(path) == policy
    assert json.loads(path.read_text())["min_areas"] == list(policy.min_areas)


@pytest.mark.parametrize("change, field", [
    ({"threshold": 1.2}, "threshold"),
    ({"min_area": -1}, "min_area"),
    ({"min_area": 2.5}, "min_area"),
    ({"fill_holes": "yes"}, "fill_holes"),
    ({"thresholds": [0.5, 1.5]}, "thresholds"),
    ({"min_areas": [0, -3]}, "min_areas"),
    ({"min_areas": [0]}, "min_areas"),
    ({"fill_holes_per_class": [True, 1]}, "fill_holes_per_class"),
    ({"confidence_interval": [0.9, 0.1]}, "confidence_interval"),
])
def test_bad_fields_are_rejected(change, field, tmp_path):
    good = {"threshold": 0.5, "min_area": 10, "fill_holes": False, "thresholds": [0.5, 0.3],
            "min_areas": [10, 0], "fill_holes_per_class": [False, True], "confidence_interval": [0.1, 0.9]}
    save_policy(tmp_path / "good" / "policy.json", Policy.from_json(good))
    with pytest.raises(ValueError, match=f"policy field '{field}'"):
        Policy.from_json({**good, **change})
    bad = tmp_path / "bad" / "policy.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({**good, **change}))
    with pytest.raises(ValueError, match=f"bad/policy.json: policy field '{field}'"):
        load_policy(bad)
