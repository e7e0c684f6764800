"""A Carvana-scale submission: 100,064 masks of 1918 x 1280 from stored low-resolution probabilities.

seglib.submit.write_submission_from_store streams: a batch of stored probabilities -> upscale to 1918 x 1280 ->
policy -> RLE -> rows appended to the partial file (and the journal). The reference is the plain kernel way:
upscale, threshold and encode every image, keep the RLE strings in a list and write one pandas DataFrame at the
end (its memory grows with the number of images).

Writing all 100,064 masks takes the better part of an hour of the machine, so this measures a fraction: the
test set is split into --shards parts as a real sharded run would be, and the first one (or two, in parallel
processes, one per core) are written; the time of the whole set is extrapolated from the measured throughput.
Peak memory (RSS) is measured per process at two shard sizes: flat means the same at both.

Run: python benchmarks/carvana_submission.py [--shards 50] [--size 256]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from seglib.policy import Policy

TEST_IMAGES = 100_064  # Carvana's test set: 6,254 cars x 16 angles
ANGLES = 16
HEIGHT, WIDTH = 1280, 1918
POLICY = Policy(threshold=0.5)


def make_competition_folder(folder):
    """A Carvana folder holding just sample_submission.csv with every one of the 100,064 test ids."""
    folder.mkdir(parents=True, exist_ok=True)
    cars = [f"{index:012x}" for index in range(TEST_IMAGES // ANGLES)]
    names = [f"{car}_{angle:02d}.jpg" for car in cars for angle in range(1, ANGLES + 1)]
    pd.DataFrame({"img": names, "rle_mask": "1 1"}).to_csv(folder / "sample_submission.csv", index=False)
    return folder


def car_probabilities(size, count, seed=0):
    """``count`` car-like probability maps (size, size, 1): a soft-edged body and wheels, shifted and scaled."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:size, :size] / size
    maps = np.empty((count, size, size, 1), np.float16)
    for index in range(count):
        centre_row, centre_column = rng.uniform(0.45, 0.6), rng.uniform(0.4, 0.6)
        half_width, half_height = rng.uniform(0.25, 0.4), rng.uniform(0.12, 0.2)
        body = 1 - np.maximum(np.abs(columns - centre_column) / half_width, np.abs(rows - centre_row) / half_height)
        wheels = [0.06 - np.hypot(rows - centre_row - half_height, columns - centre_column - side * half_width * 0.6)
                  for side in (-1, 1)]
        signed = np.maximum.reduce([body * 0.1, *wheels])
        maps[index, ..., 0] = 1 / (1 + np.exp(-signed * 300))
    return maps


def make_store(path, competition, shards, size):
    """A prediction store holding the test ids of shards 1 and 2 of ``shards`` (the ones this benchmark writes)."""
    from seglib import store
    from seglib.submit import shard_ids

    image_ids = shard_ids(competition.test_ids(), (1, shards)) + shard_ids(competition.test_ids(), (2, shards))
    templates = car_probabilities(size, 64)
    with store.PredictionWriter(path, image_ids, (size, size, 1)) as writer:
        for start in range(0, len(image_ids), 64):
            batch = image_ids[start:start + 64]
            writer.write(batch, templates[:len(batch)])
    return path


# --- the two writers, each run in a process of its own --------------------------------------------------------


def seglib_writer(competition, predictions, geometry, shard, output):
    from seglib.submit import write_submission_from_store

    write_submission_from_store(output, competition, predictions, geometry, POLICY, batch_size=16, shard=shard,
                                progress=False)


def reference_writer(competition, predictions, geometry, shard, output):
    """The plain way: every RLE string kept in a list, one DataFrame written at the end."""
    from seglib.predict import to_original_size
    from seglib.submit import shard_ids

    image_ids = shard_ids(competition.test_ids(), shard)
    row_of = {image_id: row for row, image_id in enumerate(predictions.ids)}
    names, encodings = [], []
    for image_id in image_ids:
        mask = to_original_size(geometry, predictions.probabilities[row_of[image_id]]) > POLICY.threshold
        pixels = np.concatenate([[0], mask.flatten(), [0]])
        runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
        runs[1::2] -= runs[::2]
        names.append(f"{image_id}.jpg")
        encodings.append(" ".join(str(value) for value in runs))
    pd.DataFrame({"img": names, "rle_mask": encodings}).to_csv(output, index=False)


