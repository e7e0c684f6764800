"""``seglib.check`` and ``python -m seglib check``: copies of the committed samples in the real Kaggle layouts
(extracted and zipped), damaged for real, and every problem named with its file or CSV row."""

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seglib import sample
from seglib.__main__ import main
from seglib.check import Problem, check_dataset

CARVANA_DIR = sample.default_out_dir("carvana")
HANDBONE_DIR = sample.default_out_dir("handbone")
REPO_ROOT = Path(__file__).resolve().parents[1]


def snapshot(root):
    """{relative path: SHA-1} of every file under ``root``."""
    return {path.relative_to(root).as_posix(): hashlib.sha1(path.read_bytes()).hexdigest()
            for path in sorted(Path(root).rglob("*")) if path.is_file()}


def run_check(competition, root):
    """The problems ``check_dataset`` finds, after asserting that it left the folder exactly as it was."""
    before = snapshot(root)
    problems = check_dataset(competition, root)
    assert snapshot(root) == before, "the check must not write, move or delete anything in DATA_DIR"
    return problems


def assert_problems(problems, expected):
    """``problems`` are exactly ``expected``, a list of (path, [fragments of the message]), in any order."""
    assert all(isinstance(problem, Problem) for problem in problems)
    found = [str(problem) for problem in problems]
    assert len(problems) == len(expected), found
    for path, fragments in expected:
        matching = [problem for problem in problems
                    if problem.path == path and all(fragment in problem.message for fragment in fragments)]
        assert matching, f"no problem at {path!r} saying {fragments}; found {found}"


def truncate(path, keep=0.5):
    """Cut a file to ``keep`` of its bytes, as an interrupted download does."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])


def edit_csv(path, edit):
    """Rewrite a CSV through ``edit(table) -> table``, keeping every cell a string."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(table).to_csv(path, index=False)


def set_cell(path, key_column, key, column, value):
    def edit(table):
        table.loc[table[key_column] == key, column] = value
        return table

    edit_csv(path, edit)


# --- TGS: damaged copies of the committed sample -----------------------------------------------------------


def tgs_truncated_image(root, train_ids, test_ids):
    truncate(root / "train/images" / f"{train_ids[0]}.png")
    return [(f"train/images/{train_ids[0]}.png", ["cannot decode image"])]


def tgs_truncated_mask(root, train_ids, test_ids):
    truncate(root / "train/masks" / f"{train_ids[1]}.png")
    return [(f"train/masks/{train_ids[1]}.png", ["cannot decode image"])]


def tgs_three_value_mask(root, train_ids, test_ids):
    mask = np.zeros((101, 101), np.uint16)
    mask[:30], mask[30:60] = 65535, 1000  # a grey band, as an anti-aliased re-export leaves
    Image.fromarray(mask).save(root / "train/masks" / f"{train_ids[2]}.png")
    return [(f"train/masks/{train_ids[2]}.png", ["not binary", "3 distinct values (0, 1000, 65535)"])]


def tgs_mask_without_background(root, train_ids, test_ids):
    mask = np.full((101, 101), 1000, np.uint16)
    mask[:40] = 65535
    Image.fromarray(mask).save(root / "train/masks" / f"{train_ids[0]}.png")
    return [(f"train/masks/{train_ids[0]}.png", ["no background value 0", "(1000, 65535)"])]


def tgs_wrong_size_image(root, train_ids, test_ids):
    Image.fromarray(np.zeros((100, 101, 3), np.uint8)).save(root / "test/images" / f"{test_ids[0]}.png")
    return [(f"test/images/{test_ids[0]}.png", ["image is 101x100, expected 101x101"])]


def tgs_wrong_size_mask(root, train_ids, test_ids):
    Image.fromarray(np.zeros((101, 64), np.uint8)).save(root / "train/masks" / f"{train_ids[0]}.png")
    return [(f"train/masks/{train_ids[0]}.png", ["mask is 64x101, expected 101x101"])]


def tgs_deleted_mask(root, train_ids, test_ids):
    (root / "train/masks" / f"{train_ids[3]}.png").unlink()
    return [(f"train/images/{train_ids[3]}.png", [f"no mask train/masks/{train_ids[3]}.png"])]


