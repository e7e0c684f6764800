"""Training losses, by name. Keras' own losses wherever one fits.

Dice is computed per image and per class (Keras' ``Dice`` with ``axis=(1, 2)`` over (batch, height, width,
classes) masks) and then averaged, because the competition metrics score each image and each class on its
own: pooled over the batch, a large mask would drown the small ones.

Custom losses are registered with Keras, so a saved ``.keras`` model loads with plain
``keras.models.load_model`` once seglib is imported.
"""

import keras
from keras import ops

# Height and width of (batch, height, width, classes) masks: Dice sums over these only.
SPATIAL_AXES = (1, 2)


def per_image_dice():
    """Keras' Dice loss computed per image and per class, then averaged.

    A plain ``keras.losses.Dice`` whose config carries the axis, so it saves and loads without seglib.
    """
    return keras.losses.Dice(axis=SPATIAL_AXES, name="dice")


@keras.saving.register_keras_serializable(package="seglib")
class BCEDice(keras.losses.Loss):
    """Binary cross-entropy plus Dice computed per image and per class, then averaged.

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
        self.bce = keras.losses.BinaryCrossentropy()
        self.dice = per_image_dice()

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
    """Per-image Lovasz hinge for sigmoid outputs.

    The models end in a sigmoid ("probabilities"), so the logits are recovered as log(p / (1 - p)); the clip
    keeps them finite (|logit| <= about 16) where the sigmoid has saturated.
    """

    def __init__(self, name="lovasz_hinge", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        probabilities = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
        logits = ops.log(probabilities) - ops.log(1.0 - probabilities)
        return ops.mean(lovasz_hinge(y_true, logits), axis=-1)


LOSSES = {
    "bce": keras.losses.BinaryCrossentropy,
    "dice": per_image_dice,
    "bce_dice": BCEDice,
    "focal": keras.losses.BinaryFocalCrossentropy,
    "lovasz": LovaszHinge,
}


def get_loss(name):
    """A fresh loss object for ``name`` (one of ``LOSSES``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
    return LOSSES[name]()
