"""The adapter interface, the registry that finds an adapter by name, and the data rules that the readers raise
on (the first problem) and that ``seglib.check`` collects (every problem)."""

import dataclasses
import io
from pathlib import Path

import numpy as np
from PIL import Image

from seglib.competitions.files import CompetitionFiles
from seglib.errors import SeglibError

_REGISTRY = {}
# What bad data raises in the readers; anything else is a bug in seglib and should surface as a traceback.
DATA_ERRORS = (SeglibError, FileNotFoundError)
# The foreground value of a binary mask: Carvana's palette index 1, 8-bit exports' 255, TGS's 16-bit 65535.
MASK_FOREGROUND_VALUES = (1, 255, 65535)


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
    """The adapter for competition ``name`` reading ``data_dir`` (extracted or Kaggle's zips); ``options`` are the
    adapter's own, e.g. Carvana's ``background_channels=True``."""
    if name not in _REGISTRY:
        raise SeglibError(f"unknown competition {name!r}; known: {known_competitions()}")
    return _REGISTRY[name](data_dir, **options)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem of a dataset: the file, folder or CSV row (``train.csv id 0a1b2c3d4e``) named as if extracted,
    what is wrong, and "error" (fix it before training) or "warning" (the adapter copes, or only the EDA cares)."""

    path: str
    message: str
    severity: str = "error"

    def __str__(self):
        return f"{self.path}: {'warning: ' if self.severity == 'warning' else ''}{self.message}"


def problem_from(path, error):
    """A Problem of ``path`` from a reader's error, without the path its message starts with."""
    return Problem(str(path), str(error).removeprefix(f"{path}: "))


def raise_first(problems):
    """Raise the first error of ``problems``: how a reader applies a rule that the check reports in full."""
    for problem in problems:
        if problem.severity == "error":
            raise SeglibError(str(problem))


class Competition:
    """Base adapter. A subclass sets the class attributes (``classes``: one name for a binary (H, W) mask, several
    for a multi-label (H, W, classes) one) and provides train_ids, test_ids, image_path, mask_path, read_mask,
    metadata, submission_rows, expected_submission and, for ``seglib.check``, listed_ids and problems."""

    name = title = kaggle_slug = image_size = metric = None
    image_channels = 3
    classes = ("mask",)
    rle_order = "C"
    submission_columns = ("id", "rle_mask")
    default_augmentations = ("hflip",)

    def __init__(self, data_dir, **options):
        if options:
            raise SeglibError(f"{type(self).__name__} takes no options, got {sorted(options)}")
        self.data_dir = Path(data_dir)
        # Kaggle's CLI downloads the competition as one <slug>.zip: read in place like the extracted folder.
        self.files = CompetitionFiles(self.data_dir, bundle=f"{self.kaggle_slug}.zip" if self.kaggle_slug else None)

    @property
    def num_classes(self):
        """Model output channels: 1 for a binary mask, else one per class."""
        return len(self.classes)

    def __repr__(self):
        return f"{type(self).__name__}({str(self.data_dir)!r})"

    def submission_keys(self, image_id):
        """The key values (tuples of strings) of each submission row of ``image_id``."""
        mask_shape = tuple(self.image_size) + ((self.num_classes,) if self.num_classes > 1 else ())
        return [tuple(map(str, row[:-1])) for row in self.submission_rows(image_id, np.zeros(mask_shape, bool))]

    def stratify_labels(self, image_ids):
        """A class label per id that a validation split should keep balanced, or None."""
        return None

    def groups(self, image_ids):
        """A group name per id (images of one group must stay on one side of a split), or None."""
        return None

    # --- reading --------------------------------------------------------------------------------------
    def read_image(self, image_id, part="train"):
        """An image as uint8 (height, width, image_channels), checked against ``image_size``."""
        path = self.image_path(image_id, part)
        image = decode_image(self.files.read_bytes(path), name=path)
        if image.dtype != np.uint8:
            # A 16-bit (or float) image among 8-bit ones would be normalised on the wrong scale.
            raise SeglibError(f"{path}: image is {image.dtype} ({image.dtype.itemsize * 8}-bit); the "
                              f"competition's images are 8-bit")
        self.check_size(path, "image", image.shape)
        image = image if image.ndim == 3 else image[..., np.newaxis]
        channels, wanted = image.shape[-1], self.image_channels
        if channels == wanted or (wanted == 3 and channels == 4):  # RGBA: drop the alpha
            return image[..., :wanted]
        if wanted == 1:
            return image[..., :1]  # grayscale stored as RGB (TGS): the channels are copies
        if channels == 1:
            return np.repeat(image, wanted, axis=-1)
        raise SeglibError(f"{path}: image has {channels} channels, the model expects {wanted}")

    def check_size(self, path, what, shape):
        """Raise unless ``shape`` starts with ``image_size`` (when the adapter knows it)."""
        size = self.image_size
        if size is not None and tuple(shape[:2]) != tuple(size):
            raise SeglibError(f"{path}: {what} is {shape[1]}x{shape[0]}, expected {size[1]}x{size[0]}")

    def read_mask_file(self, path):
        """A mask image as boolean (height, width), checked against ``image_size`` and ``mask_values_problem``."""
        mask = decode_image(self.files.read_bytes(path), name=path)
        self.check_size(path, "mask", mask.shape)
        mask = mask.max(axis=-1) if mask.ndim == 3 else mask  # an RGB mask counts by its brightest channel
        problem = mask_values_problem(distinct_values(mask))
        if problem:  # training must not binarise a flagged mask silently
            raise SeglibError(f"{path}: {problem}")
        return mask > 0

    def first_image_size(self):
        """(height, width) of the first readable training image, else test image, for data of no fixed size."""
        for part in ("train", "test"):
            for image_id in self.listed_ids(part):
                try:
                    with Image.open(io.BytesIO(self.files.read_bytes(self.image_path(image_id, part)))) as image:
                        return image.size[::-1]  # decodes no pixel
                except (OSError, SyntaxError, *DATA_ERRORS):
                    continue  # reading the image names its problem
        raise FileNotFoundError(f"no readable training or test image in {self.data_dir}")

    def read_masks(self, image_ids):
        """Masks of several training images stacked to (n, height, width)."""
        return np.stack([self.read_mask(image_id) for image_id in image_ids])

    def read_images(self, image_ids, part="train"):
        """Images stacked to (n, height, width, channels)."""
        return np.stack([self.read_image(image_id, part) for image_id in image_ids])

    # --- checking: generators of Problems, some returning what they read ------------------------------
    def mask_problems(self, image_id):
        """Problems of a training image's mask, read as training reads it; none for an absent file (the
        pairing rule names it)."""
        path = self.mask_path(image_id)
        try:
            return self.mask_disagreement(image_id, self.read_mask(image_id)) if self.files.exists(path) else []
        except DATA_ERRORS as error:
            return [problem_from(path, error)]

    def mask_disagreement(self, image_id, mask):
        """Problems of a readable mask that another file contradicts."""
        return []

    def listed(self, folder, suffix, what=None, tree=False):
        """Yield a Problem if ``folder``'s zip is unreadable, or if it holds no ``what`` (when given); return the
        stems of its files ending with ``suffix`` (``tree``: at any depth)."""
        try:
            ids = self.files.list_folder(folder, suffix, tree=tree)
        except DATA_ERRORS as error:
            yield problem_from(f"{folder.split('/', 1)[0]}.zip", error)
            ids = []
        if what and not ids:
            yield self.empty_folder_problem(folder, what)
        return ids

    def empty_folder_problem(self, folder, what):
        top = folder.split("/", 1)[0]
        if (self.data_dir / folder).is_dir():
            return Problem(folder, f"no {what} in the folder")
        if (self.data_dir / f"{top}.zip").is_file():
            return Problem(folder, f"no {what} in {top}.zip under {folder}/")
        return Problem(folder, f"no {what}: neither the folder nor {top}.zip exists")

    def checked_table(self, name, columns, why=None, unique=True):
        """Yield the problems of CSV ``name`` (and, if ``unique``, of a key in ``columns[0]`` on several rows);
        return it as strings, or None when unreadable or absent (a Problem if ``why`` says why it is needed)."""
        if not self.files.has_table(name):
            if why:
                yield Problem(name, f"missing (nor zipped as {name}.zip); {why}")
            return None
        try:
            table = self.files.read_csv(name, required_columns=columns, dtype=str, keep_default_na=False)
        except DATA_ERRORS as error:
            yield problem_from(name, error)
            return None
        if unique:
            yield from duplicate_problems(table, name, columns[0])
        return table