def worker(arguments):
    """One process writing one shard; prints its time, image count and peak RSS as JSON."""
    import seglib.backend  # noqa: F401  (TensorFlow's start-up, a one-off, stays outside the measured time)
    from seglib import store
    from seglib.competitions import get_competition
    from seglib.geometry import Geometry
    from seglib.submit import shard_ids

    competition = get_competition("carvana", arguments.data)
    predictions = store.Predictions(arguments.store)
    geometry = Geometry("resize", predictions.probabilities.shape[1], competition.image_size)
    shard = arguments.shard
    count = len(shard_ids(competition.test_ids(), shard))
    writer = {"seglib": seglib_writer, "reference": reference_writer}[arguments.method]
    started = time.perf_counter()
    writer(competition, predictions, geometry, shard, Path(arguments.output))
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"images": count, "seconds": seconds, "peak_rss_mib": peak_mib}))


def run_workers(jobs, folder, store_path):
    """Start one worker process per (method, shard, output) job at once; return their JSON reports."""
    environment = dict(os.environ)
    if len(jobs) > 1:
        # One TensorFlow thread per process when several share the cores.
        environment.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    processes = [subprocess.Popen([sys.executable, __file__, "--worker", "--method", method, "--shard", shard,
                                   "--data", str(folder), "--store", str(store_path), "--output", str(output)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
                 for method, shard, output in jobs]
    reports = []
    for process in processes:
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"worker failed:\n{stderr[-3000:]}")
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    return reports


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=50, help="split the 100,064 ids into this many parts")
    parser.add_argument("--size", type=int, default=256, help="side of the stored low-resolution probabilities")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--shard", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        return worker(arguments)

    from seglib.competitions import get_competition

    with tempfile.TemporaryDirectory() as temporary:
        temporary = Path(temporary)
        folder = make_competition_folder(temporary / "carvana")
        competition = get_competition("carvana", folder)
        store_path = make_store(temporary / "store", competition, arguments.shards, arguments.size)
        shards = arguments.shards
        print(f"{TEST_IMAGES:,} test ids in {shards} shards; probabilities stored at {arguments.size} x "
              f"{arguments.size} float16, upscaled to {WIDTH} x {HEIGHT}; policy {POLICY.to_json()}")
        # Flat memory: the same writer on a shard four times smaller must peak at the same RSS.
        small = run_workers([("seglib", f"1/{4 * shards}", temporary / "small.csv")], folder, store_path)[0]
        single = {method: run_workers([(method, f"1/{shards}", temporary / f"{method}.csv")], folder, store_path)[0]
                  for method in ("reference", "seglib")}
        parallel = run_workers([("seglib", f"{index}/{shards}", temporary / f"parallel{index}.csv")
                                for index in (1, 2)], folder, store_path)
        reference_bytes = pd.read_csv(temporary / "reference.csv", dtype=str, keep_default_na=False)
        seglib_bytes = pd.read_csv(temporary / f"seglib.shard1of{shards}.csv", dtype=str, keep_default_na=False)

    print()
    print(f"{'writer':<34}{'images':>8}{'ms/image':>10}{'peak RSS MiB':>14}")
    rows = [("seglib, 1 process, small shard", small), ("reference, 1 process", single["reference"]),
            ("seglib, 1 process", single["seglib"])]
    rows += [(f"seglib, 2 processes: shard {index}", report) for index, report in zip((1, 2), parallel)]
    for name, report in rows:
        print(f"{name:<34}{report['images']:>8}{1000 * report['seconds'] / report['images']:>10.2f}"
              f"{report['peak_rss_mib']:>14.0f}")
    print()
    ratio = single["reference"]["seconds"] / single["seglib"]["seconds"]
    print(f"seglib vs reference, 1 process: {ratio:.2f}x the speed, peak RSS "
          f"{single['seglib']['peak_rss_mib']:.0f} vs {single['reference']['peak_rss_mib']:.0f} MiB")
    print(f"peak RSS at {single['seglib']['images']} vs {small['images']} images: "
          f"{single['seglib']['peak_rss_mib']:.0f} vs {small['peak_rss_mib']:.0f} MiB "
          f"(ratio {single['seglib']['peak_rss_mib'] / small['peak_rss_mib']:.2f}; 1.00 is flat)")
    throughput = sum(report["images"] for report in parallel) / max(report["seconds"] for report in parallel)
    print(f"2 processes: {throughput:.1f} images/s -> all {TEST_IMAGES:,} test images in "
          f"{TEST_IMAGES / throughput / 60:.1f} min (extrapolated from {sum(r['images'] for r in parallel)} "
          f"measured; aim <= 30 min)")
    same = (reference_bytes["rle_mask"].to_numpy() == seglib_bytes["rle_mask"].to_numpy()).all()
    print(f"seglib and reference wrote the same masks: {bool(same)}")


if __name__ == "__main__":
    main()
