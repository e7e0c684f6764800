"""The post-processing policy: how probabilities become the submitted masks, fitted on out-of-fold predictions
(notebook 04, policy.json) and applied unchanged to the test predictions (notebook 05).

Per class, in this order: threshold (strictly above), fill holes (optional: background that does not reach the
border becomes foreground), minimum area (a smaller mask becomes empty: the TGS trick, as a few stray pixels on
an image whose truth is empty cost the whole image).
"""

import collections
import dataclasses
import numbers

import numpy as np
import pandas as pd
from scipy import ndimage

from seglib import artifacts
from seglib.errors import SeglibError
from seglib.metrics import bootstrap_interval, get_metric, sweep_counts

DEFAULT_THRESHOLDS = np.round(np.linspace(0.02, 0.98, 49), 4)
DEFAULT_MIN_AREA_FRACTIONS = (0.0, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05)  # of the image area
DEFAULT_THRESHOLD = 0.5  # what you get without a policy

# Filling every mask at every threshold costs too much on large images (see fit_policy_pairs).
_FILL_COARSE_STEP, _FILL_REFINE_STEPS = 4, 2
_CHUNK_BYTES = 1 << 28  # a chunk's inputs at most: one hand-bone prediction is already 0.5 GB
_TIE_TOLERANCE = 1e-12  # means of the same numbers summed in another order differ in the last bits


def _number(value, kind=numbers.Real):
    return isinstance(value, kind) and not isinstance(value, (bool, np.bool_))


_SETTINGS = {  # a setting's check of one value, what it must be, and its per-class list
    "threshold": (lambda value: _number(value) and 0 <= value <= 1, "a number in [0, 1]", "thresholds"),
    "min_area": (lambda value: _number(value, numbers.Integral) and value >= 0, "an integer >= 0", "min_areas"),
    "fill_holes": (lambda value: isinstance(value, (bool, np.bool_)), "true or false", "fill_holes_per_class")}


@dataclasses.dataclass(frozen=True)
class Policy:
    """A post-processing policy and what its fit measured (None in a policy made by hand). threshold, min_area
    and fill_holes apply to every class unless the three per-class lists are given, as a multi-label fit does
    (its scalars are then the best setting shared by all classes)."""

    threshold: float
    min_area: int = 0
    fill_holes: bool = False
    thresholds: tuple | None = None
    min_areas: tuple | None = None
    fill_holes_per_class: tuple | None = None
    metric: str | None = None
    validation_images: int | None = None
    validation_score: float | None = None  # the mean out-of-fold score under this policy
    default_score: float | None = None  # at threshold 0.5, no minimum area, no filling
    empty_baseline_score: float | None = None  # with every mask empty
    class_scores: tuple | None = None
    confidence_interval: tuple | None = None  # 95 % bootstrap [low, high] of validation_score; optimistic (see fit)
    gain_confidence_interval: tuple | None = None  # the same of validation_score - default_score

    def __post_init__(self):
        classes = None if self.thresholds is None else len(self.thresholds)
        for name, (valid, wanted, list_name) in _SETTINGS.items():
            values = getattr(self, list_name)
            self._check(name, valid(getattr(self, name)), wanted)
            self._check(list_name, values is None if classes is None else isinstance(values, (list, tuple))
                        and len(values) == classes > 0 and all(map(valid, values)),
                        "absent without 'thresholds'" if classes is None else f"{classes} entries, each {wanted}")
        for name in ("confidence_interval", "gain_confidence_interval"):
            value = getattr(self, name)
            self._check(name, value is None or isinstance(value, (list, tuple)) and len(value) == 2
                        and all(map(_number, value)) and value[0] <= value[1], "[low, high]")

    def _check(self, name, ok, wanted):
        if not ok:
            raise SeglibError(f"policy field {name!r} must be {wanted}, got {getattr(self, name)!r}")

    def to_json(self):
        """The fields that are set, as a JSON-ready dict."""
        return {name: value for name, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, data):
        """The Policy of a ``to_json`` dict (SeglibError or TypeError for a bad field)."""
        if not isinstance(data, dict):
            raise SeglibError(f"a policy is a JSON object, got {data!r}")
        return cls(**{name: tuple(value) if isinstance(value, list) else value for name, value in data.items()})

    def per_class(self, classes):
        """(thresholds, min_areas, fills), one entry per class."""
        if self.thresholds is None:
            return [self.threshold] * classes, [self.min_area] * classes, [self.fill_holes] * classes
        if len(self.thresholds) != classes:
            raise SeglibError(f"the policy has {len(self.thresholds)} classes, the probabilities {classes}")
        return list(self.thresholds), list(self.min_areas), list(self.fill_holes_per_class)


