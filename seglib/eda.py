"""Figures for the first look at a competition: coverage, metadata, and what a resolution costs."""

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from seglib.geometry import downscale_roundtrip
from seglib.metrics import get_metric


def coverage_table(competition, image_ids, progress=True):
    """Per training image: mask coverage (share of pixels), empty flag, and the adapter's metadata.

    Returns:
        A DataFrame indexed by id with columns coverage, empty and the metadata columns (e.g. TGS depth z).
    """
    coverage = [competition.read_mask(image_id).mean()
                for image_id in tqdm(image_ids, desc="read masks", disable=not progress)]
    table = pd.DataFrame({"coverage": coverage}, index=pd.Index(image_ids, name="id"))
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
