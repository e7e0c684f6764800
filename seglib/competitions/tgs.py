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
import pandas as pd

from seglib import rle
from seglib.competitions.base import Competition, register

# Coverage classes 0..10 (0 = empty, then tenths of the image); the split keeps them balanced because the
# score punishes a wrong "empty" call as hard as a whole wrong mask.
COVERAGE_CLASSES = 10


def coverage_class(masks):
    """Coverage class per mask: 0 for an empty mask, else ceil(10 * coverage) in 1..10."""
    masks = np.asarray(masks) > 0
    coverage = masks.reshape(len(masks), -1).mean(axis=1)
    return np.ceil(coverage * COVERAGE_CLASSES).astype(int)


@register("tgs")
class TGSSalt(Competition):
    """Adapter for the TGS Salt Identification Challenge."""

    title = "TGS Salt Identification Challenge"
    kaggle_slug = "tgs-salt-identification-challenge"
    image_size = (101, 101)
    image_channels = 1
    metric = "tgs"
    rle_order = "F"
    submission_columns = ("id", "rle_mask")

    def __init__(self, data_dir, **options):
        super().__init__(data_dir, **options)
        self._train_table = None
        self._has_mask_pngs = None

    def train_table(self):
        """train.csv indexed by id, with empty RLE cells as ""."""
        if self._train_table is None:
            table = self.files.read_csv("train.csv", required_columns=("id", "rle_mask"), dtype=str,
                                        keep_default_na=False)
            duplicated = table["id"][table["id"].duplicated()]
            if len(duplicated):
                raise ValueError(f"{self.data_dir / 'train.csv'}: duplicate id(s) {list(duplicated[:5])}")
            self._train_table = table.set_index("id")
        return self._train_table

    def train_ids(self):
        return list(self.train_table().index)

    def test_ids(self):
        ids = self.files.list_folder("test/images", ".png")
        if not ids and self.files.exists("sample_submission.csv"):
            ids = list(self.expected_submission()["id"])
        if not ids:
            raise FileNotFoundError(f"no test images in {self.data_dir / 'test/images'} or test.zip")
        return ids

    def image_path(self, image_id, part):
        return f"{part}/images/{image_id}.png"

    def mask_path(self, image_id):
        """Path of a training mask PNG, as if extracted."""
        return f"train/masks/{image_id}.png"

    def read_mask(self, image_id):
        if self._has_mask_pngs is None:
            self._has_mask_pngs = self.files.has_folder("train/masks")
        if self._has_mask_pngs:
            # Real masks are 16-bit {0, 65535} (or 8-bit zeros when empty).
            return self.read_mask_file(self.mask_path(image_id))
        table = self.train_table()
        if image_id not in table.index:
            raise KeyError(f"id {image_id!r} is not in {self.data_dir / 'train.csv'}")
        return rle.decode(table.at[image_id, "rle_mask"], self.image_size, order=self.rle_order,
                          name=f"train.csv id {image_id}")

    def metadata(self):
        if not self.files.exists("depths.csv"):
            return pd.DataFrame(index=pd.Index([], name="id"))
        depths = self.files.read_csv("depths.csv", required_columns=("id", "z"), dtype={"id": str})
        return depths.set_index("id")

    def submission_rows(self, image_id, mask):
        return [(image_id, rle.encode(mask, order=self.rle_order))]

    def submission_keys(self, image_id):
        return [(str(image_id),)]

    def expected_submission(self):
        return self.files.read_csv("sample_submission.csv", required_columns=self.submission_columns,
                                   dtype=str, keep_default_na=False)[["id"]]

    def stratify_labels(self, image_ids):
        return coverage_class(self.read_masks(image_ids))

    def groups(self, image_ids):
        return None
