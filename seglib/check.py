"""Check a competition folder before training: every unreadable file, missing partner and malformed CSV row.

Real downloads go wrong quietly: an interrupted download or unzip leaves a truncated JPG or PNG, a re-exported
mask gains grey levels at its edges, a hand-edited CSV repeats an id or splits an RLE cell. Training then stops
hours in at the first bad file, or, worse, reads a wrong mask without complaint and ends in a wrong submission.
``check_dataset`` reads every file once, through the competition's adapter (so Kaggle's zips are checked in
place, and a file passes exactly when training can read it), and reports every problem with the file or CSV
row it is in, instead of stopping at the first::

    python -m seglib check tgs /kaggle/input/tgs-salt-identification-challenge

Images are decoded in full, since a truncated file only fails on decode; a thread pool decodes them on every
core (Pillow releases the GIL while decoding) with a few images in flight per thread, so memory stays flat for
Carvana's 100k photographs too.
"""

import collections
import dataclasses
import functools
import io
import itertools
import os
import zipfile
import zlib

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm  # text bars: tqdm.auto warns in Jupyter without ipywidgets

from seglib import artifacts, rle
from seglib.stats import read_ahead
from seglib.competitions import get_competition
from seglib.competitions.base import decode_image, distinct_values, mask_values_problem
from seglib.competitions.carvana import METADATA_COLUMNS as CARVANA_METADATA_COLUMNS
from seglib.competitions.carvana import split_image_id
from seglib.competitions.folder import IMAGE_SUFFIXES
from seglib.competitions.handbone import CLASSES as HANDBONE_CLASSES
from seglib.competitions.handbone import file_name_of, polygon_mask

# What damaged files and tables raise in the adapters, Pillow, pandas and zipfile. Anything else is a bug in
# seglib and should surface as a traceback, not as a problem of the data.
DATA_ERRORS = (ValueError, KeyError, FileNotFoundError, EOFError, zipfile.BadZipFile, zlib.error)
# Decoding is CPU-bound, but reads from a network disk (Kaggle's /kaggle/input) wait too: a few threads more
# than cores keep every core busy, as ThreadPoolExecutor's own default does.
DEFAULT_WORKERS = min(32, (os.cpu_count() or 1) + 4)
# Jobs queued per thread: enough to never starve a thread, few enough that memory does not grow with the data.
IN_FLIGHT_PER_WORKER = 4


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem in a dataset.

    Attributes:
        path: the file or folder relative to DATA_DIR, named as if extracted (``train/images/0a1b2c3d4e.png``
            also inside ``train.zip``), or a CSV row (``train.csv id 0a1b2c3d4e``).
        message: what is wrong.
        severity: "error" (training or the submission would go wrong: fix it first) or "warning" (the adapter
            copes, e.g. converts an odd image mode, or only the EDA is affected; worth knowing).
    """

    path: str
    message: str
    severity: str = "error"

    def __str__(self):
        return f"{self.path}: {'warning: ' if self.severity == 'warning' else ''}{self.message}"


class CheckReport(list):
    """The Problems found (a list, in the order found), how many files were read to find them, and the ids of
    all-constant images (no problem: listed for the EDA, as TGS has a few all-black sections)."""

    def __init__(self, problems=(), files_checked=0, constant_images=()):
        super().__init__(problems)
        self.files_checked = files_checked
        self.constant_images = list(constant_images)

    @property
    def errors(self):
        """The problems that are errors (``Problem.severity``)."""
        return [problem for problem in self if problem.severity == "error"]

    def summary(self):
        """One line: "N problem(s) (E error(s), W warning(s)) in M file(s) checked" or "no problems in M files"."""
        if self:
            errors = len(self.errors)
            return (f"{len(self)} problem(s) ({errors} error(s), {len(self) - errors} warning(s)) in "
                    f"{self.files_checked} file(s) checked")
        return f"no problems in {self.files_checked} files"


@dataclasses.dataclass(frozen=True)
class ImageJob:
    """One image to decode and, for a training image, the mask file or annotation that goes with it."""

    part: str
    image_id: str
    image_path: str
    mask_path: str = None
    annotation_path: str = None
    # Adapters without their own checks: read the mask with ``read_mask``, however the adapter stores it.
    mask_from_adapter: bool = False
    # The same mask as a CSV encodes it (TGS train.csv, Carvana train_masks.csv): the file must agree with it.
    rle_table: str = None
    rle: str = None

    @property
    def num_files(self):
        """Files this job reads."""
        return 1 + (self.mask_path is not None or self.mask_from_adapter) + (self.annotation_path is not None)


# Competition name -> the function that checks its datasets (``@checks``); others go through their adapter only.
COMPETITION_CHECKS = {}


def checks(name):
    """Decorator: the function checks competition ``name``'s datasets."""

    def decorate(function):
        COMPETITION_CHECKS[name] = function
        return function

    return decorate


