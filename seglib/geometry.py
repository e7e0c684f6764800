"""Input geometry: bring images to the model's size and predictions back to the competition's size.

A U-Net with four pooling steps needs a side divisible by 16; TGS images are 101x101. Two ways to get there:
- "pad": reflect-pad 101 -> 128. No pixel is resampled and the inverse (a crop) is exact.
- "resize": bilinear resize to the model size and back. Cheaper for big images (Carvana), but thin
  structures lose detail; notebook 01's resolution-ceiling table shows how much.
- "auto": "pad" when the images fit inside the model size, else "resize" (Carvana, hand bone).
Both directions live here so training, validation and submission can never disagree.
"""

import numpy as np
import tensorflow as tf

MODES = ("pad", "resize", "auto")


class Geometry:
    """Maps (height, width) images to (size, size) model inputs and model outputs back.

    Args:
        mode: "pad" (reflect-pad, exact crop back), "resize" (bilinear both ways) or "auto" (pad if the images
            fit, else resize); ``self.mode`` holds the resolved mode.
        size: the model's square input side.
        original_size: (height, width) of the competition's images.
    """

    def __init__(self, mode, size, original_size):
        if mode not in MODES:
            raise ValueError(f"geometry mode must be one of {MODES}, got {mode!r}")
        self.size = int(size)
        self.original_size = (int(original_size[0]), int(original_size[1]))
        if mode == "auto":
            mode = "pad" if _can_reflect_pad(self.original_size, self.size) else "resize"
        self.mode = mode
        if mode == "pad" and (self.size < self.original_size[0] or self.size < self.original_size[1]):
            raise ValueError(f"cannot pad {self.original_size} images to a smaller size {self.size}; "
                             "use mode='resize'")
        height, width = self.original_size
        # Reflect padding can add at most (side - 1) pixels per edge.
        if mode == "pad" and (self.size - height > 2 * (height - 1) or self.size - width > 2 * (width - 1)):
            raise ValueError(f"cannot reflect-pad {self.original_size} up to {self.size}")
        self.pad_top = (self.size - height) // 2
        self.pad_left = (self.size - width) // 2

    def __repr__(self):
        return f"Geometry(mode={self.mode!r}, size={self.size}, original_size={self.original_size})"

    @property
    def crop(self):
        """(top, left, height, width) of the original image inside a padded model input; None when resized."""
        return (self.pad_top, self.pad_left, *self.original_size) if self.mode == "pad" else None

    def to_dict(self):
        """Plain-JSON description, stored in the run's training config."""
        return {"mode": self.mode, "size": self.size, "original_size": list(self.original_size)}

    @classmethod
    def from_dict(cls, description):
        """Rebuild from ``to_dict()``."""
        return cls(description["mode"], description["size"], description["original_size"])

    def to_model(self, images, interpolation="bilinear"):
        """(batch, height, width, channels) tensor -> (batch, size, size, channels), inside tf.data or eagerly."""
        if self.mode == "pad":
            height, width = self.original_size
            paddings = [[0, 0],
                        [self.pad_top, self.size - height - self.pad_top],
                        [self.pad_left, self.size - width - self.pad_left],
                        [0, 0]]
            return tf.pad(images, paddings, mode="REFLECT")
        return tf.image.resize(images, (self.size, self.size), method=interpolation)

    def to_original(self, outputs):
        """(batch, size, size, channels) model outputs -> (batch, height, width, channels) numpy float32."""
        height, width = self.original_size
        if self.mode == "pad":
            cropped = outputs[:, self.pad_top:self.pad_top + height, self.pad_left:self.pad_left + width]
            return np.asarray(cropped, dtype=np.float32)
        return tf.image.resize(outputs, (height, width), method="bilinear").numpy().astype(np.float32)


def _can_reflect_pad(original_size, size):
    """Whether reflect padding reaches ``size`` (at most side - 1 pixels can be added per edge)."""
    return all(side <= size <= side + 2 * (side - 1) for side in original_size)


def downscale_roundtrip(masks, size):
    """Masks resized to (size, size) and back, thresholded at 0.5: what a model at ``size`` can at best give.

    Args:
        masks: boolean (n, height, width), or (n, height, width, classes) for multi-label masks.
        size: the candidate square input side.

    Returns:
        Boolean masks of the same shape.
    """
    masks = np.asarray(masks, dtype=np.float32)
    binary = masks.ndim == 3
    if binary:
        masks = masks[..., np.newaxis]
    geometry = Geometry("resize", size, masks.shape[1:3])
    small = geometry.to_model(masks, interpolation="area")
    roundtrip = geometry.to_original(small) > 0.5
    return roundtrip[..., 0] if binary else roundtrip
