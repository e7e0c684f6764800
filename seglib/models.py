"""Segmentation models, built with the Keras functional API, by name in ``ARCHITECTURES``.

``build_unet`` is a configurable U-Net; the classic TGS kernel architecture is one configuration
(``CLASSIC_TGS``): four down-steps of 8 -> 64 filters, a 128-filter bottleneck, a Conv2DTranspose up-path and
a 1x1 sigmoid head. ``STRONG_TGS`` switches on the TGS winners' additions: residual blocks, scSE in the
decoder and a hypercolumn head (and optionally an image-level "non_empty" head). ``build_resnet50_unet`` puts
a ResNet50 encoder (optionally ImageNet-pretrained, for any number of input channels) under a U-Net decoder.
"""

import os
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import layers

# The architecture of the classic TGS Salt starter kernel, used by notebook 03 by default.
CLASSIC_TGS = {"depth": 4, "base_filters": 8, "batch_norm": False, "dropout": 0.0}
# A stronger U-Net in the style of the TGS Salt winners. Add "empty_head": True to also train the image-level
# "is the mask non-empty" head (the model then outputs a dict; see build_unet).
STRONG_TGS = {"depth": 4, "base_filters": 16, "batch_norm": True, "dropout": 0.1, "residual": True, "scse": True,
              "hypercolumn": True, "empty_head": False}
# Channel squeeze ratio of scSE: the default of Roy et al.'s code; small, as these U-Nets have few filters.
SCSE_REDUCTION = 2


def convolution(inputs, filters, kernel_size, batch_norm, name, batch_norm_name):
    """A convolution named ``name``, followed by batch norm when asked (the bias is then redundant).

    ``batch_norm`` may be "synchronized": statistics over the global batch of all replicas (see build_unet).
    """
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=not batch_norm, name=name)(inputs)
    if batch_norm:
        x = layers.BatchNormalization(synchronized=batch_norm == "synchronized", name=batch_norm_name)(x)
    return x


def conv_block(inputs, filters, batch_norm, name):
    """Two 3x3 convolutions with ReLU (and batch norm before the ReLU when asked)."""
    x = inputs
    for index in (1, 2):
        x = convolution(x, filters, 3, batch_norm, f"{name}_conv{index}", f"{name}_bn{index}")
        x = layers.Activation("relu", name=f"{name}_relu{index}")(x)
    return x


def residual_block(inputs, filters, batch_norm, name):
    """Two 3x3 convolutions added to a (1x1-projected when the filter count changes) shortcut, then ReLU."""
    x = convolution(inputs, filters, 3, batch_norm, f"{name}_conv1", f"{name}_bn1")
    x = layers.Activation("relu", name=f"{name}_relu1")(x)
    x = convolution(x, filters, 3, batch_norm, f"{name}_conv2", f"{name}_bn2")
    shortcut = inputs
    if inputs.shape[-1] != filters:
        shortcut = convolution(inputs, filters, 1, batch_norm, f"{name}_shortcut", f"{name}_shortcut_bn")
    x = layers.Add(name=f"{name}_residual_add")([x, shortcut])
    return layers.Activation("relu", name=f"{name}_relu2")(x)