def fit_policy(true_masks, probabilities, metric_name, **options):
    """``fit_policy_pairs`` on in-memory arrays: true masks (N, H, W) or (N, H, W, C) and predictions alike."""
    return fit_policy_pairs(lambda: zip(true_masks, probabilities), metric_name, **options)


def fit_policy_pairs(make_pairs, metric_name, thresholds=DEFAULT_THRESHOLDS, min_areas=None,
                     fill_holes_options=(False, True), chunk_size=32, bootstrap=1000, seed=0):
    """Pick, per class, the threshold x minimum area x hole filling that scores best on validation predictions.

    ``make_pairs()`` yields (true mask, probabilities) per image at the original size, the same each call; the
    images stream through in chunks, scored from per-image pixel counts. Filling is counted at every 4th
    threshold, then again near each class's best. Ties go to the smaller area, no filling, the threshold nearest
    0.5. Returns (Policy, surface: a row per scored setting). The bootstrap intervals (over images) are
    optimistic, as the policy was chosen on these very images.
    """
    metric = get_metric(metric_name)
    grid = np.unique(np.append(np.asarray(thresholds, dtype=np.float64), DEFAULT_THRESHOLD))
    options = tuple(bool(option) for option in fill_holes_options)
    coarse = np.zeros(len(grid), dtype=bool)
    coarse[::_FILL_COARSE_STEP] = coarse[-1] = True in options
    counts, image_shape = _first_pass(make_pairs, metric, grid, coarse, int(chunk_size))
    if min_areas is None:
        min_areas = [round(fraction * image_shape[0] * image_shape[1]) for fraction in DEFAULT_MIN_AREA_FRACTIONS]
    min_areas = np.array(sorted(set(min_areas)))
    if True in options:
        _refine_filling(counts, make_pairs, grid, min_areas, int(chunk_size))
    surface = counts.surface(min_areas, options)
    choices = [_best(table, grid, min_areas, options) for table in surface]
    shared = _best(np.mean(surface, axis=0), grid, min_areas, options)
    scores = np.stack([counts.scores(choice.fill_holes, choice.min_area)[:, c, choice.threshold_index]
                       for c, choice in enumerate(choices)], axis=1)
    default = counts.scores(False, 0)[..., np.flatnonzero(grid == DEFAULT_THRESHOLD)[0]]
    interval, gain_interval = _bootstrap(scores.mean(axis=1), default.mean(axis=1), int(bootstrap), seed)
    class_thresholds, class_areas, class_fills, _ = zip(*choices)
    per_class = dict(thresholds=class_thresholds, min_areas=class_areas, fill_holes_per_class=class_fills,
                     class_scores=tuple(scores.mean(axis=0).tolist())) if len(choices) > 1 else {}
    policy = Policy(shared.threshold, shared.min_area, shared.fill_holes, **per_class, metric=metric.name,
                    validation_images=len(scores), validation_score=float(scores.mean()),
                    default_score=float(default.mean()),
                    empty_baseline_score=float(metric.from_counts(0, 0, counts.true).mean()),
                    confidence_interval=interval, gain_confidence_interval=gain_interval)
    return policy, _surface_table(surface, grid, min_areas, options)


def _first_pass(make_pairs, metric, grid, coarse, chunk_size):
    """The ``_Counts`` at every threshold of the grid, filled at the ``coarse`` ones, and the image (H, W)."""
    parts = []
    for truth, probability in _chunks(make_pairs(), chunk_size):
        shape = (len(truth), truth.shape[-1], -1)
        parts.append([count.reshape(shape) for count in sweep_counts(truth, probability, grid)]
                     + [_chunk_holes(truth, probability, grid, [np.flatnonzero(coarse)] * truth.shape[-1])])
    if not parts:
        raise SeglibError("fit_policy needs at least one validation image")
    return _Counts(metric, *map(np.concatenate, zip(*parts)), np.tile(coarse, (truth.shape[-1], 1))), truth.shape[1:3]


