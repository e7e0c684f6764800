"""TGS Salt Identification Challenge: 101x101 seismic sections, binary salt masks.

Kaggle layout (extracted, or ``train.zip`` / ``test.zip`` read in place)::

    train.csv               id, rle_mask (column-major RLE; empty cell = no salt)
    depths.csv              id, z (train and test)
    sample_submission.csv   id, rle_mask
    train/images/<id>.png   3 identical channels
    train/masks/<id>.png    16-bit {0, 65535} when salt is present, 8-bit zeros when not
    test/images/<id>.png
"""

import numpy as np

from seglib.competitions.base import register
from seglib.competitions.rle_tables import RLECompetition


@register("tgs")
class TGSSalt(RLECompetition):
    """Adapter for the TGS Salt Identification Challenge."""

    title = "TGS Salt Identification Challenge"
    kaggle_slug = "tgs-salt-identification-challenge"
    image_size = (101, 101)
    image_channels = 1
    metric = "tgs"
    rle_order = "F"
    image_folders = {"train": "train/images", "test": "test/images"}
    image_suffix = ".png"
    mask_folder, mask_suffix = "train/masks", ".png"
    mask_table = "train.csv"
    ids_from_mask_table = True  # in train.csv's order
    submission_why = "it fixes the submission's rows"
    metadata_table, metadata_columns, metadata_numbers = "depths.csv", ("id", "z"), ("z",)

    def stratify_labels(self, image_ids):
        """Coverage class per image: 0 when empty, else ceil(10 * coverage) in 1..10. The score punishes a wrong
        "empty" call as hard as a whole wrong mask, so a split keeps these balanced."""
        return np.ceil(self.read_masks(image_ids).mean(axis=(1, 2)) * 10).astype(int)
