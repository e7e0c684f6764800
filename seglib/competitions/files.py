"""Read a competition's files the same way whether they are extracted or still in Kaggle's zips.

Kaggle ships a competition as zips under ``/kaggle/input/<competition>`` (``train.zip``, ``test.zip``,
sometimes ``train.csv.zip``); Colab and laptop users download the same zips. Extracting 100k images costs
minutes and disk, so members are read in place. A path is always named as if extracted
(``train/images/<id>.png``); this class finds it in ``train/`` or in ``train.zip`` (whose members may or may
not repeat the ``train/`` prefix).
"""

import io
import threading
import zipfile
from pathlib import Path

import pandas as pd


class CompetitionFiles:
    """The files of one competition folder, extracted or zipped.

    Args:
        root: the competition folder (e.g. ``/kaggle/input/tgs-salt-identification-challenge``).
    """

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"competition folder not found: {self.root}")
        self._archives = {}
        self._lock = threading.Lock()

    def __repr__(self):
        return f"CompetitionFiles({str(self.root)!r})"

    def _archive(self, top):
        """The zip standing in for folder ``top`` (``train`` -> ``train.zip``), indexed, or None."""
        with self._lock:
            if top not in self._archives:
                self._archives[top] = self._open_archive(top)
            return self._archives[top]

    def _open_archive(self, top):
        zip_path = self.root / f"{top}.zip"
        if not zip_path.is_file():
            return None
        try:
            archive = zipfile.ZipFile(zip_path)
        except zipfile.BadZipFile as error:
            raise ValueError(f"{zip_path}: not a readable zip file ({error})") from None
        members = {}
        for info in archive.infolist():
            if info.is_dir():
                continue
            inner = info.filename.replace("\\", "/")
            # Kaggle's train.zip holds "images/..." but re-zipped copies often hold "train/images/...".
            relative = inner[len(top) + 1:] if inner.startswith(f"{top}/") else inner
            members[f"{top}/{relative}"] = info.filename
        return archive, members

    def exists(self, relative_path):
        """Whether ``relative_path`` (as if extracted) is present, on disk or in its zip."""
        relative_path = str(relative_path)
        if (self.root / relative_path).is_file():
            return True
        top = relative_path.split("/", 1)[0]
        archive = self._archive(top) if "/" in relative_path else None
        return archive is not None and relative_path in archive[1]

    def read_bytes(self, relative_path):
        """The bytes of ``relative_path``, from disk or from its zip."""
        relative_path = str(relative_path)
        on_disk = self.root / relative_path
        if on_disk.is_file():
            return on_disk.read_bytes()
        top = relative_path.split("/", 1)[0]
        archive = self._archive(top) if "/" in relative_path else None
        if archive is None or relative_path not in archive[1]:
            raise FileNotFoundError(f"{relative_path} is neither in {self.root} nor in {self.root / top}.zip")
        zip_file, members = archive
        # ZipFile serialises reads of one archive internally, so tf.data's parallel readers may share it.
        return zip_file.read(members[relative_path])

    def list_folder(self, relative_folder, suffix):
        """Sorted stems of the files in ``relative_folder`` (as if extracted) that end with ``suffix``."""
        relative_folder = str(relative_folder).strip("/")
        folder = self.root / relative_folder
        if folder.is_dir():
            return sorted(path.name[: -len(suffix)] for path in folder.iterdir() if path.name.endswith(suffix))
        archive = self._archive(relative_folder.split("/", 1)[0])
        if archive is None:
            return []
        prefix = relative_folder + "/"
        return sorted(
            name[len(prefix): -len(suffix)]
            for name in archive[1]
            if name.startswith(prefix) and "/" not in name[len(prefix):] and name.endswith(suffix)
        )

    def list_tree(self, relative_folder, suffix):
        """Sorted paths, relative to ``relative_folder`` and without ``suffix``, of the files at any depth below
        it that end with ``suffix`` (e.g. ``ID001/image1661130828152_R`` under ``train/DCM``)."""
        relative_folder = str(relative_folder).strip("/")
        folder = self.root / relative_folder
        if folder.is_dir():
            paths = (path.relative_to(folder).as_posix() for path in folder.rglob(f"*{suffix}") if path.is_file())
            return sorted(path[: len(path) - len(suffix)] for path in paths)
        archive = self._archive(relative_folder.split("/", 1)[0])
        if archive is None:
            return []
        prefix = relative_folder + "/"
        return sorted(
            name[len(prefix): len(name) - len(suffix)]
            for name in archive[1]
            if name.startswith(prefix) and name.endswith(suffix)
        )

    def has_folder(self, relative_folder):
        """Whether the folder exists extracted or as a zip."""
        relative_folder = str(relative_folder).strip("/")
        return (self.root / relative_folder).is_dir() or bool(self.list_folder(relative_folder, ""))

    def read_csv(self, name, required_columns=(), **read_csv_options):
        """Read ``name`` (e.g. ``train.csv``) or its zipped form ``name.zip``, checking its columns."""
        path = self.root / name
        zipped = self.root / f"{name}.zip"
        if path.is_file():
            source = path
        elif zipped.is_file():
            with zipfile.ZipFile(zipped) as archive:
                source = io.BytesIO(archive.read(archive.namelist()[0]))
        else:
            raise FileNotFoundError(f"{name} is neither in {self.root} nor zipped as {zipped.name}")
        table = pd.read_csv(source, **read_csv_options)
        missing = [column for column in required_columns if column not in table.columns]
        if missing:
            raise ValueError(f"{self.root / name}: missing column(s) {missing}; found {list(table.columns)}")
        return table
