"""A configurable U-Net, built with the Keras functional API.

The classic TGS kernel architecture is one configuration (``CLASSIC_TGS``): four down-steps of 8 -> 64
filters, a 128-filter bottleneck, a Conv2DTranspose up-path and a 1x1 sigmoid head.
"""

import keras
from keras import layers

# The architecture of the classic TGS Salt starter kernel, used by notebook 03 by default.
CLASSIC_TGS = {"depth": 4, "base_filters": 8, "batch_norm": False, "dropout": 0.0}


def conv_block(inputs, filters, batch_norm, name):
    """Two 3x3 convolutions with ReLU (and batch norm before the ReLU when asked)."""
    x = inputs
    for index in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm, name=f"{name}_conv{index}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{index}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{index}")(x)
    return x


def build_unet(input_shape, depth=4, base_filters=8, batch_norm=False, dropout=0.0, output_channels=1,
               name="unet"):
    """Build a U-Net whose output layer "probabilities" follows a linear layer "logits".

    Args:
        input_shape: (size, size, channels); size must be divisible by 2**depth.
        depth: number of pooling steps.
        base_filters: filters of the first level; each level doubles them.
        batch_norm: batch normalisation in every conv block.
        dropout: dropout rate after each pooling and each up-step (0 disables).
        output_channels: one sigmoid channel per (possibly overlapping) class.

    Returns:
        A ``keras.Model`` mapping images to per-pixel probabilities.
    """
    size = input_shape[0]
    if size % (2 ** depth) or input_shape[1] % (2 ** depth):
        raise ValueError(f"input size {input_shape[:2]} must be divisible by 2**depth = {2 ** depth}")
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    skips = []
    for level in range(depth):
        x = conv_block(x, base_filters * 2 ** level, batch_norm, name=f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(name=f"down{level}_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"down{level}_dropout")(x)

    x = conv_block(x, base_filters * 2 ** depth, batch_norm, name="bottleneck")

    for level in reversed(range(depth)):
        filters = base_filters * 2 ** level
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"up{level}_transpose")(x)
        x = layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        if dropout:
            x = layers.Dropout(dropout, name=f"up{level}_dropout")(x)
        x = conv_block(x, filters, batch_norm, name=f"up{level}")

    # Logits and probabilities as separate layers: losses on logits (e.g. Lovasz) can reach them by name,
    # and the head stays float32 under mixed precision.
    logits = layers.Conv2D(output_channels, 1, name="logits", dtype="float32")(x)
    probabilities = layers.Activation("sigmoid", name="probabilities", dtype="float32")(logits)
    return keras.Model(inputs, probabilities, name=name)
