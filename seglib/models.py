"""Segmentation models, built with the Keras functional API, by name in ``ARCHITECTURES``.

``build_unet`` is a configurable U-Net; the classic TGS kernel architecture is one configuration
(``CLASSIC_TGS``): four down-steps of 8 -> 64 filters, a 128-filter bottleneck, a Conv2DTranspose up-path and
a 1x1 head. ``STRONG_TGS`` switches on the TGS winners' additions: residual blocks, scSE in the decoder and a
hypercolumn head (and optionally an image-level "non_empty" head). ``build_encoder_unet`` puts any
keras.applications encoder (ResNet50/101, EfficientNetB0-B7, ConvNeXt, MobileNetV3, ...; optionally
ImageNet-pretrained, for any number of input channels) under a U-Net decoder.

Every model ends in logits (layer "logits"): the losses take logits (``from_logits``), so the Lovasz hinge gets
real ones and saturated pixels keep their gradient; prediction applies the sigmoid.
"""

import inspect
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
    """The image-level head "non_empty": per class, the logit of "the mask is not empty"."""
    x = layers.GlobalAveragePooling2D(name="non_empty_pool")(features)
    # float32 like the pixel head, so its loss stays exact under mixed precision.
    return layers.Dense(output_channels, name="non_empty", dtype="float32")(x)


def logits_head(features, output_channels):
    """The pixel head "logits": a 1x1 convolution, float32 so that the losses stay exact under mixed precision."""
    return layers.Conv2D(output_channels, 1, name="logits", dtype="float32")(features)


