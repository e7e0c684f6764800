"""The prediction store: probabilities kept on disk at the model size, so nothing is predicted twice.

A store is a folder holding ``probabilities.npy`` (float16, one (size, size, classes) array per image, read back
memory-mapped) and ``manifest.csv`` (the id and the fold of each row). Notebook 03 writes the out-of-fold
predictions into one, notebook 04 fits the policy on it, an ensemble of runs averages their stores. A store is
renamed into place only when complete: a killed run never leaves a half-filled store that looks finished.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from seglib.artifacts import save_npz
from seglib.errors import SeglibError

MANIFEST = "manifest.csv"
ARRAY = "probabilities.npy"
# Only in a resumable writer's partial store: its ids and key, and the folds finished so far.
PARTIAL_KEY = "resume_key.json"
PARTIAL_PROGRESS = "progress.npz"


class PredictionWriter:
    """Fill a store batch by batch, in any order; as a context manager it appears at ``path`` only when the block
    ends without an error and every id of ``image_ids`` (the rows, in order) was written.

    With ``resume`` (a JSON-able key, e.g. the run's training settings) the partial store has a fixed name and
    survives a killed run: the folds recorded with ``finish_fold`` are kept (``finished_folds``) when a writer
    with the same ids, shape and key opens it again; another key starts afresh.
    """

    def __init__(self, path, image_ids, shape, resume=None):
        self.path = Path(path)
        self.image_ids = [str(image_id) for image_id in image_ids]
        self.row_of = {image_id: row for row, image_id in enumerate(self.image_ids)}
        if len(self.row_of) != len(self.image_ids):
            raise SeglibError(f"{self.path}: the store's ids must be unique")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.resume = None if resume is None else json.dumps({"ids": self.image_ids, "key": resume}, sort_keys=True)
        shape = (len(self.image_ids), *shape)
        self.folds = np.full(len(self.image_ids), -1, dtype=np.int64)
        self.finished_folds = set()
        self.temporary = self.path.parent / f".{self.path.name}.partial"
        if self.resume is not None and self._reopen(shape):
            return
        shutil.rmtree(self.temporary, ignore_errors=True)
        self.temporary.mkdir()
        if self.resume is not None:
            (self.temporary / PARTIAL_KEY).write_text(self.resume)
        self.array = np.lib.format.open_memmap(self.temporary / ARRAY, mode="w+", dtype=np.float16, shape=shape)
        self.written = np.zeros(len(self.image_ids), dtype=bool)

    def _reopen(self, shape):
        """Open the partial store of a killed run, if it was made for the same ids, shape and key."""
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
        save_npz(self.temporary / PARTIAL_PROGRESS, folds=np.where(self.written, self.folds, -1),
                 finished=np.array(sorted(self.finished_folds), dtype=np.int64))

    def write(self, image_ids, outputs, fold=0):
        """Store ``outputs`` (batch, size, size, classes), the predictions of ``image_ids`` made by ``fold``."""
        outputs = np.asarray(outputs)
        if len(outputs) != len(image_ids) or outputs.shape[1:] != self.array.shape[1:]:
            raise SeglibError(f"{self.path}: {len(image_ids)} ids with outputs {outputs.shape}, "
                              f"expected (n, {', '.join(map(str, self.array.shape[1:]))})")
        unknown = [image_id for image_id in image_ids if str(image_id) not in self.row_of]
        if unknown:
            raise SeglibError(f"{self.path}: id {unknown[0]!r} is not one of the store's ids")
        rows = [self.row_of[str(image_id)] for image_id in image_ids]
        twice = [self.image_ids[row] for row in rows if self.written[row]]
        if twice:
            raise SeglibError(f"{self.path}: id {twice[0]!r} written twice (folds must not overlap)")
        self.array[rows] = outputs.astype(np.float16)
        self.folds[rows] = fold
        self.written[rows] = True

    def close(self):
        """Check that every id was written, then move the store into place."""
        if not self.written.all():
            missing = self.image_ids[int(np.argmin(self.written))]
            raise SeglibError(f"{self.path}: {int((~self.written).sum())} id(s) have no prediction, e.g. {missing!r}")
        self.array.flush()
        del self.array
        for resume_file in (PARTIAL_KEY, PARTIAL_PROGRESS):
            (self.temporary / resume_file).unlink(missing_ok=True)
        pd.DataFrame({"id": self.image_ids, "fold": self.folds}).to_csv(self.temporary / MANIFEST, index=False)
        # os.replace cannot overwrite a folder: move an older store aside first.
        old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(self.temporary, self.path)
        shutil.rmtree(old, ignore_errors=True)
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
            # After an error the partial store goes, unless it is kept for a resume.
            if self.temporary.exists() and (self.resume is None or error_type is None):
                self.discard()


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
            raise SeglibError(f"{self.path}: the prediction store cannot be read ({error}); delete it and re-run "
                              "the notebook that writes it (03 for the out-of-fold store)") from None
        if list(manifest.columns) != ["id", "fold"] or len(manifest) != len(self.probabilities):
            raise SeglibError(f"{manifest_path}: expected columns id, fold and {len(self.probabilities)} rows, "
                              f"got {list(manifest.columns)} and {len(manifest)} rows")
        self.ids = manifest["id"].tolist()
        self.folds = manifest["fold"].to_numpy()

    def __len__(self):
        return len(self.ids)

    def read(self, rows):
        """The probabilities of ``rows`` (row indices), read from the file: touched pages of the memory map stay
        in the process, so a pass over 100,064 Carvana predictions would grow it by the store's size."""
        row_shape, dtype = self.probabilities.shape[1:], self.probabilities.dtype
        row_bytes = int(np.prod(row_shape)) * dtype.itemsize
        outputs = np.empty((len(rows), *row_shape), dtype=dtype)
        with open(self.path / ARRAY, "rb") as handle:
            for index, row in enumerate(rows):
                if not 0 <= row < len(self):
                    raise IndexError(f"{self.path}: row {row} is outside the store's {len(self)} rows")
                handle.seek(self.probabilities.offset + int(row) * row_bytes)
                if handle.readinto(memoryview(outputs[index]).cast("B")) != row_bytes:
                    raise SeglibError(f"{self.path / ARRAY} is shorter than its header says (row {row})")
        return outputs


def average_stores(paths, output_path, chunk_size=256):
    """Average stores of the same ids (an ensemble of runs) into a new store, chunk by chunk, and return its path;
    its folds are those of the first store."""
    stores = [Predictions(path) for path in paths]
    if not stores:
        raise SeglibError("average_stores needs at least one store, got none")
    first = stores[0]
    for other in stores[1:]:
        if other.ids != first.ids or other.probabilities.shape != first.probabilities.shape:
            raise SeglibError(f"{other.path} does not hold the same ids and shapes as {first.path}")
    with PredictionWriter(output_path, first.ids, first.probabilities.shape[1:]) as writer:
        for start in range(0, len(first), chunk_size):
            stop = min(start + chunk_size, len(first))
            mean = np.mean([store.probabilities[start:stop].astype(np.float32) for store in stores], axis=0)
            for fold in np.unique(first.folds[start:stop]):
                rows = np.flatnonzero(first.folds[start:stop] == fold)
                writer.write([first.ids[start + row] for row in rows], mean[rows], fold=int(fold))
    return Path(output_path)
