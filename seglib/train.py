"""Compile and fit a model with the usual Kaggle callbacks and a wall-clock budget.

Kaggle kernels stop hard after a fixed time; a run that is killed loses everything it has not saved.
So fit keeps the best checkpoint on disk as it goes, stops cleanly when its time budget is spent, and
finally promotes the best checkpoint to RUN_DIR/model.keras atomically.
"""

import shutil
import time
from pathlib import Path

import keras
import pandas as pd

from seglib import artifacts
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
    """Compile with Adam, the named loss and a pixel IoU to watch while training."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=get_loss(loss),
        metrics=[keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.5, name="iou")],
    )
    return model


def fit(model, train_dataset, validation_dataset, run_dir, epochs, minutes=None, patience=10, verbose=2):
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
        keras.callbacks.CSVLogger(run_dir / artifacts.HISTORY),
        time_budget,
    ]
    history = model.fit(train_dataset, validation_data=validation_dataset, epochs=epochs, callbacks=callbacks,
                        verbose=verbose, shuffle=False)  # the dataset shuffles itself
    if not checkpoint_path.exists():
        raise RuntimeError(f"training ended before the first epoch finished; nothing saved in {checkpoint_path}")
    with artifacts.atomic_path(run_dir / artifacts.MODEL) as temporary:
        shutil.copyfile(checkpoint_path, temporary)
    return pd.DataFrame(history.history).rename_axis("epoch")
