"""U-Net construction, losses, saving/loading with the custom loss, and train.fit with its callbacks."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from seglib import SeglibError, artifacts, train
from seglib.losses import LOSSES, BCEDice, ImageScore, get_loss
from seglib.metrics import get_metric
from seglib.models import CLASSIC_TGS, build_unet


def expected_unet_parameters(channels, depth, base_filters, output_channels=1):
    """Trainable parameters of the U-Net without batch norm, counted layer by layer."""

    def conv(kernel, inputs, outputs):  # weights + biases
        return kernel * kernel * inputs * outputs + outputs

    total, inputs, skips = 0, channels, []
    for level in range(depth):
        filters = base_filters * 2 ** level
        total += conv(3, inputs, filters) + conv(3, filters, filters)
        skips.append(filters)
        inputs = filters
    filters = base_filters * 2 ** depth
    total += conv(3, inputs, filters) + conv(3, filters, filters)
    inputs = filters
    for level in reversed(range(depth)):
        filters = base_filters * 2 ** level
        total += conv(2, inputs, filters)  # Conv2DTranspose 2x2
        concatenated = filters + skips[level]
        total += conv(3, concatenated, filters) + conv(3, filters, filters)
        inputs = filters
    return total + conv(1, inputs, output_channels)


def test_classic_tgs_parameter_count_and_outputs():
    model = build_unet((128, 128, 1), **CLASSIC_TGS)
    expected = expected_unet_parameters(1, depth=4, base_filters=8)
    # Written out for the classic configuration: 8-16-32-64 down, 128 bottleneck, back up, 1x1 head.
    assert expected == (
        (9 * 1 * 8 + 8) + (9 * 8 * 8 + 8)
        + (9 * 8 * 16 + 16) + (9 * 16 * 16 + 16)
        + (9 * 16 * 32 + 32) + (9 * 32 * 32 + 32)
        + (9 * 32 * 64 + 64) + (9 * 64 * 64 + 64)
        + (9 * 64 * 128 + 128) + (9 * 128 * 128 + 128)
        + (4 * 128 * 64 + 64) + (9 * 128 * 64 + 64) + (9 * 64 * 64 + 64)
        + (4 * 64 * 32 + 32) + (9 * 64 * 32 + 32) + (9 * 32 * 32 + 32)
        + (4 * 32 * 16 + 16) + (9 * 32 * 16 + 16) + (9 * 16 * 16 + 16)
        + (4 * 16 * 8 + 8) + (9 * 16 * 8 + 8) + (9 * 8 * 8 + 8)
        + (8 * 1 + 1)
    )
    assert model.count_params() == expected
    assert tuple(model.output.shape) == (None, 128, 128, 1)
    assert model.get_layer("logits") is model.layers[-1]
    outputs = model.predict_on_batch(np.random.default_rng(0).normal(size=(2, 128, 128, 1)).astype("float32"))
    assert outputs.shape == (2, 128, 128, 1)
    assert np.isfinite(outputs).all() and (outputs < 0).any() and (outputs > 0).any()  # logits


@pytest.mark.parametrize("channels, depth, base_filters, output_channels", [(3, 2, 4, 1), (1, 3, 6, 2)])
def test_parameter_count_of_other_configurations(channels, depth, base_filters, output_channels):
    size = 2 ** depth * 4
    model = build_unet((size, size, channels), depth=depth, base_filters=base_filters,
                       output_channels=output_channels)
    assert model.count_params() == expected_unet_parameters(channels, depth, base_filters, output_channels)
    assert tuple(model.output.shape) == (None, size, size, output_channels)


def layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


def test_batch_norm_and_dropout_options():
    plain = layer_types(build_unet((32, 32, 1), depth=2, base_filters=4))
    assert "BatchNormalization" not in plain and "Dropout" not in plain
    with_bn = layer_types(build_unet((32, 32, 1), depth=2, base_filters=4, batch_norm=True))
    assert with_bn.count("BatchNormalization") == 2 * (2 * 2 + 1)  # two per conv block, 2*depth+1 blocks
    assert "Dropout" not in with_bn
    with_dropout = build_unet((32, 32, 1), depth=2, base_filters=4, dropout=0.3)
    assert layer_types(with_dropout).count("Dropout") == 2 * 2
    assert all(layer.rate == 0.3 for layer in with_dropout.layers if isinstance(layer, keras.layers.Dropout))


@pytest.mark.parametrize("shape, depth", [((100, 100, 1), 4), ((128, 120, 1), 4), ((36, 36, 1), 3)])
def test_size_not_divisible(shape, depth):
    with pytest.raises(ValueError, match="divisible"):
        build_unet(shape, depth=depth, base_filters=4)


# --- losses ---------------------------------------------------------------------------------------------


def random_batch(seed=0, shape=(4, 16, 16, 1)):
    rng = np.random.default_rng(seed)
    y_true = (rng.uniform(size=shape) > 0.6).astype("float32")
    logits = rng.normal(scale=2.0, size=shape).astype("float32")
    return y_true, logits


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_gives_a_finite_scalar(name):
    y_true, y_pred = random_batch()
    value = keras.ops.convert_to_numpy(get_loss(name)(y_true, y_pred))
    assert value.shape == ()
    assert np.isfinite(value) and value > 0
    # A perfect prediction (confident logits of the right sign) scores lower than a random one.
    assert keras.ops.convert_to_numpy(get_loss(name)(y_true, 8.0 * (2 * y_true - 1))) < value


def test_unknown_loss():
    with pytest.raises(ValueError, match="jaccard"):
        get_loss("jaccard")


@pytest.mark.parametrize("dice_weight", [1.0, 0.25])
def test_bce_dice_is_bce_plus_dice(dice_weight):
    y_true, y_pred = random_batch(seed=3)
    combined = float(BCEDice(dice_weight=dice_weight)(y_true, y_pred))
    bce = float(keras.losses.BinaryCrossentropy(from_logits=True)(y_true, y_pred))
    dice = float(keras.losses.Dice(axis=(1, 2))(y_true, 1 / (1 + np.exp(-y_pred))))  # per image and class
    assert combined == pytest.approx(bce + dice_weight * dice, rel=1e-6)
    assert BCEDice.from_config(BCEDice(dice_weight=dice_weight).get_config()).dice_weight == dice_weight


def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    return build_unet((32, 32, 1), depth=2, base_filters=4)


def random_dataset(count, batch_size, seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(count, 32, 32, 1)).astype("float32")
    masks = (rng.uniform(size=(count, 32, 32, 1)) > 0.5).astype("float32")
    return tf.data.Dataset.from_tensor_slices((images, masks)).batch(batch_size)


# Saving and loading every architecture in a fresh process: tests/test_resnet_unet.py.


def test_fit_writes_artifacts(tmp_path):
    model = train.compile_model(tiny_model(), loss="bce_dice", learning_rate=1e-2)
    history = train.fit(model, random_dataset(8, 4, seed=4), random_dataset(4, 4, seed=5), tmp_path, epochs=2,
                        verbose=0)
    assert isinstance(history, pd.DataFrame) and len(history) == 2
    assert {"loss", "val_loss", "iou", "val_iou", "score", "val_score", "minutes", "learning_rate"} <= \
        set(history.columns)
    assert np.isfinite(history[["loss", "val_loss"]].to_numpy()).all()
    model_path, checkpoint = tmp_path / artifacts.MODEL, tmp_path / artifacts.CHECKPOINT
    assert model_path.is_file() and checkpoint.is_file()
    assert model_path.read_bytes() == checkpoint.read_bytes()
    logged = pd.read_csv(tmp_path / artifacts.HISTORY)
    assert list(logged["epoch"]) == [0, 1]
    np.testing.assert_allclose(logged["val_loss"], history["val_loss"], rtol=1e-5)
    leftovers = [path.name for path in tmp_path.rglob("*") if ".partial" in path.name]
    assert leftovers == []
    # The promoted model is the best epoch's: its validation score is the highest in the history.
    reloaded = keras.models.load_model(model_path)
    reloaded_score = reloaded.evaluate(random_dataset(4, 4, seed=5), verbose=0, return_dict=True)["score"]
    assert reloaded_score == pytest.approx(history["val_score"].max(), rel=1e-6)


def test_time_budget_stops_after_the_first_batch(tmp_path, caplog):
    model = train.compile_model(tiny_model(), loss="bce")
    with caplog.at_level("INFO", logger="seglib"):
        history = train.fit(model, random_dataset(16, 4, seed=6), random_dataset(4, 4, seed=7), tmp_path, epochs=5,
                            minutes=1e-6, verbose=0)
    assert len(history) == 1
    assert int(model.optimizer.iterations.numpy()) == 1  # one batch of the four in an epoch
    assert "Time budget of 1e-06 min spent" in caplog.text
    assert (tmp_path / artifacts.MODEL).is_file()


@pytest.mark.parametrize("minutes, stops", [(None, False), (10.0, False), (1.0, True)])
def test_time_budget_stops_only_once_spent(minutes, stops):
    clock = {"now": 0.0}
    budget = train.TimeBudget(minutes, spent=0.5, clock=lambda: clock["now"])
    budget.set_model(tiny_model())
    budget.model.stop_training = False
    budget.on_train_begin()
    clock["now"] = 60 * 5.0  # five minutes later, 5.5 with the resumed fit's
    budget.on_train_batch_end(0)
    assert budget.model.stop_training is stops
    logs = {}
    budget.on_epoch_end(0, logs)
    assert logs == {"minutes": pytest.approx(5.5)}


@pytest.mark.parametrize("minutes", [0, -1])
def test_time_budget_must_be_positive(minutes):
    with pytest.raises(ValueError):
        train.TimeBudget(minutes)


# --- the competition score as a Keras metric, and the wall-clock schedule ---------------------------------------


@pytest.mark.parametrize("metric", ["tgs", "dice"])
@pytest.mark.parametrize("crop", [None, (3, 2, 10, 11)])
def test_image_score_equals_seglib_metrics(metric, crop):
    rng = np.random.default_rng(7)
    truth = np.zeros((12, 16, 16, 1), np.float32)
    for index in range(12):  # blobs of every size, some empty, some filling the image
        top, left, size = rng.integers(0, 12), rng.integers(0, 12), index % 6 * 3
        truth[index, top:top + size, left:left + size] = 1
    truth[-1] = 1
    logits = np.where(truth > 0, 1.0, -1.0) + rng.normal(scale=1.2, size=truth.shape).astype(np.float32)
    logits[2] = -5.0  # empty prediction of a small mask; image 0's is empty on empty
    logits[0] = -5.0
    score = ImageScore(metric, crop)
    score.update_state(truth[:5], logits[:5])  # two batches of unequal size: the mean is over all images
    score.update_state(truth[5:], logits[5:])
    top, left, height, width = crop or (0, 0, 16, 16)
    window = (slice(None), slice(top, top + height), slice(left, left + width), 0)
    expected = get_metric(metric).image_scores(truth[window] > 0.5, logits[window] > 0).mean()
    assert float(score.result()) == pytest.approx(expected, abs=1e-6)
    assert 0 < expected < 1
    score.reset_state()
    assert float(score.result()) == 0.0


def test_cosine_reaches_its_final_rate_when_the_budget_ends():
    clock = {"now": 100.0}
    budget = train.TimeBudget(10.0, clock=lambda: clock["now"])
    schedule = train.WallClockCosine(budget, initial=1e-3, final=1e-5, epochs=1000)
    budget.on_train_begin()
    rates = []
    for minute in (0, 2.5, 5, 7.5, 10, 12):
        clock["now"] = 100.0 + 60 * minute
        rates.append(schedule.rate())
    assert rates[0] == pytest.approx(1e-3)
    assert rates[2] == pytest.approx((1e-3 + 1e-5) / 2)
    assert rates[4] == pytest.approx(1e-5) and rates[5] == pytest.approx(1e-5)
    assert all(earlier > later for earlier, later in zip(rates[:5], rates[1:5]))
    # A fit resumed after 7.5 of its 10 minutes goes on where the killed one was.
    resumed = train.TimeBudget(10.0, spent=7.5, clock=lambda: clock["now"])
    resumed.on_train_begin()
    assert train.WallClockCosine(resumed, 1e-3, 1e-5, 1000).rate() == pytest.approx(rates[3])
    # Without a budget the epochs set the pace.
    by_epochs = train.WallClockCosine(train.TimeBudget(None), 1e-3, 0.0, epochs=4)
    by_epochs.on_epoch_begin(2)
    assert by_epochs.rate() == pytest.approx(0.5e-3)


def test_cosine_sets_the_optimizer_rate_during_fit(tmp_path):
    model = train.compile_model(tiny_model(), loss="bce", learning_rate=1e-2)
    history = train.fit(model, random_dataset(8, 4, seed=4), random_dataset(4, 4, seed=5), tmp_path, epochs=4,
                        verbose=0, final_learning_rate=1e-4)
    # The rate logged at the end of epoch k is the one of its last batch, at fraction k / 4 of the fit.
    expected = [1e-4 + (1e-2 - 1e-4) * 0.5 * (1 + np.cos(np.pi * epoch / 4)) for epoch in range(4)]
    np.testing.assert_allclose(history["learning_rate"], expected, rtol=1e-5)


# --- train_config.json ---------------------------------------------------------------------------------------


def test_train_settings_round_trip_and_a_foreign_file_is_named(tmp_path):
    settings = train.TrainSettings(
        competition="tgs", competition_options={}, geometry={"mode": "pad", "size": 112, "original_size": [101, 101]},
        architecture="unet", model={"depth": 4}, loss="bce", learning_rate=1e-3, learning_rate_schedule="cosine",
        epochs=3, train_minutes_budget=None, batch_size=16, patience=10, fine_tune_loss=None, fine_tune=[20, 2.0, 1e-4],
        augmentations=["hflip"], seed=42, folds=2, tta="hflip", precision="float32",
        fold_validation_ids=[["a"], ["b"]])
    finished = settings.with_results(models=["fold0/model.keras", "fold1/model.keras"], epochs_run=6, oof_score=0.5)
    path = finished.save(tmp_path / artifacts.TRAIN_CONFIG)
    assert train.TrainSettings.load(path) == finished and settings.models is None
    assert json.loads(path.read_text())["models"] == ["fold0/model.keras", "fold1/model.keras"]
    path.write_text(json.dumps({"models": ["model.keras"]}))
    with pytest.raises(SeglibError, match=f"{path}: not a training config.*fold_validation_ids"):
        train.TrainSettings.load(path)