def build_unet(input_shape, depth=4, base_filters=8, batch_norm=False, dropout=0.0, output_channels=1,
               residual=False, scse=False, hypercolumn=False, empty_head=False, name="unet",
               synchronized_batch_norm="auto"):
    """Build a U-Net whose output layer "logits" gives per-pixel logits (the sigmoid comes at prediction).

    Args:
        input_shape: (size, size, channels); size must be divisible by 2**depth.
        depth: number of pooling steps.
        base_filters: filters of the first level; each level doubles them.
        batch_norm: batch normalisation in every conv block.
        dropout: dropout rate after each pooling and each up-step (0 disables).
        output_channels: one logit channel per (possibly overlapping) class.
        residual: residual conv blocks (two 3x3 convolutions plus a 1x1 projection shortcut, added).
        scse: concurrent spatial and channel squeeze & excitation after each decoder block.
        hypercolumn: the head sees every decoder level, upsampled to full size, not only the last one.
        empty_head: also predict per image and class whether the mask is non-empty (output "non_empty", from
            the bottleneck), to train jointly with the pixels as deep supervision.
        name: the model's name.
        synchronized_batch_norm: batch norm statistics over the whole global batch, not each replica's share:
            True, False or "auto" (when built inside a tf.distribute scope with several replicas).

    Returns:
        A ``keras.Model`` mapping images to per-pixel logits; with ``empty_head`` to a dict
        {"logits": (batch, height, width, classes), "non_empty": (batch, classes) logits}.
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

    logits = logits_head(x, output_channels)
    if empty_head:
        outputs = {"logits": logits, "non_empty": empty_mask_head(bottleneck, output_channels)}
        return keras.Model(inputs, outputs, name=name)
    return keras.Model(inputs, logits, name=name)


def has_empty_head(model):
    """Whether ``model`` has the image-level "non_empty" output of ``build_unet(..., empty_head=True)``."""
    # output_names: the dict keys of a multi-output model, the layer name ("logits") of a single output.
    return "non_empty" in model.output_names


# --- U-Nets on keras.applications encoders ------------------------------------------------------------------

# The deepest encoder feature map is at 1/32 of the input size for every keras.applications backbone.
ENCODER_STRIDE = 32

IMAGENET_FALLBACK_MESSAGE = (
    "ImageNet weights for {encoder} could not be fetched ({error}); building with weights=None. "
    "On Kaggle, turn on internet or attach the weights file and pass its path."
)


def make_encoder(name, weights=None, **inputs):
    """The keras.applications model called ``name`` (ResNet50, ResNet101, EfficientNetB0 ... B7, ConvNeXtTiny,
    MobileNetV3Small, ...) without its classifier, or an error listing the names when there is none.

    Args:
        inputs: ``input_shape`` or ``input_tensor``.
    """
    known = sorted(name for name in dir(keras.applications) if name[0].isupper())
    if name not in known:
        raise ValueError(f"unknown encoder {name!r}; keras.applications has {known}")
    builder = getattr(keras.applications, name)
    # The pipeline normalises the images already; ConvNeXt, EfficientNetV2 and MobileNetV3 would add their own
    # RGB preprocessing layers, which also fix the input to 3 channels.
    if "include_preprocessing" in inspect.signature(builder).parameters:
        inputs["include_preprocessing"] = False
    return builder(include_top=False, weights=weights, **inputs)


def encoder_features(encoder, height):
    """The names of an encoder's skip features and of its bridge: the last layer at each stride 2, 4, 8 and 16
    (deepest first; a backbone whose stem starts at stride 4, like ConvNeXt, has none at 2) and the last layer at
    stride 32. For ResNet50 these are conv4_block6_out ... conv1_relu and conv5_block3_out, for EfficientNet the
    block*_expand_activation layers and top_activation: the layers segmentation_models picks by hand."""
    last = {}
    for layer in encoder.layers:
        shape = layer.output.shape
        # Padding layers have odd sizes (114 of 224): no whole stride, skipped.
        if len(shape) == 4 and shape[1] and height % shape[1] == 0:
            last[height // shape[1]] = layer.name
    skips = [last[stride] for stride in (16, 8, 4, 2) if stride in last]
    return skips, last[ENCODER_STRIDE]

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


def adapt_weight(weight, target_shape):
    """A pretrained weight for a model with another number of input channels: the RGB first-convolution kernel
    is adapted (``adapt_first_convolution``), every other weight must fit as it is."""
    weight = np.asarray(weight)
    if weight.shape == tuple(target_shape):
        return weight
    if weight.ndim == 4 and weight.shape[2] == 3 and weight.shape[3] == target_shape[3]:
        return adapt_first_convolution(weight, target_shape[2])
    raise ValueError(f"cannot adapt a pretrained weight of shape {weight.shape} to {tuple(target_shape)}")


def transfer_encoder_weights(source_encoder, target_encoder):
    """Copy an encoder's weights, layer by layer, into a model holding the same layer names.

    Args:
        source_encoder: a keras.applications model (``include_top=False``), typically pretrained on 3-channel
            ImageNet.
        target_encoder: the same backbone, or a U-Net built on it, with any number of input channels.

    Returns:
        The names of the layers whose weights were copied.
    """
    copied = []
    for source_layer in source_encoder.layers:
        weights = source_layer.get_weights()
        # EfficientNet's input Normalization holds ImageNet's RGB statistics; the pipeline standardises the
        # images itself, so the target keeps its identity Normalization.
        if not weights or isinstance(source_layer, layers.Normalization):
            continue
        target_layer = target_encoder.get_layer(source_layer.name)
        targets = target_layer.get_weights()
        target_layer.set_weights([adapt_weight(weight, target.shape) for weight, target in zip(weights, targets)])
        copied.append(source_layer.name)
    return copied


def pretrained_encoder(encoder, weights, height, width):
    """A 3-channel encoder with ``weights``, or None (with a warning) if ImageNet cannot be fetched.

    Args:
        encoder: a keras.applications model name.
        weights: "imagenet" or the path to the encoder's ``include_top=False`` weights file (.h5).
        height, width: the input size of the model the weights are for.
    """
    try:
        return make_encoder(encoder, weights, input_shape=(height, width, 3))
    except Exception as error:  # keras.utils.get_file raises a bare Exception when the download fails
        if weights != "imagenet":
            raise  # a weights file the user named must load; silently training from scratch would hide that
        warnings.warn(IMAGENET_FALLBACK_MESSAGE.format(encoder=encoder, error=error), stacklevel=3)
        return None


def build_encoder_unet(input_shape, output_channels=1, encoder="ResNet50", weights=None,
                       decoder_filters=(256, 128, 64, 32, 16), name=None):
    """Build a U-Net whose encoder is a keras.applications backbone, ending in the "logits" layer.

    Keras 3 has no segmentation_models (that package is Keras 2 only), so the decoder is joined here: five
    upsampling steps from 1/32 of the input size, each concatenating the encoder's last feature map at that
    size (``encoder_features``; the images themselves at full size). The encoder takes the images as the
    pipeline normalises them (no ImageNet preprocessing layer): batch norm re-estimates the statistics.

    Args:
        input_shape: (height, width, channels), height and width divisible by 32; any number of channels.
        output_channels: one logit channel per (possibly overlapping) class.
        encoder: a keras.applications model name: ResNet50, ResNet101, EfficientNetB0 ... B7, ConvNeXtTiny,
            MobileNetV3Large, ...
        weights: None (random), "imagenet" (falls back to None with a warning when offline) or the path to the
            encoder's ``include_top=False`` weights file. Pretrained RGB weights are adapted to other channel
            counts (``adapt_weight``).
        decoder_filters: filters of the five decoder blocks, from 1/16 of the input size to full size.
        name: the model's name; default "<encoder>_unet" in lower case.
    """
    height, width, _ = input_shape
    if height % ENCODER_STRIDE or width % ENCODER_STRIDE:
        raise ValueError(f"input size {(height, width)} must be divisible by {ENCODER_STRIDE} for {encoder}")
    if len(decoder_filters) != 5:
        raise ValueError(f"decoder_filters needs 5 values, got {decoder_filters}")
    if weights not in (None, "imagenet"):
        if not os.path.isfile(weights):
            raise ValueError(f"weights must be None, 'imagenet' or the path to a weights file, got {weights!r}")
        weights = os.fspath(weights)  # keras.applications compares and loads strings, not pathlib paths
    source = None if weights is None else pretrained_encoder(encoder, weights, height, width)

    inputs = keras.Input(shape=input_shape, name="images")
    backbone = make_encoder(encoder, input_tensor=inputs)
    skip_names, bridge = encoder_features(backbone, height)
    x = backbone.get_layer(bridge).output
    skips = {backbone.get_layer(skip).output.shape[1]: backbone.get_layer(skip).output for skip in skip_names}
    skips[height] = inputs
    for index, filters in enumerate(decoder_filters):
        x = layers.UpSampling2D(2, name=f"decoder{index}_upsampling")(x)
        if x.shape[1] in skips:
            x = layers.Concatenate(name=f"decoder{index}_concat")([x, skips[x.shape[1]]])
        x = conv_block(x, filters, batch_norm=True, name=f"decoder{index}")

    # The same head as build_unet, so losses, prediction and saving treat every model alike.
    model = keras.Model(inputs, logits_head(x, output_channels), name=name or f"{encoder.lower()}_unet")
    if source is not None:
        transfer_encoder_weights(source, model)
    return model


def build_resnet50_unet(input_shape, output_channels=1, weights=None, decoder_filters=(256, 128, 64, 32, 16),
                        name="resnet50_unet"):
    """``build_encoder_unet`` with a ResNet50 encoder (the "resnet50_unet" architecture)."""
    return build_encoder_unet(input_shape, output_channels, "ResNet50", weights, decoder_filters, name)


ARCHITECTURES = {"unet": build_unet, "encoder_unet": build_encoder_unet, "resnet50_unet": build_resnet50_unet}


def build_model(architecture, input_shape, output_channels=1, **options):
    """Build the model ``architecture`` (one of ``ARCHITECTURES``).

    Args:
        architecture: a key of ``ARCHITECTURES``.
        input_shape: (height, width, channels).
        output_channels: one logit channel per class.
        **options: the builder's other keyword arguments (e.g. ``depth`` for "unet", ``weights`` for
            "resnet50_unet").

    Returns:
        A ``keras.Model`` ending in the "logits" layer.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](input_shape, output_channels=output_channels, **options)