def check_dataset(competition_name, data_dir, progress=False, workers=None):
    """Read every file of a competition folder (extracted or Kaggle's zips) and return every problem found.

    Args:
        competition_name: a registered competition ("tgs", "carvana", "handbone", "folder").
        data_dir: the competition folder.
        progress: show a tqdm bar while the images are decoded.
        workers: decoding threads (default ``DEFAULT_WORKERS``).

    Returns:
        A ``CheckReport``: the Problems (tables and layout first, then images by id) and ``files_checked``.

    Raises:
        ValueError: unknown competition.
        FileNotFoundError: ``data_dir`` is not a folder.
    """
    competition = get_competition(competition_name, data_dir)
    check = DatasetCheck(competition, progress=progress, workers=workers)
    COMPETITION_CHECKS.get(competition_name, check_through_adapter)(check)
    return CheckReport(check.problems, check.files_checked, check.constant_images)


def save_report(path, problems):
    """Write ``problems`` as a CSV with columns path, message, atomically."""
    table = pd.DataFrame([(problem.path, problem.severity, problem.message) for problem in problems],
                         columns=["path", "severity", "message"])
    return artifacts.save_csv(path, table, index=False)


# --- shared machinery -----------------------------------------------------------------------------------


def problem_from_error(path, error, data_dir):
    """A Problem for ``path`` from an adapter's error, without the path its message already starts with."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    for prefix in (f"{data_dir / path}: ", f"{path}: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
            break
    return Problem(str(path), message)


def size_text(shape):
    """(height, width) as "widthxheight", the way image viewers and the adapters' messages say it."""
    return f"{shape[1]}x{shape[0]}"


def check_mask_file(competition, mask_path, image_path, image_shape, expected_size, rle_table=None,
                    rle_text=None):
    """Problems of one mask file: unreadable, a size other than its image's, values that are not binary or not a
    competition's, pixels that disagree with the CSV's encoding of the same mask.

    Args:
        image_shape: (height, width) of the decoded image, or None when it could not be decoded.
        expected_size: the competition's (height, width), compared with when the image could not be decoded.
        rle_table, rle_text: the CSV holding this mask's RLE too, and that RLE (None: nothing to compare).
    """
    try:
        # Decoded raw, with the adapters' decoder, rather than through ``read_mask_file``, which turns the
        # mask to booleans before its values can be seen.
        mask = decode_image(competition.files.read_bytes(mask_path), name=mask_path)
    except DATA_ERRORS as error:
        return [problem_from_error(mask_path, error, competition.data_dir)]
    problems = []
    if image_shape is not None and mask.shape[:2] != tuple(image_shape):
        problems.append(Problem(mask_path, f"mask is {size_text(mask.shape)}, its image {image_path} is "
                                           f"{size_text(image_shape)}"))
    elif image_shape is None and expected_size is not None and mask.shape[:2] != tuple(expected_size):
        problems.append(Problem(mask_path, f"mask is {size_text(mask.shape)}, expected {size_text(expected_size)}"))
    # The same channel rule as ``read_mask_file``: an RGB mask counts by its brightest channel.
    mask = mask.max(axis=-1) if mask.ndim == 3 else mask
    message = mask_values_problem(distinct_values(mask))
    if message:
        problems.append(Problem(mask_path, message))
    if rle_text is not None and not problems:
        try:
            encoded = rle.decode(rle_text, mask.shape, competition.rle_order)
        except ValueError:
            return problems  # the table's own row check names a broken RLE
        differ = int(np.count_nonzero(encoded != (mask > 0)))
        if differ:
            problems.append(Problem(mask_path, f"differs from {rle_table}'s RLE of the same id in {differ} "
                                               f"pixel(s) ({int(encoded.sum())} there, {int((mask > 0).sum())} here)"))
    return problems


