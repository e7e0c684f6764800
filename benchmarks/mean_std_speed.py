"""Speed and memory of seglib's one-pass mean/std over real-sized JPG files, against a two-pass reference.

Writes N (and 3N, for the memory check: more than one 256-image batch) photo-like 1918x1280 RGB JPGs
(Carvana's size; quality 90, smooth gradients, shapes and sensor-like noise, ~260 KiB each, so that decoding
costs what a real photograph costs rather than what a flat synthetic image costs) to a temporary folder,
then measures in the same run:

- seglib one pass: ``seglib.stats.read_ahead`` decoding the files in threads (Pillow, as
  ``competition.read_image`` does) into ``seglib.stats.mean_std``;
- seglib, no read-ahead: the same, read by a plain generator one file after another (notebook 02 before
  ``read_ahead``), to tell the threads' share of the speed-up from the arithmetic's;
- two-pass reference: pass 1 decodes every file and sums it in float64 (-> mean image), pass 2 decodes every
  file again and sums the squared deviations (-> std image): the textbook way that holds no stack of images;
- np.stack + mean/std at N only: every image in memory, for the memory contrast (timed once);
- the one pass's parts per image: decoding on one thread and through read_ahead, summing on one thread.

Seconds are the best of ``--repeats`` runs, the methods taking turns so that other jobs on the machine slow
them alike. Memory is measured in fresh processes per method and size: the tracemalloc peak (numpy's
allocations) in one; in another, without tracemalloc's bookkeeping, the peak RSS during the computation
(Linux: VmHWM, reset just before it through /proc/self/clear_refs; elsewhere ``getrusage``'s lifetime peak)
and its rise over the RSS before it.

Run: python benchmarks/mean_std_speed.py [--images 100] [--repeats 5] [--no-stack]
"""

import argparse
import multiprocessing
import os
import re
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import psutil
from PIL import Image, ImageDraw, ImageFilter

from seglib import stats
from seglib.competitions.base import decode_image

HEIGHT, WIDTH = 1280, 1918
JPEG_QUALITY = 90
MIB = 1 << 20


# --- data -----------------------------------------------------------------------------------------------
def photo_like(rng):
    """A uint8 (HEIGHT, WIDTH, 3) image: a lit gradient backdrop, a few soft shapes, and sensor noise."""
    y = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)[:, np.newaxis]
    x = np.linspace(0.0, 1.0, WIDTH, dtype=np.float32)[np.newaxis, :]
    channels = []
    for _ in range(3):
        a, b, c, d = rng.uniform(-1.0, 1.0, size=4)
        channels.append(130 + 50 * a * x + 40 * b * y + 25 * np.sin(np.pi * (2 * c * x + 3 * d * y)))
    image = Image.fromarray(np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(3, 8)):
        x0, y0 = rng.integers(0, WIDTH - 200), rng.integers(0, HEIGHT - 200)
        box = (x0, y0, x0 + rng.integers(100, 900), y0 + rng.integers(80, 600))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(2)), dtype=np.float32)
    pixels += rng.normal(0.0, 3.0, size=pixels.shape).astype(np.float32)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_images(folder, count, seed=0):
    """Write ``count`` photo-like JPGs into ``folder`` (in threads); return their paths in order."""

    def write(index, seed_sequence):
        path = Path(folder) / f"image_{index:04d}.jpg"
        Image.fromarray(photo_like(np.random.default_rng(seed_sequence))).save(path, quality=JPEG_QUALITY)
        return path

    return list(stats.read_ahead(write, range(count), np.random.SeedSequence(seed).spawn(count)))


def read_file(path):
    """What ``competition.read_image`` does for an extracted file: its bytes, decoded by Pillow."""
    return decode_image(Path(path).read_bytes(), name=Path(path).name)


def read_plain(path):
    with Image.open(path) as image:
        return np.asarray(image)


