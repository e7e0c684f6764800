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

import functools
import io
import json
import zipfile

import numpy as np
import pandas as pd
from skimage import draw

from seglib import rle
from seglib.competitions.base import (DATA_ERRORS, Competition, Problem, pairing_problems, problem_from, raise_first,
                                      register)
from seglib.errors import SeglibError

FINGER_BONES = tuple(f"finger-{number}" for number in range(1, 20))
WRIST_BONES = ("Trapezium", "Trapezoid", "Capitate", "Hamate", "Scaphoid", "Lunate", "Triquetrum", "Pisiform")
ARM_BONES = ("Radius", "Ulna")
CLASSES = FINGER_BONES + WRIST_BONES + ARM_BONES

METADATA_COLUMNS = ("age", "sex", "weight", "height")
# The real meta_data.xlsx has Korean headers; a CSV export may keep them or use the English names.
KOREAN_HEADERS = {"나이": "age", "성별": "sex", "체중(몸무게)": "weight", "키(신장)": "height"}


def patient_of(image_id):
    return image_id.split("/", 1)[0]


def file_name_of(image_id):
    """The PNG file name the submission uses: ``"ID001/image1661130828152_R"`` -> ``"image1661130828152_R.png"``."""
    return image_id.rsplit("/", 1)[-1] + ".png"


def patient_id(value, name):
    """Normalise a metadata ID (``"ID001"``, ``"ID1"``, ``1`` or ``1.0``) to the folder name ``"ID001"``."""
    text = str(value).strip()
    text = text[2:] if text.upper().startswith("ID") and text[2:].isdigit() else text
    try:
        if float(text).is_integer():
            return f"ID{int(float(text)):03d}"
    except ValueError:
        pass
    raise SeglibError(f"{name}: patient ID {value!r} is neither like 'ID001' nor a whole number")


def normalise_metadata(table, name):
    """A patient table read from file ``name`` (English or the real Korean headers) as columns age, sex, weight,
    height indexed by ``patient`` (the folder name, ``"ID001"``)."""
    table = table.rename(columns=lambda column: KOREAN_HEADERS.get(str(column).strip(), str(column).strip()))
    missing = [column for column in ("ID",) + METADATA_COLUMNS if column not in table.columns]
    if missing:
        raise SeglibError(f"{name}: missing column(s) {missing}; found {list(table.columns)}")
    table = table.dropna(subset=["ID"])
    patients = pd.Index([patient_id(value, name) for value in table["ID"]], name="patient")
    duplicated = patients[patients.duplicated()]
    if len(duplicated):
        raise SeglibError(f"{name}: duplicate patient ID(s) {list(duplicated[:5])}")
    return table[list(METADATA_COLUMNS)].set_axis(patients)


def polygon_mask(points, shape, name):
    """Rasterise one annotation polygon (``[[x, y], ...]`` pixels) to a boolean mask of ``shape``: a pixel whose
    centre is inside or on the outline, so integer corners are covered as by ``cv2.fillPoly`` (which also keeps
    pixels a slanted edge merely crosses)."""
    try:
        vertices = np.asarray(points, dtype=float)
    except (TypeError, ValueError):
        raise SeglibError(f"{name}: points are not a list of [x, y] numbers") from None
    if vertices.ndim != 2 or vertices.shape[1] != 2 or not np.isfinite(vertices).all():
        raise SeglibError(f"{name}: points must be a list of [x, y] number pairs, got shape {vertices.shape}")
    if len(vertices) < 3:
        raise SeglibError(f"{name}: a polygon needs at least 3 points, got {len(vertices)}")
    return draw.polygon2mask(shape, vertices[:, ::-1])


