"""The post-processing policy: how probabilities become the masks that are submitted.

The policy is fitted on validation predictions (notebook 04), saved as a small JSON file and applied
unchanged to the test predictions (notebook 05), so the submission uses exactly what was measured.

A policy turns the probabilities of one class into a mask in three steps, in this order (the fit scores the
same order):

1. threshold: a pixel is foreground if its probability is strictly above the threshold;
2. fill holes (optional): background regions that do not reach the image border become foreground;
3. minimum area: a mask with fewer than ``min_area`` pixels (counted after filling) becomes empty. This is
   the TGS trick: a few stray pixels on an image whose truth is empty cost the whole image.

With several classes every class has its own threshold, minimum area and hole filling.
"""

import collections
import numbers

import numpy as np
import pandas as pd
from scipy import ndimage

from seglib import artifacts
from seglib.metrics import get_metric, score_from_counts, sweep_counts

DEFAULT_THRESHOLDS = np.round(np.linspace(0.02, 0.98, 49), 4)

# The minimum-area grid, as fractions of the image area (H * W); fit_policy_pairs rounds them to pixels.
DEFAULT_MIN_AREA_FRACTIONS = (0.0, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05)

# What you get without a policy: threshold 0.5, no minimum area, no hole filling.
DEFAULT_THRESHOLD = 0.5

# Hole filling is scored at every _FILL_COARSE_STEP-th threshold of the grid (and the last), then at
# _FILL_REFINE_STEPS grid steps either side of the best thresholds found (see fit_policy_pairs).
_FILL_COARSE_STEP = 4
_FILL_REFINE_STEPS = 2

# A chunk of images stops growing at chunk_size images or at about this many bytes of inputs, whichever
# comes first: one hand-bone prediction (2048 x 2048 x 29 float32) is already 0.5 GB.
_CHUNK_BYTES = 1 << 28

# Hole filling labels about this many pixels at once (thresholds of one image stacked).
_FILL_GROUP_PIXELS = 1 << 22

# Scores closer than this are ties (means of the same numbers summed in another order differ in the last bits).
_TIE_TOLERANCE = 1e-12

# Background pixels connect to their 4 neighbours, as in ndimage.binary_fill_holes' default; the stacked
# masks of _holes never connect to one another.
_SLICE_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_SLICE_STRUCTURE[1] = ndimage.generate_binary_structure(2, 1)

_LIST_FIELDS = ("thresholds", "min_areas", "fill_holes_per_class")


