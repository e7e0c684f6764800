"""Batched inference that hands back predictions at the competition's image size.

Predictions stream batch by batch: a test set of 100k Carvana images never has to fit in memory.
"""

import math

import numpy as np
from tqdm.auto import tqdm

from seglib.data import make_dataset


def predict_batches(model, competition, image_ids, geometry, normalization, batch_size, part, progress=True):
    """Yield (ids, probabilities) per batch, probabilities at the original size.

    Args:
        model: a Keras model mapping model-sized images to probabilities.
        competition: the adapter that reads the images.
        image_ids: ids in the order to predict.
        geometry: the ``Geometry`` the model was trained with.
        normalization: the ``Normalization`` the model was trained with.
        batch_size: images per batch.
        part: "train" (validation ids) or "test".
        progress: show a tqdm bar.

    Yields:
        (list of ids, float32 array (batch, height, width)) for a one-channel model, or
        (batch, height, width, channels) for a multi-channel one.
    """
    image_ids = list(image_ids)
    dataset = make_dataset(competition, image_ids, geometry, normalization, batch_size, part=part,
                           with_masks=False)
    batches = tqdm(dataset, total=math.ceil(len(image_ids) / batch_size), desc=f"predict {part}",
                   disable=not progress)
    position = 0
    for images in batches:
        outputs = geometry.to_original(model.predict_on_batch(images))
        if outputs.shape[-1] == 1:
            outputs = outputs[..., 0]
        yield image_ids[position:position + len(outputs)], outputs
        position += len(outputs)


def predict_all(model, competition, image_ids, geometry, normalization, batch_size, part, progress=True):
    """All predictions stacked in one array, for validation-sized sets (the sweep needs them together)."""
    return np.concatenate([probabilities for _, probabilities in
                           predict_batches(model, competition, image_ids, geometry, normalization, batch_size,
                                           part, progress)])
