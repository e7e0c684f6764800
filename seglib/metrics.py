"""Kaggle segmentation scores: TGS Salt's per-image precision over IoU thresholds, and Dice.

These are hand-written rather than taken from Keras: ``keras.metrics.BinaryIoU`` and Dice losses pool the
pixels of a whole batch, while Kaggle scores every image on its own (an empty image predicted empty scores
a full 1, an image with one stray pixel predicted on it scores 0) and then averages the images. The pixel
average and the image average rank models differently, so model selection and threshold tuning must use the
scores below.

Everything is computed from three counts per image (intersection, predicted pixels, true pixels), so the
score functions and the threshold sweeps share one code path and agree exactly.
"""

import collections

import numpy as np

# np.arange(0.5, 1.0, 0.05) drifts (its 0.7 is 0.7000000000000002); rounding gives the literals Kaggle means.
TGS_IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)

# The threshold sweep works on about this many pixels (and histogram bins) at a time: it bounds the memory,
# and chunks this small stay in the CPU cache, which measured faster than larger ones.
_SWEEP_CHUNK_PIXELS = 1 << 16


def _as_image_batch(masks, name):
    """Return ``masks`` as an array of shape (N, H, W); a single (H, W) image becomes N=1."""
    try:
        masks = np.asarray(masks)
    except ValueError as error:
        # Numpy refuses a list of arrays of different shapes; say which argument it was.
        raise ValueError(f"{name} must hold 2-D images of one shape: {error}") from None
    if masks.ndim == 4 and masks.shape[-1] == 1:
        # Keras models return (N, H, W, 1); the channel axis carries nothing here.
        masks = masks[..., 0]
    if masks.ndim == 2:
        masks = masks[np.newaxis]
    if masks.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W) or (H, W), got an array of shape {masks.shape}")
    return masks


def _paired_batches(true_masks, other, other_name):
    """Return (N, H, W) views of both arguments, checking that their shapes agree."""
    true_batch = _as_image_batch(true_masks, "true_masks")
    other_batch = _as_image_batch(other, other_name)
    if true_batch.shape != other_batch.shape:
        raise ValueError(
            f"true_masks shape {np.shape(true_masks)} does not match {other_name} shape {np.shape(other)}"
        )
    if true_batch.shape[0] == 0:
        raise ValueError("true_masks holds no images")
    return true_batch, other_batch


def _mask_counts(true_masks, pred_masks):
    """Return per-image (intersection, predicted, true) pixel counts, each of shape (N,)."""
    true_batch, pred_batch = _paired_batches(true_masks, pred_masks, "pred_masks")
    true_flat = true_batch.reshape(len(true_batch), -1) > 0
    pred_flat = pred_batch.reshape(len(pred_batch), -1) > 0
    intersection = np.count_nonzero(true_flat & pred_flat, axis=1)
    return intersection, np.count_nonzero(pred_flat, axis=1), np.count_nonzero(true_flat, axis=1)


class _PrefixTable(collections.namedtuple("_PrefixTable", ["levels", "below", "inside", "multiplicity"])):
    """Per 16-bit float32 prefix: its level (or -1 if a threshold falls inside it), and how to settle the -1s.

    Attributes:
        levels: (65536,) intp, thresholds below every value of the prefix, or -1.
        below: thresholds below the prefix's interval.
        inside: the one distinct threshold value inside the interval; NaN if there are several.
        multiplicity: how many thresholds equal ``inside``.
    """


