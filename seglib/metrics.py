"""Kaggle segmentation scores: TGS Salt's per-image precision over IoU thresholds, and Dice.

Hand-written rather than Keras': ``keras.metrics.BinaryIoU`` pools the pixels of a batch, while Kaggle scores
every image on its own (an empty image predicted empty scores 1, one stray pixel on it scores 0) and averages
the images. Pixel and image averages rank models differently, so tuning must use these scores.

Every score is a formula on three counts per image (intersection, predicted, true), so scoring masks and
sweeping thresholds share one code path and agree exactly.
"""

import dataclasses
from typing import Callable

import numpy as np

from seglib.errors import SeglibError

# np.arange(0.5, 1.0, 0.05) drifts (its 0.7 is 0.7000000000000002); rounding gives the literals Kaggle means.
TGS_IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)


def _as_image_batch(masks, name):
    """``masks`` as (N, H, W): a single (H, W) image becomes N=1, multi-label (N, H, W, C) N * C images."""
    try:
        masks = np.asarray(masks)
    except ValueError as error:  # a list of arrays of different shapes
        raise SeglibError(f"{name} must hold 2-D images of one shape: {error}") from None
    if masks.ndim == 4:
        # Kaggle scores every (image, class) pair on its own; image-major order.
        masks = np.moveaxis(masks, -1, 1).reshape(-1, *masks.shape[1:3])
    if masks.ndim == 2:
        masks = masks[np.newaxis]
    if masks.ndim != 3:
        raise SeglibError(f"{name} must be (N, H, W) or (H, W), got an array of shape {masks.shape}")
    return masks


def _paired_batches(true_masks, other, other_name):
    """(N, H, W) versions of both arguments, whose shapes must agree."""
    true_batch, other_batch = _as_image_batch(true_masks, "true_masks"), _as_image_batch(other, other_name)
    if true_batch.shape != other_batch.shape:
        raise SeglibError(f"true_masks shape {np.shape(true_masks)} does not match {other_name} shape "
                          f"{np.shape(other)}")
    if len(true_batch) == 0:
        raise SeglibError("true_masks holds no images")
    return true_batch, other_batch


def _mask_counts(true_masks, pred_masks):
    """Per-image (intersection, predicted, true) pixel counts, each of shape (N,)."""
    true_batch, pred_batch = _paired_batches(true_masks, pred_masks, "pred_masks")
    true_flat = true_batch.reshape(len(true_batch), -1) > 0
    pred_flat = pred_batch.reshape(len(pred_batch), -1) > 0
    intersection = np.count_nonzero(true_flat & pred_flat, axis=1)
    return intersection, np.count_nonzero(pred_flat, axis=1), np.count_nonzero(true_flat, axis=1)


def sweep_counts(true_masks, probabilities, thresholds):
    """Per-image (intersection, predicted, true) pixel counts of ``probabilities > t`` for every threshold t.

    Returns intersection and predicted of shape (N, T), true of shape (N, 1), all int64; multi-label
    (N, H, W, C) inputs count every (image, class) pair, image-major, like the scores.
    """
    true_batch, probability_batch = _paired_batches(true_masks, probabilities, "probabilities")
    if probability_batch.dtype.kind not in "biuf":
        raise SeglibError(f"probabilities must be real numbers, got dtype {probability_batch.dtype}")
    if probability_batch.dtype.kind == "f" and np.isnan(probability_batch).any():
        raise SeglibError("probabilities contain NaN")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or thresholds.size == 0 or np.isnan(thresholds).any():
        raise SeglibError(f"thresholds must be a non-empty 1-D sequence without NaN, got {thresholds!r}")
    order = np.argsort(thresholds, kind="stable")
    levels = len(thresholds) + 1
    histogram = np.empty((len(true_batch), 2, levels), dtype=np.int64)
    for index, (truth, probability) in enumerate(zip(true_batch, probability_batch)):
        # A pixel's level, the number of thresholds strictly below it, is the number of masks it is in: one
        # histogram of levels replaces a pass per threshold. searchsorted compares in float64, as `>` does.
        level = np.searchsorted(thresholds[order], probability.ravel(), side="left")
        level += levels * (truth.ravel() > 0)
        histogram[index] = np.bincount(level, minlength=2 * levels).reshape(2, levels)
    # Pixels above the k-th smallest threshold are those at level k + 1 or higher.
    above = np.cumsum(histogram[..., ::-1], axis=-1)[..., -2::-1]
    unsort = np.argsort(order)
    return above[:, 1, unsort], above.sum(axis=1)[:, unsort], histogram[:, 1].sum(axis=1, keepdims=True)


