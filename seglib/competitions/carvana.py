"""Carvana Image Masking Challenge: 1918x1280 studio photographs of cars, 16 angles each, binary car masks.

Kaggle layout (extracted, or ``train.zip`` / ``train_masks.zip`` / ``test.zip`` and ``*.csv.zip`` read in
place)::

    train/<car>_<nn>.jpg               RGB, car = 12 hex digits, nn = 01..16 (the turntable angle)
    train_masks/<car>_<nn>_mask.gif    palette GIF, 0 = background, 1 = car
    train_masks.csv                    img, rle_mask (row-major RLE; img = <car>_<nn>.jpg)
    metadata.csv                       id, year, make, model, trim1, trim2 (per car, train and test)
    sample_submission.csv              img, rle_mask
    test/<car>_<nn>.jpg

The 16 photographs of a car share one studio backdrop, so the per-car median image shows the backdrop
wherever the car leaves it uncovered in most angles. ``background_difference`` compares a photograph with
that median; it drives a training-free ``baseline_mask``, an auto-crop (``foreground_box``) and, with
``background_channels=True``, a 6-channel model input (RGB plus the difference).
"""

import functools

import numpy as np
import pandas as pd
from scipy import ndimage

from seglib import rle
from seglib.competitions.base import Competition, decode_image, register

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
        raise ValueError(f"{image_id!r} is not a Carvana image id (<car>_<nn>)")
    return car, int(angle)


def foreground_box(difference, threshold=BASELINE_THRESHOLD, margin=32):
    """Bounding box of ``difference > threshold`` grown by ``margin`` pixels: the auto-crop around the car.

    Args:
        difference: (height, width) difference from the backdrop (``Carvana.background_difference``).
        threshold: smallest difference that counts as foreground.
        margin: pixels added on every side (kept inside the image), since the car's soft outline can differ
            from the backdrop by less than ``threshold``.

    Returns:
        (top, bottom, left, right), bottom and right exclusive; the whole image if nothing exceeds threshold.
    """
    height, width = difference.shape
    foreground = difference > threshold
    rows, columns = np.flatnonzero(foreground.any(axis=1)), np.flatnonzero(foreground.any(axis=0))
    if rows.size == 0:
        return 0, height, 0, width
    return (max(int(rows[0]) - margin, 0), min(int(rows[-1]) + 1 + margin, height),
            max(int(columns[0]) - margin, 0), min(int(columns[-1]) + 1 + margin, width))


def crop(image, box):
    """The part of ``image`` inside ``box`` = (top, bottom, left, right)."""
    top, bottom, left, right = box
    return image[top:bottom, left:right]


def fill_columns(mask):
    """Fill every column of ``mask`` from its first to its last set pixel."""
    height = mask.shape[0]
    has_any = mask.any(axis=0)
    first = np.where(has_any, mask.argmax(axis=0), height)
    last = np.where(has_any, height - 1 - mask[::-1].argmax(axis=0), -1)
    rows = np.arange(height)[:, np.newaxis]
    return (rows >= first) & (rows <= last)


def difference_mask(difference, threshold=BASELINE_THRESHOLD):
    """A car mask from a backdrop difference alone: threshold, open, fill the columns, close, keep the
    largest blob.

    The difference is small in the car's middle, where the median shows car in most angles, so only the
    car's outline stands out. Seen at camera height every column crosses a car in one run (roof to tyres),
    so filling each column between its first and last foreground pixel recovers the middle even where the
    outline is broken (a silver roof against a light wall), which filling enclosed holes could not. What it
    cannot fix: the floor shadow counts as car, and in front and back views the median is car beside the
    car too (the longer views cover those pixels), so the mask comes out too wide.
    """
    mask = ndimage.binary_opening(difference > threshold, iterations=2)  # JPEG speckle
    mask = ndimage.binary_closing(fill_columns(mask), iterations=BASELINE_CLOSING)
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == np.argmax(sizes)