def _prefix_table(sorted_thresholds):
    """Build the ``_PrefixTable`` of sorted float64 thresholds.

    A prefix (sign, exponent and 7 mantissa bits of a float32) covers a narrow interval of values. If no
    threshold falls inside it, every value with that prefix lies above the same number of thresholds.
    """
    prefixes = np.arange(1 << 16, dtype=np.uint32) << 16
    first = prefixes.view(np.float32)
    last = (prefixes | 0xFFFF).view(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        # Negative prefixes run from -small to -large, so order each interval's ends.
        low, high = np.fmin(first, last), np.fmax(first, last)
        # Widen by one float32 step: a float64 or integer score rounds into a prefix from up to half a step away.
        low = np.nextafter(low, np.float32(-np.inf)).astype(np.float64)
        high = np.nextafter(high, np.float32(np.inf)).astype(np.float64)
    below = np.searchsorted(sorted_thresholds, low, side="left")
    through = np.searchsorted(sorted_thresholds, high, side="right")
    levels = np.where(through == below, below, -1).astype(np.intp)
    last_index = len(sorted_thresholds) - 1
    inside = sorted_thresholds[np.minimum(below, last_index)]
    several = inside != sorted_thresholds[np.clip(through - 1, 0, last_index)]
    # Prefixes next to infinity also hold NaN bit patterns, which must reach the NaN check.
    nonfinite = ~(np.isfinite(first) & np.isfinite(last))
    levels[nonfinite] = -1
    inside = np.where(several | nonfinite, np.nan, inside)
    return _PrefixTable(levels, below, inside, through - below)


def _threshold_levels(values, sorted_thresholds, prefix_table):
    """For each value, the number of sorted thresholds strictly below it: ``np.searchsorted(..., side="left")``.

    np.searchsorted pays a mispredicted branch per step per value (~30 ns a value). A lookup on the value's
    float32 bit prefix settles every value that shares no narrow interval with a threshold (over 90% in a
    typical sweep); one comparison settles most of the rest. Comparisons happen in the dtype numpy uses for
    ``values > threshold``, so the result is exact.
    """
    if values.dtype == np.float32:
        as_float32 = values
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            as_float32 = values.astype(np.float32)
    prefixes = np.right_shift(as_float32.view(np.uint32), 16, dtype=np.intp).reshape(-1)
    levels = prefix_table.levels[prefixes]
    unsettled = np.flatnonzero(levels < 0)
    if unsettled.size == 0:
        return levels.reshape(values.shape)
    unsettled_values = values.reshape(-1)[unsettled]
    if np.isnan(unsettled_values).any():
        raise ValueError("probabilities contain NaN")
    unsettled_prefixes = prefixes[unsettled]
    inside = prefix_table.inside[unsettled_prefixes]
    step = prefix_table.multiplicity[unsettled_prefixes] * (unsettled_values > inside)
    levels[unsettled] = prefix_table.below[unsettled_prefixes] + step
    # Prefixes holding several distinct thresholds (NaN in `inside`) are rare: search those values.
    searched = np.flatnonzero(np.isnan(inside))
    if searched.size:
        levels[unsettled[searched]] = np.searchsorted(sorted_thresholds, unsettled_values[searched], side="left")
    return levels.reshape(values.shape)


def _check_thresholds(thresholds):
    """Return ``thresholds`` as a non-empty 1-D float64 array without NaN."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or thresholds.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D sequence, got shape {thresholds.shape}")
    if np.isnan(thresholds).any():
        raise ValueError("thresholds contain NaN")
    return thresholds


def _sweep_counts(true_masks, probabilities, thresholds):
    """Return (intersection, predicted, true) counts of ``probabilities > t`` for every threshold t.

    Args:
        true_masks: (N, H, W) or (H, W); values > 0 are foreground.
        probabilities: scores of the same shape, any real dtype.
        thresholds: 1-D sequence of T thresholds, in any order.

    Returns:
        intersection and predicted of shape (N, T), true of shape (N, 1), all int64.
    """
    true_batch, probability_batch = _paired_batches(true_masks, probabilities, "probabilities")
    if probability_batch.dtype.kind not in "biuf":
        raise ValueError(f"probabilities must be real numbers, got dtype {probability_batch.dtype}")
    thresholds = _check_thresholds(thresholds)
    order = np.argsort(thresholds, kind="stable")
    sorted_thresholds = thresholds[order]
    prefix_table = _prefix_table(sorted_thresholds)
    num_images, num_thresholds = len(true_batch), len(thresholds)
    num_levels = num_thresholds + 1
    true_flat = true_batch.reshape(num_images, -1) > 0
    probability_flat = probability_batch.reshape(num_images, -1)

    intersection = np.empty((num_images, num_thresholds), dtype=np.int64)
    predicted = np.empty((num_images, num_thresholds), dtype=np.int64)
    images_per_chunk = max(1, _SWEEP_CHUNK_PIXELS // max(probability_flat.shape[1], num_levels))
    for start in range(0, num_images, images_per_chunk):
        stop = min(start + images_per_chunk, num_images)
        levels = _threshold_levels(probability_flat[start:stop], sorted_thresholds, prefix_table)
        predicted[start:stop, order], intersection[start:stop, order] = _counts_above(
            levels, true_flat[start:stop], num_levels
        )
    return intersection, predicted, np.count_nonzero(true_flat, axis=1)[:, np.newaxis]


def _counts_above(levels, true_flat, num_levels):
    """Per image and sorted threshold, the count of pixels above it, and of true pixels above it.

    A pixel's level is how many thresholds lie strictly below it, i.e. at how many thresholds it is
    predicted foreground, so one histogram of levels per image replaces a pass per threshold.

    Args:
        levels: (n, P) fresh intp array of levels in 0..num_levels-1; it is overwritten.
        true_flat: (n, P) boolean truth.

    Returns:
        Two (n, num_levels - 1) int64 arrays: predicted and intersection counts.
    """
    num_images = len(levels)
    # Offset each image's levels into a range of bins of its own, in place to spare a copy.
    bins = levels
    bins += (num_levels * np.arange(num_images, dtype=bins.dtype))[:, np.newaxis]
    size = num_images * num_levels
    all_pixels = np.bincount(bins.reshape(-1), minlength=size).reshape(num_images, num_levels)
    true_pixels = np.bincount(bins[true_flat], minlength=size).reshape(num_images, num_levels)
    # Pixels above threshold j are those at level j + 1 or higher: a reversed cumulative sum.
    above = np.cumsum(np.stack([all_pixels, true_pixels])[..., ::-1], axis=-1)[..., ::-1][..., 1:]
    return above[0], above[1]


def _tgs_from_counts(intersection, predicted, true):
    """TGS score from broadcastable count arrays: the fraction of IoU thresholds the IoU exceeds."""
    union = predicted + true - intersection
    # An empty truth predicted empty is a perfect answer; IoU 1 passes every threshold.
    iou = np.divide(intersection, union, out=np.ones(np.shape(union)), where=union > 0)
    return np.mean(iou[..., np.newaxis] > TGS_IOU_THRESHOLDS, axis=-1)


def _dice_from_counts(intersection, predicted, true):
    """Dice from broadcastable count arrays; 1 when both masks are empty."""
    total = predicted + true
    return np.divide(2 * intersection, total, out=np.ones(np.shape(total)), where=total > 0)


def tgs_image_scores(true_masks, pred_masks):
    """Per-image TGS Salt score: mean over IoU thresholds 0.50, 0.55, ..., 0.95 of [IoU > threshold].

    Args:
        true_masks: (N, H, W), (H, W) or a list of equal-shape 2-D arrays; values > 0 are foreground.
        pred_masks: the predicted masks, same shape.

    Returns:
        float64 array (N,). Both masks empty scores 1; exactly one empty scores 0.
    """
    return _tgs_from_counts(*_mask_counts(true_masks, pred_masks))


def tgs_score(true_masks, pred_masks):
    """The TGS Salt leaderboard score: the mean of ``tgs_image_scores``."""
    return float(np.mean(tgs_image_scores(true_masks, pred_masks)))


def tgs_sweep(true_masks, probabilities, thresholds):
    """TGS score of ``probabilities > threshold`` for every threshold, in one vectorised pass.

    Returns:
        float64 array (len(thresholds),), equal to ``[tgs_score(true_masks, probabilities > t) ...]``.
    """
    return np.mean(_tgs_from_counts(*_sweep_counts(true_masks, probabilities, thresholds)), axis=0)


def dice_scores(true_masks, pred_masks):
    """Per-image Dice coefficient 2|A∩B| / (|A| + |B|), float64 array (N,); both empty scores 1."""
    return _dice_from_counts(*_mask_counts(true_masks, pred_masks))


def mean_dice(true_masks, pred_masks):
    """Mean over images of the per-image Dice coefficient."""
    return float(np.mean(dice_scores(true_masks, pred_masks)))


def dice_sweep(true_masks, probabilities, thresholds):
    """Mean Dice of ``probabilities > threshold`` for every threshold, float64 array (len(thresholds),)."""
    return np.mean(_dice_from_counts(*_sweep_counts(true_masks, probabilities, thresholds)), axis=0)


Metric = collections.namedtuple("Metric", ["name", "title", "score", "image_scores", "sweep"])

METRICS = {
    "tgs": Metric("tgs", "TGS mean precision @ IoU 0.50-0.95", tgs_score, tgs_image_scores, tgs_sweep),
    "dice": Metric("dice", "mean Dice", mean_dice, dice_scores, dice_sweep),
}


def get_metric(name):
    """Return the ``Metric`` registered under ``name`` ("tgs" or "dice")."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}")
    return METRICS[name]
