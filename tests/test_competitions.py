"""The competition registry and the TGS adapter, on real extracted and zipped Kaggle layouts."""

import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seglib import rle
from seglib.competitions import get_competition, known_competitions
from seglib.competitions.files import CompetitionFiles
from seglib.sample import kaggle_zip_layout


def read_png(path):
    with Image.open(path) as image:
        return np.array(image)


# --- registry -----------------------------------------------------------------------------------------


def test_known_competitions_include_tgs():
    assert "tgs" in known_competitions()


def test_unknown_competition_lists_known_names(sample_dir):
    with pytest.raises(ValueError) as raised:
        get_competition("no-such-competition", sample_dir)
    message = str(raised.value)
    assert "no-such-competition" in message
    for name in known_competitions():
        assert name in message


def test_missing_data_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        get_competition("tgs", tmp_path / "does-not-exist")


# --- extracted and zipped layouts agree ----------------------------------------------------------------


@pytest.fixture(scope="module")
def extracted(sample_dir):
    return get_competition("tgs", sample_dir)


@pytest.fixture(scope="module")
def zipped(zipped_sample_dir):
    return get_competition("tgs", zipped_sample_dir)


def test_zipped_layout_really_is_zipped(zipped_sample_dir):
    assert (zipped_sample_dir / "train.zip").is_file()
    assert (zipped_sample_dir / "test.zip").is_file()
    assert not (zipped_sample_dir / "train").exists()
    with zipfile.ZipFile(zipped_sample_dir / "train.zip") as archive:
        names = archive.namelist()
    assert any(name.startswith("images/") for name in names)
    assert not any(name.startswith("train/") for name in names)


def test_train_and_test_ids(extracted, zipped, sample_train_ids, sample_test_ids):
    assert extracted.train_ids() == sample_train_ids
    assert zipped.train_ids() == sample_train_ids
    assert extracted.test_ids() == sample_test_ids
    assert zipped.test_ids() == sample_test_ids
    assert len(sample_train_ids) == 150 and len(sample_test_ids) == 40


def test_images_equal_and_well_formed(extracted, zipped, sample_dir, sample_train_ids, sample_test_ids):
    for part, ids in (("train", sample_train_ids), ("test", sample_test_ids)):
        from_folder = extracted.read_images(ids, part)
        from_zip = zipped.read_images(ids, part)
        assert from_folder.dtype == np.uint8 and from_zip.dtype == np.uint8
        assert from_folder.shape == (len(ids), 101, 101, 1)
        np.testing.assert_array_equal(from_folder, from_zip)
        # Independently: the first channel of the RGB PNG as Pillow reads it.
        png = read_png(sample_dir / part / "images" / f"{ids[-1]}.png")
        np.testing.assert_array_equal(from_folder[-1, ..., 0], png[..., 0] if png.ndim == 3 else png)


def test_masks_equal_and_boolean(extracted, zipped, sample_dir, sample_train_ids):
    from_folder = extracted.read_masks(sample_train_ids)
    from_zip = zipped.read_masks(sample_train_ids)
    assert from_folder.dtype == bool and from_zip.dtype == bool
    assert from_folder.shape == (150, 101, 101)
    np.testing.assert_array_equal(from_folder, from_zip)
    assert from_folder.any() and not from_folder.all()
    for image_id, mask in zip(sample_train_ids[:10], from_folder[:10]):
        np.testing.assert_array_equal(mask, read_png(sample_dir / "train/masks" / f"{image_id}.png") > 0)


def test_metadata_equal(extracted, zipped, sample_dir):
    from_folder, from_zip = extracted.metadata(), zipped.metadata()
    pd.testing.assert_frame_equal(from_folder, from_zip)
    depths = pd.read_csv(sample_dir / "depths.csv", dtype={"id": str})
    assert list(from_folder.columns) == ["z"]
    assert set(from_folder.index) == set(depths["id"])
    assert from_folder.loc[depths["id"].iloc[3], "z"] == depths["z"].iloc[3]


