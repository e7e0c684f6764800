"""The streaming submission writer: resume after an interruption, shards and their merge, and from a store."""

import json
import logging

import keras
import numpy as np
import pandas as pd
import pytest

from seglib import SeglibError, env, predict, rle, store
from seglib.competitions import get_competition
from seglib.data import Normalization
from seglib.geometry import Geometry
from seglib.models import build_unet
from seglib.policy import Policy, apply_policy
from seglib.predict import predict_into_store, to_original_size
from seglib.submit import (ResumableRows, merge_submissions, parse_shard, shard_ids, shard_path, validate_submission,
                           write_submission, write_submission_from_store)

BATCH_SIZE = 8


@pytest.fixture(scope="module")
def competition(sample_dir):
    return get_competition("tgs", sample_dir)


@pytest.fixture(scope="module")
def predictor(competition):
    keras.utils.set_random_seed(5)
    model = build_unet((128, 128, 1), depth=2, base_filters=4)
    return model, Geometry("pad", 128, competition.image_size), Normalization([120.0], [40.0])


@pytest.fixture(scope="module")
def policy(competition, predictor):
    """A threshold at the median test probability, so the masks are neither all empty nor all full."""
    model, geometry, normalization = predictor
    images = geometry.to_model(normalization(competition.read_images(competition.test_ids()[:8], "test")))
    return Policy(float(np.median(predict.model_probabilities(model, images))))


@pytest.fixture(scope="module")
def uninterrupted(competition, predictor, policy, tmp_path_factory):
    """The submission written in one go: what every resumed or sharded run must reproduce."""
    model, geometry, normalization = predictor
    path = tmp_path_factory.mktemp("whole") / "submission.csv"
    write_submission(path, competition, model, geometry, normalization, policy, BATCH_SIZE, progress=False)
    return path.read_bytes()


def hidden_files(folder):
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


# --- shards ---------------------------------------------------------------------------------------------------


