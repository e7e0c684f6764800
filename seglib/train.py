"""Compile and fit a model with the usual Kaggle callbacks and a wall-clock budget.

Kaggle kernels stop hard after a fixed time; a run that is killed loses everything it has not saved.
So fit keeps the best checkpoint on disk as it goes, stops cleanly when its time budget is spent, and
finally promotes the best checkpoint to RUN_DIR/model.keras atomically.

``fit_recipe`` adds the two-stage schedule of the TGS winners: train with BCE (+ Dice), then fine-tune the best
checkpoint with the Lovasz hinge, which optimises IoU itself but learns poorly from scratch.
"""

import shutil
import time
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf

from seglib import artifacts, models
from seglib.losses import get_loss


class TimeBudget(keras.callbacks.Callback):
    """Stop training after ``minutes`` of wall-clock time, at the end of the running batch.

    Keras has no time-based stopping callback; EarlyStopping watches metrics only.
    """

    def __init__(self, minutes):
        super().__init__()
        if minutes is not None and minutes <= 0:
            raise ValueError(f"time budget must be positive minutes or None, got {minutes}")
        self.minutes = minutes
        self.started = None
        self.stopped_early = False

    def on_train_begin(self, logs=None):
        self.started = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.minutes is not None and time.monotonic() - self.started > 60 * self.minutes:
            self.model.stop_training = True
            self.stopped_early = True

    def on_train_end(self, logs=None):
        if self.stopped_early:
            print(f"Time budget of {self.minutes} min spent: training stopped.")


def compile_model(model, loss="bce", learning_rate=1e-3):
    """Compile with Adam, the named loss and a pixel IoU to watch while training.

    A model with an empty-image head gets binary cross-entropy on that head too (deep supervision), with the
    pixel loss on the masks.
    """
    iou = keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.5, name="iou")
    if models.has_empty_head(model):
        losses = {"probabilities": get_loss(loss), "non_empty": keras.losses.BinaryCrossentropy()}
        metrics = {"probabilities": [iou]}
    else:
        losses, metrics = get_loss(loss), [iou]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=losses, metrics=metrics)
    return model


def with_empty_targets(dataset):
    """Give each batch of masks the image-level target of the empty-image head: is each class present."""
    def targets(images, masks):
        return images, {"probabilities": masks, "non_empty": tf.reduce_max(masks, axis=(1, 2))}

    return dataset.map(targets, num_parallel_calls=tf.data.AUTOTUNE)


def fit(model, train_dataset, validation_dataset, run_dir, epochs, minutes=None, patience=10, verbose=2,
        history_name=artifacts.HISTORY):
    """Fit ``model`` and save the best epoch (lowest validation loss) as RUN_DIR/model.keras.

    Args:
        model: a compiled Keras model.
        train_dataset, validation_dataset: from ``seglib.data.make_dataset``.
        run_dir: the run folder.
        epochs: the most epochs to run.
        minutes: wall-clock budget for the whole fit, or None.
        patience: epochs without validation improvement before early stopping (learning rate halves
            after half of that).
        verbose: Keras' progress display (1 = progress bar, 2 = one line per epoch).
        history_name: the CSV log's file name in ``run_dir``.

    Returns:
        The per-epoch history as a DataFrame.
    """
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / artifacts.CHECKPOINT
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    time_budget = TimeBudget(minutes)
    callbacks = [
        keras.callbacks.ModelCheckpoint(checkpoint_path, monitor="val_loss", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, patience // 2)),
        keras.callbacks.CSVLogger(run_dir / history_name),
        time_budget,
    ]
    if models.has_empty_head(model):
        train_dataset, validation_dataset = with_empty_targets(train_dataset), with_empty_targets(validation_dataset)
    # A checkpoint left by an earlier stage or run would be promoted if this fit never improved on nothing.
    checkpoint_path.unlink(missing_ok=True)
    history = model.fit(train_dataset, validation_data=validation_dataset, epochs=epochs, callbacks=callbacks,
                        verbose=verbose, shuffle=False)  # the dataset shuffles itself
    if not checkpoint_path.exists():
        raise RuntimeError(f"training ended before the first epoch finished; nothing saved in {checkpoint_path}")
    with artifacts.atomic_path(run_dir / artifacts.MODEL) as temporary:
        shutil.copyfile(checkpoint_path, temporary)
    return pd.DataFrame(history.history).rename_axis("epoch")


def fine_tune(run_dir, train_dataset, validation_dataset, loss="lovasz", learning_rate=1e-4, epochs=20, minutes=None,
              patience=10, verbose=2):
    """Second stage: reload RUN_DIR/model.keras, recompile with ``loss`` and keep training; the best epoch of
    this stage (lowest validation ``loss``) replaces model.keras.

    Returns:
        The stage's per-epoch history as a DataFrame (logged to ``history_fine_tune.csv``).
    """
    model = keras.models.load_model(Path(run_dir) / artifacts.MODEL)
    compile_model(model, loss=loss, learning_rate=learning_rate)
    return fit(model, train_dataset, validation_dataset, run_dir, epochs, minutes, patience, verbose,
               history_name=artifacts.FINE_TUNE_HISTORY)


def fit_recipe(model, train_dataset, validation_dataset, run_dir, epochs, minutes=None, patience=10,
               fine_tune_loss=None, fine_tune_epochs=20, fine_tune_minutes=None, fine_tune_learning_rate=1e-4,
               verbose=2):
    """``fit``, then optionally ``fine_tune`` with ``fine_tune_loss`` (e.g. "lovasz"): the two-stage schedule.

    Returns:
        (history of both stages with a "stage" column and epochs numbered on, the best model loaded from
        RUN_DIR/model.keras).
    """
    history = fit(model, train_dataset, validation_dataset, run_dir, epochs, minutes, patience, verbose)
    history["stage"] = "train"
    if fine_tune_loss:
        second = fine_tune(run_dir, train_dataset, validation_dataset, fine_tune_loss, fine_tune_learning_rate,
                           fine_tune_epochs, fine_tune_minutes, patience, verbose)
        second["stage"] = f"fine-tune {fine_tune_loss}"
        history = pd.concat([history, second], ignore_index=True).rename_axis("epoch")
    return history, keras.models.load_model(Path(run_dir) / artifacts.MODEL)
