"""The Carvana adapter and its synthetic sample, on real extracted and zipped Kaggle layouts."""

import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.model_selection import GroupShuffleSplit

import seglib.competitions.carvana  # noqa: F401  (registers "carvana")
from seglib import rle, sample
from seglib.competitions import get_competition, known_competitions
from seglib.competitions.carvana import (BASELINE_THRESHOLD, difference_mask, fill_columns, foreground_box,
                                         split_image_id)
from seglib.metrics import dice_scores

SAMPLE_DIR = sample.default_out_dir("carvana")
SIZE = (1280, 1918)
CSV_NAMES = ("train_masks.csv", "metadata.csv", "sample_submission.csv")


def read_gif(path):
    """Return (PIL mode, pixel array) of a GIF."""
    with Image.open(path) as image:
        return image.mode, np.array(image)


def zip_csv(folder, name):
    """Replace ``folder/name`` by ``folder/name.zip``, the way Kaggle ships its CSVs."""
    with zipfile.ZipFile(folder / f"{name}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(folder / name, name)
    (folder / name).unlink()


@pytest.fixture(scope="module")
def train_ids():
    """Train ids from the sample's train/ folder, read independently of the adapter."""
    return sorted(path.stem for path in (SAMPLE_DIR / "train").glob("*.jpg"))


@pytest.fixture(scope="module")
def test_ids():
    return sorted(path.stem for path in (SAMPLE_DIR / "test").glob("*.jpg"))


@pytest.fixture(scope="module")
def extracted():
    return get_competition("carvana", SAMPLE_DIR)


@pytest.fixture(scope="module")
def zipped_dir(tmp_path_factory):
    """Kaggle's download layout: train.zip, train_masks.zip, test.zip and every CSV as name.csv.zip."""
    root = sample.kaggle_zip_layout(SAMPLE_DIR, tmp_path_factory.mktemp("zipped") / "carvana")
    for name in CSV_NAMES:
        zip_csv(root, name)
    return root


@pytest.fixture(scope="module")
def zipped(zipped_dir):
    return get_competition("carvana", zipped_dir)


@pytest.fixture(scope="module")
def true_masks(extracted, train_ids):
    return extracted.read_masks(train_ids)


@pytest.fixture(scope="module")
def baseline(extracted, train_ids, true_masks):
    """Per train image: the baseline's Dice and the auto-crop box (computed once, as it costs seconds)."""
    scores, boxes = [], []
    for image_id, true_mask in zip(train_ids, true_masks):
        difference = extracted.background_difference(image_id)
        scores.append(dice_scores(true_mask, difference_mask(difference))[0])
        boxes.append(foreground_box(difference, BASELINE_THRESHOLD))
    return np.array(scores), boxes


@pytest.fixture
def make_folder(tmp_path):
    """Build a small extracted Carvana folder in tmp_path from some sample images; the caller damages it.

    Returns ``make(train_ids, test_ids) -> folder Path``.
    """

    def make(train_ids, test_ids=()):
        root = tmp_path / "carvana"
        for folder in ("train", "train_masks", "test"):
            (root / folder).mkdir(parents=True)
        for image_id in train_ids:
            shutil.copyfile(SAMPLE_DIR / "train" / f"{image_id}.jpg", root / "train" / f"{image_id}.jpg")
            mask_name = f"{image_id}_mask.gif"
            shutil.copyfile(SAMPLE_DIR / "train_masks" / mask_name, root / "train_masks" / mask_name)
        for image_id in test_ids:
            shutil.copyfile(SAMPLE_DIR / "test" / f"{image_id}.jpg", root / "test" / f"{image_id}.jpg")
        table = pd.read_csv(SAMPLE_DIR / "train_masks.csv", dtype=str)
        table[table["img"].isin([f"{image_id}.jpg" for image_id in train_ids])].to_csv(
            root / "train_masks.csv", index=False)
        shutil.copyfile(SAMPLE_DIR / "metadata.csv", root / "metadata.csv")
        pd.DataFrame({"img": [f"{image_id}.jpg" for image_id in test_ids], "rle_mask": "1 1"}).to_csv(
            root / "sample_submission.csv", index=False)
        return root

    return make


# --- the committed sample -------------------------------------------------------------------------------


def test_sample_layout(train_ids, test_ids):
    assert SAMPLE_DIR.is_dir(), f"missing committed sample {SAMPLE_DIR}; run `python -m seglib.sample carvana`"
    assert len(train_ids) == 48 and len(test_ids) == 16
    for image_id in train_ids + test_ids:
        car, angle = split_image_id(image_id)
        assert len(car) == 12 and set(car) <= set("0123456789abcdef") and 1 <= angle <= 16, image_id
    train_cars = {split_image_id(image_id)[0] for image_id in train_ids}
    test_cars = {split_image_id(image_id)[0] for image_id in test_ids}
    assert len(train_cars) == 3 and len(test_cars) == 1 and not train_cars & test_cars
    masks = sorted(path.name for path in (SAMPLE_DIR / "train_masks").iterdir())
    assert masks == [f"{image_id}_mask.gif" for image_id in train_ids]
    with Image.open(SAMPLE_DIR / "test" / f"{test_ids[0]}.jpg") as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (1918, 1280))
    metadata = pd.read_csv(SAMPLE_DIR / "metadata.csv", dtype={"id": str})
    assert list(metadata.columns) == ["id", "year", "make", "model", "trim1", "trim2"]
    assert set(metadata["id"]) == train_cars | test_cars
    submission = pd.read_csv(SAMPLE_DIR / "sample_submission.csv")
    assert list(submission.columns) == ["img", "rle_mask"]
    assert submission["img"].tolist() == [f"{image_id}.jpg" for image_id in test_ids]
    assert (submission["rle_mask"] == "1 1").all()


