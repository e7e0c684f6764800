"""The post-processing policy: how probabilities become the masks that are submitted.

The policy is fitted on validation predictions (notebook 04), saved as a small JSON file and applied
unchanged to the test predictions (notebook 05), so the submission uses exactly what was measured.
"""

import numpy as np
import pandas as pd

from seglib import artifacts
from seglib.metrics import get_metric

DEFAULT_THRESHOLDS = np.round(np.linspace(0.02, 0.98, 49), 4)


def sweep(true_masks, probabilities, metric_name, thresholds=DEFAULT_THRESHOLDS):
    """The competition score of every probability threshold, as a DataFrame (threshold, score)."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    scores = get_metric(metric_name).sweep(true_masks, probabilities, thresholds)
    return pd.DataFrame({"threshold": thresholds, "score": scores})


def fit_policy(true_masks, probabilities, metric_name, thresholds=DEFAULT_THRESHOLDS):
    """Pick the best threshold on validation predictions.

    Returns:
        (policy dict, sweep DataFrame). The policy holds the threshold, the metric, the validation score and,
        for comparison, the score of submitting every mask empty.
    """
    metric = get_metric(metric_name)
    curve = sweep(true_masks, probabilities, metric_name, thresholds)
    best = curve.loc[curve["score"].idxmax()]
    empty_score = metric.score(true_masks, np.zeros_like(true_masks, dtype=bool))
    policy = {
        "threshold": float(best["threshold"]),
        "metric": metric_name,
        "validation_score": float(best["score"]),
        "empty_baseline_score": float(empty_score),
        "validation_images": int(len(true_masks)),
    }
    return policy, curve


def apply_policy(probabilities, policy):
    """Boolean masks from probabilities under ``policy``."""
    return np.asarray(probabilities) > policy["threshold"]


def save_policy(path, policy):
    """Write the policy JSON atomically."""
    if not 0.0 <= policy.get("threshold", -1) <= 1.0:
        raise ValueError(f"policy threshold must be in [0, 1]: {policy}")
    return artifacts.save_json(path, policy)


def load_policy(path):
    """Read a policy written by ``save_policy``."""
    policy = artifacts.load_json(path, what="policy (notebook 04)")
    if "threshold" not in policy:
        raise ValueError(f"{path}: policy has no 'threshold'")
    return policy