def tgs_deleted_image(root, train_ids, test_ids):
    (root / "train/images" / f"{train_ids[3]}.png").unlink()
    return [(f"train/masks/{train_ids[3]}.png", [f"no image train/images/{train_ids[3]}.png"]),
            (f"train.csv id {train_ids[3]}", ["unknown id", f"no image train/images/{train_ids[3]}.png"])]


def tgs_rle_odd_count(root, train_ids, test_ids):
    set_cell(root / "train.csv", "id", train_ids[1], "rle_mask", "1 5 20")
    return [(f"train.csv id {train_ids[1]}", ["odd count of numbers (3)"])]


def tgs_rle_past_the_end(root, train_ids, test_ids):
    set_cell(root / "train.csv", "id", train_ids[1], "rle_mask", "10190 20")
    return [(f"train.csv id {train_ids[1]}", ["ends at pixel 10209", "past the end of the 10201-pixel image"])]


def tgs_rle_overlap(root, train_ids, test_ids):
    set_cell(root / "train.csv", "id", train_ids[1], "rle_mask", "1 10 5 3")
    return [(f"train.csv id {train_ids[1]}", ["unsorted or overlap"])]


def tgs_rle_not_a_number(root, train_ids, test_ids):
    set_cell(root / "train.csv", "id", train_ids[1], "rle_mask", "1 5 x7 2")
    return [(f"train.csv id {train_ids[1]}", ["not a whole number", "x7"])]


def tgs_rle_zero_length(root, train_ids, test_ids):
    set_cell(root / "train.csv", "id", train_ids[1], "rle_mask", "1 5 20 0")
    return [(f"train.csv id {train_ids[1]}", ["run length 0 is not positive"])]


def tgs_duplicate_id(root, train_ids, test_ids):
    edit_csv(root / "train.csv", lambda table: pd.concat([table, table.iloc[[1]]]))
    return [(f"train.csv id {train_ids[1]}", ["duplicate id", "on 2 rows (lines 3, 6)"])]


def tgs_unknown_id(root, train_ids, test_ids):
    edit_csv(root / "train.csv",
             lambda table: pd.concat([table, pd.DataFrame({"id": ["ffffffffff"], "rle_mask": [""]})]))
    return [("train.csv id ffffffffff", ["unknown id", "no image train/images/ffffffffff.png"])]


def tgs_image_missing_from_csv(root, train_ids, test_ids):
    edit_csv(root / "train.csv", lambda table: table[table["id"] != train_ids[2]])
    return [(f"train/images/{train_ids[2]}.png", ["not in train.csv", "training never sees it"])]


def tgs_missing_column(root, train_ids, test_ids):
    edit_csv(root / "train.csv", lambda table: table.rename(columns={"rle_mask": "encoded"}))
    return [("train.csv", ["missing column(s) ['rle_mask']", "found ['id', 'encoded']"])]


def tgs_missing_train_csv(root, train_ids, test_ids):
    (root / "train.csv").unlink()
    return [("train.csv", ["missing (nor zipped as train.csv.zip)", "it lists the training ids"])]


def tgs_empty_test_folder(root, train_ids, test_ids):
    for path in (root / "test/images").iterdir():
        path.unlink()
    return [("test/images", ["no test images (.png)", "in the folder"])]


def tgs_empty_train_folders(root, train_ids, test_ids):
    shutil.rmtree(root / "train")
    return [("train/images", ["no training images (.png)", "neither the folder nor train.zip exists"])]


def tgs_submission_unknown_id(root, train_ids, test_ids):
    edit_csv(root / "sample_submission.csv",
             lambda table: pd.concat([table, pd.DataFrame({"id": ["0000000000"], "rle_mask": ["1 1"]})]))
    return [("sample_submission.csv id 0000000000", ["unknown id", "no image test/images/0000000000.png"])]


def tgs_test_image_missing_from_submission(root, train_ids, test_ids):
    edit_csv(root / "sample_submission.csv", lambda table: table[table["id"] != test_ids[1]])
    return [(f"test/images/{test_ids[1]}.png", ["not in sample_submission.csv", "the submission would leave it out"])]


def tgs_depths_without_z(root, train_ids, test_ids):
    edit_csv(root / "depths.csv", lambda table: table[["id"]])
    return [("depths.csv", ["missing column(s) ['z']"])]