def test_gif_masks_equal_the_csv_rle(train_ids):
    table = pd.read_csv(SAMPLE_DIR / "train_masks.csv", dtype=str)
    assert list(table.columns) == ["img", "rle_mask"]
    assert table["img"].tolist() == [f"{image_id}.jpg" for image_id in train_ids]
    coverage = []
    for image_id, text in zip(train_ids, table["rle_mask"]):
        mode, pixels = read_gif(SAMPLE_DIR / "train_masks" / f"{image_id}_mask.gif")
        assert mode == "P" and pixels.shape == SIZE, image_id
        assert set(np.unique(pixels).tolist()) == {0, 1}, image_id
        np.testing.assert_array_equal(rle.decode(text, SIZE, order="C"), pixels == 1, err_msg=image_id)
        coverage.append(pixels.mean())
    # Side views cover far more of the frame than front and back views.
    assert 0.08 < min(coverage) and max(coverage) < 0.4 and max(coverage) > 1.8 * min(coverage)


# The byte-for-byte regeneration of this sample is tests/test_sample.py's, for every competition.


def test_sample_is_small():
    size = sum(path.stat().st_size for path in SAMPLE_DIR.rglob("*") if path.is_file())
    assert size < 12 * 2**20, f"{size / 2**20:.1f} MB"


# --- the adapter: extracted and zipped layouts agree -----------------------------------------------------


def test_registered_with_its_settings(extracted, tmp_path):
    assert "carvana" in known_competitions()
    assert extracted.image_size == SIZE and extracted.image_channels == 3
    assert extracted.classes == ("car",) and extracted.num_classes == 1
    assert (extracted.metric, extracted.rle_order) == ("dice", "C")
    assert extracted.submission_columns == ("img", "rle_mask")
    assert extracted.default_augmentations == ("rotate_zoom", "hflip", "brightness", "saturation", "hue")
    assert get_competition("carvana", SAMPLE_DIR, background_channels=True).image_channels == 6
    with pytest.raises(ValueError, match="takes no options, got \\['no_such_option'\\]"):
        get_competition("carvana", SAMPLE_DIR, no_such_option=True)


