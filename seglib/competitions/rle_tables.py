"""What TGS and Carvana share: image files, binary mask files, the same masks as RLE rows of a CSV, a
sample_submission.csv of one row per test image, and a metadata CSV that only the EDA reads."""

import functools

import numpy as np
import pandas as pd

from seglib import rle
from seglib.competitions.base import (DATA_ERRORS, Competition, Problem, duplicate_problems, pairing_problems,
                                      problem_from, raise_first)
from seglib.errors import SeglibError


class RLECompetition(Competition):
    """Images ``<image_folders[part]>/<id><image_suffix>``, masks ``<mask_folder>/<id><mask_suffix>`` or else the
    RLEs of CSV ``mask_table`` keyed like the submission (the id plus ``key_suffix``); ``ids_from_mask_table``:
    the training ids are the table's (TGS); ``submission_why``: why sample_submission.csv must be there."""

    image_folders = image_suffix = mask_folder = mask_suffix = mask_table = submission_why = metadata_table = None
    key_suffix = ""
    ids_from_mask_table = False
    metadata_columns = metadata_numbers = ()

    def __init__(self, data_dir, **options):
        super().__init__(data_dir, **options)
        self._rles = None
        self._ids = {}

    @property
    def key_column(self):
        return self.submission_columns[0]

    def image_path(self, image_id, part="train"):
        return f"{self.image_folders[part]}/{image_id}{self.image_suffix}"

    def mask_path(self, image_id):
        return f"{self.mask_folder}/{image_id}{self.mask_suffix}"

    def listed_ids(self, part):
        if part not in self._ids:
            self._ids[part] = self.files.list_folder(self.image_folders[part], self.image_suffix)
        return self._ids[part]

    def train_ids(self):
        if self.ids_from_mask_table:
            return list(self.rles().index)
        return list(self.listed_ids("train") or self._ids_from_table("train", self.mask_table))

    def test_ids(self):
        return list(self.listed_ids("test") or self._ids_from_table("test", "sample_submission.csv"))

    def _ids_from_table(self, part, name):
        if not self.files.has_table(name):
            raise FileNotFoundError(f"no {part} images in {self.data_dir / self.image_folders[part]} or "
                                    f"{self.image_folders[part].split('/')[0]}.zip, and no {name}")
        keys = self.rles().index if part == "train" else self.expected_submission()[self.key_column]
        return sorted(pd.Index(keys).str.removesuffix(self.key_suffix))

    def rles(self):
        """The mask table's RLEs indexed by image id, read once."""
        if self._rles is None:
            table = self.files.read_csv(self.mask_table, required_columns=(self.key_column, "rle_mask"), dtype=str,
                                        keep_default_na=False)
            raise_first(duplicate_problems(table, self.mask_table, self.key_column))
            self._rles = self._index_rles(table)
        return self._rles

    def _index_rles(self, table):
        return table.set_index(table[self.key_column].str.removesuffix(self.key_suffix))["rle_mask"]

    def expected_submission(self):
        if self.files.has_table("sample_submission.csv"):
            return self.files.read_csv("sample_submission.csv", required_columns=self.submission_columns,
                                       dtype=str, keep_default_na=False)[[self.key_column]]
        ids = self.listed_ids("test")
        if not ids:
            raise FileNotFoundError(f"neither sample_submission.csv(.zip) nor test images in {self.data_dir}")
        return pd.DataFrame({self.key_column: [f"{image_id}{self.key_suffix}" for image_id in ids]}, dtype=str)

    def metadata(self):
        """The metadata CSV indexed by its key; no rows when it is absent."""
        key, *columns = self.metadata_columns
        if not self.files.has_table(self.metadata_table):
            return pd.DataFrame(columns=columns, index=pd.Index([], name=key))
        table = self.files.read_csv(self.metadata_table, required_columns=self.metadata_columns, dtype={key: str})
        raise_first(duplicate_problems(table, self.metadata_table, key))
        return table.set_index(key)[columns]

    def metadata_key(self, image_id):
        return image_id

    @functools.cached_property
    def has_mask_files(self):  # else the masks come from the mask table
        return self.files.has_folder(self.mask_folder)

    def read_mask(self, image_id):
        if self.has_mask_files:
            return self.read_mask_file(self.mask_path(image_id))
        row = f"{self.mask_table} {self.key_column} {image_id}{self.key_suffix}"
        if image_id not in self.rles().index:
            raise SeglibError(f"{row}: no such row")
        return rle.decode(self.rles()[image_id], self.image_size, order=self.rle_order, name=row)

    def submission_rows(self, image_id, mask):
        if np.shape(mask) != tuple(self.image_size):
            raise SeglibError(f"{image_id}: mask has shape {np.shape(mask)}, expected {tuple(self.image_size)}")
        return [(f"{image_id}{self.key_suffix}", rle.encode(mask, order=self.rle_order))]

    def submission_keys(self, image_id):
        return [(f"{image_id}{self.key_suffix}",)]

    # --- checking -----------------------------------------------------------------------------------
    def problems(self):
        for part, what in (("train", "training"), ("test", "test")):
            self._ids[part] = yield from self.listed(self.image_folders[part], self.image_suffix,
                                                     f"{what} images ({self.image_suffix})")
        try:
            has_masks = self.has_mask_files
        except DATA_ERRORS:
            has_masks = False  # its zip is named above
        if has_masks:
            masks = yield from self.listed(self.mask_folder, self.mask_suffix)
            yield from pairing_problems(self._ids["train"], masks, self.image_path, self.mask_path, "mask")
        if self.ids_from_mask_table:
            why, consequence = "it lists the training ids", "training never sees it"
        else:
            why = None if has_masks else f"without {self.mask_folder}/ the masks come from it"
            consequence = "Kaggle's table lists every training image"
        table = yield from self.checked_table(self.mask_table, (self.key_column, "rle_mask"), why)
        if table is not None:
            yield from self.rle_problems(table)
            yield from self.listing_problems(table, self.mask_table, "train", consequence)
            if not table[self.key_column].duplicated().any():
                self._rles = self._index_rles(table)  # what ``mask_problems`` compares the mask files with
        table = yield from self.checked_table("sample_submission.csv", self.submission_columns, self.submission_why)
        if table is not None:
            yield from self.listing_problems(table, "sample_submission.csv", "test",
                                             "the submission would leave it out")
        yield from self.metadata_problems()

    def rle_problems(self, table):
        """An RLE cell ``rle.parse`` rejects: odd count, not a number, past the end, overlap."""
        for key, text in zip(table[self.key_column], table["rle_mask"]):
            row = f"{self.mask_table} {self.key_column} {key}"
            try:
                rle.parse(text, int(np.prod(self.image_size)), name=row)
            except SeglibError as error:
                yield problem_from(row, error)

    def listing_problems(self, table, name, part, consequence):
        """A row naming no image of ``part`` (when there are images), an image without a row."""
        keys, ids = {key.removesuffix(self.key_suffix): key for key in table[self.key_column]}, self._ids[part]
        for image_id in sorted(set(keys) - set(ids)) if ids else ():
            yield Problem(f"{name} {self.key_column} {keys[image_id]}",
                          f"unknown id: no image {self.image_path(image_id, part)}")
        for image_id in sorted(set(ids) - set(keys)):
            yield Problem(self.image_path(image_id, part), f"not in {name}; {consequence}")

    def metadata_problems(self):
        """Warnings, as only the EDA reads the metadata: a key the images have but the table lacks, text where a
        number belongs (an empty cell is a missing value, which the EDA skips)."""
        name, key = self.metadata_table, self.metadata_columns[0]
        table = yield from self.checked_table(name, self.metadata_columns)
        if table is None:
            return
        first_image = dict(reversed([(self.metadata_key(image_id), self.image_path(image_id, part))
                                     for part in ("test", "train") for image_id in self._ids[part]]))  # first wins
        for missing in sorted(set(first_image) - set(table[key]) - {""}):
            yield Problem(first_image[missing], f"not in {name}: its metadata is unknown", "warning")
        for column in self.metadata_numbers:
            bad = pd.to_numeric(table[column], errors="coerce").isna() & (table[column].str.strip() != "")
            for row_key, text in zip(table.loc[bad, key], table.loc[bad, column]):
                yield Problem(f"{name} {key} {row_key}", f"{column} is {text!r}, not a number", "warning")

    def mask_disagreement(self, image_id, mask):
        """The pixels where a mask file disagrees with the mask table's RLE of the id."""
        text = None if self._rles is None else self._rles.get(image_id)
        try:
            encoded = rle.decode(text, mask.shape, self.rle_order) if text is not None else mask
        except SeglibError:
            encoded = mask  # the row's own rule names a broken RLE
        differ = int(np.count_nonzero(encoded != mask))
        return [Problem(self.mask_path(image_id), f"differs from {self.mask_table}'s RLE of the same id in {differ} "
                        f"pixel(s) ({int(encoded.sum())} there, {int(mask.sum())} here)")] if differ else []
