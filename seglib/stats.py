"""Mean and standard-deviation images of a data set, in one streaming pass.

Normalising inputs needs the per-pixel (and per-channel) mean and std of the training images. Stacking the
whole set to call ``np.mean``/``np.std`` costs memory proportional to the number of images (and np.std makes
a float64 copy of it), which a Kaggle kernel cannot afford for large sets. ``RunningMoments`` keeps only a
count and two float64 images, whatever the number of images.
"""

import dataclasses

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


class RunningMoments:
    """Per-pixel count, mean and M2 (sum of squared deviations) of images of one shape, updated by batch.

    Each batch's mean and M2 come from vectorised numpy, and are merged into the running totals with Chan
    et al.'s parallel formula. A naive running sum of squares cancels catastrophically when the mean is
    large next to the spread (e.g. 1e4 + noise), and Welford's update image by image would be a slow
    Python loop; merging whole-batch moments is both exact in float64 and fast.
    """

    def __init__(self):
        self.count = 0
        self.mean = None
        self.m2 = None
        self.image_shape = None

    def update(self, batch):
        """Merge a batch of images (N, H, W, C), or (N, H, W) for one channel, of any numeric dtype."""
        batch = np.asarray(batch)
        if batch.ndim not in (3, 4):
            raise ValueError(f"a batch must be (N, H, W) or (N, H, W, C), got an array of shape {batch.shape}")
        if self.image_shape is not None and batch.shape[1:] != self.image_shape:
            raise ValueError(
                f"batch images have shape {batch.shape[1:]}, but earlier images had shape {self.image_shape}"
            )
        if batch.shape[0] == 0:
            return self
        self.image_shape = batch.shape[1:]
        values = batch.reshape(batch.shape[:3] + (-1,)).astype(np.float64)
        batch_count = len(values)
        batch_mean = values.mean(axis=0)
        # `values` is already a private float64 copy, so the deviations can overwrite it.
        np.subtract(values, batch_mean, out=values)
        np.square(values, out=values)
        batch_m2 = values.sum(axis=0)
        if self.count == 0:
            self.count, self.mean, self.m2 = batch_count, batch_mean, batch_m2
            return self
        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (batch_count / total)
        self.m2 = self.m2 + batch_m2 + np.square(delta) * (self.count * batch_count / total)
        self.count = total
        return self

    def result(self):
        """Return the ``MeanStd`` of every image seen so far."""
        if self.count == 0:
            raise ValueError("no images were given, so there is no mean or std")
        pixel_variance = self.m2 / self.count
        # Law of total variance over the pixel positions (each holds the same number of values):
        # Var(all values of a channel) = mean over pixels of Var(pixel) + variance over pixels of mean(pixel).
        # So the channel moments follow exactly from the per-pixel ones, with no second pass.
        channel_mean = self.mean.mean(axis=(0, 1))
        channel_variance = pixel_variance.mean(axis=(0, 1)) + self.mean.var(axis=(0, 1))
        return MeanStd(
            mean_image=self.mean.reshape(self.image_shape),
            std_image=np.sqrt(pixel_variance).reshape(self.image_shape),
            channel_mean=channel_mean,
            channel_std=np.sqrt(channel_variance),
            count=self.count,
        )


def _batches(images, batch_size):
    """Yield stacked batches of up to ``batch_size`` images, checking every image has the first one's shape."""
    batch, first_shape = [], None
    for index, image in enumerate(images):
        image = np.asarray(image)
        if first_shape is None:
            first_shape = image.shape
            if image.ndim not in (2, 3):
                raise ValueError(f"images must be (H, W) or (H, W, C), image 0 has shape {image.shape}")
        elif image.shape != first_shape:
            raise ValueError(f"image {index} has shape {image.shape}, but image 0 has shape {first_shape}")
        batch.append(image)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def mean_std(images, batch_size=64, progress=None):
    """Mean and std images of ``images`` in one pass; memory does not grow with the number of images.

    Args:
        images: any iterable of single images (H, W) or (H, W, C), e.g. a generator reading files.
        batch_size: images merged at a time; larger is faster and costs batch_size float64 images.
        progress: None, a tqdm-like callable to wrap ``images`` with, or True for ``tqdm.auto.tqdm``.

    Returns:
        MeanStd in the units of the images.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if progress is True:
        from tqdm.auto import tqdm

        total = len(images) if hasattr(images, "__len__") else None
        images = tqdm(images, total=total, desc="mean/std")
    elif progress:
        images = progress(images)
    moments = RunningMoments()
    for batch in _batches(images, batch_size):
        moments.update(batch)
    return moments.result()


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
