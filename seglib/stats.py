"""Mean and standard-deviation images of a data set, in one streaming pass.

Normalising inputs needs the per-pixel (and per-channel) mean and std of the training images. Stacking the
whole set to call ``np.mean``/``np.std`` costs memory proportional to the number of images (and np.std makes
a float64 copy of it), which a Kaggle kernel cannot afford for large sets. ``RunningMoments`` keeps only a
count and two float64 images, whatever the number of images.

Integer images (uint8 photographs, 16-bit PNGs, boolean masks) are summed exactly in integer arithmetic,
one image at a time, so ``mean_std`` neither stacks nor converts them to float64; only float images go
through float64 batches. ``read_ahead`` decodes the files in a few threads ahead of the computation (Pillow
and numpy release the GIL), so reading and summing can use every free core while memory stays bounded.
"""

import collections
import dataclasses
import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from seglib.artifacts import load_npz, save_npz


@dataclasses.dataclass(eq=False)
class MeanStd:
    """Moments of a set of images, in the units of the images (no /255 applied).

    Attributes:
        mean_image: per-pixel mean, shaped like one input image.
        std_image: per-pixel population std (ddof=0), shaped like one input image.
        channel_mean: (C,) mean over all pixels of all images; C=1 for 2-D images.
        channel_std: (C,) population std over all pixels of all images.
        count: number of images.
    """

    mean_image: np.ndarray
    std_image: np.ndarray
    channel_mean: np.ndarray
    channel_std: np.ndarray
    count: int


# Integer dtypes summed exactly, and how. uint8: each image's squares fit uint16, the sums of squares of
# 65536 images fit uint32, and the plain sums are kept in uint16 for 257 images at a time (255 * 257 fits)
# before being folded into uint32, which halves the memory traffic of the commonest add. uint16: squares
# fit uint32, their sums uint64, and 1024 images' sums uint32. At a flush (65536 uint8 or 1024 uint16
# images at most), n * sum(x**2) and sum(x)**2 stay below 2**53, so float64 holds them and their difference
# exactly.
_ExactPlan = collections.namedtuple("_ExactPlan", "square_dtype sum_dtype part_dtype part_limit flush_limit")
_EXACT_SUMS = {
    np.dtype(np.uint8): _ExactPlan(np.uint16, np.uint32, np.uint16, 257, 1 << 16),
    np.dtype(np.uint16): _ExactPlan(np.uint32, np.uint64, np.uint32, 1 << 10, 1 << 10),
}
# Elements per slice when turning the integer sums and the moments into float64 results: small enough for
# the few temporaries of a slice to stay in the CPU cache, large enough to keep numpy's per-call cost small.
_SLICE_ELEMENTS = 1 << 17


def _exact_dtype(dtype):
    """Whether ``RunningMoments`` sums images of ``dtype`` exactly in integers (bool is summed as uint8)."""
    return dtype == np.bool_ or dtype in _EXACT_SUMS