# --- methods: each takes the paths and returns (mean image, std image) ------------------------------------
def seglib_one_pass(paths, batch_size, workers=None):
    result = stats.mean_std(stats.read_ahead(read_file, paths, workers=workers), batch_size=batch_size)
    return result.mean_image, result.std_image


def seglib_sequential(paths, batch_size):
    result = stats.mean_std((read_file(path) for path in paths), batch_size=batch_size)
    return result.mean_image, result.std_image


def two_pass_reference(paths, batch_size):
    total = None
    for path in paths:
        image = read_plain(path)
        total = image.astype(np.float64) if total is None else np.add(total, image, out=total)
    mean = total / len(paths)
    squares = np.zeros_like(mean)
    for path in paths:
        deviation = read_plain(path) - mean
        squares += np.square(deviation, out=deviation)
    return mean, np.sqrt(squares / len(paths))


def stacked(paths, batch_size):
    images = np.stack([read_plain(path) for path in paths])
    return images.mean(axis=0), images.std(axis=0)


METHODS = {
    "seglib one pass": seglib_one_pass,
    "seglib, no read-ahead": seglib_sequential,
    "two-pass reference": two_pass_reference,
    "np.stack + mean/std": stacked,
}
STREAMING = ("seglib one pass", "seglib, no read-ahead", "two-pass reference")
METHODS_COMPARED = ("seglib one pass", "np.stack + mean/std")  # the memory aim


# --- measurements ------------------------------------------------------------------------------------------
def reset_peak_rss():
    """Make the peak RSS start from now (Linux); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes(was_reset):
    if was_reset:
        with open("/proc/self/status") as status:
            return int(re.search(r"VmHWM:\s+(\d+) kB", status.read()).group(1)) * 1024
    # ru_maxrss survives exec on Linux, so without a reset it may be the parent's peak (KiB on Linux).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(name, paths, batch_size, traced, queue):
    """In a fresh process: the tracemalloc peak if ``traced``, else (peak RSS, RSS before the computation), in
    MiB. Apart, because tracemalloc's own bookkeeping adds to the RSS (10-40 MiB in the one pass)."""
    rss_before = psutil.Process().memory_info().rss
    was_reset = reset_peak_rss()
    if traced:
        tracemalloc.start()
    METHODS[name](paths, batch_size)
    if traced:
        queue.put(tracemalloc.get_traced_memory()[1] / MIB)
    else:
        queue.put((peak_rss_bytes(was_reset) / MIB, rss_before / MIB))


def measure_memory(name, paths, batch_size):
    """(tracemalloc peak, peak RSS, RSS before the computation) in MiB, each from a fresh process."""
    context = multiprocessing.get_context("spawn")
    results = []
    for traced in (True, False):
        queue = context.Queue()
        process = context.Process(target=memory_child, args=(name, [str(p) for p in paths], batch_size, traced,
                                                             queue))
        process.start()
        results.append(queue.get())
        process.join()
    traced_peak, (peak_rss, rss_before) = results
    return traced_peak, peak_rss, rss_before


def best_seconds(methods, paths, batch_size, repeats, once=()):
    """Best-of-``repeats`` seconds per method (methods take turns; those in ``once`` run only in the first
    turn), and each method's last result."""
    times = {name: [] for name in methods}
    results = {}
    for turn in range(repeats):
        for name in methods:
            if turn and name in once:
                continue
            start = time.perf_counter()
            results[name] = METHODS[name](paths, batch_size)
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}, results


