"""The adapter interface every competition implements, and the registry that finds one by name."""

import io
from pathlib import Path

import numpy as np
from PIL import Image

from seglib.competitions.files import CompetitionFiles

_REGISTRY = {}


def register(name):
    """Class decorator: make an adapter available as ``get_competition(name, ...)``."""

    def decorate(adapter_class):
        adapter_class.name = name
        _REGISTRY[name] = adapter_class
        return adapter_class

    return decorate


def known_competitions():
    """Names of the registered competitions."""
    return sorted(_REGISTRY)


def get_competition(name, data_dir, **options):
    """The adapter for competition ``name`` reading from ``data_dir`` (extracted folder or Kaggle zips).

    Args:
        options: adapter-specific switches, e.g. Carvana's ``background_channels=True`` (6-channel input).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown competition {name!r}; known: {known_competitions()}")
    return _REGISTRY[name](data_dir, **options)


class Competition:
    """Base adapter. Subclasses set the class attributes and implement the ``NotImplementedError`` methods.

    Attributes:
        name: registry name (set by ``@register``).
        title: human name for notebooks.
        kaggle_slug: folder name under ``/kaggle/input``.
        image_size: (height, width) of every image, as Kaggle ships it (a subclass may make it a property
            that reads the size from the files).
        image_channels: channels the model sees (TGS: 1, its 3 PNG channels are identical).
        classes: class names, one model output channel each; one name means a binary (H, W) mask, several
            mean a multi-label (H, W, classes) mask (classes may overlap).
        metric: name of a metric in ``seglib.metrics``.
        rle_order: "F" column-major or "C" row-major.
        submission_columns: header of the submission CSV.
        default_augmentations: augmentation names (``seglib.data``) notebook 03 uses unless told otherwise.
    """

    name = None
    title = None
    kaggle_slug = None
    image_size = None
    image_channels = 3
    classes = ("mask",)
    metric = None
    rle_order = "C"
    submission_columns = ("id", "rle_mask")
    default_augmentations = ("hflip",)

    def __init__(self, data_dir, **options):
        if options:
            raise ValueError(f"{type(self).__name__} takes no options, got {sorted(options)}")
        self.data_dir = Path(data_dir)
        # Kaggle's CLI downloads the competition as one <slug>.zip: read in place like the extracted folder.
        self.files = CompetitionFiles(self.data_dir, bundle=f"{self.kaggle_slug}.zip" if self.kaggle_slug else None)

    @property
    def num_classes(self):
        """Model output channels: 1 for a binary mask, else one per class."""
        return len(self.classes)

    def __repr__(self):
        return f"{type(self).__name__}({str(self.data_dir)!r})"

    # --- what a subclass provides -------------------------------------------------------------------
    def train_ids(self):
        """Ids of the training images, in a fixed order."""
        raise NotImplementedError

    def test_ids(self):
        """Ids of the test images, in submission order."""
        raise NotImplementedError

    def image_path(self, image_id, part):
        """Path of an image, as if extracted (``part`` is "train" or "test")."""
        raise NotImplementedError

    def read_mask(self, image_id):
        """Boolean mask of a training image: (height, width), or (height, width, num_classes) when
        ``num_classes > 1``."""
        raise NotImplementedError

    def metadata(self):
        """A DataFrame indexed by id with per-image metadata (may be empty)."""
        raise NotImplementedError

    def submission_rows(self, image_id, mask):
        """The submission rows (tuples matching ``submission_columns``) of one predicted mask, shaped like
        ``read_mask``'s."""
        raise NotImplementedError

    def expected_submission(self):
        """The submission's key column(s), one row per expected submission row, in submission order."""
        raise NotImplementedError

    def submission_keys(self, image_id):
        """The key column values of each submission row of ``image_id`` (a list of tuples of strings); by
        default read off ``submission_rows`` of an empty mask (adapters with one row per image override it)."""
        mask_shape = tuple(self.image_size) + ((self.num_classes,) if self.num_classes > 1 else ())
        return [tuple(map(str, row[:-1])) for row in self.submission_rows(image_id, np.zeros(mask_shape, bool))]

    def stratify_labels(self, image_ids):
        """A class label per id that a validation split should keep balanced, or None."""
        return None

    def groups(self, image_ids):
        """A group name per id (images of one group must stay on one side of a split), or None."""
        return None

    # --- shared behaviour ---------------------------------------------------------------------------
    def read_image(self, image_id, part="train"):
        """An image as uint8 (height, width, image_channels), checked against ``image_size``."""
        relative_path = self.image_path(image_id, part)
        image = decode_image(self.files.read_bytes(relative_path), name=relative_path)
        if image.dtype != np.uint8:
            # A 16-bit (or float) image among 8-bit ones would be normalised on the wrong scale.
            raise ValueError(f"{relative_path}: image is {image.dtype} ({image.dtype.itemsize * 8}-bit); the "
                             f"competition's images are 8-bit")
        if image.ndim == 2:
            image = image[..., np.newaxis]
        if self.image_size is not None and image.shape[:2] != tuple(self.image_size):
            raise ValueError(f"{relative_path}: image is {image.shape[1]}x{image.shape[0]}, "
                             f"expected {self.image_size[1]}x{self.image_size[0]}")
        return self.to_model_channels(image, name=relative_path)

    def to_model_channels(self, image, name):
        """Bring a decoded image to ``image_channels`` channels."""
        channels = image.shape[-1]
        if channels == self.image_channels:
            return image
        if self.image_channels == 1:
            # Grayscale stored as RGB (TGS): the channels are copies, keep the first.
            return image[..., :1]
        if channels == 1:
            return np.repeat(image, self.image_channels, axis=-1)
        if channels == 4 and self.image_channels == 3:
            return image[..., :3]
        raise ValueError(f"{name}: image has {channels} channels, the model expects {self.image_channels}")

    def read_mask_file(self, relative_path):
        """A mask image as boolean (height, width): any value > 0 is foreground (TGS's 16-bit {0, 65535},
        Carvana's palette {0, 1}, 0/255 exports), checked against ``image_size``."""
        mask = decode_image(self.files.read_bytes(relative_path), name=relative_path)
        if mask.shape[:2] != tuple(self.image_size):
            raise ValueError(f"{relative_path}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                             f"expected {self.image_size[1]}x{self.image_size[0]}")
        mask = mask.max(axis=-1) if mask.ndim == 3 else mask  # an RGB mask counts by its brightest channel
        # A mask the check flags is an error here too: training must not binarise it silently.
        problem = mask_values_problem(distinct_values(mask))
        if problem:
            raise ValueError(f"{relative_path}: {problem}")
        return mask > 0

    def read_masks(self, image_ids):
        """Masks of several training images stacked to (n, height, width)."""
        return np.stack([self.read_mask(image_id) for image_id in image_ids])

    def read_images(self, image_ids, part="train"):
        """Images stacked to (n, height, width, channels)."""
        return np.stack([self.read_image(image_id, part) for image_id in image_ids])


def decode_image(data, name):
    """Decode PNG/JPG/GIF bytes with Pillow to a numpy array, naming the file if it is unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            # CMYK JPGs (print exports) hold ink amounts, not red/green/blue: read as RGB, the channels would lie.
            return np.asarray(image.convert("RGB") if image.mode == "CMYK" else image)
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{name}: cannot decode image ({error})") from None


# Distinct mask values named in a message before the list is shortened.
VALUES_SHOWN = 8
# The foreground value of a binary mask: Carvana's palette index 1, 8-bit exports' 255, TGS's 16-bit 65535.
MASK_FOREGROUND_VALUES = (1, 255, 65535)


def format_values(values):
    """Mask values for a message: all of them, or the first and last few of a long list."""
    values = [int(value) for value in values]
    if len(values) <= VALUES_SHOWN:
        return ", ".join(map(str, values))
    head, tail = values[: VALUES_SHOWN // 2], values[-(VALUES_SHOWN // 2 - 1):]
    return f"{', '.join(map(str, head))}, ..., {', '.join(map(str, tail))}"


def distinct_values(mask):
    """The sorted distinct values of a mask.

    A binary mask needs only its minimum and maximum and one comparison: ten times faster than ``np.unique`` on
    Carvana's 2.5M-pixel masks. Only a mask with more values is sorted.
    """
    low, high = mask.min(), mask.max()
    if low == high:
        return np.array([low])
    if not ((mask != low) & (mask != high)).any():
        return np.array([low, high])
    return np.unique(mask)


def mask_values_problem(values):
    """What is wrong with a mask's sorted distinct values, or None.

    A binary mask holds 0 (background) and at most one other value: TGS's 16-bit 65535 (8-bit zeros when
    empty), Carvana's palette index 1, 255 in exports. Training counts every value above 0 as foreground, so a
    third value (anti-aliased edges, a class map) or a missing 0 would silently change the mask.
    """
    if len(values) > 2:
        return (f"mask is not binary: {len(values)} distinct values ({format_values(values)}); "
                f"expected 0 = background and one foreground value")
    if len(values) == 2 and values[0] != 0:
        return (f"mask has no background value 0: its values ({format_values(values)}) would all count as "
                f"foreground")
    if values[-1] != 0 and int(values[-1]) not in MASK_FOREGROUND_VALUES:
        return (f"mask values ({format_values(values)}): foreground {int(values[-1])} is none of "
                f"{', '.join(map(str, MASK_FOREGROUND_VALUES))}, the values Kaggle's masks use")
    return None
