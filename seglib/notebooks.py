"""Run the five notebooks in order with papermill, into RUN_DIR/notebooks beside the artifacts they produce (a
run folder is a complete record), and hand them out: copies to work in, and a folder ready to become a Kaggle
dataset for kernels without internet.
"""

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import seglib
from seglib.env import NOTEBOOK_DIR, PACKAGE_DIR, RUN_DIR_VARIABLE, resolve_run_dir
from seglib.errors import SeglibError

log = logging.getLogger(__name__)

NOTEBOOKS = ("01_eda.ipynb", "02_mean_std.ipynb", "03_train_unet.ipynb", "04_threshold_sweep.ipynb",
             "05_submission.ipynb")


def _notebook_paths(notebooks):
    """The packaged notebooks by file name, with an error naming what is unknown or missing."""
    unknown = [name for name in notebooks if name not in NOTEBOOKS]
    if unknown:
        raise SeglibError(f"unknown notebook(s) {unknown}; the notebooks are {list(NOTEBOOKS)}")
    missing = [name for name in notebooks if not (NOTEBOOK_DIR / name).is_file()]
    if missing:
        raise FileNotFoundError(f"notebook(s) {missing} not found in {NOTEBOOK_DIR}: a broken install of seglib")
    return [NOTEBOOK_DIR / name for name in notebooks]


def run_notebooks(run_dir=None, parameters=None, notebooks=NOTEBOOKS, output_dir=None, progress=True):
    """Execute ``notebooks`` in order with papermill ``parameters`` (e.g. {"EPOCHS": 5}) and return the run folder,
    which reaches them as $SEGLIB_RUN_DIR (their RUN_DIR = None). The kernels start in the working directory, so a
    relative DATA_DIR means what it does on the command line. The executed notebooks go to ``output_dir``, default
    RUN_DIR/notebooks (``NOTEBOOK_DIR`` refreshes the committed ones)."""
    try:
        import papermill
    except ImportError:
        raise ImportError("running the notebooks needs papermill: pip install 'seglib[jupyter]'") from None
    paths = _notebook_paths(notebooks)
    run_dir = resolve_run_dir(run_dir)
    output_dir = Path(output_dir) if output_dir is not None else run_dir / "notebooks"
    output_dir.mkdir(parents=True, exist_ok=True)
    with mock.patch.dict(os.environ, {RUN_DIR_VARIABLE: str(run_dir)}):  # the kernels inherit it
        for path in paths:
            log.info("--- %s", path.name)
            with _kernel_manager() as manager:
                papermill.execute_notebook(path, output_dir / path.name, parameters=parameters or {},
                                           cwd=os.getcwd(), progress_bar=progress, kernel_name="python3", km=manager)
    return run_dir


@contextlib.contextmanager
def _kernel_manager():
    """A kernel that listens on Unix sockets in a folder of its own (None, papermill's default TCP, elsewhere).
    jupyter_client picks free TCP ports, which the kernel binds only seconds later; meanwhile another run's
    connections may take one, and the kernel dies ("Address already in use"): seen with four runs started at once."""
    if os.name != "posix":
        yield None
        return
    from jupyter_client import KernelManager

    with tempfile.TemporaryDirectory(prefix="seglib-kernel-") as sockets:
        manager = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "kernel"))
        try:
            yield manager
        finally:  # a manager passed in is the caller's to shut down
            if manager.has_kernel:
                manager.shutdown_kernel(now=True)


def copy_notebooks(destination):
    """Write the five notebooks into ``destination`` (created) and return the paths written; existing copies are
    kept, so a user's edited notebook is never overwritten."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    for source in _notebook_paths(NOTEBOOKS):
        if not (destination / source.name).exists():
            written.append(Path(shutil.copyfile(source, destination / source.name)))
    return written


def build_wheel(destination):
    """Build seglib's wheel (with its notebooks and samples) from the source checkout it runs from."""
    checkout = PACKAGE_DIR.parent
    if not (checkout / "pyproject.toml").is_file():
        raise FileNotFoundError(f"building the wheel needs seglib's source checkout, and {PACKAGE_DIR} is an "
                                "installed copy: pass the wheel you installed instead (--wheel)")
    with tempfile.TemporaryDirectory() as build:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", build,
                        str(checkout)], check=True)
        (wheel,) = Path(build).glob("seglib-*.whl")
        return Path(shutil.copy(wheel, destination))


def kaggle_dataset(destination, wheel=None, owner=None):
    """Write a folder for ``kaggle datasets create -p destination`` and return the wheel's path in it.

    It holds seglib's ``wheel`` (None: built from the checkout), the five notebooks and dataset-metadata.json
    naming ``owner`` (None: $KAGGLE_USERNAME). Attached to a kernel, it lets the notebooks' setup cell install
    seglib with internet off (``pip install --no-index --no-deps``), leaving Kaggle's own packages untouched.
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    wheel = Path(shutil.copy(wheel, destination)) if wheel else build_wheel(destination)
    copy_notebooks(destination / "notebooks")
    owner = owner or os.environ.get("KAGGLE_USERNAME") or "YOUR-KAGGLE-USERNAME"
    metadata = {"title": "seglib", "id": f"{owner}/seglib", "licenses": [{"name": "other"}],
                "description": f"seglib {seglib.__version__}: {wheel.name} and its five notebooks"}
    (destination / "dataset-metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return wheel