def test_zipped_layout_really_is_zipped(zipped_dir):
    names = sorted(path.name for path in zipped_dir.iterdir())
    assert names == ["metadata.csv.zip", "sample_submission.csv.zip", "test.zip", "train.zip",
                     "train_masks.csv.zip", "train_masks.zip"]
    with zipfile.ZipFile(zipped_dir / "train_masks.zip") as archive:
        assert all(name.endswith("_mask.gif") and "/" not in name for name in archive.namelist())


def test_ids_equal(extracted, zipped, train_ids, test_ids):
    assert extracted.train_ids() == zipped.train_ids() == train_ids
    assert extracted.test_ids() == zipped.test_ids() == test_ids


def test_masks_equal(extracted, zipped, train_ids, true_masks):
    assert true_masks.dtype == bool and true_masks.shape == (48, *SIZE)
    np.testing.assert_array_equal(zipped.read_masks(train_ids), true_masks)


def test_images_equal(extracted, zipped, train_ids, test_ids):
    for part, ids in (("train", train_ids[::20]), ("test", test_ids[::8])):
        from_folder = extracted.read_images(ids, part)
        assert from_folder.dtype == np.uint8 and from_folder.shape == (len(ids), *SIZE, 3)
        np.testing.assert_array_equal(zipped.read_images(ids, part), from_folder)
        with Image.open(SAMPLE_DIR / part / f"{ids[-1]}.jpg") as image:
            np.testing.assert_array_equal(from_folder[-1], np.asarray(image))


def test_tables_equal(extracted, zipped, train_ids, test_ids):
    metadata = extracted.metadata()
    pd.testing.assert_frame_equal(zipped.metadata(), metadata)
    assert metadata.index.name == "id" and metadata.index.tolist() == train_ids + test_ids
    assert list(metadata.columns) == ["car", "angle", "year", "make", "model", "trim1", "trim2"]
    assert metadata["angle"].tolist() == list(range(1, 17)) * 4
    cars = pd.read_csv(SAMPLE_DIR / "metadata.csv", dtype={"id": str}).set_index("id")
    first_test_car = split_image_id(test_ids[0])[0]
    assert metadata.loc[test_ids[5], "make"] == cars.loc[first_test_car, "make"]
    assert (metadata.groupby("car")["model"].nunique() == 1).all()
    expected = extracted.expected_submission()
    pd.testing.assert_frame_equal(zipped.expected_submission(), expected)
    assert expected.columns.tolist() == ["img"] and expected["img"].tolist() == [f"{i}.jpg" for i in test_ids]


def test_masks_from_zipped_csv_when_gifs_absent(zipped_dir, true_masks, train_ids, tmp_path):
    copy = tmp_path / "no_gifs"
    shutil.copytree(zipped_dir, copy)
    (copy / "train_masks.zip").unlink()
    np.testing.assert_array_equal(get_competition("carvana", copy).read_masks(train_ids[::7]), true_masks[::7])


def test_ids_from_csvs_when_image_folders_absent(train_ids, test_ids, tmp_path):
    copy = tmp_path / "csv_only"
    copy.mkdir()
    for name in CSV_NAMES:
        shutil.copyfile(SAMPLE_DIR / name, copy / name)
    competition = get_competition("carvana", copy)
    assert competition.train_ids() == train_ids
    assert competition.test_ids() == test_ids
    np.testing.assert_array_equal(competition.read_mask(train_ids[3]) * 1, read_gif(
        SAMPLE_DIR / "train_masks" / f"{train_ids[3]}_mask.gif")[1])


