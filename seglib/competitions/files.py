"""Read a competition's files the same way whether they are extracted or still in Kaggle's zips.

The Kaggle CLI downloads a competition as one ``<slug>.zip`` (the "bundle") holding its files, some zips again
(``train.zip``, ``train_masks.csv.zip``). Extracting 100k images costs minutes and disk, so members are read in
place at every level. A path is named as if extracted (``train/images/<id>.png``) and found in ``train/`` or in
``train.zip`` (whose members may or may not repeat the ``train/`` prefix), on disk or in the bundle.
"""

import io
import logging
import struct
import threading
import zipfile
import zlib
from pathlib import Path

import pandas as pd

from seglib.errors import SeglibError

log = logging.getLogger(__name__)


class _Window(io.RawIOBase):
    """A byte range of a file (a zip stored in the bundle) as a file with O(1) seeks: before Python 3.12 a
    zipfile member re-reads from its start on every backward seek, and random access to 100k images crawls."""

    def __init__(self, path, start, length):
        self._file, self._start, self._length, self._position = open(path, "rb"), start, length, 0

    def seekable(self):
        return True

    def readable(self):
        return True

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
    try:
        return zipfile.ZipFile(source)
    except zipfile.BadZipFile as error:
        raise SeglibError(f"{name}: not a readable zip file ({error})") from None


class CompetitionFiles:
    """The files of competition folder ``root``, extracted or zipped, and its Kaggle CLI download ``bundle``
    (``<slug>.zip``) if present. ``paths_read``: the paths read so far (the check counts them)."""

    def __init__(self, root, bundle=None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"competition folder not found: {self.root}")
        self._archives = {}
        self._lock = threading.Lock()
        self._bundle_path = self.root / bundle if bundle and (self.root / bundle).is_file() else None
        self._bundle = _open_zip(self._bundle_path, bundle) if self._bundle_path else None
        self._bundled = {info.filename: info for info in self._bundle.infolist()} if self._bundle else {}
        self.paths_read = set()

    def _is_top_file(self, name):
        return (self.root / name).is_file() or name in self._bundled

    def _open_top_file(self, name):  # on disk, else in the bundle
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

    def _archive(self, top):
        """The zip standing in for folder ``top`` (``train`` -> ``train.zip``) and its {path: member}, or None."""
        with self._lock:
            if top not in self._archives:
                self._archives[top] = self._open_archive(top)
            return self._archives[top]

    def _open_archive(self, top):
        if self._is_top_file(f"{top}.zip"):
            archive = _open_zip(self._open_top_file(f"{top}.zip"), f"{top}.zip")
        elif any(member.startswith(f"{top}/") for member in self._bundled):
            archive = self._bundle  # a bundle holding the folder itself
        else:
            return None
        members = {}
        for info in archive.infolist():
            inner = info.filename.replace("\\", "/")
            if info.is_dir() or (archive is self._bundle and not inner.startswith(f"{top}/")):
                continue
            # Kaggle's train.zip holds "images/..." but re-zipped copies often hold "train/images/...".
            members[f"{top}/{inner.removeprefix(f'{top}/')}"] = info.filename
        return archive, members

    def _members(self, relative_path):  # the archive holding ``relative_path`` and its {path: member}, or None
        return self._archive(relative_path.split("/", 1)[0]) if "/" in relative_path else None

    def exists(self, relative_path):
        """Whether ``relative_path`` (as if extracted) is present, on disk or in its zip."""
        relative_path = str(relative_path)
        return self._is_top_file(relative_path) or relative_path in (self._members(relative_path) or (None, {}))[1]

    def has_table(self, name):
        """Whether CSV ``name`` is present, as is or zipped as ``name.zip``."""
        return self.exists(name) or self.exists(f"{name}.zip")

    def read_bytes(self, relative_path):
        """The bytes of ``relative_path``, from disk or from its zip."""
        relative_path = str(relative_path)
        if self._is_top_file(relative_path):
            with self._open_top_file(relative_path) as handle:
                data = handle.read()
        else:
            archive = self._members(relative_path)
            if archive is None or relative_path not in archive[1]:
                top = relative_path.split("/", 1)[0]
                raise FileNotFoundError(f"{relative_path} is neither in {self.root} nor in {self.root / top}.zip")
            try:
                # ZipFile serialises reads of one archive internally, so parallel readers may share it.
                data = archive[0].read(archive[1][relative_path])
            except (zipfile.BadZipFile, zlib.error, EOFError) as error:
                raise SeglibError(f"{relative_path}: damaged inside its zip ({error})") from None
        self.paths_read.add(relative_path)
        return data

    def list_folder(self, relative_folder, suffix, tree=False):
        """Sorted stems of the files in ``relative_folder`` (as if extracted) that end with ``suffix``; with
        ``tree``, at any depth, as paths relative to the folder (``ID001/image1661130828152_R`` under
        ``train/DCM``)."""
        relative_folder = str(relative_folder).strip("/")
        folder = self.root / relative_folder
        if folder.is_dir():
            paths = (path for path in folder.rglob(f"*{suffix}") if path.is_file()) if tree else folder.iterdir()
            names = [path.relative_to(folder).as_posix() for path in paths]
        else:
            archive = self._archive(relative_folder.split("/", 1)[0])
            prefix = relative_folder + "/"
            names = [name[len(prefix):] for name in (archive[1] if archive else ()) if name.startswith(prefix)]
        return sorted(name[: len(name) - len(suffix)] for name in names
                      if name.endswith(suffix) and (tree or "/" not in name))

    def has_folder(self, relative_folder):
        relative_folder = str(relative_folder).strip("/")
        return (self.root / relative_folder).is_dir() or bool(self.list_folder(relative_folder, ""))

    def read_csv(self, name, required_columns=(), **read_csv_options):
        """Read ``name`` (e.g. ``train.csv``) or its zipped form ``name.zip``, checking its columns."""
        if self._is_top_file(name):
            source = io.BytesIO(self.read_bytes(name))
        elif self._is_top_file(f"{name}.zip"):
            with _open_zip(io.BytesIO(self.read_bytes(f"{name}.zip")), f"{name}.zip") as archive:
                source = io.BytesIO(archive.read(archive.namelist()[0]))
        else:
            where = f"{self.root}" + (f" or {self._bundle_path.name}" if self._bundle_path else "")
            raise FileNotFoundError(f"{name} is neither in {where} nor zipped as {name}.zip")
        try:
            table = pd.read_csv(source, **read_csv_options)
        except ValueError as error:  # pandas' ParserError, EmptyDataError, UnicodeDecodeError
            raise SeglibError(f"{name}: not a readable CSV ({error})") from None
        missing = [column for column in required_columns if column not in table.columns]
        if missing:
            raise SeglibError(f"{name}: missing column(s) {missing}; found {list(table.columns)}")
        return table
