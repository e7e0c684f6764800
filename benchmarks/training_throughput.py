"""Training images/s of one U-Net fed by the seglib tf.data pipeline (with and without XLA) vs model.fit on numpy.

Every method trains the same model (``build_unet`` with notebook 03's ``CLASSIC_TGS`` filters, TGS 101x101
reflect-padded to 128x128) on the same images with the same batch size, loss (BCE), optimizer (Adam 1e-3) and
seed; only the way the batches reach ``model.fit`` (and XLA) differs:

    numpy          reference: every PNG read into memory first, as a Kaggle kernel does (PIL, np.pad reflect,
                   numpy normalisation), then model.fit(x, y, batch_size, shuffle=True)
    tfdata         seglib.data.make_dataset(shuffle=True, cache=True), no augmentation (the reference has none)
    tfdata_xla     the same, compile_model(jit_compile=True)
    tfdata_hflip   the same as tfdata with the competition's default augmentation ("hflip"): an extra line, not
                   comparable one-to-one (the reference does no augmentation)

Optional variants (``--methods``) try settings that could go into seglib: ``*_spe8`` (steps_per_execution=8),
``tfdata_opts`` (tf.data options: a private thread pool of one thread, autotune CPU budget 1) and
``*_threads`` (tf.config.threading intra_op=2, inter_op=1), ``tfdata_prenorm`` (make_dataset's stages rebuilt with
the normalisation before the cache, so an epoch only shuffles and batches cached, final tensors).

Each method runs in its own fresh subprocess, so TensorFlow state does not leak and its peak RSS is its own. The
methods run in rounds, in alternating order (forwards, then backwards, ...), so another job's interference hits
all of them. Per round, the first ``--warmup-epochs`` epochs (tracing, XLA compilation, the tf.data cache fill) are
not timed; images/s = images x timed epochs / seconds (the XLA variants time half as many epochs, at least one:
they run several times slower). Three wall-clock estimates are printed (the fastest epoch, the mean over all
rounds, the median batch) and the CPU time per image of all the process's threads, which on a small machine shared
with other jobs is the steadiest figure; and, per method, the cost of producing its batches alone, with no model.

Run: python benchmarks/training_throughput.py            # ~5 min on 2 CPU cores
     python benchmarks/training_throughput.py --images 256 --epochs 1 --rounds 1    # a quick look
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

SEED = 42
LEARNING_RATE = 1e-3
LOSS = "bce"
IMG_SIZE = 128
# method -> how batches are fed and compiled. "feed": numpy arrays or the seglib pipeline.
METHODS = {
    "numpy": {"feed": "numpy", "jit": False},
    "tfdata": {"feed": "tfdata", "jit": False},
    "tfdata_xla": {"feed": "tfdata", "jit": True},
    "tfdata_hflip": {"feed": "tfdata", "jit": False, "augment": True},
    # Optional variants (not in the default run).
    "numpy_xla": {"feed": "numpy", "jit": True},
    "numpy_spe8": {"feed": "numpy", "jit": False, "steps_per_execution": 8},
    "tfdata_spe8": {"feed": "tfdata", "jit": False, "steps_per_execution": 8},
    "tfdata_opts": {"feed": "tfdata", "jit": False, "data_options": True},
    "tfdata_prenorm": {"feed": "tfdata", "jit": False, "normalise_before_cache": True},
    "numpy_threads": {"feed": "numpy", "jit": False, "threads": (2, 1)},
    "tfdata_threads": {"feed": "tfdata", "jit": False, "threads": (2, 1)},
}
DEFAULT_METHODS = ("numpy", "tfdata", "tfdata_xla", "tfdata_hflip")
REFERENCE = "numpy"
MIB = 1 << 20


# --- data -----------------------------------------------------------------------------------------------------

def make_sample(out_dir, num_images, seed):
    """A synthetic TGS sample with ``num_images`` train images (seglib.sample.tgs writes 150; scale its plan)."""
    from seglib.sample import generate, tgs

    tgs.NUM_TRAIN = num_images
    tgs.NUM_EMPTY_TRAIN = round(0.38 * num_images)
    tgs.NUM_TEST, tgs.NUM_BLACK_TEST = 2, 0
    return generate("tgs", out_dir, seed=seed)


def padding(original, size):
    """(before, after) of seglib.geometry.Geometry's centred reflect padding."""
    before = (size - original) // 2
    return before, size - original - before


