"""Any folder of images and masks: the adapter for data that is not a Kaggle competition (yet).

Layout::

    images/<name>.<png|jpg|tif...>    training images, any size (all of one size), grayscale or RGB
    masks/<name>.<any image format>   same stem; every value > 0 is foreground (0/1, 0/255, 16-bit, palette)
    test/<name>.<ext>                 optional test images

Metric: mean Dice per image; submission ``id,rle_mask``, row-major. Used by ``benchmarks/quality.py`` on real
data such as the ISBI 2012 membrane set.
"""

import functools

import pandas as pd

from seglib import rle
from seglib.competitions.base import (DATA_ERRORS, Competition, Problem, pairing_problems, problem_from, raise_first,
                                      register)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")


@register("folder")
class ImageFolder(Competition):
    """Adapter for an ``images/`` + ``masks/`` folder; ``channels``: 1 for grayscale data, 3 for photographs."""

    title = "Image folder"
    kaggle_slug = "image-folder"
    metric = "dice"

    def __init__(self, data_dir, channels=1, **options):
        super().__init__(data_dir, **options)
        self.image_channels = int(channels)
        self._listings = {}

    def _listing(self, folder):
        """{stem: path} of the images in ``folder``, and the Problems of listing them: an unreadable zip, a
        second file of one stem (the first by ``IMAGE_SUFFIXES`` order is read)."""
        if folder not in self._listings:
            found, problems = {}, []
            try:
                for suffix in IMAGE_SUFFIXES:
                    for stem in self.files.list_folder(folder, suffix):
                        path = f"{folder}/{stem}{suffix}"
                        other = found.setdefault(stem, path)
                        if other != path:
                            problems.append(Problem(path, f"same name as {other}; the adapter cannot tell which "
                                                          f"one is meant"))
            except DATA_ERRORS as error:
                problems.append(problem_from(f"{folder}.zip", error))
            self._listings[folder] = found, problems
        return self._listings[folder]

    def _path(self, folder, stem):  # ``<folder>/<stem>.*`` when there is none, for messages
        return self._listing(folder)[0].get(stem, f"{folder}/{stem}.*")

    image_size = functools.cached_property(Competition.first_image_size)  # every image must match the first

    def listed_ids(self, part):
        return sorted(self._listing("images" if part == "train" else "test")[0])

    def train_ids(self):
        raise_first(self.problems())
        return self.listed_ids("train")

    def test_ids(self):
        raise_first(self._listing("test")[1])
        if not self.listed_ids("test"):
            raise FileNotFoundError(f"no test images in {self.data_dir / 'test'}")
        return self.listed_ids("test")

    def image_path(self, image_id, part="train"):
        return self._path("images" if part == "train" else "test", image_id)

    def mask_path(self, image_id):
        return self._path("masks", image_id)

    def read_mask(self, image_id):
        return self.read_mask_file(self.mask_path(image_id))

    def metadata(self):
        return pd.DataFrame(index=pd.Index([], name="id"))

    def submission_rows(self, image_id, mask):
        return [(image_id, rle.encode(mask, order=self.rle_order))]

    def expected_submission(self):
        return pd.DataFrame({"id": self.test_ids()})

    def problems(self):
        """Unreadable zips, two files of one name, no training image, an image or a mask without its partner."""
        for folder in ("images", "masks", "test"):
            yield from self._listing(folder)[1]
        images, masks = self._listing("images")[0], self._listing("masks")[0]
        if not images:
            yield self.empty_folder_problem("images", "training images")
        yield from pairing_problems(sorted(images), sorted(masks), self.image_path, self.mask_path, "mask")
