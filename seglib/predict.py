"""Batched inference that hands back predictions at the competition's image size.

Predictions stream: the model runs batch by batch and each prediction is brought back to the original size one
image at a time, so a 100k-image Carvana test set or a 2048 x 2048 x 29 hand-bone prediction never has to fit
in memory more than once.
"""

import math

import numpy as np
from tqdm.auto import tqdm

from seglib.data import make_dataset


def predict_batches(model, competition, image_ids, geometry, normalization, batch_size, part, progress=True):
    """Yield (ids, probabilities) per batch at the MODEL size, (batch, size, size, channels).

    Args:
        model: a Keras model mapping model-sized images to probabilities.
        competition: the adapter that reads the images.
        image_ids: ids in the order to predict.
        geometry: the ``Geometry`` the model was trained with.
        normalization: the ``Normalization`` the model was trained with.
        batch_size: images per batch.
        part: "train" (validation ids) or "test".
        progress: show a tqdm bar.
    """
    image_ids = list(image_ids)
    dataset = make_dataset(competition, image_ids, geometry, normalization, batch_size, part=part,
                           with_masks=False, cache=False)
    batches = tqdm(dataset, total=math.ceil(len(image_ids) / batch_size), desc=f"predict {part}",
                   disable=not progress)
    position = 0
    for images in batches:
        outputs = np.asarray(model.predict_on_batch(images))
        yield image_ids[position:position + len(outputs)], outputs
        position += len(outputs)


def predict_images(model, competition, image_ids, geometry, normalization, batch_size, part, progress=True):
    """Yield (id, probabilities) per image at the competition's size.

    Yields:
        (id, float32 array (height, width)) for a one-channel model, or (height, width, channels) for a
        multi-label one.
    """
    for batch_ids, outputs in predict_batches(model, competition, image_ids, geometry, normalization, batch_size,
                                              part, progress):
        for image_id, output in zip(batch_ids, outputs):
            yield image_id, to_original_size(geometry, output)


def to_original_size(geometry, output):
    """One model-size output (size, size, channels) as float32 probabilities at the competition's size:
    (height, width) for one channel, (height, width, channels) for several."""
    probabilities = geometry.to_original(np.asarray(output, dtype=np.float32)[np.newaxis])[0]
    return probabilities[..., 0] if probabilities.shape[-1] == 1 else probabilities


def predict_model_size(model, competition, image_ids, geometry, normalization, batch_size, part, progress=True):
    """All predictions at the MODEL size as float16 (n, size, size, channels).

    Validation predictions are kept like this and brought to the original size one image at a time
    (``truth_and_predictions``): 2 bytes a pixel at the model size instead of 4 at the original size, which for
    the hand X-rays (2048 x 2048 x 29) is the difference between megabytes and tens of gigabytes.
    """
    return np.concatenate([outputs.astype(np.float16) for _, outputs in
                           predict_batches(model, competition, image_ids, geometry, normalization, batch_size, part,
                                           progress)])


def truth_and_predictions(competition, image_ids, geometry, model_outputs):
    """A function returning a fresh iterator of (true mask, probabilities at the original size) per image, for
    ``seglib.policy.fit_policy_pairs``; the masks are read and the outputs resized as the iterator goes."""
    if len(image_ids) != len(model_outputs):
        raise ValueError(f"{len(image_ids)} ids but {len(model_outputs)} predictions")

    def pairs():
        for image_id, output in zip(image_ids, model_outputs):
            yield competition.read_mask(image_id), to_original_size(geometry, output)

    return pairs