def check_annotation(competition, image_id, annotation_path, image_shape):
    """Problems of a hand bone annotation JSON: unreadable, unknown labels, polygons that cannot be drawn."""
    try:
        annotations = competition.annotations(image_id)
    except DATA_ERRORS as error:
        return [problem_from_error(annotation_path, error, competition.data_dir)]
    if image_shape is None:
        return []
    problems = []
    for _, points, name in annotations:
        try:
            polygon_mask(points, image_shape, name)
        except ValueError as error:
            problems.append(problem_from_error(annotation_path, error, competition.data_dir))
    return problems


def image_mode(competition, path):
    """The image's Pillow mode and band count from its header ("RGB", "L", "P", "RGBA", "I;16", ...)."""
    with Image.open(io.BytesIO(competition.files.read_bytes(path))) as image:
        return image.mode


def check_job(competition, job, expected_size, through_adapter):
    """Decode one image, and its mask or annotation; return their Problems, the image's mode and whether the
    image is all one value (None, None when it could not be decoded).

    Args:
        expected_size: the competition's (height, width), or None when the adapter cannot tell it.
        through_adapter: read the image with ``read_image`` (which also checks its size and channels); False
            when the adapter cannot read this dataset's layout at all, so that truncated files still show.
    """
    problems, image_shape, mode, constant = [], None, None, None
    try:
        if through_adapter:
            image = competition.read_image(job.image_id, job.part)
        else:
            image = decode_image(competition.files.read_bytes(job.image_path), name=job.image_path)
        image_shape = image.shape[:2]
        mode, constant = image_mode(competition, job.image_path), bool(image.min() == image.max())
    except DATA_ERRORS as error:
        problems.append(problem_from_error(job.image_path, error, competition.data_dir))
    if job.mask_path is not None:
        problems += check_mask_file(competition, job.mask_path, job.image_path, image_shape, expected_size,
                                    job.rle_table, job.rle)
    if job.annotation_path is not None:
        problems += check_annotation(competition, job.image_id, job.annotation_path, image_shape or expected_size)
    if job.mask_from_adapter:
        try:
            competition.read_mask(job.image_id)
        except DATA_ERRORS as error:
            problems.append(problem_from_error(job.image_path, error, competition.data_dir))
    return problems, mode, constant


