"""The diagnostics behind notebooks 01, 03, 04 and 05: per-image tables, coverage bins, the empty/non-empty
confusion, the fit summary, the metadata rate table, submission coverage and the figures drawn from them."""

import numpy as np
import pandas as pd
import pytest

from seglib import eda, evaluate, metrics, plots, rle, submit, train
from seglib.competitions import get_competition
from seglib.errors import SeglibError
from seglib.policy import Policy


def pairs_of(truths, probabilities):
    return lambda: zip(truths, probabilities)


def test_image_table_scores_each_image_like_the_metric():
    rng = np.random.default_rng(0)
    truths = rng.random((12, 20, 20)) > 0.6
    truths[:4] = False
    probabilities = np.clip(truths + rng.normal(0, 0.4, truths.shape), 0, 1).astype(np.float32)
    ids = [f"image{index}" for index in range(12)]
    table = evaluate.image_table(pairs_of(truths, probabilities), ids, Policy(0.5), "tgs")
    expected = metrics.tgs_image_scores(truths, probabilities > 0.5)
    np.testing.assert_allclose(table["score"].to_numpy(), expected)
    assert list(table.index) == ids
    np.testing.assert_allclose(table["true_coverage"], truths.mean(axis=(1, 2)))
    assert table["true_empty"].sum() == 4
    confusion = evaluate.empty_confusion(table)
    assert confusion.to_numpy().sum() == 12
    assert confusion.loc["truly empty"].sum() == 4
    assert confusion.at["truly empty", "predicted empty"] == ((~truths.any(axis=(1, 2))) &
                                                             ~(probabilities > 0.5).any(axis=(1, 2))).sum()


def test_image_table_averages_classes_and_names_a_count_mismatch():
    truths = np.zeros((2, 8, 8, 3), bool)
    truths[0, :4, :, 0] = True
    probabilities = truths.astype(np.float32)
    probabilities[0, ..., 1] = 0.9  # class 1 predicted everywhere where it is absent: that class scores 0
    table = evaluate.image_table(pairs_of(truths, probabilities), ["a", "b"], Policy(0.5), "dice")
    assert table.at["a", "score"] == pytest.approx(2 / 3) and table.at["b", "score"] == 1.0
    with pytest.raises(ValueError, match="3 ids but 2"):
        evaluate.image_table(pairs_of(truths, probabilities), ["a", "b", "c"], Policy(0.5), "dice")


def test_coverage_bins_and_score_by_coverage():
    bins = evaluate.coverage_bin([0.0, 0.001, 0.0099, 0.01, 0.2, 0.25, 1.0])
    assert list(bins) == ["empty", "under 1 %", "under 1 %", "1-25 %", "1-25 %", "over 25 %", "over 25 %"]
    table = pd.DataFrame({"score": [1.0, 0.0, 0.5, 0.7], "true_coverage": [0.0, 0.005, 0.5, 0.6]})
    by_coverage = evaluate.score_by_coverage(table)
    assert by_coverage["images"].tolist() == [1, 1, 0, 2]
    assert by_coverage.loc["over 25 %", "mean_score"] == pytest.approx(0.6)


def test_fit_summary_says_why_each_fold_stopped():
    history = pd.DataFrame({"val_score": [0.2, 0.5, 0.4, 0.3, 0.6, 0.1], "minutes": [1, 2, 3, 1, 2, 5.5],
                            "fold": [0, 0, 0, 1, 1, 1]})
    summary = train.fit_summary(history, "val_score", epochs=3, minutes=5.0)
    assert summary["fold"].tolist() == [1, 2]
    assert summary["best epoch"].tolist() == [2, 2]
    assert summary["stopped by"].tolist() == ["the epoch limit", "the time budget"]
    early = train.fit_summary(history[history["fold"] == 0], "val_score", epochs=10, minutes=None)
    assert early["stopped by"].tolist() == ["early stopping"] and early["best val_score"][0] == 0.5


def test_rate_by_bin_shows_where_masks_are_common():
    coverage = pd.DataFrame({"z": np.arange(100), "coverage": np.r_[np.zeros(50), np.full(50, 0.3)]})
    coverage["empty"] = coverage["coverage"] == 0
    table = eda.rate_by_bin(coverage, "z", bins=4)
    assert table["images"].tolist() == [25, 25, 25, 25]
    assert table["non_empty_share"].tolist() == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="no column 'depth'"):
        eda.rate_by_bin(coverage, "depth")


