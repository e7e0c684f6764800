"""Carvana Image Masking Challenge: 1918x1280 studio photographs of cars, 16 angles each, binary car masks.

Kaggle layout (extracted, or ``train.zip``, ``train_masks.zip``, ``test.zip``, ``*.csv.zip`` read in place)::

    train/<car>_<nn>.jpg               RGB, car = 12 hex digits, nn = 01..16 (the turntable angle)
    train_masks/<car>_<nn>_mask.gif    palette GIF, 0 = background, 1 = car
    train_masks.csv                    img, rle_mask (row-major RLE; img = <car>_<nn>.jpg)
    metadata.csv                       id, year, make, model, trim1, trim2 (per car, train and test)
    sample_submission.csv              img, rle_mask
    test/<car>_<nn>.jpg

A car's 16 photographs share one studio backdrop: their per-pixel median shows it wherever most angles leave it
uncovered. ``background_difference`` (photograph minus median) drives a training-free ``baseline_mask``, an
auto-crop (``foreground_box``) and, with ``background_channels=True``, a 6-channel model input.
"""

import functools

import numpy as np
import pandas as pd

from seglib.competitions.base import decode_image, problem_from, register
from seglib.competitions.rle_tables import RLECompetition
from seglib.errors import SeglibError

METADATA_COLUMNS = ("year", "make", "model", "trim1", "trim2")
# A median needs several views of the backdrop to outvote the car.
MIN_ANGLES_FOR_BACKGROUND = 3
BACKGROUND_STATISTICS = {"median": np.median, "mean": np.mean}
# Backgrounds (30 MB each) kept for the cars read last: sorted ids visit a car's 16 angles in a row.
BACKGROUND_CACHE_CARS = 4
# Grey levels of |photograph - median backdrop| that count as "not backdrop": well above JPEG noise (a few
# levels), below the contrast of a silver car against a light grey studio. On the sample the baseline's mean
# Dice barely moves between 12 and 32.
BASELINE_THRESHOLD = 24
# Closing bridges gaps up to twice this many pixels wide (a window pillar that matches the median).
BASELINE_CLOSING = 16


def split_image_id(image_id):
    """(car id, angle) of an image id like "00087a6bd4dc_01"."""
    car, _, angle = str(image_id).rpartition("_")
    if not car or not angle.isdigit():
        raise SeglibError(f"{image_id!r} is not a Carvana image id (<car>_<nn>)")
    return car, int(angle)


def foreground_box(difference, threshold=BASELINE_THRESHOLD, margin=32):
    """(top, bottom, left, right) of ``difference > threshold`` (``background_difference``), bottom and right
    exclusive, grown by ``margin`` pixels inside the image (the car's soft outline can stay under the threshold):
    the auto-crop around the car; the whole image if nothing exceeds ``threshold``."""
    height, width = difference.shape
    foreground = difference > threshold
    rows, columns = np.flatnonzero(foreground.any(axis=1)), np.flatnonzero(foreground.any(axis=0))
    if rows.size == 0:
        return 0, height, 0, width
    return (max(int(rows[0]) - margin, 0), min(int(rows[-1]) + 1 + margin, height),
            max(int(columns[0]) - margin, 0), min(int(columns[-1]) + 1 + margin, width))


def fill_columns(mask):
    """Fill every column of ``mask`` from its first to its last set pixel: below the first and above the last."""
    return np.logical_or.accumulate(mask, axis=0) & np.logical_or.accumulate(mask[::-1], axis=0)[::-1]


def difference_mask(difference, threshold=BASELINE_THRESHOLD):
    """A car mask from a backdrop difference alone: threshold, open, fill the columns, close, keep the largest blob.

    Only the car's outline stands out (the median shows car in its middle). At camera height every column
    crosses a car in one run, so filling columns recovers the middle even where the outline breaks, which
    filling holes could not. The floor shadow counts as car, and front and back views come out too wide.
    """
    from scipy import ndimage  # here, not at the top: scipy adds ~16 MiB to every process that reads competitions

    mask = ndimage.binary_opening(difference > threshold, iterations=2)  # JPEG speckle
    mask = ndimage.binary_closing(fill_columns(mask), iterations=BASELINE_CLOSING)
    labels, count = ndimage.label(mask)
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1 if count else mask


