"""Shared fixtures: the committed TGS sample, a zipped copy of it, and small damaged copies for error cases."""

import os

# TensorFlow reads this when it is first imported; keep its C++ logs out of the test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from seglib import env, sample  # noqa: E402


@pytest.fixture(scope="session")
def sample_dir():
    """The committed synthetic TGS sample (extracted layout). Tests must not modify it."""
    path = env.SAMPLE_ROOT / "tgs"
    assert (path / "train.csv").is_file(), f"committed sample missing at {path}"
    return path


@pytest.fixture(scope="session")
def zipped_sample_dir(sample_dir, tmp_path_factory):
    """The sample in Kaggle's download layout: train.zip (images/..., masks/...), test.zip and the CSVs."""
    return sample.kaggle_zip_layout(sample_dir, tmp_path_factory.mktemp("zipped") / "tgs")


@pytest.fixture(scope="session")
def sample_train_ids(sample_dir):
    """Train ids in train.csv order, read with pandas (independently of the adapter)."""
    return pd.read_csv(sample_dir / "train.csv", dtype=str, keep_default_na=False)["id"].tolist()


@pytest.fixture(scope="session")
def sample_test_ids(sample_dir):
    return sorted(path.stem for path in (sample_dir / "test" / "images").glob("*.png"))


@pytest.fixture
def make_tgs_folder(sample_dir, sample_train_ids, sample_test_ids, tmp_path):
    """Build a tiny TGS-layout folder in tmp_path from the first ``num_train`` / ``num_test`` sample ids.

    Returns ``make(name="tgs", num_train=4, num_test=2) -> (folder Path, train ids, test ids)``; the caller then
    damages files in the copy.
    """

    def make(name="tgs", num_train=4, num_test=2):
        root = tmp_path / name
        train_ids, test_ids = sample_train_ids[:num_train], sample_test_ids[:num_test]
        for folder in ("train/images", "train/masks", "test/images"):
            (root / folder).mkdir(parents=True)
        for image_id in train_ids:
            for folder in ("train/images", "train/masks"):
                shutil.copyfile(sample_dir / folder / f"{image_id}.png", root / folder / f"{image_id}.png")
        for image_id in test_ids:
            shutil.copyfile(sample_dir / "test/images" / f"{image_id}.png", root / "test/images" / f"{image_id}.png")
        train = pd.read_csv(sample_dir / "train.csv", dtype=str, keep_default_na=False).set_index("id")
        train.loc[train_ids].reset_index().to_csv(root / "train.csv", index=False)
        depths = pd.read_csv(sample_dir / "depths.csv", dtype={"id": str}).set_index("id")
        depths.loc[train_ids + test_ids].reset_index().to_csv(root / "depths.csv", index=False)
        pd.DataFrame({"id": test_ids, "rle_mask": "1 1"}).to_csv(root / "sample_submission.csv", index=False)
        return Path(root), train_ids, test_ids

    return make
