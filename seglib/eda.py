"""The tables behind notebook 01: coverage, class overlap, metadata rates and what a resolution costs.

``survey_masks`` reads the masks once, in chunks: a hand-bone mask is 2048 x 2048 x 29 and Carvana has 5,088
masks of 1918 x 1280, so the EDA must never hold every mask at once.
"""

import collections

import numpy as np
import pandas as pd
from tqdm import tqdm  # text bars: tqdm.auto warns in Jupyter without ipywidgets

from seglib.errors import SeglibError
from seglib.metrics import get_metric

SURVEY_CHUNK = 32  # masks read at a time by survey_masks

MaskSurvey = collections.namedtuple("MaskSurvey", ["coverage", "class_overlap", "ceiling"])


def coverage_table(competition, image_ids, masks):
    """Per image: coverage (share of pixels in any class), empty flag, per-class coverage when there are several
    classes, and the adapter's metadata (e.g. TGS depth z, Carvana angle); indexed by id."""
    masks = np.asarray(masks, dtype=bool)
    if len(masks) != len(image_ids):
        raise SeglibError(f"{len(image_ids)} ids but {len(masks)} masks")
    table = pd.DataFrame(index=pd.Index(list(image_ids), name="id"))
    pixels = masks.reshape(len(masks), -1, masks.shape[-1] if masks.ndim == 4 else 1)
    table["coverage"] = pixels.any(axis=2).mean(axis=1)
    if masks.ndim == 4:
        for index, class_name in enumerate(competition.classes):
            table[class_name] = pixels[..., index].mean(axis=1)
    table["empty"] = table["coverage"] == 0
    return table.join(competition.metadata(), how="left")


def class_overlap_counts(masks, rows=1 << 22):
    """Pixels shared by every pair of classes, summed over images: int64 (classes, classes), each class's pixel
    count on the diagonal."""
    pixels = np.asarray(masks, dtype=bool).reshape(-1, np.shape(masks)[-1])
    counts = np.zeros((pixels.shape[1],) * 2, dtype=np.int64)
    # A float32 matrix product counts co-occurrences fast, and exactly for up to 2**24 rows at a time.
    for start in range(0, len(pixels), rows):
        chunk = pixels[start:start + rows].astype(np.float32)
        counts += np.rint(chunk.T @ chunk).astype(np.int64)
    return counts


def overlap_table(counts, class_names):
    """Share of class i's pixels that also belong to class j, as a DataFrame (rows i, columns j)."""
    counts = np.asarray(counts, dtype=np.float64)
    own = np.diag(counts)[:, np.newaxis]
    share = np.divide(counts, own, out=np.zeros_like(counts), where=own > 0)
    return pd.DataFrame(share, index=list(class_names), columns=list(class_names))


def ceiling_image_scores(masks, sizes, metric_name):
    """Scores the TRUE masks keep after a downscale to each size and back: float64 (scores, len(sizes)), one
    score per image (per (image, class) for multi-label masks). A model at that size cannot beat them."""
    from seglib.geometry import downscale_roundtrip  # imports TensorFlow

    metric = get_metric(metric_name)
    masks = np.asarray(masks, dtype=bool)
    return np.stack([metric.image_scores(masks, downscale_roundtrip(masks, size)) for size in sizes], axis=1)


def candidate_sizes(image_size, model_size):
    """Input sides worth a ceiling row: the usual model sizes below the native side, the run's size and the
    native side."""
    native = max(image_size)
    usual = [32, 64, 100, 128, 256, 512, 1024]
    return sorted({size for size in usual if size < native} | {int(model_size), int(native)})


def survey_masks(competition, image_ids, sizes, ceiling_images=200, progress=True):
    """Read every training mask once, in chunks: MaskSurvey(coverage table, class overlap table or None for one
    class, resolution ceiling DataFrame (size, score)).

    The ceiling uses at most ``ceiling_images`` evenly spaced images (200 give it to about +-0.01).
    """
    image_ids = list(image_ids)
    chosen = set(np.linspace(0, len(image_ids) - 1, min(ceiling_images, len(image_ids))).astype(int))
    coverage_parts, ceiling_parts = [], []
    overlap_counts = np.zeros((competition.num_classes,) * 2, dtype=np.int64)
    for start in tqdm(range(0, len(image_ids), SURVEY_CHUNK), desc="reading masks", disable=not progress):
        chunk_ids = image_ids[start:start + SURVEY_CHUNK]
        masks = competition.read_masks(chunk_ids)
        coverage_parts.append(coverage_table(competition, chunk_ids, masks))
        if competition.num_classes > 1:
            overlap_counts += class_overlap_counts(masks)
        picked = [index for index in range(len(chunk_ids)) if start + index in chosen]
        if picked:
            ceiling_parts.append(ceiling_image_scores(masks[picked], sizes, competition.metric))
    ceiling = pd.DataFrame({"size": list(sizes), "score": np.concatenate(ceiling_parts).mean(axis=0)})
    overlap = overlap_table(overlap_counts, competition.classes) if competition.num_classes > 1 else None
    return MaskSurvey(pd.concat(coverage_parts), overlap, ceiling)


def rate_by_bin(coverage, column, bins=8):
    """Images, non-empty share and mean coverage per quantile bin of a numeric column of the coverage table
    (e.g. TGS depth ``z``): a scatter of coverage against depth cannot show whether salt is commoner deeper."""
    if column not in coverage:
        raise SeglibError(f"no column {column!r} in the coverage table; columns: {list(coverage.columns)}")
    binned = pd.qcut(coverage[column], bins, duplicates="drop")
    table = coverage.groupby(binned, observed=True).agg(images=("coverage", "size"),
                                                        non_empty_share=("empty", lambda empty: 1 - empty.mean()),
                                                        mean_coverage=("coverage", "mean"))
    return table.rename_axis(f"{column} bin")
