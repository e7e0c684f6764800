"""Per-pixel mean and std images of a data set, in one streaming pass at flat memory."""

import collections
import dataclasses
import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from seglib.artifacts import load_npz, save_npz
from seglib.errors import SeglibError


@dataclasses.dataclass(eq=False)
class MeanStd:
    """Moments in the units of the images: per-pixel ``mean_image``/``std_image`` shaped like one image,
    ``channel_mean``/``channel_std`` of shape (C,) over all pixels (C=1 for 2-D images), population std."""

    mean_image: np.ndarray
    std_image: np.ndarray
    channel_mean: np.ndarray
    channel_std: np.ndarray
    count: int


class RunningMoments:
    """Per-pixel count, mean and M2 (sum of squared deviations) of images of one shape: exact sums of x and
    x**2 over each ``batch_size`` images give a batch's moments, merged in float64 with Chan et al.'s formula
    so that rounding does not grow with the image count. A merge costs what summing ~10 images costs, so the
    default batch is about the largest whose float32 sums of 8-bit images stay exact (258)."""

    def __init__(self, batch_size=256):
        if not 1 <= batch_size <= 258:
            raise SeglibError(f"batch_size must be between 1 and 258, got {batch_size}")
        self.batch_size, self.count, self.mean, self.m2, self.image_shape = batch_size, 0, None, None, None
        self._batch = None  # [images, shift or None, sum of x - shift, sum of (x - shift)**2] not merged yet
        self._mean_handed_out = False  # result() returned self.mean itself: copy it before changing it

    def add(self, image):
        """Add one (H, W) or (H, W, C) image of any numeric dtype."""
        image = np.asarray(image)
        if image.ndim not in (2, 3) or self.image_shape not in (None, image.shape):
            raise SeglibError(f"image {self.count} has shape {image.shape}, but images must be "
                              f"{self.image_shape or '(H, W) or (H, W, C)'}")
        self.image_shape, image = image.shape, image.reshape(image.shape[:2] + (-1,))
        if self.mean is None:
            self.mean, self.m2 = np.zeros(image.shape), np.zeros(image.shape)
        if self._batch is not None and self._batch[2].dtype == np.float32 and image.dtype != np.uint8:
            self._merge_batch()  # float32 sums are exact for 8-bit images only
        if self._batch is None:
            # Float images are summed as deviations from the batch's first one: a large offset cannot cancel.
            shift = image.astype(np.float64) if image.dtype.kind == "f" else None
            # 8-bit images (JPEGs, PNGs): float32 sums are exact up to 258 images (255**2 * 258 < 2**24) and
            # halve the memory traffic, which on two cores is what sets the speed next to decoding.
            dtype = np.float32 if image.dtype == np.uint8 else np.float64
            self._batch = [0, shift, np.zeros(image.shape, dtype), np.zeros(image.shape, dtype)]
        _, shift, sums, squares = self._batch
        for rows in _row_blocks(image.shape[0]):
            block = image[rows].astype(sums.dtype)  # one cast, then single-dtype ufuncs: faster than mixed ones
            if shift is not None:
                block -= shift[rows]
            sums[rows] += block
            squares[rows] += np.square(block, out=block)
        self._batch[0] += 1
        self.count += 1
        if self._batch[0] == self.batch_size:
            self._merge_batch()
        return self

    def _merge_batch(self):
        count, shift, sums, squares = self._batch
        self._batch = None
        if self._mean_handed_out:  # copy on write instead of in result(): no third float64 image at the peak
            self.mean, self._mean_handed_out = self.mean.copy(), False
        for rows in _row_blocks(sums.shape[0]):
            mean, m2 = sums[rows].astype(np.float64), squares[rows].astype(np.float64)
            m2 *= count
            m2 -= mean * mean  # n * sum(x**2) - sum(x)**2: exact for integer images, no cancellation
            m2 /= count
            mean /= count
            if shift is not None:
                mean += shift[rows]
            delta = np.subtract(mean, self.mean[rows], out=mean)
            self.m2[rows] += m2
            self.m2[rows] += delta * delta * ((self.count - count) * count / self.count)
            self.mean[rows] += delta * (count / self.count)

    def result(self):
        """The ``MeanStd`` of the images added so far; later images do not change it."""
        if self._batch is not None:
            self._merge_batch()
        if self.count == 0:
            raise SeglibError("no images were given, so there is no mean or std")
        std = np.divide(self.m2, self.count)
        np.sqrt(std, out=std)
        # Law of total variance: a channel's variance is the mean per-pixel variance plus the variance of the
        # per-pixel means. Channel by channel, as numpy reduces an (H, W, 3) array over (0, 1) slowly and less
        # exactly; the variance of the means by blocks of rows, as a whole-image temporary would raise the peak.
        channels = range(std.shape[-1])
        channel_mean = np.array([self.mean[..., c].mean() for c in channels])
        spread = sum(np.square(self.mean[rows] - channel_mean).sum(axis=(0, 1)) for rows in _row_blocks(len(std)))
        pixel_variance = np.array([self.m2[..., c].mean() for c in channels]) / self.count
        channel_std = np.sqrt(pixel_variance + spread / (std.size // std.shape[-1]))
        mean, std = self.mean.reshape(self.image_shape), std.reshape(self.image_shape)
        self._mean_handed_out = True
        return MeanStd(mean, std, channel_mean, channel_std, self.count)


def _row_blocks(height, rows=64):
    """Slices of ``rows`` rows. One block's float temporaries stay in the CPU's cache: a 1918x1280 RGB image
    is summed in 4.9 ms instead of 7.9 ms with whole-image ones (benchmarks/mean_std_speed.py)."""
    return [slice(start, start + rows) for start in range(0, height, rows)]


def read_ahead(function, *iterables, workers=None, buffer=None):
    """Like ``map(function, *iterables)``, run by ``workers`` threads (default: one per CPU, at most 8) at most
    ``buffer`` items ahead of the caller, so memory stays flat; results come in order. The default buffer,
    ``workers + 1``, keeps every thread decoding and one result ready: as fast as more on JPEGs, with fewer
    decoded images held (benchmarks/mean_std_speed.py).
    Pillow and numpy release the GIL, so files decode in parallel with each other and with the caller's work.

    An error is raised at its item's turn, with a note naming the item's arguments; later items are cancelled.
    ``function`` must be thread-safe. Example: ``mean_std(read_ahead(competition.read_image, image_ids))``.
    """
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    buffer = workers + 1 if buffer is None else buffer
    if workers < 1 or buffer < 1:
        raise SeglibError(f"read_ahead needs workers >= 1 and buffer >= 1, got workers={workers}, buffer={buffer}")
    return _read_ahead(function, zip(*iterables), workers, buffer)


def _read_ahead(function, items, workers, buffer):
    with ThreadPoolExecutor(workers, thread_name_prefix="seglib-read-ahead") as pool:
        pending = collections.deque((args, pool.submit(function, *args)) for args in itertools.islice(items, buffer))
        try:
            while pending:
                args, future = pending.popleft()
                try:
                    result = future.result()
                except Exception as error:
                    if hasattr(error, "add_note"):  # Python 3.11+
                        name = getattr(function, "__name__", function)
                        error.add_note(f"raised by {name}({', '.join(map(repr, args))})")
                    raise
                for args in itertools.islice(items, 1):  # keep the pool busy while the caller works
                    pending.append((args, pool.submit(function, *args)))
                yield result
        finally:
            for _, future in pending:  # stopped early or failed: start nothing more
                future.cancel()


def mean_std(images, batch_size=256):
    """``MeanStd`` of an iterable of (H, W) or (H, W, C) images in one pass, at memory flat in their number.
    Pass ``read_ahead(read, ids)`` to decode the files in threads meanwhile."""
    moments = RunningMoments(batch_size)
    for image in images:
        moments.add(image)
    return moments.result()


def save_mean_std(path, result):
    """Write a ``MeanStd`` to a ``.npz`` file, atomically."""
    return save_npz(path, **{**vars(result), "count": np.int64(result.count)})


def load_mean_std(path):
    """Read a ``MeanStd`` written by ``save_mean_std``."""
    stored = load_npz(path, what="mean/std file (notebook 02)")
    names = [field.name for field in dataclasses.fields(MeanStd)]
    missing = [name for name in names if name not in stored]
    if missing:
        raise SeglibError(f"{path} is not a mean/std file: it lacks {', '.join(missing)}")
    return MeanStd(**{name: stored[name] for name in names[:-1]}, count=int(stored["count"]))
