"""The ResNet50-encoder U-Net, its pretrained-weight transfer, the architecture registry and per-class BCE+Dice."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from seglib import models, predict, train
from seglib.losses import LOSSES, BCEDice, get_loss
from seglib.models import (ARCHITECTURES, adapt_first_convolution, build_encoder_unet, build_model,
                           transfer_encoder_weights)

pytestmark = pytest.mark.slow  # builds and trains keras.applications encoders: outside the inner loop

SIZE = 64
BATCH = 2


def random_images_and_masks(channels, output_channels, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(BATCH, SIZE, SIZE, channels)).astype("float32")
    masks = (rng.uniform(size=(BATCH, SIZE, SIZE, output_channels)) > 0.7).astype("float32")
    return images, masks


def random_resnet50(channels, seed):
    keras.utils.set_random_seed(seed)
    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SIZE, SIZE, channels))


# --- building and training --------------------------------------------------------------------------------


@pytest.mark.parametrize("channels, output_channels", [(1, 1), (3, 29), (6, 1), (6, 29)])
def test_builds_and_trains_one_step(channels, output_channels):
    keras.utils.set_random_seed(0)
    model = build_encoder_unet((SIZE, SIZE, channels), output_channels=output_channels)
    assert model.get_layer("images") is model.layers[0]
    assert model.get_layer("logits").dtype_policy.name == "float32"
    assert model.get_layer("logits") is model.layers[-1]
    assert tuple(model.output.shape) == (None, SIZE, SIZE, output_channels)
    # Eagerly: tracing ResNet50's train step into a graph takes ~30 s on CPU, the numbers are the same.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=BCEDice(), run_eagerly=True)
    watched = ["conv1_conv", "conv5_block3_3_conv", "decoder0_conv1", "decoder4_conv2", "logits"]
    before = {name: model.get_layer(name).get_weights()[0] for name in watched}
    images, masks = random_images_and_masks(channels, output_channels)
    history = model.fit(images, masks, batch_size=BATCH, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for name in watched:
        assert not np.array_equal(model.get_layer(name).get_weights()[0], before[name]), name
    probabilities = model.predict_on_batch(images)
    assert probabilities.shape == (BATCH, SIZE, SIZE, output_channels)
    assert np.isfinite(probabilities).all()


@pytest.mark.parametrize("shape", [(100, 100, 3), (64, 48, 1), (16, 16, 3)])
def test_size_not_divisible_by_32(shape):
    with pytest.raises(ValueError, match="divisible by 32"):
        build_encoder_unet(shape)


def test_bad_decoder_filters_and_weights():
    with pytest.raises(ValueError, match="decoder_filters"):
        build_encoder_unet((SIZE, SIZE, 3), decoder_filters=(64, 32))
    with pytest.raises(ValueError, match="weights"):
        build_encoder_unet((SIZE, SIZE, 3), weights="no/such/file.h5")


def test_registry_builds_both_architectures():
    assert set(ARCHITECTURES) == {"unet", "encoder_unet", "resnet50_unet"}
    unet = build_model("unet", (32, 32, 1), output_channels=2, depth=2, base_filters=4)
    assert tuple(unet.output.shape) == (None, 32, 32, 2)
    resnet = build_model("resnet50_unet", (SIZE, SIZE, 6), output_channels=3, decoder_filters=(32, 16, 16, 8, 8))
    assert resnet.name == "resnet50_unet"
    assert tuple(resnet.output.shape) == (None, SIZE, SIZE, 3)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="resnet50_unet"):
        build_model("efficientnet_unet", (SIZE, SIZE, 3))


# --- adapting pretrained RGB weights ------------------------------------------------------------------------


def rgb_kernel(seed=0):
    return np.random.default_rng(seed).normal(size=(7, 7, 3, 64)).astype("float32")


def test_adapt_first_convolution_values():
    kernel = rgb_kernel()
    np.testing.assert_array_equal(adapt_first_convolution(kernel, 3), kernel)
    np.testing.assert_allclose(adapt_first_convolution(kernel, 1)[:, :, 0], kernel.sum(axis=2), rtol=1e-6)
    np.testing.assert_allclose(adapt_first_convolution(kernel, 6), np.concatenate([kernel, kernel], axis=2) * 0.5,
                               rtol=1e-6)
    adapted = adapt_first_convolution(kernel, 4)
    assert adapted.shape == (7, 7, 4, 64)
    np.testing.assert_allclose(adapted[:, :, 3], kernel[:, :, 0] * 0.75, rtol=1e-6)
    with pytest.raises(ValueError):
        adapt_first_convolution(kernel, 0)
    with pytest.raises(ValueError):
        adapt_first_convolution(kernel[:, :, :1], 3)


@pytest.mark.parametrize("channels", [1, 6])
def test_adapted_convolution_sees_grey_images_like_the_rgb_one(channels):
    kernel = rgb_kernel(seed=1)
    grey = np.random.default_rng(2).uniform(size=(1, 32, 32, 1)).astype("float32")
    rgb_response = keras.ops.conv(np.repeat(grey, 3, axis=-1), kernel, strides=2, padding="same")
    adapted_response = keras.ops.conv(np.repeat(grey, channels, axis=-1), adapt_first_convolution(kernel, channels),
                                      strides=2, padding="same")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(adapted_response),
                               keras.ops.convert_to_numpy(rgb_response), rtol=1e-4, atol=1e-4)


def assert_encoder_weights_transferred(source, target, channels):
    for source_layer in source.layers:
        source_weights = source_layer.get_weights()
        if not source_weights:  # the input layer, activations, additions: nothing to copy (names may differ)
            continue
        target_weights = target.get_layer(source_layer.name).get_weights()
        if source_layer.name == "conv1_conv":
            source_weights = [adapt_first_convolution(source_weights[0], channels), *source_weights[1:]]
        assert len(source_weights) == len(target_weights), source_layer.name
        for source_array, target_array in zip(source_weights, target_weights):
            np.testing.assert_array_equal(target_array, source_array, err_msg=source_layer.name)


@pytest.mark.filterwarnings("ignore:This model usually expects 1 or 3 input channels")
def test_transfer_encoder_weights_into_six_channels():
    source, target = random_resnet50(3, seed=1), random_resnet50(6, seed=2)
    untouched = target.get_layer("conv3_block1_1_conv").get_weights()[0]
    assert not np.array_equal(untouched, source.get_layer("conv3_block1_1_conv").get_weights()[0])
    copied = transfer_encoder_weights(source, target)
    assert "conv1_conv" in copied and "conv5_block3_3_bn" in copied
    assert target.get_layer("conv1_conv").get_weights()[0].shape == (7, 7, 6, 64)
    assert_encoder_weights_transferred(source, target, channels=6)


@pytest.mark.parametrize("file_name", ["resnet50_notop.h5", "resnet50_notop.weights.h5"])
def test_weights_from_a_file_for_one_channel(tmp_path, file_name):
    # A legacy .h5 file is what Kaggle's attached "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" is.
    source = random_resnet50(3, seed=3)
    path = tmp_path / file_name
    if file_name.endswith(".weights.h5"):
        source.save_weights(path)
    else:
        source.save(path)
    model = build_encoder_unet((SIZE, SIZE, 1), weights=path)
    assert_encoder_weights_transferred(source, model, channels=1)


def imagenet_weights_reachable():
    """True when ResNet50's ImageNet weights would load: cached on disk or the download host resolves."""
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    if (keras_home / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").exists():
        return True
    try:
        socket.getaddrinfo("storage.googleapis.com", 443)
    except OSError:
        return False
    return True


@pytest.mark.skipif(imagenet_weights_reachable(), reason="ImageNet weights are cached or downloadable here")
def test_imagenet_without_network_falls_back_to_random_weights():
    with pytest.warns(UserWarning, match="weights=None") as record:
        model = build_encoder_unet((SIZE, SIZE, 1), weights="imagenet")
    assert "attach the weights file" in str(record[0].message)
    assert tuple(model.output.shape) == (None, SIZE, SIZE, 1)


# --- saving and loading -------------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture, options, loss, loss_class", [
    ("unet", {"depth": 2, "base_filters": 4}, "bce_dice", "BCEDice"),
    ("resnet50_unet", {"decoder_filters": (32, 16, 16, 8, 8)}, "bce_dice", "BCEDice"),
    # Every U-Net option at once, with the empty-image head (two outputs) and the Lovasz loss of the second stage.
    ("unet", {"depth": 2, "base_filters": 4, "batch_norm": True, "residual": True, "scse": True,
              "hypercolumn": True, "empty_head": True}, "lovasz", "LovaszHinge"),
])
def test_saved_model_loads_in_a_fresh_process(tmp_path, architecture, options, loss, loss_class):
    keras.utils.set_random_seed(0)
    model = train.compile_model(build_model(architecture, (SIZE, SIZE, 3), output_channels=2, **options),
                                loss=loss)
    path = tmp_path / "model.keras"
    model.save(path)
    images, _ = random_images_and_masks(3, 2, seed=4)
    np.save(tmp_path / "images.npy", images)
    expected = predict.model_probabilities(model, images)
    # The registered seglib losses load without custom_objects once seglib.backend is imported.
    script = (
        "import sys, numpy as np\n"
        "import seglib.backend\n"
        "import keras\n"
        "from seglib.predict import model_probabilities\n"
        "model = keras.models.load_model(sys.argv[1])\n"
        "loss = model.loss['logits'] if isinstance(model.loss, dict) else model.loss\n"
        "assert type(loss).__name__ == sys.argv[4], type(loss)\n"
        "assert sys.argv[4] != 'BCEDice' or loss.dice.axis in ((1, 2), [1, 2]), loss.dice.axis\n"
        "np.save(sys.argv[3], model_probabilities(model, np.load(sys.argv[2])))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "images.npy"), str(tmp_path / "outputs.npy"),
         loss_class],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "outputs.npy"), expected, rtol=1e-5, atol=1e-6)


