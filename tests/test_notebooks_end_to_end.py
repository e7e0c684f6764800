"""The five notebooks end to end through papermill, on the sample extracted and laid out as Kaggle's zips.

nbval (``pytest --nbval-lax notebooks``) checks the committed notebooks cell by cell; this test checks what a
user gets from ``python -m seglib run``: a run folder with every artifact and a valid submission, and the
same submission whether the data are extracted or still zipped.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import seglib_runs

from seglib import artifacts, store
from seglib.competitions import get_competition
from seglib.env import SAMPLE_ROOT
from seglib.notebooks import NOTEBOOKS, run_notebooks
from seglib.sample import kaggle_zip_layout
from seglib.submit import validate_submission

pytestmark = pytest.mark.slow  # whole-run or multi-process tests: outside the `-m "not slow"` inner loop

# The module's four runs (TGS, Carvana, hand bone, the recipe) start at once as `python -m seglib run` processes
# and share the two cores: a run spends much of its time on one core (kernels starting, imports, EDA, papermill),
# so together they end minutes sooner than one after another. Epoch limits, not wall-clock budgets, end their
# training, so sharing the cores changes how long they take, not what they write.
# TGS: fewer epochs than the notebooks' default; still enough to beat the all-empty baseline (notebook 04 asserts it).
PARAMETERS = {"EPOCHS": 30, "TRAIN_MINUTES": None}
# Carvana's and the hand X-rays' samples are small (48 and 12 training images); a few epochs show the seams work.
OTHER_PARAMETERS = {"EPOCHS": 6, "TRAIN_MINUTES": None}
# Every switch of notebook 03 at once, small: two folds, BCE/Dice then a Lovasz stage, a residual/scSE/
# hypercolumn U-Net with the empty-image head, and D4 test-time augmentation. The tests check what the switches
# write, not how well it scores, so three epochs and two of fine-tuning do.
RECIPE_PARAMETERS = {
    "EPOCHS": 3, "TRAIN_MINUTES": None, "FOLDS": 2, "LOSS": "bce_dice", "FINE_TUNE_LOSS": "lovasz",
    "FINE_TUNE_EPOCHS": 2, "FINE_TUNE_MINUTES": None, "TTA": "d4",
    "MODEL": {"depth": 3, "base_filters": 8, "batch_norm": True, "residual": True, "scse": True,
              "hypercolumn": True, "empty_head": True},
}
RUNS = {"tgs": {**PARAMETERS, "DATA_DIR": str(SAMPLE_ROOT / "tgs")},
        "carvana": {**OTHER_PARAMETERS, "COMPETITION": "carvana"},
        "handbone": {**OTHER_PARAMETERS, "COMPETITION": "handbone"},
        "recipe": RECIPE_PARAMETERS}


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """{name: process} of the module's runs, all started now; killed at the module's end."""
    base = tmp_path_factory.mktemp("runs")
    processes = {name: seglib_runs.start(base / name, parameters) for name, parameters in RUNS.items()}
    yield processes
    for process in processes.values():
        seglib_runs.kill(process)


def finished(started, name):
    """The run folder of one of the started runs, once it has ended well."""
    return seglib_runs.wait(started[name])


@pytest.fixture(scope="module")
def runs(started, tmp_path_factory):
    """The five notebooks on the extracted sample; then notebook 05 alone on the zipped layout, with the same
    trained models and policy (a copy of the run folder), which must give the very same submission."""
    sample_dir = SAMPLE_ROOT / "tgs"
    zipped_dir = kaggle_zip_layout(sample_dir, tmp_path_factory.mktemp("zipped") / "tgs")
    extracted_run = finished(started, "tgs")
    zipped_run = tmp_path_factory.mktemp("run_zipped") / "run"
    shutil.copytree(extracted_run, zipped_run, ignore=shutil.ignore_patterns(artifacts.SUBMISSION, "notebooks"))
    run_notebooks(zipped_run, {**PARAMETERS, "DATA_DIR": str(zipped_dir)}, notebooks=["05_submission.ipynb"],
                  progress=False)
    return {"extracted": (sample_dir, extracted_run), "zipped": (zipped_dir, zipped_run)}


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
    notebooks = NOTEBOOKS if layout == "extracted" else ("05_submission.ipynb",)
    for notebook in notebooks:
        assert (run_dir / "notebooks" / notebook).is_file(), notebook
    assert not (run_dir / artifacts.BACKUP).exists(), "a finished fit leaves no backup"
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


# --- the other competitions: the same notebooks, only COMPETITION changed ----------------------------------

@pytest.fixture(scope="module", params=["carvana", "handbone"])
def other_run(request, started):
    return request.param, finished(started, request.param)


def test_other_competitions_end_in_a_valid_submission(other_run):
    name, run_dir = other_run
    competition = get_competition(name, SAMPLE_ROOT / name)
    summary = validate_submission(run_dir / artifacts.SUBMISSION, competition)
    expected = competition.expected_submission()
    submission = pd.read_csv(run_dir / artifacts.SUBMISSION, dtype=str, keep_default_na=False)
    # Complete and in the expected order: every test image, and for the hand X-rays every test image x class.
    assert summary["rows"] == len(expected) == len(competition.test_ids()) * competition.num_classes
    pd.testing.assert_frame_equal(submission[list(expected.columns)], expected.astype(str))
    assert summary["mean_coverage"] > 0
    for name_of_artifact in (artifacts.MODEL, artifacts.POLICY, artifacts.TRAIN_CONFIG):
        assert (run_dir / name_of_artifact).is_file()
    assert not list(run_dir.rglob("*.partial*"))


def test_other_competitions_draw_their_own_eda(other_run):
    name, run_dir = other_run
    plots = {path.stem for path in (run_dir / "plots").glob("*.png")}
    own = {"carvana": {"car_angles", "mask_area_by_angle", "car_background", "background_difference"},
           "handbone": {"class_pixel_ratio", "class_overlap", "validation_score_per_class"}}[name]
    assert own <= plots, own - plots
    assert {"resolution_ceiling", "metadata_distributions", "submission_cutouts"} <= plots


# --- the quality recipe switches through the notebooks ------------------------------------------------------

@pytest.fixture(scope="module")
def recipe_run(started):
    return finished(started, "recipe")


def test_recipe_writes_a_complete_out_of_fold_store(recipe_run):
    competition = get_competition("tgs", SAMPLE_ROOT / "tgs")
    out_of_fold = store.Predictions(recipe_run / artifacts.OOF_STORE)
    assert sorted(out_of_fold.ids) == sorted(competition.train_ids()), "every training image predicted once"
    assert sorted(set(out_of_fold.folds)) == [0, 1]
    assert out_of_fold.probabilities.shape == (len(competition.train_ids()), 112, 112, 1)
    assert out_of_fold.probabilities.dtype == np.float16
    config = artifacts.load_json(recipe_run / artifacts.TRAIN_CONFIG)
    assert config["models"] == ["fold0/model.keras", "fold1/model.keras"] and config["tta"] == "d4"
    for fold in (0, 1):
        assert (recipe_run / f"fold{fold}" / artifacts.FINE_TUNE_HISTORY).is_file()
        validation_ids = config["fold_validation_ids"][fold]
        assert set(out_of_fold.folds[[out_of_fold.ids.index(i) for i in validation_ids]]) == {fold}


def test_recipe_policy_and_submission(recipe_run):
    competition = get_competition("tgs", SAMPLE_ROOT / "tgs")
    run_policy = artifacts.load_json(recipe_run / artifacts.POLICY)
    low, high = run_policy["confidence_interval"]
    assert low <= run_policy["validation_score"] <= high
    assert run_policy["validation_images"] == len(competition.train_ids())
    assert {"min_area", "fill_holes", "threshold"} <= set(run_policy)
    summary = validate_submission(recipe_run / artifacts.SUBMISSION, competition)
    assert summary["rows"] == len(competition.test_ids())
    assert (recipe_run / "plots" / "policy_surface.png").is_file()
    assert not list(recipe_run.rglob("*.partial*"))


def test_shards_written_by_two_processes_merge_into_the_notebook_submission(runs, tmp_path):
    """python -m seglib submit --shard 1/2 and 2/2 at once (as on two machines), then merge: the same file as
    notebook 05's."""
    data_dir, run_dir = runs["extracted"]
    shard_run = tmp_path / "run"
    shutil.copytree(run_dir, shard_run, ignore=shutil.ignore_patterns(artifacts.SUBMISSION, "notebooks"))
    environment = dict(os.environ)
    processes = [subprocess.Popen([sys.executable, "-m", "seglib", "submit", str(shard_run), "--shard", f"{index}/2",
                                   "--data-dir", str(data_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=environment) for index in (1, 2)]
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
        assert "valid" in stdout
    shards = [shard_run / f"submission.shard{index}of2.csv" for index in (1, 2)]
    merged = tmp_path / "merged.csv"
    completed = subprocess.run([sys.executable, "-m", "seglib", "merge", "tgs", str(data_dir), str(merged),
                                *map(str, shards)], capture_output=True, text=True, env=environment, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert merged.read_bytes() == (run_dir / artifacts.SUBMISSION).read_bytes()