def _row_slices(shape):
    """Slices over the first axis of an (H, W, C) array, each about ``_SLICE_ELEMENTS`` elements."""
    rows = max(1, _SLICE_ELEMENTS // max(1, shape[1] * shape[2]))
    return [slice(start, start + rows) for start in range(0, shape[0], rows)]


class _ExactSums:
    """Exact integer sums of images and of their squares, for one integer dtype, in place."""

    def __init__(self, dtype, shape):
        self.dtype = dtype
        self.plan = _EXACT_SUMS[dtype]
        self.count = 0
        self.part_count = 0
        self.part = np.zeros(shape, self.plan.part_dtype)  # the sum of the latest <= part_limit images
        self.total = None  # the sum of the images before them, once there are any
        self.squares = np.zeros(shape, self.plan.sum_dtype)
        self.buffer = np.empty(shape, self.plan.square_dtype)

    def add(self, image):
        if self.part_count == self.plan.part_limit:
            if self.total is None:
                self.total = self.part.astype(self.plan.sum_dtype)
            else:
                np.add(self.total, self.part, out=self.total)
            self.part.fill(0)
            self.part_count = 0
        np.add(self.part, image, out=self.part)
        np.add(self.squares, np.multiply(image, image, out=self.buffer, dtype=self.plan.square_dtype),
               out=self.squares)
        self.count += 1
        self.part_count += 1

    def moments(self):
        """(mean, M2) in float64; M2 = (n * sum(x**2) - sum(x)**2) / n is exact up to the final division."""
        count = self.count
        mean = np.empty(self.squares.shape, np.float64)
        m2 = np.empty(self.squares.shape, np.float64)
        for rows in _row_slices(mean.shape):
            mean_rows, m2_rows = mean[rows], m2[rows]
            np.copyto(mean_rows, self.part[rows])
            if self.total is not None:
                mean_rows += self.total[rows]
            np.multiply(self.squares[rows], float(count), out=m2_rows)
            m2_rows -= np.square(mean_rows)
            m2_rows /= count
            mean_rows /= count
        return mean, m2


class RunningMoments:
    """Per-pixel count, mean and M2 (sum of squared deviations) of images of one shape, updated by batch.

    Each batch's mean and M2 come from vectorised numpy, and are merged into the running totals with Chan
    et al.'s parallel formula. A naive running sum of squares cancels catastrophically when the mean is
    large next to the spread (e.g. 1e4 + noise), and Welford's update image by image would be a slow
    Python loop; merging whole-batch moments is both exact in float64 and fast.

    uint8, uint16 and bool images skip float64 batches altogether: ``add`` sums each image and its square
    into integer accumulators in place (no copy of the image, no float64 work per image). Integer sums are
    exact, so the chunk's M2 = (n * sum(x**2) - sum(x)**2) / n has no cancellation either; the chunk is
    merged with Chan's formula when ``result`` is called or before the integers could overflow.
    """

    def __init__(self):
        self.merged_count = 0  # images in mean and m2; ``count`` adds the pending integer sums
        self.mean = None
        self.m2 = None
        self.image_shape = None
        self._sums = None  # pending exact integer sums (_ExactSums)
        self._mean_given_away = False  # result() handed self.mean out: copy it before changing it in place

    @property
    def count(self):
        """Images seen so far."""
        return self.merged_count + (self._sums.count if self._sums is not None else 0)

    def _check_shape(self, image_shape):
        if self.image_shape is not None and image_shape != self.image_shape:
            raise ValueError(
                f"batch images have shape {image_shape}, but earlier images had shape {self.image_shape}"
            )

    def update(self, batch):
        """Merge a batch of images (N, H, W, C), or (N, H, W) for one channel, of any numeric dtype."""
        batch = np.asarray(batch)
        if batch.ndim not in (3, 4):
            raise ValueError(f"a batch must be (N, H, W) or (N, H, W, C), got an array of shape {batch.shape}")
        return self._update(batch, owned=False)

    def _update(self, batch, owned):
        """``update``; an ``owned`` float64 batch is the caller's to give away and is overwritten."""
        self._check_shape(batch.shape[1:])
        if batch.shape[0] == 0:
            return self
        self.image_shape = batch.shape[1:]
        if _exact_dtype(batch.dtype):
            for image in batch:
                self._add_exact(image)
            return self
        values = batch.reshape(batch.shape[:3] + (-1,))
        private = owned and values.dtype == np.float64
        return self._update_float(values if private else values.astype(np.float64))

    def add(self, image):
        """Merge one image (H, W, C) or (H, W); uint8, uint16 and bool images are summed exactly in place."""
        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise ValueError(f"an image must be (H, W) or (H, W, C), got an array of shape {image.shape}")
        if not _exact_dtype(image.dtype):
            return self.update(image[np.newaxis])
        self._check_shape(image.shape)
        self.image_shape = image.shape
        self._add_exact(image)
        return self

    def _add_exact(self, image):
        """Add one uint8/uint16/bool image, of the checked shape, to the pending integer sums."""
        if image.dtype == np.bool_:
            image = image.view(np.uint8)
        image = image.reshape(image.shape[:2] + (-1,))
        sums = self._sums
        if sums is not None and (sums.count == sums.plan.flush_limit or sums.dtype != image.dtype):
            self._flush()
            sums = None
        if sums is None:
            sums = self._sums = _ExactSums(image.dtype, image.shape)
        sums.add(image)

    def _flush(self):
        """Merge the pending integer sums into the running moments."""
        if self._sums is not None:
            sums, self._sums = self._sums, None
            self._merge(sums.count, *sums.moments())

    def _update_float(self, values):
        """Merge a batch given as a private float64 array (N, H, W, C), which is overwritten."""
        batch_mean = values.mean(axis=0)
        np.subtract(values, batch_mean, out=values)
        np.square(values, out=values)
        self._merge(len(values), batch_mean, values.sum(axis=0))
        return self

    def _merge(self, count, mean, m2):
        """Chan's parallel merge of a chunk's (count, mean, M2); ``mean`` and ``m2`` are reused as buffers."""
        if self.merged_count == 0:
            self.merged_count, self.mean, self.m2 = count, mean, m2
            return
        total = self.merged_count + count
        if self._mean_given_away:
            self.mean, self._mean_given_away = self.mean.copy(), False
        delta = np.subtract(mean, self.mean, out=mean)
        # The same sums, in the same order, as self.m2 + m2 + delta**2 * (n_a * n_b / n), in place.
        self.m2 += m2
        self.m2 += np.multiply(np.square(delta, out=m2), self.merged_count * count / total, out=m2)
        self.mean += np.multiply(delta, count / total, out=delta)
        self.merged_count = total

    def result(self):
        """Return the ``MeanStd`` of every image seen so far."""
        self._flush()
        if self.count == 0:
            raise ValueError("no images were given, so there is no mean or std")
        # Law of total variance over the pixel positions (each holds the same number of values):
        # Var(all values of a channel) = mean over pixels of Var(pixel) + variance over pixels of mean(pixel).
        # So the channel moments follow exactly from the per-pixel ones, with no second pass over the images.
        # Slice by slice, so that the float64 temporaries stay small.
        mean, std = self.mean, np.empty_like(self.m2)
        pixels = mean.shape[0] * mean.shape[1]
        slices = _row_slices(mean.shape)
        # Channel sums as a product with a vector of ones: numpy's sum over the leading axes of an (h, w, 3)
        # array crawls along 3-element rows, the matrix-vector product runs at memory speed.
        ones = np.ones((slices[0].stop - slices[0].start) * mean.shape[1])

        def channel_sums(rows):
            flat = rows.reshape(-1, rows.shape[-1])
            return ones[: len(flat)] @ flat

        mean_sum = variance_sum = spread_sum = 0.0
        for rows in slices:
            variance = np.divide(self.m2[rows], self.count, out=std[rows])
            variance_sum = variance_sum + channel_sums(variance)
            np.sqrt(variance, out=variance)
            mean_sum = mean_sum + channel_sums(mean[rows])
        channel_mean = mean_sum / pixels
        for rows in slices:
            spread_sum = spread_sum + channel_sums(np.square(mean[rows] - channel_mean))
        self._mean_given_away = True
        return MeanStd(
            mean_image=mean.reshape(self.image_shape),
            std_image=std.reshape(self.image_shape),
            channel_mean=channel_mean,
            channel_std=np.sqrt(variance_sum / pixels + spread_sum / pixels),
            count=self.count,
        )


def default_workers():
    """Threads ``read_ahead`` uses by default: the CPUs this process may run on, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def read_ahead(function, *iterables, workers=None, buffer=None):
    """Like ``map(function, *iterables)``, but computed by a pool of threads that run a bounded way ahead.

    Meant for reading and decoding files while the caller computes on the previous ones: Pillow and numpy
    release the GIL, so N threads decode up to N images at once. Results come in the order of the items.
    At most ``buffer`` results are computed or waiting beyond the one the caller holds, so memory does not
    grow with the number of items. An exception in ``function`` is raised from the generator at that item's
    turn, with a note naming the item's arguments (Python 3.11+); the items queued after it are cancelled
    (calls already running finish first).

    Args:
        function: called as ``function(*args)`` for each tuple of ``zip(*iterables)``, from worker threads,
            so it must be thread-safe (``competition.read_image`` is; with Carvana's ``background_channels``
            two threads may both compute a car's backdrop the first time it is needed).
        workers: threads; default ``default_workers()``.
        buffer: items in flight ahead of the caller, at least 1; default ``2 * workers``.

    Example:
        images = stats.read_ahead(competition.read_image, image_ids)
        result = stats.mean_std(images)
    """
    workers = default_workers() if workers is None else workers
    buffer = 2 * workers if buffer is None else buffer
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if buffer < 1:
        raise ValueError(f"buffer must be at least 1, got {buffer}")
    return _read_ahead(function, zip(*iterables), workers, buffer)


def _read_ahead(function, items, workers, buffer):
    pending = collections.deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seglib-read-ahead") as pool:
        try:
            for args in itertools.islice(items, buffer):
                pending.append((args, pool.submit(function, *args)))
            while pending:
                args, future = pending.popleft()
                try:
                    result = future.result()
                except Exception as error:
                    if hasattr(error, "add_note"):  # Python 3.11+
                        arguments = ", ".join(map(repr, args))
                        error.add_note(f"raised by {getattr(function, '__name__', function)}({arguments})")
                    raise
                # Keep the pool busy while the caller works on this result.
                for args in itertools.islice(items, 1):
                    pending.append((args, pool.submit(function, *args)))
                yield result
        finally:
            # The caller stopped early or an item failed: start nothing more; the pool's exit waits for the
            # at most ``workers`` calls already running.
            for _, future in pending:
                future.cancel()


def mean_std(images, batch_size=64, progress=None):
    """Mean and std images of ``images`` in one pass; memory does not grow with the number of images.

    Args:
        images: any iterable of single images (H, W) or (H, W, C), e.g. a generator reading files, or
            ``read_ahead(read, ids)`` to decode in threads while the sums run.
        batch_size: float images merged at a time; larger is faster and costs batch_size float64 images.
            uint8, uint16 and bool images are summed exactly one at a time, so it does not matter for them.
        progress: None, a tqdm-like callable to wrap ``images`` with, or True for ``tqdm.tqdm``.

    Returns:
        MeanStd in the units of the images.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if progress is True:
        from tqdm import tqdm

        total = len(images) if hasattr(images, "__len__") else None
        images = tqdm(images, total=total, desc="mean/std")
    elif progress:
        images = progress(images)
    moments = RunningMoments()
    batch, first_shape = [], None
    for index, image in enumerate(images):
        image = np.asarray(image)
        if first_shape is None:
            first_shape = image.shape
            if image.ndim not in (2, 3):
                raise ValueError(f"images must be (H, W) or (H, W, C), image 0 has shape {image.shape}")
        elif image.shape != first_shape:
            raise ValueError(f"image {index} has shape {image.shape}, but image 0 has shape {first_shape}")
        if _exact_dtype(image.dtype):
            moments.add(image)
            continue
        batch.append(image)
        if len(batch) == batch_size:
            moments._update(_stack_float64(batch), owned=True)
            batch = []
    if batch:
        moments._update(_stack_float64(batch), owned=True)
    return moments.result()


def _stack_float64(images):
    """Stack images straight into one float64 array (no intermediate stack in the images' dtype)."""
    stacked = np.empty((len(images),) + images[0].shape, dtype=np.float64)
    for row, image in zip(stacked, images):
        row[...] = image
    return stacked


def save_mean_std(path, result):
    """Write a ``MeanStd`` to a ``.npz`` file, atomically."""
    return save_npz(
        path,
        mean_image=result.mean_image,
        std_image=result.std_image,
        channel_mean=result.channel_mean,
        channel_std=result.channel_std,
        count=np.int64(result.count),
    )


def load_mean_std(path):
    """Read a ``MeanStd`` written by ``save_mean_std``."""
    stored = load_npz(path, what="mean/std file")
    missing = {field.name for field in dataclasses.fields(MeanStd)} - set(stored)
    if missing:
        raise ValueError(f"{path} is not a mean/std file: it lacks {', '.join(sorted(missing))}")
    return MeanStd(
        mean_image=stored["mean_image"],
        std_image=stored["std_image"],
        channel_mean=stored["channel_mean"],
        channel_std=stored["channel_std"],
        count=int(stored["count"]),
    )