# --- per-image, per-class BCE + Dice ------------------------------------------------------------------------


def multi_label_batch(seed=0):
    rng = np.random.default_rng(seed)
    y_true = (rng.uniform(size=(2, 8, 8, 3)) > 0.6).astype("float32")
    y_true[0, :, :, 1] = 0  # one (image, class) with an empty mask
    y_true[1, :3, :3, 2] = 1
    y_pred = rng.uniform(0.01, 0.99, size=(2, 8, 8, 3)).astype("float32")
    return y_true, y_pred


def logit(probabilities):
    return np.log(probabilities / (1 - probabilities))


def numpy_bce(y_true, y_pred, epsilon=1e-7):
    y_pred = np.clip(y_pred.astype("float64"), epsilon, 1 - epsilon)
    return float(np.mean(-(y_true * np.log(y_pred) + (1 - y_true) * np.log(1 - y_pred))))


def numpy_dice_per_image_and_class(y_true, y_pred, epsilon=1e-7):
    y_true, y_pred = y_true.astype("float64"), y_pred.astype("float64")
    intersection = (y_true * y_pred).sum(axis=(1, 2))
    sizes = y_true.sum(axis=(1, 2)) + y_pred.sum(axis=(1, 2))
    return 1 - 2 * intersection / (sizes + epsilon)  # shape (images, classes)


