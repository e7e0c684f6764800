"""Compile and fit within a wall-clock budget (Kaggle kernels stop hard), keeping the best checkpoint on disk and
resuming after a kill; selection maximises the validation competition score (``losses.ImageScore``), not the loss.
"""

import dataclasses
import hashlib
import json
import logging
import math
import shutil
import time
from pathlib import Path

import pandas as pd

from seglib import artifacts, models
from seglib.backend import keras, tf
from seglib.data import reader_errors
from seglib.errors import SeglibError
from seglib.losses import ImageScore, get_loss

log = logging.getLogger(__name__)
MINUTES = "minutes"  # the log column of the minutes spent: a resumed fit goes on with its budget from there
SETTINGS_FILE = "fit_settings.json"  # what a backup was made with, kept beside it


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Notebook 03's settings (the key a resumed run must match) and, once trained, its results: the run's
    train_config.json, read by notebook 04 and ``submit.load_trained_run``."""

    competition: str
    competition_options: dict
    geometry: dict  # Geometry.to_dict()
    architecture: str
    model: dict
    loss: str
    learning_rate: float
    learning_rate_schedule: str
    epochs: int
    train_minutes_budget: float  # or None
    batch_size: int
    patience: int
    fine_tune_loss: str  # or None
    fine_tune: list  # [epochs, minutes, learning rate]
    augmentations: list
    seed: int
    folds: int
    tta: str
    precision: str
    fold_validation_ids: list
    models: list = None  # the fold models' paths, relative to the file's folder
    epochs_run: int = None
    best_val_score: float = None  # mean over the folds
    oof_score: float = None  # out-of-fold, at threshold 0.5
    train_minutes: float = None

    def to_dict(self):
        return dataclasses.asdict(self)

    def with_results(self, **results):
        return dataclasses.replace(self, **results)

    def save(self, path):
        return artifacts.save_json(path, self.to_dict())

    @classmethod
    def load(cls, path):
        try:
            return cls(**artifacts.load_json(path, what="training config (notebook 03)"))
        except TypeError as error:
            raise SeglibError(f"{path}: not a training config of this seglib ({error}); re-run notebook 03") from None


class TimeBudget(keras.callbacks.Callback):
    """Stop at the end of the batch in which ``minutes`` (None: no limit, ``spent`` of them by the killed fit this
    one resumes) are spent, and log the minutes at each epoch's end; Keras' EarlyStopping watches metrics only."""

    def __init__(self, minutes, spent=0.0, clock=time.monotonic):
        super().__init__()
        if minutes is not None and minutes <= 0:
            raise ValueError(f"time budget must be positive minutes or None, got {minutes}")
        self.minutes, self.spent, self.clock, self.started = minutes, spent, clock, None

    def elapsed(self):
        return self.spent + (self.clock() - self.started) / 60

    def on_train_begin(self, logs=None):
        self.started = self.clock()

    def on_train_batch_end(self, batch, logs=None):
        if self.minutes is not None and self.elapsed() > self.minutes:
            self.model.stop_training = True  # Keras ends the fit after this batch
            log.info("Time budget of %s min spent: training stopped.", self.minutes)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[MINUTES] = self.elapsed()


class WallClockCosine(keras.callbacks.Callback):
    """Set the learning rate before each batch along a cosine from ``initial`` to ``final`` over the ``budget``
    (a ``TimeBudget``) or the ``epochs``, whichever ends first. Keras' CosineDecay counts steps, which a budget
    cannot know: cut by its budget, it would stop mid-plateau."""

    def __init__(self, budget, initial, final, epochs):
        super().__init__()
        self.budget, self.initial, self.final, self.epochs, self.epoch = budget, initial, final, epochs, 0

    def rate(self):
        by_time = self.budget.elapsed() / self.budget.minutes if self.budget.minutes else 0.0
        fraction = min(1.0, max(by_time, self.epoch / self.epochs))
        return self.final + (self.initial - self.final) * 0.5 * (1 + math.cos(math.pi * fraction))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate())

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model to ``path`` whenever ``monitor`` beats ``best``, atomically: Keras' ModelCheckpoint writes in
    place, and a kill mid-save would leave a broken checkpoint for the resumed run to promote."""

    def __init__(self, path, monitor, best=None):
        super().__init__()
        self.path, self.monitor, self.best = Path(path), monitor, -math.inf if best is None else best

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is not None and current > self.best:
            self.best = current
            with artifacts.atomic_path(self.path) as temporary:
                self.model.save(temporary)