def scse_block(inputs, name, reduction=SCSE_REDUCTION):
    """Concurrent spatial and channel squeeze & excitation (Roy et al. 2018): the sum of cSE and sSE.

    Args:
        inputs: a feature map (batch, height, width, filters).
        name: prefix of the layer names.
        reduction: the channel squeeze ratio of cSE.

    Returns:
        The recalibrated feature map, of the shape of ``inputs``.
    """
    filters = inputs.shape[-1]
    # Built-in layers only, so a saved model loads with plain keras.models.load_model.
    channel = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_scse_pool")(inputs)
    channel = layers.Dense(max(1, filters // reduction), activation="relu", name=f"{name}_scse_squeeze")(channel)
    channel = layers.Dense(filters, activation="sigmoid", name=f"{name}_scse_excite")(channel)
    channel = layers.Multiply(name=f"{name}_scse_channel")([inputs, channel])
    spatial = layers.Conv2D(1, 1, activation="sigmoid", name=f"{name}_scse_spatial_gate")(inputs)
    spatial = layers.Multiply(name=f"{name}_scse_spatial")([inputs, spatial])
    return layers.Add(name=f"{name}_scse")([channel, spatial])


def hypercolumn_features(decoder_outputs):
    """Concatenate the decoder outputs, each upsampled (bilinear) to full size.

    Args:
        decoder_outputs: {level: feature map at 1/2**level of the input size}, level 0 being full size.

    Returns:
        The full-size concatenation, layer "hypercolumn".
    """
    columns = []
    for level, features in sorted(decoder_outputs.items()):
        if level:
            features = layers.UpSampling2D(2 ** level, interpolation="bilinear",
                                           name=f"hypercolumn_up{level}")(features)
        columns.append(features)
    return layers.Concatenate(name="hypercolumn")(columns)


def empty_mask_head(features, output_channels):
    """The image-level head "non_empty": per class, the probability that the mask is not empty."""
    x = layers.GlobalAveragePooling2D(name="non_empty_pool")(features)
    # float32 like the pixel head, so its sigmoid and loss stay exact under mixed precision.
    logits = layers.Dense(output_channels, name="non_empty_logits", dtype="float32")(x)
    return layers.Activation("sigmoid", name="non_empty", dtype="float32")(logits)


def build_unet(input_shape, depth=4, base_filters=8, batch_norm=False, dropout=0.0, output_channels=1,
               residual=False, scse=False, hypercolumn=False, empty_head=False, name="unet",
               synchronized_batch_norm="auto"):
    """Build a U-Net whose output layer "probabilities" follows a linear layer "logits".

    Args:
        input_shape: (size, size, channels); size must be divisible by 2**depth.
        depth: number of pooling steps.
        base_filters: filters of the first level; each level doubles them.
        batch_norm: batch normalisation in every conv block.
        dropout: dropout rate after each pooling and each up-step (0 disables).
        output_channels: one sigmoid channel per (possibly overlapping) class.
        residual: residual conv blocks (two 3x3 convolutions plus a 1x1 projection shortcut, added).
        scse: concurrent spatial and channel squeeze & excitation after each decoder block.
        hypercolumn: the head sees every decoder level, upsampled to full size, not only the last one.
        empty_head: also predict per image and class whether the mask is non-empty (output "non_empty", from
            the bottleneck), to train jointly with the pixels as deep supervision.
        name: the model's name.
        synchronized_batch_norm: batch norm statistics over the whole global batch, not each replica's share:
            True, False or "auto" (when built inside a tf.distribute scope with several replicas).

    Returns:
        A ``keras.Model`` mapping images to per-pixel probabilities; with ``empty_head`` to a dict
        {"probabilities": (batch, height, width, classes), "non_empty": (batch, classes)}.
    """
    size = input_shape[0]
    if size % (2 ** depth) or input_shape[1] % (2 ** depth):
        raise ValueError(f"input size {input_shape[:2]} must be divisible by 2**depth = {2 ** depth}")
    block = residual_block if residual else conv_block
    if synchronized_batch_norm == "auto":
        synchronized_batch_norm = tf.distribute.get_strategy().num_replicas_in_sync > 1
    # Each replica of a multi-device strategy sees only its share of the batch; per-replica statistics would
    # make training depend on the number of devices (and be noisy on small shares).
    if batch_norm and synchronized_batch_norm:
        batch_norm = "synchronized"
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    skips = []
    for level in range(depth):
        x = block(x, base_filters * 2 ** level, batch_norm, name=f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(name=f"down{level}_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"down{level}_dropout")(x)

    x = block(x, base_filters * 2 ** depth, batch_norm, name="bottleneck")
    bottleneck = x

    decoder_outputs = {}
    for level in reversed(range(depth)):
        filters = base_filters * 2 ** level
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"up{level}_transpose")(x)
        x = layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        if dropout:
            x = layers.Dropout(dropout, name=f"up{level}_dropout")(x)
        x = block(x, filters, batch_norm, name=f"up{level}")
        if scse:
            x = scse_block(x, name=f"up{level}")
        decoder_outputs[level] = x
    if hypercolumn:
        x = hypercolumn_features(decoder_outputs)

    # Logits and probabilities as separate layers: losses on logits (e.g. Lovasz) can reach them by name,
    # and the head stays float32 under mixed precision.
    logits = layers.Conv2D(output_channels, 1, name="logits", dtype="float32")(x)
    probabilities = layers.Activation("sigmoid", name="probabilities", dtype="float32")(logits)
    if empty_head:
        outputs = {"probabilities": probabilities, "non_empty": empty_mask_head(bottleneck, output_channels)}
        return keras.Model(inputs, outputs, name=name)
    return keras.Model(inputs, probabilities, name=name)


def has_empty_head(model):
    """Whether ``model`` has the image-level "non_empty" output of ``build_unet(..., empty_head=True)``."""
    # output_names: the dict keys of a multi-output model, the layer name ("probabilities") of a single output.
    return "non_empty" in model.output_names


# --- ResNet50-encoder U-Net ---------------------------------------------------------------------------------

# Encoder feature maps the decoder joins, deepest first, at 1/16, 1/8, 1/4 and 1/2 of the input size.
RESNET50_SKIPS = ("conv4_block6_out", "conv3_block4_out", "conv2_block3_out", "conv1_relu")
# The encoder output at 1/32 of the input size: the bridge into the decoder.
RESNET50_BRIDGE = "conv5_block3_out"
# The only encoder layer whose weights depend on the number of input channels.
FIRST_CONVOLUTION = "conv1_conv"
RESNET50_STRIDE = 32

IMAGENET_FALLBACK_MESSAGE = (
    "ImageNet weights for ResNet50 could not be fetched ({error}); building with weights=None. "
    "On Kaggle, turn on internet or attach the weights file and pass its path."
)


def adapt_first_convolution(kernel, channels):
    """Adapt an RGB first-convolution kernel to ``channels`` input channels.

    Args:
        kernel: array of shape (height, width, 3, filters), e.g. ResNet50's ``conv1_conv`` kernel.
        channels: the number of input channels of the new model.

    Returns:
        An array of shape (height, width, channels, filters).
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise ValueError(f"expected an RGB kernel of shape (height, width, 3, filters), got {kernel.shape}")
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if channels == 3:
        return kernel.copy()
    if channels == 1:
        # A grey image is R = G = B, so the RGB response to it is the response of the summed kernel.
        return kernel.sum(axis=2, keepdims=True)
    # Repeat R, G, B, R, ... over the channels and scale by 3/channels (timm's convention): the activations keep
    # the scale the pretrained layers after this one expect. For a multiple of 3 channels all carrying the same
    # grey image the response is exactly the RGB response to that grey image.
    repeated = kernel[:, :, np.arange(channels) % 3, :]
    return repeated * (3.0 / channels)


def transfer_encoder_weights(source_encoder, target_encoder):
    """Copy a ResNet50 encoder's weights, layer by layer, into a model holding the same layer names.

    Args:
        source_encoder: a ResNet50 (``include_top=False``), typically pretrained on 3-channel ImageNet.
        target_encoder: a ResNet50 or a ``build_resnet50_unet`` model, with any number of input channels.

    Returns:
        The names of the layers whose weights were copied.
    """
    copied = []
    for source_layer in source_encoder.layers:
        weights = source_layer.get_weights()
        if not weights:
            continue
        target_layer = target_encoder.get_layer(source_layer.name)
        if source_layer.name == FIRST_CONVOLUTION:
            channels = target_layer.get_weights()[0].shape[2]
            weights = [adapt_first_convolution(weights[0], channels), *weights[1:]]
        target_layer.set_weights(weights)
        copied.append(source_layer.name)
    return copied


def pretrained_resnet50(weights, height, width):
    """A 3-channel ResNet50 encoder with ``weights``, or None (with a warning) if ImageNet cannot be fetched.

    Args:
        weights: "imagenet" or the path to a ResNet50 ``include_top=False`` weights file (.h5).
        height, width: the input size of the model the weights are for.

    Returns:
        A ``keras.Model``, or None when the ImageNet download failed.
    """
    try:
        return keras.applications.ResNet50(include_top=False, weights=weights, input_shape=(height, width, 3))
    except Exception as error:  # keras.utils.get_file raises a bare Exception when the download fails
        if weights != "imagenet":
            raise  # a weights file the user named must load; silently training from scratch would hide that
        warnings.warn(IMAGENET_FALLBACK_MESSAGE.format(error=error), stacklevel=3)
        return None


def build_resnet50_unet(input_shape, output_channels=1, weights=None, decoder_filters=(256, 128, 64, 32, 16),
                        name="resnet50_unet"):
    """Build a U-Net with a ResNet50 encoder, whose output layer "probabilities" follows a linear "logits".

    The encoder takes the images as they come (no ImageNet preprocessing layer): the pipeline's per-channel
    standardisation is close enough for fine-tuning, since batch norm re-estimates the statistics.

    Args:
        input_shape: (height, width, channels), height and width divisible by 32; any number of channels.
        output_channels: one sigmoid channel per (possibly overlapping) class.
        weights: None (random), "imagenet" (falls back to None with a warning when offline) or the path to a
            ResNet50 ``include_top=False`` weights file. Pretrained RGB weights are adapted to other channel
            counts with ``adapt_first_convolution``.
        decoder_filters: filters of the five decoder blocks, from 1/16 of the input size to full size.
        name: the model's name.

    Returns:
        A ``keras.Model`` mapping images to per-pixel probabilities.
    """
    height, width, channels = input_shape
    if height % RESNET50_STRIDE or width % RESNET50_STRIDE:
        raise ValueError(f"input size {(height, width)} must be divisible by {RESNET50_STRIDE} for ResNet50")
    if len(decoder_filters) != len(RESNET50_SKIPS) + 1:
        raise ValueError(f"decoder_filters needs {len(RESNET50_SKIPS) + 1} values, got {decoder_filters}")
    if weights not in (None, "imagenet"):
        if not os.path.isfile(weights):
            raise ValueError(f"weights must be None, 'imagenet' or the path to a weights file, got {weights!r}")
        weights = os.fspath(weights)  # keras.applications compares and loads strings, not pathlib paths
    source_encoder = None if weights is None else pretrained_resnet50(weights, height, width)

    inputs = keras.Input(shape=input_shape, name="images")
    encoder = keras.applications.ResNet50(include_top=False, weights=None, input_tensor=inputs)
    x = encoder.get_layer(RESNET50_BRIDGE).output
    # The last step back to full size joins the images themselves: ResNet50 has no full-resolution feature map.
    skips = [encoder.get_layer(layer_name).output for layer_name in RESNET50_SKIPS] + [inputs]
    for index, (skip, filters) in enumerate(zip(skips, decoder_filters)):
        x = layers.UpSampling2D(2, name=f"decoder{index}_upsampling")(x)
        x = layers.Concatenate(name=f"decoder{index}_concat")([x, skip])
        x = conv_block(x, filters, batch_norm=True, name=f"decoder{index}")

    # The same head as build_unet, so losses, prediction and saving treat both alike.
    logits = layers.Conv2D(output_channels, 1, name="logits", dtype="float32")(x)
    probabilities = layers.Activation("sigmoid", name="probabilities", dtype="float32")(logits)
    model = keras.Model(inputs, probabilities, name=name)
    if source_encoder is not None:
        transfer_encoder_weights(source_encoder, model)
    return model


ARCHITECTURES = {"unet": build_unet, "resnet50_unet": build_resnet50_unet}


def build_model(architecture, input_shape, output_channels=1, **options):
    """Build the model ``architecture`` (one of ``ARCHITECTURES``).

    Args:
        architecture: a key of ``ARCHITECTURES``.
        input_shape: (height, width, channels).
        output_channels: one sigmoid channel per class.
        **options: the builder's other keyword arguments (e.g. ``depth`` for "unet", ``weights`` for
            "resnet50_unet").

    Returns:
        A ``keras.Model`` with the "logits" and "probabilities" layers.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](input_shape, output_channels=output_channels, **options)