class DatasetCheck:
    """The problems found so far in one dataset, and the helpers the per-competition checks share.

    Every helper turns the adapters' errors into Problems and carries on, so that one run lists them all.
    """

    def __init__(self, competition, progress=False, workers=None):
        self.competition = competition
        self.files = competition.files
        self.data_dir = competition.data_dir
        self.progress = progress
        self.workers = workers or DEFAULT_WORKERS
        # A dict as an ordered set: one broken zip or table can surface through several helpers.
        self._problems = {}
        self.files_checked = 0
        self.constant_images = []
        self.image_modes = collections.defaultdict(list)  # part -> [(image path, mode)]

    @property
    def problems(self):
        """The Problems found so far, in the order found."""
        return list(self._problems)

    def add(self, path, message, severity="error"):
        """Record a problem of ``path`` (a file, folder or CSV row)."""
        self._problems.setdefault(Problem(str(path), message, severity), None)

    def add_error(self, path, error):
        """Record an adapter's error as a problem of ``path``."""
        self._problems.setdefault(problem_from_error(path, error, self.data_dir), None)

    # --- folders ----------------------------------------------------------------------------------------
    def list_files(self, folder, suffix, tree=False):
        """Stems of the files in ``folder`` (extracted or zipped) ending with ``suffix``, at any depth when
        ``tree``; [] with a Problem when its zip is unreadable."""
        try:
            if tree:
                return self.files.list_tree(folder, suffix)
            return self.files.list_folder(folder, suffix)
        except DATA_ERRORS as error:
            self.add_error(f"{folder.split('/', 1)[0]}.zip", error)
            return []

    def has_folder(self, folder):
        """Whether ``folder`` exists extracted or inside its zip (the adapters' test for optional folders)."""
        try:
            return self.files.has_folder(folder)
        except DATA_ERRORS as error:
            self.add_error(f"{folder.split('/', 1)[0]}.zip", error)
            return False

    def require_images(self, folder, ids, what):
        """Add a Problem when ``folder`` holds none of ``what``; return whether it holds some."""
        if ids:
            return True
        top = folder.split("/", 1)[0]
        if (self.data_dir / folder).is_dir():
            self.add(folder, f"no {what} in the folder")
        elif (self.data_dir / f"{top}.zip").is_file():
            self.add(folder, f"no {what} in {top}.zip under {folder}/")
        else:
            self.add(folder, f"no {what}: neither the folder nor {top}.zip exists")
        return False

    def without_partner(self, ids, partner_ids, path, partner_path, partner_what):
        """Add a Problem per id of ``ids`` whose partner file (its mask, image or annotation) is missing.

        Args:
            path, partner_path: id -> relative path of the file and of its partner.
        """
        partners = set(partner_ids)
        for item in ids:
            if item not in partners:
                self.add(path(item), f"no {partner_what} {partner_path(item)}")

    # --- tables -----------------------------------------------------------------------------------------
    def read_table(self, name, required_columns, why=None):
        """A CSV (or its ``.csv.zip``) as strings with empty cells as "", or None.

        None comes with a Problem when the table is unreadable or lacks a required column, and, when it is
        absent, only if ``why`` says why it is needed.
        """
        if not (self.files.exists(name) or self.files.exists(f"{name}.zip")):
            if why:
                self.add(name, f"missing (nor zipped as {name}.zip); {why}")
            return None
        self.files_checked += 1
        try:
            return self.files.read_csv(name, required_columns=required_columns, dtype=str, keep_default_na=False)
        except DATA_ERRORS as error:
            self.add_error(name, error)
            return None

    def duplicate_rows(self, table, name, column):
        """Add a Problem per value of ``column`` on several rows, naming the lines (the header is line 1)."""
        repeated = table[table[column].duplicated(keep=False)]
        for value, rows in repeated.groupby(column, sort=False):
            lines = ", ".join(str(index + 2) for index in rows.index)
            self.add(f"{name} {column} {value}", f"duplicate {column}: on {len(rows)} rows (lines {lines})")

    def rle_rows(self, table, name, key_column, rle_column, num_pixels):
        """Add a Problem per RLE cell ``rle.parse`` rejects: odd count, not a number, past the end, overlap."""
        for key, text in zip(table[key_column], table[rle_column]):
            row = f"{name} {key_column} {key}"
            try:
                rle.parse(text, num_pixels, name=row)
            except ValueError as error:
                self.add_error(row, error)

    def listing_table(self, name, columns, image_ids, image_path, consequence, why=None, to_id=str,
                      rle_pixels=None):
        """Check a CSV whose rows name images (train.csv, train_masks.csv, sample_submission.csv).

        Problems: the table is unreadable or lacks a column, a key is on several rows, an RLE cell does not
        decode, a row names an image that is not there (unknown id), an image is missing from the table.

        Args:
            columns: required columns; the first is the key naming the image, the second the RLE.
            image_ids: ids of the images present; [] when their folder is missing (already a Problem).
            image_path: id -> relative path of its image.
            consequence: what leaving an image out of the table leads to, e.g. "training never sees it".
            why: why the table is needed; None when it is optional.
            to_id: the image id a key names (Carvana: "<id>.jpg" -> "<id>").
            rle_pixels: pixels an RLE cell must fit in; None to leave the RLE unchecked.
        """
        table = self.read_table(name, columns, why=why)
        if table is None:
            return None
        key_column = columns[0]
        self.duplicate_rows(table, name, key_column)
        if rle_pixels is not None:
            self.rle_rows(table, name, key_column, columns[1], rle_pixels)
        keys = {to_id(key): key for key in table[key_column]}
        if image_ids:
            present = set(image_ids)
            for image_id, key in keys.items():
                if image_id not in present:
                    self.add(f"{name} {key_column} {key}", f"unknown id: no image {image_path(image_id)}")
        for image_id in image_ids:
            if image_id not in keys:
                self.add(image_path(image_id), f"not in {name}; {consequence}")
        return table

    def metadata_table(self, table, name, key_column, ids, numeric_columns, path_of):
        """Warnings for a metadata table (TGS depths.csv, Carvana metadata.csv): ids the images have but the
        table lacks, and cells of ``numeric_columns`` that are not numbers. Only the EDA reads these tables.

        Args:
            ids: the keys the table should hold (image ids, car ids), each with the path named in its warning.
            path_of: key -> the image path to name.
        """
        present = set(table[key_column])
        for key in ids:
            if key not in present:
                self.add(path_of(key), f"not in {name}: its metadata is unknown", "warning")
        for column in numeric_columns:
            # An empty cell is a missing value, which the EDA skips; text where a number belongs is a problem.
            bad = pd.to_numeric(table[column], errors="coerce").isna() & (table[column].str.strip() != "")
            for key, text in zip(table.loc[bad, key_column], table.loc[bad, column]):
                self.add(f"{name} {key_column} {key}", f"{column} is {text!r}, not a number", "warning")

    # --- images -----------------------------------------------------------------------------------------
    def adapter_image_size(self, problem_path):
        """The adapter's image size, or None with a Problem at ``problem_path`` when it cannot tell it."""
        try:
            return self.competition.image_size
        except DATA_ERRORS as error:
            self.add(problem_path, f"cannot tell the image size, so image sizes are not checked ({error})")
            return None

    def run_jobs(self, jobs, total, through_adapter=True, expected_size=None):
        """Decode the images of ``jobs`` (an iterable of ImageJob, ``total`` long) on a thread pool.

        Args:
            through_adapter: see ``check_job``.
            expected_size: the competition's (height, width) when known.
        """
        work = functools.partial(check_job, self.competition, expected_size=expected_size,
                                 through_adapter=through_adapter)
        with tqdm(total=total, desc=f"checking {self.competition.name}", unit="image",
                  disable=not self.progress) as bar:
            # The same bounded, ordered thread pool notebook 02 reads with: memory stays flat.
            jobs_and_problems = read_ahead(lambda job: (job, work(job)), jobs, workers=self.workers,
                                           buffer=IN_FLIGHT_PER_WORKER * self.workers)
            for job, (problems, mode, constant) in jobs_and_problems:
                self.files_checked += job.num_files
                for problem in problems:
                    self._problems.setdefault(problem, None)
                if mode is not None:
                    self.image_modes[job.part].append((job.image_path, mode))
                if constant:
                    self.constant_images.append(job.image_id)
                bar.update()
        self.odd_modes()

    def odd_modes(self):
        """Warn of each image whose mode (palette, RGBA, 16-bit, grayscale...) differs from most of its part's:
        the adapter converts it, but it may come from another source or export than the rest."""
        for part, modes in self.image_modes.items():
            counts = collections.Counter(mode for _, mode in modes)
            usual, usual_count = counts.most_common(1)[0]
            for path, mode in modes:
                if mode != usual:
                    self._problems.setdefault(Problem(path, f"image mode {mode}, while {usual_count} of {len(modes)} "
                                                            f"{part} images are {usual}", "warning"), None)
        self.image_modes.clear()


