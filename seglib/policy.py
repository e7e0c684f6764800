"""The post-processing policy: how probabilities become the masks that are submitted.

The policy is fitted on validation predictions (notebook 04), saved as a small JSON file and applied
unchanged to the test predictions (notebook 05), so the submission uses exactly what was measured.
"""

import numpy as np
import pandas as pd
from scipy import ndimage

from seglib import artifacts
from seglib.metrics import get_metric

DEFAULT_THRESHOLDS = np.round(np.linspace(0.02, 0.98, 49), 4)


def sweep(true_masks, probabilities, metric_name, thresholds=DEFAULT_THRESHOLDS):
    """The competition score of every probability threshold, as a DataFrame (threshold, score)."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    scores = get_metric(metric_name).sweep(true_masks, probabilities, thresholds)
    return pd.DataFrame({"threshold": thresholds, "score": scores})


def fit_policy(true_masks, probabilities, metric_name, thresholds=DEFAULT_THRESHOLDS):
    """``fit_policy_pairs`` on in-memory arrays: true masks (N, H, W) or (N, H, W, C) and predictions alike."""
    return fit_policy_pairs(lambda: zip(true_masks, probabilities), metric_name, thresholds)


def fit_policy_pairs(make_pairs, metric_name, thresholds=DEFAULT_THRESHOLDS, chunk_size=32):
    """Pick the best threshold on validation predictions, then keep hole filling only if it scores higher.

    The predictions stream image by image, twice (the sweep, then hole filling at the chosen threshold), so
    validation sets whose original-size predictions would not fit in memory (hand-bone: 2048 x 2048 x 29 each)
    can be tuned too.

    Args:
        make_pairs: a function returning a fresh iterator of (true mask, probabilities) per image, at the
            original size: (H, W), or (H, W, C) for multi-label competitions.
        metric_name: the competition metric.
        thresholds: the probability thresholds to try.
        chunk_size: images scored together (the vectorised sweep is fastest on batches).

    Returns:
        (policy dict, sweep DataFrame). The policy holds the threshold, whether to fill holes, the metric, the
        validation score, the score of submitting every mask empty (for comparison) and, with several classes,
        the per-class scores.
    """
    metric = get_metric(metric_name)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    sweep_scores, empty_scores, num_images, classes = [], [], 0, 1
    for true_chunk, probability_chunk in _chunks(make_pairs(), chunk_size):
        sweep_scores.append(metric.sweep_image_scores(true_chunk, probability_chunk, thresholds))
        empty_scores.append(metric.image_scores(true_chunk, np.zeros_like(true_chunk)))
        num_images += len(true_chunk)
        # Multi-label masks score every (image, class) pair, image-major.
        classes = true_chunk.shape[-1] if true_chunk.ndim == 4 else 1
    if not sweep_scores:
        raise ValueError("fit_policy needs at least one validation image")
    sweep_scores = np.concatenate(sweep_scores)
    curve = pd.DataFrame({"threshold": thresholds, "score": sweep_scores.mean(axis=0)})
    best = int(np.argmax(curve["score"].to_numpy()))
    threshold = float(thresholds[best])
    # Carvana's cars and the bones are solid: a hole inside a predicted mask is almost always an error.
    filled_scores = np.concatenate([
        metric.image_scores(true_chunk, fill_holes(probability_chunk > threshold))
        for true_chunk, probability_chunk in _chunks(make_pairs(), chunk_size)])
    use_fill = bool(filled_scores.mean() > sweep_scores[:, best].mean())
    chosen_scores = filled_scores if use_fill else sweep_scores[:, best]
    policy = {
        "threshold": threshold,
        "fill_holes": use_fill,
        "metric": metric_name,
        "validation_score": float(chosen_scores.mean()),
        "validation_score_without_fill": float(sweep_scores[:, best].mean()),
        "empty_baseline_score": float(np.concatenate(empty_scores).mean()),
        "validation_images": int(num_images),
    }
    if classes > 1:
        policy["class_scores"] = chosen_scores.reshape(-1, classes).mean(axis=0).tolist()
    return policy, curve


def _chunks(pairs, chunk_size):
    """Stack (true mask, probabilities) pairs into batches of at most ``chunk_size`` images."""
    true_masks, probabilities = [], []
    for true_mask, probability in pairs:
        true_masks.append(np.asarray(true_mask))
        probabilities.append(np.asarray(probability))
        if len(true_masks) == chunk_size:
            yield np.stack(true_masks), np.stack(probabilities)
            true_masks, probabilities = [], []
    if true_masks:
        yield np.stack(true_masks), np.stack(probabilities)


def fill_holes(masks):
    """Fill the holes of every 2-D mask in a batch (N, H, W) or (N, H, W, C), with scipy.ndimage."""
    masks = np.asarray(masks, dtype=bool)
    filled = np.empty_like(masks)
    if masks.ndim == 3:
        for index, mask in enumerate(masks):
            filled[index] = ndimage.binary_fill_holes(mask)
    elif masks.ndim == 4:
        for index in range(masks.shape[0]):
            for channel in range(masks.shape[-1]):
                filled[index, ..., channel] = ndimage.binary_fill_holes(masks[index, ..., channel])
    else:
        raise ValueError(f"fill_holes needs a batch (N, H, W) or (N, H, W, C), got shape {masks.shape}")
    return filled


def apply_policy(probabilities, policy):
    """Boolean masks from a batch of probabilities under ``policy``."""
    masks = np.asarray(probabilities) > policy["threshold"]
    return fill_holes(masks) if policy.get("fill_holes", False) else masks


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