@register("carvana")
class Carvana(Competition):
    """Adapter for the Carvana Image Masking Challenge.

    Args:
        data_dir: the competition folder, extracted or as Kaggle's zips.
        background_channels: feed the model 6 channels, RGB plus |RGB - the car's median backdrop|.
    """

    title = "Carvana Image Masking Challenge"
    kaggle_slug = "carvana-image-masking-challenge"
    image_size = (1280, 1918)
    image_channels = 3
    classes = ("car",)
    metric = "dice"
    rle_order = "C"
    submission_columns = ("img", "rle_mask")
    default_augmentations = ("rotate_zoom", "hflip", "brightness", "saturation", "hue")

    def __init__(self, data_dir, background_channels=False, **options):
        super().__init__(data_dir, **options)
        self.background_channels = bool(background_channels)
        self.image_channels = 6 if self.background_channels else 3
        self._ids = {}
        self._mask_table = None
        self._has_mask_gifs = None
        # Per instance, so that the cache dies with the adapter.
        self._background = functools.lru_cache(maxsize=BACKGROUND_CACHE_CARS)(self._compute_background)

    # --- ids -------------------------------------------------------------------------------------------
    def mask_table(self):
        """train_masks.csv indexed by image id (the img column without ".jpg")."""
        if self._mask_table is None:
            table = self.files.read_csv("train_masks.csv", required_columns=("img", "rle_mask"), dtype=str,
                                        keep_default_na=False)
            duplicated = table["img"][table["img"].duplicated()]
            if len(duplicated):
                raise ValueError(f"{self.data_dir / 'train_masks.csv'}: duplicate img(s) {list(duplicated[:5])}")
            table.index = pd.Index(table["img"].str.removesuffix(".jpg"), name="id")
            self._mask_table = table[["rle_mask"]]
        return self._mask_table

    def _part_ids(self, part):
        """Sorted ids of the photographs of ``part`` ("train" or "test"), listed once."""
        if part not in ("train", "test"):
            raise ValueError(f"part must be 'train' or 'test', got {part!r}")
        if part not in self._ids:
            ids = self.files.list_folder(part, ".jpg")
            if not ids:
                ids = self._ids_from_csv(part)
            self._ids[part] = ids
        return self._ids[part]

    def _ids_from_csv(self, part):
        """Ids of ``part`` from train_masks.csv or sample_submission.csv, when the images are absent."""
        try:
            if part == "train":
                return sorted(self.mask_table().index)
            return sorted(self.expected_submission()["img"].str.removesuffix(".jpg"))
        except FileNotFoundError:
            csv_name = "train_masks.csv" if part == "train" else "sample_submission.csv"
            raise FileNotFoundError(f"no {part} images in {self.data_dir / part} or {part}.zip, "
                                    f"and no {csv_name}") from None

    def train_ids(self):
        return list(self._part_ids("train"))

    def test_ids(self):
        return list(self._part_ids("test"))

    def image_path(self, image_id, part):
        return f"{part}/{image_id}.jpg"

    def mask_path(self, image_id):
        """Path of a training mask GIF, as if extracted."""
        return f"train_masks/{image_id}_mask.gif"

    # --- images and masks ------------------------------------------------------------------------------
    def read_rgb(self, image_id, part="train"):
        """A photograph as uint8 (1280, 1918, 3), checked."""
        relative_path = self.image_path(image_id, part)
        image = decode_image(self.files.read_bytes(relative_path), name=relative_path)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{relative_path}: expected an RGB image, got an array of shape {image.shape}")
        if image.shape[:2] != self.image_size:
            raise ValueError(f"{relative_path}: image is {image.shape[1]}x{image.shape[0]}, "
                             f"expected {self.image_size[1]}x{self.image_size[0]}")
        return image

    def read_image(self, image_id, part="train"):
        """RGB uint8 (1280, 1918, 3); with ``background_channels`` also |RGB - median backdrop| (6 channels)."""
        image = self.read_rgb(image_id, part)
        if not self.background_channels:
            return image
        background = self.background(self.car_id(image_id), part)
        difference = np.abs(image - background)
        return np.concatenate([image, np.round(difference).astype(np.uint8)], axis=-1)

    def read_mask(self, image_id):
        if self._has_mask_gifs is None:
            self._has_mask_gifs = self.files.has_folder("train_masks")
        if self._has_mask_gifs:
            # Kaggle's GIFs hold palette indices {0, 1}; anything above 0 is car in a re-saved copy too.
            return self.read_mask_file(self.mask_path(image_id))
        table = self.mask_table()
        if image_id not in table.index:
            raise KeyError(f"id {image_id!r} is not in {self.data_dir / 'train_masks.csv'}")
        return rle.decode(table.at[image_id, "rle_mask"], self.image_size, order=self.rle_order,
                          name=f"train_masks.csv img {image_id}.jpg")

    # --- tables ----------------------------------------------------------------------------------------
    def car_table(self):
        """metadata.csv indexed by car id; no rows when it is absent."""
        try:
            table = self.files.read_csv("metadata.csv", required_columns=("id", *METADATA_COLUMNS),
                                        dtype={"id": str})
        except FileNotFoundError:
            return pd.DataFrame(columns=list(METADATA_COLUMNS), index=pd.Index([], name="id"))
        duplicated = table["id"][table["id"].duplicated()]
        if len(duplicated):
            raise ValueError(f"{self.data_dir / 'metadata.csv'}: duplicate car id(s) {list(duplicated[:5])}")
        return table.set_index("id")[list(METADATA_COLUMNS)]

    def metadata(self):
        """Per train and test image: its car, angle (1..16) and the car's metadata.csv columns."""
        image_ids = self.train_ids()
        try:
            image_ids += self.test_ids()
        except FileNotFoundError:
            pass  # a train-only folder still has metadata
        cars_and_angles = [split_image_id(image_id) for image_id in image_ids]
        table = pd.DataFrame({"car": [car for car, _ in cars_and_angles],
                              "angle": np.array([angle for _, angle in cars_and_angles], dtype=int)},
                             index=pd.Index(image_ids, name="id"))
        return table.join(self.car_table(), on="car")

    def submission_rows(self, image_id, mask):
        if np.shape(mask) != self.image_size:
            raise ValueError(f"{image_id}: mask has shape {np.shape(mask)}, expected {self.image_size}")
        return [(f"{image_id}.jpg", rle.encode(mask, order=self.rle_order))]

    def submission_keys(self, image_id):
        return [(f"{image_id}.jpg",)]

    def expected_submission(self):
        try:
            return self.files.read_csv("sample_submission.csv", required_columns=self.submission_columns,
                                       dtype=str, keep_default_na=False)[["img"]]
        except FileNotFoundError:
            ids = self.files.list_folder("test", ".jpg")
            if not ids:
                raise FileNotFoundError(f"neither sample_submission.csv(.zip) nor test images in "
                                        f"{self.data_dir}") from None
            return pd.DataFrame({"img": [f"{image_id}.jpg" for image_id in ids]}, dtype=str)

    def groups(self, image_ids):
        """The car of each id: its 16 angles must stay on one side of a split."""
        return np.array([split_image_id(image_id)[0] for image_id in image_ids])

    # --- the studio backdrop ---------------------------------------------------------------------------
    def car_id(self, image_id):
        """The car of an image id ("00087a6bd4dc_01" -> "00087a6bd4dc")."""
        return split_image_id(image_id)[0]

    def car_images(self, car_id, part="train"):
        """Ids of the photographs of one car, by angle.

        Raises:
            ValueError: the car has fewer than 3 photographs, too few for a median backdrop.
        """
        image_ids = [image_id for image_id in self._part_ids(part) if split_image_id(image_id)[0] == car_id]
        if len(image_ids) < MIN_ANGLES_FOR_BACKGROUND:
            raise ValueError(f"car {car_id!r} has {len(image_ids)} {part} image(s); a background needs at "
                             f"least {MIN_ANGLES_FOR_BACKGROUND}")
        return image_ids

    def background(self, car_id, part="train", statistic="median"):
        """The car's backdrop: the per-pixel median (or "mean") of its photographs, float32 (1280, 1918, 3).

        Where the car covers a pixel in most angles (its middle), the median shows car, not backdrop. The
        array is cached and read-only.
        """
        if statistic not in BACKGROUND_STATISTICS:
            raise ValueError(f"statistic must be one of {sorted(BACKGROUND_STATISTICS)}, got {statistic!r}")
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
