"""The five notebooks end to end through papermill, on the sample extracted and laid out as Kaggle's zips.

nbval (``pytest --nbval-lax notebooks``) checks the committed notebooks cell by cell; this test checks what a
user gets from ``python -m seglib run``: a run folder with every artifact and a valid submission, and the
same submission whether the data are extracted or still zipped.
"""

import pandas as pd
import pytest

from seglib import artifacts
from seglib.competitions import get_competition
from seglib.env import SAMPLE_ROOT
from seglib.notebooks import NOTEBOOKS, run_notebooks
from seglib.sample import kaggle_zip_layout
from seglib.submit import validate_submission

# Fewer epochs than the notebooks' default keep the test short; still enough to beat the all-empty baseline,
# which notebook 04 asserts.
PARAMETERS = {"EPOCHS": 15, "TRAIN_MINUTES": 3.0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    sample_dir = SAMPLE_ROOT / "tgs"
    zipped_dir = kaggle_zip_layout(sample_dir, tmp_path_factory.mktemp("zipped") / "tgs")
    results = {}
    for layout, data_dir in (("extracted", sample_dir), ("zipped", zipped_dir)):
        run_dir = tmp_path_factory.mktemp(f"run_{layout}")
        run_notebooks(run_dir, {**PARAMETERS, "DATA_DIR": str(data_dir)}, progress=False)
        results[layout] = (data_dir, run_dir)
    return results


def test_zipped_layout_really_is_zipped(runs):
    data_dir, _ = runs["zipped"]
    assert (data_dir / "train.zip").is_file() and (data_dir / "test.zip").is_file()
    assert not (data_dir / "train").exists() and not (data_dir / "test").exists()


@pytest.mark.parametrize("layout", ["extracted", "zipped"])
def test_run_folder_holds_every_artifact(runs, layout):
    _, run_dir = runs[layout]
    for name in (artifacts.MEAN_STD, artifacts.MODEL, artifacts.HISTORY, artifacts.TRAIN_CONFIG, artifacts.POLICY,
                 artifacts.VALIDATION_SWEEP, artifacts.SUBMISSION):
        assert (run_dir / name).is_file(), name
    for notebook in NOTEBOOKS:
        assert (run_dir / "notebooks" / notebook).is_file(), notebook
    assert len(list((run_dir / "plots").glob("*.png"))) >= 8
    assert not list(run_dir.rglob("*.partial*")), "a temporary file was left behind"


@pytest.mark.parametrize("layout", ["extracted", "zipped"])
def test_submission_is_valid(runs, layout):
    data_dir, run_dir = runs[layout]
    competition = get_competition("tgs", data_dir)
    summary = validate_submission(run_dir / artifacts.SUBMISSION, competition)
    assert summary["rows"] == len(competition.test_ids())
    # A trained model predicts salt on some test images and none on others.
    assert 0 < summary["empty_masks"] < summary["rows"]


def test_zipped_and_extracted_give_the_same_submission(runs):
    extracted = pd.read_csv(runs["extracted"][1] / artifacts.SUBMISSION, dtype=str, keep_default_na=False)
    zipped = pd.read_csv(runs["zipped"][1] / artifacts.SUBMISSION, dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(extracted, zipped)
