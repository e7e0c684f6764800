"""Compile and fit a model with the usual Kaggle callbacks and a wall-clock budget.

Kaggle kernels stop hard after a fixed time; a run that is killed loses everything it has not saved.
So fit keeps the best checkpoint on disk as it goes, stops cleanly when its time budget is spent, and
finally promotes the best checkpoint to RUN_DIR/model.keras atomically.

``fit_recipe`` adds the two-stage schedule of the TGS winners: train with BCE (+ Dice), then fine-tune the best
checkpoint with the Lovasz hinge, which optimises IoU itself but learns poorly from scratch.
"""

import hashlib
import json
import shutil
import time
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf

from seglib import artifacts, models
from seglib.data import reader_errors
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


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model whenever the validation loss improves, atomically.

    Keras' ModelCheckpoint writes the file in place, so a kill in the middle of a save leaves a broken
    checkpoint that a resumed run would then promote; this writes a temporary file and renames it.

    Args:
        path: the checkpoint file (.keras).
        best: the best validation loss so far (a resumed fit), or None.
    """

    def __init__(self, path, best=None):
        super().__init__()
        self.path = Path(path)
        self.best = float("inf") if best is None else best

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get("val_loss")
        if current is not None and current < self.best:
            self.best = current
            with artifacts.atomic_path(self.path) as temporary:
                self.model.save(temporary)


def compile_model(model, loss="bce", learning_rate=1e-3, jit_compile="auto"):
    """Compile with Adam, the named loss and a pixel IoU to watch while training.

    A model with an empty-image head gets binary cross-entropy on that head too (deep supervision), with the
    pixel loss on the masks.

    Args:
        jit_compile: XLA compilation of the train step: True, False, or "auto" (Keras' choice: on with a GPU
            or TPU, off on a CPU-only machine, where benchmarks/training_throughput.py measured XLA at a third
            to half the speed).
    """
    iou = keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.5, name="iou")
    if models.has_empty_head(model):
        losses = {"probabilities": get_loss(loss), "non_empty": keras.losses.BinaryCrossentropy()}
        metrics = {"probabilities": [iou]}
    else:
        losses, metrics = get_loss(loss), [iou]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=losses, metrics=metrics,
                  jit_compile=jit_compile)
    return model


def with_empty_targets(dataset):
    """Give each batch of masks the image-level target of the empty-image head: is each class present."""
    def targets(images, masks):
        return images, {"probabilities": masks, "non_empty": tf.reduce_max(masks, axis=(1, 2))}

    return dataset.map(targets, num_parallel_calls=tf.data.AUTOTUNE)


def fit(model, train_dataset, validation_dataset, run_dir, epochs, minutes=None, patience=10, verbose=2,
        history_name=artifacts.HISTORY, resume=True):
    """Fit ``model`` and save the best epoch (lowest validation loss) as RUN_DIR/model.keras.

    After every epoch the weights, the optimizer and the epoch number are backed up (Keras' BackupAndRestore) in
    RUN_DIR/backup/<history name>/; if the process is killed (kill -9, a Kaggle session ending), the same call
    run again continues from the last finished epoch. The backup is deleted when the fit ends normally.

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
        resume: continue from a backup left by a killed run of this fit; False starts afresh.

    Returns:
        The per-epoch history as a DataFrame (every epoch, those before a resume included).
    """
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / artifacts.CHECKPOINT
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    history_path = run_dir / history_name
    backup_dir = run_dir / artifacts.BACKUP / Path(history_name).stem
    settings = fit_settings(model, train_dataset, epochs, patience)
    resuming = resume and resumable(backup_dir, settings)
    if resuming:
        finished = read_history(history_path) if history_path.exists() else pd.DataFrame()
        best_so_far = float(finished["val_loss"].min()) if "val_loss" in finished else None
        print(f"Resuming from the backup in {backup_dir} after {len(finished)} finished epoch(s) "
              f"(best val_loss so far {best_so_far}); delete that folder to start afresh.")
    else:
        shutil.rmtree(backup_dir, ignore_errors=True)
        # A checkpoint left by an earlier stage or run would be promoted if this fit never improved on nothing.
        checkpoint_path.unlink(missing_ok=True)
        best_so_far = None
    backup_dir.mkdir(parents=True, exist_ok=True)
    artifacts.save_json(backup_dir / SETTINGS_FILE, settings)
    time_budget = TimeBudget(minutes)
    callbacks = [
        BestCheckpoint(checkpoint_path, best_so_far),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, patience // 2)),
        keras.callbacks.CSVLogger(history_path, append=resuming),
        # Last of the epoch-end savers: an epoch counts as finished only once its checkpoint and log row are on
        # disk. double_checkpoint keeps the previous backup in case a kill lands while the latest is written.
        keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True, delete_checkpoint=True),
        time_budget,
    ]
    if models.has_empty_head(model):
        train_dataset, validation_dataset = with_empty_targets(train_dataset), with_empty_targets(validation_dataset)
    with reader_errors():
        history = model.fit(train_dataset, validation_data=validation_dataset, epochs=epochs, callbacks=callbacks,
                            verbose=verbose, shuffle=False)  # the dataset shuffles itself
    if backup_dir.parent.is_dir() and not any(backup_dir.parent.iterdir()):
        backup_dir.parent.rmdir()  # BackupAndRestore removes its own folder; leave no empty backup/ behind
    if not checkpoint_path.exists():
        raise RuntimeError(f"training ended before the first epoch finished; nothing saved in {checkpoint_path}")
    with artifacts.atomic_path(run_dir / artifacts.MODEL) as temporary:
        shutil.copyfile(checkpoint_path, temporary)
    if resuming:
        return read_history(history_path)
    return pd.DataFrame(history.history).rename_axis("epoch")


def read_history(path):
    """A CSVLogger log as a DataFrame indexed by epoch; an epoch logged twice (killed after its log row, before
    its backup, so run again) keeps its last row."""
    return pd.read_csv(path).drop_duplicates("epoch", keep="last").set_index("epoch")


SETTINGS_FILE = "fit_settings.json"


def fit_settings(model, train_dataset, epochs, patience):
    """What must match for a backup to be resumed: the architecture, optimizer, loss and data shapes (a run
    stopped and started again with other parameters must start afresh, not continue the old weights)."""
    settings = {
        # Layer configs without their names: Keras numbers unnamed layers per process.
        "model": [(type(layer).__name__, {key: value for key, value in layer.get_config().items() if key != "name"})
                  for layer in model.layers],
        "optimizer": {key: value for key, value in (model.optimizer.get_config() if model.optimizer else {}).items()
                      if key != "name"},
        "loss": keras.saving.serialize_keras_object(model.loss),
        "data": str(train_dataset.element_spec),
        "batches": int(train_dataset.cardinality()),
        "epochs": epochs,
        "patience": patience,
    }
    return {"digest": hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()}


def resumable(backup_dir, settings=None):
    """Whether ``backup_dir`` holds a BackupAndRestore backup of a killed fit (made with ``settings``, if given)."""
    backup_dir = Path(backup_dir)
    if not ((backup_dir / "training_metadata.json").exists() or (backup_dir / "training_metadata.json.bkp").exists()):
        return False
    if settings is None:
        return True
    saved = backup_dir / SETTINGS_FILE
    if saved.exists() and artifacts.load_json(saved) == settings:
        return True
    print(f"The backup in {backup_dir} was made with other settings: starting afresh.")
    return False


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

    A run killed during the fine-tuning stage goes on with that stage when run again: the first stage's model and
    log are already on disk.

    Returns:
        (history of both stages with a "stage" column and epochs numbered on, the best model loaded from
        RUN_DIR/model.keras).
    """
    run_dir = Path(run_dir)
    fine_tune_backup = run_dir / artifacts.BACKUP / Path(artifacts.FINE_TUNE_HISTORY).stem
    if fine_tune_loss and resumable(fine_tune_backup) and (run_dir / artifacts.MODEL).exists():
        print("The first stage finished before the run was stopped: going on with the fine-tuning stage.")
        history = read_history(run_dir / artifacts.HISTORY).reset_index(drop=True)
    else:
        history = fit(model, train_dataset, validation_dataset, run_dir, epochs, minutes, patience, verbose)
    history["stage"] = "train"
    if fine_tune_loss:
        second = fine_tune(run_dir, train_dataset, validation_dataset, fine_tune_loss, fine_tune_learning_rate,
                           fine_tune_epochs, fine_tune_minutes, patience, verbose)
        second["stage"] = f"fine-tune {fine_tune_loss}"
        history = pd.concat([history, second], ignore_index=True).rename_axis("epoch")
    return history, keras.models.load_model(Path(run_dir) / artifacts.MODEL)
