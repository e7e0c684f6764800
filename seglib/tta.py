"""Test-time augmentation: predict on transformed copies of a batch, undo each transform, average.

The transforms are the eight symmetries of the square (D4): flips and quarter turns move pixels without
resampling, so every inverse is exact and the averaged probabilities line up pixel for pixel. Horizontal flip
alone ("hflip") is the usual choice for photographs and seismic sections, whose up and down are not
interchangeable; the full "d4" set suits top-down images (microscopy).
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
    """Average of ``predict`` over the transforms of ``tta``, each output transformed back.

    Args:
        predict: a function from an image batch (n, size, size, channels) to probabilities of the same layout
            (e.g. ``seglib.predict.model_probabilities`` of a model).
        images: the batch, square when the set holds transposes.
        tta: "none", "hflip" or "d4" (``TTA_SETS``), or a sequence of transform names.

    Returns:
        float32 probabilities averaged in probability space.
    """
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