def sweep(true_masks, probabilities, metric_name, thresholds=DEFAULT_THRESHOLDS):
    """The competition score of every probability threshold, as a DataFrame (threshold, score)."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    scores = get_metric(metric_name).sweep(true_masks, probabilities, thresholds)
    return pd.DataFrame({"threshold": thresholds, "score": scores})


def default_min_areas(height, width, fractions=DEFAULT_MIN_AREA_FRACTIONS):
    """The minimum-area grid in pixels: ``fractions`` of ``height * width``, rounded, distinct and sorted."""
    return sorted({int(round(fraction * height * width)) for fraction in fractions})


def fit_policy(true_masks, probabilities, metric_name, thresholds=DEFAULT_THRESHOLDS, min_areas=None,
               fill_holes_options=(False, True), chunk_size=32, bootstrap=1000, seed=0):
    """``fit_policy_pairs`` on in-memory arrays: true masks (N, H, W) or (N, H, W, C) and predictions alike."""
    return fit_policy_pairs(lambda: zip(true_masks, probabilities), metric_name, thresholds=thresholds,
                            min_areas=min_areas, fill_holes_options=fill_holes_options, chunk_size=chunk_size,
                            bootstrap=bootstrap, seed=seed)


def fit_policy_pairs(make_pairs, metric_name, thresholds=DEFAULT_THRESHOLDS, min_areas=None,
                     fill_holes_options=(False, True), chunk_size=32, bootstrap=1000, seed=0):
    """Pick, per class, the threshold x minimum area x hole filling that scores best on validation predictions.

    Every combination is scored from per-image pixel counts (intersection, predicted, true), kept for every
    (image, class, threshold): a few numbers per image, so the predictions stream image by image and are
    never all in memory (hand-bone: 2048 x 2048 x 29 each). The minimum area needs no pass of its own: a mask
    of fewer than ``min_area`` pixels predicts nothing, so its predicted and intersection counts become 0.

    Hole filling changes the counts, and filling every mask at every threshold costs too much on large
    images, so filled counts are computed at a subset of the thresholds, always the same way:

    * pass 1 (with the threshold sweep): every 4th threshold of the sorted grid, and the last one;
    * pass 2 (the predictions are read again, only if it adds thresholds): per class, the thresholds within
      2 grid steps of (a) the best threshold without filling, (b) the best threshold with filling among
      those of pass 1, and (c), (d) the same two for the single setting shared by all classes. The coarse
      points are 4 steps apart, so (b) covers every threshold between the two coarse neighbours of the best.

    Filling only adds holes, and the holes of a mask lie inside its bounding box (outside it every pixel
    reaches the border in a straight line), so only boxes are labelled (see ``_hole_counts``); on clean
    predictions of small objects that is a small part of the image. Combinations with filling whose counts
    were not computed are not candidates and are left out of the surface.

    Classes are scored independently (multi-label Dice is the mean over (image, class) pairs; TGS and binary
    competitions have one class), so each class gets its own best setting. Ties, within 1e-12, go to the
    smaller minimum area, then to no filling, then to the threshold closest to 0.5 (then the lower one): the
    simplest policy that scores as well.

    The confidence intervals are percentile bootstraps over images (resampled with replacement ``bootstrap``
    times, ``numpy.random.default_rng(seed)``) of the validation score and, on the same resamples, of the gain
    over the default (threshold 0.5, no minimum area, no filling). They are optimistic: the policy was chosen
    on these very images, so part of its gain is the selection fitting their noise. A gain interval that
    reaches 0 means the policy may well be no better than the default.

    Args:
        make_pairs: a function returning a fresh iterator of (true mask, probabilities) per image, at the
            original size: (H, W), or (H, W, C) for multi-label competitions. It is called once or twice, and
            must yield the same images in the same order each time.
        metric_name: the competition metric.
        thresholds: the probability thresholds to try (sorted and de-duplicated).
        min_areas: the minimum areas to try, in pixels; None: ``default_min_areas`` of the first image's size.
        fill_holes_options: the hole-filling settings to try: (False, True), (False,) or (True,).
        chunk_size: the most images scored together (the vectorised sweep is fastest on batches); a chunk
            also stops at about 256 MB of inputs.
        bootstrap: the number of bootstrap resamples; 0 skips the confidence intervals (None in the policy).
        seed: the seed of the bootstrap resampling.

    Returns:
        (policy dict, surface DataFrame). The surface has one row per scored (class, threshold, min_area,
        fill_holes) with the mean validation score of that class; ``threshold_curve`` takes the threshold
        curve at the chosen setting out of it. The policy holds:

        * "threshold", "min_area", "fill_holes": the setting (with several classes: the best single setting
          shared by all classes, scored as "shared_score"; ``apply_policy`` uses the per-class lists);
        * with several classes, per class: "thresholds", "min_areas", "fill_holes_per_class", "class_scores";
        * "metric", "validation_images", "validation_score" (of the per-class settings);
        * "validation_score_without_fill": the best score without hole filling;
        * "default_score": the score at threshold 0.5, no minimum area, no filling (no policy);
        * "empty_baseline_score": the score of submitting every mask empty;
        * "confidence_interval", "gain_confidence_interval": 95 % bootstrap intervals [low, high] of
          "validation_score" and of "validation_score" - "default_score".
    """
    get_metric(metric_name)
    grid = np.unique(np.asarray(thresholds, dtype=np.float64))
    if grid.ndim != 1 or grid.size == 0 or np.isnan(grid).any():
        raise ValueError(f"thresholds must be a non-empty 1-D sequence without NaN, got {thresholds!r}")
    options = _check_fill_options(fill_holes_options)
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if int(bootstrap) < 0:
        raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
    num_thresholds = len(grid)
    # The default threshold rides along as an extra last column of the sweep.
    sweep_thresholds = np.append(grid, DEFAULT_THRESHOLD)
    coarse = np.zeros(num_thresholds, dtype=bool)
    if True in options:
        coarse[::_FILL_COARSE_STEP] = True
        coarse[-1] = True

    # Pass 1: counts at every threshold, filled counts at the coarse thresholds.
    parts, classes, image_shape = [], None, None
    for true_chunk, probability_chunk in _chunks(make_pairs(), int(chunk_size)):
        true_chunk = _with_class_axis(true_chunk, "true masks")
        probability_chunk = _with_class_axis(probability_chunk, "probabilities")
        if true_chunk.shape != probability_chunk.shape:
            raise ValueError(f"true masks {true_chunk.shape[1:]} and probabilities {probability_chunk.shape[1:]} "
                             "differ in shape")
        if classes is None:
            classes, image_shape = true_chunk.shape[-1], true_chunk.shape[1:3]
        elif true_chunk.shape[-1] != classes:
            raise ValueError(f"every image needs {classes} classes, got {true_chunk.shape[-1]}")
        intersection, predicted, true = sweep_counts(true_chunk, probability_chunk, sweep_thresholds)
        shape = (len(true_chunk), classes, len(sweep_thresholds))
        holes = np.zeros((2, len(true_chunk), classes, num_thresholds), dtype=np.int64)
        indices = [np.flatnonzero(coarse)] * classes
        for image, (truth, probability) in enumerate(zip(true_chunk, probability_chunk)):
            _add_image_holes(truth, probability, grid, indices, holes[:, image])
        parts.append((intersection.reshape(shape), predicted.reshape(shape), true.reshape(shape[:2]), holes))
    if not parts:
        raise ValueError("fit_policy needs at least one validation image")
    intersection, predicted, true = (np.concatenate([part[index] for part in parts]) for index in range(3))
    holes = np.concatenate([part[3] for part in parts], axis=1)
    del parts
    num_images = len(true)
    counts = _Counts(metric_name, intersection[..., :-1], predicted[..., :-1], true, holes,
                     np.tile(coarse, (classes, 1)))

    min_areas = default_min_areas(*image_shape) if min_areas is None else _check_min_areas(min_areas)
    min_areas = np.asarray(min_areas, dtype=np.int64)

    # Pass 2: filled counts near the best thresholds, if pass 1 has not computed them.
    if True in options:
        wanted = np.zeros_like(counts.filled)
        both = counts.surface(min_areas, (False, True))
        for table, rows in [(both[c], [c]) for c in range(classes)] + [(np.mean(both, axis=0), range(classes))]:
            for option in (0, 1):  # without, with filling
                best_threshold = _choose(table[..., option:option + 1], grid, min_areas, (bool(option),))[0]
                low, high = max(0, best_threshold - _FILL_REFINE_STEPS), best_threshold + _FILL_REFINE_STEPS + 1
                wanted[list(rows), low:high] = True
        wanted &= ~counts.filled
        if wanted.any():
            indices = [np.flatnonzero(row) for row in wanted]
            seen = 0
            for image, (truth, probability) in enumerate(make_pairs()):
                if image >= num_images:
                    raise ValueError("make_pairs yielded more images on its second pass than on its first")
                truth = _with_class_axis(np.asarray(truth)[np.newaxis], "true masks")[0]
                probability = _with_class_axis(np.asarray(probability)[np.newaxis], "probabilities")[0]
                _add_image_holes(truth, probability, grid, indices, counts.holes[:, image])
                seen += 1
            if seen != num_images:
                raise ValueError(f"make_pairs yielded {seen} images on its second pass, {num_images} on its first")
            counts.filled |= wanted
    surface = counts.surface(min_areas, options)

    # The choice, per class and shared by all classes (with one class the two agree).
    no_fill_surface = counts.surface(min_areas, (False,))
    choices = [_setting(surface[c], grid, min_areas, options) for c in range(classes)]
    no_fill_choices = [_setting(no_fill_surface[c], grid, min_areas, (False,)) for c in range(classes)]
    shared = _setting(np.mean(surface, axis=0), grid, min_areas, options)
    image_scores = np.stack([counts.image_scores(c, choices[c]) for c in range(classes)], axis=1)
    without_fill = np.stack([counts.image_scores(c, no_fill_choices[c]) for c in range(classes)], axis=1)
    default_scores = score_from_counts(metric_name, intersection[..., -1], predicted[..., -1], true)
    empty_scores = score_from_counts(metric_name, 0, 0, true)

    policy = {
        "threshold": shared.threshold,
        "min_area": shared.min_area,
        "fill_holes": shared.fill_holes,
        "metric": metric_name,
        "validation_score": float(image_scores.mean()),
        "validation_score_without_fill": float(without_fill.mean()),
        "default_score": float(default_scores.mean()),
        "empty_baseline_score": float(empty_scores.mean()),
        "validation_images": int(num_images),
    }
    if classes > 1:
        policy["thresholds"] = [choice.threshold for choice in choices]
        policy["min_areas"] = [choice.min_area for choice in choices]
        policy["fill_holes_per_class"] = [choice.fill_holes for choice in choices]
        policy["class_scores"] = image_scores.mean(axis=0).tolist()
        policy["shared_score"] = float(np.mean([counts.image_scores(c, shared) for c in range(classes)]))
    policy["confidence_interval"], policy["gain_confidence_interval"] = _bootstrap(
        image_scores.mean(axis=1), default_scores.mean(axis=1), int(bootstrap), seed)
    return policy, _surface_table(surface, grid, min_areas, options)


class _Counts:
    """Per (image, class, threshold) counts of the plain masks and of the holes filling adds to them.

    intersection, predicted: (N, C, T); true: (N, C); holes: (2, N, C, T), the hole pixels and those of them
    in the truth; filled: (C, T) bool, where the hole counts have been computed.
    """

    def __init__(self, metric_name, intersection, predicted, true, holes, filled):
        self.metric_name, self.intersection, self.predicted, self.true = metric_name, intersection, predicted, true
        self.holes, self.filled = holes, filled

    def _masks(self, fill, threshold_index=slice(None), class_index=slice(None)):
        """(intersection, predicted) of the plain or filled masks."""
        index = (slice(None), class_index, threshold_index)
        if not fill:
            return self.intersection[index], self.predicted[index]
        return (self.intersection[index] + self.holes[(1,) + index],
                self.predicted[index] + self.holes[(0,) + index])

    def _scores(self, intersection, predicted, true, min_area):
        # The minimum-area veto: a mask smaller than min_area predicts nothing.
        keep = predicted >= min_area
        return score_from_counts(self.metric_name, intersection * keep, predicted * keep, true)

    def surface(self, min_areas, options):
        """Mean score per (class, threshold, min_area, fill option): (C, T, M, F), NaN where not computed."""
        classes, thresholds = self.filled.shape
        surface = np.empty((classes, thresholds, len(min_areas), len(options)))
        for f, fill in enumerate(options):
            intersection, predicted = self._masks(fill)
            for m, min_area in enumerate(min_areas):
                surface[:, :, m, f] = self._scores(intersection, predicted, self.true[..., np.newaxis],
                                                   min_area).mean(axis=0)
            if fill:
                surface[:, :, :, f][~self.filled] = np.nan
        return surface

    def image_scores(self, class_index, setting):
        """Per-image scores (N,) of one class under a ``_Setting``."""
        intersection, predicted = self._masks(setting.fill_holes, setting.threshold_index, class_index)
        return self._scores(intersection, predicted, self.true[:, class_index], setting.min_area)


_Setting = collections.namedtuple("_Setting", ["threshold", "min_area", "fill_holes", "threshold_index"])


def _setting(table, grid, min_areas, options):
    """The best ``_Setting`` of a class's (T, M, F) score table (see ``_choose``)."""
    t, m, f = _choose(table, grid, min_areas, options)
    return _Setting(float(grid[t]), int(min_areas[m]), bool(options[f]), t)


