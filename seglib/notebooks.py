"""Run the five notebooks in order with papermill: the main job of the repo.

Each executed notebook is written into RUN_DIR/notebooks, next to the artifacts it produced, so a run folder
is a complete record: notebooks with their outputs, plots, stats, model, policy and submission.
"""

from pathlib import Path

import papermill

from seglib.env import REPO_ROOT, resolve_run_dir

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = (
    "01_eda.ipynb",
    "02_mean_std.ipynb",
    "03_train_unet.ipynb",
    "04_threshold_sweep.ipynb",
    "05_submission.ipynb",
)


def run_notebooks(run_dir=None, parameters=None, notebooks=NOTEBOOKS, progress=True):
    """Execute ``notebooks`` in order with ``parameters`` (plus RUN_DIR) and return the run folder.

    Args:
        run_dir: the run folder (see ``seglib.env.resolve_run_dir``).
        parameters: papermill parameters shared by every notebook, e.g. {"EPOCHS": 5}.
        notebooks: which notebooks to run, by file name.
        progress: papermill's per-cell progress bar.
    """
    run_dir = resolve_run_dir(run_dir)
    parameters = {**(parameters or {}), "RUN_DIR": str(run_dir)}
    unknown = [name for name in notebooks if not (NOTEBOOK_DIR / name).is_file()]
    if unknown:
        raise ValueError(f"unknown notebook(s) {unknown}; the notebooks are {list(NOTEBOOKS)}")
    (run_dir / "notebooks").mkdir(exist_ok=True)
    for name in notebooks:
        print(f"--- {name}", flush=True)
        papermill.execute_notebook(
            NOTEBOOK_DIR / name,
            Path(run_dir) / "notebooks" / name,
            parameters=parameters,
            cwd=NOTEBOOK_DIR,
            progress_bar=progress,
            kernel_name="python3",
        )
    return run_dir
