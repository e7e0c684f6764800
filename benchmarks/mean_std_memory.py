"""Peak memory of seglib.stats.mean_std against stacking the images for np.mean/np.std.

numpy reports its array allocations to tracemalloc, so the traced peak is the memory the computation needs.
The images come from a generator, so the input itself costs one image at a time.

Run: python benchmarks/mean_std_memory.py
"""

import time
import tracemalloc

import numpy as np

from seglib.stats import mean_std

NUM_IMAGES = 2000
SHAPE = (101, 101, 3)
MIB = 1 << 20


def generate_images(num_images, seed=0):
    """Yield random uint8 images one at a time."""
    rng = np.random.default_rng(seed)
    for _ in range(num_images):
        yield rng.integers(0, 256, size=SHAPE, dtype=np.uint8)


def streaming(num_images):
    result = mean_std(generate_images(num_images), batch_size=64)
    return result.mean_image, result.std_image


def stacked(num_images):
    """The two-pass numpy way: hold every image, then np.mean and np.std (a float64 copy of the stack)."""
    images = np.stack(list(generate_images(num_images)))
    return images.mean(axis=0), images.std(axis=0)


def peak_mib(function, num_images):
    tracemalloc.start()
    tracemalloc.reset_peak()
    result = function(num_images)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / MIB, result


def seconds(function, num_images):
    start = time.perf_counter()
    function(num_images)
    return time.perf_counter() - start


def main():
    sizes = (NUM_IMAGES, 4 * NUM_IMAGES)
    image_mib = np.prod(SHAPE) / MIB
    print(f"images {SHAPE} uint8 ({image_mib:.3f} MiB each), N = {sizes[0]}, 4N = {sizes[1]}, batch_size 64")
    print()
    print(f"{'method':<26}{'images':>8}{'peak MiB':>11}{'seconds':>10}")
    peaks, results = {}, {}
    for name, function in (("seglib.stats.mean_std", streaming), ("np.stack + mean/std", stacked)):
        for num_images in sizes:
            peaks[name, num_images], results[name, num_images] = peak_mib(function, num_images)
            elapsed = seconds(function, num_images)
            print(f"{name:<26}{num_images:>8}{peaks[name, num_images]:>11.1f}{elapsed:>10.2f}")
    print()
    for name in ("seglib.stats.mean_std", "np.stack + mean/std"):
        ratio = peaks[name, sizes[1]] / peaks[name, sizes[0]]
        print(f"{name:<26} peak(4N) / peak(N) = {ratio:.2f}")
    for num_images in sizes:
        share = peaks["seglib.stats.mean_std", num_images] / peaks["np.stack + mean/std", num_images]
        print(f"seglib peak / numpy peak, {num_images} images: {share:.1%} (aim <= 5%)")
    for num_images in sizes:
        ours, reference = results["seglib.stats.mean_std", num_images], results["np.stack + mean/std", num_images]
        difference = max(np.abs(ours[0] - reference[0]).max(), np.abs(ours[1] - reference[1]).max())
        print(f"max |seglib - numpy| over mean and std images, {num_images} images: {difference:.2e}")


if __name__ == "__main__":
    main()