def _refine_filling(counts, make_pairs, grid, min_areas, chunk_size):
    """Pass 2: count filling near each class's best thresholds with and without it."""
    wanted = np.zeros_like(counts.filled)
    for c, table in enumerate(counts.surface(min_areas, (False, True))):
        for option in (0, 1):
            best = _best(table[..., option:option + 1], grid, min_areas, (bool(option),)).threshold_index
            wanted[c, max(0, best - _FILL_REFINE_STEPS):best + _FILL_REFINE_STEPS + 1] = True
    wanted &= ~counts.filled
    if wanted.any():
        columns = [np.flatnonzero(row) for row in wanted]
        counts.holes += np.concatenate([_chunk_holes(truth, probability, grid, columns)
                                        for truth, probability in _chunks(make_pairs(), chunk_size)])
        counts.filled |= wanted


class _Counts:
    """Pixel counts of the masks per (image, class, threshold): intersection, predicted (N, C, T), true
    (N, C, 1), and holes (N, C, T, 2) (those filling adds, of them in the truth) where ``filled`` (C, T)."""

    def __init__(self, metric, intersection, predicted, true, holes, filled):
        self.metric, self.intersection, self.predicted, self.true = metric, intersection, predicted, true
        self.holes, self.filled = holes, filled

    def scores(self, fill, min_area):
        """Per-image scores (N, C, T) with or without filling, after the minimum-area veto."""
        intersection, predicted = self.intersection, self.predicted
        if fill:
            intersection, predicted = intersection + self.holes[..., 1], predicted + self.holes[..., 0]
        keep = predicted >= min_area
        return self.metric.from_counts(intersection * keep, predicted * keep, self.true)

    def surface(self, min_areas, options):
        """Mean score per (class, threshold, min_area, option): (C, T, M, F), NaN where filling was not counted."""
        surface = np.stack([np.stack([self.scores(fill, area).mean(axis=0) for area in min_areas], axis=-1)
                            for fill in options], axis=-1)
        if True in options:
            surface[..., options.index(True)][~self.filled] = np.nan
        return surface


_Setting = collections.namedtuple("_Setting", ["threshold", "min_area", "fill_holes", "threshold_index"])


def _best(table, grid, min_areas, options):
    """The best ``_Setting`` of a (T, M, F) score table, NaN excluded; ties as ``fit_policy_pairs`` says."""
    if np.isnan(table).all():
        raise SeglibError("no combination of the policy could be scored")
    with np.errstate(invalid="ignore"):
        t, m, f = np.nonzero(table >= np.nanmax(table) - _TIE_TOLERANCE)
    distance = np.round(np.abs(grid[t] - DEFAULT_THRESHOLD), 9)
    best = np.lexsort((grid[t], distance, np.array(options)[f], min_areas[m]))[0]
    return _Setting(float(grid[t[best]]), int(min_areas[m[best]]), options[f[best]], int(t[best]))


def _bootstrap(policy_scores, default_scores, resamples, seed):
    """95 % percentile bootstrap intervals of the mean policy score and of the mean gain over the default."""
    if resamples == 0:
        return None, None
    return tuple(bootstrap_interval(scores, resamples, seed)
                 for scores in (policy_scores, policy_scores - default_scores))


def _surface_table(surface, grid, min_areas, options):
    """The (C, T, M, F) surface as a long DataFrame, without the combinations that were not scored."""
    index = pd.MultiIndex.from_product([range(len(surface)), grid, min_areas, options],
                                       names=["class", "threshold", "min_area", "fill_holes"])
    table = pd.Series(surface.ravel(), index, name="score").dropna().reset_index()
    return table.sort_values(["class", "fill_holes", "min_area", "threshold"], ignore_index=True)


def threshold_curve(surface, policy, class_index=None):
    """The (threshold, score) curve at the policy's minimum area and hole filling, from the fit's surface; with
    several classes and ``class_index`` None, the mean over classes, each at its own setting."""
    curves = [rows.set_index("threshold")["score"] for rows in _class_rows(surface, policy, class_index, True)]
    curve = pd.concat(curves, axis=1, join="inner").mean(axis=1)
    return pd.DataFrame({"threshold": curve.index.to_numpy(), "score": curve.to_numpy()})


