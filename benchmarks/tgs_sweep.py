"""Time seglib.metrics.tgs_sweep against the textbook per-threshold, per-image loop.

Run: python benchmarks/tgs_sweep.py
"""

import time
import tracemalloc

import numpy as np
from skimage.filters import gaussian

from seglib.metrics import TGS_IOU_THRESHOLDS, tgs_sweep

NUM_IMAGES = 400
SIZE = 101
NUM_THRESHOLDS = 50
HISTOGRAM_SUBSET = 40
# Every method is timed on the same inputs and scored by its best run, which discounts the first call's
# warm-up (allocating memory) and other processes' interference alike.
REPEATS = 5


def make_data(seed=0):
    """TGS-like data: ~40% empty masks, the rest blobs of varied coverage, and noisy probabilities."""
    rng = np.random.default_rng(seed)
    true_masks = np.zeros((NUM_IMAGES, SIZE, SIZE), dtype=np.uint8)
    probabilities = np.empty((NUM_IMAGES, SIZE, SIZE), dtype=np.float32)
    for index in range(NUM_IMAGES):
        smooth = gaussian(rng.normal(size=(SIZE, SIZE)), sigma=rng.uniform(4, 15))
        smooth = (smooth - smooth.mean()) / (smooth.std() + 1e-12)
        if rng.random() >= 0.4:
            coverage = rng.uniform(0.02, 0.95)
            true_masks[index] = smooth > np.quantile(smooth, 1 - coverage)
        # The model's belief: the truth blurred, plus noise; empty images still get some false positives.
        noisy = 0.7 * gaussian(true_masks[index].astype(float), sigma=2) + 0.25 * rng.random((SIZE, SIZE))
        probabilities[index] = np.clip(noisy + 0.15 * (smooth > 1.5), 0, 1)
    return true_masks, probabilities


def textbook_sweep(true_masks, probabilities, thresholds):
    """For each threshold, for each image: IoU, then precision over the 10 IoU thresholds."""
    scores = []
    for threshold in thresholds:
        image_scores = []
        for true, probability in zip(true_masks, probabilities):
            true, pred = true > 0, probability > threshold
            union = np.logical_or(true, pred).sum()
            if union == 0:
                image_scores.append(1.0)
                continue
            iou = np.logical_and(true, pred).sum() / union
            image_scores.append(np.mean([iou > iou_threshold for iou_threshold in TGS_IOU_THRESHOLDS]))
        scores.append(np.mean(image_scores))
    return np.array(scores)


def histogram2d_sweep(true_masks, probabilities, thresholds):
    """The old Kaggle kernels' way: np.histogram2d of (truth, prediction) per image per threshold."""
    scores = []
    for threshold in thresholds:
        image_scores = []
        for true, probability in zip(true_masks, probabilities):
            true, pred = (true > 0).ravel(), (probability > threshold).ravel()
            joint = np.histogram2d(true, pred, bins=(2, 2), range=((0, 1), (0, 1)))[0]
            intersection = joint[1, 1]
            union = joint.sum() - joint[0, 0]
            if union == 0:
                image_scores.append(1.0)
                continue
            iou = intersection / union
            image_scores.append(np.mean([iou > iou_threshold for iou_threshold in TGS_IOU_THRESHOLDS]))
        scores.append(np.mean(image_scores))
    return np.array(scores)


def peak_mib(function, *args):
    """Peak of numpy's allocations while ``function`` runs (tracemalloc sees them), in MiB."""
    tracemalloc.start()
    function(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20


def best_time(function, *args):
    best, result = float("inf"), None
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    true_masks, probabilities = make_data()
    thresholds = np.linspace(0.02, 0.98, NUM_THRESHOLDS)
    empty = np.mean(~true_masks.reshape(NUM_IMAGES, -1).any(axis=1))
    print(f"{NUM_IMAGES} masks {SIZE}x{SIZE} ({empty:.0%} empty), {NUM_THRESHOLDS} thresholds")

    fast_time, fast = best_time(tgs_sweep, true_masks, probabilities, thresholds)
    slow_time, slow = best_time(textbook_sweep, true_masks, probabilities, thresholds)
    subset = slice(0, HISTOGRAM_SUBSET)
    subset_time, histogram = best_time(histogram2d_sweep, true_masks[subset], probabilities[subset], thresholds)
    histogram_time = subset_time * NUM_IMAGES / HISTOGRAM_SUBSET
    subset_check = textbook_sweep(true_masks[subset], probabilities[subset], thresholds)

    print(f"best score {fast.max():.4f} at threshold {thresholds[fast.argmax()]:.3f}")
    print(f"max |tgs_sweep - textbook| = {np.abs(fast - slow).max():.3g}")
    print(f"max |histogram2d - textbook| on {HISTOGRAM_SUBSET} images = {np.abs(histogram - subset_check).max():.3g}")
    print()
    fast_peak = peak_mib(tgs_sweep, true_masks, probabilities, thresholds)
    slow_peak = peak_mib(textbook_sweep, true_masks, probabilities, thresholds)
    print(f"{'method':<34}{'seconds':>10}{'speed-up':>10}{'peak MiB':>10}")
    print(f"{'seglib.metrics.tgs_sweep':<34}{fast_time:>10.4f}{slow_time / fast_time:>9.1f}x{fast_peak:>10.1f}")
    print(f"{'textbook loop':<34}{slow_time:>10.4f}{1.0:>9.1f}x{slow_peak:>10.1f}")
    label = "histogram2d loop (extrapolated)"
    print(f"{label:<34}{histogram_time:>10.4f}{slow_time / histogram_time:>9.1f}x")
    print(f"(histogram2d timed on {HISTOGRAM_SUBSET} of {NUM_IMAGES} images, scaled by {NUM_IMAGES // HISTOGRAM_SUBSET})")
    print(f"speed-up of tgs_sweep over the textbook loop: {slow_time / fast_time:.1f}x (aim: >= 25x)")


if __name__ == "__main__":
    main()
