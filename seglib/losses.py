"""Training losses, by name. Keras' own losses wherever one fits.

Dice is computed per image and per class (Keras' ``Dice`` with ``axis=(1, 2)`` over (batch, height, width,
classes) masks) and then averaged, because the competition metrics score each image and each class on its
own: pooled over the batch, a large mask would drown the small ones.

Custom losses are registered with Keras, so a saved ``.keras`` model loads with plain
``keras.models.load_model`` once seglib is imported.
"""

import keras

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


LOSSES = {
    "bce": keras.losses.BinaryCrossentropy,
    "dice": per_image_dice,
    "bce_dice": BCEDice,
    "focal": keras.losses.BinaryFocalCrossentropy,
}


def get_loss(name):
    """A fresh loss object for ``name`` (one of ``LOSSES``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
    return LOSSES[name]()