def test_masks_from_csv_when_mask_folder_absent(sample_dir, extracted, sample_train_ids, tmp_path):
    copy = tmp_path / "tgs"
    shutil.copytree(sample_dir, copy)
    shutil.rmtree(copy / "train" / "masks")
    without_pngs = get_competition("tgs", copy)
    from_csv = without_pngs.read_masks(sample_train_ids)
    assert from_csv.dtype == bool
    np.testing.assert_array_equal(from_csv, extracted.read_masks(sample_train_ids))


def test_zip_members_with_folder_prefix(sample_dir, extracted, sample_train_ids, sample_test_ids, tmp_path):
    root = tmp_path / "prefixed"
    root.mkdir()
    for name in ("train.csv", "depths.csv", "sample_submission.csv"):
        shutil.copyfile(sample_dir / name, root / name)
    for top in ("train", "test"):
        with zipfile.ZipFile(root / f"{top}.zip", "w") as archive:
            for path in sorted((sample_dir / top).rglob("*.png")):
                archive.write(path, path.relative_to(sample_dir).as_posix())  # "train/images/<id>.png"
    with zipfile.ZipFile(root / "train.zip") as archive:
        assert all(name.startswith("train/") for name in archive.namelist())
    prefixed = get_competition("tgs", root)
    assert prefixed.test_ids() == sample_test_ids
    ids = sample_train_ids[:20]
    np.testing.assert_array_equal(prefixed.read_images(ids), extracted.read_images(ids))
    np.testing.assert_array_equal(prefixed.read_masks(ids), extracted.read_masks(ids))
    np.testing.assert_array_equal(prefixed.read_images(sample_test_ids[:5], "test"),
                                  extracted.read_images(sample_test_ids[:5], "test"))


# --- errors name the file -----------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_unreadable_image_names_the_file(make_tgs_folder, damage):
    root, train_ids, _ = make_tgs_folder()
    bad = root / "train/images" / f"{train_ids[1]}.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"this is not a png" * 10)
    competition = get_competition("tgs", root)
    assert competition.read_image(train_ids[0]).shape == (101, 101, 1)  # the others still read
    with pytest.raises(ValueError, match=f"{train_ids[1]}.png"):
        competition.read_image(train_ids[1])


def test_unreadable_mask_names_the_file(make_tgs_folder):
    root, train_ids, _ = make_tgs_folder()
    bad = root / "train/masks" / f"{train_ids[2]}.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(ValueError, match=f"{train_ids[2]}.png"):
        get_competition("tgs", root).read_mask(train_ids[2])


def test_unreadable_image_in_zip_names_the_file(make_tgs_folder, tmp_path):
    root, _, test_ids = make_tgs_folder()
    victim = root / "test/images" / f"{test_ids[0]}.png"
    victim.write_bytes(victim.read_bytes()[:50])
    zipped = kaggle_zip_layout(root, tmp_path / "zipped")
    assert (zipped / "test.zip").is_file() and not (zipped / "test").exists()
    with pytest.raises(ValueError, match=f"{test_ids[0]}.png"):
        get_competition("tgs", zipped).read_image(test_ids[0], "test")


def test_wrong_image_size_names_the_file(make_tgs_folder):
    root, train_ids, test_ids = make_tgs_folder()
    path = root / "test/images" / f"{test_ids[0]}.png"
    Image.fromarray(np.zeros((100, 101, 3), dtype=np.uint8)).save(path)
    competition = get_competition("tgs", root)
    with pytest.raises(ValueError, match=f"{test_ids[0]}.png"):
        competition.read_image(test_ids[0], "test")


def test_wrong_mask_size_names_the_file(make_tgs_folder):
    root, train_ids, _ = make_tgs_folder()
    path = root / "train/masks" / f"{train_ids[0]}.png"
    Image.fromarray(np.zeros((101, 64), dtype=np.uint8)).save(path)
    with pytest.raises(ValueError, match=f"{train_ids[0]}.png"):
        get_competition("tgs", root).read_mask(train_ids[0])


