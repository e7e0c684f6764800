"""K-fold splits, the out-of-fold prediction store, fold/TTA ensembles in predict, and the two-stage schedule."""

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from seglib import artifacts, predict, split, store, train
from seglib.competitions import get_competition
from seglib.env import SAMPLE_ROOT
from seglib.models import build_unet


# --- K-fold -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tgs():
    return get_competition("tgs", SAMPLE_ROOT / "tgs")


@pytest.fixture(scope="module")
def carvana():
    return get_competition("carvana", SAMPLE_ROOT / "carvana")


def assert_partition(splits, image_ids):
    validated = [image_id for _, validation_ids in splits for image_id in validation_ids]
    assert sorted(validated) == sorted(image_ids), "every image is validated exactly once"
    for train_ids, validation_ids in splits:
        assert not set(train_ids) & set(validation_ids)
        assert sorted(train_ids + validation_ids) == sorted(image_ids)


def test_kfold_tgs_is_stratified_by_coverage_class(tgs):
    image_ids = tgs.train_ids()
    splits, summary = split.kfold_split(tgs, image_ids, folds=5, seed=0)
    assert len(splits) == 5 and list(summary.index) == [0, 1, 2, 3, 4]
    assert_partition(splits, image_ids)
    labels = dict(zip(image_ids, tgs.stratify_labels(image_ids)))
    empty_share = [np.mean([labels[i] == 0 for i in validation_ids]) for _, validation_ids in splits]
    overall = np.mean([label == 0 for label in labels.values()])
    # Stratification keeps the empty-mask share of every fold within one image of the overall share.
    assert max(abs(share - overall) for share in empty_share) <= 1.5 / min(len(v) for _, v in splits)


def test_kfold_carvana_keeps_each_car_on_one_side(carvana):
    image_ids = carvana.train_ids()
    splits, _ = split.kfold_split(carvana, image_ids, folds=3, seed=0)
    assert_partition(splits, image_ids)
    car = dict(zip(image_ids, carvana.groups(image_ids)))
    for train_ids, validation_ids in splits:
        assert not {car[i] for i in train_ids} & {car[i] for i in validation_ids}


def test_one_fold_is_the_holdout_split(tgs):
    image_ids = tgs.train_ids()
    (train_ids, validation_ids), = split.kfold_split(tgs, image_ids, folds=1, seed=3, validation_fraction=0.25)[0]
    expected_train, expected_validation, _ = split.holdout_split(tgs, image_ids, 0.25, seed=3)
    assert (train_ids, validation_ids) == (expected_train, expected_validation)


def test_kfold_rejects_impossible_requests(tgs, carvana):
    with pytest.raises(ValueError, match="positive integer"):
        split.kfold_split(tgs, tgs.train_ids(), folds=0, seed=0)
    with pytest.raises(ValueError, match="at least 4 groups"):
        split.kfold_split(carvana, carvana.train_ids(), folds=4, seed=0)  # the sample has 3 cars


# --- the prediction store -------------------------------------------------------------------------------------


def test_store_round_trips_float16_with_folds_in_any_order(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"id{i}" for i in range(7)]
    outputs = rng.uniform(size=(7, 8, 8, 2)).astype(np.float32)
    with store.PredictionWriter(tmp_path / "oof", ids, (8, 8, 2)) as writer:
        writer.write(ids[4:], outputs[4:], fold=1)
        assert not (tmp_path / "oof").exists(), "the store appears only when complete"
        writer.write(ids[:4], outputs[:4], fold=0)
    stored = store.Predictions(tmp_path / "oof")
    assert stored.ids == ids and list(stored.folds) == [0, 0, 0, 0, 1, 1, 1]
    assert stored.probabilities.dtype == np.float16 and isinstance(stored.probabilities, np.memmap)
    np.testing.assert_allclose(stored.probabilities, outputs, atol=1e-3)


def test_store_refuses_gaps_overlaps_and_leaves_nothing_half_written(tmp_path):
    ids = ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"1 id\(s\) have no prediction, e.g. 'c'"):
        with store.PredictionWriter(tmp_path / "oof", ids, (4, 4, 1)) as writer:
            writer.write(["a", "b"], np.zeros((2, 4, 4, 1)))
    writer = store.PredictionWriter(tmp_path / "oof", ids, (4, 4, 1))
    writer.write(["a"], np.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="'a' written twice"):
        writer.write(["a", "b"], np.zeros((2, 4, 4, 1)))
    with pytest.raises(ValueError, match="'z' is not one of"):
        writer.write(["z"], np.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="expected"):
        writer.write(["b"], np.zeros((1, 5, 5, 1)))
    writer.discard()
    assert list(tmp_path.iterdir()) == [], "no partial store left behind"
    with pytest.raises(FileNotFoundError, match="no prediction store"):
        store.Predictions(tmp_path / "oof")


