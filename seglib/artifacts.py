"""Atomic writes for every artifact a run leaves in RUN_DIR.

A Kaggle session can end at any moment; a half-written model, policy or CSV must never look like a finished
one. Everything is written to a temporary name beside its target and renamed into place (``os.replace`` is
atomic on one file system).
"""

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block finishes.

    The temporary name keeps the suffix of ``path`` so that writers which choose a format by suffix
    (``.keras``, ``.npz``, ``.csv``) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".partial{path.suffix}")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def save_json(path, payload):
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return Path(path)


def require(path, what):
    """``path`` as a Path; FileNotFoundError saying which notebook writes it when it is not there."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found at {path}; run the notebook that writes it first (on Kaggle: "
                                "or attach that notebook's output as an input)")
    return path


def broken(path, what, error):
    """The error for an artifact that exists but cannot be read (truncated by a kill, or another file
    under its name): it names the file and what writes it again."""
    return ValueError(f"{path}: cannot be read as the {what} ({type(error).__name__}: {error}); delete it and "
                      f"re-run the notebook that writes it")


def load_json(path, what="file"):
    """Read a JSON artifact, naming the file and what writes it when it is missing or broken."""
    path = require(path, what)
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise broken(path, what, error) from None


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


def load_npz(path, what="file"):
    """Read a ``.npz`` artifact into a dict of arrays."""
    path = require(path, what)
    try:
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise broken(path, what, error) from None


def load_model(path, what="model (notebook 03)"):
    """``keras.models.load_model``, naming the file and what writes it when it is missing or broken.

    Keras reports a truncated .keras file as "File not found" (its zip has no config); this says which file.
    """
    import keras

    path = require(path, what)
    try:
        return keras.models.load_model(path)
    except Exception as error:  # noqa: BLE001 - Keras raises many types for a bad file; re-raised with its name
        raise broken(path, what, error) from error


def check_writable(folder, min_free_bytes=200 * 2**20):
    """Fail before any work when ``folder`` cannot take the run's files: read-only, or under
    ``min_free_bytes`` free (a full disk would otherwise stop training at its first checkpoint)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test."):
            pass
    except OSError as error:
        raise ValueError(f"run folder {folder} is not writable ({error.strerror}); set RUN_DIR to a writable "
                         "folder (on Kaggle: /kaggle/working)") from None
    free = shutil.disk_usage(folder).free
    if free < min_free_bytes:
        raise ValueError(f"run folder {folder} has {free / 2**20:.0f} MiB free, under the "
                         f"{min_free_bytes / 2**20:.0f} MiB a run needs; free some space or set RUN_DIR elsewhere")
    return folder


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


# One file of each notebook's output: a folder holding one of them is a run folder (see ``find``).
RUN_MARKERS = ("eda_coverage.csv", MEAN_STD, TRAIN_CONFIG, POLICY)


def find(run_dir, name):
    """Where artifact ``name`` is: in the run folder, else in an earlier notebook's output attached as an input.

    On Kaggle each notebook is usually its own kernel: what notebook 03 wrote reaches notebook 04 only as a
    read-only copy under /kaggle/input. Returns ``run_dir / name`` when it is nowhere (so that the error names
    the run folder); raises ValueError when several attached outputs hold it.
    """
    from seglib.env import attached_run_dirs

    path = Path(run_dir) / name
    if path.exists():
        return path
    found = [folder / name for folder in attached_run_dirs(RUN_MARKERS) if (folder / name).exists()]
    if len(found) > 1:
        raise ValueError(f"{name} is in several attached inputs ({', '.join(map(str, found))}); attach the output "
                         "of one run only")
    return found[0] if found else path


def fold_dir(run_dir, fold, folds):
    """Where fold ``fold`` of ``folds`` keeps its model and logs: RUN_DIR itself for a single split, else
    RUN_DIR/fold<k>."""
    return Path(run_dir) if folds == 1 else Path(run_dir) / f"fold{fold}"
