"""Run the five notebooks in order with papermill: the main job of the repo.

Each executed notebook is written into RUN_DIR/notebooks, next to the artifacts it produced, so a run folder
is a complete record: notebooks with their outputs, plots, stats, model, policy and submission.
"""

import contextlib
import os
from pathlib import Path

import papermill

from seglib.env import REPO_ROOT, RUN_DIR_VARIABLE, resolve_run_dir

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
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


def run_notebooks(run_dir=None, parameters=None, notebooks=NOTEBOOKS, output_dir=None, progress=True):
    """Execute ``notebooks`` in order and return the run folder.

    The run folder reaches the notebooks through $SEGLIB_RUN_DIR (their RUN_DIR = None default), so only the
    parameters you give are injected.

    Args:
        run_dir: the run folder (see ``seglib.env.resolve_run_dir``).
        parameters: papermill parameters for every notebook, e.g. {"EPOCHS": 5}.
        notebooks: which notebooks to run, by file name.
        output_dir: where the executed notebooks go; default RUN_DIR/notebooks. Pass ``NOTEBOOK_DIR`` (and no
            parameters) to refresh the committed notebooks' outputs, which nbval compares against.
        progress: papermill's per-cell progress bar.
    """
    run_dir = resolve_run_dir(run_dir)
    output_dir = Path(output_dir) if output_dir is not None else run_dir / "notebooks"
    output_dir.mkdir(parents=True, exist_ok=True)
    unknown = [name for name in notebooks if not (NOTEBOOK_DIR / name).is_file()]
    if unknown:
        raise ValueError(f"unknown notebook(s) {unknown}; the notebooks are {list(NOTEBOOKS)}")
    with _environment(RUN_DIR_VARIABLE, str(run_dir)):
        for name in notebooks:
            print(f"--- {name}", flush=True)
            papermill.execute_notebook(NOTEBOOK_DIR / name, output_dir / name, parameters=parameters or {},
                                       cwd=NOTEBOOK_DIR, progress_bar=progress, kernel_name="python3")
    return run_dir
