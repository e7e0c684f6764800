"""Compile and fit a model with the usual Kaggle callbacks and a wall-clock budget.

Kaggle kernels stop hard after a fixed time; a run that is killed loses everything it has not saved.
So fit keeps the best checkpoint on disk as it goes, stops cleanly when its time budget is spent, and
finally promotes the best checkpoint to RUN_DIR/model.keras atomically.

Model selection watches the competition score of the validation images ("val_score", ``losses.ImageScore``),
not the validation loss: the best checkpoint, early stopping and the plateau schedule all maximise it. The
learning rate anneals along a cosine over the wall-clock budget (``WallClockCosine``), so a time-limited run ends
cooled down instead of being cut in the middle of a plateau.

``fit_recipe`` adds the two-stage schedule of the TGS winners: train with BCE (+ Dice), then fine-tune the best
checkpoint with the Lovasz hinge, which optimises IoU itself but learns poorly from scratch.
"""

import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf

from seglib import artifacts, models
from seglib.data import reader_errors
from seglib.losses import ImageScore, get_loss

SCHEDULES = ("cosine", "plateau")
# The column of the CSV log holding the minutes a fit has run at the end of each epoch: a resumed fit goes on
# with the budget (and the cosine) where the killed one stopped.
MINUTES = "minutes"


class TimeBudget(keras.callbacks.Callback):
    """Stop training after ``minutes`` of wall-clock time, at the end of the running batch, and log the minutes
    spent at the end of every epoch (column "minutes").

    Keras has no time-based stopping callback; EarlyStopping watches metrics only.

    Args:
        minutes: the budget, or None for none.
        spent: minutes already spent by a killed fit this one resumes.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, minutes, spent=0.0, clock=time.monotonic):
        super().__init__()
        if minutes is not None and minutes <= 0:
            raise ValueError(f"time budget must be positive minutes or None, got {minutes}")
        self.minutes, self.spent, self.clock = minutes, spent, clock
        self.started = None
        self.stopped_early = False

    def elapsed(self):
        """Minutes spent, those of a resumed fit included."""
        return self.spent + (self.clock() - self.started) / 60

    def on_train_begin(self, logs=None):
        self.started = self.clock()

    def on_train_batch_end(self, batch, logs=None):
        if self.minutes is not None and self.elapsed() > self.minutes:
            self.model.stop_training = True
            self.stopped_early = True

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[MINUTES] = self.elapsed()

    def on_train_end(self, logs=None):
        if self.stopped_early:
            print(f"Time budget of {self.minutes} min spent: training stopped.")


class WallClockCosine(keras.callbacks.Callback):
    """Anneal the learning rate along a cosine from ``initial`` to ``final`` over the fit: over the wall-clock
    budget when there is one (or over the epochs, whichever runs out first), set before every batch.

    Keras' CosineDecay counts optimizer steps, which a time budget cannot know in advance; a run cut by its
    budget would stop at a high rate, mid-plateau.

    Args:
        budget: the ``TimeBudget`` whose clock and minutes this follows.
        initial, final: the learning rates at the start and at the end.
        epochs: the fit's epoch limit.
    """

    def __init__(self, budget, initial, final, epochs):
        super().__init__()
        self.budget, self.initial, self.final, self.epochs = budget, initial, final, epochs
        self.epoch = 0

    def fraction(self):
        """How much of the fit has passed, from 0 to 1."""
        by_time = self.budget.elapsed() / self.budget.minutes if self.budget.minutes else 0.0
        return min(1.0, max(by_time, self.epoch / self.epochs))

    def rate(self):
        return self.final + (self.initial - self.final) * 0.5 * (1 + math.cos(math.pi * self.fraction()))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate())

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model whenever the monitored validation score improves, atomically.

    Keras' ModelCheckpoint writes the file in place, so a kill in the middle of a save leaves a broken
    checkpoint that a resumed run would then promote; this writes a temporary file and renames it.

    Args:
        path: the checkpoint file (.keras).
        monitor: the log entry to maximise, e.g. "val_score".
        best: the best value so far (a resumed fit), or None.
    """

    def __init__(self, path, monitor, best=None):
        super().__init__()
        self.path, self.monitor = Path(path), monitor
        self.best = -float("inf") if best is None else best

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is not None and current > self.best:
            self.best = current
            with artifacts.atomic_path(self.path) as temporary:
                self.model.save(temporary)


