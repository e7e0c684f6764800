"""Segmentation models by name (``ARCHITECTURES``), each ending in the float32 layer "logits": the losses take
logits, so the Lovasz hinge gets real ones and saturated pixels keep a gradient; prediction applies the sigmoid.
"""

import functools
import inspect
import os
import warnings

import numpy as np

from seglib.backend import keras, tf

layers = keras.layers

CLASSIC_TGS = {"depth": 4, "base_filters": 8, "batch_norm": False, "dropout": 0.0}  # the TGS starter kernel's
# The TGS winners' additions; "empty_head": True also trains the image-level "is the mask non-empty" head.
STRONG_TGS = {"depth": 4, "base_filters": 16, "batch_norm": True, "dropout": 0.1, "residual": True, "scse": True,
              "hypercolumn": True, "empty_head": False}
# The deepest feature map of every keras.applications encoder is at 1/32 of the input size.
ENCODER_STRIDE = 32


def convolution(inputs, filters, kernel_size, batch_norm, name, batch_norm_name):
    """A convolution, then batch norm (True, False or "synchronized" over all replicas) making the bias redundant."""
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=not batch_norm, name=name)(inputs)
    if batch_norm:
        x = layers.BatchNormalization(synchronized=batch_norm == "synchronized", name=batch_norm_name)(x)
    return x


def conv_block(inputs, filters, batch_norm, name):
    """Two 3x3 convolutions, each followed by ReLU."""
    x = inputs
    for index in (1, 2):
        x = convolution(x, filters, 3, batch_norm, f"{name}_conv{index}", f"{name}_bn{index}")
        x = layers.Activation("relu", name=f"{name}_relu{index}")(x)
    return x


def residual_block(inputs, filters, batch_norm, name):
    """Two 3x3 convolutions added to the input (1x1-projected when the filter count changes), then ReLU."""
    x = convolution(inputs, filters, 3, batch_norm, f"{name}_conv1", f"{name}_bn1")
    x = layers.Activation("relu", name=f"{name}_relu1")(x)
    x = convolution(x, filters, 3, batch_norm, f"{name}_conv2", f"{name}_bn2")
    shortcut = (inputs if inputs.shape[-1] == filters else
                convolution(inputs, filters, 1, batch_norm, f"{name}_shortcut", f"{name}_shortcut_bn"))
    x = layers.Add(name=f"{name}_residual_add")([x, shortcut])
    return layers.Activation("relu", name=f"{name}_relu2")(x)


