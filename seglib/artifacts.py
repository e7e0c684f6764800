"""The files of a run folder: their names, atomic writes, and reads that say which notebook to re-run."""

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from seglib.errors import SeglibError

# File names inside RUN_DIR. Notebooks hand work to each other only through these.
MEAN_STD = "mean_std.npz"
TRAIN_CONFIG = "train_config.json"
CHECKPOINT = "checkpoints/best.keras"
BACKUP = "backup"  # Keras BackupAndRestore folders of fits in progress (gone once a fit ends)
MODEL = "model.keras"
HISTORY = "history.csv"
FINE_TUNE_HISTORY = "history_fine_tune.csv"
OOF_STORE = "oof_predictions"  # a seglib.store folder: every fold's validation predictions at the model size
VALIDATION_SWEEP = "threshold_sweep.csv"
VALIDATION_IMAGES = "validation_images.csv"  # notebook 04: each validation image's score and coverage
POLICY = "policy.json"
SUBMISSION = "submission.csv"
SUMMARY = "summary.json"  # the run in one file: score, interval, policy, settings, timings, versions
RUN_MARKERS = ("eda_coverage.csv", MEAN_STD, TRAIN_CONFIG, POLICY)  # one per notebook: a run folder has one


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path (same name, in a hidden folder beside ``path``); move it to ``path`` only if the
    block finishes. A Kaggle session can end at any moment: a half-written file must never look finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.partial.") as folder:
        yield Path(folder) / path.name
        os.replace(Path(folder) / path.name, path)


def save_json(path, payload):
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return Path(path)


def save_csv(path, table, index=True):
    """Write a pandas DataFrame as CSV, atomically."""
    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=index)
    return Path(path)


def save_npz(path, **arrays):
    """Write numpy arrays to a ``.npz`` file, atomically."""
    with atomic_path(path) as temporary:
        np.savez(temporary, **arrays)
    return Path(path)


@contextlib.contextmanager
def reading(path, what, errors):
    """Yield ``path``, or raise FileNotFoundError saying what writes it; turn ``errors`` raised while reading it
    (a file truncated by a kill, or a foreign one) into a SeglibError naming the file and what writes it again."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found at {path}; run the notebook that writes it first (on Kaggle: "
                                "or attach that notebook's output as an input)")
    try:
        yield path
    except errors as error:
        raise SeglibError(f"{path}: cannot be read as the {what} ({type(error).__name__}: {error}); delete it "
                          "and re-run the notebook that writes it") from None


def load_json(path, what="file"):
    """Read a JSON artifact, naming the file and what writes it when it is missing or broken."""
    with reading(path, what, (UnicodeDecodeError, json.JSONDecodeError)) as path:
        return json.loads(path.read_text())


def load_npz(path, what="file"):
    """Read a ``.npz`` artifact into a dict of arrays, naming the file when it is missing or broken."""
    with reading(path, what, (OSError, ValueError, EOFError, zipfile.BadZipFile)) as path, np.load(path) as stored:
        return {name: stored[name] for name in stored.files}


def load_model(path, what="model (notebook 03)"):
    """``keras.models.load_model``, naming the file when it is missing or broken (Keras says "File not found")."""
    from seglib.backend import keras
    with reading(path, what, Exception) as path:  # Keras raises many types for a bad file
        return keras.models.load_model(path)


def check_writable(folder, min_free_bytes=200 * 2**20):
    """Fail before any work if ``folder`` is read-only or nearly full (training would stop at a checkpoint)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise SeglibError(f"run folder {folder} is not writable ({error.strerror}); set RUN_DIR to a writable "
                          "folder (on Kaggle: /kaggle/working)") from None
    free, needed = shutil.disk_usage(folder).free / 2**20, min_free_bytes / 2**20
    if free < needed:
        raise SeglibError(f"run folder {folder} has {free:.0f} MiB free, under the {needed:.0f} MiB a run needs; "
                          "free some space or set RUN_DIR elsewhere")
    return folder


def find(run_dir, name):
    """``run_dir / name`` if it exists, else the copy in an earlier notebook's output attached as an input
    (on Kaggle each notebook is its own kernel); ``run_dir / name`` when it is nowhere, so errors name it."""
    from seglib.env import attached_run_dirs
    path = Path(run_dir) / name
    found = [path] if path.exists() else [p / name for p in attached_run_dirs(RUN_MARKERS) if (p / name).exists()]
    if len(found) > 1:
        raise SeglibError(f"{name} is in several attached inputs ({', '.join(map(str, found))}); attach the "
                          "output of one run only")
    return found[0] if found else path


def fold_dir(run_dir, fold, folds):
    """Where fold ``fold`` of ``folds`` keeps its model and logs: RUN_DIR for a single split, else RUN_DIR/fold<k>."""
    return Path(run_dir) if folds == 1 else Path(run_dir) / f"fold{fold}"