def compile_model(model, loss="bce", learning_rate=1e-3, jit_compile="auto", metric="tgs", crop=None):
    """Compile with Adam, the named loss on logits, the competition score "score" (``ImageScore(metric, crop)``)
    and a pixel IoU (logit 0 is probability 0.5); an empty-image head gets BCE too. ``jit_compile`` "auto" leaves
    XLA off on a CPU, where benchmarks/training_throughput.py measured it at a third to half the speed."""
    watched = [ImageScore(metric, crop, name="score"),
               keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.0, name="iou")]
    losses, metrics = get_loss(loss), watched
    if models.has_empty_head(model):
        losses = {"logits": losses, "non_empty": keras.losses.BinaryCrossentropy(from_logits=True)}
        metrics = {"logits": watched}
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
    """Add the empty-image head's target to each batch: whether each class is present."""
    return dataset.map(lambda images, masks: (images, {"logits": masks, "non_empty": tf.reduce_max(masks, (1, 2))}),
                       num_parallel_calls=tf.data.AUTOTUNE)


def monitored(model):
    """The log entry model selection maximises: the validation competition score."""
    return "val_logits_score" if models.has_empty_head(model) else "val_score"


def fit(model, train_dataset, validation_dataset, run_dir, epochs, minutes=None, patience=10, verbose=2,
        history_name=artifacts.HISTORY, resume=True, schedule="cosine", final_learning_rate=0.0):
    """Fit ``model`` (from ``compile_model``), save its best epoch as RUN_DIR/model.keras and return the log.

    Keras' BackupAndRestore backs up each epoch in RUN_DIR/backup/<history name>/: after a kill the same call
    goes on from the last finished epoch with what is left of ``minutes``, unless ``resume`` is False.
    ``schedule``: "cosine" (to ``final_learning_rate``, ``WallClockCosine``) or "plateau" (Keras'
    ReduceLROnPlateau after ``patience // 2`` epochs without a better score, EarlyStopping after ``patience``).
    """
    if schedule not in ("cosine", "plateau"):
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; known: 'cosine', 'plateau'")
    run_dir = Path(run_dir)
    checkpoint, history_path = run_dir / artifacts.CHECKPOINT, run_dir / history_name
    backup_dir = run_dir / artifacts.BACKUP / Path(history_name).stem
    finished = _start(backup_dir, history_path, checkpoint, fit_settings(model, train_dataset, epochs, patience),
                      resume)
    callbacks = fit_callbacks(model, checkpoint, history_path, backup_dir, finished, epochs, minutes, patience,
                              schedule, final_learning_rate)
    if models.has_empty_head(model):
        train_dataset, validation_dataset = with_empty_targets(train_dataset), with_empty_targets(validation_dataset)
    with reader_errors():
        model.fit(train_dataset, validation_data=validation_dataset, epochs=epochs, callbacks=callbacks,
                  verbose=verbose, shuffle=False)  # the dataset shuffles itself
    if backup_dir.parent.is_dir() and not any(backup_dir.parent.iterdir()):
        backup_dir.parent.rmdir()  # BackupAndRestore removes its own folder; leave no empty backup/ behind
    if not checkpoint.exists():
        raise RuntimeError(f"training ended before the first epoch finished; nothing saved in {checkpoint}")
    with artifacts.atomic_path(run_dir / artifacts.MODEL) as temporary:
        shutil.copyfile(checkpoint, temporary)
    return read_history(history_path)


def _start(backup_dir, history_path, checkpoint, settings, resume):
    """The log of the epochs a killed fit with these ``settings`` finished; or clear its leftovers (empty log)."""
    finished = pd.DataFrame()
    if resume and resumable(backup_dir, settings):
        finished = read_history(history_path) if history_path.exists() else finished
        log.info("Resuming from the backup in %s after %d finished epoch(s); delete that folder to start afresh.",
                 backup_dir, len(finished))
    else:
        shutil.rmtree(backup_dir, ignore_errors=True)
        # A checkpoint of an earlier stage or run would be promoted if this fit never improved on nothing.
        checkpoint.unlink(missing_ok=True)
    backup_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    artifacts.save_json(backup_dir / SETTINGS_FILE, settings)
    return finished


