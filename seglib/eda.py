"""Figures for the first look at a competition: coverage, metadata, and what a resolution costs."""

import numpy as np
import pandas as pd

from seglib.geometry import downscale_roundtrip
from seglib.metrics import get_metric


def coverage_table(competition, image_ids, masks):
    """Per training image: mask coverage (share of pixels), empty flag, and the adapter's metadata.

    Args:
        competition: the adapter (for its metadata).
        image_ids: the ids, in the order of ``masks``.
        masks: boolean (n, height, width), read once by the caller and shared with ``resolution_ceiling``.

    Returns:
        A DataFrame indexed by id with columns coverage, empty and the metadata columns (e.g. TGS depth z).
    """
    masks = np.asarray(masks)
    if len(masks) != len(image_ids):
        raise ValueError(f"{len(image_ids)} ids but {len(masks)} masks")
    coverage = masks.reshape(len(masks), -1).mean(axis=1)
    table = pd.DataFrame({"coverage": coverage}, index=pd.Index(list(image_ids), name="id"))
    table["empty"] = table["coverage"] == 0
    return table.join(competition.metadata(), how="left")


def resolution_ceiling(masks, sizes, metric_name):
    """The score the TRUE masks keep after a downscale to each size and back: a ceiling for a model at that size.

    Args:
        masks: boolean (n, height, width) true masks.
        sizes: candidate square input sides.
        metric_name: a name from ``seglib.metrics``.

    Returns:
        DataFrame (size, score) with one row per size.
    """
    metric = get_metric(metric_name)
    masks = np.asarray(masks, dtype=bool)
    scores = [metric.score(masks, downscale_roundtrip(masks, size)) for size in sizes]
    return pd.DataFrame({"size": list(sizes), "score": scores})