def test_metadata_and_submission_without_csvs(make_folder, train_ids, test_ids):
    root = make_folder(train_ids[:3], test_ids[:2])
    (root / "metadata.csv").unlink()
    (root / "sample_submission.csv").unlink()
    competition = get_competition("carvana", root)
    metadata = competition.metadata()
    assert metadata.index.tolist() == train_ids[:3] + test_ids[:2]
    assert metadata["angle"].tolist() == [1, 2, 3, 1, 2]
    assert metadata[["year", "make"]].isna().all().all()
    assert competition.expected_submission()["img"].tolist() == [f"{i}.jpg" for i in test_ids[:2]]


# --- RLE, submission rows and groups ----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["random", "empty", "full", "first_pixel", "last_pixel", "corners"])
def test_row_major_rle_round_trips_at_full_size(case):
    mask = np.zeros(SIZE, bool)
    if case == "random":
        mask = np.random.default_rng(7).random(SIZE) > 0.6
    elif case == "full":
        mask[:] = True
    elif case == "first_pixel":
        mask[0, 0] = True
    elif case == "last_pixel":
        mask[-1, -1] = True
    elif case == "corners":
        mask[0, -1] = mask[1, 0] = True
    text = rle.encode(mask, order="C")
    np.testing.assert_array_equal(rle.decode(text, SIZE, order="C"), mask)
    expected = {"empty": "", "full": f"1 {1280 * 1918}", "first_pixel": "1 1", "last_pixel": f"{1280 * 1918} 1",
                "corners": "1918 2"}  # row-major: the last pixel of row 0 touches the first of row 1
    if case in expected:
        assert text == expected[case]


def test_submission_rows(extracted, test_ids, true_masks):
    rows = extracted.submission_rows(test_ids[0], true_masks[0])
    assert len(rows) == 1 and rows[0][0] == f"{test_ids[0]}.jpg"
    np.testing.assert_array_equal(rle.decode(rows[0][1], SIZE, order="C"), true_masks[0])
    with pytest.raises(ValueError, match=test_ids[1]):
        extracted.submission_rows(test_ids[1], np.zeros((640, 959), bool))


def test_groups_keep_each_car_on_one_side(extracted, train_ids):
    groups = extracted.groups(train_ids)
    assert groups.shape == (48,) and len(set(groups)) == 3
    for car in set(groups):
        members = [image_id for image_id, group in zip(train_ids, groups) if group == car]
        assert len(members) == 16 and all(image_id.startswith(car) for image_id in members)
    assert extracted.stratify_labels(train_ids) is None
    splitter = GroupShuffleSplit(n_splits=20, test_size=0.34, random_state=0)
    for train_index, validation_index in splitter.split(train_ids, groups=groups):
        assert not set(groups[train_index]) & set(groups[validation_index])
        assert len(validation_index) % 16 == 0 and len(validation_index) > 0


# --- the backdrop ----------------------------------------------------------------------------------------