def load_numpy(data_dir, image_ids, channel_mean, channel_std):
    """The Kaggle-kernel way: read every PNG into memory, reflect-pad to 128, normalise with numpy."""
    from PIL import Image

    data_dir = Path(data_dir)
    images = np.stack([np.asarray(Image.open(data_dir / "train" / "images" / f"{image_id}.png"))[..., :1]
                       for image_id in image_ids])
    masks = np.stack([np.asarray(Image.open(data_dir / "train" / "masks" / f"{image_id}.png")) > 0
                      for image_id in image_ids])[..., np.newaxis]
    pad = ((0, 0), padding(images.shape[1], IMG_SIZE), padding(images.shape[2], IMG_SIZE), (0, 0))
    x = (np.pad(images, pad, mode="reflect").astype(np.float32) - channel_mean) / channel_std
    y = np.pad(masks, pad, mode="reflect").astype(np.float32)
    return x, y


def check_same_inputs(data_dir, image_ids, channel_mean, channel_std, batch_size):
    """The largest difference between the pipeline's first (unshuffled) batch and the numpy reference's."""
    from seglib.competitions import get_competition
    from seglib.data import Normalization, make_dataset
    from seglib.geometry import Geometry

    competition = get_competition("tgs", data_dir)
    geometry = Geometry("pad", IMG_SIZE, competition.image_size)
    ids = image_ids[:batch_size]
    images, masks = next(iter(make_dataset(competition, ids, geometry, Normalization(channel_mean, channel_std),
                                           batch_size, cache=False)))
    x, y = load_numpy(data_dir, ids, channel_mean, channel_std)
    return float(np.abs(images.numpy() - x).max()), float(np.abs(masks.numpy() - y).max())


# --- one method, in a child process ---------------------------------------------------------------------------

def rss_mib():
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB


def prenormalised_dataset(competition, image_ids, geometry, normalization, batch_size, seed):
    """make_dataset(shuffle=True, cache=True) without augmentation, but normalising before the cache: a candidate
    seglib change, built here from seglib.data's own reader."""
    import tensorflow as tf
    from seglib.data import _reader

    dataset = tf.data.Dataset.from_tensor_slices(list(image_ids))
    dataset = dataset.map(_reader(competition, "train", True, geometry), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(lambda images, masks: (normalization(images), masks), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.cache().shuffle(len(image_ids), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def run_method(name, config):
    """Train with one method; return its timings and peak RSS as a dict (``error`` set if it failed)."""
    method = METHODS[name]
    started = time.perf_counter()
    import keras
    import tensorflow as tf

    if method.get("threads"):
        intra, inter = method["threads"]
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    from seglib import models, train
    from seglib.competitions import get_competition
    from seglib.data import Normalization, make_dataset
    from seglib.geometry import Geometry

    keras.utils.set_random_seed(config["seed"])
    if config["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    competition = get_competition("tgs", config["data_dir"])
    image_ids = config["image_ids"]
    mean, std = np.float32(config["channel_mean"]), np.float32(config["channel_std"])
    model = models.build_unet((IMG_SIZE, IMG_SIZE, 1), **{**models.CLASSIC_TGS, "base_filters": config["filters"]})
    train.compile_model(model, loss=LOSS, learning_rate=LEARNING_RATE, jit_compile=method["jit"])
    if method.get("steps_per_execution", 1) > 1:
        # compile_model has no steps_per_execution argument; Keras reads the attribute when fit builds its loop.
        model.steps_per_execution = method["steps_per_execution"]
    result = {"method": name, "import_build_seconds": time.perf_counter() - started, "rss_before_data": rss_mib()}

    load_started = time.perf_counter()
    if method["feed"] == "numpy":
        x, y = load_numpy(config["data_dir"], image_ids, mean, std)
        inputs = {"x": x, "y": y, "batch_size": config["batch_size"], "shuffle": True}
    else:
        geometry = Geometry("pad", IMG_SIZE, competition.image_size)
        augmentations = competition.default_augmentations if method.get("augment") else ()
        normalization = Normalization(mean, std)
        if method.get("normalise_before_cache"):
            dataset = prenormalised_dataset(competition, image_ids, geometry, normalization, config["batch_size"],
                                            config["seed"])
        else:
            dataset = make_dataset(competition, image_ids, geometry, normalization, config["batch_size"],
                                   shuffle=True, augmentations=augmentations, seed=config["seed"], cache=True)
        if method.get("data_options"):
            options = tf.data.Options()
            options.threading.private_threadpool_size = 1
            options.autotune.cpu_budget = 1
            dataset = dataset.with_options(options)
        inputs = {"x": dataset, "shuffle": False}
    result["load_seconds"] = time.perf_counter() - load_started

    epoch_times, cpu_times, batch_times = [], [], []

    class Timer(keras.callbacks.Callback):
        """Wall time of every epoch, and of every batch after the warm-up epochs (one callback per execution of
        ``steps_per_execution`` batches)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.epoch_begin, self.cpu_begin = epoch, time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            epoch_times.append(time.perf_counter() - self.epoch_begin)
            cpu_times.append(time.process_time() - self.cpu_begin)

        def on_train_batch_begin(self, batch, logs=None):
            self.batch_begin = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch >= config["warmup_epochs"]:
                batch_times.append(time.perf_counter() - self.batch_begin)

    # XLA on CPU trains several times slower here; one timed epoch keeps the default run within minutes.
    timed_epochs = max(1, config["epochs"] // 2) if method["jit"] else config["epochs"]
    epochs = config["warmup_epochs"] + timed_epochs
    fit_started = time.perf_counter()
    try:
        model.fit(**inputs, epochs=epochs, verbose=0, callbacks=[Timer()])
    except Exception as error:  # XLA on CPU may not compile some op: report it and let the other methods run
        result["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
        result["rss_peak"] = rss_mib()
        return result
    result["fit_seconds"] = time.perf_counter() - fit_started
    result["first_epoch_seconds"] = epoch_times[0]
    timed = epoch_times[config["warmup_epochs"]:]
    result["timed_epoch_seconds"] = timed
    result["images_per_second"] = len(image_ids) * len(timed) / sum(timed)
    # CPU seconds of all the process's threads: the work each method costs, far less disturbed by other jobs than
    # wall time (on a machine this size they compete for the same two cores).
    result["cpu_ms_per_image"] = 1000 * sum(cpu_times[config["warmup_epochs"]:]) / (len(image_ids) * len(timed))
    result["batch_seconds"] = batch_times
    # The median batch is robust to bursts of other jobs' load; it includes waiting for the input pipeline (Keras
    # fetches the batch inside the train function) but not the loop's overhead between batches.
    images_per_call = config["batch_size"] * method.get("steps_per_execution", 1)
    result["median_batch_images_per_second"] = images_per_call / float(np.median(batch_times))
    result["rss_peak"] = rss_mib()
    result["input_ms_per_image"] = input_only_ms_per_image(inputs, config["batch_size"], len(image_ids))
    return result


def input_only_ms_per_image(inputs, batch_size, num_images):
    """Wall ms per image of one more epoch of the method's batches with no model: what feeding alone costs.

    The numpy reference goes through the tf.data pipeline Keras builds for arrays (its array data adapter); the
    seglib variants iterate their (by now cached) dataset.
    """
    if "y" in inputs:
        try:  # Keras' internal module: if a Keras release moves it, report no figure rather than fail
            from keras.src.trainers.data_adapters import get_data_adapter
        except ImportError:
            return float("nan")
        adapter = get_data_adapter(inputs["x"], inputs["y"], batch_size=batch_size, shuffle=True)
        dataset = adapter.get_tf_dataset()
    else:
        dataset = inputs["x"]
    started = time.perf_counter()
    for _ in dataset:
        pass
    return 1000 * (time.perf_counter() - started) / num_images


def run_child(name, config_path):
    """Run one method in a fresh interpreter; return its result dict."""
    command = [sys.executable, __file__, "--child", name, "--config", str(config_path)]
    completed = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        tail = " | ".join(completed.stderr.strip().splitlines()[-3:])
        return {"method": name, "error": f"child exited with {completed.returncode}: {tail[:400]}"}
    return json.loads(lines[-1])


# --- the parent: rounds of all methods, then the table ----------------------------------------------------------

def summarise(results, methods, num_images):
    """Print the table (every figure over all rounds of a method) and return {method: ratios to the reference}."""
    def good(name):
        return [result for result in results if result["method"] == name and "error" not in result]

    figures = {}
    for name in methods:
        runs = good(name)
        if not runs:
            continue
        epochs = [seconds for run in runs for seconds in run["timed_epoch_seconds"]]
        figures[name] = {
            # The fastest epoch is the one least slowed by other jobs (the best-of-repeats rule of tgs_sweep.py).
            "best epoch": num_images / min(epochs),
            "mean": num_images * len(epochs) / sum(epochs),
            "median batch": max(run["median_batch_images_per_second"] for run in runs),
            "cpu": min(run["cpu_ms_per_image"] for run in runs),
            "input": min(run["input_ms_per_image"] for run in runs),
            "run": min(runs, key=lambda run: run["first_epoch_seconds"]),
            "rss": max(run["rss_peak"] for run in runs),
            "rss growth": max(run["rss_peak"] - run["rss_before_data"] for run in runs),
        }
    reference = figures.get(REFERENCE)
    header = (f"{'method':<15}{'best epoch':>11}{'vs numpy':>9}{'mean':>7}{'vs numpy':>9}{'median batch':>13}"
              f"{'vs numpy':>9}{'CPU ms/img':>11}{'vs numpy':>9}{'input ms/img':>13}{'1st epoch s':>12}{'load s':>7}"
              f"{'load+fit s':>11}{'peak RSS MiB':>13}{'+data/train':>12}")
    print(f"{'':<15}{'images/s':>11}{'':>9}{'img/s':>7}{'':>9}{'images/s':>13}")
    print(header)
    print("-" * len(header))
    ratios = {}
    for name in methods:
        errors = [result["error"] for result in results if result["method"] == name and "error" in result]
        if name not in figures:
            print(f"{name:<15}FAILED: {errors[0] if errors else 'no result'}")
            continue
        mine = figures[name]
        ratio = {key: mine[key] / reference[key] if reference else float("nan")
                 for key in ("best epoch", "mean", "median batch")}
        ratio["cpu"] = reference["cpu"] / mine["cpu"] if reference else float("nan")
        ratios[name] = ratio
        run = mine["run"]
        end_to_end = run["load_seconds"] + run["fit_seconds"]
        print(f"{name:<15}{mine['best epoch']:>11.1f}{ratio['best epoch']:>8.2f}x{mine['mean']:>7.1f}"
              f"{ratio['mean']:>8.2f}x{mine['median batch']:>13.1f}{ratio['median batch']:>8.2f}x{mine['cpu']:>11.1f}"
              f"{ratio['cpu']:>8.2f}x{mine['input']:>13.2f}{run['first_epoch_seconds']:>12.1f}"
              f"{run['load_seconds']:>7.2f}{end_to_end:>11.1f}{mine['rss']:>13.0f}{mine['rss growth']:>12.0f}")
        for error in errors:
            print(f"{'':<15}(a round failed: {error})")
    return ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512, help="train images (synthetic TGS sample)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per method and round")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="untimed first epochs (tracing, cache fill)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all methods, in alternating order")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--filters", type=int, default=8, help="U-Net base filters (notebook 03's CLASSIC_TGS: 8)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated, from "
                        + ", ".join(METHODS))
    parser.add_argument("--data-dir", help="an extracted TGS folder to use instead of a generated sample")
    parser.add_argument("--deterministic", action="store_true",
                        help="tf.config.experimental.enable_op_determinism() in every method (as env.seed_everything)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)

    if arguments.child:
        config = json.loads(Path(arguments.config).read_text())
        print(json.dumps(run_method(arguments.child, config)), flush=True)
        return 0

    methods = [name.strip() for name in arguments.methods.split(",") if name.strip()]
    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    if arguments.images < 32 and not arguments.data_dir:
        parser.error("--images must be at least 32 (the sample plan has empty, tiny and full masks)")
    if REFERENCE not in methods:
        methods.insert(0, REFERENCE)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="training_throughput_") as work_dir:
        if arguments.data_dir:
            data_dir = Path(arguments.data_dir)
        else:
            data_dir = make_sample(Path(work_dir) / "tgs", arguments.images, arguments.seed)
        from seglib import stats
        from seglib.competitions import get_competition

        competition = get_competition("tgs", data_dir)
        image_ids = competition.train_ids()[:arguments.images]
        moments = stats.mean_std(competition.read_image(image_id) for image_id in image_ids)
        config = {"data_dir": str(data_dir), "image_ids": image_ids, "batch_size": arguments.batch_size,
                  "filters": arguments.filters, "epochs": arguments.epochs, "warmup_epochs": arguments.warmup_epochs,
                  "seed": arguments.seed, "deterministic": arguments.deterministic,
                  "channel_mean": float(moments.channel_mean[0]), "channel_std": float(moments.channel_std[0])}
        image_error, mask_error = check_same_inputs(data_dir, image_ids, config["channel_mean"],
                                                    config["channel_std"], arguments.batch_size)
        config_path = Path(work_dir) / "config.json"
        config_path.write_text(json.dumps(config))
        import tensorflow as tf

        print(f"{len(image_ids)} TGS images 101x101 -> reflect-pad {IMG_SIZE}, U-Net base_filters={arguments.filters}, "
              f"batch {arguments.batch_size}, {LOSS} + Adam; {arguments.warmup_epochs} untimed + {arguments.epochs} "
              f"timed epoch(s) x {arguments.rounds} round(s); {os.cpu_count()} CPU(s), TensorFlow {tf.__version__}, "
              f"op determinism {'on' if arguments.deterministic else 'off'}")
        print(f"same inputs: max |pipeline - numpy| over the first batch: images {image_error:.2g}, "
              f"masks {mask_error:.2g}", flush=True)

        results = []
        for index in range(arguments.rounds):
            order = methods if index % 2 == 0 else methods[::-1]
            for name in order:
                result = run_child(name, config_path)
                result["round"] = index
                results.append(result)
                if "error" in result:
                    print(f"  round {index + 1} {name:<15} FAILED: {result['error']}", flush=True)
                else:
                    epochs = " ".join(f"{seconds:.1f}" for seconds in result["timed_epoch_seconds"])
                    print(f"  round {index + 1} {name:<15} {result['images_per_second']:7.1f} images/s "
                          f"(median batch {result['median_batch_images_per_second']:.1f}; "
                          f"{result['cpu_ms_per_image']:.1f} CPU ms/img; timed epochs {epochs} s; "
                          f"first epoch {result['first_epoch_seconds']:.1f} s; "
                          f"peak RSS {result['rss_peak']:.0f} MiB)", flush=True)
    print()
    ratios = summarise(results, methods, len(image_ids))
    print()
    print("best epoch: images / the fastest timed epoch over all rounds (the least disturbed by other jobs); mean: "
          "over all timed epochs of all rounds.")
    print("median batch: batch size / median batch time over the timed epochs (robust to bursts of other jobs), "
          "best round.")
    print("CPU ms/img: CPU time of all the method's threads per trained image, lowest round; vs numpy: numpy's CPU "
          "time / the method's (> 1: cheaper).")
    print("input ms/img: wall time per image of one epoch of the method's batches alone, no model (numpy: Keras' "
          "array adapter; tf.data: the cached pipeline), lowest round.")
    print("1st epoch s, load s, load+fit s: the round with the shortest first epoch.")
    print("1st epoch s: untimed first epoch (tracing, XLA compilation; tf.data also reads the PNGs and fills its "
          "cache).")
    print("load s: numpy: reading all PNGs into memory before fit; tf.data: make_dataset building its graph (the "
          "PNGs are read during the first epoch).")
    print(f"load+fit s: data loading plus all {arguments.warmup_epochs + arguments.epochs} epochs of fit (XLA: "
          f"{arguments.warmup_epochs + max(1, arguments.epochs // 2)}).")
    print("peak RSS: ru_maxrss of the method's own process; +data/train: its growth after TF import and model build.")
    for name, ratio in ratios.items():
        if name == REFERENCE:
            continue
        wall = [ratio["best epoch"], ratio["mean"], ratio["median batch"]]
        verdict = ("met" if min(wall) >= 1.3 else "not met" if max(wall) < 1.3
                   else "unclear: the estimates disagree, other jobs disturbed the run; rerun with more --rounds")
        print(f"{name} / numpy: {ratio['best epoch']:.2f}x best epoch, {ratio['mean']:.2f}x mean, "
              f"{ratio['median batch']:.2f}x median batch, {ratio['cpu']:.2f}x CPU per image; aim >= 1.3x: {verdict}")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
