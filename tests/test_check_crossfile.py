"""Issue 15: files that disagree with each other and odd image or mask modes, planted in copies of the three
samples (real Kaggle layouts), each named by ``seglib check`` with its exact line; clean data reports none."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seglib import env, rle
from seglib.competitions import get_competition
from seglib.check import check_dataset

from test_check import run_check, set_cell, edit_csv

REAL_TGS = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "tgs_salt"


def sample_copy(name, tmp_path):
    root = tmp_path / name
    shutil.copytree(env.SAMPLE_ROOT / name, root)
    return root


def ids_in(folder, suffix):
    return sorted(path.name.removesuffix(suffix) for path in Path(folder).glob(f"*{suffix}"))


def tgs_defects(root):
    """Plant nine defects in a TGS copy; return the problem lines the check must print."""
    train, test = ids_in(root / "train/images", ".png"), ids_in(root / "test/images", ".png")
    table = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False).set_index("id")
    full = [image_id for image_id in train if table.at[image_id, "rle_mask"]]
    # 1: a mask file with 6 pixels more than train.csv says (values kept {0, 65535}).
    mask = np.asarray(Image.open(root / f"train/masks/{full[0]}.png")).astype(np.uint16)
    off = int((mask[:2, :3] == 0).sum())
    mask[:2, :3] = 65535
    Image.fromarray(mask).save(root / f"train/masks/{full[0]}.png")
    # 2: train.csv's RLE of another id shortened by 5 pixels (its first run starts 5 pixels later).
    shortened = next(image_id for image_id in full[1:] if int(table.at[image_id, "rle_mask"].split()[1]) > 5)
    full = [full[0], shortened] + [image_id for image_id in full[1:] if image_id != shortened]
    text = table.at[shortened, "rle_mask"].split()
    start, length = int(text[0]), int(text[1])
    set_cell(root / "train.csv", "id", shortened, "rle_mask", " ".join([str(start + 5), str(length - 5), *text[2:]]))
    # 3: a mask with foreground 128, no competition's value.
    binary = np.asarray(Image.open(root / f"train/masks/{full[2]}.png")) > 0
    Image.fromarray((binary * 128).astype(np.uint8)).save(root / f"train/masks/{full[2]}.png")
    # 4, 5, 6: depths.csv without a train id and a test id, and a depth that is text.
    edit_csv(root / "depths.csv", lambda depths: depths[~depths["id"].isin([train[3], test[0]])])
    set_cell(root / "depths.csv", "id", train[4], "z", "deep")
    # 7, 8, 9: a palette and an RGBA training image, a 16-bit test image.
    Image.open(root / f"train/images/{train[5]}.png").convert("P").save(root / f"train/images/{train[5]}.png")
    Image.open(root / f"train/images/{train[6]}.png").convert("RGBA").save(root / f"train/images/{train[6]}.png")
    gray = np.asarray(Image.open(root / f"test/images/{test[1]}.png").convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray).save(root / f"test/images/{test[1]}.png")
    after = np.asarray(Image.open(root / f"train/masks/{full[0]}.png")) > 0
    return [
        f"train/masks/{full[0]}.png: differs from train.csv's RLE of the same id in {off} pixel(s) "
        f"({int(after.sum()) - off} there, {int(after.sum())} here)",
        f"train/masks/{full[1]}.png: differs from train.csv's RLE of the same id in 5 pixel(s) "
        f"({int(rle.decode(table.at[full[1], 'rle_mask'], (101, 101)).sum()) - 5} there, "
        f"{int(rle.decode(table.at[full[1], 'rle_mask'], (101, 101)).sum())} here)",
        f"train/masks/{full[2]}.png: mask values (0, 128): foreground 128 is none of 1, 255, 65535, the values "
        f"Kaggle's masks use",
        f"train/images/{train[3]}.png: warning: not in depths.csv: its metadata is unknown",
        f"test/images/{test[0]}.png: warning: not in depths.csv: its metadata is unknown",
        f"depths.csv id {train[4]}: warning: z is 'deep', not a number",
        f"train/images/{train[5]}.png: warning: image mode P, while {len(train) - 2} of {len(train)} train images "
        f"are RGB",
        f"train/images/{train[6]}.png: warning: image mode RGBA, while {len(train) - 2} of {len(train)} train images "
        f"are RGB",
        f"test/images/{test[1]}.png: image is uint16 (16-bit); the competition's images are 8-bit",
    ]


def carvana_defects(root):
    """Plant six defects in a Carvana copy; return the problem lines the check must print."""
    train, test = ids_in(root / "train", ".jpg"), ids_in(root / "test", ".jpg")
    table = pd.read_csv(root / "train_masks.csv", dtype=str).set_index("img")

    def rewrite_gif(image_id, edit):
        gif = Image.open(root / f"train_masks/{image_id}_mask.gif")
        values = edit(np.asarray(gif).copy())
        edited = Image.fromarray(values.astype(np.uint8), mode="P")
        edited.putpalette(gif.getpalette())
        edited.save(root / f"train_masks/{image_id}_mask.gif")

    # 10: a mask GIF with a 10 x 10 block of background painted as car.
    truth = rle.decode(table.at[f"{train[0]}.jpg", "rle_mask"], (1280, 1918), "C")
    corner = int((~truth[:10, :10]).sum())
    assert corner > 0
    rewrite_gif(train[0], _paint)
    # 11: a mask GIF with palette index 2 as foreground.
    rewrite_gif(train[1], lambda values: values * 2)
    # 12, 13: metadata.csv without a test car, and a year that is text.
    test_car, train_car = test[0].rpartition("_")[0], train[0].rpartition("_")[0]
    edit_csv(root / "metadata.csv", lambda cars: cars[cars["id"] != test_car])
    set_cell(root / "metadata.csv", "id", train_car, "year", "unknown")
    # 14: a CMYK training photo (read as RGB, with a warning); a grayscale one is refused (the adapter needs RGB).
    Image.open(root / f"train/{train[10]}.jpg").convert("CMYK").save(root / f"train/{train[10]}.jpg")
    Image.open(root / f"train/{train[20]}.jpg").convert("L").save(root / f"train/{train[20]}.jpg")
    return [
        f"train_masks/{train[0]}_mask.gif: differs from train_masks.csv's RLE of the same id in {corner} pixel(s) "
        f"({int(truth.sum())} there, {int(truth.sum()) + corner} here)",
        f"train_masks/{train[1]}_mask.gif: mask values (0, 2): foreground 2 is none of 1, 255, 65535, the values "
        f"Kaggle's masks use",
        f"test/{test[0]}.jpg: warning: not in metadata.csv: its metadata is unknown",
        f"metadata.csv id {train_car}: warning: year is 'unknown', not a number",
        f"train/{train[10]}.jpg: warning: image mode CMYK, while {len(train) - 2} of {len(train) - 1} train images "
        f"are RGB",
        f"train/{train[20]}.jpg: expected an RGB image, got an array of shape (1280, 1918)",
    ]


def _paint(values):
    values[:10, :10] = 1
    return values


def test_planted_cross_file_and_mode_defects_are_each_named(tmp_path):
    tgs, carvana = sample_copy("tgs", tmp_path), sample_copy("carvana", tmp_path)
    handbone = sample_copy("handbone", tmp_path)
    expected = {"tgs": tgs_defects(tgs), "carvana": carvana_defects(carvana)}
    # 15: a hand-bone patient missing from meta_data.csv.
    patient = sorted(path.name for path in (handbone / "test/DCM").iterdir())[0]
    first_image = sorted((handbone / "test/DCM" / patient).glob("*.png"))[0].relative_to(handbone).as_posix()
    edit_csv(handbone / "meta_data.csv", lambda patients: patients[patients["ID"].astype(int) != int(patient[2:])])
    expected["handbone"] = [f"{first_image}: warning: patient {patient} is not in meta_data.csv: their metadata "
                            f"is unknown"]
    for name, root in (("tgs", tgs), ("carvana", carvana), ("handbone", handbone)):
        found = [str(problem) for problem in run_check(name, root)]
        assert sorted(found) == sorted(expected[name]), f"{name}:\n" + "\n".join(found)


def test_a_flagged_mask_is_never_binarised_quietly(tmp_path):
    root = sample_copy("tgs", tmp_path)
    image_id = ids_in(root / "train/masks", ".png")[0]
    Image.fromarray(np.full((101, 101), 128, np.uint8)).save(root / f"train/masks/{image_id}.png")
    with pytest.raises(ValueError, match=f"train/masks/{image_id}.png: mask values \\(128\\): foreground 128"):
        get_competition("tgs", root).read_mask(image_id)


@pytest.mark.parametrize("name", ["tgs", "carvana", "handbone"])
def test_clean_samples_report_no_problems(name):
    report = check_dataset(name, env.SAMPLE_ROOT / name)
    assert [str(problem) for problem in report] == [] and report.files_checked > 0


@pytest.mark.skipif(not REAL_TGS.is_dir(), reason="the real TGS images (../shared/realdata/tgs_salt) are not here")
def test_real_tgs_reports_only_its_missing_test_part():
    """The shared real set is the 3,200 training pairs only (no test/ or sample_submission.csv); every
    cross-file and mode check passes on it, and its all-black sections are listed, not reported."""
    report = run_check("tgs", REAL_TGS)
    assert [str(problem) for problem in report] == [
        "test/images: no test images (.png): neither the folder nor test.zip exists",
        "sample_submission.csv: missing (nor zipped as sample_submission.csv.zip); it fixes the submission's rows"]
    assert 0 < len(report.constant_images) < 0.05 * 3200