def _tgs_from_counts(intersection, predicted, true):
    """The fraction of the IoU thresholds that the IoU exceeds; both masks empty scores 1."""
    union = predicted + true - intersection
    iou = np.divide(intersection, union, out=np.ones(np.shape(union)), where=union > 0)
    return np.searchsorted(TGS_IOU_THRESHOLDS, iou, side="left") / len(TGS_IOU_THRESHOLDS)


def _dice_from_counts(intersection, predicted, true):
    """2|A∩B| / (|A| + |B|); both masks empty scores 1."""
    total = predicted + true
    return np.divide(2 * intersection, total, out=np.ones(np.shape(total)), where=total > 0)


@dataclasses.dataclass(frozen=True)
class Metric:
    """A per-image score, written as a formula on broadcastable (intersection, predicted, true) counts."""

    name: str
    from_counts: Callable

    def image_scores(self, true_masks, pred_masks):
        """float64 (N,), one score per image (per (image, class) for (N, H, W, C) masks); values > 0 are masks."""
        return self.from_counts(*_mask_counts(true_masks, pred_masks))

    def score(self, true_masks, pred_masks):
        """The leaderboard score: the mean over images."""
        return float(np.mean(self.image_scores(true_masks, pred_masks)))

    def sweep(self, true_masks, probabilities, thresholds):
        """The score of ``probabilities > t`` for every threshold t, float64 (T,), in one pass."""
        return np.mean(self.from_counts(*sweep_counts(true_masks, probabilities, thresholds)), axis=0)


METRICS = {"tgs": Metric("tgs", _tgs_from_counts), "dice": Metric("dice", _dice_from_counts)}


def get_metric(name):
    """The ``Metric`` registered under ``name`` ("tgs" or "dice")."""
    if name not in METRICS:
        raise SeglibError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}")
    return METRICS[name]


def tgs_image_scores(true_masks, pred_masks):
    """Per-image TGS Salt score: mean over IoU thresholds 0.50, 0.55, ..., 0.95 of [IoU > threshold]."""
    return METRICS["tgs"].image_scores(true_masks, pred_masks)


def tgs_score(true_masks, pred_masks):
    """The TGS Salt leaderboard score: the mean of ``tgs_image_scores``."""
    return METRICS["tgs"].score(true_masks, pred_masks)


def dice_scores(true_masks, pred_masks):
    """Per-image Dice coefficient, float64 (N,)."""
    return METRICS["dice"].image_scores(true_masks, pred_masks)


def mean_dice(true_masks, pred_masks):
    """Mean over images of the per-image Dice coefficient (Carvana's and the hand-bone leaderboard score)."""
    return METRICS["dice"].score(true_masks, pred_masks)


def bootstrap_interval(scores, resamples=2000, seed=0):
    """The 95 % percentile-bootstrap interval of the mean of per-image ``scores`` (or of per-image differences
    between two runs on the same images: a paired interval)."""
    scores = np.asarray(scores, dtype=np.float64)
    sample = np.random.default_rng(seed).integers(0, len(scores), size=(resamples, len(scores)))
    return tuple(np.percentile(scores[sample].mean(axis=1), [2.5, 97.5]).tolist())