# --- per competition -------------------------------------------------------------------------------------

@checks("tgs")
def check_tgs(check):
    """TGS: train/images and train/masks PNGs, train.csv (the training ids, column-major RLE), test/images,
    sample_submission.csv (the submission's rows) and depths.csv."""
    competition = check.competition
    height, width = competition.image_size

    train_path = functools.partial(competition.image_path, part="train")
    test_path = functools.partial(competition.image_path, part="test")
    mask_path = competition.mask_path

    train_ids = check.list_files("train/images", ".png")
    test_ids = check.list_files("test/images", ".png")
    check.require_images("train/images", train_ids, "training images (.png)")
    check.require_images("test/images", test_ids, "test images (.png)")
    # Like the adapter: with a train/masks folder the masks come from its PNGs, else from train.csv's RLE.
    has_masks = check.has_folder("train/masks")
    mask_ids = set(check.list_files("train/masks", ".png")) if has_masks else set()
    if has_masks:
        check.without_partner(train_ids, mask_ids, train_path, mask_path, "mask")
        check.without_partner(sorted(mask_ids), train_ids, mask_path, train_path, "image")

    table = check.listing_table("train.csv", ("id", "rle_mask"), train_ids, train_path, "training never sees it",
                                why="it lists the training ids", rle_pixels=height * width)
    encoded = {} if table is None else dict(zip(table["id"], table["rle_mask"]))
    check.listing_table("sample_submission.csv", ("id", "rle_mask"), test_ids, test_path,
                        "the submission would leave it out", why="it fixes the submission's rows")
    depths = check.read_table("depths.csv", ("id", "z"))
    if depths is not None:
        check.duplicate_rows(depths, "depths.csv", "id")
        part_of = {**{image_id: "test" for image_id in test_ids}, **{image_id: "train" for image_id in train_ids}}
        check.metadata_table(depths, "depths.csv", "id", list(part_of), ["z"],
                             lambda image_id: competition.image_path(image_id, part_of[image_id]))

    jobs = itertools.chain(
        (ImageJob("train", image_id, train_path(image_id), mask_path(image_id) if image_id in mask_ids else None,
                  rle_table="train.csv", rle=encoded.get(image_id))
         for image_id in train_ids),
        (ImageJob("test", image_id, test_path(image_id)) for image_id in test_ids))
    check.run_jobs(jobs, len(train_ids) + len(test_ids), expected_size=competition.image_size)