TGS_DAMAGES = [value for name, value in sorted(globals().items()) if name.startswith("tgs_")]


@pytest.mark.parametrize("damage", TGS_DAMAGES, ids=lambda damage: damage.__name__)
def test_tgs_damage_is_named(make_tgs_folder, damage):
    root, train_ids, test_ids = make_tgs_folder()
    expected = damage(root, train_ids, test_ids)
    assert_problems(run_check("tgs", root), expected)


def test_tgs_every_problem_at_once(make_tgs_folder):
    """One run lists them all, instead of stopping at the first."""
    root, train_ids, test_ids = make_tgs_folder()
    damages = (tgs_truncated_image, tgs_three_value_mask, tgs_rle_overlap, tgs_unknown_id, tgs_wrong_size_image)
    expected = [problem for damage in damages for problem in damage(root, train_ids, test_ids)]
    problems = run_check("tgs", root)
    assert_problems(problems, expected)
    assert problems.files_checked == 4 * 2 + 2 + 3  # images, masks, test images, the three CSVs


def test_tgs_truncated_png_inside_test_zip(make_tgs_folder, tmp_path):
    root, train_ids, test_ids = make_tgs_folder()
    truncate(root / "test/images" / f"{test_ids[1]}.png")
    zipped = sample.kaggle_zip_layout(root, tmp_path / "zipped")
    assert (zipped / "test.zip").is_file() and not (zipped / "test").exists()
    assert_problems(run_check("tgs", zipped), [(f"test/images/{test_ids[1]}.png", ["cannot decode image"])])


def test_tgs_truncated_train_zip(make_tgs_folder, tmp_path):
    root, _, _ = make_tgs_folder()
    zipped = sample.kaggle_zip_layout(root, tmp_path / "zipped")
    truncate(zipped / "train.zip")
    assert_problems(run_check("tgs", zipped), [
        ("train.zip", ["not a readable zip file"]),
        ("train/images", ["no training images (.png)", "in train.zip under train/images/"]),
    ])


# --- Carvana -------------------------------------------------------------------------------------------------


@pytest.fixture
def make_carvana_folder(tmp_path):
    """A small extracted Carvana folder (two photographs of one car with their masks, one test photograph)
    copied from the sample. Returns (folder, train ids, test ids)."""
    train_ids = sorted(path.stem for path in (CARVANA_DIR / "train").glob("*.jpg"))[:2]
    test_ids = sorted(path.stem for path in (CARVANA_DIR / "test").glob("*.jpg"))[:1]

    def make():
        root = tmp_path / "carvana"
        for folder in ("train", "train_masks", "test"):
            (root / folder).mkdir(parents=True)
        for image_id in train_ids:
            shutil.copyfile(CARVANA_DIR / "train" / f"{image_id}.jpg", root / "train" / f"{image_id}.jpg")
            shutil.copyfile(CARVANA_DIR / "train_masks" / f"{image_id}_mask.gif",
                            root / "train_masks" / f"{image_id}_mask.gif")
        shutil.copyfile(CARVANA_DIR / "test" / f"{test_ids[0]}.jpg", root / "test" / f"{test_ids[0]}.jpg")
        masks = pd.read_csv(CARVANA_DIR / "train_masks.csv", dtype=str)
        masks[masks["img"].isin([f"{image_id}.jpg" for image_id in train_ids])].to_csv(
            root / "train_masks.csv", index=False)
        shutil.copyfile(CARVANA_DIR / "metadata.csv", root / "metadata.csv")
        pd.DataFrame({"img": [f"{test_ids[0]}.jpg"], "rle_mask": ["1 1"]}).to_csv(
            root / "sample_submission.csv", index=False)
        return root, train_ids, test_ids

    return make


def carvana_truncated_jpg(root, train_ids, test_ids):
    truncate(root / "test" / f"{test_ids[0]}.jpg", keep=0.3)
    return [(f"test/{test_ids[0]}.jpg", ["cannot decode image"])]


def carvana_wrong_size_jpg(root, train_ids, test_ids):
    Image.fromarray(np.zeros((1280, 1916, 3), np.uint8)).save(root / "train" / f"{train_ids[1]}.jpg")
    return [(f"train/{train_ids[1]}.jpg", ["image is 1916x1280, expected 1918x1280"])]


