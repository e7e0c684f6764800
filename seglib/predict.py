"""Batched inference that hands back predictions at the competition's image size.

Predictions stream: the model runs batch by batch and each prediction is brought back to the original size one
image at a time, so a 100k-image Carvana test set or a 2048 x 2048 x 29 hand-bone prediction never has to fit
in memory more than once.

Several models (the folds of a cross-validation) and test-time augmentation are averaged in probability space
batch by batch, so a fold ensemble with TTA costs time but no memory.
"""

import math

import numpy as np
from scipy.special import expit
from tqdm import tqdm  # text bars: tqdm.auto warns in Jupyter without ipywidgets

from seglib.data import make_dataset, reader_errors
from seglib.tta import predict_tta

# An image-level "non-empty" head below this probability vetoes the image's mask (see models.build_unet).
EMPTY_VETO_THRESHOLD = 0.5


def model_probabilities(model, images):
    """Per-pixel probabilities of one model on a batch (the sigmoid of its logits), with its empty-image head's
    veto applied if it has one.

    Returns:
        float32 (batch, size, size, classes).
    """
    # predict, not predict_on_batch: under a multi-replica strategy predict_on_batch hands the whole batch to
    # every replica and returns their outputs concatenated.
    outputs = model.predict(images, batch_size=len(images), verbose=0)
    if not isinstance(outputs, dict):
        return expit(np.asarray(outputs, dtype=np.float32))
    probabilities = expit(np.asarray(outputs["logits"], dtype=np.float32))
    keep = expit(np.asarray(outputs["non_empty"], dtype=np.float32)) >= EMPTY_VETO_THRESHOLD
    return probabilities * keep[:, np.newaxis, np.newaxis, :]


def ensemble_probabilities(models, images, tta="none"):
    """The mean over ``models`` of their TTA-averaged probabilities on one batch (float32)."""
    models = models if isinstance(models, (list, tuple)) else [models]
    total = None
    for model in models:
        output = predict_tta(lambda batch, model=model: model_probabilities(model, batch), images, tta)
        total = output if total is None else total + output
    return total / len(models)


def predict_batches(model, competition, image_ids, geometry, normalization, batch_size, part, progress=True,
                    tta="none"):
    """Yield (ids, probabilities) per batch at the MODEL size, (batch, size, size, channels).

    Args:
        model: a Keras model mapping model-sized images to probabilities, or a list of them (fold models),
            whose probabilities are averaged.
        competition: the adapter that reads the images.
        image_ids: ids in the order to predict.
        geometry: the ``Geometry`` the model was trained with.
        normalization: the ``Normalization`` the model was trained with.
        batch_size: images per batch.
        part: "train" (validation ids) or "test".
        progress: show a tqdm bar.
        tta: test-time augmentation, "none", "hflip" or "d4" (``seglib.tta.TTA_SETS``).
    """
    image_ids = list(image_ids)
    dataset = make_dataset(competition, image_ids, geometry, normalization, batch_size, part=part,
                           with_masks=False, cache=False)
    # Training images are predicted only as some fold's validation images.
    batches = tqdm(dataset, total=math.ceil(len(image_ids) / batch_size),
                   desc="predict validation" if part == "train" else "predict test", disable=not progress)
    position = 0
    iterator = iter(batches)
    while True:
        with reader_errors():
            images = next(iterator, None)
        if images is None:
            return
        outputs = ensemble_probabilities(model, images.numpy(), tta)
        yield image_ids[position:position + len(outputs)], outputs
        position += len(outputs)


def predict_images(model, competition, image_ids, geometry, normalization, batch_size, part, progress=True,
                   tta="none"):
    """Yield (id, probabilities) per image at the competition's size.

    Yields:
        (id, float32 array (height, width)) for a one-channel model, or (height, width, channels) for a
        multi-label one.
    """
    for batch_ids, outputs in predict_batches(model, competition, image_ids, geometry, normalization, batch_size,
                                              part, progress, tta):
        for image_id, output in zip(batch_ids, outputs):
            yield image_id, to_original_size(geometry, output)


def to_original_size(geometry, output):
    """One model-size output (size, size, channels) as float32 probabilities at the competition's size:
    (height, width) for one channel, (height, width, channels) for several."""
    probabilities = geometry.to_original(np.asarray(output, dtype=np.float32)[np.newaxis])[0]
    return probabilities[..., 0] if probabilities.shape[-1] == 1 else probabilities


def predict_model_size(model, competition, image_ids, geometry, normalization, batch_size, part, progress=True,
                       tta="none"):
    """All predictions at the MODEL size as float16 (n, size, size, channels).

    Validation predictions are kept like this and brought to the original size one image at a time
    (``truth_and_predictions``): 2 bytes a pixel at the model size instead of 4 at the original size, which for
    the hand X-rays (2048 x 2048 x 29) is the difference between megabytes and tens of gigabytes.
    """
    return np.concatenate([outputs.astype(np.float16) for _, outputs in
                           predict_batches(model, competition, image_ids, geometry, normalization, batch_size, part,
                                           progress, tta)])


def predict_into_store(writer, fold, model, competition, image_ids, geometry, normalization, batch_size,
                       part="train", tta="none", progress=True):
    """Predict ``image_ids`` at the model size and write them into a ``seglib.store.PredictionWriter``.

    Args:
        writer: the open store (notebook 03 writes each fold's validation ids into the out-of-fold store).
        fold: the fold that made these predictions, recorded in the store's manifest.
        Others: as ``predict_batches``.
    """
    for batch_ids, outputs in predict_batches(model, competition, image_ids, geometry, normalization, batch_size,
                                              part, progress, tta):
        writer.write(batch_ids, outputs, fold=fold)


def truth_and_predictions(competition, image_ids, geometry, model_outputs):
    """A function returning a fresh iterator of (true mask, probabilities at the original size) per image, for
    ``seglib.policy.fit_policy_pairs``; the masks are read and the outputs resized as the iterator goes."""
    if len(image_ids) != len(model_outputs):
        raise ValueError(f"{len(image_ids)} ids but {len(model_outputs)} predictions")

    def pairs():
        for image_id, output in zip(image_ids, model_outputs):
            yield competition.read_mask(image_id), to_original_size(geometry, output)

    return pairs