def fit_callbacks(model, checkpoint, history_path, backup_dir, finished, epochs, minutes, patience, schedule,
                  final_learning_rate):
    """``fit``'s callbacks, in the order they must run at an epoch's end; ``finished`` is a resumed fit's log."""
    monitor = monitored(model)
    best = float(finished[monitor].max()) if monitor in finished else None
    budget = TimeBudget(minutes, spent=float(finished[MINUTES].iloc[-1]) if MINUTES in finished else 0.0)
    initial = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    if schedule == "cosine":
        # No early stopping: it would cut the run before the rate has cooled down (on real TGS, 15 minutes were
        # stopped at 10 by a noisy val_score). BestCheckpoint keeps the best epoch anyway.
        rate = [WallClockCosine(budget, initial, final_learning_rate, epochs)]
    else:
        rate = [keras.callbacks.ReduceLROnPlateau(monitor, factor=0.5, patience=max(1, patience // 2), mode="max"),
                keras.callbacks.EarlyStopping(monitor, patience=patience, mode="max")]
    # The budget logs the minutes CSVLogger writes; an epoch counts as finished once its checkpoint and log row
    # are on disk, so the backup comes last (double_checkpoint: the previous one survives a kill mid-write).
    return [budget, *rate, BestCheckpoint(checkpoint, monitor, best),
            keras.callbacks.CSVLogger(history_path, append=len(finished) > 0),
            keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True, delete_checkpoint=True)]


def read_history(path):
    """A CSVLogger log by epoch; an epoch logged twice (killed after its log row, before its backup) keeps its last."""
    return pd.read_csv(path).drop_duplicates("epoch", keep="last").set_index("epoch")


def fit_settings(model, train_dataset, epochs, patience):
    """The digest of what a resumed fit must share with the killed one: architecture, optimizer, loss, data."""
    def unnamed(config):  # Keras numbers unnamed layers per process
        return {key: value for key, value in config.items() if key != "name"}

    settings = {
        "model": [(type(layer).__name__, unnamed(layer.get_config())) for layer in model.layers],
        "optimizer": unnamed(model.optimizer.get_config() if model.optimizer else {}),
        "loss": keras.saving.serialize_keras_object(model.loss),
        "data": str(train_dataset.element_spec),
        "batches": int(train_dataset.cardinality()),
        "epochs": epochs,
        "patience": patience,
    }
    return {"digest": hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()}


def resumable(backup_dir, settings=None):
    """Whether ``backup_dir`` holds the backup of a killed fit (made with ``settings``, if given)."""
    if not any((backup_dir / name).exists() for name in ("training_metadata.json", "training_metadata.json.bkp")):
        return False
    if settings is None or artifacts.load_json(backup_dir / SETTINGS_FILE, "fit settings") == settings:
        return True
    log.info("The backup in %s was made with other settings: starting afresh.", backup_dir)
    return False


def fit_recipe(model, train_dataset, validation_dataset, run_dir, epochs, minutes=None, patience=10,
               fine_tune_loss=None, fine_tune_epochs=20, fine_tune_minutes=None, fine_tune_learning_rate=1e-4,
               verbose=2, schedule="cosine"):
    """``fit``, then, with a ``fine_tune_loss`` (e.g. "lovasz"), recompile the best model with it (same score)
    and fit again; a run killed in that stage goes on with it. Returns (``saved_history``, the best model)."""
    run_dir = Path(run_dir)
    fine_tune_backup = run_dir / artifacts.BACKUP / Path(artifacts.FINE_TUNE_HISTORY).stem
    if fine_tune_loss and resumable(fine_tune_backup) and (run_dir / artifacts.MODEL).exists():
        log.info("The first stage finished before the run was stopped: going on with the fine-tuning stage.")
    else:
        fit(model, train_dataset, validation_dataset, run_dir, epochs, minutes, patience, verbose, schedule=schedule)
    if fine_tune_loss:
        model = artifacts.load_model(run_dir / artifacts.MODEL)
        compile_model(model, loss=fine_tune_loss, learning_rate=fine_tune_learning_rate, **compiled_score(model))
        fit(model, train_dataset, validation_dataset, run_dir, fine_tune_epochs, fine_tune_minutes, patience,
            verbose, history_name=artifacts.FINE_TUNE_HISTORY, schedule=schedule)
    return saved_history(run_dir, fine_tune_loss), artifacts.load_model(run_dir / artifacts.MODEL)


def saved_history(run_dir, fine_tune_loss=None):
    """The log of a finished ``fit_recipe`` in ``run_dir``, both stages, with a "stage" column."""
    run_dir = Path(run_dir)
    history = read_history(run_dir / artifacts.HISTORY).reset_index(drop=True).assign(stage="train")
    if fine_tune_loss and (run_dir / artifacts.FINE_TUNE_HISTORY).exists():
        second = read_history(run_dir / artifacts.FINE_TUNE_HISTORY).reset_index(drop=True)
        history = pd.concat([history, second.assign(stage=f"fine-tune {fine_tune_loss}")], ignore_index=True)
    return history.rename_axis("epoch")


def fit_summary(history, monitor, epochs, minutes):
    """Per fold (and stage) of a ``fit_recipe`` log: epochs run, the best epoch (from 1, as Keras counts), its
    ``monitor`` score, the minutes spent and what stopped it under the ``epochs`` and ``minutes`` limits."""
    keys, rows = [key for key in ("fold", "stage") if key in history], []
    for key, part in history.groupby(keys, sort=False):
        spent = float(part[MINUTES].iloc[-1])
        reason = ("the time budget" if minutes is not None and spent >= minutes else
                  "the epoch limit" if len(part) >= epochs else "early stopping")
        if "stage" in part and part["stage"].iloc[0] != "train":
            reason = "its own FINE_TUNE_* limits"
        rows.append({**dict(zip(keys, key)), "epochs": len(part),
                     "best epoch": int(part[monitor].to_numpy().argmax()) + 1,
                     f"best {monitor}": float(part[monitor].max()), "minutes": round(spent, 1),
                     "stopped by": reason})
    summary = pd.DataFrame(rows)
    if "fold" in summary:
        summary["fold"] += 1  # the log says "fold 1/K"
    return summary
