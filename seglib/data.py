"""The tf.data pipeline: ids + competition adapter -> model-sized, augmented, normalised batches.

Flow per element: read and decode (the adapter, so zips work) -> geometry to the model size -> cache (when the
model-sized set fits in memory; full-size Carvana or hand-bone images never would) -> shuffle -> batch ->
augment (in raw pixel units, so colour layers see real RGB) -> normalise with the run's mean/std -> prefetch.
"""

import contextlib
import re

import numpy as np
import tensorflow as tf
import keras

AUTOTUNE = tf.data.AUTOTUNE

# Datasets whose model-sized float32 images and masks stay under this many bytes are cached in memory.
CACHE_LIMIT_BYTES = 2 * 1024 ** 3

# Geometric augmentations move image and mask together; Keras' image layers do that when called on
# {"images": ..., "segmentation_masks": ...}. Each entry builds a list of layers from a seed.
GEOMETRIC_AUGMENTATIONS = {
    "hflip": lambda seed: [keras.layers.RandomFlip("horizontal", seed=seed)],
    "vflip": lambda seed: [keras.layers.RandomFlip("vertical", seed=seed)],
    "shift": lambda seed: [keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed)],
    "zoom": lambda seed: [keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed)],
    "rotate": lambda seed: [keras.layers.RandomRotation(20 / 360, fill_mode="reflect", seed=seed)],
    # The Carvana notebook's rotation of +-20 degrees with a zoom of +-10 %.
    "rotate_zoom": lambda seed: [keras.layers.RandomRotation(20 / 360, fill_mode="reflect", seed=seed),
                                 keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed + 1)],
}
# Colour augmentations act on the image only, in raw pixel units (0..255).
COLOUR_AUGMENTATIONS = {
    "brightness": lambda seed: keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed),
    "contrast": lambda seed: keras.layers.RandomContrast(0.1, seed=seed),
    # 0.5 is Keras' "no change" for saturation; +-0.1 around it is a mild colour shift.
    "saturation": lambda seed: keras.layers.RandomSaturation((0.4, 0.6), value_range=(0, 255), seed=seed),
    "hue": lambda seed: keras.layers.RandomHue(0.05, value_range=(0, 255), seed=seed),
}
# These mix the three colour channels, so they need RGB; extra channels (Carvana's background difference)
# are left alone.
RGB_ONLY_AUGMENTATIONS = ("saturation", "hue")


class Normalization:
    """Per-channel (value - mean) / std, with the figures notebook 02 saved.

    Args:
        channel_mean, channel_std: sequences with one value per channel, in raw pixel units (0..255).
    """

    def __init__(self, channel_mean, channel_std):
        self.channel_mean = np.asarray(channel_mean, dtype=np.float32).reshape(-1)
        # A constant channel (all-black sample) has std 0: keep it from dividing by zero.
        self.channel_std = np.maximum(np.asarray(channel_std, dtype=np.float32).reshape(-1), 1e-6)

    @classmethod
    def from_mean_std(cls, mean_std):
        """Build from a ``seglib.stats.MeanStd``."""
        return cls(mean_std.channel_mean, mean_std.channel_std)

    def __call__(self, images):
        return (tf.cast(images, tf.float32) - self.channel_mean) / self.channel_std


def make_augmenter(names, seed, channels=3):
    """A function that augments a batch of (images, masks) with the named Keras layers.

    Args:
        names: e.g. ("hflip", "shift"); see GEOMETRIC_AUGMENTATIONS and COLOUR_AUGMENTATIONS.
        seed: base seed; each layer gets its own.
        channels: image channels; saturation and hue need at least 3 (they change the first three only).
    """
    unknown = [name for name in names if name not in GEOMETRIC_AUGMENTATIONS and name not in COLOUR_AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; known: "
                         f"{sorted(GEOMETRIC_AUGMENTATIONS) + sorted(COLOUR_AUGMENTATIONS)}")
    needs_rgb = [name for name in names if name in RGB_ONLY_AUGMENTATIONS]
    if needs_rgb and channels < 3:
        raise ValueError(f"augmentation(s) {needs_rgb} need RGB images; these have {channels} channel(s)")
    geometric = [layer for index, name in enumerate(names) if name in GEOMETRIC_AUGMENTATIONS
                 for layer in GEOMETRIC_AUGMENTATIONS[name](seed + 10 * index)]
    colour = [(name, COLOUR_AUGMENTATIONS[name](seed + 100 + index)) for index, name in enumerate(names)
              if name in COLOUR_AUGMENTATIONS]

    def augment(images, masks):
        data = {"images": images, "segmentation_masks": masks}
        for layer in geometric:
            data = layer(data)
        images = data["images"]
        for name, layer in colour:
            if name in RGB_ONLY_AUGMENTATIONS and channels > 3:
                images = tf.concat([layer(images[..., :3]), images[..., 3:]], axis=-1)
            else:
                images = layer(images)
        # Rotations and zooms interpolate mask edges; thresholding keeps the target binary.
        return images, tf.cast(data["segmentation_masks"] > 0.5, tf.float32)

    return augment


