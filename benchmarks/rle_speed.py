"""Time seglib.rle encode/decode on Carvana-sized masks against the classic Kaggle kernel and a memory copy.

The masks are 1280 rows x 1918 columns, row-major ("C") like Carvana's submission. The reference is the
RLE every Carvana kernel copied (pad with a zero at each end, np.where on the shifted comparison,
" ".join(str(x) ...)) and its decode (a Python loop filling one slice per run). A plain ``mask.copy()``
is the floor: no RLE can beat one pass over the mask's bytes. Peak memory is tracemalloc's, which numpy
reports its array allocations to; it is measured in a separate pass because tracing slows Python down.

Run: python benchmarks/rle_speed.py
"""

import time
import tracemalloc

import numpy as np

from seglib import rle

HEIGHT, WIDTH = 1280, 1918
NUM_MASKS = 8
SEED = 0
# Every method is timed on the same masks and scored by its best run, which discounts the first call's
# warm-up (allocating memory) and other processes' interference alike. The repeats interleave the methods,
# so a burst of load from another job hits all of them rather than one.
REPEATS = 15
# The noisy mask has ~1.2 million runs; the reference decode loops over them in Python, so fewer repeats.
NOISY_REPEATS = 3
AIM_ENCODE_MS = 1.6
AIM_COPY_RATIO = 10.0
MIB = 1 << 20


def car_mask(rng):
    """A car-like blob: an ellipse (the body) plus a rectangle (the cabin), ragged edges, a few holes."""
    rows = np.arange(HEIGHT)[:, None]
    cols = np.arange(WIDTH)[None, :]
    # Ragged edges: every row and every column of the outline is shifted by a few pixels of smoothed noise.
    row_jitter = np.convolve(rng.normal(0, 6, HEIGHT + 8), np.ones(9) / 3, mode="valid")[:, None]
    col_jitter = np.convolve(rng.normal(0, 6, WIDTH + 8), np.ones(9) / 3, mode="valid")[None, :]
    x, y = cols + row_jitter, rows + col_jitter
    center_row, center_col = rng.uniform(0.5, 0.6) * HEIGHT, rng.uniform(0.45, 0.55) * WIDTH
    half_length, half_height = rng.uniform(0.36, 0.42) * WIDTH, rng.uniform(0.15, 0.19) * HEIGHT
    body = ((x - center_col) / half_length) ** 2 + ((y - center_row) / half_height) ** 2 <= 1
    cabin_top = center_row - half_height * rng.uniform(1.6, 1.9)
    cabin_left = center_col - half_length * rng.uniform(0.35, 0.5)
    cabin_right = center_col + half_length * rng.uniform(0.25, 0.4)
    cabin = (y >= cabin_top) & (y <= center_row) & (x >= cabin_left) & (x <= cabin_right)
    mask = body | cabin
    # Holes: windows and gaps between the wheels and the body show the background through the car.
    for _ in range(rng.integers(2, 6)):
        hole_row = rng.uniform(cabin_top + 20, center_row + half_height * 0.5)
        hole_col = rng.uniform(center_col - half_length * 0.6, center_col + half_length * 0.6)
        radius_row, radius_col = rng.uniform(10, 45), rng.uniform(20, 120)
        mask &= ((cols - hole_col) / radius_col) ** 2 + ((rows - hole_row) / radius_row) ** 2 > 1
    return mask


def make_masks(seed=SEED):
    rng = np.random.default_rng(seed)
    cars = [car_mask(rng) for _ in range(NUM_MASKS)]
    empty = np.zeros((HEIGHT, WIDTH), dtype=bool)
    # Worst case: independent fair coin flips, a run boundary at every other pixel on average.
    noisy = rng.random((HEIGHT, WIDTH)) < 0.5
    return cars, empty, noisy


def reference_encode(mask):
    """The classic Kaggle kernel RLE (row-major)."""
    pixels = mask.flatten()
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def reference_decode(text, shape=(HEIGHT, WIDTH)):
    """The classic Kaggle kernel RLE decode: one slice assignment per run, in a Python loop."""
    numbers = text.split()
    starts, lengths = [np.asarray(x, dtype=int) for x in (numbers[0:][::2], numbers[1:][::2])]
    starts -= 1
    ends = starts + lengths
    image = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for low, high in zip(starts, ends):
        image[low:high] = 1
    return image.reshape(shape)


def seglib_encode(mask):
    return rle.encode(mask, order="C")


def seglib_encode_f(mask):
    return rle.encode(mask, order="F")


def seglib_decode(text):
    return rle.decode(text, (HEIGHT, WIDTH), order="C")


def memory_copy(mask):
    return mask.copy()