def test_train_csv_missing_column(make_tgs_folder):
    root, _, _ = make_tgs_folder()
    table = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    table.rename(columns={"rle_mask": "encoded"}).to_csv(root / "train.csv", index=False)
    with pytest.raises(ValueError, match="rle_mask"):
        get_competition("tgs", root).train_ids()


def test_train_csv_duplicate_id(make_tgs_folder):
    root, train_ids, _ = make_tgs_folder()
    table = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    pd.concat([table, table.iloc[[1]]]).to_csv(root / "train.csv", index=False)
    with pytest.raises(ValueError, match=train_ids[1]):
        get_competition("tgs", root).train_ids()


def test_read_csv_reads_zipped_csv(make_tgs_folder):
    root, train_ids, _ = make_tgs_folder()
    expected = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    with zipfile.ZipFile(root / "train.csv.zip", "w") as archive:
        archive.write(root / "train.csv", "train.csv")
    (root / "train.csv").unlink()
    files = CompetitionFiles(root)
    table = files.read_csv("train.csv", required_columns=("id", "rle_mask"), dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(table, expected)
    # The adapter goes through the same path.
    competition = get_competition("tgs", root)
    assert competition.train_ids() == train_ids
    shutil.rmtree(root / "train/masks")
    mask = competition.read_mask(train_ids[0])
    np.testing.assert_array_equal(mask, rle.decode(expected["rle_mask"].iloc[0], (101, 101), order="F"))


def test_read_csv_missing_file(make_tgs_folder):
    root, _, _ = make_tgs_folder()
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        CompetitionFiles(root).read_csv("nothing.csv")


def test_read_bytes_missing_member_in_zip(zipped_sample_dir):
    with pytest.raises(FileNotFoundError, match="no-such-id"):
        CompetitionFiles(zipped_sample_dir).read_bytes("train/images/no-such-id.png")



# --- the Kaggle CLI download: one <slug>.zip holding train.zip, test.zip and the CSVs ------------------------


@pytest.mark.parametrize("competition_name,slug", [("tgs", "tgs-salt-identification-challenge"),
                                                   ("carvana", "carvana-image-masking-challenge")])
@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_kaggle_cli_download_is_read_in_place(competition_name, slug, compression, tmp_path):
    from seglib.env import SAMPLE_ROOT
    from seglib.sample import kaggle_cli_layout

    source = SAMPLE_ROOT / competition_name
    downloaded = kaggle_cli_layout(source, tmp_path / "download", slug, compression=compression)
    assert [path.name for path in downloaded.iterdir()] == [f"{slug}.zip"]
    with zipfile.ZipFile(downloaded / f"{slug}.zip") as bundle:
        assert "train.zip" in bundle.namelist() and "test.zip" in bundle.namelist()
    bundled, extracted = get_competition(competition_name, downloaded), get_competition(competition_name, source)
    train_ids = extracted.train_ids()
    assert bundled.train_ids() == train_ids and bundled.test_ids() == extracted.test_ids()
    some = train_ids[:: max(1, len(train_ids) // 6)]
    np.testing.assert_array_equal(bundled.read_images(some), extracted.read_images(some))
    np.testing.assert_array_equal(bundled.read_masks(some), extracted.read_masks(some))
    test_some = extracted.test_ids()[:3]
    np.testing.assert_array_equal(bundled.read_images(test_some, "test"), extracted.read_images(test_some, "test"))
    pd.testing.assert_frame_equal(bundled.metadata(), extracted.metadata())


def test_kaggle_cli_download_missing_file_names_the_bundle(tmp_path, sample_dir):
    from seglib.sample import kaggle_cli_layout

    downloaded = kaggle_cli_layout(sample_dir, tmp_path / "download", "tgs-salt-identification-challenge")
    competition = get_competition("tgs", downloaded)
    with pytest.raises(FileNotFoundError, match="nowhere.csv is neither in .* or tgs-salt-identification-challenge.zip"):
        competition.files.read_csv("nowhere.csv")
