"""The committed synthetic TGS sample follows Kaggle's layout and byte conventions, and every committed sample
matches its generator byte for byte."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seglib import rle, sample
from seglib.sample import tgs

# Located through the package, so the tests pass from any working directory.
SAMPLE_DIR = sample.default_out_dir("tgs")


def read_png(path):
    """Return (PIL mode, pixel array) of a PNG."""
    with Image.open(path) as image:
        return image.mode, np.array(image)


@pytest.fixture(scope="module")
def train():
    return pd.read_csv(SAMPLE_DIR / "train.csv")


@pytest.fixture(scope="module")
def submission_ids():
    return pd.read_csv(SAMPLE_DIR / "sample_submission.csv")["id"].tolist()


def test_layout_and_counts(train, submission_ids):
    assert SAMPLE_DIR.is_dir(), f"missing committed sample {SAMPLE_DIR}; run `python -m seglib.sample tgs`"
    assert list(train.columns) == ["id", "rle_mask"]
    assert len(train) == tgs.NUM_TRAIN == 150 and train["id"].is_unique
    assert len(submission_ids) == tgs.NUM_TEST == 40 and len(set(submission_ids)) == 40
    assert not set(train["id"]) & set(submission_ids)
    assert all(len(identifier) == 10 and set(identifier) <= set("0123456789abcdef") for identifier in train["id"])
    assert sorted(path.stem for path in (SAMPLE_DIR / "train" / "images").glob("*.png")) == sorted(train["id"])
    assert sorted(path.stem for path in (SAMPLE_DIR / "train" / "masks").glob("*.png")) == sorted(train["id"])
    assert sorted(path.stem for path in (SAMPLE_DIR / "test" / "images").glob("*.png")) == sorted(submission_ids)


def test_images_are_rgb_with_identical_channels(train, submission_ids):
    paths = [SAMPLE_DIR / "train" / "images" / f"{identifier}.png" for identifier in train["id"]]
    paths += [SAMPLE_DIR / "test" / "images" / f"{identifier}.png" for identifier in submission_ids]
    black = 0
    for path in paths:
        mode, pixels = read_png(path)
        assert mode == "RGB" and pixels.shape == (101, 101, 3) and pixels.dtype == np.uint8, path.name
        assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all(), path.name
        black += not pixels.any()
    assert black >= 1


def test_masks_match_rle_and_byte_conventions(train):
    empty = 0
    for identifier, text in zip(train["id"], train["rle_mask"]):
        mode, pixels = read_png(SAMPLE_DIR / "train" / "masks" / f"{identifier}.png")
        assert pixels.shape == (101, 101), identifier
        if pixels.any():
            assert mode == "I;16" and pixels.dtype == np.uint16, identifier
            # A full-coverage mask holds only 65535.
            assert set(np.unique(pixels).tolist()) <= {0, 65535}, identifier
            assert text == rle.encode(pixels > 0, "F"), identifier
        else:
            empty += 1
            assert mode == "L" and pixels.dtype == np.uint8, identifier
            assert pd.isna(text), f"{identifier}: an empty mask must be an empty cell, got {text!r}"
    assert 0.35 <= empty / len(train) <= 0.40


def test_black_images_have_empty_masks(train):
    for identifier, text in zip(train["id"], train["rle_mask"]):
        _, pixels = read_png(SAMPLE_DIR / "train" / "images" / f"{identifier}.png")
        if not pixels.any():
            assert pd.isna(text), identifier


def test_depths_and_sample_submission(train, submission_ids):
    depths = pd.read_csv(SAMPLE_DIR / "depths.csv")
    assert list(depths.columns) == ["id", "z"] and depths["id"].is_unique
    assert set(depths["id"]) == set(train["id"]) | set(submission_ids)
    assert pd.api.types.is_integer_dtype(depths["z"]) and depths["z"].between(1, 1000).all()
    submission = pd.read_csv(SAMPLE_DIR / "sample_submission.csv")
    assert list(submission.columns) == ["id", "rle_mask"]
    assert (submission["rle_mask"] == "1 1").all()


def relative_files(root):
    """Every file under ``root``, as sorted relative paths."""
    return sorted(path.relative_to(root) for path in Path(root).rglob("*") if path.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("competition", sorted(sample.GENERATORS))
def test_generator_reproduces_committed_sample_byte_for_byte(tmp_path, competition):
    committed_dir = sample.default_out_dir(competition)
    fresh = sample.generate(competition, out_dir=tmp_path / competition)
    committed_files = relative_files(committed_dir)
    assert relative_files(fresh) == committed_files
    drifted = [str(path) for path in committed_files if (fresh / path).read_bytes() != (committed_dir / path).read_bytes()]
    assert not drifted, (f"committed sample differs from the generator; rerun `python -m seglib.sample {competition}`: "
                         f"{drifted[:5]}")


def test_unknown_competition_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="No sample generator"):
        sample.generate("no-such-competition", out_dir=tmp_path / "x")
