"""The threshold policy (fit, apply, save, load) and the submission writer and validator on the sample."""

import csv

import keras
import numpy as np
import pandas as pd
import pytest

from seglib import predict, rle
from seglib.competitions import get_competition
from seglib.data import Normalization
from seglib.errors import SeglibError
from seglib.geometry import Geometry
from seglib.metrics import tgs_score
from seglib.models import build_unet
from seglib.policy import (DEFAULT_THRESHOLDS, Policy, apply_policy, fit_policy, load_policy, save_policy,
                           threshold_curve)
from seglib.submit import validate_submission, write_submission

# --- policy -------------------------------------------------------------------------------------------

BACKGROUND_MAX, SALT_MIN = 0.415, 0.615  # perfect iff BACKGROUND_MAX <= threshold < SALT_MIN


@pytest.fixture(scope="module")
def planted():
    """True masks and probabilities whose masks are perfect only for thresholds in [0.415, 0.615)."""
    rng = np.random.default_rng(0)
    count, size = 12, 20
    masks = np.zeros((count, size, size), bool)
    for index in range(4, count):  # masks 0-2 empty, 3 a single pixel, 4-11 blocks
        top, left = rng.integers(0, 10, size=2)
        masks[index, top:top + 8, left:left + 9] = True
    masks[3, 5, 5] = True
    probabilities = np.where(masks, rng.uniform(SALT_MIN + 0.01, 0.99, masks.shape),
                             rng.uniform(0.0, BACKGROUND_MAX - 0.01, masks.shape))
    # The extremes sit where missing them costs a whole image: a stray pixel on an empty image,
    # and the only salt pixel of the single-pixel mask.
    probabilities[0, 0, 0] = BACKGROUND_MAX
    probabilities[3, 5, 5] = SALT_MIN
    return masks, probabilities.astype(np.float64)


def test_fit_policy_finds_the_planted_band(planted):
    masks, probabilities = planted
    policy, surface = fit_policy(masks, probabilities, "tgs")
    assert BACKGROUND_MAX <= policy.threshold < SALT_MIN
    assert policy.validation_score == 1.0
    assert policy.metric == "tgs" and policy.validation_images == len(masks)
    curve = threshold_curve(surface, policy)
    assert list(curve.columns) == ["threshold", "score"]
    np.testing.assert_allclose(curve["threshold"], DEFAULT_THRESHOLDS)
    in_band = (curve["threshold"] >= BACKGROUND_MAX) & (curve["threshold"] < SALT_MIN)
    assert in_band.sum() >= 5
    assert (curve.loc[in_band, "score"] == 1.0).all()
    assert (curve.loc[~in_band, "score"] < 1.0).all()
    # The sweep agrees with scoring each threshold directly.
    for threshold, score in zip(curve["threshold"][::7], curve["score"][::7]):
        assert score == pytest.approx(tgs_score(masks, probabilities > threshold))


def test_empty_baseline_is_the_share_of_empty_masks(planted):
    masks, probabilities = planted
    policy, _ = fit_policy(masks, probabilities, "tgs")
    empty_share = np.mean([not mask.any() for mask in masks])
    assert empty_share == 3 / 12
    assert policy.empty_baseline_score == pytest.approx(empty_share)


def test_fit_policy_with_custom_thresholds(planted):
    masks, probabilities = planted
    policy, surface = fit_policy(masks, probabilities, "dice", thresholds=[0.1, 0.5, 0.9])
    assert policy.threshold == 0.5 and len(threshold_curve(surface, policy)) == 3


def test_apply_policy(planted):
    _, probabilities = planted
    masks = apply_policy(probabilities, Policy(0.5))
    assert masks.dtype == bool and masks.shape == probabilities.shape
    np.testing.assert_array_equal(masks, probabilities > 0.5)
    # Strictly greater: a probability equal to the threshold stays background.
    assert not apply_policy(np.array([[[0.5]]]), Policy(0.5)).any()
    with pytest.raises(ValueError, match=r"\(N, H, W\).*\(1, 1\)"):
        apply_policy(np.array([[0.5]]), Policy(0.5))


def test_save_and_load_policy(planted, tmp_path):
    masks, probabilities = planted
    policy, _ = fit_policy(masks, probabilities, "tgs")
    path = save_policy(tmp_path / "run" / "policy.json", policy)
    assert path.is_file()
    assert load_policy(path) == policy
    assert [entry.name for entry in path.parent.iterdir()] == ["policy.json"]


def test_load_missing_policy(tmp_path):
    with pytest.raises(FileNotFoundError, match="notebook 04"):
        load_policy(tmp_path / "policy.json")


@pytest.mark.parametrize("text", ['{"threshold": 1.5}', '{"threshold": -0.1}', '{"metric": "tgs"}', '[0.5]',
                                  '{"threshold": 0.5, "colour": "red"}'])
def test_load_policy_names_the_file_and_the_problem(text, tmp_path):
    (tmp_path / "policy.json").write_text(text)
    with pytest.raises(ValueError, match=f"{tmp_path / 'policy.json'}: .*(threshold|argument|colour|object)"):
        load_policy(tmp_path / "policy.json")


# --- validate_submission ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def competition(sample_dir):
    return get_competition("tgs", sample_dir)