@register("carvana")
class Carvana(RLECompetition):
    """Adapter for the Carvana Image Masking Challenge; ``background_channels``: feed the model 6 channels, RGB
    plus |RGB - the car's median backdrop|."""

    title = "Carvana Image Masking Challenge"
    kaggle_slug = "carvana-image-masking-challenge"
    image_size = (1280, 1918)
    image_channels = 3
    classes = ("car",)
    metric = "dice"
    submission_columns = ("img", "rle_mask")
    default_augmentations = ("rotate_zoom", "hflip", "brightness", "saturation", "hue")
    image_folders = {"train": "train", "test": "test"}
    image_suffix = ".jpg"
    mask_folder, mask_suffix = "train_masks", "_mask.gif"
    mask_table, key_suffix = "train_masks.csv", ".jpg"
    metadata_table, metadata_columns, metadata_numbers = "metadata.csv", ("id", *METADATA_COLUMNS), ("year",)

    def __init__(self, data_dir, background_channels=False, **options):
        super().__init__(data_dir, **options)
        self.background_channels = bool(background_channels)
        self.image_channels = 6 if self.background_channels else 3
        # Per instance, so that the cache dies with the adapter.
        self._background = functools.lru_cache(maxsize=BACKGROUND_CACHE_CARS)(self._compute_background)

    def read_rgb(self, image_id, part="train"):
        path = self.image_path(image_id, part)
        image = decode_image(self.files.read_bytes(path), name=path)
        if image.ndim != 3 or image.shape[2] != 3:
            raise SeglibError(f"{path}: expected an RGB image, got an array of shape {image.shape}")
        self.check_size(path, "image", image.shape)
        return image

    def read_image(self, image_id, part="train"):
        """RGB uint8 (1280, 1918, 3); with ``background_channels`` also |RGB - median backdrop| (6 channels)."""
        image = self.read_rgb(image_id, part)
        if not self.background_channels:
            return image
        difference = np.abs(image - self.background(self.car_id(image_id), part))
        return np.concatenate([image, np.round(difference).astype(np.uint8)], axis=-1)

    def metadata(self):
        """Per train and test image: its car, angle (1..16) and the car's metadata.csv columns."""
        image_ids = self.train_ids()
        try:
            image_ids += self.test_ids()
        except FileNotFoundError:
            pass  # a train-only folder still has metadata
        cars, angles = zip(*map(split_image_id, image_ids)) if image_ids else ((), ())
        table = pd.DataFrame({"car": list(cars), "angle": np.array(angles, dtype=int)},
                             index=pd.Index(image_ids, name="id"))
        return table.join(super().metadata(), on="car")

    def metadata_key(self, image_id):
        return image_id.rpartition("_")[0]  # "" for a name that is no Carvana id: ``problems`` names it

    def groups(self, image_ids):
        """The car of each id: its 16 angles must stay on one side of a split."""
        return np.array([self.car_id(image_id) for image_id in image_ids])

    def problems(self):
        yield from super().problems()
        for part in ("train", "test"):
            for image_id in self.listed_ids(part):
                try:
                    split_image_id(image_id)  # the split keeps a car's 16 angles together by this id
                except SeglibError as error:
                    yield problem_from(self.image_path(image_id, part), error)

    # --- the studio backdrop ---------------------------------------------------------------------------
    def car_id(self, image_id):
        return split_image_id(image_id)[0]

    def car_images(self, car_id, part="train"):
        """Ids of the photographs of one car, by angle; at least 3, enough for a median backdrop."""
        ids = self.train_ids() if part == "train" else self.test_ids()
        image_ids = [image_id for image_id in ids if self.car_id(image_id) == car_id]
        if len(image_ids) < MIN_ANGLES_FOR_BACKGROUND:
            raise SeglibError(f"car {car_id!r} has {len(image_ids)} {part} image(s); a background needs at "
                              f"least {MIN_ANGLES_FOR_BACKGROUND}")
        return image_ids

    def background(self, car_id, part="train", statistic="median"):
        """The car's backdrop, cached and read-only: the per-pixel median (or "mean") of its photographs, float32
        (1280, 1918, 3); where most angles cover a pixel (the car's middle) it shows car, not backdrop."""
        if statistic not in BACKGROUND_STATISTICS:
            raise SeglibError(f"statistic must be one of {sorted(BACKGROUND_STATISTICS)}, got {statistic!r}")
        return self._background(car_id, part, statistic)

    def _compute_background(self, car_id, part, statistic):
        photographs = np.stack([self.read_rgb(image_id, part) for image_id in self.car_images(car_id, part)])
        background = BACKGROUND_STATISTICS[statistic](photographs, axis=0).astype(np.float32)
        background.flags.writeable = False
        return background

    def background_difference(self, image_id, part="train"):
        """float32 (1280, 1918): the largest |photograph - median backdrop| over the colour channels."""
        image = self.read_rgb(image_id, part)
        return np.abs(image - self.background(self.car_id(image_id), part)).max(axis=-1)

    def baseline_mask(self, image_id, part="train", threshold=BASELINE_THRESHOLD):
        """A training-free car mask from the median backdrop alone (see ``difference_mask``)."""
        return difference_mask(self.background_difference(image_id, part), threshold)
