"""Losses by name, on logits (the models end in logits), and the competition score as a Keras metric. Dice is
per image and class, as the competitions score: pooled over a batch, large masks would drown small ones. Keras
registers the classes, so a saved model loads with plain ``keras.models.load_model`` after ``seglib.backend``.
"""

import functools

from seglib.backend import keras

ops = keras.ops
SPATIAL_AXES = (1, 2)  # height and width of (batch, height, width, classes) masks
# The TGS thresholds as whole percents: IoU > t is tested as 100 * intersection > percent * union, exactly.
TGS_PERCENTS = tuple(range(50, 100, 5))
register = keras.saving.register_keras_serializable(package="seglib")


@register
class LogitDice(keras.losses.Dice):
    """Keras' Dice of the sigmoid of logits, per image and class (Keras' Dice has no ``from_logits``)."""

    def __init__(self, axis=SPATIAL_AXES, name="dice", **kwargs):
        super().__init__(axis=axis, name=name, **kwargs)

    def call(self, y_true, y_pred):
        return super().call(y_true, ops.sigmoid(y_pred))


@register
class BCEDice(keras.losses.Loss):
    """BCE plus ``dice_weight`` times per-image Dice, from logits. An empty (image, class) has Dice loss 1 whatever
    the prediction, a constant without gradient: BCE alone teaches the model to leave it empty."""

    def __init__(self, dice_weight=1.0, name="bce_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.dice_weight = dice_weight
        self.bce, self.dice = keras.losses.BinaryCrossentropy(from_logits=True), LogitDice()

    def call(self, y_true, y_pred):
        return self.bce(y_true, y_pred) + self.dice_weight * self.dice(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "dice_weight": self.dice_weight}


def lovasz_hinge(y_true, logits):
    """Lovasz hinge (Berman et al., 2018), (batch, classes), of (batch, height, width, classes) logits: it optimises
    IoU itself, hence the TGS winners' fine-tuning stage; neither Keras nor keras-cv ships it."""
    y_true = ops.cast(y_true, logits.dtype)
    classes, pixels = ops.shape(logits)[-1], ops.shape(logits)[1] * ops.shape(logits)[2]
    labels = ops.reshape(ops.transpose(y_true, (0, 3, 1, 2)), (-1, pixels))  # one row per (image, class)
    scores = ops.reshape(ops.transpose(logits, (0, 3, 1, 2)), (-1, pixels))
    errors = 1.0 - scores * (2.0 * labels - 1.0)
    order = ops.argsort(-errors, axis=-1)
    errors_sorted = ops.take_along_axis(errors, order, axis=-1)
    labels_sorted = ops.stop_gradient(ops.take_along_axis(labels, order, axis=-1))
    # The Lovasz extension's gradient: the Jaccard loss after each prefix of the sorted errors, differenced.
    positives = ops.sum(labels_sorted, axis=-1, keepdims=True)
    jaccard = 1.0 - (positives - ops.cumsum(labels_sorted, axis=-1)) / (
        positives + ops.cumsum(1.0 - labels_sorted, axis=-1))
    weights = ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=-1)
    per_row = ops.sum(ops.relu(errors_sorted) * ops.stop_gradient(weights), axis=-1)
    return ops.reshape(per_row, (-1, classes))


@register
class LovaszHinge(keras.losses.Loss):
    """Per-image Lovasz hinge of logits."""

    def __init__(self, name="lovasz_hinge", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return ops.mean(lovasz_hinge(y_true, y_pred), axis=-1)


LOSSES = {
    "bce": functools.partial(keras.losses.BinaryCrossentropy, from_logits=True),
    "dice": LogitDice,
    "bce_dice": BCEDice,
    "focal": functools.partial(keras.losses.BinaryFocalCrossentropy, from_logits=True),
    "lovasz": LovaszHinge,
}


def get_loss(name):
    """A fresh loss object for ``name`` (one of ``LOSSES``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
    return LOSSES[name]()


@register
class ImageScore(keras.metrics.Mean):
    """The competition score ("tgs" or "dice") of logits at 0.5, per image and class, averaged over all seen.

    Keras' BinaryIoU pools a batch's pixels; Kaggle scores each image alone (as ``seglib.metrics``, which this
    equals). ``crop``: (top, left, height, width) of the original image inside a padded input, or None.
    """

    def __init__(self, metric="tgs", crop=None, name=None, **kwargs):
        super().__init__(name=name or f"{metric}_score", **kwargs)
        if metric not in ("tgs", "dice"):
            raise ValueError(f"ImageScore knows the metrics 'tgs' and 'dice', got {metric!r}")
        self.metric, self.crop = metric, tuple(crop) if crop else None

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.crop:
            top, left, height, width = self.crop
            y_true, y_pred = (tensor[:, top:top + height, left:left + width] for tensor in (y_true, y_pred))
        truth, predicted = ops.cast(y_true > 0.5, "float32"), ops.cast(y_pred > 0, "float32")
        intersection = ops.sum(truth * predicted, axis=SPATIAL_AXES)
        counts = ops.sum(predicted, axis=SPATIAL_AXES) + ops.sum(truth, axis=SPATIAL_AXES)
        if self.metric == "tgs":
            union = (counts - intersection)[..., None]
            passed = 100.0 * intersection[..., None] > ops.convert_to_tensor(TGS_PERCENTS, "float32") * union
            scores = ops.where(union[..., 0] > 0, ops.mean(ops.cast(passed, "float32"), axis=-1), 1.0)
        else:
            scores = ops.where(counts > 0, 2.0 * intersection / ops.maximum(counts, 1.0), 1.0)
        super().update_state(scores)  # (images, classes): every image has the same number of classes

    def get_config(self):
        return {**super().get_config(), "metric": self.metric, "crop": self.crop}
