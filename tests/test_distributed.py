"""Distribution: strategy names, and training and prediction under MirroredStrategy over two logical CPUs
matching one device.

TensorFlow configures its devices once per process, so the two-device runs happen in a fresh subprocess
that splits the CPU before anything else; it writes its measurements to JSON for the tests to check.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from seglib import env

pytestmark = pytest.mark.slow  # whole-run or multi-process tests: outside the `-m "not slow"` inner loop

# Per-step losses agree to float32 round-off (the replicas sum in another order; measured: 1.4e-5).
LOSS_RTOL = 1e-4
# Final weights, relative to how far training moved them: over all weights (measured 0.006; per-replica batch
# norm 0.42) and for the worst tensor (measured 0.09; per-replica 61). Adam steps every weight by about the
# learning rate whatever its gradient's size, so round-off in tiny gradients shows at that scale.
WEIGHT_TOLERANCE = 0.03
PER_TENSOR_TOLERANCE = 0.3

RUN_SCRIPT = textwrap.dedent('''
    import json
    import sys

    from seglib import env

    # First, before TensorFlow creates any tensor: the device list is fixed then.
    env.split_cpu(2)

    import keras
    import numpy as np
    import tensorflow as tf

    from seglib import models, train
    from seglib.competitions import get_competition
    from seglib.data import Normalization, make_dataset
    from seglib.geometry import Geometry

    out_path, weights_path = sys.argv[1], sys.argv[2]
    STEPS, BATCH, PREDICT_IMAGES = 4, 8, 13  # 13 = one full and one uneven last batch (5 over 2 replicas)

    env.seed_everything(0)
    competition = get_competition("tgs", env.SAMPLE_ROOT / "tgs")
    ids = competition.train_ids()
    geometry = Geometry("pad", 128, competition.image_size)
    normalization = Normalization([120.0], [40.0])
    input_shape = (geometry.size, geometry.size, competition.image_channels)


    def build(strategy, synchronized_batch_norm="auto"):
        """The small U-Net with batch norm, built and compiled in ``strategy``, from the saved initial weights."""
        with strategy.scope():
            model = models.build_unet(input_shape, depth=2, base_filters=8, batch_norm=True,
                                      synchronized_batch_norm=synchronized_batch_norm)
            model.load_weights(weights_path)
            train.compile_model(model, loss="bce")
        return model


    class RunningLoss(keras.callbacks.Callback):
        """Keras logs the running mean of the epoch's losses after each batch."""

        def on_train_begin(self, logs=None):
            self.means = []

        def on_train_batch_end(self, batch, logs=None):
            self.means.append(float(logs["loss"]))


    def fit(model):
        """Train one epoch of STEPS batches; each step's loss, from the running means of equal batches."""
        recorder = RunningLoss()
        dataset = make_dataset(competition, ids[:STEPS * BATCH], geometry, normalization, BATCH)
        model.fit(dataset, epochs=1, verbose=0, shuffle=False, callbacks=[recorder])
        means = recorder.means
        return [mean * (step + 1) - (means[step - 1] * step if step else 0.0) for step, mean in enumerate(means)]


    def weight_errors(model, reference, initial):
        """How far ``model``'s weights are from ``reference``'s, relative to how far training moved
        ``reference`` from ``initial``: over all weights (norms), and the largest per tensor (largest
        difference over largest move). Relative to the move, because Adam moves every weight by about the
        learning rate whatever the gradient's size, so round-off in a tiny gradient shows at that scale."""
        weights, targets = model.get_weights(), reference.get_weights()
        differences = [weight - target for weight, target in zip(weights, targets)]
        moves = [target - start for target, start in zip(targets, initial)]
        overall = np.sqrt(sum(np.sum(d ** 2) for d in differences) / sum(np.sum(m ** 2) for m in moves))
        per_tensor = max(np.max(np.abs(d)) / np.max(np.abs(m)) for d, m in zip(differences, moves))
        return [float(overall), float(per_tensor)]


    def synchronized_layers(model):
        return [layer.synchronized for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


    single_strategy = env.distribution_strategy("default")
    mirrored_strategy = env.distribution_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    with single_strategy.scope():
        models.build_unet(input_shape, depth=2, base_filters=8, batch_norm=True).save_weights(weights_path)
    single = build(single_strategy)
    initial = single.get_weights()
    mirrored = build(mirrored_strategy)
    per_replica = build(mirrored_strategy, synchronized_batch_norm=False)
    same_start = all(np.array_equal(a, b) for model in (mirrored, per_replica)
                     for a, b in zip(initial, model.get_weights()))

    results = {"replicas": [single_strategy.num_replicas_in_sync, mirrored_strategy.num_replicas_in_sync],
               "same_start": same_start, "single_losses": fit(single)}
    for label, model in (("mirrored", mirrored), ("per_replica", per_replica)):
        results[f"{label}_losses"] = fit(model)
        results[f"{label}_weight_errors"] = weight_errors(model, single, initial)
        results[f"{label}_synchronized_layers"] = synchronized_layers(model)

    # Prediction: the same (trained) weights in both, images only, in dataset order.
    mirrored.set_weights(single.get_weights())
    predict_dataset = make_dataset(competition, ids[:PREDICT_IMAGES], geometry, normalization, BATCH,
                                   with_masks=False)
    single_predictions = single.predict(predict_dataset, verbose=0)
    mirrored_predictions = mirrored.predict(predict_dataset, verbose=0)
    results["prediction_shapes"] = [list(single_predictions.shape), list(mirrored_predictions.shape)]
    results["prediction_error"] = float(np.max(np.abs(single_predictions - mirrored_predictions)))
    # seglib's own inference path (what notebooks 03 and 05 use), with flip TTA, on the mirrored model.
    from seglib.predict import predict_batches
    seglib_predictions = np.concatenate([outputs for _, outputs in predict_batches(
        mirrored, competition, ids[:PREDICT_IMAGES], geometry, normalization, BATCH, "train", progress=False,
        tta="hflip")])
    flipped = single.predict(predict_dataset.map(lambda images: images[:, :, ::-1]), verbose=0)[:, :, ::-1]
    reference = (1 / (1 + np.exp(-single_predictions)) + 1 / (1 + np.exp(-flipped))) / 2  # the models give logits
    results["seglib_prediction_shape"] = list(seglib_predictions.shape)
    results["seglib_prediction_error"] = float(np.max(np.abs(seglib_predictions.astype(np.float32) - reference)))
    json.dump(results, open(out_path, "w"))
''')


@pytest.fixture(scope="module")
def two_device_run(tmp_path_factory):
    """RUN_SCRIPT's measurements, from a fresh Python whose CPU is split into two devices."""
    directory = tmp_path_factory.mktemp("distributed")
    script, out_path = directory / "run_distributed.py", directory / "result.json"
    script.write_text(RUN_SCRIPT)
    environment = dict(os.environ)
    environment.pop(env.STRATEGY_VARIABLE, None)
    completed = subprocess.run([sys.executable, str(script), str(out_path), str(directory / "initial.weights.h5")],
                               capture_output=True, text=True, env=environment, cwd=Path(__file__).resolve().parents[1], timeout=600)
    assert completed.returncode == 0, f"subprocess failed:\n{completed.stdout}\n{completed.stderr[-4000:]}"
    return json.loads(out_path.read_text())


# --- strategy names, in this process ------------------------------------------------------------------------


def test_default_strategy_has_one_replica(caplog):
    with caplog.at_level("INFO", logger="seglib"):
        strategy = env.distribution_strategy("default")
    assert strategy.num_replicas_in_sync == 1
    assert "1 replica" in caplog.text


def test_unknown_strategy_name_is_an_error():
    with pytest.raises(ValueError, match="unknown distribution strategy 'gpus'"):
        env.distribution_strategy("gpus")


def test_strategy_from_the_environment_variable(monkeypatch):
    monkeypatch.setenv(env.STRATEGY_VARIABLE, "nonsense")
    with pytest.raises(ValueError, match=env.STRATEGY_VARIABLE):
        env.distribution_strategy()
    monkeypatch.setenv(env.STRATEGY_VARIABLE, "Default")
    assert env.distribution_strategy().num_replicas_in_sync == 1
    # An explicit name wins over the variable.
    monkeypatch.setenv(env.STRATEGY_VARIABLE, "nonsense")
    assert env.distribution_strategy("auto").num_replicas_in_sync == 1


def test_tpu_without_a_tpu_says_so():
    with pytest.raises(ValueError, match="no TPU is attached"):
        env.distribution_strategy("tpu")


def test_devices_only_for_mirrored():
    with pytest.raises(ValueError, match="mirrored"):
        env.distribution_strategy("default", devices=["/cpu:0"])


def test_split_cpu_after_initialisation_is_a_clear_error():
    import tensorflow as tf

    tf.constant(1.0)  # initialises the devices of this process (one CPU)
    current = len(tf.config.list_logical_devices("CPU"))
    assert env.split_cpu(current) == [device.name for device in tf.config.list_logical_devices("CPU")]
    with pytest.raises(RuntimeError, match="already initialised"):
        env.split_cpu(current + 1)


# --- two logical CPUs, in a subprocess ----------------------------------------------------------------------


def test_mirrored_training_matches_one_device(two_device_run):
    run = two_device_run
    assert run["replicas"] == [1, 2]
    assert run["same_start"]
    # build_unet synchronises batch norm by itself when built under a multi-replica strategy.
    assert run["mirrored_synchronized_layers"] == [True] * 2 * (2 * 2 + 1)
    single, mirrored = np.array(run["single_losses"]), np.array(run["mirrored_losses"])
    assert len(single) == len(mirrored) == 4
    assert not np.allclose(single, single[0]), "the losses should change as the model trains"
    np.testing.assert_allclose(mirrored, single, rtol=LOSS_RTOL)
    overall, per_tensor = run["mirrored_weight_errors"]
    assert overall < WEIGHT_TOLERANCE and per_tensor < PER_TENSOR_TOLERANCE


def test_per_replica_batch_norm_would_not_match(two_device_run):
    """Without synchronised batch norm each replica normalises its half-batch alone, and training differs:
    the comparison above can fail."""
    run = two_device_run
    assert run["per_replica_synchronized_layers"] == [False] * 2 * (2 * 2 + 1)
    single, per_replica = np.array(run["single_losses"]), np.array(run["per_replica_losses"])
    assert not np.allclose(per_replica, single, rtol=LOSS_RTOL)
    overall, per_tensor = run["per_replica_weight_errors"]
    assert overall > WEIGHT_TOLERANCE and per_tensor > PER_TENSOR_TOLERANCE


def test_mirrored_prediction_matches_one_device(two_device_run):
    assert two_device_run["prediction_shapes"] == [[13, 128, 128, 1]] * 2
    assert two_device_run["prediction_error"] < 1e-5
    # seglib.predict on the mirrored model: every image once, equal to the single device's TTA average (float16).
    assert two_device_run["seglib_prediction_shape"] == [13, 128, 128, 1]
    assert two_device_run["seglib_prediction_error"] < 2e-3
