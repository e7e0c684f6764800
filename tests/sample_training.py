"""A small real training run on the committed TGS sample, run as its own process by the resume and determinism
tests (a kill -9 needs a process of its own; determinism is about two fresh processes).

    python tests/sample_training.py RUN_DIR [--epochs N] [--seed S] [--stall-at-epoch K]

It trains a small U-Net with ``seglib.train.fit`` (backups every epoch), then prints the validation score of the
best model as ``validation score: <value>``. ``--stall-at-epoch K`` writes RUN_DIR/stalled after the second batch
of epoch K and then waits, so that a test can kill the process in the middle of that epoch.
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from seglib import env, metrics, models, split, stats, train  # noqa: E402
from seglib.competitions import get_competition  # noqa: E402
from seglib.data import Normalization, make_dataset  # noqa: E402
from seglib.geometry import Geometry  # noqa: E402
from seglib.predict import predict_batches, to_original_size  # noqa: E402

TRAIN_IMAGES = 48
BATCH_SIZE = 8


class StallInEpoch(keras.callbacks.Callback):
    """Announce the middle of epoch ``epoch`` with a file, then hang until killed."""

    def __init__(self, epoch, marker):
        super().__init__()
        self.epoch, self.marker, self.current_epoch = epoch, Path(marker), None

    def on_epoch_begin(self, epoch, logs=None):
        self.current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current_epoch == self.epoch and batch == 1:
            self.marker.write_text(str(self.current_epoch))
            time.sleep(600)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--stall-at-epoch", type=int, default=None)
    arguments = parser.parse_args()
    run_dir = Path(arguments.run_dir)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")  # seglib's resume lines

    env.seed_everything(arguments.seed)
    competition = get_competition("tgs", env.SAMPLE_ROOT / "tgs")
    image_ids = competition.train_ids()[:TRAIN_IMAGES]
    train_ids, validation_ids, _ = split.holdout_split(competition, image_ids, 0.25, arguments.seed)
    geometry = Geometry("pad", 128, competition.image_size)
    normalization = Normalization.from_mean_std(stats.mean_std(competition.read_image(i) for i in train_ids))
    train_dataset = make_dataset(competition, train_ids, geometry, normalization, BATCH_SIZE, shuffle=True,
                                 augmentations=("hflip",), seed=arguments.seed)
    validation_dataset = make_dataset(competition, validation_ids, geometry, normalization, BATCH_SIZE)

    model = train.compile_model(models.build_unet((128, 128, 1), depth=3, base_filters=8, batch_norm=True))
    if arguments.stall_at_epoch is not None:
        stall = StallInEpoch(arguments.stall_at_epoch, run_dir / "stalled")
        model.fit = _with_callback(model.fit, stall)
    train.fit(model, train_dataset, validation_dataset, run_dir, epochs=arguments.epochs, verbose=2)

    best = keras.models.load_model(run_dir / "model.keras")
    outputs = np.concatenate([batch for _, batch in predict_batches(
        best, competition, validation_ids, geometry, normalization, BATCH_SIZE, "train", progress=False)])
    predictions = np.stack([to_original_size(geometry, output) > 0.5 for output in outputs])
    score = metrics.tgs_score(competition.read_masks(validation_ids), predictions)
    print(f"validation score: {score!r}", flush=True)


def _with_callback(fit, callback):
    """``model.fit`` with one more callback: how the test stalls a real fit without changing seglib."""
    def fit_with_callback(*args, callbacks=(), **kwargs):
        return fit(*args, callbacks=[*callbacks, callback], **kwargs)

    return fit_with_callback


if __name__ == "__main__":
    main()
