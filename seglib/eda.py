"""Figures for the first look at a competition: coverage, class overlap, metadata, and what a resolution costs.

Masks are read once, in chunks, by ``survey_masks``: a hand-bone mask is 2048 x 2048 x 29 and Carvana has 5,088
masks of 1918 x 1280, so the EDA must never hold every mask at once.
"""

import collections

import numpy as np
import pandas as pd
from tqdm import tqdm  # text bars: tqdm.auto warns in Jupyter without ipywidgets

from seglib.geometry import downscale_roundtrip
from seglib.metrics import get_metric

# Masks read at a time by survey_masks.
SURVEY_CHUNK = 32

MaskSurvey = collections.namedtuple("MaskSurvey", ["coverage", "class_overlap", "ceiling"])


def coverage_table(competition, image_ids, masks):
    """Per training image: mask coverage (share of pixels), empty flag, per-class coverage when there are
    several classes, and the adapter's metadata.

    Args:
        competition: the adapter (for its classes and metadata).
        image_ids: the ids, in the order of ``masks``.
        masks: boolean (n, height, width), or (n, height, width, classes) for multi-label competitions.

    Returns:
        A DataFrame indexed by id with columns coverage (any class), empty, one column per class when there are
        several, and the metadata columns (e.g. TGS depth z, Carvana angle).
    """
    masks = np.asarray(masks, dtype=bool)
    if len(masks) != len(image_ids):
        raise ValueError(f"{len(image_ids)} ids but {len(masks)} masks")
    table = pd.DataFrame(index=pd.Index(list(image_ids), name="id"))
    if masks.ndim == 4:
        pixels_per_class = masks.reshape(len(masks), -1, masks.shape[-1])
        table["coverage"] = pixels_per_class.any(axis=2).mean(axis=1)
        for index, class_name in enumerate(competition.classes):
            table[class_name] = pixels_per_class[..., index].mean(axis=1)
    else:
        table["coverage"] = masks.reshape(len(masks), -1).mean(axis=1)
    table["empty"] = table["coverage"] == 0
    return table.join(competition.metadata(), how="left")


def class_overlap_counts(masks):
    """Pixels shared by every pair of classes, summed over images: int64 (classes, classes); the diagonal holds
    each class's pixel count."""
    masks = np.asarray(masks, dtype=bool)
    pixels = masks.reshape(-1, masks.shape[-1]).astype(np.float32)
    # A matrix product counts co-occurrences; float32 is exact for the at most 2**24 pixels of one chunk row.
    counts = np.zeros((masks.shape[-1],) * 2, dtype=np.int64)
    for start in range(0, len(pixels), 1 << 22):
        chunk = pixels[start:start + (1 << 22)]
        counts += np.rint(chunk.T @ chunk).astype(np.int64)
    return counts


def overlap_table(counts, class_names):
    """Share of class i's pixels that also belong to class j, as a DataFrame (rows i, columns j)."""
    counts = np.asarray(counts, dtype=np.float64)
    own = np.diag(counts)[:, np.newaxis]
    share = np.divide(counts, own, out=np.zeros_like(counts), where=own > 0)
    return pd.DataFrame(share, index=list(class_names), columns=list(class_names))


def ceiling_image_scores(masks, sizes, metric_name):
    """Per-image (and per-class) scores the TRUE masks keep after a downscale to each size and back.

    Returns:
        float64 array (scores, len(sizes)); multi-label masks give one score per (image, class).
    """
    metric = get_metric(metric_name)
    masks = np.asarray(masks, dtype=bool)
    return np.stack([metric.image_scores(masks, downscale_roundtrip(masks, size)) for size in sizes], axis=1)


def resolution_ceiling(masks, sizes, metric_name):
    """The score the TRUE masks keep after a downscale to each size and back: a ceiling for a model at that size.

    Args:
        masks: boolean (n, height, width) (or (n, height, width, classes)) true masks.
        sizes: candidate square input sides.
        metric_name: a name from ``seglib.metrics``.

    Returns:
        DataFrame (size, score) with one row per size.
    """
    scores = ceiling_image_scores(masks, sizes, metric_name)
    return pd.DataFrame({"size": list(sizes), "score": scores.mean(axis=0)})


def candidate_sizes(image_size, model_size):
    """Input sides worth a ceiling row: the usual model sizes up to the native side, the run's own size, and the
    native side itself."""
    native = max(image_size)
    usual = [32, 64, 100, 128, 256, 512, 1024]
    return sorted({size for size in usual if size < native} | {int(model_size), int(native)})


def survey_masks(competition, image_ids, sizes, ceiling_images=200, progress=True):
    """Read every training mask once, in chunks, and gather the EDA's mask statistics.

    Args:
        competition: the adapter.
        image_ids: training ids.
        sizes: input sides for the resolution ceiling.
        ceiling_images: the ceiling is measured on at most this many images, evenly spaced over the ids (each
            costs a resize per size; 200 images give it to about +-0.01).
        progress: show a tqdm bar.

    Returns:
        MaskSurvey(coverage=``coverage_table``, class_overlap=``overlap_table`` or None for one class,
        ceiling=DataFrame (size, score)).
    """
    image_ids = list(image_ids)
    ceiling_positions = set(np.linspace(0, len(image_ids) - 1, min(ceiling_images, len(image_ids))).astype(int))
    coverage_parts, ceiling_parts = [], []
    overlap_counts = np.zeros((competition.num_classes,) * 2, dtype=np.int64)
    starts = range(0, len(image_ids), SURVEY_CHUNK)
    for start in tqdm(starts, desc="reading masks", disable=not progress):
        chunk_ids = image_ids[start:start + SURVEY_CHUNK]
        masks = competition.read_masks(chunk_ids)
        coverage_parts.append(coverage_table(competition, chunk_ids, masks))
        if competition.num_classes > 1:
            overlap_counts += class_overlap_counts(masks)
        chosen = [index for index in range(len(chunk_ids)) if start + index in ceiling_positions]
        if chosen:
            ceiling_parts.append(ceiling_image_scores(masks[chosen], sizes, competition.metric))
    ceiling = pd.DataFrame({"size": list(sizes), "score": np.concatenate(ceiling_parts).mean(axis=0)})
    class_overlap = overlap_table(overlap_counts, competition.classes) if competition.num_classes > 1 else None
    return MaskSurvey(pd.concat(coverage_parts), class_overlap, ceiling)


def rate_by_bin(coverage, column, bins=8):
    """How often the mask is non-empty, and how big, per quantile bin of a numeric metadata column (e.g. TGS
    depth ``z``): a scatter of coverage against depth cannot show whether salt is more common deeper; this can.

    Args:
        coverage: the survey's coverage table (``survey_masks``), with the metadata column merged in.
        column: the numeric column to bin.
        bins: at most this many bins of about equal image counts.

    Returns:
        DataFrame indexed by bin: images, non_empty_share, mean_coverage.
    """
    if column not in coverage:
        raise ValueError(f"no column {column!r} in the coverage table; columns: {list(coverage.columns)}")
    binned = pd.qcut(coverage[column], bins, duplicates="drop")
    table = coverage.groupby(binned, observed=True).agg(images=("coverage", "size"),
                                                        non_empty_share=("empty", lambda empty: 1 - empty.mean()),
                                                        mean_coverage=("coverage", "mean"))
    return table.rename_axis(f"{column} bin")
