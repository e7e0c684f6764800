"""Test-time augmentation: predict on transformed copies of a batch, undo each transform, average.

The transforms are the eight symmetries of the square (D4): they move pixels without resampling, so every inverse
is exact. "hflip" suits photographs and seismic sections, whose up and down differ; "d4" suits top-down images.
"""

import numpy as np


def _hflip(images):
    return images[:, :, ::-1]


def _vflip(images):
    return images[:, ::-1]


def _transpose(images):
    return np.swapaxes(images, 1, 2)


# Each transform is a sequence of the three generators above, applied left to right; its inverse applies the
# same steps right to left (each generator is its own inverse).
_D4 = {
    "identity": (),
    "hflip": (_hflip,),
    "vflip": (_vflip,),
    "rotate180": (_hflip, _vflip),
    "transpose": (_transpose,),
    "rotate90": (_transpose, _hflip),
    "rotate270": (_transpose, _vflip),
    "antitranspose": (_transpose, _hflip, _vflip),
}
TTA_SETS = {"none": ("identity",), "hflip": ("identity", "hflip"), "d4": tuple(_D4)}


def transform(images, name):
    """Apply the D4 transform ``name`` to a batch (n, height, width, ...)."""
    for step in _D4[_check(name)]:
        images = step(images)
    return images


def inverse_transform(images, name):
    """Undo ``transform(images, name)`` exactly."""
    for step in reversed(_D4[_check(name)]):
        images = step(images)
    return images


def predict_tta(predict, images, tta="hflip"):
    """float32 probabilities of ``predict`` (batch -> probabilities) averaged over the transforms of ``tta``
    ("none", "hflip", "d4" or a sequence of transform names), each output transformed back; "d4" needs square
    images."""
    if isinstance(tta, str):
        if tta not in TTA_SETS:
            raise ValueError(f"unknown TTA set {tta!r}; known: {sorted(TTA_SETS)}")
        names = TTA_SETS[tta]
    else:
        names = tuple(tta)
    images = np.asarray(images)
    transposes = any(_transpose in _D4[_check(name)] for name in names)
    if transposes and images.shape[1] != images.shape[2]:
        raise ValueError(f"transposing transforms need square images, got {images.shape[1:3]}")
    total = None
    for name in names:
        output = inverse_transform(np.asarray(predict(transform(images, name)), dtype=np.float32), name)
        total = output if total is None else total + output
    return total / len(names)


def _check(name):
    if name not in _D4:
        raise ValueError(f"unknown transform {name!r}; known: {sorted(_D4)}")
    return name
