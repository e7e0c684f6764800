"""Hand bone X-ray segmentation: 29 overlapping bone classes per hand radiograph (the Boostcamp competition).

Layout (extracted, or ``train.zip`` / ``test.zip`` read in place)::

    train/DCM/<patient>/<stem>.png           2048 x 2048 grayscale X-rays, a left and a right hand per patient
    train/outputs_json/<patient>/<stem>.json {"annotations": [{"label": "finger-1", "points": [[x, y], ...]}, ...]}
    test/DCM/<patient>/<stem>.png
    meta_data.csv or meta_data.xlsx          one row per patient: ID, age, sex, weight, height
    sample_submission.csv                    optional: image_name, class, rle

An image id is ``"<patient>/<stem>"`` (e.g. ``"ID001/image1661130828152_R"``); the submission names an image by
its file name alone (``image1661130828152_R.png``), so file names must be unique across patients.
"""

import importlib.util
import io
import json
import zipfile

import numpy as np
import pandas as pd
from PIL import Image
from skimage import draw

from seglib import rle
from seglib.competitions.base import Competition, register

FINGER_BONES = tuple(f"finger-{number}" for number in range(1, 20))
WRIST_BONES = ("Trapezium", "Trapezoid", "Capitate", "Hamate", "Scaphoid", "Lunate", "Triquetrum", "Pisiform")
ARM_BONES = ("Radius", "Ulna")
CLASSES = FINGER_BONES + WRIST_BONES + ARM_BONES

METADATA_COLUMNS = ("age", "sex", "weight", "height")
# The real meta_data.xlsx has Korean headers; a CSV export may keep them or use the English names.
KOREAN_HEADERS = {"나이": "age", "성별": "sex", "체중(몸무게)": "weight", "키(신장)": "height"}


def patient_of(image_id):
    """The patient folder of an image id: ``"ID001/image1661130828152_R"`` -> ``"ID001"``."""
    return image_id.split("/", 1)[0]


def file_name_of(image_id):
    """The PNG file name the submission uses: ``"ID001/image1661130828152_R"`` -> ``"image1661130828152_R.png"``."""
    return image_id.rsplit("/", 1)[-1] + ".png"


def patient_id(value, name):
    """Normalise a metadata ID (``"ID001"``, ``"ID1"``, ``1`` or ``1.0``) to the folder name ``"ID001"``."""
    text = str(value).strip()
    if text.upper().startswith("ID") and text[2:].isdigit():
        text = text[2:]
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is None or not number.is_integer():
        raise ValueError(f"{name}: patient ID {value!r} is neither like 'ID001' nor a whole number")
    return f"ID{int(number):03d}"