def breakdown(paths, batch_size):
    """Milliseconds per image of the one pass's parts: decoding on one thread and through read_ahead's threads,
    and summing (``RunningMoments.add``) already decoded images on one thread."""
    start = time.perf_counter()
    images = [read_file(path) for path in paths[:16]]
    one_thread = (time.perf_counter() - start) / len(images)
    start = time.perf_counter()
    for _ in stats.read_ahead(read_file, paths):
        pass
    threads = (time.perf_counter() - start) / len(paths)
    moments = stats.RunningMoments(batch_size)
    start = time.perf_counter()
    for image in images:
        moments.add(image)
    summing = (time.perf_counter() - start) / len(images)
    print(f"per image: decoding {one_thread * 1e3:.1f} ms on one thread, {threads * 1e3:.1f} ms through read_ahead; "
          f"summing {summing * 1e3:.1f} ms on one thread")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100, help="N (the issue measured 100 Carvana JPGs); the "
                        "memory check also uses 3N")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method; the best counts")
    parser.add_argument("--batch-size", type=int, default=256, help="mean_std batch_size (default: seglib's)")
    parser.add_argument("--no-stack", action="store_true", help="skip np.stack + mean/std (~60 MiB/image)")
    args = parser.parse_args()
    count = args.images

    with tempfile.TemporaryDirectory(prefix="mean_std_speed_") as folder:
        start = time.perf_counter()
        paths = write_images(folder, 3 * count)
        kib = np.mean([path.stat().st_size for path in paths]) / 1024
        print(f"{3 * count} photo-like {WIDTH}x{HEIGHT} RGB JPGs (quality {JPEG_QUALITY}, "
              f"{kib:.0f} KiB each) written in {time.perf_counter() - start:.1f} s; "
              f"{psutil.cpu_count()} CPUs; batch_size {args.batch_size}; best of {args.repeats}")
        print()

        timed = list(STREAMING) + ([] if args.no_stack else ["np.stack + mean/std"])
        once = ("np.stack + mean/std",)  # slow and only there for the memory contrast: timed once
        seconds, results = best_seconds(timed, paths[:count], args.batch_size, args.repeats, once)
        print(f"{'method':<24}{'images':>8}{'seconds':>10}{'images/s':>10}   (read_ahead: "
              f"{min(8, os.cpu_count())} threads)")
        for name in timed:
            note = "   (1 run)" if name in once else ""
            print(f"{name:<24}{count:>8}{seconds[name]:>10.2f}{count / seconds[name]:>10.1f}{note}")
        for name in ("seglib one pass", "seglib, no read-ahead"):
            ratio = seconds["two-pass reference"] / seconds[name]
            print(f"speed-up of {name} over the two-pass reference: {ratio:.2f}x"
                  + (" (aim >= 4x)" if name == "seglib one pass" else ""))
        breakdown(paths[:count], args.batch_size)
        print()

        reference_mean, reference_std = results["two-pass reference"]
        for name in timed:
            if name != "two-pass reference":
                mean, std = results[name]
                print(f"max |{name} - two-pass|: mean {np.abs(mean - reference_mean).max():.2e}, "
                      f"std {np.abs(std - reference_std).max():.2e}")
        print()

        print(f"{'memory (fresh process)':<24}{'images':>8}{'traced MiB':>12}{'peak RSS MiB':>14}"
              f"{'RSS rise MiB':>14}")
        peaks = {}
        for name in timed:
            for size in (count, 3 * count) if name in STREAMING else (count,):
                traced, peak_rss, rss_before = measure_memory(name, paths[:size], args.batch_size)
                peaks[name, size] = traced, peak_rss
                print(f"{name:<24}{size:>8}{traced:>12.0f}{peak_rss:>14.0f}{peak_rss - rss_before:>14.0f}")
        for name in STREAMING:
            print(f"{name:<24} traced peak(3N) / peak(N) = {peaks[name, 3 * count][0] / peaks[name, count][0]:.2f}")
        if not args.no_stack:
            (traced, peak_rss), (stack_traced, stack_rss) = (peaks[name, count] for name in METHODS_COMPARED)
            print(f"seglib one pass / np.stack + mean/std at {count} images: traced {100 * traced / stack_traced:.1f} "
                  f"%, peak RSS {100 * peak_rss / stack_rss:.1f} % (aim <= 5 %)")
        print(f"(one decoded image is {HEIGHT * WIDTH * 3 / MIB:.1f} MiB as uint8, "
              f"{HEIGHT * WIDTH * 3 * 8 / MIB:.1f} MiB as float64)")


if __name__ == "__main__":
    main()
