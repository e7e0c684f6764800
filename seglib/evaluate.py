"""Where a validation score comes from, image by image: the tables behind notebook 04's diagnostics.

The mean score hides what a competitor needs to see: which images fail, whether small masks or empty images
cost the points, and what the minimum-area rule trades (empty images kept empty against small masks lost).
"""

import numpy as np
import pandas as pd

from seglib.errors import SeglibError
from seglib.metrics import get_metric
from seglib.policy import apply_policy

# Coverage bins of the TGS diagnostics: empty masks score all or nothing, tiny ones are the hardest.
COVERAGE_EDGES = (0.0, 0.01, 0.25, 1.0)
COVERAGE_BINS = ("empty", "under 1 %", "1-25 %", "over 25 %")


def image_table(make_pairs, image_ids, run_policy, metric_name):
    """One row per image, indexed by id: its score under ``run_policy`` (a ``seglib.policy.Policy``; the mean
    over classes with several), true_coverage, predicted_coverage, true_empty and predicted_empty.

    ``make_pairs`` returns an iterator of (true mask, probabilities at the original size) in the order of
    ``image_ids``, as ``seglib.predict.truth_and_predictions`` does.
    """
    image_scores = get_metric(metric_name).image_scores
    rows = []
    for image_id, (truth, probabilities) in zip(image_ids, make_pairs()):
        prediction = apply_policy(probabilities[np.newaxis], run_policy)[0]
        truth = np.asarray(truth, bool).reshape(prediction.shape)
        rows.append((image_id, float(np.mean(image_scores(truth[np.newaxis], prediction[np.newaxis]))),
                     truth.mean(), prediction.mean(), not truth.any(), not prediction.any()))
    if len(rows) != len(image_ids):
        raise SeglibError(f"{len(image_ids)} ids but {len(rows)} (mask, prediction) pairs")
    columns = ["id", "score", "true_coverage", "predicted_coverage", "true_empty", "predicted_empty"]
    return pd.DataFrame(rows, columns=columns).set_index("id")


def coverage_bin(coverage):
    """The COVERAGE_BINS label of each coverage (share of pixels), as an ordered categorical."""
    coverage = np.asarray(coverage, dtype=float)
    codes = np.where(coverage == 0, 0, 1 + np.digitize(coverage, COVERAGE_EDGES[1:-1]))
    return pd.Categorical.from_codes(codes, COVERAGE_BINS, ordered=True)


def score_by_coverage(table):
    """Images and mean score per true-coverage bin, from ``image_table``."""
    bins = pd.Series(coverage_bin(table["true_coverage"]), index=table.index, name="true coverage")
    return table.groupby(bins, observed=False)["score"].agg(images="size", mean_score="mean")


def empty_confusion(table):
    """Image-level counts: truly empty or not (rows) against predicted empty or not (columns)."""
    truth = table["true_empty"].map({True: "truly empty", False: "truly non-empty"})
    prediction = table["predicted_empty"].map({True: "predicted empty", False: "predicted non-empty"})
    counts = pd.crosstab(truth, prediction).rename_axis(index=None, columns=None)
    return counts.reindex(index=["truly empty", "truly non-empty"],
                          columns=["predicted empty", "predicted non-empty"], fill_value=0)


def spread_ids(values, count):
    """``count`` ids (``values``' index) spread evenly from the lowest value to the highest: the images a figure
    shows so that it covers the whole range, e.g. of mask coverage."""
    ordered = values.sort_values().index
    return list(ordered[np.linspace(0, len(ordered) - 1, min(count, len(ordered))).astype(int)])