def compile_model(model, loss="bce", learning_rate=1e-3, jit_compile="auto", metric="tgs", crop=None):
    """Compile with Adam, the named loss (on logits), the competition score and a pixel IoU to watch.

    A model with an empty-image head gets binary cross-entropy on that head too (deep supervision), with the
    pixel loss on the masks.

    Args:
        jit_compile: XLA compilation of the train step: True, False, or "auto" (Keras' choice: on with a GPU
            or TPU, off on a CPU-only machine, where benchmarks/training_throughput.py measured XLA at a third
            to half the speed).
        metric, crop: the competition score logged as "score" (``losses.ImageScore``): "tgs" or "dice", and the
            original image's box inside padded inputs (``Geometry.crop``).
    """
    # Pixel IoU over the batch ("iou"), for comparison with Keras examples; logits > 0 is probability > 0.5.
    watched = [ImageScore(metric, crop, name="score"),
               keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.0, name="iou")]
    if models.has_empty_head(model):
        losses = {"logits": get_loss(loss), "non_empty": keras.losses.BinaryCrossentropy(from_logits=True)}
        metrics = {"logits": watched}
    else:
        losses, metrics = get_loss(loss), watched
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=losses, metrics=metrics,
                  jit_compile=jit_compile)
    return model


def compiled_score(model):
    """The ``metric`` and ``crop`` of the ImageScore a (loaded) model was compiled with."""
    metrics = model.get_compile_config()["metrics"]
    for entry in metrics.get("logits", []) if isinstance(metrics, dict) else metrics:
        if isinstance(entry, dict) and entry.get("class_name") == "ImageScore":
            return {"metric": entry["config"]["metric"], "crop": entry["config"]["crop"]}
    raise ValueError(f"model {model.name!r} was not compiled by seglib.train.compile_model (no ImageScore)")


def with_empty_targets(dataset):
    """Give each batch of masks the image-level target of the empty-image head: is each class present."""
    def targets(images, masks):
        return images, {"logits": masks, "non_empty": tf.reduce_max(masks, axis=(1, 2))}

    return dataset.map(targets, num_parallel_calls=tf.data.AUTOTUNE)


def monitored(model):
    """The log entry model selection maximises: the validation competition score."""
    return "val_logits_score" if models.has_empty_head(model) else "val_score"


