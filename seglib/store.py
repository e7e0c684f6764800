"""The prediction store: probabilities kept on disk at the model size, so nothing is predicted twice.

A store is a folder holding ``probabilities.npy`` (float16, one (size, size, classes) array per image, read back
memory-mapped) and ``manifest.csv`` (the id and the fold of each row). Notebook 03 writes the out-of-fold (OOF)
predictions of every fold into one store; notebook 04 fits the policy on it, and ensembles of several runs are
averages of their stores, all without running a model again. float16 at the model size is 2 bytes a pixel: the
25,000 TGS training images at 128 x 128 take 0.8 GB.

A store is written under a temporary name and renamed into place when complete, so a killed run never leaves
a half-filled store that looks finished.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

MANIFEST = "manifest.csv"
ARRAY = "probabilities.npy"
# Kept only in a resumable writer's partial store: its ids and key, and the folds finished so far.
PARTIAL_KEY = "resume_key.json"
PARTIAL_PROGRESS = "progress.npz"


class PredictionWriter:
    """Fill a store batch by batch, in any order, then ``close()`` it into place.

    Args:
        path: the store folder to create (replaced if it exists).
        image_ids: every id the store will hold, in the order of its rows.
        shape: the shape of one prediction, (size, size, classes).

    Use as a context manager: the store appears at ``path`` only when the block ends without an error and
    every id has been written.

    With ``resume`` (a JSON-able key, e.g. the run's training settings) the partial store has a fixed name and
    survives a killed run: the folds recorded with ``finish_fold`` are kept when a writer with the same ids,
    shape and key opens it again (``finished_folds``), so a cross-validation run killed in fold k keeps the
    predictions of the folds before it. Another key (changed settings) starts afresh.
    """

    def __init__(self, path, image_ids, shape, resume=None):
        self.path = Path(path)
        self.image_ids = [str(image_id) for image_id in image_ids]
        if len(set(self.image_ids)) != len(self.image_ids):
            raise ValueError(f"{self.path}: the store's ids must be unique")
        self.row_of = {image_id: row for row, image_id in enumerate(self.image_ids)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.resume = None if resume is None else json.dumps({"ids": self.image_ids, "key": resume}, sort_keys=True)
        shape = (len(self.image_ids), *shape)
        self.folds = np.full(len(self.image_ids), -1, dtype=np.int64)
        self.finished_folds = set()
        if self.resume is not None:
            self.temporary = self.path.parent / f".{self.path.name}.partial"
            if self._reopen(shape):
                return
            shutil.rmtree(self.temporary, ignore_errors=True)
            self.temporary.mkdir()
        else:
            self.temporary = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                                   suffix=".partial"))
        self.array = np.lib.format.open_memmap(self.temporary / ARRAY, mode="w+", dtype=np.float16, shape=shape)
        self.written = np.zeros(len(self.image_ids), dtype=bool)
        if self.resume is not None:
            (self.temporary / PARTIAL_KEY).write_text(self.resume)

    def _reopen(self, shape):
        """Open a partial store a killed run left, if it was made for the same ids, shape and key."""
        try:
            same = (self.temporary / PARTIAL_KEY).read_text() == self.resume
            array = np.load(self.temporary / ARRAY, mmap_mode="r+")
            progress = np.load(self.temporary / PARTIAL_PROGRESS)
        except (OSError, ValueError):
            return False
        if not same or array.shape != shape or array.dtype != np.float16:
            return False
        self.array, self.finished_folds = array, set(progress["finished"].tolist())
        self.folds = np.where(np.isin(progress["folds"], list(self.finished_folds)), progress["folds"], -1)
        self.written = self.folds >= 0
        return True

    def finish_fold(self, fold):
        """Record that every prediction of ``fold`` is on disk, so a resumed writer keeps them."""
        self.array.flush()
        self.finished_folds.add(fold)
        from seglib.artifacts import save_npz

        save_npz(self.temporary / PARTIAL_PROGRESS, folds=np.where(self.written, self.folds, -1),
                 finished=np.array(sorted(self.finished_folds), dtype=np.int64))

    def write(self, image_ids, outputs, fold=0):
        """Store the predictions ``outputs`` (batch, size, size, classes) of ``image_ids``, made by ``fold``."""
        outputs = np.asarray(outputs)
        if len(outputs) != len(image_ids) or outputs.shape[1:] != self.array.shape[1:]:
            raise ValueError(f"{self.path}: {len(image_ids)} ids with outputs {outputs.shape}, "
                             f"expected (n, {', '.join(map(str, self.array.shape[1:]))})")
        unknown = [image_id for image_id in image_ids if str(image_id) not in self.row_of]
        if unknown:
            raise ValueError(f"{self.path}: id {unknown[0]!r} is not one of the store's ids")
        rows = [self.row_of[str(image_id)] for image_id in image_ids]
        if self.written[rows].any():
            raise ValueError(f"{self.path}: id {self.image_ids[rows[int(np.argmax(self.written[rows]))]]!r} "
                             f"written twice (folds must not overlap)")
        self.array[rows] = outputs.astype(np.float16)
        self.folds[rows] = fold
        self.written[rows] = True

    def close(self):
        """Check every id was written, then move the store into place."""
        if not self.written.all():
            missing = self.image_ids[int(np.argmin(self.written))]
            raise ValueError(f"{self.path}: {int((~self.written).sum())} id(s) have no prediction, e.g. {missing!r}")
        self.array.flush()
        del self.array
        for resume_file in (PARTIAL_KEY, PARTIAL_PROGRESS):
            (self.temporary / resume_file).unlink(missing_ok=True)
        pd.DataFrame({"id": self.image_ids, "fold": self.folds}).to_csv(self.temporary / MANIFEST, index=False)
        _replace_directory(self.temporary, self.path)
        return self.path

    def discard(self):
        """Drop the partial store."""
        shutil.rmtree(self.temporary, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, error_type, error, traceback):
        try:
            if error_type is None:
                self.close()
        finally:
            # An error in the block or in close(): drop the partial store, unless it is kept for a resume.
            if self.temporary.exists() and not (self.resume is not None and error_type is not None):
                self.discard()
        return False


def _replace_directory(source, target):
    """Move the folder ``source`` to ``target``, replacing an older one (os.replace cannot overwrite folders)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old)


