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

# The threshold sweep works on about this many pixels at a time: it bounds the memory (some 17 bytes a
# pixel), and chunks this small stay in the CPU cache.
_SWEEP_CHUNK_PIXELS = 1 << 17

# The size of the table that locates scores among the thresholds (see _cell_table).
_NUM_CELLS = 1 << 16


def _as_image_batch(masks, name):
    """Return ``masks`` as an array of shape (N, H, W); a single (H, W) image becomes N=1.

    Multi-label masks (N, H, W, C) become N * C images (image-major), because Kaggle scores every
    (image, class) pair on its own and averages them all.
    """
    try:
        masks = np.asarray(masks)
    except ValueError as error:
        # Numpy refuses a list of arrays of different shapes; say which argument it was.
        raise ValueError(f"{name} must hold 2-D images of one shape: {error}") from None
    if masks.ndim == 4 and masks.shape[-1] == 1:
        # Keras models return (N, H, W, 1); the channel axis carries nothing here.
        masks = masks[..., 0]
    elif masks.ndim == 4:
        masks = np.moveaxis(masks, -1, 1).reshape(-1, *masks.shape[1:3])
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


def _float32_bits(values):
    """The bit patterns of ``values`` rounded to float32, as int32 (+-inf beyond float32's range)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(values, dtype=np.float32).view(np.int32)


def _flip_negative(bits, out):
    """Flip the magnitude bits of negative floats: the int32 results order like the floats.

    -0.0 becomes -1, just below +0.0's 0, though the two are equal; _sweep_counts turns a -0.0 threshold into
    +0.0 so that this never matters.
    """
    np.right_shift(bits, 31, out=out)  # -1 for negative floats, 0 for the others
    out &= 0x7FFFFFFF
    out ^= bits
    return out


def _cell_table(thresholds):
    """Sort scores into _NUM_CELLS cells, and count for each cell the thresholds below all of its scores.

    A score's cell is ``clip((key >> shift) - base, 0, _NUM_CELLS - 1)``, ``key`` being its float32 bit
    pattern (an int32) with ``_flip_negative`` applied: keys order like the scores, so cells never decrease
    as the score grows (NaN aside). Rounding to float32 never reverses an order either, so a threshold in a
    lower cell than a score is below it, and one in a higher cell is not. Only the cells holding a threshold
    are undecided. ``shift`` and ``base`` spread the thresholds over the table, so that few scores share a
    cell with one.

    Unless thresholds are negative, ``base >= -1`` and the flip can be skipped: negative floats have negative
    keys with or without it, so they land in cell 0 either way.

    Args:
        thresholds: sorted distinct float64 thresholds, without -0.0.

    Returns:
        (table, shift, base): table is (_NUM_CELLS,) intp: the number of thresholds below the cell's
        scores, or -1 if undecided.
    """
    bits = _float32_bits(thresholds)
    keys = _flip_negative(bits, np.empty_like(bits)).astype(np.int64)
    low, high = int(keys[0]), int(keys[-1])
    # Leave a cell free below and above the thresholds.
    shift = ((high - low) // (_NUM_CELLS - 4)).bit_length()
    base = (low >> shift) - 1
    cells = np.clip((keys >> shift) - base, 0, _NUM_CELLS - 1)
    in_cell = np.bincount(cells, minlength=_NUM_CELLS)
    table = np.where(in_cell > 0, -1, np.cumsum(in_cell) - in_cell)
    return table, shift, base


def _threshold_levels(values, thresholds, cell_table, levels, cells):
    """Set ``levels`` to the number of thresholds below each value: ``np.searchsorted(..., side="left")``.

    np.searchsorted pays a mispredicted branch per step per value (~25 ns a value). The value's cell (see
    ``_cell_table``) settles almost all values with one table lookup; np.searchsorted settles the rest,
    comparing in the dtype numpy uses for ``values > threshold``.

    Args:
        values: (n, P) real scores. thresholds: sorted distinct float64 thresholds, without -0.0.
        cell_table: ``_cell_table(thresholds)``.
        levels, cells: (n, P) intp buffers to work in; levels gets the result.
    """
    if values.dtype.kind in "biu":
        # numpy compares integers with float64 thresholds as float64: round them the same way first.
        values = values.astype(np.float64)
    elif values.size and np.isnan(np.max(values)):
        raise ValueError("probabilities contain NaN")
    table, shift, base = cell_table
    bits = _float32_bits(values)
    if base < -1:
        np.right_shift(_flip_negative(bits, out=cells), shift, out=cells)
    else:
        np.right_shift(bits, shift, out=cells)
    cells -= base
    # mode="clip" puts the cells beyond the table's ends into its end cells, as _cell_table means.
    np.take(table, cells, out=levels, mode="clip")
    levels, values = levels.reshape(-1), values.reshape(-1)
    undecided = np.flatnonzero(levels < 0)
    levels[undecided] = np.searchsorted(thresholds, values[undecided], side="left")


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

    A pixel's level is how many thresholds lie strictly below it, i.e. at how many thresholds it is
    predicted foreground, so one histogram of levels per image replaces a pass per threshold.

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
    # Equal thresholds give equal counts: work with the distinct ones, sorted. Adding 0.0 turns -0.0 into the
    # equal +0.0, as _cell_table asks.
    distinct, inverse = np.unique(_check_thresholds(thresholds), return_inverse=True)
    distinct += 0.0
    cell_table = _cell_table(distinct)
    num_images, num_levels = len(true_batch), len(distinct) + 1
    true_flat = true_batch.reshape(num_images, -1)
    probability_flat = probability_batch.reshape(num_images, -1)
    num_pixels = probability_flat.shape[1]

    # Work buffers, reused by every chunk of images: fresh arrays this large cost page faults that take
    # longer than the arithmetic.
    images_per_chunk = max(1, min(num_images, _SWEEP_CHUNK_PIXELS // max(num_pixels, num_levels)))
    buffer_shape = (images_per_chunk, num_pixels)
    bins, cells = np.empty(buffer_shape, dtype=np.intp), np.empty(buffer_shape, dtype=np.intp)
    is_true = np.empty(buffer_shape, dtype=bool)
    # Each image has 2 * num_levels histogram bins: the levels of its false pixels, then of its true ones.
    image_offsets = 2 * num_levels * np.arange(images_per_chunk)[:, np.newaxis]
    histogram = np.empty((num_images, 2, num_levels), dtype=np.int64)
    for start in range(0, num_images, images_per_chunk):
        stop = min(start + images_per_chunk, num_images)
        size = stop - start
        chunk_bins, chunk_is_true = bins[:size], is_true[:size]
        _threshold_levels(probability_flat[start:stop], distinct, cell_table, chunk_bins, cells[:size])
        chunk_bins += image_offsets[:size]
        np.greater(true_flat[start:stop], 0, out=chunk_is_true)
        np.add(chunk_bins, num_levels, out=chunk_bins, where=chunk_is_true)
        counts = np.bincount(chunk_bins.reshape(-1), minlength=size * 2 * num_levels)
        histogram[start:stop] = counts.reshape(size, 2, num_levels)
    # Pixels above threshold j are those at level j + 1 or higher: a reversed cumulative sum.
    above = np.cumsum(histogram[..., ::-1], axis=-1)[..., ::-1][..., 1:]
    false_above, true_above = above[:, 0, inverse], above[:, 1, inverse]
    return true_above, false_above + true_above, histogram[:, 1].sum(axis=1, keepdims=True)


def _tgs_from_counts(intersection, predicted, true):
    """TGS score from broadcastable count arrays: the fraction of IoU thresholds the IoU exceeds."""
    union = predicted + true - intersection
    # An empty truth predicted empty is a perfect answer; IoU 1 passes every threshold.
    iou = np.divide(intersection, union, out=np.ones(np.shape(union)), where=union > 0)
    # The thresholds are sorted, so the number of them below the IoU is a searchsorted.
    return np.searchsorted(TGS_IOU_THRESHOLDS, iou, side="left") / len(TGS_IOU_THRESHOLDS)


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


def tgs_sweep_image_scores(true_masks, probabilities, thresholds):
    """Per-image TGS score of ``probabilities > threshold`` for every threshold: float64 (N, len(thresholds))."""
    return _tgs_from_counts(*_sweep_counts(true_masks, probabilities, thresholds))


def tgs_sweep(true_masks, probabilities, thresholds):
    """TGS score of ``probabilities > threshold`` for every threshold, in one vectorised pass.

    Returns:
        float64 array (len(thresholds),), equal to ``[tgs_score(true_masks, probabilities > t) ...]``.
    """
    return np.mean(tgs_sweep_image_scores(true_masks, probabilities, thresholds), axis=0)


def dice_scores(true_masks, pred_masks):
    """Per-image Dice coefficient 2|A∩B| / (|A| + |B|), float64 array (N,); both empty scores 1."""
    return _dice_from_counts(*_mask_counts(true_masks, pred_masks))


def mean_dice(true_masks, pred_masks):
    """Mean over images of the per-image Dice coefficient."""
    return float(np.mean(dice_scores(true_masks, pred_masks)))


def dice_sweep_image_scores(true_masks, probabilities, thresholds):
    """Per-image Dice of ``probabilities > threshold`` for every threshold: float64 (N, len(thresholds))."""
    return _dice_from_counts(*_sweep_counts(true_masks, probabilities, thresholds))


def dice_sweep(true_masks, probabilities, thresholds):
    """Mean Dice of ``probabilities > threshold`` for every threshold, float64 array (len(thresholds),)."""
    return np.mean(dice_sweep_image_scores(true_masks, probabilities, thresholds), axis=0)


Metric = collections.namedtuple("Metric", ["name", "title", "score", "image_scores", "sweep",
                                           "sweep_image_scores"])

METRICS = {
    "tgs": Metric("tgs", "TGS mean precision @ IoU 0.50-0.95", tgs_score, tgs_image_scores, tgs_sweep,
                  tgs_sweep_image_scores),
    "dice": Metric("dice", "mean Dice", mean_dice, dice_scores, dice_sweep, dice_sweep_image_scores),
}


def get_metric(name):
    """Return the ``Metric`` registered under ``name`` ("tgs" or "dice")."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}")
    return METRICS[name]


# The count formula behind each metric: a post-processing policy that edits counts (the minimum-area veto,
# hole filling) scores them with the very formula the metric uses.
_FROM_COUNTS = {"tgs": _tgs_from_counts, "dice": _dice_from_counts}


def score_from_counts(metric_name, intersection, predicted, true):
    """Per-image score of ``metric_name`` from broadcastable (intersection, predicted, true) pixel counts.

    The same formula ``get_metric(metric_name).image_scores`` applies to the counts of a pair of masks: both
    empty scores 1, exactly one empty scores 0.
    """
    get_metric(metric_name)  # the error for an unknown name
    return _FROM_COUNTS[metric_name](intersection, predicted, true)


def sweep_counts(true_masks, probabilities, thresholds):
    """Per-image (intersection, predicted, true) pixel counts of ``probabilities > t`` for every threshold t.

    Multi-label (N, H, W, C) inputs count every (image, class) pair, image-major, like the scores.

    Returns:
        intersection and predicted of shape (N, T), true of shape (N, 1), all int64.
    """
    return _sweep_counts(true_masks, probabilities, thresholds)
