"""Any folder of images and masks: the adapter for data that is not a Kaggle competition (yet).

Layout::

    images/<name>.<png|jpg|tif...>    training images, any size (all of one size), grayscale or RGB
    masks/<name>.<any image format>   same stem; every value > 0 is foreground (0/1, 0/255, 16-bit, palette)
    test/<name>.<ext>                 optional test images

Metric: mean Dice per image; submission ``id,rle_mask``, row-major. Used by ``benchmarks/quality.py`` on real
data such as the ISBI 2012 membrane set.
"""

import io

import pandas as pd
from PIL import Image

from seglib import rle
from seglib.competitions.base import Competition, register

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")


@register("folder")
class ImageFolder(Competition):
    """Adapter for an ``images/`` + ``masks/`` folder.

    Args:
        data_dir: the folder.
        channels: channels the model sees (1 for grayscale data, 3 for photographs).
    """

    title = "Image folder"
    kaggle_slug = "image-folder"
    classes = ("mask",)
    metric = "dice"
    rle_order = "C"
    submission_columns = ("id", "rle_mask")

    def __init__(self, data_dir, channels=1, **options):
        super().__init__(data_dir, **options)
        self.image_channels = int(channels)
        self._paths = {}
        self._image_size = None

    def _files(self, folder):
        """{stem: relative path} of the images in ``folder``; two files of one stem are ambiguous."""
        if folder not in self._paths:
            found = {}
            for suffix in IMAGE_SUFFIXES:
                for stem in self.files.list_folder(folder, suffix):
                    if stem in found:
                        raise ValueError(f"{folder}/{stem}: several files of one name ({found[stem]}, {suffix})")
                    found[stem] = f"{folder}/{stem}{suffix}"
            self._paths[folder] = found
        return self._paths[folder]

    @property
    def image_size(self):
        """(height, width) of the first training image; every image is checked against it."""
        if self._image_size is None:
            # Listed without train_ids' pairing check, so that one orphan file does not hide every image's size
            # from ``python -m seglib check``.
            ids = sorted(self._files("images"))
            if not ids:
                raise FileNotFoundError(f"no images in {self.data_dir / 'images'}")
            with Image.open(io.BytesIO(self.files.read_bytes(self._files("images")[ids[0]]))) as image:
                self._image_size = (image.size[1], image.size[0])
        return self._image_size

    def train_ids(self):
        images, masks = self._files("images"), self._files("masks")
        if not images:
            raise FileNotFoundError(f"no images in {self.data_dir / 'images'}")
        unmatched = sorted(set(images) ^ set(masks))
        if unmatched:
            side = "images" if unmatched[0] in images else "masks"
            raise ValueError(f"{side}/{unmatched[0]}: has no partner in the other folder "
                             f"({len(unmatched)} unmatched file(s))")
        return sorted(images)

    def test_ids(self):
        ids = sorted(self._files("test"))
        if not ids:
            raise FileNotFoundError(f"no test images in {self.data_dir / 'test'}")
        return ids

    def image_path(self, image_id, part):
        return self._files("images" if part == "train" else "test")[image_id]

    def read_mask(self, image_id):
        return self.read_mask_file(self._files("masks")[image_id])

    def metadata(self):
        return pd.DataFrame(index=pd.Index([], name="id"))

    def submission_rows(self, image_id, mask):
        return [(image_id, rle.encode(mask, order=self.rle_order))]

    def expected_submission(self):
        return pd.DataFrame({"id": self.test_ids()})
