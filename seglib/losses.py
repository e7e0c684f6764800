"""Training losses, by name. Keras' own losses wherever one fits.

Custom losses are registered with Keras, so a saved ``.keras`` model loads with plain
``keras.models.load_model`` once seglib is imported.
"""

import keras


@keras.saving.register_keras_serializable(package="seglib")
class BCEDice(keras.losses.Loss):
    """Binary cross-entropy plus Keras' Dice loss: BCE gives smooth per-pixel gradients, Dice fights the
    imbalance of small masks. Keras ships both halves but not the sum."""

    def __init__(self, dice_weight=1.0, name="bce_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.dice_weight = dice_weight
        self.bce = keras.losses.BinaryCrossentropy()
        self.dice = keras.losses.Dice()

    def call(self, y_true, y_pred):
        return self.bce(y_true, y_pred) + self.dice_weight * self.dice(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "dice_weight": self.dice_weight}


LOSSES = {
    "bce": keras.losses.BinaryCrossentropy,
    "dice": keras.losses.Dice,
    "bce_dice": BCEDice,
    "focal": keras.losses.BinaryFocalCrossentropy,
}


def get_loss(name):
    """A fresh loss object for ``name`` (one of ``LOSSES``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
    return LOSSES[name]()