@pytest.fixture(scope="module")
def submission_rows(competition):
    """(id, rle) rows for every sample test id from random masks, a few of them empty."""
    rng = np.random.default_rng(1)
    rows = []
    for index, image_id in enumerate(competition.test_ids()):
        mask = np.zeros((101, 101), bool) if index % 5 == 0 else rng.uniform(size=(101, 101)) > 0.7
        rows.append([image_id, rle.encode(mask, order="F")])
    return rows


def write_rows(path, rows, header=("id", "rle_mask")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_valid_submission(competition, submission_rows, sample_dir, tmp_path):
    expected_ids = pd.read_csv(sample_dir / "sample_submission.csv", dtype=str)["id"]
    assert sorted(row[0] for row in submission_rows) == sorted(expected_ids)
    summary = validate_submission(write_rows(tmp_path / "submission.csv", submission_rows), competition)
    assert summary["rows"] == len(expected_ids) == 40
    assert summary["empty_masks"] == sum(row[1] == "" for row in submission_rows) == 8
    covered = sum(rle.decode(text, (101, 101), order="F").sum() for _, text in submission_rows)
    assert summary["mean_coverage"] == pytest.approx(covered / 40 / (101 * 101))


def test_row_order_does_not_matter(competition, submission_rows, tmp_path):
    summary = validate_submission(write_rows(tmp_path / "s.csv", submission_rows[::-1]), competition)
    assert summary["rows"] == 40


def check_rejected(tmp_path, competition, rows, *fragments, header=("id", "rle_mask")):
    path = write_rows(tmp_path / "submission.csv", rows, header)
    with pytest.raises(SeglibError) as raised:
        validate_submission(path, competition)
    assert isinstance(raised.value, ValueError)
    for fragment in fragments:
        assert fragment in str(raised.value), (fragment, str(raised.value))


def test_missing_id(competition, submission_rows, tmp_path):
    check_rejected(tmp_path, competition, submission_rows[:7] + submission_rows[8:], submission_rows[7][0],
                   "missing")


def test_extra_id(competition, submission_rows, tmp_path):
    check_rejected(tmp_path, competition, submission_rows + [["0123456789", ""]], "0123456789", "unknown")


def test_duplicate_id(competition, submission_rows, tmp_path):
    check_rejected(tmp_path, competition, submission_rows + [[submission_rows[3][0], ""]], submission_rows[3][0],
                   "duplicate")


def test_wrong_header(competition, submission_rows, tmp_path):
    check_rejected(tmp_path, competition, submission_rows, "header", "rle_mask", header=("id", "mask"))


def test_odd_count_rle(competition, submission_rows, tmp_path):
    rows = [list(row) for row in submission_rows]
    rows[5][1] = "1 10 20"
    check_rejected(tmp_path, competition, rows, rows[5][0], "odd")


def test_run_past_the_end(competition, submission_rows, tmp_path):
    rows = [list(row) for row in submission_rows]
    rows[9][1] = "1 3 10199 5"  # ends at pixel 10203 of 10201
    check_rejected(tmp_path, competition, rows, rows[9][0], "past the end")


def test_last_pixel_is_inside(competition, submission_rows, tmp_path):
    rows = [list(row) for row in submission_rows]
    rows[9][1] = "10199 3"  # the last three pixels
    assert validate_submission(write_rows(tmp_path / "s.csv", rows), competition)["rows"] == 40


# --- write_submission end to end ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(competition):
    keras.utils.set_random_seed(3)
    model = build_unet((128, 128, 1), depth=2, base_filters=4)
    geometry = Geometry("pad", 128, competition.image_size)
    normalization = Normalization([120.0], [40.0])
    return model, geometry, normalization


def test_write_submission_end_to_end(competition, predictor, tmp_path):
    model, geometry, normalization = predictor
    test_ids = competition.test_ids()
    # A threshold at the median probability makes the masks neither all empty nor all full.
    images = geometry.to_model(normalization(competition.read_images(test_ids, "test")))
    probabilities = geometry.to_original(predict.model_probabilities(model, images))[..., 0]
    threshold = float(np.median(probabilities))
    path = tmp_path / "submission.csv"
    summary = write_submission(path, competition, model, geometry, normalization, Policy(threshold),
                               batch_size=16)
    assert path.is_file()
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["submission.csv"]
    assert summary == validate_submission(path, competition)
    assert summary["rows"] == len(test_ids) == 40
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(table.columns) == ["id", "rle_mask"]
    assert list(table["id"]) == test_ids
    assert 0 < summary["mean_coverage"] < 1
    # Each row is the model's mask under the policy, away from pixels that sit on the threshold.
    for image_id, text, probability in zip(table["id"], table["rle_mask"], probabilities):
        decoded = rle.decode(text, (101, 101), order="F")
        clear = np.abs(probability - threshold) > 1e-4
        np.testing.assert_array_equal(decoded[clear], (probability > threshold)[clear], err_msg=image_id)


def test_failed_validation_leaves_no_submission(competition, predictor, tmp_path):
    model, geometry, normalization = predictor
    path = tmp_path / "submission.csv"
    with pytest.raises(SeglibError, match="missing"):
        write_submission(path, competition, model, geometry, normalization, Policy(0.5), batch_size=16,
                         image_ids=competition.test_ids()[:5])
    assert list(tmp_path.iterdir()) == []