def _choose(table, grid, min_areas, options):
    """The (threshold, min_area, option) indices of the best score in ``table`` (T, M, F), NaN excluded.

    Ties (within _TIE_TOLERANCE) go to the smaller minimum area, then no hole filling, then the threshold
    closest to DEFAULT_THRESHOLD, then the lower threshold.
    """
    if np.isnan(table).all():
        raise ValueError("no combination of the policy could be scored")
    best = np.nanmax(table)
    with np.errstate(invalid="ignore"):
        t, m, f = np.nonzero(table >= best - _TIE_TOLERANCE)
    distance = np.round(np.abs(grid[t] - DEFAULT_THRESHOLD), 9)
    order = np.lexsort((grid[t], distance, np.asarray(options, dtype=bool)[f], min_areas[m]))
    return int(t[order[0]]), int(m[order[0]]), int(f[order[0]])


def _check_fill_options(fill_holes_options):
    options = tuple(fill_holes_options)
    booleans = all(isinstance(option, (bool, np.bool_)) for option in options)
    if not options or not booleans or len(set(options)) != len(options):
        raise ValueError("fill_holes_options must be distinct booleans, e.g. (False, True), "
                         f"got {fill_holes_options!r}")
    return tuple(bool(option) for option in options)


def _check_min_areas(min_areas):
    values = list(min_areas)
    if not values or any(not _is_int(value) or value < 0 for value in values):
        raise ValueError(f"min_areas must be integers >= 0, got {min_areas!r}")
    return sorted({int(value) for value in values})