def carvana_grey_jpg(root, train_ids, test_ids):
    Image.fromarray(np.zeros((1280, 1918), np.uint8)).save(root / "test" / f"{test_ids[0]}.jpg")
    return [(f"test/{test_ids[0]}.jpg", ["expected an RGB image"])]


def carvana_three_value_gif(root, train_ids, test_ids):
    path = root / "train_masks" / f"{train_ids[0]}_mask.gif"
    with Image.open(path) as mask:
        indices = np.array(mask)
    indices[:10] = 2  # a third palette index, as a GIF re-saved from an editor may hold
    mask = Image.fromarray(indices, mode="P")
    mask.putpalette([0, 0, 0, 255, 255, 255, 128, 128, 128])
    mask.save(path)
    return [(f"train_masks/{train_ids[0]}_mask.gif", ["not binary", "3 distinct values (0, 1, 2)"])]


def carvana_missing_gif(root, train_ids, test_ids):
    (root / "train_masks" / f"{train_ids[1]}_mask.gif").unlink()
    return [(f"train/{train_ids[1]}.jpg", [f"no mask train_masks/{train_ids[1]}_mask.gif"])]


def carvana_gif_without_photograph(root, train_ids, test_ids):
    (root / "train" / f"{train_ids[1]}.jpg").unlink()
    return [(f"train_masks/{train_ids[1]}_mask.gif", [f"no image train/{train_ids[1]}.jpg"]),
            (f"train_masks.csv img {train_ids[1]}.jpg", ["unknown id", f"no image train/{train_ids[1]}.jpg"])]


def carvana_duplicate_img(root, train_ids, test_ids):
    edit_csv(root / "train_masks.csv", lambda table: pd.concat([table, table.iloc[[0]]]))
    return [(f"train_masks.csv img {train_ids[0]}.jpg", ["duplicate img", "lines 2, 4"])]


def carvana_rle_past_the_end(root, train_ids, test_ids):
    set_cell(root / "train_masks.csv", "img", f"{train_ids[1]}.jpg", "rle_mask", "1 100 2455000 100")
    return [(f"train_masks.csv img {train_ids[1]}.jpg", ["past the end of the 2455040-pixel image"])]


def carvana_rle_missing_column(root, train_ids, test_ids):
    edit_csv(root / "train_masks.csv", lambda table: table[["img"]])
    return [("train_masks.csv", ["missing column(s) ['rle_mask']"])]


def carvana_photograph_missing_from_csv(root, train_ids, test_ids):
    edit_csv(root / "train_masks.csv", lambda table: table.iloc[1:])
    return [(f"train/{train_ids[0]}.jpg", ["not in train_masks.csv"])]


def carvana_submission_unknown_img(root, train_ids, test_ids):
    edit_csv(root / "sample_submission.csv",
             lambda table: pd.concat([table, pd.DataFrame({"img": ["0123456789ab_07.jpg"], "rle_mask": ["1 1"]})]))
    return [("sample_submission.csv img 0123456789ab_07.jpg", ["unknown id", "no image test/0123456789ab_07.jpg"])]


def carvana_not_an_image_id(root, train_ids, test_ids):
    (root / "test" / f"{test_ids[0]}.jpg").rename(root / "test" / "photo.jpg")
    pd.DataFrame({"img": ["photo.jpg"], "rle_mask": ["1 1"]}).to_csv(root / "sample_submission.csv", index=False)
    return [("test/photo.jpg", ["'photo' is not a Carvana image id (<car>_<nn>)"])]


def carvana_no_masks_at_all(root, train_ids, test_ids):
    shutil.rmtree(root / "train_masks")
    (root / "train_masks.csv").unlink()
    return [("train_masks.csv", ["missing", "without train_masks/ the masks come from it"])]


def carvana_duplicate_car_in_metadata(root, train_ids, test_ids):
    edit_csv(root / "metadata.csv", lambda table: pd.concat([table, table.iloc[[0]]]))
    car = pd.read_csv(CARVANA_DIR / "metadata.csv", dtype=str)["id"].iloc[0]
    return [(f"metadata.csv id {car}", ["duplicate id"])]