@checks("carvana")
def check_carvana(check):
    """Carvana: train/*.jpg with train_masks/*_mask.gif, train_masks.csv (row-major RLE), test/*.jpg,
    metadata.csv and sample_submission.csv."""
    competition = check.competition
    height, width = competition.image_size

    train_path = functools.partial(competition.image_path, part="train")
    test_path = functools.partial(competition.image_path, part="test")
    mask_path = competition.mask_path

    train_ids = check.list_files("train", ".jpg")
    test_ids = check.list_files("test", ".jpg")
    check.require_images("train", train_ids, "training images (.jpg)")
    check.require_images("test", test_ids, "test images (.jpg)")
    for ids, path in ((train_ids, train_path), (test_ids, test_path)):
        for image_id in ids:
            try:
                split_image_id(image_id)  # the split keeps a car's 16 angles together by this id
            except ValueError as error:
                check.add_error(path(image_id), error)
    # Like the adapter: with a train_masks folder the masks come from its GIFs, else from train_masks.csv.
    has_masks = check.has_folder("train_masks")
    mask_ids = set(check.list_files("train_masks", "_mask.gif")) if has_masks else set()
    if has_masks:
        check.without_partner(train_ids, mask_ids, train_path, mask_path, "mask")
        check.without_partner(sorted(mask_ids), train_ids, mask_path, train_path, "image")

    table = check.listing_table("train_masks.csv", ("img", "rle_mask"), train_ids, train_path,
                                "Kaggle's table lists every training image",
                                why=None if has_masks else "without train_masks/ the masks come from it",
                                to_id=lambda key: key.removesuffix(".jpg"), rle_pixels=height * width)
    encoded = {} if table is None else dict(zip(table["img"].str.removesuffix(".jpg"), table["rle_mask"]))
    check.listing_table("sample_submission.csv", ("img", "rle_mask"), test_ids, test_path,
                        "the submission would leave it out", to_id=lambda key: key.removesuffix(".jpg"))
    cars = check.read_table("metadata.csv", ("id", *CARVANA_METADATA_COLUMNS))
    if cars is not None:
        check.duplicate_rows(cars, "metadata.csv", "id")
        first_image = {}
        for part, ids in (("test", test_ids), ("train", train_ids)):
            for image_id in ids:
                car = image_id.rpartition("_")[0]  # "" for a name that is no Carvana id: an error above
                if car:
                    first_image.setdefault(car, competition.image_path(image_id, part))
        check.metadata_table(cars, "metadata.csv", "id", sorted(first_image), ["year"], first_image.get)

    jobs = itertools.chain(
        (ImageJob("train", image_id, train_path(image_id), mask_path(image_id) if image_id in mask_ids else None,
                  rle_table="train_masks.csv", rle=encoded.get(image_id) if has_masks else None)
         for image_id in train_ids),
        (ImageJob("test", image_id, test_path(image_id)) for image_id in test_ids))
    check.run_jobs(jobs, len(train_ids) + len(test_ids), expected_size=competition.image_size)


