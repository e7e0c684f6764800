"""The hand bone X-ray adapter on its committed synthetic sample (extracted and zipped) and on small hand-made
folders for the polygon rule and the error cases."""

import itertools
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.model_selection import GroupShuffleSplit

import seglib.competitions.handbone as handbone  # registers "handbone"
from seglib import rle, sample
from seglib.competitions import get_competition, known_competitions
from seglib.competitions.files import CompetitionFiles
from seglib.split import holdout_split

SAMPLE_DIR = sample.default_out_dir("handbone")


def read_png(path):
    with Image.open(path) as image:
        return np.array(image)


def sample_ids(part):
    """"<patient>/<stem>" of every PNG under <part>/DCM, found with pathlib (independently of the adapter)."""
    return sorted(f"{path.parent.name}/{path.stem}" for path in (SAMPLE_DIR / part / "DCM").glob("*/*.png"))


def make_folder(root, train=None, test=None, size=(16, 16)):
    """A tiny hand bone folder: ``train`` maps ids to annotation lists (None: no JSON), ``test`` lists ids.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    for part, ids in (("train", list(train or {})), ("test", list(test or []))):
        for image_id in ids:
            path = root / part / "DCM" / f"{image_id}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full(size, 40, dtype=np.uint8)).save(path)
    for image_id, annotations in (train or {}).items():
        if annotations is not None:
            write_json(root, image_id, {"annotations": annotations, "filename": f"{image_id.split('/')[1]}.png"})
    return root


def write_json(root, image_id, document):
    path = Path(root) / "train" / "outputs_json" / f"{image_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def square(label, left, top, right, bottom):
    """An annotation whose polygon is the axis-aligned square with these corner pixels."""
    return {"id": f"{label}-{left}-{top}", "type": "poly_seg", "label": label,
            "points": [[left, top], [right, top], [right, bottom], [left, bottom]]}


def every_class(size=16):
    """One small square per class, so a hand-made image has all 29 classes."""
    return [square(label, index % (size - 2), 0, index % (size - 2) + 1, 1)
            for index, label in enumerate(handbone.CLASSES)]


# --- the committed sample, extracted and zipped ----------------------------------------------------------


@pytest.fixture(scope="module")
def extracted():
    assert SAMPLE_DIR.is_dir(), f"missing committed sample {SAMPLE_DIR}; run `python -m seglib.sample handbone`"
    return get_competition("handbone", SAMPLE_DIR)


@pytest.fixture(scope="module")
def zipped_dir(tmp_path_factory):
    return sample.kaggle_zip_layout(SAMPLE_DIR, tmp_path_factory.mktemp("zipped") / "handbone")


@pytest.fixture(scope="module")
def zipped(zipped_dir):
    return get_competition("handbone", zipped_dir)


@pytest.fixture(scope="module")
def train_masks(extracted):
    return extracted.read_masks(extracted.train_ids())


def test_registered_with_29_classes_in_order(extracted):
    assert "handbone" in known_competitions()
    assert isinstance(extracted, handbone.HandBone)
    assert len(handbone.CLASSES) == extracted.num_classes == 29 == len(set(handbone.CLASSES))
    assert handbone.CLASSES[:2] == ("finger-1", "finger-2") and handbone.CLASSES[18] == "finger-19"
    assert handbone.CLASSES[19:] == ("Trapezium", "Trapezoid", "Capitate", "Hamate", "Scaphoid", "Lunate",
                                     "Triquetrum", "Pisiform", "Radius", "Ulna")
    assert (extracted.image_channels, extracted.metric, extracted.rle_order) == (1, "dice", "C")
    assert extracted.submission_columns == ("image_name", "class", "rle")


def test_image_size_is_read_from_the_files(extracted, zipped):
    assert extracted.image_size == zipped.image_size == (512, 512)


def test_zipped_layout_really_is_zipped(zipped_dir):
    assert not (zipped_dir / "train").exists() and (zipped_dir / "meta_data.csv").is_file()
    with zipfile.ZipFile(zipped_dir / "train.zip") as archive:
        names = archive.namelist()
    assert any(name.startswith("DCM/ID001/") for name in names)
    assert any(name.startswith("outputs_json/ID001/") for name in names)


def test_ids_match_the_files(extracted, zipped):
    train_ids, test_ids = sample_ids("train"), sample_ids("test")
    assert len(train_ids) == 12 and len(test_ids) == 4
    assert extracted.train_ids() == zipped.train_ids() == train_ids
    assert extracted.test_ids() == zipped.test_ids() == test_ids
    assert {image_id.split("/")[0] for image_id in train_ids} == {f"ID{number:03d}" for number in range(1, 7)}
    assert not {image_id.split("/")[0] for image_id in train_ids} & {image_id.split("/")[0] for image_id in test_ids}


def test_list_tree_extracted_and_zipped(zipped_dir):
    from_folder = CompetitionFiles(SAMPLE_DIR).list_folder("train/outputs_json", ".json", tree=True)
    from_zip = CompetitionFiles(zipped_dir).list_folder("train/outputs_json", ".json", tree=True)
    assert from_folder == from_zip == sample_ids("train")
    zipped_files = CompetitionFiles(zipped_dir)
    assert zipped_files.list_folder("test", ".png", tree=True) == [f"DCM/{i}" for i in sample_ids("test")]
    assert CompetitionFiles(SAMPLE_DIR).list_folder("no-such-folder", ".png", tree=True) == []


def test_images_equal_and_well_formed(extracted, zipped):
    for part, ids in (("train", extracted.train_ids()), ("test", extracted.test_ids())):
        from_folder, from_zip = extracted.read_images(ids, part), zipped.read_images(ids, part)
        assert from_folder.dtype == np.uint8 and from_folder.shape == (len(ids), 512, 512, 1)
        np.testing.assert_array_equal(from_folder, from_zip)
        png = read_png(SAMPLE_DIR / part / "DCM" / f"{ids[-1]}.png")
        np.testing.assert_array_equal(from_folder[-1, ..., 0], png)


def test_masks_equal_multilabel_and_complete(extracted, zipped, train_masks):
    assert train_masks.dtype == bool and train_masks.shape == (12, 512, 512, 29)
    np.testing.assert_array_equal(zipped.read_masks(zipped.train_ids()), train_masks)
    pixels_per_class = train_masks.sum(axis=(1, 2))
    assert (pixels_per_class > 0).all(), "every class must be present in every train image"
    assert (pixels_per_class < 512 * 512 / 10).all()


def test_neighbouring_bones_overlap(train_masks):
    index = {label: position for position, label in enumerate(handbone.CLASSES)}
    overlapping = {
        (first, second)
        for first, second in itertools.combinations(handbone.CLASSES, 2)
        if (train_masks[..., index[first]] & train_masks[..., index[second]]).any()
    }
    assert ("Triquetrum", "Pisiform") in overlapping
    assert {("Lunate", "Radius"), ("Scaphoid", "Radius")} & overlapping
    # Only neighbours overlap: finger tips never touch the forearm.
    assert ("finger-1", "Radius") not in overlapping and ("finger-4", "finger-8") not in overlapping


def test_masks_agree_with_the_images(extracted, train_masks):
    images = extracted.read_images(extracted.train_ids())[..., 0].astype(float)
    bone = train_masks.any(axis=-1)
    # Bones are drawn from the annotated polygons, so they are the bright parts of every image.
    for image, is_bone in zip(images, bone):
        assert image[is_bone].mean() > image[~is_bone].mean() + 60


def test_a_mirrored_hand_is_a_valid_augmentation(extracted):
    assert extracted.default_augmentations == ("hflip",)
    stems = [image_id.split("/")[1] for image_id in extracted.train_ids()]
    assert {stem[-2:] for stem in stems} == {"_L", "_R"}


# --- polygon rasterisation --------------------------------------------------------------------------------


def test_square_polygon_covers_its_corner_pixels(tmp_path):
    root = make_folder(tmp_path / "hb", train={"ID001/image1": [square("Lunate", 2, 3, 6, 7)]})
    mask = get_competition("handbone", root).read_mask("ID001/image1")
    assert mask.shape == (16, 16, 29) and mask.dtype == bool
    expected = np.zeros((16, 16), bool)
    expected[3:8, 2:7] = True  # rows y = 3..7, columns x = 2..6, corners included
    np.testing.assert_array_equal(mask[..., handbone.CLASSES.index("Lunate")], expected)
    assert mask.sum() == 25


def test_polygons_of_one_label_are_combined(tmp_path):
    annotations = [square("Radius", 0, 0, 3, 3), square("Radius", 10, 10, 12, 14), square("Ulna", 2, 2, 5, 5)]
    root = make_folder(tmp_path / "hb", train={"ID001/image1": annotations})
    mask = get_competition("handbone", root).read_mask("ID001/image1")
    radius, ulna = mask[..., handbone.CLASSES.index("Radius")], mask[..., handbone.CLASSES.index("Ulna")]
    assert radius.sum() == 16 + 15 and radius[0, 0] and radius[14, 12] and not radius[5, 5]
    assert ulna.sum() == 16 and (radius & ulna).sum() == 4  # classes overlap: (2..3, 2..3)


def test_polygon_outside_the_image_is_clipped(tmp_path):
    root = make_folder(tmp_path / "hb", train={"ID001/image1": [square("Ulna", 12, -5, 30, 3)]})
    mask = get_competition("handbone", root).read_mask("ID001/image1")
    assert mask[..., handbone.CLASSES.index("Ulna")].sum() == 4 * 4


# --- submission -------------------------------------------------------------------------------------------


def test_submission_rows_complete_ordered_and_decodable(extracted, train_masks):
    test_ids = extracted.test_ids()
    # Train masks stand in for predictions: any (512, 512, 29) boolean array will do.
    predictions = dict(zip(test_ids, train_masks[: len(test_ids)]))
    rows = [row for image_id in test_ids for row in extracted.submission_rows(image_id, predictions[image_id])]
    submission = pd.DataFrame(rows, columns=extracted.submission_columns)
    expected = extracted.expected_submission()
    assert list(expected.columns) == ["image_name", "class"] and len(expected) == 4 * 29
    pd.testing.assert_frame_equal(submission[["image_name", "class"]], expected)
    assert expected["image_name"].iloc[0] == test_ids[0].split("/")[1] + ".png"
    assert list(expected["class"].iloc[:29]) == list(handbone.CLASSES)
    for (image_name, label, text), (image_id, position) in zip(rows, itertools.product(test_ids, range(29))):
        decoded = rle.decode(text, (512, 512), order="C", name=image_name)
        np.testing.assert_array_equal(decoded, predictions[image_id][..., position])


def test_rle_is_row_major(extracted):
    mask = np.zeros((512, 512, 29), bool)
    mask[0, 1, 0] = mask[1, 0, 0] = True  # second pixel of row 0 and first pixel of row 1
    rows = extracted.submission_rows(extracted.test_ids()[0], mask)
    assert rows[0][2] == "2 1 513 1"
    assert all(text == "" for _, _, text in rows[1:])


def test_submission_rows_need_29_native_size_channels(extracted):
    image_id = extracted.test_ids()[0]
    with pytest.raises(ValueError, match="29"):
        extracted.submission_rows(image_id, np.zeros((512, 512, 28), bool))
    with pytest.raises(ValueError, match="512x512"):
        extracted.submission_rows(image_id, np.zeros((256, 256, 29), bool))


def test_expected_submission_follows_a_sample_submission(tmp_path):
    root = make_folder(tmp_path / "hb", train={"ID001/a": every_class()}, test=["ID002/b", "ID003/c"])
    pd.DataFrame({"image_name": ["c.png", "b.png"], "class": ["Ulna", "finger-1"], "rle": ["", ""]}).to_csv(
        root / "sample_submission.csv", index=False)
    expected = get_competition("handbone", root).expected_submission()
    assert expected.to_dict("list") == {"image_name": ["c.png", "b.png"], "class": ["Ulna", "finger-1"]}


# --- groups and metadata ----------------------------------------------------------------------------------


def test_groups_are_patients_and_splits_keep_them_whole(extracted):
    train_ids = extracted.train_ids()
    groups = extracted.groups(train_ids)
    assert list(groups) == [image_id.split("/")[0] for image_id in train_ids]
    assert extracted.stratify_labels(train_ids) is None
    splitter = GroupShuffleSplit(n_splits=10, test_size=0.34, random_state=0)
    for train_index, validation_index in splitter.split(train_ids, groups=groups):
        assert not set(groups[train_index]) & set(groups[validation_index])
    fitted, validation, _ = holdout_split(extracted, train_ids, 0.34, seed=1)
    assert not {i.split("/")[0] for i in fitted} & {i.split("/")[0] for i in validation}
    assert len(fitted) + len(validation) == 12


def test_metadata_joined_per_image(extracted, zipped):
    metadata = extracted.metadata()
    pd.testing.assert_frame_equal(metadata, zipped.metadata())
    assert metadata.index.name == "id" and list(metadata.columns) == ["patient", "age", "sex", "weight", "height"]
    assert list(metadata.index) == sample_ids("train") + sample_ids("test")
    patients = pd.read_csv(SAMPLE_DIR / "meta_data.csv")
    assert len(patients) == 8 and pd.api.types.is_integer_dtype(patients["ID"])
    for image_id, row in metadata.iterrows():
        patient = patients[patients["ID"] == int(image_id[2:5])].iloc[0]
        assert row["patient"] == image_id.split("/")[0]
        assert (row["age"], row["sex"], row["weight"], row["height"]) == (
            patient["age"], patient["sex"], patient["weight"], patient["height"])


def test_metadata_without_a_table_has_empty_columns(tmp_path):
    root = make_folder(tmp_path / "hb", train={"ID001/a": every_class()}, test=["ID002/b"])
    metadata = get_competition("handbone", root).metadata()
    assert list(metadata.index) == ["ID001/a", "ID002/b"]
    assert list(metadata["patient"]) == ["ID001", "ID002"]
    assert metadata[["age", "sex", "weight", "height"]].isna().all().all()


def test_korean_headers_and_id_forms_are_normalised():
    table = pd.DataFrame({"ID": [1, "ID2", 3.0], "나이": [30, 41, 25], "성별": ["남", "여", "남"],
                          "체중(몸무게)": [80, 55, 70], "키(신장)": [180, 160, 172], "Unnamed: 5": [None] * 3})
    patients = handbone.normalise_metadata(table, "meta_data.xlsx")
    assert list(patients.index) == ["ID001", "ID002", "ID003"] and patients.index.name == "patient"
    assert list(patients.columns) == ["age", "sex", "weight", "height"]
    assert patients.loc["ID002", "sex"] == "여" and patients.loc["ID003", "height"] == 172
    with pytest.raises(ValueError, match="meta_data.csv.*patient ID"):
        handbone.normalise_metadata(table.assign(ID=["ID001", "x7", 3]), "meta_data.csv")
    with pytest.raises(ValueError, match=r"missing column.*weight"):
        handbone.normalise_metadata(table.drop(columns="체중(몸무게)"), "meta_data.xlsx")


def test_metadata_from_xlsx(tmp_path):
    pytest.importorskip("openpyxl")
    root = make_folder(tmp_path / "hb", train={"ID001/a": every_class()}, test=["ID002/b"])
    pd.DataFrame({"ID": [1, 2], "나이": [30, 41], "성별": ["남", "여"], "체중(몸무게)": [80, 55],
                  "키(신장)": [180, 160]}).to_excel(root / "meta_data.xlsx", index=False)
    metadata = get_competition("handbone", root).metadata()
    assert metadata.loc["ID002/b", "sex"] == "여" and metadata.loc["ID001/a", "age"] == 30


def test_xlsx_without_openpyxl_names_the_file(tmp_path):
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("openpyxl is installed; test_metadata_from_xlsx covers the xlsx path")
    root = make_folder(tmp_path / "hb", train={"ID001/a": every_class()})
    (root / "meta_data.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(ImportError, match="meta_data.xlsx.*openpyxl"):
        get_competition("handbone", root).metadata()


# --- bad input names the file -----------------------------------------------------------------------------


def test_png_without_json(tmp_path):
    root = make_folder(tmp_path / "hb", train={"ID001/a": every_class(), "ID001/lonely": None})
    with pytest.raises(ValueError, match="train/DCM/ID001/lonely.png"):
        get_competition("handbone", root).train_ids()


def test_json_without_png(tmp_path):
    root = make_folder(tmp_path / "hb", train={"ID001/a": every_class()})
    write_json(root, "ID002/ghost", {"annotations": every_class()})
    with pytest.raises(ValueError, match="ID002/ghost.json"):
        get_competition("handbone", root).train_ids()


def test_unknown_label(tmp_path):
    annotations = every_class() + [square("finger-20", 1, 1, 4, 4)]
    root = make_folder(tmp_path / "hb", train={"ID001/a": annotations})
    with pytest.raises(ValueError, match=r"ID001/a.json: annotation 29 .*'finger-20'"):
        get_competition("handbone", root).read_mask("ID001/a")


def test_polygon_with_two_points(tmp_path):
    annotations = every_class()
    annotations[5] = {"id": "thin", "label": annotations[5]["label"], "points": [[1, 1], [8, 8]]}
    root = make_folder(tmp_path / "hb", train={"ID001/a": annotations})
    with pytest.raises(ValueError, match=r"ID001/a.json: annotation 5 \(id 'thin'\).*at least 3 points"):
        get_competition("handbone", root).read_mask("ID001/a")


@pytest.mark.parametrize("content", ['{"annotations": [', '{"images": []}', '[1, 2]'])
def test_malformed_json(tmp_path, content):
    root = make_folder(tmp_path / "hb", train={"ID001/a": every_class()})
    (root / "train/outputs_json/ID001/a.json").write_text(content)
    with pytest.raises(ValueError, match="train/outputs_json/ID001/a.json"):
        get_competition("handbone", root).read_mask("ID001/a")


def test_wrong_size_image(tmp_path):
    root = make_folder(tmp_path / "hb", train={"ID001/a": every_class(), "ID001/b": every_class()})
    Image.fromarray(np.zeros((16, 12), np.uint8)).save(root / "train/DCM/ID001/b.png")
    competition = get_competition("handbone", root)
    assert competition.read_image("ID001/a").shape == (16, 16, 1)
    with pytest.raises(ValueError, match="train/DCM/ID001/b.png"):
        competition.read_image("ID001/b")


def test_duplicated_file_name_across_patients(tmp_path):
    root = make_folder(tmp_path / "hb", train={"ID001/a": every_class()}, test=["ID002/same", "ID003/same"])
    competition = get_competition("handbone", root)
    assert competition.train_ids() == ["ID001/a"]
    with pytest.raises(ValueError, match="test/DCM/ID003/same.png: same file name as test/DCM/ID002/same.png"):
        competition.test_ids()


def test_image_outside_a_patient_folder(tmp_path):
    root = make_folder(tmp_path / "hb", train={"ID001/a": every_class()})
    shutil.copyfile(root / "train/DCM/ID001/a.png", root / "train/DCM/stray.png")
    with pytest.raises(ValueError, match="train/DCM/stray.png"):
        get_competition("handbone", root).train_ids()


def test_damaged_copy_of_the_sample_in_zips(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(SAMPLE_DIR, copy)
    victim = sample_ids("train")[3]
    (copy / "train/outputs_json" / f"{victim}.json").unlink()
    zipped_copy = sample.kaggle_zip_layout(copy, tmp_path / "zipped")
    with pytest.raises(ValueError, match=f"train/DCM/{victim}.png"):
        get_competition("handbone", zipped_copy).train_ids()


# --- the generator ----------------------------------------------------------------------------------------


# The byte-for-byte regeneration of this sample is tests/test_sample.py's, for every competition.


def test_sample_is_small_and_annotations_have_the_real_structure():
    total = sum(path.stat().st_size for path in SAMPLE_DIR.rglob("*") if path.is_file())
    assert total < 6 * 1024 * 1024
    document = json.loads(next((SAMPLE_DIR / "train/outputs_json").glob("*/*.json")).read_text())
    assert {annotation["label"] for annotation in document["annotations"]} == set(handbone.CLASSES)
    annotation = document["annotations"][0]
    assert annotation["type"] == "poly_seg" and isinstance(annotation["id"], str)
    assert all(len(point) == 2 and all(isinstance(value, int) for value in point) for point in annotation["points"])
    assert document["filename"].endswith(".png")
