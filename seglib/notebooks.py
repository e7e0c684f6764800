"""Run the five notebooks in order with papermill (the main job), and hand them out: copies to work in, and a
folder ready to become a Kaggle dataset for kernels without internet.

Each executed notebook is written into RUN_DIR/notebooks, next to the artifacts it produced, so a run folder
is a complete record: notebooks with their outputs, plots, stats, model, policy and submission.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import seglib
from seglib.env import NOTEBOOK_DIR, PACKAGE_DIR, RUN_DIR_VARIABLE, resolve_run_dir

NOTEBOOKS = (
    "01_eda.ipynb",
    "02_mean_std.ipynb",
    "03_train_unet.ipynb",
    "04_threshold_sweep.ipynb",
    "05_submission.ipynb",
)


@contextlib.contextmanager
def _environment(name, value):
    """Set one environment variable for the kernels started inside the block."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


def _notebook_paths(notebooks):
    """The packaged notebooks by file name, with an error naming what is unknown or missing."""
    unknown = [name for name in notebooks if name not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"unknown notebook(s) {unknown}; the notebooks are {list(NOTEBOOKS)}")
    missing = [name for name in notebooks if not (NOTEBOOK_DIR / name).is_file()]
    if missing:
        raise FileNotFoundError(f"notebook(s) {missing} not found in {NOTEBOOK_DIR}: a broken install of seglib")
    return [NOTEBOOK_DIR / name for name in notebooks]


def run_notebooks(run_dir=None, parameters=None, notebooks=NOTEBOOKS, output_dir=None, progress=True):
    """Execute ``notebooks`` in order and return the run folder.

    The run folder reaches the notebooks through $SEGLIB_RUN_DIR (their RUN_DIR = None default), so only the
    parameters you give are injected. The kernels start in the working directory, so a relative DATA_DIR means
    what it means on the command line.

    Args:
        run_dir: the run folder (see ``seglib.env.resolve_run_dir``).
        parameters: papermill parameters for every notebook, e.g. {"EPOCHS": 5}.
        notebooks: which notebooks to run, by file name.
        output_dir: where the executed notebooks go; default RUN_DIR/notebooks. Pass ``NOTEBOOK_DIR`` (and no
            parameters) to refresh the committed notebooks' outputs, which nbval compares against.
        progress: papermill's per-cell progress bar.
    """
    try:
        import papermill
    except ImportError:
        raise ImportError("running the notebooks needs papermill: pip install 'seglib[jupyter]'") from None
    paths = _notebook_paths(notebooks)
    run_dir = resolve_run_dir(run_dir)
    output_dir = Path(output_dir) if output_dir is not None else run_dir / "notebooks"
    output_dir.mkdir(parents=True, exist_ok=True)
    with _environment(RUN_DIR_VARIABLE, str(run_dir)):
        for path in paths:
            print(f"--- {path.name}", flush=True)
            papermill.execute_notebook(path, output_dir / path.name, parameters=parameters or {}, cwd=os.getcwd(),
                                       progress_bar=progress, kernel_name="python3")
    return run_dir


def copy_notebooks(destination):
    """Write the five notebooks into ``destination`` (created) and return their paths; existing copies are kept,
    so a user's edited notebook is never overwritten."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    for source in _notebook_paths(NOTEBOOKS):
        target = destination / source.name
        if not target.exists():
            shutil.copyfile(source, target)
            written.append(target)
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
    """Write a folder ready for ``kaggle datasets create -p destination``: seglib's wheel, the five notebooks
    and ``dataset-metadata.json``. Attached to a kernel, it lets the notebooks' setup cell install seglib with
    internet off (``pip install --no-index --no-deps``), leaving Kaggle's own packages untouched.

    Args:
        wheel: a built seglib wheel; None builds one from the source checkout.
        owner: the Kaggle user name in the dataset id; None reads $KAGGLE_USERNAME.
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
