"""benchmarks/tgs_holdout.py, the issue-12 judge: a held-out split in the Kaggle layout and its official score,
on the bundled TGS sample (the same code reads ../shared/realdata/tgs_salt)."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("tgs_holdout", ROOT / "benchmarks" / "tgs_holdout.py")
tgs_holdout = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tgs_holdout)


@pytest.fixture(scope="module")
def holdout(tmp_path_factory):
    target = tmp_path_factory.mktemp("holdout") / "tgs"
    tgs_holdout.make(ROOT / "data/sample/tgs", target, test_size=20, seed=0)
    return target


def submission(holdout, path, empty=False):
    truth = pd.read_csv(Path(f"{holdout}-truth") / "test_truth.csv", dtype=str, keep_default_na=False)
    truth.assign(rle_mask="" if empty else truth["rle_mask"]).to_csv(path, index=False)
    return path


def test_make_keeps_the_held_out_masks_outside_the_folder_the_run_reads(holdout):
    train = pd.read_csv(holdout / "train.csv", dtype=str, keep_default_na=False)
    test_ids = sorted(path.stem for path in (holdout / "test/images").iterdir())
    truth = pd.read_csv(Path(f"{holdout}-truth") / "test_truth.csv", dtype=str, keep_default_na=False)
    assert len(test_ids) == 20 and sorted(truth["id"]) == test_ids
    assert not set(test_ids) & set(train["id"]) and not (holdout / "test/masks").exists()
    assert (truth["rle_mask"] == "").any() and (truth["rle_mask"] != "").any()  # stratified: both kinds


def test_score_and_the_paired_difference(holdout, tmp_path, capsys):
    perfect = submission(holdout, tmp_path / "perfect.csv")
    empty = submission(holdout, tmp_path / "empty.csv", empty=True)
    assert tgs_holdout.score(holdout, perfect) == 1.0
    empty_score = tgs_holdout.score(holdout, empty, against=perfect)
    printed = capsys.readouterr().out
    assert f"all-empty masks {empty_score:.4f}" in printed and 0 < empty_score < 1
    assert f"minus {perfect}: {empty_score - 1:+.4f}" in printed
    assert "salt images predicted empty: 0 of 20" in printed  # the perfect one
    salt = int((pd.read_csv(Path(f"{holdout}-truth") / "test_truth.csv", keep_default_na=False)["rle_mask"] != "").sum())
    assert f"salt images predicted empty: {salt} of 20, mean score 0.000" in printed  # the empty one


def test_a_submission_missing_held_out_ids_is_an_error(holdout, tmp_path):
    path = submission(holdout, tmp_path / "short.csv")
    pd.read_csv(path, dtype=str, keep_default_na=False).iloc[1:].to_csv(path, index=False)
    with pytest.raises(ValueError, match="short.csv: no rows for 1 held-out ids"):
        tgs_holdout.score(holdout, path)