@pytest.mark.parametrize("dice_weight", [1.0, 0.25])
def test_bce_dice_is_bce_plus_mean_dice_per_image_and_class(dice_weight):
    y_true, y_pred = multi_label_batch()
    dice = numpy_dice_per_image_and_class(y_true, y_pred)
    assert dice.shape == (2, 3)
    expected = numpy_bce(y_true, y_pred) + dice_weight * dice.mean()
    value = float(BCEDice(dice_weight=dice_weight)(y_true, logit(y_pred)))  # the losses take logits
    assert value == pytest.approx(expected, rel=1e-5)
    # Pooling Dice over the whole batch would give a different number.
    pooled = 1 - 2 * (y_true * y_pred).sum() / (y_true.sum() + y_pred.sum())
    assert value != pytest.approx(numpy_bce(y_true, y_pred) + dice_weight * pooled, rel=1e-3)
    assert float(get_loss("dice")(y_true, logit(y_pred))) == pytest.approx(dice.mean(), rel=1e-5)
    assert BCEDice.from_config(BCEDice(dice_weight=dice_weight).get_config()).dice_weight == dice_weight


@pytest.mark.parametrize("logit_offset", [0.0, -200.0])
def test_bce_dice_gradient_is_finite_with_empty_masks(logit_offset):
    y_true, _ = multi_label_batch(seed=1)
    y_true[1] = 0  # a whole image without any mask
    logits = tf.Variable(np.random.default_rng(5).normal(size=y_true.shape).astype("float32") + logit_offset)
    for masks in (y_true, np.zeros_like(y_true)):  # and a batch with nothing at all
        with tf.GradientTape() as tape:
            loss = BCEDice()(masks, logits)
        gradient = tape.gradient(loss, logits).numpy()
        assert np.isfinite(float(loss))
        assert np.isfinite(gradient).all()


