"""Batched inference: fold models and test-time augmentation averaged batch by batch, in probability space.

Predictions stream (a batch at the model size, one image at a time at the original size), so a 100k-image Carvana
test set or a 2048 x 2048 x 29 hand-bone prediction is never held whole.
"""

import math

import numpy as np
from scipy.special import expit
from tqdm import tqdm  # text bars: tqdm.auto warns in Jupyter without ipywidgets

from seglib.errors import SeglibError
from seglib.tta import predict_tta

# An image-level "non-empty" head below this probability vetoes the image's mask (see models.build_unet).
EMPTY_VETO_THRESHOLD = 0.5


def model_probabilities(model, images):
    """Float32 per-pixel probabilities of one model on a batch, with its empty-image head's veto if it has one."""
    # predict, not predict_on_batch: under a multi-replica strategy predict_on_batch hands the whole batch to
    # every replica and returns their outputs concatenated.
    outputs = model.predict(images, batch_size=len(images), verbose=0)
    if not isinstance(outputs, dict):
        return expit(np.asarray(outputs, dtype=np.float32))
    probabilities = expit(np.asarray(outputs["logits"], dtype=np.float32))
    keep = expit(np.asarray(outputs["non_empty"], dtype=np.float32)) >= EMPTY_VETO_THRESHOLD
    return probabilities * keep[:, np.newaxis, np.newaxis, :]


def ensemble_probabilities(models, images, tta="none"):
    """The mean over ``models`` (one model or a list) of their TTA-averaged probabilities on one batch."""
    models = models if isinstance(models, (list, tuple)) else [models]
    return sum(predict_tta(lambda batch, model=model: model_probabilities(model, batch), images, tta)
               for model in models) / len(models)


def predict_batches(model, competition, image_ids, geometry, normalization, batch_size, part, progress=True,
                    tta="none"):
    """Yield (ids, probabilities at the MODEL size) per batch of ``image_ids`` of ``part`` ("train" or "test").

    ``model`` may be a list (fold models, averaged); ``tta`` is "none", "hflip" or "d4"; ``geometry`` and
    ``normalization`` are those the model was trained with.
    """
    from seglib.data import make_dataset, reader_errors

    image_ids = list(image_ids)
    dataset = make_dataset(competition, image_ids, geometry, normalization, batch_size, part=part,
                           with_masks=False, cache=False)
    # Training images are predicted only as some fold's validation images.
    batches = iter(tqdm(dataset, total=math.ceil(len(image_ids) / batch_size),
                        desc="predict validation" if part == "train" else "predict test", disable=not progress))
    position = 0
    while True:
        with reader_errors():
            images = next(batches, None)
        if images is None:
            return
        outputs = ensemble_probabilities(model, images.numpy(), tta)
        yield image_ids[position:position + len(outputs)], outputs
        position += len(outputs)


def to_original_size(geometry, output):
    """One model-size output as float32 probabilities at the competition's size: (height, width) for one
    channel, (height, width, channels) for several."""
    probabilities = geometry.to_original(np.asarray(output, dtype=np.float32)[np.newaxis])[0]
    return probabilities[..., 0] if probabilities.shape[-1] == 1 else probabilities


def predict_into_store(writer, fold, model, competition, image_ids, geometry, normalization, batch_size,
                       part="train", tta="none", progress=True):
    """Predict ``image_ids`` at the model size into a ``seglib.store.PredictionWriter``, recorded as ``fold``'s."""
    for batch_ids, outputs in predict_batches(model, competition, image_ids, geometry, normalization, batch_size,
                                              part, progress, tta):
        writer.write(batch_ids, outputs, fold=fold)


def truth_and_predictions(competition, image_ids, geometry, model_outputs):
    """A function returning a fresh iterator of (true mask, probabilities at the original size) per image, for
    ``seglib.policy.fit_policy_pairs``: masks are read and outputs resized as it goes."""
    if len(image_ids) != len(model_outputs):
        raise SeglibError(f"{len(image_ids)} ids but {len(model_outputs)} predictions")

    def pairs():
        for image_id, output in zip(image_ids, model_outputs):
            yield competition.read_mask(image_id), to_original_size(geometry, output)

    return pairs