def decode_image(data, name):
    """Decode PNG/JPG/GIF bytes with Pillow to a numpy array, naming the file if it is unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            # CMYK JPGs (print exports) hold ink amounts, not red/green/blue: read as RGB, the channels would lie.
            return np.asarray(image.convert("RGB") if image.mode == "CMYK" else image)
    except (OSError, SyntaxError, ValueError) as error:
        raise SeglibError(f"{name}: cannot decode image ({error})") from None


def distinct_values(mask):
    """Sorted distinct values; ``np.unique`` is ten times slower on Carvana's 2.5M-pixel masks (read every epoch)."""
    low, high = mask.min(), mask.max()
    return np.unique([low, high]) if ((mask == low) | (mask == high)).all() else np.unique(mask)


def mask_values_problem(values):
    """What is wrong with a mask's sorted distinct values, or None: training counts every value above 0 as
    foreground, so a third value (anti-aliased edges, a class map) or a missing 0 would change the mask silently."""
    values = [int(value) for value in values]
    shown = ", ".join(map(str, values if len(values) <= 8 else values[:4] + ["..."] + values[-3:]))
    if len(values) > 2:
        return (f"mask is not binary: {len(values)} distinct values ({shown}); expected 0 = background and one "
                f"foreground value")
    if len(values) == 2 and values[0] != 0:
        return f"mask has no background value 0: its values ({shown}) would all count as foreground"
    if values[-1] != 0 and values[-1] not in MASK_FOREGROUND_VALUES:
        return (f"mask values ({shown}): foreground {values[-1]} is none of "
                f"{', '.join(map(str, MASK_FOREGROUND_VALUES))}, the values Kaggle's masks use")
    return None


def pairing_problems(ids, partner_ids, path, partner_path, partner_what):
    """A Problem per image id without a partner file (its ``partner_what``), and per partner without an image;
    ``path`` and ``partner_path`` map an id to the two files."""
    partners, images = set(partner_ids), set(ids)
    yield from (Problem(path(item), f"no {partner_what} {partner_path(item)}") for item in ids if item not in partners)
    yield from (Problem(partner_path(item), f"no image {path(item)}") for item in partner_ids if item not in images)


def duplicate_problems(table, name, column):
    """A Problem per value of ``column`` on several rows, naming the lines (the header is line 1)."""
    repeated = table[table[column].duplicated(keep=False)]
    for value, rows in repeated.groupby(column, sort=False):
        lines = ", ".join(str(index + 2) for index in rows.index)
        yield Problem(f"{name} {column} {value}", f"duplicate {column}: on {len(rows)} rows (lines {lines})")