def backdrop_pixels(mask):
    """Pixels well away from the car of ``mask``: outside its box, grown more downward for the floor shadow."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    outside = np.ones(mask.shape, bool)
    outside[max(rows[0] - 40, 0): rows[-1] + 130, max(columns[0] - 40, 0): columns[-1] + 40] = False
    return outside


def backdrop_errors(estimate, photographs, backdrops):
    """|estimate - photograph| (largest over the channels) where each photograph shows plain backdrop, at every
    4th pixel for speed, all photographs pooled."""
    return np.concatenate([np.abs(estimate[::4, ::4] - photograph[::4, ::4]).max(axis=-1)[backdrop[::4, ::4]]
                           for photograph, backdrop in zip(photographs, backdrops)])


def test_median_reveals_the_backdrop(extracted, train_ids, true_masks):
    car = split_image_id(train_ids[0])[0]
    image_ids = extracted.car_images(car)
    assert image_ids == train_ids[:16]
    photographs = extracted.read_images(image_ids)
    median = extracted.background(car)
    assert median.dtype == np.float32 and median.shape == (*SIZE, 3) and not median.flags.writeable
    assert extracted.background(car) is median  # cached
    np.testing.assert_array_equal(median, np.median(photographs, axis=0))
    backdrops = [backdrop_pixels(mask) for mask in true_masks[:16]]
    photographs = photographs.astype(np.float32)
    median_errors = backdrop_errors(median, photographs, backdrops)
    mean_errors = backdrop_errors(extracted.background(car, statistic="mean"), photographs, backdrops)
    # The median matches the backdrop up to JPEG noise almost everywhere the photographs show it; what is left
    # is the car's middle, which most angles cover. The mean smears the car over every angle's backdrop.
    assert (median_errors <= 4).mean() > 0.97
    assert (median_errors <= 4).mean() > (mean_errors <= 4).mean() + 0.02
    assert median_errors.mean() < 0.8 * mean_errors.mean()
    with pytest.raises(ValueError, match="mode"):
        extracted.background(car, statistic="mode")


def test_background_channels(train_ids):
    competition = get_competition("carvana", SAMPLE_DIR, background_channels=True)
    image_id = train_ids[21]
    image = competition.read_image(image_id)
    assert image.dtype == np.uint8 and image.shape == (*SIZE, 6)
    rgb = get_competition("carvana", SAMPLE_DIR).read_image(image_id)
    np.testing.assert_array_equal(image[..., :3], rgb)
    expected = np.abs(rgb - competition.background(split_image_id(image_id)[0]))
    assert np.abs(image[..., 3:] - expected).max() <= 0.5
    assert image[..., 3:].max() > 100
    np.testing.assert_array_equal(image[..., 3:].max(axis=-1),
                                  np.round(competition.background_difference(image_id)).astype(np.uint8))


def test_baseline_mask_scores_well_above_trivial(baseline, true_masks, train_ids, extracted):
    scores, _ = baseline
    all_car = dice_scores(true_masks, np.ones_like(true_masks)).mean()
    assert scores.mean() > 0.8 and scores.mean() > 2 * all_car
    # Its known weakness: in front and back views the median is car beside the car as well.
    angles = np.array([split_image_id(image_id)[1] for image_id in train_ids])
    side = np.isin(angles, (4, 5, 6, 12, 13, 14))
    front_back = np.isin(angles, (1, 9))
    assert scores[side].mean() > 0.85 and scores[side].mean() > scores[front_back].mean() + 0.1
    mask = extracted.baseline_mask(train_ids[4])
    assert mask.dtype == bool and mask.shape == SIZE
    assert dice_scores(true_masks[4], mask)[0] == pytest.approx(scores[4])


def test_fill_columns_and_difference_mask():
    outline = np.zeros((9, 6), bool)
    outline[1, 1:5] = outline[7, 1:4] = outline[4, 4] = True
    filled = fill_columns(outline)
    assert filled[:, 0].sum() == 0 and filled[1:8, 1:4].all() and filled[:, 4].sum() == 4
    assert (filled[0] | filled[8]).sum() == 0
    # A broken outline around a quiet middle (what a car looks like against its median) becomes one solid car.
    difference = np.zeros(SIZE, np.float32)
    difference[400:420, 300:1600] = difference[800:820, 300:1600] = 80
    difference[400:820, 300:320] = 80
    difference[5:9, 5:9] = 80  # too small to survive the opening
    mask = difference_mask(difference, threshold=30)
    rectangle = np.zeros(SIZE, bool)
    rectangle[400:820, 300:1600] = True
    # Only the corners are rounded off by the opening; the speck is gone.
    assert not (mask & ~rectangle).any() and mask.sum() > 0.999 * rectangle.sum()


def test_foreground_box_holds_every_car_pixel(baseline, true_masks):
    _, boxes = baseline
    for box, mask in zip(boxes, true_masks):
        top, bottom, left, right = box
        cropped = mask[top:bottom, left:right]
        assert cropped.shape == (bottom - top, right - left)
        assert cropped.sum() == mask.sum()
        assert cropped.size < 0.6 * mask.size
    assert foreground_box(np.zeros(SIZE, np.float32), 10) == (0, 1280, 0, 1918)
    difference = np.zeros(SIZE, np.float32)
    difference[100, 200] = difference[300, 1900] = 50
    assert foreground_box(difference, 10, margin=32) == (68, 333, 168, 1918)


# --- errors name the file -------------------------------------------------------------------------------


def test_wrong_size_jpg_names_the_file(make_folder, train_ids):
    root = make_folder(train_ids[:2])
    Image.fromarray(np.zeros((1280, 1916, 3), np.uint8)).save(root / "train" / f"{train_ids[1]}.jpg")
    competition = get_competition("carvana", root)
    assert competition.read_image(train_ids[0]).shape == (*SIZE, 3)
    with pytest.raises(ValueError, match=f"{train_ids[1]}.jpg"):
        competition.read_image(train_ids[1])


def test_truncated_jpg_names_the_file(make_folder, train_ids, test_ids, tmp_path):
    root = make_folder(train_ids[:1], test_ids[:2])
    path = root / "test" / f"{test_ids[1]}.jpg"
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match=f"{test_ids[1]}.jpg"):
        get_competition("carvana", root).read_image(test_ids[1], "test")
    zipped = sample.kaggle_zip_layout(root, tmp_path / "zipped")
    with pytest.raises(ValueError, match=f"{test_ids[1]}.jpg"):
        get_competition("carvana", zipped).read_image(test_ids[1], "test")


def test_missing_and_wrong_size_masks_name_the_file(make_folder, train_ids):
    root = make_folder(train_ids[:3])
    (root / "train_masks" / f"{train_ids[0]}_mask.gif").unlink()
    mask = Image.frombytes("P", (1918, 1279), bytes(1918 * 1279))
    mask.putpalette([0, 0, 0, 255, 255, 255])
    mask.save(root / "train_masks" / f"{train_ids[1]}_mask.gif")
    competition = get_competition("carvana", root)
    with pytest.raises(FileNotFoundError, match=f"{train_ids[0]}_mask.gif"):
        competition.read_mask(train_ids[0])
    with pytest.raises(ValueError, match=f"{train_ids[1]}_mask.gif"):
        competition.read_mask(train_ids[1])
    assert competition.read_mask(train_ids[2]).any()


def test_duplicate_csv_ids(make_folder, train_ids):
    root = make_folder(train_ids[:3])
    shutil.rmtree(root / "train_masks")
    table = pd.read_csv(root / "train_masks.csv", dtype=str)
    pd.concat([table, table.iloc[[1]]]).to_csv(root / "train_masks.csv", index=False)
    with pytest.raises(ValueError, match=train_ids[1]):
        get_competition("carvana", root).read_mask(train_ids[0])
    cars = pd.read_csv(root / "metadata.csv", dtype=str)
    pd.concat([cars, cars.iloc[[2]]]).to_csv(root / "metadata.csv", index=False)
    with pytest.raises(ValueError, match=cars["id"].iloc[2]):
        get_competition("carvana", root).metadata()


def test_car_with_too_few_angles_names_the_car(make_folder, train_ids):
    root = make_folder(train_ids[:2] + train_ids[16:20])
    competition = get_competition("carvana", root, background_channels=True)
    short_car, full_car = split_image_id(train_ids[0])[0], split_image_id(train_ids[16])[0]
    with pytest.raises(ValueError, match=short_car):
        competition.background(short_car)
    with pytest.raises(ValueError, match=short_car):
        competition.read_image(train_ids[0])
    assert competition.car_images(full_car) == train_ids[16:20]
    with pytest.raises(ValueError, match="not-an-id"):
        competition.groups(["not-an-id"])


def test_missing_everything_is_a_file_not_found_error(tmp_path):
    competition = get_competition("carvana", tmp_path)
    with pytest.raises(FileNotFoundError, match="train_masks.csv"):
        competition.train_ids()
    with pytest.raises(FileNotFoundError, match="sample_submission.csv"):
        competition.test_ids()