def normalise_metadata(table, name):
    """Rename a patient table's headers to ID, age, sex, weight, height and index it by patient folder name.

    Args:
        table: the table as read, with English or the real Korean headers.
        name: the file it came from, for error messages.

    Returns:
        A DataFrame indexed by ``patient`` (``"ID001"``) with columns age, sex, weight, height.
    """
    table = table.rename(columns=lambda column: str(column).strip())
    table = table.rename(columns=KOREAN_HEADERS)
    missing = [column for column in ("ID",) + METADATA_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; found {list(table.columns)}")
    table = table.dropna(subset=["ID"])
    patients = pd.Index([patient_id(value, name) for value in table["ID"]], name="patient")
    duplicated = patients[patients.duplicated()]
    if len(duplicated):
        raise ValueError(f"{name}: duplicate patient ID(s) {list(duplicated[:5])}")
    table = table[list(METADATA_COLUMNS)].copy()
    table.index = patients
    return table


def polygon_mask(points, shape, name):
    """Rasterise one annotation polygon (``[[x, y], ...]`` pixel coordinates) to a boolean mask of ``shape``.

    scikit-image keeps a pixel whose centre lies inside the polygon or on its outline: a square with integer
    corners covers its corner pixels inclusively, as ``cv2.fillPoly`` (the usual baseline) does. On slanted
    edges fillPoly also keeps pixels the outline merely crosses, so its masks can be about a pixel wider there;
    the pixel-centre rule is exact, documented and needs no OpenCV dependency.
    """
    try:
        vertices = np.asarray(points, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: points are not a list of [x, y] numbers") from None
    if vertices.ndim != 2 or vertices.shape[1] != 2 or not np.isfinite(vertices).all():
        raise ValueError(f"{name}: points must be a list of [x, y] number pairs, got shape {vertices.shape}")
    if len(vertices) < 3:
        raise ValueError(f"{name}: a polygon needs at least 3 points, got {len(vertices)}")
    mask = np.zeros(shape, dtype=bool)
    rows, columns = draw.polygon(vertices[:, 1], vertices[:, 0], shape=shape)
    mask[rows, columns] = True
    return mask


@register("handbone")
class HandBone(Competition):
    """Adapter for the hand bone X-ray segmentation competition (29 multi-label bone masks per image)."""

    title = "Hand bone X-ray segmentation"
    kaggle_slug = "hand-bone-xray-segmentation"
    image_channels = 1
    classes = CLASSES
    metric = "dice"
    rle_order = "C"
    submission_columns = ("image_name", "class", "rle")
    # A mirrored left hand is a plausible right hand, and both sides are in the data.
    default_augmentations = ("hflip",)

    def __init__(self, data_dir, **options):
        super().__init__(data_dir, **options)
        self._image_ids = {}
        self._train_ids = None
        self._image_size = None

    @property
    def image_size(self):
        """(height, width) of the first train image (else the first test image), read from its PNG header."""
        if self._image_size is None:
            part = "train" if self.image_ids("train") else "test"
            ids = self.image_ids(part)
            if not ids:
                raise FileNotFoundError(f"no images in {self.data_dir / 'train/DCM'} or {self.data_dir / 'test/DCM'}")
            relative_path = self.image_path(ids[0], part)
            try:
                # Opening only parses the header; the 2048 x 2048 pixels are not decoded.
                with Image.open(io.BytesIO(self.files.read_bytes(relative_path))) as image:
                    width, height = image.size
            except (OSError, SyntaxError, ValueError) as error:
                raise ValueError(f"{relative_path}: cannot read the image size ({error})") from None
            self._image_size = (height, width)
        return self._image_size

    def image_ids(self, part):
        """Ids of every PNG under ``<part>/DCM`` (train images with or without annotation), checked for layout
        and unique file names."""
        if part not in self._image_ids:
            ids = self.files.list_tree(f"{part}/DCM", ".png")
            misplaced = [image_id for image_id in ids if image_id.count("/") != 1]
            if misplaced:
                raise ValueError(f"{part}/DCM/{misplaced[0]}.png: expected {part}/DCM/<patient>/<image>.png")
            self._check_unique_file_names(part, ids)
            self._image_ids[part] = sorted(ids, key=lambda image_id: image_id.split("/"))
        return self._image_ids[part]

    def _check_unique_file_names(self, part, ids):
        """Raise if two patients hold an image of the same file name: the submission could not tell them apart."""
        by_name = {}
        for image_id in ids:
            by_name.setdefault(file_name_of(image_id), []).append(f"{part}/DCM/{image_id}.png")
        clashes = [paths for paths in by_name.values() if len(paths) > 1]
        if clashes:
            raise ValueError(f"image file names must be unique across patients (the submission keys on them); "
                             f"clashes: {clashes[:5]}")

    def train_ids(self):
        if self._train_ids is None:
            images = self.image_ids("train")
            annotations = self.files.list_tree("train/outputs_json", ".json")
            without_json = sorted(set(images) - set(annotations))
            if without_json:
                raise ValueError(f"train/DCM/{without_json[0]}.png has no train/outputs_json/{without_json[0]}.json "
                                 f"({len(without_json)} image(s) without annotation)")
            without_png = sorted(set(annotations) - set(images))
            if without_png:
                raise ValueError(f"train/outputs_json/{without_png[0]}.json has no train/DCM/{without_png[0]}.png "
                                 f"({len(without_png)} annotation(s) without image)")
            self._train_ids = images
        return self._train_ids

    def test_ids(self):
        ids = self.image_ids("test")
        if not ids:
            raise FileNotFoundError(f"no test images in {self.data_dir / 'test/DCM'} or test.zip")
        return ids

    def image_path(self, image_id, part):
        return f"{part}/DCM/{image_id}.png"

    def annotations(self, image_id):
        """The (label, points) pairs of a training image's JSON, checked."""
        relative_path = f"train/outputs_json/{image_id}.json"
        try:
            document = json.loads(self.files.read_bytes(relative_path))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{relative_path}: not valid JSON ({error})") from None
        annotations = document.get("annotations") if isinstance(document, dict) else None
        if not isinstance(annotations, list):
            raise ValueError(f"{relative_path}: expected an object with an 'annotations' list")
        pairs = []
        for index, annotation in enumerate(annotations):
            if not isinstance(annotation, dict):
                raise ValueError(f"{relative_path}: annotation {index} is not an object")
            name = f"{relative_path}: annotation {index} (id {annotation.get('id')!r})"
            label = annotation.get("label")
            if label not in CLASSES:
                raise ValueError(f"{name}: unknown label {label!r}; expected one of the {len(CLASSES)} bone classes")
            if "points" not in annotation:
                raise ValueError(f"{name}: no 'points'")
            pairs.append((label, annotation["points"], name))
        return pairs

    def read_mask(self, image_id):
        """Boolean (height, width, 29) mask: each polygon filled into its class channel; bones may overlap."""
        height, width = self.image_size
        mask = np.zeros((height, width, len(CLASSES)), dtype=bool)
        for label, points, name in self.annotations(image_id):
            # A class may be drawn as several polygons; they add up.
            mask[..., CLASSES.index(label)] |= polygon_mask(points, (height, width), name)
        return mask

    def groups(self, image_ids):
        # Both hands of a patient look alike (same age, bone shapes); splitting them would leak.
        return np.array([patient_of(image_id) for image_id in image_ids])

    def patient_table(self):
        """The per-patient table (index ``patient``; age, sex, weight, height), or None without a metadata file."""
        if self.files.exists("meta_data.csv") or self.files.exists("meta_data.csv.zip"):
            table = self.files.read_csv("meta_data.csv")
            return normalise_metadata(table, self.data_dir / "meta_data.csv")
        if not self.files.exists("meta_data.xlsx"):
            return None
        path = self.data_dir / "meta_data.xlsx"
        # Checked first: pandas would otherwise fail on the file with a less helpful message.
        if importlib.util.find_spec("openpyxl") is None:
            raise ImportError(f"{path}: reading .xlsx needs openpyxl (pip install openpyxl), "
                              f"or save the table as meta_data.csv")
        try:
            table = pd.read_excel(io.BytesIO(self.files.read_bytes("meta_data.xlsx")), engine="openpyxl")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path}: cannot read the workbook ({error})") from None
        return normalise_metadata(table, path)

    def metadata(self):
        """Per image (train and test, index ``id``): patient, age, sex, weight, height of its patient."""
        ids = self.image_ids("train") + self.image_ids("test")
        frame = pd.DataFrame({"patient": [patient_of(image_id) for image_id in ids]},
                             index=pd.Index(ids, name="id"))
        patients = self.patient_table()
        if patients is None:
            patients = pd.DataFrame(columns=list(METADATA_COLUMNS), index=pd.Index([], name="patient"))
        return frame.join(patients, on="patient")

    def submission_rows(self, image_id, mask):
        mask = np.asarray(mask)
        if mask.ndim != 3 or mask.shape[-1] != len(CLASSES):
            raise ValueError(f"{image_id}: expected a (height, width, {len(CLASSES)}) mask, got shape {mask.shape}")
        if mask.shape[:2] != tuple(self.image_size):
            raise ValueError(f"{image_id}: mask is {mask.shape[1]}x{mask.shape[0]}, the submission needs the "
                             f"native {self.image_size[1]}x{self.image_size[0]}")
        file_name = file_name_of(image_id)
        return [(file_name, label, rle.encode(mask[..., index], order=self.rle_order))
                for index, label in enumerate(CLASSES)]

    def expected_submission(self):
        if self.files.exists("sample_submission.csv") or self.files.exists("sample_submission.csv.zip"):
            table = self.files.read_csv("sample_submission.csv", required_columns=self.submission_columns,
                                        dtype=str, keep_default_na=False)
            return table[["image_name", "class"]]
        # The real data has no sample submission: every test image, every class, in class order.
        names = [file_name_of(image_id) for image_id in self.test_ids()]
        return pd.DataFrame({"image_name": np.repeat(names, len(CLASSES)),
                             "class": np.tile(CLASSES, len(names))})
