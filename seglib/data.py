"""The tf.data pipeline: ids + competition adapter -> normalised, model-sized, augmented batches.

Flow per element: read and decode (the adapter, so zips work) -> cache (small data sets) -> shuffle ->
batch -> normalise with the run's mean/std -> geometry to the model size -> augment -> prefetch.
"""

import numpy as np
import tensorflow as tf
import keras

AUTOTUNE = tf.data.AUTOTUNE

# Geometric augmentations move image and mask together; Keras' image layers do that when called on
# {"images": ..., "segmentation_masks": ...}. Colour augmentations act on the image only.
GEOMETRIC_AUGMENTATIONS = {
    "hflip": lambda seed: keras.layers.RandomFlip("horizontal", seed=seed),
    "vflip": lambda seed: keras.layers.RandomFlip("vertical", seed=seed),
    "shift": lambda seed: keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed),
    "zoom": lambda seed: keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed),
    "rotate": lambda seed: keras.layers.RandomRotation(20 / 360, fill_mode="reflect", seed=seed),
}
COLOUR_AUGMENTATIONS = {
    "brightness": lambda seed: keras.layers.RandomBrightness(0.1, value_range=(-3.0, 3.0), seed=seed),
    "contrast": lambda seed: keras.layers.RandomContrast(0.1, seed=seed),
}


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


def make_augmenter(names, seed):
    """A function that augments a batch of (images, masks) with the named Keras layers.

    Args:
        names: e.g. ("hflip", "shift"); see GEOMETRIC_AUGMENTATIONS and COLOUR_AUGMENTATIONS.
        seed: base seed; each layer gets its own.
    """
    unknown = [name for name in names if name not in GEOMETRIC_AUGMENTATIONS and name not in COLOUR_AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; known: "
                         f"{sorted(GEOMETRIC_AUGMENTATIONS) + sorted(COLOUR_AUGMENTATIONS)}")
    geometric = [GEOMETRIC_AUGMENTATIONS[name](seed + index) for index, name in enumerate(names)
                 if name in GEOMETRIC_AUGMENTATIONS]
    colour = [COLOUR_AUGMENTATIONS[name](seed + 100 + index) for index, name in enumerate(names)
              if name in COLOUR_AUGMENTATIONS]

    def augment(images, masks):
        data = {"images": images, "segmentation_masks": masks}
        for layer in geometric:
            data = layer(data)
        images = data["images"]
        for layer in colour:
            images = layer(images)
        return images, data["segmentation_masks"]

    return augment


def _reader(competition, part, with_masks):
    """A tf.data map function that reads one id through the adapter (Python, so zip members work)."""
    height, width = competition.image_size
    channels = competition.image_channels

    def read_numpy(image_id):
        image_id = image_id.decode()
        image = competition.read_image(image_id, part)
        if not with_masks:
            return image
        return image, competition.read_mask(image_id).astype(np.uint8)

    def read(image_id):
        if not with_masks:
            image = tf.numpy_function(read_numpy, [image_id], tf.uint8, stateful=False)
            return tf.ensure_shape(image, (height, width, channels))
        image, mask = tf.numpy_function(read_numpy, [image_id], (tf.uint8, tf.uint8), stateful=False)
        image = tf.ensure_shape(image, (height, width, channels))
        mask = tf.ensure_shape(mask, (height, width))[..., tf.newaxis]
        return image, mask

    return read


def make_dataset(competition, image_ids, geometry, normalization, batch_size, part="train", with_masks=True,
                 shuffle=False, augmentations=(), seed=0, cache=False):
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
        cache: keep decoded images in memory after the first epoch (small data sets).

    Returns:
        A ``tf.data.Dataset`` of float32 batches: images (batch, size, size, channels) and masks
        (batch, size, size, 1) in {0, 1}.
    """
    image_ids = [str(image_id) for image_id in image_ids]
    if not image_ids:
        raise ValueError("make_dataset needs at least one id")
    dataset = tf.data.Dataset.from_tensor_slices(image_ids)
    dataset = dataset.map(_reader(competition, part, with_masks), num_parallel_calls=AUTOTUNE)
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(len(image_ids), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    def prepare_images(images):
        return geometry.to_model(normalization(images))

    def prepare_pair(images, masks):
        masks = geometry.to_model(tf.cast(masks, tf.float32))
        # Bilinear resizing blurs mask edges; thresholding keeps the target binary.
        return prepare_images(images), tf.cast(masks > 0.5, tf.float32)

    if with_masks:
        dataset = dataset.map(prepare_pair, num_parallel_calls=AUTOTUNE)
        if augmentations:
            dataset = dataset.map(make_augmenter(augmentations, seed), num_parallel_calls=AUTOTUNE)
    else:
        dataset = dataset.map(prepare_images, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
