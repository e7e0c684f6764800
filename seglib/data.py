"""The tf.data pipeline: read (the adapter, in Python, so zip members work) -> model size -> cache (when it fits
in memory) -> shuffle -> batch -> augment (in raw pixel units, so colour layers see real RGB) -> normalise.
"""

import contextlib

import numpy as np

from seglib.backend import keras, tf

AUTOTUNE, layers = tf.data.AUTOTUNE, keras.layers
CACHE_LIMIT_BYTES = 2 * 1024 ** 3  # datasets whose model-sized float32 arrays stay under this are cached

# Layers from a seed; called on {"images": ..., "segmentation_masks": ...} they move image and mask together.
GEOMETRIC_AUGMENTATIONS = {
    "hflip": lambda seed: [layers.RandomFlip("horizontal", seed=seed)],
    "vflip": lambda seed: [layers.RandomFlip("vertical", seed=seed)],
    "shift": lambda seed: [layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed)],
    "zoom": lambda seed: [layers.RandomZoom(0.1, fill_mode="reflect", seed=seed)],
    "rotate": lambda seed: [layers.RandomRotation(20 / 360, fill_mode="reflect", seed=seed)],
    # The Carvana notebook's rotation of +-20 degrees with a zoom of +-10 %.
    "rotate_zoom": lambda seed: [layers.RandomRotation(20 / 360, fill_mode="reflect", seed=seed),
                                 layers.RandomZoom(0.1, fill_mode="reflect", seed=seed + 1)],
}
# On the image only, in raw pixel units (0..255).
COLOUR_AUGMENTATIONS = {
    "brightness": lambda seed: layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed),
    "contrast": lambda seed: layers.RandomContrast(0.1, seed=seed),
    # 0.5 is Keras' "no change" for saturation.
    "saturation": lambda seed: layers.RandomSaturation((0.4, 0.6), value_range=(0, 255), seed=seed),
    "hue": lambda seed: layers.RandomHue(0.05, value_range=(0, 255), seed=seed),
}
# These mix three colour channels; extra channels (Carvana's background difference) are left alone.
RGB_ONLY_AUGMENTATIONS = ("saturation", "hue")


class Normalization:
    """Per-channel (value - mean) / std, mean and std in raw pixel units (notebook 02's figures)."""

    def __init__(self, channel_mean, channel_std):
        self.channel_mean = np.asarray(channel_mean, dtype=np.float32).reshape(-1)
        self.channel_std = np.maximum(np.asarray(channel_std, dtype=np.float32).reshape(-1), 1e-6)  # all-black: 0

    @classmethod
    def from_mean_std(cls, mean_std):
        """From a ``seglib.stats.MeanStd``."""
        return cls(mean_std.channel_mean, mean_std.channel_std)

    def __call__(self, images):
        return (tf.cast(images, tf.float32) - self.channel_mean) / self.channel_std


def make_augmenter(names, seed, channels=3):
    """A function augmenting a batch of (images, masks) with the named layers, each seeded from ``seed``."""
    unknown = [name for name in names if name not in GEOMETRIC_AUGMENTATIONS and name not in COLOUR_AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; known: "
                         f"{sorted(GEOMETRIC_AUGMENTATIONS) + sorted(COLOUR_AUGMENTATIONS)}")
    needs_rgb = [name for name in names if name in RGB_ONLY_AUGMENTATIONS]
    if needs_rgb and channels < 3:
        raise ValueError(f"augmentation(s) {needs_rgb} need RGB images; these have {channels} channel(s)")
    geometric = [layer for index, name in enumerate(names) if name in GEOMETRIC_AUGMENTATIONS
                 for layer in GEOMETRIC_AUGMENTATIONS[name](seed + 10 * index)]
    colour = [(name in RGB_ONLY_AUGMENTATIONS and channels > 3, COLOUR_AUGMENTATIONS[name](seed + 100 + index))
              for index, name in enumerate(names) if name in COLOUR_AUGMENTATIONS]

    def augment(images, masks):
        data = {"images": images, "segmentation_masks": masks}
        for layer in geometric:
            data = layer(data)
        images = data["images"]
        for rgb_only, layer in colour:
            images = tf.concat([layer(images[..., :3]), images[..., 3:]], axis=-1) if rgb_only else layer(images)
        # Rotations and zooms interpolate mask edges; thresholding keeps the target binary.
        return images, tf.cast(data["segmentation_masks"] > 0.5, tf.float32)

    return augment


# The adapter's errors while tf.data reads, which tf.data reports only inside an InvalidArgumentError's text.
_failures = []


def _reader(competition, part, with_masks, geometry):
    """A tf.data map function: one id read by the adapter, brought to the model size."""
    shapes = [(*competition.image_size, competition.image_channels), (*competition.image_size, competition.num_classes)]

    def read_numpy(image_id):
        image_id = image_id.decode()
        try:
            arrays = [competition.read_image(image_id, part)]
            if with_masks:
                arrays.append(competition.read_mask(image_id).reshape(shapes[1]).astype(np.uint8))
            return arrays
        except Exception as error:
            _failures.append(error)
            raise

    def read(image_id):
        arrays = tf.numpy_function(read_numpy, [image_id], [tf.uint8] * (1 + with_masks), stateful=False)
        image, *mask = [geometry.to_model(tf.cast(tf.ensure_shape(array, shape), tf.float32)[tf.newaxis])[0]
                        for array, shape in zip(arrays, shapes)]
        # Bilinear resizing blurs mask edges; thresholding keeps the target binary.
        return (image, tf.cast(mask[0] > 0.5, tf.float32)) if with_masks else image

    return read


@contextlib.contextmanager
def reader_errors():
    """Raise the adapter's own error (e.g. "train/images/x.png: cannot decode image") in place of the
    InvalidArgumentError and TensorFlow trace that tf.data wraps it in."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        failure = next((failure for failure in _failures if str(failure) in str(error)), None)
        if failure is None:
            raise
        _failures.remove(failure)
        raise failure from None


def fits_in_memory(competition, num_images, geometry, with_masks=True):
    """Whether ``num_images`` model-sized float32 images (and masks) stay under CACHE_LIMIT_BYTES."""
    values_per_pixel = competition.image_channels + (competition.num_classes if with_masks else 0)
    return num_images * geometry.size ** 2 * values_per_pixel * 4 <= CACHE_LIMIT_BYTES


def make_dataset(competition, image_ids, geometry, normalization, batch_size, part="train", with_masks=True,
                 shuffle=False, augmentations=(), seed=0, cache="auto"):
    """Float32 batches of images (batch, size, size, channels), and of masks in {0, 1} when ``with_masks``, in the
    order of ``image_ids`` unless ``shuffle`` (every epoch, seeded). ``part``: "train" or "test"; ``augmentations``:
    names for ``make_augmenter``; ``cache``: True, False or "auto" (``fits_in_memory``)."""
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
    if with_masks and augmentations:
        augment = make_augmenter(augmentations, seed, competition.image_channels)
        dataset = dataset.map(augment, num_parallel_calls=AUTOTUNE)
    normalise = (lambda images, masks: (normalization(images), masks)) if with_masks else normalization
    return dataset.map(normalise, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