@register("handbone")
class HandBone(Competition):
    """Adapter for the hand bone X-ray segmentation competition (29 multi-label bone masks per image). The default
    "hflip" augmentation fits: a mirrored left hand is a plausible right hand, and both sides are in the data."""

    title = "Hand bone X-ray segmentation"
    kaggle_slug = "hand-bone-xray-segmentation"
    image_channels = 1
    classes = CLASSES
    metric = "dice"
    submission_columns = ("image_name", "class", "rle")

    image_size = functools.cached_property(Competition.first_image_size)  # every image must match the first

    def listed_ids(self, part):
        """Every PNG under ``<part>/DCM``, as "<patient>/<stem>" when the layout is right, by patient."""
        return sorted(self.files.list_folder(f"{part}/DCM", ".png", tree=True), key=lambda id_: id_.split("/"))

    def layout_problems(self, part, ids):
        """A PNG outside ``<part>/DCM/<patient>/``, a file name another patient's image has (the submission names
        images by file name alone)."""
        first_path = {}
        for image_id in ids:
            path = self.image_path(image_id, part)
            if image_id.count("/") != 1:
                yield Problem(path, f"expected {part}/DCM/<patient>/<image>.png")
            other = first_path.setdefault(file_name_of(image_id), path)
            if other != path:
                yield Problem(path, f"same file name as {other}; the submission names images by file name alone")

    def train_ids(self):
        ids = self.listed_ids("train")
        raise_first(self.layout_problems("train", ids))
        annotated = self.files.list_folder("train/outputs_json", ".json", tree=True)
        raise_first(pairing_problems(ids, annotated, self.image_path, self.mask_path, "annotation"))
        return ids

    def test_ids(self):
        ids = self.listed_ids("test")
        if not ids:
            raise FileNotFoundError(f"no test images in {self.data_dir / 'test/DCM'} or test.zip")
        raise_first(self.layout_problems("test", ids))
        return ids

    def image_path(self, image_id, part="train"):
        return f"{part}/DCM/{image_id}.png"

    def mask_path(self, image_id):
        return f"train/outputs_json/{image_id}.json"

    def annotations(self, image_id):
        """The (label, points, name for messages) of each polygon of a training image's JSON, checked."""
        path = self.mask_path(image_id)
        try:
            document = json.loads(self.files.read_bytes(path))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise SeglibError(f"{path}: not valid JSON ({error})") from None
        annotations = document.get("annotations") if isinstance(document, dict) else None
        if not isinstance(annotations, list):
            raise SeglibError(f"{path}: expected an object with an 'annotations' list")
        polygons = []
        for index, annotation in enumerate(annotations):
            if not isinstance(annotation, dict):
                raise SeglibError(f"{path}: annotation {index} is not an object")
            name = f"{path}: annotation {index} (id {annotation.get('id')!r})"
            if annotation.get("label") not in CLASSES:
                raise SeglibError(f"{name}: unknown label {annotation.get('label')!r}; expected one of the "
                                  f"{len(CLASSES)} bone classes")
            if "points" not in annotation:
                raise SeglibError(f"{name}: no 'points'")
            polygons.append((annotation["label"], annotation["points"], name))
        return polygons

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
        if self.files.has_table("meta_data.csv"):
            return normalise_metadata(self.files.read_csv("meta_data.csv"), "meta_data.csv")
        if not self.files.exists("meta_data.xlsx"):
            return None
        try:
            table = pd.read_excel(io.BytesIO(self.files.read_bytes("meta_data.xlsx")), engine="openpyxl")
        except ImportError as error:
            raise ImportError(f"meta_data.xlsx: {error}; or save the table as meta_data.csv") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise SeglibError(f"meta_data.xlsx: cannot read the workbook ({error})") from None
        return normalise_metadata(table, "meta_data.xlsx")

    def metadata(self):
        """Per image (train and test, index ``id``): patient, age, sex, weight, height of its patient."""
        ids = self.listed_ids("train") + self.listed_ids("test")
        frame = pd.DataFrame({"patient": [patient_of(image_id) for image_id in ids]}, index=pd.Index(ids, name="id"))
        patients = self.patient_table()
        if patients is None:
            patients = pd.DataFrame(columns=list(METADATA_COLUMNS), index=pd.Index([], name="patient"))
        return frame.join(patients, on="patient")

    def submission_rows(self, image_id, mask):
        mask = np.asarray(mask)
        if mask.ndim != 3 or mask.shape[-1] != len(CLASSES):
            raise SeglibError(f"{image_id}: expected a (height, width, {len(CLASSES)}) mask, got shape {mask.shape}")
        self.check_size(image_id, "mask", mask.shape)  # the submission needs the native size
        return [(file_name_of(image_id), label, rle.encode(mask[..., index], order=self.rle_order))
                for index, label in enumerate(CLASSES)]

    def expected_submission(self):
        if self.files.has_table("sample_submission.csv"):
            table = self.files.read_csv("sample_submission.csv", required_columns=self.submission_columns,
                                        dtype=str, keep_default_na=False)
            return table[["image_name", "class"]]
        # The real data has no sample submission: every test image, every class, in class order.
        names = [file_name_of(image_id) for image_id in self.test_ids()]
        return pd.DataFrame({"image_name": np.repeat(names, len(CLASSES)), "class": np.tile(CLASSES, len(names))})

    # --- checking -----------------------------------------------------------------------------------
    def problems(self):
        ids = {}
        for part, what in (("train", "training images (.png)"), ("test", "test images (.png)")):
            ids[part] = yield from self.listed(f"{part}/DCM", ".png", what, tree=True)
            yield from self.layout_problems(part, ids[part])
        annotated = yield from self.listed("train/outputs_json", ".json", tree=True)
        yield from pairing_problems(ids["train"], annotated, self.image_path, self.mask_path, "annotation")
        yield from self.patient_problems(ids)
        yield from self.submission_problems(ids["test"])

    def patient_problems(self, ids):
        """An unreadable metadata table; a warning per patient it lacks."""
        name = "meta_data.csv" if self.files.has_table("meta_data.csv") else "meta_data.xlsx"
        try:
            patients = self.patient_table()
        except (*DATA_ERRORS, ImportError) as error:
            yield problem_from(name, error)
            return
        if patients is None:
            return
        first_image = dict(reversed([(patient_of(image_id), self.image_path(image_id, part))
                                     for part in ("test", "train") for image_id in ids[part]]))  # first wins
        for patient in sorted(set(first_image) - set(patients.index)):
            yield Problem(first_image[patient], f"patient {patient} is not in {name}: their metadata is unknown",
                          "warning")

    def submission_problems(self, test_ids):
        """The optional sample_submission.csv: rows naming no test image or bone class, test images it lacks."""
        table = yield from self.checked_table("sample_submission.csv", self.submission_columns, unique=False)
        if table is None:
            return
        names = {file_name_of(image_id): image_id for image_id in test_ids}
        for name in sorted(set(table["image_name"]) - set(names)) if names else ():
            yield Problem(f"sample_submission.csv image_name {name}", f"unknown image: no test/DCM/<patient>/{name}")
        for label in sorted(set(table["class"]) - set(CLASSES)):
            yield Problem(f"sample_submission.csv class {label}", "unknown class: not one of the 29 bone classes")
        for name in sorted(set(names) - set(table["image_name"])):
            yield Problem(self.image_path(names[name], "test"),
                          "not in sample_submission.csv; the submission would leave it out")
