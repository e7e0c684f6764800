"""Training losses by name, on logits (the models end in logits), and the competition score as a Keras metric.
Keras' own losses wherever one fits.

Dice is computed per image and per class (Keras' ``Dice`` with ``axis=(1, 2)`` over (batch, height, width,
classes) masks) and then averaged, because the competition metrics score each image and each class on its
own: pooled over the batch, a large mask would drown the small ones.

Custom losses are registered with Keras, so a saved ``.keras`` model loads with plain
``keras.models.load_model`` once seglib is imported.
"""

import functools

import keras
from keras import ops

# Height and width of (batch, height, width, classes) masks: Dice sums over these only.
SPATIAL_AXES = (1, 2)


@keras.saving.register_keras_serializable(package="seglib")
class LogitDice(keras.losses.Dice):
    """Keras' Dice loss of the sigmoid of logits, computed per image and per class, then averaged (Keras' Dice
    takes probabilities and has no ``from_logits``)."""

    def __init__(self, axis=SPATIAL_AXES, name="dice", **kwargs):
        super().__init__(axis=axis, name=name, **kwargs)

    def call(self, y_true, y_pred):
        return super().call(y_true, ops.sigmoid(y_pred))


@keras.saving.register_keras_serializable(package="seglib")
class BCEDice(keras.losses.Loss):
    """Binary cross-entropy plus Dice computed per image and per class, then averaged, both from logits.

    BCE gives smooth per-pixel gradients; Dice fights the imbalance of small masks. Dice is taken per
    (image, class) pair because the competition metrics are per image and per class. An (image, class) with an
    empty mask has Dice loss 1 whatever the prediction (Keras' Dice has no smoothing term), so it adds a
    constant without a gradient: BCE alone teaches the model to leave it empty.

    Args:
        dice_weight: the weight of the Dice term.
        name: the loss name.
    """

    def __init__(self, dice_weight=1.0, name="bce_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.dice_weight = dice_weight
        self.bce = keras.losses.BinaryCrossentropy(from_logits=True)
        self.dice = LogitDice()

    def call(self, y_true, y_pred):
        return self.bce(y_true, y_pred) + self.dice_weight * self.dice(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "dice_weight": self.dice_weight}


def lovasz_hinge(y_true, logits):
    """Lovasz hinge of every (image, class): float (batch, classes).

    The convex Lovasz extension of the Jaccard loss on the hinge errors (Berman et al., 2018), per image as the
    TGS winners used it: it optimises IoU itself, so it is the usual fine-tuning stage after BCE + Dice.
    Written here because neither Keras nor keras-cv ships it.

    Args:
        y_true: (batch, height, width, classes) in {0, 1}.
        logits: the same shape, real-valued scores (sigmoid inputs).
    """
    y_true = ops.cast(y_true, logits.dtype)
    classes = ops.shape(logits)[-1]
    # One row per (image, class): (batch * classes, pixels).
    labels = ops.reshape(ops.transpose(y_true, (0, 3, 1, 2)), (-1, ops.shape(logits)[1] * ops.shape(logits)[2]))
    scores = ops.reshape(ops.transpose(logits, (0, 3, 1, 2)), ops.shape(labels))
    errors = 1.0 - scores * (2.0 * labels - 1.0)
    order = ops.argsort(-errors, axis=-1)
    errors_sorted = ops.take_along_axis(errors, order, axis=-1)
    labels_sorted = ops.stop_gradient(ops.take_along_axis(labels, order, axis=-1))
    # The gradient of the Lovasz extension at the sorted errors: the Jaccard loss after each prefix, differenced.
    positives = ops.sum(labels_sorted, axis=-1, keepdims=True)
    intersection = positives - ops.cumsum(labels_sorted, axis=-1)
    union = positives + ops.cumsum(1.0 - labels_sorted, axis=-1)
    jaccard = 1.0 - intersection / union
    weights = ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=-1)
    per_row = ops.sum(ops.relu(errors_sorted) * ops.stop_gradient(weights), axis=-1)
    return ops.reshape(per_row, (-1, classes))


@keras.saving.register_keras_serializable(package="seglib")
class LovaszHinge(keras.losses.Loss):
    """Per-image Lovasz hinge of logits (the models' output)."""

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


# The TGS thresholds as whole percents: IoU > t is tested as 100 * intersection > percent * union, exactly.
TGS_PERCENTS = tuple(range(50, 100, 5))


@keras.saving.register_keras_serializable(package="seglib")
class ImageScore(keras.metrics.Metric):
    """The competition score of logits at threshold 0.5, per image and class, averaged over all seen.

    What checkpoints, early stopping and the plateau schedule watch: Keras' BinaryIoU pools the pixels of a batch,
    while Kaggle scores each image on its own (see ``seglib.metrics``, which this equals on the same masks).

    Args:
        metric: "tgs" (mean over IoU thresholds 0.50 ... 0.95 of IoU > threshold) or "dice"; both empty scores 1.
        crop: (top, left, height, width) of the original image inside a reflect-padded model input, so that the
            padding is not scored; None scores the whole model-size mask.
    """

    def __init__(self, metric="tgs", crop=None, name=None, **kwargs):
        super().__init__(name=name or f"{metric}_score", **kwargs)
        if metric not in ("tgs", "dice"):
            raise ValueError(f"ImageScore knows the metrics 'tgs' and 'dice', got {metric!r}")
        self.metric, self.crop = metric, tuple(crop) if crop else None
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.crop:
            top, left, height, width = self.crop
            y_true, y_pred = (tensor[:, top:top + height, left:left + width] for tensor in (y_true, y_pred))
        truth = ops.cast(y_true > 0.5, "float32")
        predicted = ops.cast(y_pred > 0, "float32")  # logit > 0 is probability > 0.5
        intersection = ops.sum(truth * predicted, axis=SPATIAL_AXES)
        counts = ops.sum(predicted, axis=SPATIAL_AXES) + ops.sum(truth, axis=SPATIAL_AXES)
        if self.metric == "tgs":
            union = counts - intersection
            passed = ops.cast(100.0 * intersection[..., None] > ops.convert_to_tensor(TGS_PERCENTS, "float32") *
                              union[..., None], "float32")
            scores = ops.where(union > 0, ops.mean(passed, axis=-1), 1.0)
        else:
            scores = ops.where(counts > 0, 2.0 * intersection / ops.maximum(counts, 1.0), 1.0)
        self.total.assign_add(ops.sum(scores))
        self.count.assign_add(ops.cast(ops.size(scores), "float32"))

    def result(self):
        return self.total / ops.maximum(self.count, 1.0)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "metric": self.metric, "crop": self.crop}