def best_times(methods, inputs, repeats):
    """Seconds per input for each (name, function, inputs key): each input's best of ``repeats``, averaged.

    Timing each call on its own and keeping its best run discards the calls another job interrupted.
    """
    best = {name: [float("inf")] * len(inputs[key]) for name, _, key in methods}
    for _ in range(repeats):
        for name, function, key in methods:
            for index, item in enumerate(inputs[key]):
                start = time.perf_counter()
                function(item)
                best[name][index] = min(best[name][index], time.perf_counter() - start)
    return {name: sum(seconds) / len(seconds) for name, seconds in best.items()}


def peak_mib(function, item):
    tracemalloc.start()
    tracemalloc.reset_peak()
    function(item)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / MIB


def check(cars, empty, noisy):
    """Compare seglib with the reference on every mask: the strings and the decoded masks must be identical."""
    failures = 0
    for label, mask in [(f"car {i}", m) for i, m in enumerate(cars)] + [("empty", empty), ("noisy", noisy)]:
        ours, theirs = seglib_encode(mask), reference_encode(mask)
        same_text = ours == theirs
        same_decode = np.array_equal(seglib_decode(ours), reference_decode(theirs))
        round_trip = np.array_equal(seglib_decode(ours), mask)
        # Column-major: the reference on the transposed (column-major flattened) mask.
        same_f = rle.encode(mask, order="F") == reference_encode(np.ascontiguousarray(mask.T))
        same_f_decode = np.array_equal(rle.decode(rle.encode(mask, order="F"), mask.shape, order="F"), mask)
        ok = same_text and same_decode and round_trip and same_f and same_f_decode
        failures += not ok
        if label in ("empty", "noisy") or not ok:
            print(f"  {label:<7} identical C string {same_text}, decode {same_decode}, round trip {round_trip}; "
                  f"F string {same_f}, F round trip {same_f_decode}")
    print(f"  seglib == reference (C and F strings, decodes, round trips) on all {len(cars) + 2} masks: "
          f"{failures == 0}")
    return failures == 0


def main():
    cars, empty, noisy = make_masks()
    coverage = np.mean([m.mean() for m in cars])
    runs = np.mean([len(reference_encode(m).split()) // 2 for m in cars])
    print(f"{NUM_MASKS} car masks {HEIGHT}x{WIDTH} bool ({HEIGHT * WIDTH / MIB:.2f} MiB each), "
          f"mean coverage {coverage:.1%}, mean {runs:.0f} runs; "
          f"noisy mask {len(reference_encode(noisy).split()) // 2} runs")
    print(f"ms per mask: each mask's best of {REPEATS} repeats ({NOISY_REPEATS} for the noisy mask), averaged")
    print()
    print("correctness:")
    check(cars, empty, noisy)

    texts = {"car": [seglib_encode(m) for m in cars], "empty": [""], "noisy": [seglib_encode(noisy)]}
    groups = {"car": cars, "empty": [empty], "noisy": [noisy]}
    results = {}
    for group, repeats in (("car", REPEATS), ("empty", REPEATS), ("noisy", NOISY_REPEATS)):
        inputs = {"masks": groups[group], "texts": texts[group]}
        methods = [
            ("memory copy", memory_copy, "masks"),
            ("seglib encode C", seglib_encode, "masks"),
            ("reference encode", reference_encode, "masks"),
            ("seglib decode C", seglib_decode, "texts"),
            ("reference decode", reference_decode, "texts"),
            ("seglib encode F", seglib_encode_f, "masks"),
        ]
        results[group] = best_times(methods, inputs, repeats)
        peak_inputs = {"masks": groups[group][0], "texts": texts[group][0]}
        results[group, "peak"] = {name: peak_mib(function, peak_inputs[key]) for name, function, key in methods}

    for group in ("car", "empty", "noisy"):
        times, peaks = results[group], results[group, "peak"]
        copy = times["memory copy"]
        print()
        print(f"{group} masks:")
        print(f"{'method':<20}{'ms/mask':>10}{'x copy':>9}{'x reference':>13}{'peak MiB':>10}")
        for name, reference in (
            ("memory copy", None),
            ("seglib encode C", "reference encode"),
            ("reference encode", None),
            ("seglib decode C", "reference decode"),
            ("reference decode", None),
            ("seglib encode F", "reference encode"),
        ):
            ratio = f"{times[reference] / times[name]:>12.2f}x" if reference else f"{'':>13}"
            print(f"{name:<20}{times[name] * 1e3:>10.3f}{times[name] / copy:>8.1f}x{ratio}{peaks[name]:>10.2f}")
        if group == "car":
            print("(x reference: how many times faster than the classic kernel; F is compared with the C reference)")

    encode_ms = results["car"]["seglib encode C"] * 1e3
    copy_ratio = results["car"]["seglib encode C"] / results["car"]["memory copy"]
    print()
    print(f"seglib encode C on car masks: {encode_ms:.3f} ms (aim <= {AIM_ENCODE_MS} ms), "
          f"{copy_ratio:.1f}x a memory copy (aim <= {AIM_COPY_RATIO:.0f}x)")


if __name__ == "__main__":
    main()