def write_store(path, image_ids, outputs, folds=None):
    """A whole store at once, from in-memory ``outputs``."""
    folds = np.zeros(len(image_ids), dtype=int) if folds is None else np.asarray(folds)
    with store.PredictionWriter(path, image_ids, np.shape(outputs)[1:]) as writer:
        for fold in np.unique(folds):
            rows = np.flatnonzero(folds == fold)
            writer.write([image_ids[row] for row in rows], np.asarray(outputs)[rows], fold=int(fold))


def test_store_replaces_an_older_store_and_averages_runs(tmp_path):
    ids = ["a", "b", "c"]
    first = np.full((3, 4, 4, 1), 0.2)
    second = np.full((3, 4, 4, 1), 0.6)
    write_store(tmp_path / "run1", ids, np.zeros((3, 4, 4, 1)))
    write_store(tmp_path / "run1", ids, first, folds=[0, 1, 1])  # replaces the older one
    write_store(tmp_path / "run2", ids, second)
    store.average_stores([tmp_path / "run1", tmp_path / "run2"], tmp_path / "ensemble", chunk_size=2)
    ensemble = store.Predictions(tmp_path / "ensemble")
    np.testing.assert_allclose(ensemble.probabilities, 0.4, atol=1e-3)
    assert list(ensemble.folds) == [0, 1, 1]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ensemble", "run1", "run2"]
    write_store(tmp_path / "other", ["a", "b", "x"], first)
    with pytest.raises(ValueError, match="same ids"):
        store.average_stores([tmp_path / "run1", tmp_path / "other"], tmp_path / "bad")


# --- fold and TTA ensembles, the empty-head veto ----------------------------------------------------------------


def constant_model(value, size=8):
    """A model whose probabilities are ``value`` everywhere plus 0.1 times its input's first channel (it outputs
    their logits, as seglib's models do)."""
    inputs = keras.Input((size, size, 1))
    outputs = keras.layers.Lambda(lambda x: keras.ops.log((value + 0.1 * x) / (1 - value - 0.1 * x)))(inputs)
    return keras.Model(inputs, outputs)


def test_ensemble_averages_models_and_undoes_tta():
    images = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype(np.float32)
    averaged = predict.ensemble_probabilities([constant_model(0.2), constant_model(0.6)], images, tta="d4")
    # Each model is pixel-wise, so TTA with exact inverses changes nothing and the mean of the two is exact.
    np.testing.assert_allclose(averaged, 0.4 + 0.1 * images, atol=1e-5)


def test_empty_head_vetoes_the_mask_below_the_veto_threshold():
    inputs = keras.Input((8, 8, 1))
    pixels = keras.layers.Lambda(lambda x: 0.0 * x + 2.0)(inputs)  # logit 2: probability 0.881
    # The image-level logit is the image's mean - 0.5: one image above the veto threshold, one below.
    non_empty = keras.layers.Lambda(lambda x: x - 0.5)(keras.layers.GlobalAveragePooling2D()(inputs))
    model = keras.Model(inputs, {"logits": pixels, "non_empty": non_empty})
    images = np.stack([np.full((8, 8, 1), 0.8), np.full((8, 8, 1), 0.2)]).astype(np.float32)
    probabilities = predict.model_probabilities(model, images)
    np.testing.assert_allclose(probabilities[0], 1 / (1 + np.exp(-2.0)), atol=1e-6)
    np.testing.assert_array_equal(probabilities[1], 0.0)


# --- the two-stage schedule -----------------------------------------------------------------------------------