def handbone_layout(check, part, ids):
    """Add Problems for PNGs outside ``<part>/DCM/<patient>/`` and for file names two patients share (the
    submission keys on file names); return whether the layout is one the adapter can read."""
    readable = True
    for image_id in ids:
        if image_id.count("/") != 1:
            check.add(f"{part}/DCM/{image_id}.png", f"expected {part}/DCM/<patient>/<image>.png")
            readable = False
    first_path = {}
    for image_id in ids:
        path = f"{part}/DCM/{image_id}.png"
        other = first_path.setdefault(file_name_of(image_id), path)
        if other != path:
            check.add(path, f"same file name as {other}; the submission names images by file name alone")
            readable = False
    return readable


@checks("handbone")
def check_handbone(check):
    """Hand bone X-rays: train/DCM/<patient>/*.png with train/outputs_json/<patient>/*.json polygons,
    test/DCM/<patient>/*.png, meta_data.csv or .xlsx and an optional sample_submission.csv."""
    competition = check.competition
    train_path = functools.partial(competition.image_path, part="train")
    test_path = functools.partial(competition.image_path, part="test")

    def annotation_path(image_id):
        return f"train/outputs_json/{image_id}.json"

    train_ids = check.list_files("train/DCM", ".png", tree=True)
    test_ids = check.list_files("test/DCM", ".png", tree=True)
    annotation_ids = set(check.list_files("train/outputs_json", ".json", tree=True))
    check.require_images("train/DCM", train_ids, "training images (.png)")
    check.require_images("test/DCM", test_ids, "test images (.png)")
    # Both parts are checked, whatever the first one holds.
    readable = [handbone_layout(check, part, ids) for part, ids in (("train", train_ids), ("test", test_ids))]
    check.without_partner(train_ids, annotation_ids, train_path, annotation_path, "annotation")
    check.without_partner(sorted(annotation_ids), train_ids, annotation_path, train_path, "image")

    for name in ("meta_data.csv", "meta_data.xlsx"):
        if check.files.exists(name) or check.files.exists(f"{name}.zip"):
            check.files_checked += 1
            try:
                patients = competition.patient_table()
            except (*DATA_ERRORS, ImportError) as error:
                check.add_error(name, error)
                break
            first_image = {}
            for part, ids in (("test", test_ids), ("train", train_ids)):
                for image_id in ids:
                    first_image.setdefault(image_id.split("/")[0], competition.image_path(image_id, part))
            for patient in sorted(set(first_image) - set(patients.index.astype(str))):
                check.add(first_image[patient], f"patient {patient} is not in {name}: their metadata is unknown",
                          "warning")
            break
    check_handbone_submission(check, test_ids)

    # The adapter takes the size from the first image and cannot list a layout it rejects; then the images
    # are still decoded, without the size check.
    expected_size = check.adapter_image_size("train/DCM") if all(readable) else None
    jobs = itertools.chain(
        (ImageJob("train", image_id, train_path(image_id),
                  annotation_path=annotation_path(image_id) if image_id in annotation_ids else None)
         for image_id in train_ids),
        (ImageJob("test", image_id, test_path(image_id)) for image_id in test_ids))
    check.run_jobs(jobs, len(train_ids) + len(test_ids), through_adapter=expected_size is not None,
                   expected_size=expected_size)