CARVANA_DAMAGES = [value for name, value in sorted(globals().items()) if name.startswith("carvana_")]


@pytest.mark.parametrize("damage", CARVANA_DAMAGES, ids=lambda damage: damage.__name__)
def test_carvana_damage_is_named(make_carvana_folder, damage):
    root, train_ids, test_ids = make_carvana_folder()
    expected = damage(root, train_ids, test_ids)
    assert_problems(run_check("carvana", root), expected)


def test_carvana_zipped_layout(make_carvana_folder, tmp_path):
    """Kaggle's zips, CSVs zipped too: a truncated photograph and a bad RLE are found inside them."""
    root, train_ids, test_ids = make_carvana_folder()
    expected = carvana_truncated_jpg(root, train_ids, test_ids) + carvana_rle_past_the_end(root, train_ids, test_ids)
    zipped = sample.kaggle_zip_layout(root, tmp_path / "zipped")
    for name in ("train_masks.csv", "metadata.csv", "sample_submission.csv"):
        with zipfile.ZipFile(zipped / f"{name}.zip", "w") as archive:
            archive.write(zipped / name, name)
        (zipped / name).unlink()
    assert sorted(path.name for path in zipped.iterdir()) == [
        "metadata.csv.zip", "sample_submission.csv.zip", "test.zip", "train.zip", "train_masks.csv.zip",
        "train_masks.zip"]
    assert_problems(run_check("carvana", zipped), expected)


# --- hand bone X-rays ------------------------------------------------------------------------------------------


@pytest.fixture
def make_handbone_folder(tmp_path):
    """A small hand bone folder copied from the sample: patients ID001 and ID002 (train, two hands each), ID007
    (test) and meta_data.csv. Returns (folder, train ids, test ids)."""

    def make():
        root = tmp_path / "handbone"
        for part, patients in (("train", ("ID001", "ID002")), ("test", ("ID007",))):
            for patient in patients:
                shutil.copytree(HANDBONE_DIR / part / "DCM" / patient, root / part / "DCM" / patient)
                if part == "train":
                    shutil.copytree(HANDBONE_DIR / "train/outputs_json" / patient,
                                    root / "train/outputs_json" / patient)
        shutil.copyfile(HANDBONE_DIR / "meta_data.csv", root / "meta_data.csv")
        ids = {part: sorted(f"{path.parent.name}/{path.stem}" for path in (root / part / "DCM").glob("*/*.png"))
               for part in ("train", "test")}
        return root, ids["train"], ids["test"]

    return make


def rewrite_json(root, image_id, edit):
    path = root / "train/outputs_json" / f"{image_id}.json"
    document = json.loads(path.read_text())
    edit(document["annotations"])
    path.write_text(json.dumps(document))


def handbone_truncated_png(root, train_ids, test_ids):
    truncate(root / "test/DCM" / f"{test_ids[1]}.png")
    return [(f"test/DCM/{test_ids[1]}.png", ["cannot decode image"])]


def handbone_wrong_size_png(root, train_ids, test_ids):
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(root / "train/DCM" / f"{train_ids[2]}.png")
    return [(f"train/DCM/{train_ids[2]}.png", ["image is 256x256, expected 512x512"])]


def handbone_missing_json(root, train_ids, test_ids):
    (root / "train/outputs_json" / f"{train_ids[1]}.json").unlink()
    return [(f"train/DCM/{train_ids[1]}.png", [f"no annotation train/outputs_json/{train_ids[1]}.json"])]


def handbone_json_without_png(root, train_ids, test_ids):
    (root / "train/DCM" / f"{train_ids[3]}.png").unlink()
    return [(f"train/outputs_json/{train_ids[3]}.json", [f"no image train/DCM/{train_ids[3]}.png"])]


def handbone_truncated_json(root, train_ids, test_ids):
    truncate(root / "train/outputs_json" / f"{train_ids[0]}.json")
    return [(f"train/outputs_json/{train_ids[0]}.json", ["not valid JSON"])]


def handbone_unknown_label(root, train_ids, test_ids):
    rewrite_json(root, train_ids[2], lambda annotations: annotations[4].update(label="finger-99"))
    return [(f"train/outputs_json/{train_ids[2]}.json", ["annotation 4", "unknown label 'finger-99'"])]