def test_parse_shard():
    assert parse_shard("2/4") == (2, 4) and parse_shard((1, 1)) == (1, 1) and parse_shard(None) is None
    for bad in ("0/4", "5/4", "2-4", "a/b", "3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


@pytest.mark.parametrize("count", [1, 3, 7, 45])
def test_shards_split_the_ids_into_contiguous_parts(count):
    image_ids = [f"id{index:02d}" for index in range(40)]
    parts = [shard_ids(image_ids, (index, count)) for index in range(1, count + 1)]
    assert sum(parts, []) == image_ids
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_shard_path(tmp_path):
    assert shard_path(tmp_path / "submission.csv", "2/4") == tmp_path / "submission.shard2of4.csv"
    assert shard_path(tmp_path / "submission.csv", None) == tmp_path / "submission.csv"


def test_shards_merge_into_the_whole_submission(competition, predictor, policy, uninterrupted, tmp_path):
    model, geometry, normalization = predictor
    paths = []
    for index in (1, 2, 3):
        summary = write_submission(tmp_path / "submission.csv", competition, model, geometry, normalization, policy,
                                   BATCH_SIZE, shard=f"{index}/3", progress=False)
        paths.append(shard_path(tmp_path / "submission.csv", f"{index}/3"))
        assert summary["rows"] == len(shard_ids(competition.test_ids(), (index, 3)))
    summary = merge_submissions(paths, tmp_path / "merged.csv", competition)
    assert summary["rows"] == 40
    assert (tmp_path / "merged.csv").read_bytes() == uninterrupted
    assert hidden_files(tmp_path) == []


def test_merge_rejects_a_missing_or_repeated_shard(competition, predictor, policy, tmp_path):
    model, geometry, normalization = predictor
    paths = [shard_path(tmp_path / "s.csv", f"{index}/2") for index in (1, 2)]
    for index in (1, 2):
        write_submission(tmp_path / "s.csv", competition, model, geometry, normalization, policy, BATCH_SIZE,
                         shard=f"{index}/2", progress=False)
    with pytest.raises(SeglibError, match="missing"):
        merge_submissions(paths[:1], tmp_path / "merged.csv", competition)
    with pytest.raises(SeglibError, match="duplicate"):
        merge_submissions([paths[0], paths[0], paths[1]], tmp_path / "merged.csv", competition)
    with pytest.raises(FileNotFoundError, match="shard3of2"):
        merge_submissions([paths[0], tmp_path / "s.shard3of2.csv"], tmp_path / "merged.csv", competition)
    assert not (tmp_path / "merged.csv").exists() and hidden_files(tmp_path) == []


# --- resume ---------------------------------------------------------------------------------------------------


def test_an_interrupted_run_resumes_where_it_stopped(make_tgs_folder, predictor, policy, uninterrupted, caplog):
    """A test image that cannot be read stops the run in its third batch; once the file is back, the run goes on
    from there and the result is byte for byte the uninterrupted submission."""
    model, geometry, normalization = predictor
    folder, _, test_ids = make_tgs_folder(num_train=2, num_test=40)
    pd.DataFrame({"id": test_ids, "rle_mask": ""}).to_csv(folder / "sample_submission.csv", index=False)
    competition = get_competition("tgs", folder)
    broken = folder / "test" / "images" / f"{test_ids[2 * BATCH_SIZE + 3]}.png"
    original = broken.read_bytes()
    broken.write_bytes(original[:100])  # truncated, as a cut download would be
    path = folder / "submission.csv"
    with pytest.raises(ValueError, match=broken.name):
        write_submission(path, competition, model, geometry, normalization, policy, BATCH_SIZE, progress=False)
    assert not path.exists()
    journal = [json.loads(line) for line in (folder / ".submission.csv.journal").read_text().splitlines()]
    finished = sum((entry["ids"] for entry in journal[1:]), [])
    assert finished == test_ids[:len(finished)] and 0 < len(finished) <= 2 * BATCH_SIZE
    broken.write_bytes(original)
    with caplog.at_level(logging.INFO, logger="seglib"):
        summary = write_submission(path, competition, model, geometry, normalization, policy, BATCH_SIZE,
                                   progress=False)
    assert f"{len(finished)} of 40 images were already written" in caplog.text
    assert summary["rows"] == 40
    assert path.read_bytes() == uninterrupted
    assert not (folder / ".submission.csv.partial").exists() and not (folder / ".submission.csv.journal").exists()


def test_a_torn_last_batch_is_cut_back(tmp_path):
    """A kill between writing a batch's rows and finishing its journal line: the rows after the last complete
    journal line are dropped, and the torn line too."""
    rows = ResumableRows(tmp_path / "s.csv", ["id", "rle_mask"], {"model": 1})
    rows.append(["a", "b"], [["a", "1 2"], ["b", ""]])
    rows.append(["c"], [["c", "3 4"]])
    with open(rows.partial, "ab") as handle:
        handle.write(b"d,5 6\ne,")
    with open(rows.journal, "a") as handle:
        handle.write('{"end": 9')
    resumed = ResumableRows(tmp_path / "s.csv", ["id", "rle_mask"], {"model": 1})
    assert resumed.done == ["a", "b", "c"]
    assert resumed.partial.read_bytes() == b"id,rle_mask\r\na,1 2\r\nb,\r\nc,3 4\r\n"
    resumed.append(["d"], [["d", "5 6"]])
    assert resumed.commit().read_text().splitlines()[-1] == "d,5 6"


def test_other_settings_start_afresh(tmp_path, caplog):
    rows = ResumableRows(tmp_path / "s.csv", ["id", "rle_mask"], {"policy": {"threshold": 0.5}})
    rows.append(["a"], [["a", "1 2"]])
    with caplog.at_level(logging.INFO, logger="seglib"):
        fresh = ResumableRows(tmp_path / "s.csv", ["id", "rle_mask"], {"policy": {"threshold": 0.6}})
    assert fresh.done == [] and "other settings" in caplog.text
    assert fresh.partial.read_bytes() == b"id,rle_mask\r\n"
    assert ResumableRows(tmp_path / "s.csv", ["id", "rle_mask"], {"x": 1}, resume=False).done == []


def test_a_different_model_does_not_resume(competition, predictor, policy, tmp_path, caplog):
    model, geometry, normalization = predictor
    rows = ResumableRows(tmp_path / "submission.csv", competition.submission_columns, {"weights": "other"})
    rows.append(["not-a-test-id"], [["not-a-test-id", ""]])
    with caplog.at_level(logging.INFO, logger="seglib"):
        write_submission(tmp_path / "submission.csv", competition, model, geometry, normalization, policy,
                         BATCH_SIZE, progress=False)
    assert "other settings" in caplog.text
    assert validate_submission(tmp_path / "submission.csv", competition)["rows"] == 40


# --- from a prediction store ----------------------------------------------------------------------------------


def test_submission_from_a_store_applies_the_policy_to_the_stored_probabilities(competition, predictor, policy,
                                                                                 tmp_path):
    model, geometry, normalization = predictor
    test_ids = competition.test_ids()
    with store.PredictionWriter(tmp_path / "test_store", test_ids, (128, 128, 1)) as writer:
        predict_into_store(writer, 0, model, competition, test_ids, geometry, normalization, BATCH_SIZE, part="test",
                           progress=False)
    predictions = store.Predictions(tmp_path / "test_store")
    summary = write_submission_from_store(tmp_path / "submission.csv", competition, predictions, geometry, policy,
                                          batch_size=7, progress=False)
    assert summary["rows"] == 40 and 0 < summary["empty_masks"] < 40
    table = pd.read_csv(tmp_path / "submission.csv", dtype=str, keep_default_na=False)
    assert list(table["id"]) == test_ids
    for image_id, text, stored in zip(table["id"], table["rle_mask"], predictions.probabilities):
        expected = apply_policy(to_original_size(geometry, stored)[np.newaxis], policy)[0]
        np.testing.assert_array_equal(rle.decode(text, (101, 101), order="F"), expected, err_msg=image_id)


def test_a_store_without_every_test_id_is_refused(competition, predictor, policy, tmp_path):
    _, geometry, _ = predictor
    test_ids = competition.test_ids()
    with store.PredictionWriter(tmp_path / "partial_store", test_ids[:-1], (128, 128, 1)) as writer:
        writer.write(test_ids[:-1], np.zeros((39, 128, 128, 1)))
    with pytest.raises(SeglibError, match=test_ids[-1]):
        write_submission_from_store(tmp_path / "submission.csv", competition,
                                    store.Predictions(tmp_path / "partial_store"), geometry, policy, progress=False)
    assert not (tmp_path / "submission.csv").exists()


def test_validation_reads_rows_longer_than_the_csv_default_limit(competition, tmp_path):
    """A noisy Carvana-sized mask has an RLE of several hundred kilobytes."""
    rows = [[image_id, ""] for image_id in competition.test_ids()]
    rows[0][1] = " ".join(f"{start} 1" for start in range(1, 10201, 2))  # 5,100 runs; longer still on Carvana
    with open(tmp_path / "s.csv", "w") as handle:
        handle.write("id,rle_mask\n" + "".join(f"{key},{text}\n" for key, text in rows))
    assert validate_submission(tmp_path / "s.csv", competition)["rows"] == 40


@pytest.mark.parametrize("name", ["carvana", "handbone"])
def test_a_shard_is_validated_on_its_own_keys(name, tmp_path):
    """Carvana's keys are "<id>.jpg" and the hand X-rays' are (image, class): a shard is checked on its rows only."""
    competition = get_competition(name, env.SAMPLE_ROOT / name)
    part = shard_ids(competition.test_ids(), "2/3")
    keys = [key for image_id in part for key in competition.submission_keys(image_id)]
    rows = [[*key, ""] for key in keys]
    path = tmp_path / "shard.csv"
    pd.DataFrame(rows, columns=competition.submission_columns).to_csv(path, index=False)
    assert validate_submission(path, competition, image_ids=part)["rows"] == len(keys) > 0
    with pytest.raises(SeglibError, match="missing"):
        validate_submission(path, competition)
    pd.DataFrame(rows[1:], columns=competition.submission_columns).to_csv(path, index=False)
    with pytest.raises(SeglibError, match="1 expected row"):
        validate_submission(path, competition, image_ids=part)
