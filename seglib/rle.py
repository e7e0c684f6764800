"""Run-length encoding in Kaggle's submission format.

Kaggle writes a mask as 1-indexed "start length" pairs over the flattened image. TGS Salt flattens
column-major (top to bottom, then left to right: ``order="F"``); Carvana and the hand-bone X-rays flatten
row-major (``order="C"``). No library ships this exact format, so it lives here, vectorised with numpy.
"""

import numpy as np

ORDERS = ("F", "C")


def _check_order(order):
    if order not in ORDERS:
        raise ValueError(f"RLE order must be 'F' (column-major) or 'C' (row-major), got {order!r}")


def encode(mask, order="F"):
    """Encode a 2-D mask (anything > 0 is foreground) as a Kaggle RLE string.

    Args:
        mask: 2-D array; values > 0 are foreground.
        order: "F" column-major (TGS) or "C" row-major (Carvana, hand bone).

    Returns:
        "start length start length ..." with 1-indexed starts; "" for an empty mask.
    """
    _check_order(order)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"RLE encodes one 2-D mask, got an array of shape {mask.shape}")
    pixels = (mask > 0).ravel(order=order).view(np.uint8)
    # Pad with a background pixel at each end so every run has a rising and a falling edge.
    padded = np.concatenate(([0], pixels, [0]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    if edges.size == 0:
        return ""
    starts = edges[0::2] + 1
    lengths = edges[1::2] - edges[0::2]
    return " ".join(map(str, np.column_stack((starts, lengths)).ravel()))


def parse(text, num_pixels, name="RLE"):
    """Parse and check an RLE string; return 0-indexed (starts, ends) arrays, ends exclusive.

    Args:
        text: "start length ..." string; "", None or NaN mean an empty mask.
        num_pixels: height * width of the image the runs must fit in.
        name: what to call the string in error messages (e.g. the image id).
    """
    if text is None or (isinstance(text, float) and np.isnan(text)):
        text = ""
    if not isinstance(text, str):
        raise ValueError(f"{name}: RLE must be a string, got {type(text).__name__}")
    fields = text.split()
    if not fields:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    try:
        numbers = np.array([int(field) for field in fields], dtype=np.int64)
    except ValueError:
        raise ValueError(f"{name}: RLE holds a value that is not a whole number: {text[:80]!r}") from None
    if numbers.size % 2:
        raise ValueError(f"{name}: RLE has an odd count of numbers ({numbers.size}); it needs start/length pairs")
    starts, lengths = numbers[0::2] - 1, numbers[1::2]
    if (starts < 0).any():
        raise ValueError(f"{name}: RLE start {int(starts.min()) + 1} is below 1 (starts are 1-indexed)")
    if (lengths <= 0).any():
        raise ValueError(f"{name}: RLE run length {int(lengths.min())} is not positive")
    ends = starts + lengths
    if ends.max() > num_pixels:
        raise ValueError(f"{name}: RLE run ends at pixel {int(ends.max())}, past the end of the {num_pixels}-pixel image")
    if (starts[1:] < ends[:-1]).any():
        raise ValueError(f"{name}: RLE runs are unsorted or overlap")
    return starts, ends


def decode(text, shape, order="F", name="RLE"):
    """Decode a Kaggle RLE string to a boolean mask of ``shape``.

    Raises ValueError on an odd count of numbers, non-positive lengths, runs past the end, or unsorted or
    overlapping runs, naming ``name`` (pass the image id) in the message.
    """
    _check_order(order)
    height, width = shape
    starts, ends = parse(text, height * width, name=name)
    # A +1/-1 edge image and a cumulative sum paint every run in one vectorised pass.
    edges = np.zeros(height * width + 1, dtype=np.int8)
    np.add.at(edges, starts, 1)
    np.add.at(edges, ends, -1)
    flat = np.cumsum(edges[:-1], dtype=np.int8).astype(bool)
    return flat.reshape((height, width), order=order)