class Predictions:
    """A store read back: ``ids``, ``folds`` and ``probabilities`` (float16 memmap, one row per id)."""

    def __init__(self, path):
        self.path = Path(path)
        manifest_path, array_path = self.path / MANIFEST, self.path / ARRAY
        if not manifest_path.exists() or not array_path.exists():
            raise FileNotFoundError(f"no prediction store at {self.path} (needs {MANIFEST} and {ARRAY}); "
                                    "run the notebook that writes it first (03 for the out-of-fold store)")
        try:
            manifest = pd.read_csv(manifest_path, dtype={"id": str}, keep_default_na=False)
            self.probabilities = np.load(array_path, mmap_mode="r")
        except (OSError, ValueError, pd.errors.ParserError) as error:
            raise ValueError(f"{self.path}: the prediction store cannot be read ({error}); delete it and re-run "
                             "the notebook that writes it (03 for the out-of-fold store)") from None
        if list(manifest.columns) != ["id", "fold"] or len(manifest) != len(self.probabilities):
            raise ValueError(f"{manifest_path}: expected columns id, fold and {len(self.probabilities)} rows, "
                             f"got {list(manifest.columns)} and {len(manifest)} rows")
        self.ids = manifest["id"].tolist()
        self.folds = manifest["fold"].to_numpy()

    def __len__(self):
        return len(self.ids)

    def read(self, rows):
        """The probabilities of ``rows`` (row indices), read from the file rather than through the memory map.

        Pages of a memory map stay mapped into the process once touched and count in its memory, so one pass
        over a big store (100,064 Carvana predictions) through ``probabilities`` grows the process by the
        store's size; plain reads keep it flat (the OS still caches the file).
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        row_shape = self.probabilities.shape[1:]
        row_bytes = int(np.prod(row_shape)) * self.probabilities.dtype.itemsize
        outputs = np.empty((len(rows), *row_shape), dtype=self.probabilities.dtype)
        with open(self.path / ARRAY, "rb") as handle:
            for index, row in enumerate(rows):
                if not 0 <= row < len(self):
                    raise IndexError(f"{self.path}: row {row} is outside the store's {len(self)} rows")
                handle.seek(self.probabilities.offset + int(row) * row_bytes)
                if handle.readinto(memoryview(outputs[index]).cast("B")) != row_bytes:
                    raise ValueError(f"{self.path / ARRAY} is shorter than its header says (row {row})")
        return outputs

    def select(self, image_ids):
        """The probabilities of ``image_ids``, in that order (an array in memory, read as ``read`` does)."""
        row_of = {image_id: row for row, image_id in enumerate(self.ids)}
        missing = [image_id for image_id in image_ids if image_id not in row_of]
        if missing:
            raise ValueError(f"{self.path}: no prediction for id {missing[0]!r}")
        return self.read([row_of[image_id] for image_id in image_ids])


def write_predictions(path, image_ids, outputs, folds=None):
    """Write a whole store at once from in-memory ``outputs`` (n, size, size, classes)."""
    outputs = np.asarray(outputs)
    folds = np.zeros(len(image_ids), dtype=np.int64) if folds is None else np.asarray(folds)
    with PredictionWriter(path, image_ids, outputs.shape[1:]) as writer:
        for fold in np.unique(folds):
            rows = np.flatnonzero(folds == fold)
            writer.write([image_ids[row] for row in rows], outputs[rows], fold=int(fold))
    return Path(path)


def average_stores(paths, output_path, chunk_size=256):
    """Average several stores of the same ids (an ensemble of runs) into a new store, chunk by chunk.

    Returns:
        The path of the new store; its folds are those of the first store.
    """
    stores = [Predictions(path) for path in paths]
    if not stores:
        raise ValueError("average_stores needs at least one store")
    first = stores[0]
    for other in stores[1:]:
        if other.ids != first.ids or other.probabilities.shape != first.probabilities.shape:
            raise ValueError(f"{other.path} does not hold the same ids and shapes as {first.path}")
    with PredictionWriter(output_path, first.ids, first.probabilities.shape[1:]) as writer:
        for start in range(0, len(first), chunk_size):
            stop = min(start + chunk_size, len(first))
            mean = np.mean([store.probabilities[start:stop].astype(np.float32) for store in stores], axis=0)
            for fold in np.unique(first.folds[start:stop]):
                rows = start + np.flatnonzero(first.folds[start:stop] == fold)
                writer.write([first.ids[row] for row in rows], mean[rows - start], fold=int(fold))
    return Path(output_path)