def test_dice_by_name_saves_its_axis():
    assert LOSSES["dice"]().axis == (1, 2)
    y_true, y_pred = multi_label_batch(seed=2)
    restored = keras.losses.deserialize(keras.losses.serialize(get_loss("dice")))
    assert float(restored(y_true, y_pred)) == pytest.approx(float(get_loss("dice")(y_true, y_pred)), rel=1e-6)


# --- any keras.applications encoder --------------------------------------------------------------------------


@pytest.mark.parametrize("encoder, skips, bridge", [
    ("ResNet50", ["conv4_block6_out", "conv3_block4_out", "conv2_block3_out", "conv1_relu"], "conv5_block3_out"),
    ("EfficientNetB0", ["block6a_expand_activation", "block4a_expand_activation", "block3a_expand_activation",
                        "block2a_expand_activation"], "top_activation"),
    # ConvNeXt's stem starts at 1/4: no feature map at 1/2, the decoder upsamples without a skip there.
    ("ConvNeXtTiny", 3, None),
    ("MobileNetV3Small", 4, None),
])
def test_encoders_by_name(encoder, skips, bridge):
    keras.utils.set_random_seed(0)
    backbone = models.make_encoder(encoder, input_shape=(SIZE, SIZE, 3))
    found_skips, found_bridge = models.encoder_features(backbone, SIZE)
    if isinstance(skips, list):
        assert (found_skips, found_bridge) == (skips, bridge)
    else:
        assert len(found_skips) == skips
    model = models.build_encoder_unet((SIZE, SIZE, 1), output_channels=2, encoder=encoder,
                                      decoder_filters=(16, 16, 8, 8, 8))
    assert model.name == f"{encoder.lower()}_unet" and model.layers[-1].name == "logits"
    assert model.predict_on_batch(np.zeros((1, SIZE, SIZE, 1), np.float32)).shape == (1, SIZE, SIZE, 2)


def test_unknown_encoder_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown encoder 'ResNet49'.*'ResNet50'"):
        models.build_encoder_unet((SIZE, SIZE, 3), encoder="ResNet49")


def test_efficientnet_weights_adapt_to_one_channel():
    """EfficientNet's first kernel is adapted; its ImageNet input statistics (a Normalization layer) stay out:
    the pipeline standardises the images."""
    keras.utils.set_random_seed(1)
    source = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    target = models.build_encoder_unet((SIZE, SIZE, 1), encoder="EfficientNetB0", decoder_filters=(8,) * 5)
    copied = models.transfer_encoder_weights(source, target)
    assert "stem_conv" in copied and "top_conv" in copied
    np.testing.assert_allclose(target.get_layer("stem_conv").get_weights()[0],
                               source.get_layer("stem_conv").get_weights()[0].sum(axis=2, keepdims=True))
    np.testing.assert_array_equal(target.get_layer("top_conv").get_weights()[0],
                                  source.get_layer("top_conv").get_weights()[0])