def handbone_two_point_polygon(root, train_ids, test_ids):
    rewrite_json(root, train_ids[0], lambda annotations: annotations[7].update(points=[[1, 2], [3, 4]]))
    return [(f"train/outputs_json/{train_ids[0]}.json", ["annotation 7", "a polygon needs at least 3 points, got 2"])]


def handbone_file_name_clash(root, train_ids, test_ids):
    stem = train_ids[0].split("/")[1]
    shutil.copyfile(root / "train/DCM" / f"{train_ids[0]}.png", root / "train/DCM/ID002" / f"{stem}.png")
    shutil.copyfile(root / "train/outputs_json" / f"{train_ids[0]}.json",
                    root / "train/outputs_json/ID002" / f"{stem}.json")
    return [(f"train/DCM/ID002/{stem}.png", [f"same file name as train/DCM/{train_ids[0]}.png"])]


def handbone_empty_test_folder(root, train_ids, test_ids):
    shutil.rmtree(root / "test/DCM/ID007")
    return [("test/DCM", ["no test images (.png)", "in the folder"])]


def handbone_metadata_without_age(root, train_ids, test_ids):
    edit_csv(root / "meta_data.csv", lambda table: table.drop(columns=["age"]))
    return [("meta_data.csv", ["missing column(s) ['age']"])]


HANDBONE_DAMAGES = [value for name, value in sorted(globals().items()) if name.startswith("handbone_")]


@pytest.mark.parametrize("damage", HANDBONE_DAMAGES, ids=lambda damage: damage.__name__)
def test_handbone_damage_is_named(make_handbone_folder, damage):
    root, train_ids, test_ids = make_handbone_folder()
    expected = damage(root, train_ids, test_ids)
    assert_problems(run_check("handbone", root), expected)


# --- image folder ----------------------------------------------------------------------------------------------


def make_image_folder(root, count=3, size=(16, 16)):
    """images/, masks/ (0/255) and test/ of ``count`` small grayscale PNGs named 0, 1, ..."""
    root = Path(root)
    for folder in ("images", "masks", "test"):
        (root / folder).mkdir(parents=True)
    for index in range(count):
        mask = np.zeros(size, np.uint8)
        mask[: index + 2] = 255
        Image.fromarray(np.full(size, 40 * index, np.uint8)).save(root / "images" / f"{index}.png")
        Image.fromarray(mask).save(root / "masks" / f"{index}.png")
    Image.fromarray(np.full(size, 90, np.uint8)).save(root / "test" / "0.png")
    return root


def folder_three_value_mask(root):
    mask = np.zeros((16, 16), np.uint8)
    mask[:4], mask[4:6] = 255, 128
    Image.fromarray(mask).save(root / "masks/1.png")
    return [("masks/1.png", ["not binary", "3 distinct values (0, 128, 255)"])]


def folder_mask_without_background(root):
    mask = np.ones((16, 16), np.uint8)
    mask[:4] = 255
    Image.fromarray(mask).save(root / "masks/1.png")
    return [("masks/1.png", ["no background value 0", "(1, 255)"])]


def folder_mask_without_image(root):
    shutil.copyfile(root / "masks/0.png", root / "masks/9.png")
    return [("masks/9.png", ["no image images/9.*"])]


def folder_wrong_size_image_beside_an_orphan(root):
    """The orphan does not hide the size check (the adapter takes the size from the first image by name)."""
    (root / "masks/0.png").unlink()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "images/2.png")
    return [("images/0.png", ["no mask masks/0.*"]), ("images/2.png", ["image is 8x8, expected 16x16"])]


def folder_two_files_of_one_name(root):
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "images/1.jpg")
    return [("images/1.jpg", ["same name as images/1.png"])]


def folder_truncated_jpg(root):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "test/7.jpg")
    truncate(root / "test/7.jpg")
    return [("test/7.jpg", ["cannot decode image"])]


def folder_no_images(root):
    shutil.rmtree(root / "images")
    shutil.rmtree(root / "masks")
    return [("images", ["no training images", "neither the folder nor images.zip exists"])]


FOLDER_DAMAGES = [value for name, value in sorted(globals().items()) if name.startswith("folder_")]


