"""Small deterministic synthetic samples of each competition, in Kaggle's exact file layout.

The sample lets every notebook and test run end to end without a Kaggle download. Each generator writes one
competition's folder from a single seed; ``generate`` stages it beside the target and swaps it in, so an
interrupted run never leaves a half-written sample behind.

    python -m seglib.sample tgs            # rewrites <repo>/data/sample/tgs
"""

import contextlib
import csv
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import importlib

from seglib.env import SAMPLE_ROOT

# Competition name -> the module whose ``generate(out_dir, seed)`` writes its sample (imported when used).
GENERATORS = {"tgs": "seglib.sample.tgs", "carvana": "seglib.sample.carvana", "handbone": "seglib.sample.handbone"}
DEFAULT_SEED = 2018


def write_csv(path, header, rows):
    """Write a CSV as Kaggle's are: Unix line ends, no quoting of the space-separated RLE cells."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def hex_ids(rng, count, digits):
    """``count`` unique lowercase hex ids of ``digits`` characters, like Kaggle's (TGS "575d24d81d", Carvana
    cars "00087a6bd4dc")."""
    ids, seen = [], set()
    while len(ids) < count:
        identifier = f"{int(rng.integers(0, 16**digits)):0{digits}x}"
        if identifier not in seen:
            seen.add(identifier)
            ids.append(identifier)
    return ids


def default_out_dir(competition):
    """The committed sample folder of ``competition``: ``<repo>/data/sample/<competition>``."""
    return SAMPLE_ROOT / competition


@contextlib.contextmanager
def replaced_dir(target):
    """Yield an empty staging folder beside ``target``; swap it in for ``target`` only if the block finishes."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
    try:
        yield staging
        # A directory cannot be replaced in one rename, so the old one is moved aside first and deleted last:
        # at every moment either the old or the new complete sample sits at ``target``.
        retired = staging.with_name(staging.name.replace(".partial-", ".old-"))
        if target.exists():
            os.rename(target, retired)
        try:
            os.rename(staging, target)
        except OSError:
            if retired.exists():
                os.rename(retired, target)
            raise
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def generate(competition, out_dir=None, seed=DEFAULT_SEED):
    """(Re)write the synthetic sample of ``competition`` into ``out_dir`` and return its path."""
    if competition not in GENERATORS:
        raise ValueError(f"No sample generator for {competition!r}; known: {', '.join(sorted(GENERATORS))}")
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(competition)
    with replaced_dir(out_dir) as staging:
        importlib.import_module(GENERATORS[competition]).generate(staging, seed=seed)
    return out_dir


def kaggle_zip_layout(source_dir, out_dir):
    """Copy an extracted competition folder into Kaggle's download layout: each top-level folder becomes
    ``<folder>.zip`` whose members are relative to that folder (``train.zip`` holds ``images/...``, as Kaggle's
    does); top-level files are copied as they are. Zip entries get a fixed date so the zips are reproducible.

    Returns:
        ``out_dir`` as a Path.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    with replaced_dir(out_dir) as staging:
        for entry in sorted(source_dir.iterdir()):
            if entry.is_file():
                shutil.copyfile(entry, staging / entry.name)
                continue
            with zipfile.ZipFile(staging / f"{entry.name}.zip", "w", zipfile.ZIP_STORED) as archive:
                for path in sorted(entry.rglob("*")):
                    if path.is_file():
                        member = zipfile.ZipInfo(path.relative_to(entry).as_posix(), date_time=(2018, 7, 19, 0, 0, 0))
                        archive.writestr(member, path.read_bytes())
    return out_dir


def kaggle_cli_layout(source_dir, out_dir, slug, compression=zipfile.ZIP_DEFLATED):
    """Copy an extracted competition folder into what ``kaggle competitions download -c <slug> -p out_dir``
    writes: one ``out_dir/<slug>.zip`` holding Kaggle's download layout (``train.zip``, ``test.zip``, CSVs).

    Args:
        compression: how the bundle stores its members (zipfile.ZIP_DEFLATED or ZIP_STORED).

    Returns:
        ``out_dir`` as a Path.
    """
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as staging, replaced_dir(out_dir) as target:
        layout = kaggle_zip_layout(source_dir, Path(staging) / "layout")
        with zipfile.ZipFile(target / f"{slug}.zip", "w", compression) as bundle:
            for path in sorted(layout.iterdir()):
                bundle.writestr(zipfile.ZipInfo(path.name, date_time=(2018, 7, 19, 0, 0, 0)), path.read_bytes(),
                                compress_type=compression)
    return out_dir