def fit(model, train_dataset, validation_dataset, run_dir, epochs, minutes=None, patience=10, verbose=2,
        history_name=artifacts.HISTORY, resume=True, schedule="cosine", final_learning_rate=0.0):
    """Fit ``model`` and save the best epoch (highest validation competition score) as RUN_DIR/model.keras.

    After every epoch the weights, the optimizer and the epoch number are backed up (Keras' BackupAndRestore) in
    RUN_DIR/backup/<history name>/; if the process is killed (kill -9, a Kaggle session ending), the same call
    run again continues from the last finished epoch, with what is left of the budget. The backup is deleted
    when the fit ends normally.

    Args:
        model: a model compiled by ``compile_model`` (its learning rate is the schedule's start).
        train_dataset, validation_dataset: from ``seglib.data.make_dataset``.
        run_dir: the run folder.
        epochs: the most epochs to run.
        minutes: wall-clock budget for the whole fit, or None.
        patience: with the "plateau" schedule, epochs without validation improvement before early stopping (the
            learning rate halves after half of that); a "cosine" fit runs to the end of its budget.
        verbose: Keras' progress display (1 = progress bar, 2 = one line per epoch).
        history_name: the CSV log's file name in ``run_dir``.
        resume: continue from a backup left by a killed run of this fit; False starts afresh.
        schedule: "cosine" (to ``final_learning_rate`` over the budget, see ``WallClockCosine``) or "plateau"
            (Keras' ReduceLROnPlateau on the validation score).

    Returns:
        The per-epoch history as a DataFrame (every epoch, those before a resume included).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; known: {SCHEDULES}")
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / artifacts.CHECKPOINT
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    history_path = run_dir / history_name
    backup_dir = run_dir / artifacts.BACKUP / Path(history_name).stem
    settings = fit_settings(model, train_dataset, epochs, patience)
    finished = pd.DataFrame()
    if resume and resumable(backup_dir, settings):
        finished = read_history(history_path) if history_path.exists() else finished
        print(f"Resuming from the backup in {backup_dir} after {len(finished)} finished epoch(s); delete that "
              "folder to start afresh.")
    else:
        shutil.rmtree(backup_dir, ignore_errors=True)
        # A checkpoint left by an earlier stage or run would be promoted if this fit never improved on nothing.
        checkpoint_path.unlink(missing_ok=True)
    backup_dir.mkdir(parents=True, exist_ok=True)
    artifacts.save_json(backup_dir / SETTINGS_FILE, settings)
    callbacks = fit_callbacks(model, checkpoint_path, history_path, backup_dir, finished, epochs, minutes, patience,
                              schedule, final_learning_rate)
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
    if len(finished):
        return read_history(history_path)
    return pd.DataFrame(history.history).rename_axis("epoch")


def fit_callbacks(model, checkpoint_path, history_path, backup_dir, finished, epochs, minutes, patience, schedule,
                  final_learning_rate):
    """The callbacks of ``fit``, in the order they must run at the end of an epoch; ``finished`` is the log of
    the epochs a resumed fit already has (empty otherwise)."""
    monitor = monitored(model)
    best = float(finished[monitor].max()) if monitor in finished else None
    budget = TimeBudget(minutes, spent=float(finished[MINUTES].iloc[-1]) if MINUTES in finished else 0.0)
    initial = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    rate = (WallClockCosine(budget, initial, final_learning_rate, epochs) if schedule == "cosine" else
            keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max", factor=0.5,
                                              patience=max(1, patience // 2)))
    # A cosine run ends where its budget ends: stopping it early would cut it before the rate has cooled down
    # (on real TGS, 15 minutes stopped at 10 by a noisy val_score). BestCheckpoint keeps the best epoch anyway.
    stopping = ([keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=patience)]
                if schedule == "plateau" else [])
    return [
        budget,  # first: it logs the minutes spent, which CSVLogger writes
        rate,
        BestCheckpoint(checkpoint_path, monitor, best),
        *stopping,
        keras.callbacks.CSVLogger(history_path, append=len(finished) > 0),
        # Last of the epoch-end savers: an epoch counts as finished only once its checkpoint and log row are on
        # disk. double_checkpoint keeps the previous backup in case a kill lands while the latest is written.
        keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True, delete_checkpoint=True),
    ]


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
              patience=10, verbose=2, schedule="cosine"):
    """Second stage: reload RUN_DIR/model.keras, recompile it with ``loss`` (watching the same score) and keep
    training; the best epoch of this stage replaces model.keras.

    Returns:
        The stage's per-epoch history as a DataFrame (logged to ``history_fine_tune.csv``).
    """
    model = artifacts.load_model(Path(run_dir) / artifacts.MODEL)
    compile_model(model, loss=loss, learning_rate=learning_rate, **compiled_score(model))
    return fit(model, train_dataset, validation_dataset, run_dir, epochs, minutes, patience, verbose,
               history_name=artifacts.FINE_TUNE_HISTORY, schedule=schedule)


def fit_recipe(model, train_dataset, validation_dataset, run_dir, epochs, minutes=None, patience=10,
               fine_tune_loss=None, fine_tune_epochs=20, fine_tune_minutes=None, fine_tune_learning_rate=1e-4,
               verbose=2, schedule="cosine"):
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
        history = fit(model, train_dataset, validation_dataset, run_dir, epochs, minutes, patience, verbose,
                      schedule=schedule)
    history["stage"] = "train"
    if fine_tune_loss:
        second = fine_tune(run_dir, train_dataset, validation_dataset, fine_tune_loss, fine_tune_learning_rate,
                           fine_tune_epochs, fine_tune_minutes, patience, verbose, schedule)
        second["stage"] = f"fine-tune {fine_tune_loss}"
        history = pd.concat([history, second], ignore_index=True).rename_axis("epoch")
    return history, artifacts.load_model(Path(run_dir) / artifacts.MODEL)


def saved_history(run_dir, fine_tune_loss=None):
    """The log a finished ``fit_recipe`` left in ``run_dir``, as ``fit_recipe`` returned it (a fold that a
    resumed cross-validation run does not train again)."""
    run_dir = Path(run_dir)
    history = read_history(run_dir / artifacts.HISTORY).reset_index(drop=True).assign(stage="train")
    if fine_tune_loss and (run_dir / artifacts.FINE_TUNE_HISTORY).exists():
        second = read_history(run_dir / artifacts.FINE_TUNE_HISTORY).reset_index(drop=True)
        history = pd.concat([history, second.assign(stage=f"fine-tune {fine_tune_loss}")], ignore_index=True)
    return history.rename_axis("epoch")


def fit_summary(history, monitor, epochs, minutes):
    """One row per fold (and stage) of a training log: epochs run, the best epoch (counted from 1, as Keras'
    log counts) and its validation score, the minutes spent and why training stopped.

    Args:
        history: the log ``fit_recipe`` returns, with a "fold" column for several folds.
        monitor: the validation score that picked the best epoch (``monitored(model)``).
        epochs, minutes: the limits the stage ran under (EPOCHS, TRAIN_MINUTES).
    """
    keys = [key for key in ("fold", "stage") if key in history]
    rows = []
    for key, part in (history.groupby(keys, sort=False) if keys else [((), history)]):
        spent = float(part[MINUTES].iloc[-1]) if MINUTES in part else float("nan")
        reason = ("the time budget" if minutes is not None and spent >= minutes else
                  "the epoch limit" if len(part) >= epochs else "early stopping")
        if "stage" in part and part["stage"].iloc[0] != "train":
            reason = "its own FINE_TUNE_* limits"
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "epochs": len(part),
                     "best epoch": int(part[monitor].to_numpy().argmax()) + 1,
                     f"best {monitor}": float(part[monitor].max()), "minutes": round(spent, 1),
                     "stopped by": reason})
    summary = pd.DataFrame(rows)
    if "fold" in summary:
        summary["fold"] += 1  # the log says "fold 1/K"
    return summary