def check_handbone_submission(check, test_ids):
    """The optional sample_submission.csv: 29 rows per test image, keyed by file name and class."""
    table = check.read_table("sample_submission.csv", check.competition.submission_columns)
    if table is None:
        return
    test_names = {file_name_of(image_id): image_id for image_id in test_ids}
    listed = set(table["image_name"])
    for name in dict.fromkeys(table["image_name"]):
        if test_ids and name not in test_names:
            check.add(f"sample_submission.csv image_name {name}", "unknown image: no test/DCM/<patient>/" + name)
    for label in dict.fromkeys(table["class"]):
        if label not in HANDBONE_CLASSES:
            check.add(f"sample_submission.csv class {label}", "unknown class: not one of the 29 bone classes")
    for name, image_id in test_names.items():
        if name not in listed:
            check.add(f"test/DCM/{image_id}.png", "not in sample_submission.csv; the submission would leave it out")


def folder_files(check, folder):
    """{stem: relative path} of ``folder``'s images, and whether two files share a stem (a Problem each)."""
    found, ambiguous = {}, False
    for suffix in IMAGE_SUFFIXES:
        for stem in check.list_files(folder, suffix):
            path = f"{folder}/{stem}{suffix}"
            other = found.setdefault(stem, path)
            if other != path:
                check.add(path, f"same name as {other}; the adapter cannot tell which one is meant")
                ambiguous = True
    return found, ambiguous


@checks("folder")
def check_folder(check):
    """An image folder: images/ and masks/ of the same stems (any format and size, all of one size) and an
    optional test/."""
    (images, images_ambiguous), (masks, masks_ambiguous), (tests, tests_ambiguous) = (
        folder_files(check, folder) for folder in ("images", "masks", "test"))
    check.require_images("images", images, "training images")
    check.without_partner(sorted(images), masks, images.get, lambda stem: f"masks/{stem}.*", "mask")
    check.without_partner(sorted(masks), images, masks.get, lambda stem: f"images/{stem}.*", "image")
    # Two files of one name make the adapter refuse the folder; the images are then only decoded.
    readable = images and not (images_ambiguous or masks_ambiguous or tests_ambiguous)
    expected_size = check.adapter_image_size("images") if readable else None
    jobs = itertools.chain(
        (ImageJob("train", stem, path, masks.get(stem)) for stem, path in sorted(images.items())),
        (ImageJob("test", stem, path) for stem, path in sorted(tests.items())))
    check.run_jobs(jobs, len(images) + len(tests), through_adapter=expected_size is not None,
                   expected_size=expected_size)


def check_through_adapter(check):
    """A competition without its own checks: every train image with its mask and every test image, read through
    the adapter alone."""
    competition = check.competition
    jobs = []
    for part, list_ids in (("train", competition.train_ids), ("test", competition.test_ids)):
        try:
            ids = list_ids()
        except DATA_ERRORS as error:
            check.add_error(part, error)
            continue
        jobs += [ImageJob(part, image_id, competition.image_path(image_id, part), mask_from_adapter=part == "train")
                 for image_id in ids]
    expected_size = check.adapter_image_size("train")
    check.run_jobs(jobs, len(jobs), through_adapter=expected_size is not None, expected_size=expected_size)
