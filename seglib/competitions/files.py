"""Read a competition's files the same way whether they are extracted or still in Kaggle's zips.

Colab and laptop users get a competition from the Kaggle CLI as one ``<slug>.zip`` (the "bundle") holding its
files, some of them zips again (``train.zip``, ``test.zip``, ``train_masks.csv.zip``); others unzip the bundle and
keep the inner zips. Extracting 100k images costs minutes and disk, so members are read in place at every level.
A path is always named as if extracted (``train/images/<id>.png``); this class finds it in ``train/`` or in
``train.zip`` (whose members may or may not repeat the ``train/`` prefix), each either on disk or in the bundle.
"""

import io
import logging
import struct
import threading
import zipfile
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


class _Window(io.RawIOBase):
    """A byte range of a file as a seekable file: an uncompressed zip stored inside the bundle, opened in place
    with O(1) seeks (zipfile's own member files re-read from the start on every backward seek before Python 3.12,
    which makes random access to 100k images crawl)."""

    def __init__(self, path, start, length):
        self._file, self._start, self._length, self._position = open(path, "rb"), start, length, 0

    def seekable(self):
        return True

    def readable(self):
        return True

    def tell(self):
        return self._position

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer):
        self._file.seek(self._start + self._position)
        count = self._file.readinto(memoryview(buffer)[: max(0, self._length - self._position)])
        self._position += count
        return count

    def close(self):
        self._file.close()
        super().close()


def _open_zip(source, name):
    """``zipfile.ZipFile`` over a path or file object, with a ValueError naming ``name`` if it is no zip."""
    try:
        return zipfile.ZipFile(source)
    except zipfile.BadZipFile as error:
        raise ValueError(f"{name}: not a readable zip file ({error})") from None


class CompetitionFiles:
    """The files of one competition folder, extracted or zipped.

    Args:
        root: the competition folder (e.g. ``/kaggle/input/tgs-salt-identification-challenge``).
        bundle: the file name of the Kaggle CLI download in ``root`` (``<slug>.zip``), read in place if present.
    """

    def __init__(self, root, bundle=None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"competition folder not found: {self.root}")
        self._archives = {}
        self._lock = threading.Lock()
        self._bundle_path = self.root / bundle if bundle and (self.root / bundle).is_file() else None
        self._bundle = _open_zip(self._bundle_path, self._bundle_path) if self._bundle_path else None
        self._bundled = {info.filename: info for info in self._bundle.infolist()} if self._bundle else {}

    def _is_top_file(self, name):
        """Whether ``name`` (as if extracted) is a file on disk or in the bundle."""
        return (self.root / name).is_file() or name in self._bundled

    def _open_top_file(self, name):
        """A binary file object of ``name``: on disk, else in the bundle (an uncompressed member as a window on
        the bundle's bytes)."""
        if (self.root / name).is_file():
            return open(self.root / name, "rb")
        info = self._bundled[name]
        if info.compress_type != zipfile.ZIP_STORED:
            if info.file_size > 2**30:
                log.warning("%s is compressed inside %s: reading its members in place is slow; unzip %s once",
                            name, self._bundle_path.name, self._bundle_path.name)
            return self._bundle.open(info)
        with open(self._bundle_path, "rb") as handle:
            handle.seek(info.header_offset)
            header = handle.read(30)
        # The local file header: 30 bytes, then the name and the extra field, whose lengths are at bytes 26-29.
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_length + extra_length
        return io.BufferedReader(_Window(self._bundle_path, start, info.file_size))

    def __repr__(self):
        return f"CompetitionFiles({str(self.root)!r})"

    def _archive(self, top):
        """The zip standing in for folder ``top`` (``train`` -> ``train.zip``), indexed, or None."""
        with self._lock:
            if top not in self._archives:
                self._archives[top] = self._open_archive(top)
            return self._archives[top]

    def _open_archive(self, top):
        name = f"{top}.zip"
        if self._is_top_file(name):
            archive = _open_zip(self._open_top_file(name), self.root / name)
        elif any(member.startswith(f"{top}/") for member in self._bundled):
            archive = self._bundle  # a bundle holding the folder itself
        else:
            return None
        members = {}
        for info in archive.infolist():
            if info.is_dir():
                continue
            inner = info.filename.replace("\\", "/")
            if archive is self._bundle and not inner.startswith(f"{top}/"):
                continue
            # Kaggle's train.zip holds "images/..." but re-zipped copies often hold "train/images/...".
            relative = inner[len(top) + 1:] if inner.startswith(f"{top}/") else inner
            members[f"{top}/{relative}"] = info.filename
        return archive, members

    def exists(self, relative_path):
        """Whether ``relative_path`` (as if extracted) is present, on disk or in its zip."""
        relative_path = str(relative_path)
        if self._is_top_file(relative_path):
            return True
        top = relative_path.split("/", 1)[0]
        archive = self._archive(top) if "/" in relative_path else None
        return archive is not None and relative_path in archive[1]

    def read_bytes(self, relative_path):
        """The bytes of ``relative_path``, from disk or from its zip."""
        relative_path = str(relative_path)
        if self._is_top_file(relative_path):
            with self._open_top_file(relative_path) as handle:
                return handle.read()
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
        if self._is_top_file(name):
            source = io.BytesIO(self.read_bytes(name))
        elif self._is_top_file(f"{name}.zip"):
            with _open_zip(io.BytesIO(self.read_bytes(f"{name}.zip")), self.root / f"{name}.zip") as archive:
                source = io.BytesIO(archive.read(archive.namelist()[0]))
        else:
            where = f"{self.root}" + (f" or {self._bundle_path.name}" if self._bundle_path else "")
            raise FileNotFoundError(f"{name} is neither in {where} nor zipped as {name}.zip")
        table = pd.read_csv(source, **read_csv_options)
        missing = [column for column in required_columns if column not in table.columns]
        if missing:
            raise ValueError(f"{self.root / name}: missing column(s) {missing}; found {list(table.columns)}")
        return table