def area_threshold_table(surface, policy, class_index=None):
    """Scores by minimum area (rows, pixels) and threshold (columns) at the policy's hole filling; with several
    classes and ``class_index`` None, the mean over classes, each at its own filling."""
    tables = [rows.pivot(index="min_area", columns="threshold", values="score")
              for rows in _class_rows(surface, policy, class_index, False)]
    # Aligned on labels: a threshold filled for one class only becomes NaN, and goes.
    return (sum(tables) / len(tables)).dropna(axis=1)


def _class_rows(surface, policy, class_index, at_min_area):
    """The surface rows of each class (or of ``class_index``) at its own filling (and minimum area)."""
    _, min_areas, fills = policy.per_class(int(surface["class"].max()) + 1)
    for c in [class_index] if class_index is not None else range(len(fills)):
        rows = surface[(surface["class"] == c) & (surface["fill_holes"] == fills[c])]
        yield rows[rows["min_area"] == min_areas[c]] if at_min_area else rows


def _chunks(pairs, chunk_size):
    """(true mask, probabilities) pairs stacked into (n, H, W, C) batches of at most ``chunk_size`` images."""
    chunk = []
    for pair in pairs:
        chunk.append([np.asarray(array) for array in pair])
        if len(chunk) == chunk_size or sum(array.nbytes for arrays in chunk for array in arrays) >= _CHUNK_BYTES:
            yield [_with_class_axis(np.stack(arrays)) for arrays in zip(*chunk)]
            chunk = []
    if chunk:
        yield [_with_class_axis(np.stack(arrays)) for arrays in zip(*chunk)]


def _with_class_axis(batch):
    if batch.ndim not in (3, 4):
        raise SeglibError(f"masks and probabilities must be batches (N, H, W) or (N, H, W, C), got {batch.shape}")
    return batch if batch.ndim == 4 else batch[..., np.newaxis]


def _chunk_holes(truth, probability, grid, columns):
    """Hole counts (n, C, T, 2) of a chunk (n, H, W, C): the pixels filling adds, and those of them in the
    truth, at the thresholds ``grid[columns[c]]`` of class c."""
    holes = np.zeros((len(truth), truth.shape[-1], len(grid), 2), dtype=np.int64)
    for n, c in np.ndindex(holes.shape[:2]):
        for t in columns[c]:
            box, hole = _holes(probability[n, ..., c] > grid[t])
            if not hole.size:
                break  # an empty mask: those of the higher thresholds are empty too
            holes[n, c, t] = np.count_nonzero(hole), np.count_nonzero(hole & (truth[n, ..., c][box] > 0))
    return holes


def _holes(mask):
    """(bounding box, the holes in it) of a 2-D mask. Holes lie inside the box (outside it every pixel reaches
    the border in a straight line), and filling only the box is much faster for small objects."""
    box = (ndimage.find_objects(mask.view(np.uint8)) or [np.s_[:0, :0]])[0]
    return box, ndimage.binary_fill_holes(mask[box]) & ~mask[box]


def apply_policy(probabilities, policy):
    """Boolean masks from probabilities (N, H, W) or (N, H, W, C) under a ``Policy``: threshold (strictly
    above), then hole filling, then the minimum-area veto, each per (image, class), as the fit scored them."""
    batch = _with_class_axis(np.asarray(probabilities))
    thresholds, min_areas, fills = policy.per_class(batch.shape[-1])
    masks = batch > np.array(thresholds, dtype=np.float64)  # float64, as the fit's sweep compares
    for n, c in np.ndindex(masks.shape[0], masks.shape[-1]):
        if fills[c]:
            box, holes = _holes(masks[n, ..., c])
            masks[(n,) + box + (c,)] |= holes
    masks &= (np.count_nonzero(masks, axis=(1, 2)) >= np.array(min_areas))[:, np.newaxis, np.newaxis]
    return masks.reshape(np.shape(probabilities))


def save_policy(path, policy):
    """Write a ``Policy`` to a JSON file, atomically."""
    return artifacts.save_json(path, policy.to_json())


def load_policy(path):
    """Read a policy written by ``save_policy``; a bad field raises SeglibError naming the file and the field."""
    data = artifacts.load_json(path, what="policy (notebook 04)")
    try:
        return Policy.from_json(data)
    except (TypeError, SeglibError) as error:
        raise SeglibError(f"{path}: {error}") from None
