"""Images to the model's square size and predictions back, in one place so that training, validation and
submission never disagree. "pad" reflect-pads (TGS 101 -> 128): the way back is an exact crop. "resize" is
bilinear both ways: cheaper for big images (Carvana), but thin structures lose detail. "auto" pads when it can.
"""

import numpy as np

MODES = ("pad", "resize", "auto")


class Geometry:
    """Maps (height, width) images to (size, size) model inputs and model outputs back; ``mode`` as resolved."""

    def __init__(self, mode, size, original_size):
        if mode not in MODES:
            raise ValueError(f"geometry mode must be one of {MODES}, got {mode!r}")
        self.size = int(size)
        self.original_size = height, width = int(original_size[0]), int(original_size[1])
        # Reflect padding adds at most side - 1 pixels per edge.
        can_pad = all(side <= self.size <= 3 * side - 2 for side in self.original_size)
        self.mode = ("pad" if can_pad else "resize") if mode == "auto" else mode
        if self.mode == "pad" and not can_pad:
            raise ValueError(f"cannot reflect-pad {self.original_size} images to {self.size}; use mode='resize'")
        self.pad_top, self.pad_left = (self.size - height) // 2, (self.size - width) // 2

    def __repr__(self):
        return f"Geometry(mode={self.mode!r}, size={self.size}, original_size={self.original_size})"

    @property
    def crop(self):
        """(top, left, height, width) of the original image inside a padded model input; None when resized."""
        return (self.pad_top, self.pad_left, *self.original_size) if self.mode == "pad" else None

    def to_dict(self):
        return {"mode": self.mode, "size": self.size, "original_size": list(self.original_size)}

    @classmethod
    def from_dict(cls, description):
        return cls(description["mode"], description["size"], description["original_size"])

    def to_model(self, images, interpolation="bilinear"):
        """(batch, height, width, channels) -> (batch, size, size, channels) tensor, inside tf.data or eagerly."""
        from seglib.backend import tf

        if self.mode == "resize":
            return tf.image.resize(images, (self.size, self.size), method=interpolation)
        height, width = self.original_size
        bottom, right = self.size - height - self.pad_top, self.size - width - self.pad_left
        return tf.pad(images, [[0, 0], [self.pad_top, bottom], [self.pad_left, right], [0, 0]], mode="REFLECT")

    def to_original(self, outputs):
        """(batch, size, size, channels) model outputs -> (batch, height, width, channels) float32 numpy."""
        height, width = self.original_size
        if self.mode == "pad":
            return np.asarray(outputs[:, self.pad_top:self.pad_top + height, self.pad_left:self.pad_left + width],
                              dtype=np.float32)
        from seglib.backend import tf

        return tf.image.resize(outputs, (height, width), method="bilinear").numpy().astype(np.float32)


def downscale_roundtrip(masks, size):
    """Boolean masks (n, height, width[, classes]) resized to ``size`` and back at 0.5: the best a model at
    ``size`` can give."""
    masks = np.asarray(masks, dtype=np.float32)
    binary = masks.ndim == 3
    masks = masks[..., np.newaxis] if binary else masks
    geometry = Geometry("resize", size, masks.shape[1:3])
    roundtrip = geometry.to_original(geometry.to_model(masks, interpolation="area")) > 0.5
    return roundtrip[..., 0] if binary else roundtrip