def scse_block(inputs, name, reduction=2):
    """Concurrent spatial and channel squeeze & excitation (Roy et al. 2018), with built-in layers only so that
    a saved model loads with plain Keras; ``reduction`` 2 is their code's default."""
    filters = inputs.shape[-1]
    channel = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_scse_pool")(inputs)
    channel = layers.Dense(max(1, filters // reduction), activation="relu", name=f"{name}_scse_squeeze")(channel)
    channel = layers.Dense(filters, activation="sigmoid", name=f"{name}_scse_excite")(channel)
    channel = layers.Multiply(name=f"{name}_scse_channel")([inputs, channel])
    spatial = layers.Conv2D(1, 1, activation="sigmoid", name=f"{name}_scse_spatial_gate")(inputs)
    spatial = layers.Multiply(name=f"{name}_scse_spatial")([inputs, spatial])
    return layers.Add(name=f"{name}_scse")([channel, spatial])


def hypercolumn_features(decoder_outputs):
    """The decoder outputs {level: map at 1/2**level of full size}, upsampled to full size and concatenated."""
    columns = [layers.UpSampling2D(2 ** level, interpolation="bilinear", name=f"hypercolumn_up{level}")(features)
               if level else features for level, features in sorted(decoder_outputs.items())]
    return layers.Concatenate(name="hypercolumn")(columns)


def logits_head(features, output_channels):
    """The pixel head: a 1x1 convolution, float32 so that the losses stay exact under mixed precision."""
    return layers.Conv2D(output_channels, 1, name="logits", dtype="float32")(features)


def build_unet(input_shape, depth=4, base_filters=8, batch_norm=False, dropout=0.0, output_channels=1,
               residual=False, scse=False, hypercolumn=False, empty_head=False, name="unet",
               synchronized_batch_norm="auto"):
    """A U-Net of ``depth`` poolings (height and width divisible by 2**depth), ``base_filters`` doubling per level;
    ``residual`` blocks, ``scse`` after each decoder block, a ``hypercolumn`` head that sees every decoder level.
    ``empty_head`` adds the output "non_empty" (a dict then): per class the logit of a non-empty mask, from the
    bottleneck, as deep supervision. ``synchronized_batch_norm`` "auto": over all replicas when there are several,
    so that training does not depend on the number of devices."""
    if input_shape[0] % 2 ** depth or input_shape[1] % 2 ** depth:
        raise ValueError(f"input size {input_shape[:2]} must be divisible by 2**depth = {2 ** depth}")
    block = residual_block if residual else conv_block
    if synchronized_batch_norm == "auto":
        synchronized_batch_norm = tf.distribute.get_strategy().num_replicas_in_sync > 1
    batch_norm = "synchronized" if batch_norm and synchronized_batch_norm else batch_norm
    inputs = x = keras.Input(shape=input_shape, name="images")
    skips = []
    for level in range(depth):
        skips.append(block(x, base_filters * 2 ** level, batch_norm, name=f"down{level}"))
        x = layers.MaxPooling2D(name=f"down{level}_pool")(skips[-1])
        x = layers.Dropout(dropout, name=f"down{level}_dropout")(x) if dropout else x
    x = bottleneck = block(x, base_filters * 2 ** depth, batch_norm, name="bottleneck")
    decoder_outputs = {}
    for level in reversed(range(depth)):
        filters = base_filters * 2 ** level
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"up{level}_transpose")(x)
        x = layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = layers.Dropout(dropout, name=f"up{level}_dropout")(x) if dropout else x
        x = block(x, filters, batch_norm, name=f"up{level}")
        x = decoder_outputs[level] = scse_block(x, name=f"up{level}") if scse else x
    logits = logits_head(hypercolumn_features(decoder_outputs) if hypercolumn else x, output_channels)
    if not empty_head:
        return keras.Model(inputs, logits, name=name)
    pooled = layers.GlobalAveragePooling2D(name="non_empty_pool")(bottleneck)
    non_empty = layers.Dense(output_channels, name="non_empty", dtype="float32")(pooled)
    return keras.Model(inputs, {"logits": logits, "non_empty": non_empty}, name=name)


def has_empty_head(model):
    """Whether ``model`` has the "non_empty" output of ``build_unet(..., empty_head=True)``."""
    return "non_empty" in model.output_names


def make_encoder(name, weights=None, **inputs):
    """The keras.applications model ``name`` without its classifier, on ``input_shape`` or ``input_tensor``."""
    known = sorted(name for name in dir(keras.applications) if name[0].isupper())
    if name not in known:
        raise ValueError(f"unknown encoder {name!r}; keras.applications has {known}")
    builder = getattr(keras.applications, name)
    # The pipeline normalises the images; ConvNeXt, EfficientNetV2 and MobileNetV3 would add their own RGB
    # preprocessing, which also fixes the input to 3 channels.
    if "include_preprocessing" in inspect.signature(builder).parameters:
        inputs["include_preprocessing"] = False
    return builder(include_top=False, weights=weights, **inputs)


def encoder_features(encoder, height):
    """The names of the skip layers (the last at strides 16, 8, 4, 2) and of the bridge (the last at stride 32):
    for ResNet50 conv4_block6_out ... conv1_relu and conv5_block3_out, as segmentation_models picks by hand."""
    last = {}
    for layer in encoder.layers:
        shape = layer.output.shape
        if len(shape) == 4 and shape[1] and height % shape[1] == 0:  # padding layers have no whole stride
            last[height // shape[1]] = layer.name
    return [last[stride] for stride in (16, 8, 4, 2) if stride in last], last[ENCODER_STRIDE]


def adapt_first_convolution(kernel, channels):
    """An RGB first-convolution kernel (height, width, 3, filters) adapted to ``channels`` input channels."""
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise ValueError(f"expected an RGB kernel of shape (height, width, 3, filters), got {kernel.shape}")
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if channels == 1:
        # A grey image is R = G = B, so the RGB response to it is the response of the summed kernel.
        return kernel.sum(axis=2, keepdims=True)
    # R, G, B, R, ... scaled by 3/channels (timm's convention), so the next layers see the scale they were
    # trained on; for 3k channels of one grey image the response is exactly the RGB one.
    return kernel[:, :, np.arange(channels) % 3, :] * (3.0 / channels)


def transfer_encoder_weights(source_encoder, target):
    """Copy a (3-channel) encoder's weights by layer name into ``target``, adapting the first convolution to its
    channels; returns the names of the layers copied."""
    copied = []
    for source_layer in source_encoder.layers:
        weights = source_layer.get_weights()
        # EfficientNet's Normalization holds ImageNet's RGB statistics; the pipeline standardises the images.
        if not weights or isinstance(source_layer, layers.Normalization):
            continue
        layer = target.get_layer(source_layer.name)
        layer.set_weights([weight if weight.shape == wanted.shape else adapt_first_convolution(weight, wanted.shape[2])
                           for weight, wanted in zip(weights, layer.get_weights())])
        copied.append(source_layer.name)
    return copied


def build_encoder_unet(input_shape, output_channels=1, encoder="ResNet50", weights=None,
                       decoder_filters=(256, 128, 64, 32, 16), name=None):
    """A U-Net on a keras.applications ``encoder`` (ResNet50, EfficientNetB0, ConvNeXtTiny, ...) for inputs
    divisible by 32: five upsampling steps (``decoder_filters``), each joined to the encoder's last feature map at
    that size. ``weights``: None, "imagenet" (None with a warning when offline) or the encoder's notop weights
    file; RGB weights are adapted to other channel counts. The encoder sees the pipeline's normalised images."""
    height, width, _ = input_shape
    if height % ENCODER_STRIDE or width % ENCODER_STRIDE:
        raise ValueError(f"input size {(height, width)} must be divisible by {ENCODER_STRIDE} for {encoder}")
    if len(decoder_filters) != 5:
        raise ValueError(f"decoder_filters needs 5 values, got {decoder_filters}")
    if weights not in (None, "imagenet"):
        if not os.path.isfile(weights):
            raise ValueError(f"weights must be None, 'imagenet' or the path to a weights file, got {weights!r}")
        weights = os.fspath(weights)  # keras.applications compares and loads strings, not pathlib paths
    try:
        source = make_encoder(encoder, weights, input_shape=(height, width, 3)) if weights else None
    except Exception as error:  # keras.utils.get_file raises a bare Exception when the download fails
        if weights != "imagenet":
            raise  # a weights file the user named must load
        warnings.warn(f"ImageNet weights for {encoder} could not be fetched ({error}); building with weights=None. "
                      "On Kaggle, turn on internet or attach the weights file and pass its path.", stacklevel=2)
        source = None
    inputs = keras.Input(shape=input_shape, name="images")
    backbone = make_encoder(encoder, input_tensor=inputs)
    skip_names, bridge = encoder_features(backbone, height)
    skips = {height: inputs, **{backbone.get_layer(skip).output.shape[1]: backbone.get_layer(skip).output
                                for skip in skip_names}}
    x = backbone.get_layer(bridge).output
    for index, filters in enumerate(decoder_filters):
        x = layers.UpSampling2D(2, name=f"decoder{index}_upsampling")(x)
        if x.shape[1] in skips:
            x = layers.Concatenate(name=f"decoder{index}_concat")([x, skips[x.shape[1]]])
        x = conv_block(x, filters, batch_norm=True, name=f"decoder{index}")
    model = keras.Model(inputs, logits_head(x, output_channels), name=name or f"{encoder.lower()}_unet")
    if source is not None:
        transfer_encoder_weights(source, model)
    return model


ARCHITECTURES = {"unet": build_unet, "encoder_unet": build_encoder_unet,
                 "resnet50_unet": functools.partial(build_encoder_unet, encoder="ResNet50")}


def build_model(architecture, input_shape, output_channels=1, **options):
    """Build ``ARCHITECTURES[architecture]`` with the builder's keyword ``options``."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](input_shape, output_channels=output_channels, **options)