@pytest.mark.parametrize("damage", FOLDER_DAMAGES, ids=lambda damage: damage.__name__)
def test_image_folder_damage_is_named(tmp_path, damage):
    root = make_image_folder(tmp_path / "data")
    expected = damage(root)
    assert_problems(run_check("folder", root), expected)


def test_there_are_at_least_24_distinct_damages():
    assert len(TGS_DAMAGES) + len(CARVANA_DAMAGES) + len(HANDBONE_DAMAGES) + len(FOLDER_DAMAGES) >= 24


# --- clean data ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("competition, files", [("tgs", 150 * 2 + 40 + 3), ("carvana", 48 * 2 + 16 + 3),
                                                ("handbone", 12 * 2 + 4 + 1)])
def test_committed_samples_are_clean(competition, files):
    problems = run_check(competition, sample.default_out_dir(competition))
    assert problems == [] and problems.files_checked == files
    assert problems.summary() == f"no problems in {files} files"


def test_zipped_tgs_sample_is_clean(zipped_sample_dir):
    assert run_check("tgs", zipped_sample_dir) == []


def test_clean_image_folder(tmp_path):
    assert run_check("folder", make_image_folder(tmp_path / "data")) == []


# --- command line ----------------------------------------------------------------------------------------------


def test_cli_clean_sample_exits_0(sample_dir, capsys):
    assert main(["check", "tgs", str(sample_dir), "--quiet"]) == 0
    assert capsys.readouterr().out == "no problems in 343 files\n"


def test_cli_prints_one_line_per_problem_and_exits_1(make_tgs_folder, tmp_path, capsys):
    root, train_ids, test_ids = make_tgs_folder()
    tgs_truncated_mask(root, train_ids, test_ids)
    tgs_rle_odd_count(root, train_ids, test_ids)
    before = snapshot(root)
    report = tmp_path / "reports" / "problems.csv"
    assert main(["check", "tgs", str(root), "--quiet", "--report", str(report)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"train.csv id {train_ids[1]}: RLE has an odd count of numbers (3); it needs start/length pairs",
        f"train/masks/{train_ids[1]}.png: " + lines[1].split(": ", 1)[1],
        "2 problem(s) (2 error(s), 0 warning(s)) in 13 file(s) checked",
    ]
    assert lines[1].split(": ", 1)[1].startswith("cannot decode image")
    assert snapshot(root) == before
    written = pd.read_csv(report, dtype=str)
    assert list(written.columns) == ["path", "severity", "message"] and len(written) == 2
    assert written["path"].tolist() == [f"train.csv id {train_ids[1]}", f"train/masks/{train_ids[1]}.png"]
    assert [path.name for path in report.parent.iterdir()] == ["problems.csv"]  # no temporary file left


def test_cli_usage_errors_exit_2(sample_dir, tmp_path, capsys):
    assert main(["check", "no-such-competition", str(sample_dir), "--quiet"]) == 2
    assert "unknown competition 'no-such-competition'" in capsys.readouterr().err
    assert main(["check", "tgs", str(tmp_path / "missing"), "--quiet"]) == 2
    assert f"data folder for 'tgs' not found: {tmp_path / 'missing'}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        main(["check", "tgs"])
    assert raised.value.code == 2


def test_cli_in_a_subprocess_without_tensorflow(make_tgs_folder):
    """``python -m seglib check`` as a real process, with TensorFlow and Keras made unimportable: the check
    never needs them (the package only registers its Keras losses when Keras is there)."""
    root, train_ids, test_ids = make_tgs_folder()
    tgs_deleted_mask(root, train_ids, test_ids)
    program = ("import runpy, sys; sys.modules['tensorflow'] = sys.modules['keras'] = None; "
               f"sys.argv = ['seglib', 'check', 'tgs', {str(root)!r}]; runpy.run_module('seglib', run_name='__main__')")
    finished = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO_ROOT,
                              timeout=120)
    assert finished.returncode == 1, finished.stderr
    assert finished.stdout.splitlines() == [
        f"train/images/{train_ids[3]}.png: no mask train/masks/{train_ids[3]}.png",
        "1 problem(s) (1 error(s), 0 warning(s)) in 12 file(s) checked",
    ]
    assert "checking tgs" in finished.stderr  # the progress bar goes to stderr