def _reader(competition, part, with_masks, geometry):
    """A tf.data map function: read one id through the adapter (Python, so zip members work) and bring it to
    the model size."""
    height, width = competition.image_size
    channels = competition.image_channels
    classes = competition.num_classes

    def read_numpy(image_id):
        image_id = image_id.decode()
        image = competition.read_image(image_id, part)
        if not with_masks:
            return image
        mask = competition.read_mask(image_id)
        return image, mask.reshape(height, width, classes).astype(np.uint8)

    def to_model(tensor):
        return geometry.to_model(tf.cast(tensor, tf.float32)[tf.newaxis])[0]

    def read(image_id):
        if not with_masks:
            image = tf.numpy_function(read_numpy, [image_id], tf.uint8, stateful=False)
            return to_model(tf.ensure_shape(image, (height, width, channels)))
        image, mask = tf.numpy_function(read_numpy, [image_id], (tf.uint8, tf.uint8), stateful=False)
        image = to_model(tf.ensure_shape(image, (height, width, channels)))
        # Bilinear resizing blurs mask edges; thresholding keeps the target binary.
        mask = tf.cast(to_model(tf.ensure_shape(mask, (height, width, classes))) > 0.5, tf.float32)
        return image, mask

    return read


# What the adapter raised inside tf.numpy_function, as tf.data reports it: "...ValueError: <message>\n...".
_READER_ERROR = re.compile(r"\b(ValueError|KeyError|FileNotFoundError): (.+)")


@contextlib.contextmanager
def reader_errors():
    """Raise the adapter's own error (e.g. "train/images/x.png: cannot decode image") as a ValueError.

    tf.data wraps an error raised while reading a file into an InvalidArgumentError with a long TensorFlow trace;
    the user needs the file name and what is wrong with it.
    """
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        match = _READER_ERROR.search(str(error))
        if match is None:
            raise
        raise ValueError(match.group(2).strip()) from None


def fits_in_memory(competition, num_images, geometry, with_masks=True):
    """Whether ``num_images`` model-sized float32 images (and masks) stay under CACHE_LIMIT_BYTES."""
    values_per_pixel = competition.image_channels + (competition.num_classes if with_masks else 0)
    return num_images * geometry.size ** 2 * values_per_pixel * 4 <= CACHE_LIMIT_BYTES


def make_dataset(competition, image_ids, geometry, normalization, batch_size, part="train", with_masks=True,
                 shuffle=False, augmentations=(), seed=0, cache="auto"):
    """Batches for training, validation or prediction.

    Args:
        competition: a ``seglib.competitions.Competition``.
        image_ids: ids to read, in order (the order is kept unless ``shuffle``).
        geometry: a ``seglib.geometry.Geometry`` mapping images to the model size.
        normalization: a ``Normalization``.
        batch_size: images per batch.
        part: "train" or "test".
        with_masks: yield (images, masks) pairs; otherwise images only (prediction).
        shuffle: reshuffle every epoch (training).
        augmentations: names for ``make_augmenter`` (training only).
        seed: seeds shuffling and augmentation.
        cache: keep the model-sized images in memory after the first epoch: True, False, or "auto" (when
            they fit in CACHE_LIMIT_BYTES).

    Returns:
        A ``tf.data.Dataset`` of float32 batches: images (batch, size, size, channels) and masks
        (batch, size, size, num_classes) in {0, 1}.
    """
    image_ids = [str(image_id) for image_id in image_ids]
    if not image_ids:
        raise ValueError("make_dataset needs at least one id")
    if cache == "auto":
        cache = fits_in_memory(competition, len(image_ids), geometry, with_masks)
    dataset = tf.data.Dataset.from_tensor_slices(image_ids)
    dataset = dataset.map(_reader(competition, part, with_masks, geometry), num_parallel_calls=AUTOTUNE)
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(len(image_ids), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if with_masks:
        if augmentations:
            augmenter = make_augmenter(augmentations, seed, channels=competition.image_channels)
            dataset = dataset.map(augmenter, num_parallel_calls=AUTOTUNE)
        dataset = dataset.map(lambda images, masks: (normalization(images), masks), num_parallel_calls=AUTOTUNE)
    else:
        dataset = dataset.map(normalization, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