def test_submission_coverage_sums_run_lengths(sample_dir):
    competition = get_competition("tgs", sample_dir)
    ids = competition.test_ids()[:3]
    masks = np.zeros((3, 101, 101), bool)
    masks[1, 10:20, 5:9] = True
    masks[2] = True
    table = pd.DataFrame({"id": ids, "rle_mask": [rle.encode(mask) for mask in masks]})
    coverage = submit.submission_coverage(table, competition, ids)
    np.testing.assert_allclose(coverage.to_numpy(), masks.mean(axis=(1, 2)))
    with pytest.raises(SeglibError, match="no row for"):
        submit.submission_coverage(table.iloc[:2], competition, ids)


def test_outcome_overlay_colours_each_pixel_by_outcome():
    truth = np.array([[True, True, False, False]])
    prediction = np.array([[True, False, True, False]])
    overlay = plots._outcome_overlay(truth, prediction)
    colours = list(plots.OUTCOME_COLOURS.values())
    assert tuple(overlay[0, 0, :3]) == colours[0] and tuple(overlay[0, 2, :3]) == colours[1]
    assert tuple(overlay[0, 1, :3]) == colours[2] and overlay[0, 3, 3] == 0
    figure = plots.outcome_grid(np.zeros((2, 4, 4)), np.zeros((2, 4, 4), bool), np.ones((2, 4, 4), bool), ["a", "b"])
    assert [axis.get_title() for axis in figure.axes[:2]] == ["a", "b"]


def test_heatmap_fits_a_wide_table_and_marks_the_chosen_cell():
    table = pd.DataFrame(np.random.default_rng(0).random((8, 49)), index=range(0, 80, 10),
                         columns=np.round(np.linspace(0.02, 0.98, 49), 4))
    figure = plots.heatmap(table, mark=(30, 0.5), xlabel="threshold", ylabel="min area")
    width, height = figure.get_size_inches()
    assert width > 2 * height
    (patch,) = figure.axes[0].patches
    assert patch.get_xy() == (24 - 0.5, 3 - 0.5)
    assert len(figure.axes[0].get_xticklabels()) <= 25


def test_histograms_overlay_groups_and_save_writes_one_png(tmp_path):
    table = pd.DataFrame({"z": [1.0, 2.0, 3.0, 4.0], "make": ["a", "b", "a", None],
                          "part": ["train", "train", "test", "test"]})
    figure = plots.histograms(table, group="part")
    assert [axis.get_xlabel() for axis in figure.axes] == ["z", "make"]
    for axis in figure.axes:
        assert sorted(text.get_text() for text in axis.get_legend().get_texts()) == ["test", "train"]
    assert [label.get_text() for label in figure.axes[1].get_xticklabels()] == ["a", "b"]
    path = plots.save(figure, tmp_path, "metadata")
    assert path == tmp_path / "plots" / "metadata.png" and path.read_bytes()[:4] == b"\x89PNG"
    assert [child.name for child in path.parent.iterdir()] == ["metadata.png"]  # no partial file left


def test_learning_curves_count_epochs_from_one_and_mark_the_best():
    history = pd.DataFrame({"loss": [0.5, 0.4, 0.3], "val_loss": [0.6, 0.5, 0.55], "score": [0.3, 0.4, 0.5],
                            "val_score": [0.2, 0.6, 0.5], "learning_rate": [1e-3, 5e-4, 1e-4]})
    figure = plots.learning_curves(history, "val_score")
    axis = figure.axes[0]
    assert list(axis.get_lines()[0].get_xdata()) == [1, 2, 3]
    assert any(line.get_xdata()[0] == 2 for line in axis.get_lines()[2:])
    assert [axis.get_ylabel() for axis in figure.axes] == [plots.CURVE_LABELS[name]
                                                           for name in ("loss", "score", "learning_rate")]


def test_spread_ids_cover_the_range_from_lowest_to_highest():
    values = pd.Series([0.5, 0.0, 0.9, 0.2, 0.7, 0.1], index=list("abcdef"))
    assert evaluate.spread_ids(values, 3) == ["b", "d", "c"]  # lowest, middle (rank 2 of 0..5), highest
    assert evaluate.spread_ids(values, 10) == ["b", "f", "d", "a", "e", "c"]  # all, in order