def random_dataset(count, seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(count, 32, 32, 1)).astype("float32")
    masks = (images > 0.3).astype("float32")
    masks[: count // 2] = 0.0  # empty masks, which the Lovasz stage must cope with
    return tf.data.Dataset.from_tensor_slices((images, masks)).batch(4)


@pytest.mark.slow
def test_two_stage_fine_tunes_the_best_checkpoint_with_lovasz(tmp_path):
    keras.utils.set_random_seed(0)
    model = train.compile_model(build_unet((32, 32, 1), depth=2, base_filters=4), loss="bce_dice",
                                learning_rate=1e-2)
    history, best = train.fit_recipe(model, random_dataset(8, 1), random_dataset(4, 2), tmp_path, epochs=2,
                                     fine_tune_loss="lovasz", fine_tune_epochs=2, fine_tune_learning_rate=1e-3)
    assert list(history["stage"]) == ["train", "train", "fine-tune lovasz", "fine-tune lovasz"]
    assert np.isfinite(history["loss"]).all()
    first_stage = pd.read_csv(tmp_path / artifacts.HISTORY)
    second_stage = pd.read_csv(tmp_path / artifacts.FINE_TUNE_HISTORY)
    assert len(first_stage) == 2 and len(second_stage) == 2
    # The second stage trains with the Lovasz loss (its logged loss is not the first stage's BCE + Dice) ...
    assert best.loss.name == "lovasz_hinge"
    # ... and its best epoch replaced model.keras: its validation score is the second stage's best.
    reloaded = keras.models.load_model(tmp_path / artifacts.MODEL)
    score = reloaded.evaluate(random_dataset(4, 2), verbose=0, return_dict=True)["score"]
    assert score == pytest.approx(second_stage["val_score"].max(), rel=1e-5)
    assert not list(tmp_path.rglob("*.partial*"))


def test_fold_dir_is_the_run_dir_for_a_single_split(tmp_path):
    assert artifacts.fold_dir(tmp_path, 0, 1) == tmp_path
    assert artifacts.fold_dir(tmp_path, 2, 5) == tmp_path / "fold2"


def test_empty_head_trains_jointly_and_predicts_with_its_veto(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_unet((32, 32, 1), depth=2, base_filters=4, empty_head=True)
    train.compile_model(model, loss="bce_dice", learning_rate=1e-2)
    history = train.fit(model, random_dataset(8, 1), random_dataset(4, 2), tmp_path, epochs=2, verbose=0)
    # Deep supervision: the image-level head has its own loss term next to the masks'.
    assert {"non_empty_loss", "logits_loss", "val_non_empty_loss", "val_logits_score"} <= set(history.columns)
    reloaded = keras.models.load_model(tmp_path / artifacts.MODEL)
    images = np.random.default_rng(3).normal(size=(4, 32, 32, 1)).astype(np.float32)
    outputs = reloaded.predict_on_batch(images)
    vetoed = 1 / (1 + np.exp(-outputs["non_empty"][:, 0])) < predict.EMPTY_VETO_THRESHOLD
    probabilities = predict.model_probabilities(reloaded, images)
    assert np.all(probabilities[vetoed] == 0)
    np.testing.assert_allclose(probabilities[~vetoed], 1 / (1 + np.exp(-outputs["logits"][~vetoed])), atol=1e-6)


def test_read_gives_the_rows_of_the_memory_map(tmp_path):
    rng = np.random.default_rng(3)
    outputs = rng.uniform(size=(6, 5, 5, 2)).astype(np.float16)
    write_store(tmp_path / "s", [f"id{index}" for index in range(6)], outputs)
    predictions = store.Predictions(tmp_path / "s")
    np.testing.assert_array_equal(predictions.read([4, 0, 4]), outputs[[4, 0, 4]])
    with pytest.raises(IndexError, match="row 6"):
        predictions.read([6])


def test_a_resumable_writer_keeps_the_finished_folds_of_a_killed_run(tmp_path):
    ids, shape = ["a", "b", "c", "d"], (4, 4, 1)
    outputs = np.arange(4 * 16, dtype=np.float16).reshape(4, 4, 4, 1) / 64
    with pytest.raises(KeyboardInterrupt):
        with store.PredictionWriter(tmp_path / "oof", ids, shape, resume={"epochs": 3}) as writer:
            writer.write(["a", "b"], outputs[:2], fold=0)
            writer.finish_fold(0)
            writer.write(["c"], outputs[2:3], fold=1)  # fold 1 killed before it finished
            raise KeyboardInterrupt
    assert not (tmp_path / "oof").exists()
    with store.PredictionWriter(tmp_path / "oof", ids, shape, resume={"epochs": 3}) as writer:
        assert writer.finished_folds == {0}
        assert writer.written.tolist() == [True, True, False, False], "fold 1's lone row is written again"
        writer.write(["c", "d"], outputs[2:], fold=1)
        writer.finish_fold(1)
    stored = store.Predictions(tmp_path / "oof")
    np.testing.assert_array_equal(stored.probabilities, outputs)
    assert stored.folds.tolist() == [0, 0, 1, 1]
    assert sorted(path.name for path in (tmp_path / "oof").iterdir()) == [store.MANIFEST, store.ARRAY]
    assert [path.name for path in tmp_path.iterdir()] == ["oof"], "no partial store left once closed"


def test_a_resumable_writer_starts_afresh_when_the_settings_changed(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with store.PredictionWriter(tmp_path / "oof", ["a", "b"], (2, 2, 1), resume={"epochs": 3}) as writer:
            writer.write(["a"], np.ones((1, 2, 2, 1)), fold=0)
            writer.finish_fold(0)
            raise KeyboardInterrupt
    writer = store.PredictionWriter(tmp_path / "oof", ["a", "b"], (2, 2, 1), resume={"epochs": 4})
    assert writer.finished_folds == set() and not writer.written.any()
    writer.discard()