def _bootstrap(policy_scores, default_scores, resamples, seed):
    """95 % percentile bootstrap intervals of the mean policy score and of the mean gain over the default."""
    if resamples == 0:
        return None, None
    rng = np.random.default_rng(seed)
    num_images = len(policy_scores)
    gains = policy_scores - default_scores
    means, mean_gains = np.empty(resamples), np.empty(resamples)
    batch = max(1, (1 << 22) // num_images)  # bounds the index array at 32 MB
    for start in range(0, resamples, batch):
        stop = min(start + batch, resamples)
        sample = rng.integers(0, num_images, size=(stop - start, num_images))
        means[start:stop] = policy_scores[sample].mean(axis=1)
        mean_gains[start:stop] = gains[sample].mean(axis=1)
    return ([float(value) for value in np.percentile(means, [2.5, 97.5])],
            [float(value) for value in np.percentile(mean_gains, [2.5, 97.5])])


def _surface_table(surface, grid, min_areas, options):
    """The (C, T, M, F) surface as a long DataFrame, without the combinations that were not scored."""
    classes, thresholds, areas, fills = np.meshgrid(np.arange(surface.shape[0]), grid, min_areas,
                                                    np.asarray(options, dtype=bool), indexing="ij")
    table = pd.DataFrame({
        "class": classes.ravel(),
        "threshold": thresholds.ravel(),
        "min_area": areas.ravel(),
        "fill_holes": fills.ravel(),
        "score": surface.ravel(),
    })
    table = table[table["score"].notna()]
    return table.sort_values(["class", "fill_holes", "min_area", "threshold"], ignore_index=True)


def threshold_curve(surface, policy, class_index=None):
    """The (threshold, score) curve at the policy's minimum area and hole filling, from the fit's surface.

    With several classes and ``class_index`` None: the mean over classes, each at its own minimum area and
    filling (the thresholds scored for every class).
    """
    _, min_areas, fills = _surface_settings(surface, policy)
    classes = [class_index] if class_index is not None else range(len(fills))
    curves = []
    for c in classes:
        rows = surface[(surface["class"] == c) & (surface["min_area"] == min_areas[c])
                       & (surface["fill_holes"] == fills[c])]
        curves.append(rows.set_index("threshold")["score"])
    curve = pd.concat(curves, axis=1, join="inner").mean(axis=1)
    return pd.DataFrame({"threshold": curve.index.to_numpy(), "score": curve.to_numpy()})


def area_threshold_table(surface, policy, class_index=None):
    """Scores by minimum area (rows, pixels) and threshold (columns) at the policy's hole filling.

    With several classes and ``class_index`` None: the mean over classes, each at its own hole filling (the
    thresholds scored for every class). With filling, only the thresholds where it was scored are columns.
    """
    fills = _surface_settings(surface, policy)[2]
    classes = [class_index] if class_index is not None else range(len(fills))
    tables = []
    for c in classes:
        rows = surface[(surface["class"] == c) & (surface["fill_holes"] == fills[c])]
        tables.append(rows.pivot(index="min_area", columns="threshold", values="score"))
    table = sum(tables) / len(tables)  # aligned on labels: a threshold missing for one class becomes NaN
    return table.dropna(axis=1)


def _surface_settings(surface, policy):
    """The policy's per-class settings, a scalar policy's repeated for every class of the surface."""
    thresholds, min_areas, fills = _class_settings(policy)
    classes = int(surface["class"].max()) + 1 if len(surface) else 1
    if len(thresholds) == 1:
        return thresholds * classes, min_areas * classes, fills * classes
    return thresholds, min_areas, fills


def _with_class_axis(array, name):
    """A batch (N, H, W) or (N, H, W, C) as (N, H, W, C)."""
    array = np.asarray(array)
    if array.ndim == 3:
        return array[..., np.newaxis]
    if array.ndim == 4:
        return array
    raise ValueError(f"{name} must be (H, W) or (H, W, C) per image, got {array.shape[1:]}")


def _add_image_holes(truth, probability, grid, indices, out):
    """Add to ``out`` (2, C, T) the hole counts of one image (H, W, C) at ``grid[indices[c]]`` per class."""
    for c, class_indices in enumerate(indices):
        if class_indices.size:
            out[:, c, class_indices] = _hole_counts(truth[..., c], probability[..., c], grid[class_indices])


def _hole_counts(truth, probability, thresholds):
    """(hole pixels, hole pixels in the truth) that filling adds to ``probability > t``, for each threshold.

    The masks of higher thresholds lie inside those of lower ones, and the holes of a mask lie inside its
    bounding box (outside it every pixel reaches the border in a straight line). So the thresholds are taken
    from the lowest up, in groups that share the bounding box of the group's lowest threshold, and only that
    box is labelled. Comparisons use float64 thresholds, as the sweep's do.

    Args:
        truth, probability: one 2-D image. thresholds: sorted 1-D float64 (K,).

    Returns:
        int64 (2, K).
    """
    counts = np.zeros((2, len(thresholds)), dtype=np.int64)
    truth = truth > 0
    start = 0
    while start < len(thresholds):
        largest = probability > thresholds[start]
        rows = np.flatnonzero(largest.any(axis=1))
        if rows.size == 0:
            break  # this mask and those of the higher thresholds are empty: no holes
        columns = np.flatnonzero(largest.any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
        box_probability = probability[box]
        stop = min(len(thresholds), start + max(1, _FILL_GROUP_PIXELS // box_probability.size))
        holes = _holes(box_probability > thresholds[start:stop, np.newaxis, np.newaxis])
        counts[0, start:stop] = np.count_nonzero(holes, axis=(1, 2))
        counts[1, start:stop] = np.count_nonzero(holes & truth[box], axis=(1, 2))
        start = stop
    return counts


def _holes(masks):
    """The holes of a stack of 2-D masks (K, H, W): background not 4-connected to the border of its mask."""
    labels, count = ndimage.label(~masks, structure=_SLICE_STRUCTURE)
    reaches_border = np.zeros(count + 1, dtype=bool)
    reaches_border[0] = True  # label 0 is the foreground
    for edge in (labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]):
        reaches_border[edge] = True
    return ~reaches_border[labels]


def _chunks(pairs, chunk_size):
    """Stack (true mask, probabilities) pairs into batches of at most ``chunk_size`` images (and ~_CHUNK_BYTES)."""
    true_masks, probabilities, size = [], [], 0
    for true_mask, probability in pairs:
        true_masks.append(np.asarray(true_mask))
        probabilities.append(np.asarray(probability))
        size += true_masks[-1].nbytes + probabilities[-1].nbytes
        if len(true_masks) == chunk_size or size >= _CHUNK_BYTES:
            yield np.stack(true_masks), np.stack(probabilities)
            true_masks, probabilities, size = [], [], 0
    if true_masks:
        yield np.stack(true_masks), np.stack(probabilities)


def fill_holes(masks):
    """Fill the holes of every 2-D mask in a batch (N, H, W) or (N, H, W, C); the same result as
    ``scipy.ndimage.binary_fill_holes``, several times faster on Carvana-sized masks."""
    masks = np.asarray(masks, dtype=bool)
    filled = np.empty_like(masks)
    if masks.ndim == 3:
        for index, mask in enumerate(masks):
            filled[index] = _fill_holes_2d(mask)
    elif masks.ndim == 4:
        for index in range(masks.shape[0]):
            for channel in range(masks.shape[-1]):
                filled[index, ..., channel] = _fill_holes_2d(masks[index, ..., channel])
    else:
        raise ValueError(f"fill_holes needs a batch (N, H, W) or (N, H, W, C), got shape {masks.shape}")
    return filled


def _fill_holes_2d(mask):
    """A hole is a background region that does not touch the border. binary_fill_holes finds them by dilating
    the border inwards step by step (slow on 1918 x 1280); labelling the background once (4-connected, as
    binary_fill_holes' default structure) and keeping the regions that touch the border is exact and fast."""
    background_labels, count = ndimage.label(~mask)
    if count == 0:
        return mask.copy()
    border = np.concatenate([background_labels[0], background_labels[-1], background_labels[:, 0],
                             background_labels[:, -1]])
    outside = np.zeros(count + 1, dtype=bool)
    outside[border] = True
    outside[0] = True  # label 0 is the mask itself
    return ~outside[background_labels] | mask


def apply_policy(probabilities, policy):
    """Boolean masks from a batch of probabilities under ``policy``.

    The order is the fit's: threshold (strictly above), then hole filling, then the minimum-area veto (a mask
    of fewer than ``min_area`` pixels after filling becomes empty), each per (image, class). A policy with
    per-class lists ("thresholds", "min_areas", "fill_holes_per_class") needs (N, H, W, C) probabilities with
    one class per list entry ((N, H, W) for a single class); otherwise the scalar "threshold", "min_area"
    and "fill_holes" apply to every class. Older policies with only "threshold" (and "fill_holes") work:
    the minimum area defaults to 0, and without filling or minimum area any shape is thresholded.
    """
    probabilities = np.asarray(probabilities)
    thresholds, min_areas, fills = _class_settings(policy)
    if any(field in policy for field in _LIST_FIELDS):
        classes = len(thresholds)
        if probabilities.ndim == 4 and probabilities.shape[-1] == classes:
            pass
        elif probabilities.ndim == 3 and classes == 1:
            probabilities = probabilities[..., np.newaxis]
            masks = apply_policy(probabilities, policy)
            return masks[..., 0]
        else:
            raise ValueError(f"the policy has {classes} classes; probabilities must be (N, H, W, {classes}), "
                             f"got shape {probabilities.shape}")
        # float64 thresholds compare like the fit's sweep does.
        masks = probabilities > np.asarray(thresholds, dtype=np.float64)
    else:
        masks = probabilities > np.float64(thresholds[0])
    if not any(fills) and not any(min_areas):
        return masks
    if masks.ndim == 2:
        batch = masks[np.newaxis, ..., np.newaxis]
    elif masks.ndim == 3:
        batch = masks[..., np.newaxis]
    elif masks.ndim == 4:
        batch = masks
    else:
        raise ValueError(f"apply_policy needs probabilities (N, H, W) or (N, H, W, C), got shape {masks.shape}")
    classes = batch.shape[-1]
    fills = fills if len(fills) == classes else fills * classes
    min_areas = min_areas if len(min_areas) == classes else min_areas * classes
    for c in range(classes):
        if fills[c]:
            batch[..., c] = fill_holes(batch[..., c])
    batch &= (np.count_nonzero(batch, axis=(1, 2)) >= np.asarray(min_areas))[:, np.newaxis, np.newaxis, :]
    return masks


def _class_settings(policy):
    """(thresholds, min_areas, fills) as lists, one entry per class (a single entry for a scalar policy)."""
    if "thresholds" in policy:
        thresholds = list(policy["thresholds"])
        classes = len(thresholds)
        min_areas = list(policy.get("min_areas", [0] * classes))
        fills = list(policy.get("fill_holes_per_class", [False] * classes))
        return thresholds, min_areas, fills
    return [policy["threshold"]], [policy.get("min_area", 0)], [policy.get("fill_holes", False)]


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _validate_policy(policy, where):
    """Raise ValueError, naming ``where`` (the path) and the field, unless ``policy`` can be applied."""
    def fail(field, problem):
        raise ValueError(f"{where}: policy field {field!r} {problem}")

    if not isinstance(policy, dict):
        raise ValueError(f"{where}: a policy must be a dict, got {type(policy).__name__}")
    if "threshold" not in policy:
        fail("threshold", "is missing")
    if not _is_number(policy["threshold"]) or not 0.0 <= policy["threshold"] <= 1.0:
        fail("threshold", f"must be a number in [0, 1], got {policy['threshold']!r}")
    if "min_area" in policy and (not _is_int(policy["min_area"]) or policy["min_area"] < 0):
        fail("min_area", f"must be an integer >= 0, got {policy['min_area']!r}")
    if "fill_holes" in policy and not isinstance(policy["fill_holes"], (bool, np.bool_)):
        fail("fill_holes", f"must be true or false, got {policy['fill_holes']!r}")
    present = [field for field in _LIST_FIELDS if field in policy]
    if present:
        if "thresholds" not in policy:
            fail("thresholds", f"is missing, but {present} are given")
        for field in present:
            if not isinstance(policy[field], (list, tuple)) or not policy[field]:
                fail(field, f"must be a non-empty list, got {policy[field]!r}")
        for field in present:
            if len(policy[field]) != len(policy["thresholds"]):
                fail(field, f"has {len(policy[field])} entries, 'thresholds' {len(policy['thresholds'])}")
        for value in policy["thresholds"]:
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                fail("thresholds", f"must hold numbers in [0, 1], got {value!r}")
        for value in policy.get("min_areas", []):
            if not _is_int(value) or value < 0:
                fail("min_areas", f"must hold integers >= 0, got {value!r}")
        for value in policy.get("fill_holes_per_class", []):
            if not isinstance(value, (bool, np.bool_)):
                fail("fill_holes_per_class", f"must hold true or false, got {value!r}")
    for field in ("confidence_interval", "gain_confidence_interval"):
        value = policy.get(field)
        if value is not None and (not isinstance(value, (list, tuple)) or len(value) != 2
                                  or not all(_is_number(bound) for bound in value) or value[0] > value[1]):
            fail(field, f"must be [low, high] or null, got {value!r}")


def save_policy(path, policy):
    """Write the policy JSON atomically, after checking its fields (ValueError naming the path and field)."""
    _validate_policy(policy, path)
    return artifacts.save_json(path, policy)


def load_policy(path):
    """Read a policy written by ``save_policy``, checking its fields (ValueError naming the path and field)."""
    policy = artifacts.load_json(path, what="policy (notebook 04)")
    _validate_policy(policy, path)
    return policy
