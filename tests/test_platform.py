"""Kaggle and Colab for real: seglib's wheel in a second environment holding the platforms' own package versions
(tests/platform/requirements.txt), and the five notebooks each run as its own Kaggle kernel on a fake /kaggle.

What a Kaggle user does, step by step (the README's Kaggle section is these steps):
1. ``python -m seglib kaggle-dataset DEST`` on their machine, ``kaggle datasets create -p DEST``;
2. a kernel per notebook, with the competition and that dataset attached (internet off: the setup cell installs
   the wheel with ``--no-index --no-deps``), and the outputs of the earlier kernels it needs attached as inputs;
3. the submission is notebook 05's ``/kaggle/working/submission.csv``.
Here the competition is attached in the Kaggle CLI download layout (one ``<slug>.zip`` holding zips), the harder
case of the reader; each kernel gets a fresh working folder, and seglib is uninstalled before every kernel so
that its setup cell must install it.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seglib import env
from seglib.sample import kaggle_cli_layout

pytestmark = pytest.mark.slow  # whole-run or multi-process tests: outside the `-m "not slow"` inner loop

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = Path(__file__).parent / "platform" / "requirements.txt"
SLUG = "tgs-salt-identification-challenge"
# Notebook 03 trains as briefly as the end-to-end test does: enough to beat the all-empty baseline (notebook 04
# asserts it).
TRAIN_PARAMETERS = {"EPOCHS": 30, "TRAIN_MINUTES": 3.0}
# Each kernel, the earlier kernels' outputs it attaches, and where (notebook 04's one folder deeper).
KERNELS = {
    "01_eda": {},
    "02_mean_std": {},
    "03_train_unet": {"02_mean_std": "seglib-02-mean-std"},
    "04_threshold_sweep": {"03_train_unet": "seglib-03-train-unet"},
    "05_submission": {"02_mean_std": "seglib-02-mean-std", "03_train_unet": "seglib-03-train-unet",
                      "04_threshold_sweep": "notebooks/seglib-04-threshold-sweep"},
}
OWN_OUTPUTS = {
    "01_eda": ["eda_coverage.csv", "plots/coverage_histogram.png"],
    "02_mean_std": ["mean_std.npz"],
    "03_train_unet": ["model.keras", "train_config.json", "oof_predictions/manifest.csv"],
    "04_threshold_sweep": ["policy.json", "threshold_sweep.csv"],
    "05_submission": ["submission.csv"],
}


def run(*command, **options):
    """Run a command; on failure show the end of what it printed."""
    completed = subprocess.run([str(part) for part in command], capture_output=True, text=True, **options)
    assert completed.returncode == 0, f"{command}\n{completed.stdout[-3000:]}\n{completed.stderr[-5000:]}"
    return completed.stdout


def platform_python():
    """The platform environment's python: built once per requirements file and Python, and kept in the user's
    cache so that later runs (and CI runs on the same machine) reuse it."""
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:12]
    cache = Path(os.environ.get("SEGLIB_PLATFORM_CACHE", Path.home() / ".cache" / "seglib")) / f"platform-{key}"
    python = cache / "bin" / "python"
    if not (cache / ".complete").is_file():
        shutil.rmtree(cache, ignore_errors=True)
        run(sys.executable, "-m", "venv", cache)
        run(python, "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS)
        (cache / ".complete").touch()
    return python


def installed(python):
    """{package name: version} of an environment."""
    listing = json.loads(run(python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"))
    return {item["name"].lower().replace("_", "-"): item["version"] for item in listing}


def tree_digest(folder):
    """A digest of every file's path and bytes below ``folder`` (following the attached inputs' links)."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """The Kaggle dataset built from this checkout (wheel, notebooks, metadata), and the platform environment
    with that wheel installed the way a Colab user would (pip, dependencies resolved)."""
    python = platform_python()
    subprocess.run([python, "-m", "pip", "uninstall", "--quiet", "--yes", "seglib"], capture_output=True)
    dataset = tmp_path_factory.mktemp("kaggle") / "seglib-dataset"
    run(sys.executable, "-m", "seglib", "kaggle-dataset", dataset, "--owner", "tester", cwd=REPO)
    (wheel,) = dataset.glob("seglib-*.whl")
    before = installed(python)
    run(python, "-m", "pip", "install", "--quiet", wheel)
    return {"python": python, "dataset": dataset, "before": before, "after": installed(python)}


def test_installing_seglib_changes_no_platform_package(platform):
    before, after = platform["before"], platform["after"]
    assert "seglib" not in before and "seglib" in after
    changed = {name: (before.get(name), version) for name, version in after.items() if before.get(name) != version}
    assert changed == {"seglib": (None, after["seglib"])}, changed
    for line in REQUIREMENTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            assert after[name.lower()] == version, line


def kernel_environment(root):
    """What a Kaggle kernel sees: its own root, no run folder of the test session's."""
    environment = {key: value for key, value in os.environ.items() if key != env.RUN_DIR_VARIABLE}
    return {**environment, env.KAGGLE_ROOT_VARIABLE: str(root), "KAGGLE_KERNEL_RUN_TYPE": "Batch",
            "TF_CPP_MIN_LOG_LEVEL": "3"}


def run_kernel(python, notebook, root, executed, parameters=()):
    """Run one notebook as a Kaggle kernel rooted at ``root`` (its input/ and working/ laid out by the caller)."""
    options = [part for name, value in parameters for part in ("-p", name, value)]
    return run(python, "-m", "papermill", notebook, executed, "--kernel", "python3", "--cwd", root / "working",
               "--no-progress-bar", *options, env=kernel_environment(root), timeout=900)


@pytest.fixture(scope="module")
def kernels(platform, tmp_path_factory):
    """The five notebooks, each its own kernel: fresh working folder, the earlier outputs attached as inputs."""
    python, dataset = platform["python"], platform["dataset"]
    base = dataset.parent
    competition = kaggle_cli_layout(env.SAMPLE_ROOT / "tgs", base / SLUG, SLUG)
    shared_inputs = {SLUG: competition, "seglib": dataset}
    digests = {name: tree_digest(path) for name, path in shared_inputs.items()}
    roots = {}
    for kernel, attached in KERNELS.items():
        root = roots[kernel] = base / f"kernel-{kernel}"
        (root / "working").mkdir(parents=True)
        links = {**shared_inputs, **{name: roots[earlier] / "working" for earlier, name in attached.items()}}
        for name, target in links.items():
            (root / "input" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "input" / name).symlink_to(target, target_is_directory=True)
        digests.update({earlier: tree_digest(roots[earlier] / "working") for earlier in attached})
        # A fresh kernel: seglib is not installed until its setup cell installs it from the attached dataset.
        run(python, "-m", "pip", "uninstall", "--quiet", "--yes", "seglib")
        parameters = TRAIN_PARAMETERS.items() if kernel == "03_train_unet" else ()
        run_kernel(python, dataset / "notebooks" / f"{kernel}.ipynb", root, base / f"{kernel}.ipynb",
                   [(name, str(value)) for name, value in parameters])
    inputs_after = {name: tree_digest(path) for name, path in shared_inputs.items()}
    inputs_after.update({kernel: tree_digest(roots[kernel] / "working") for kernel in digests if kernel in roots})
    return {"python": python, "roots": roots, "executed": base, "competition": competition, "dataset": dataset,
            "digests": digests, "digests_after": inputs_after}


def test_kaggle_dataset_holds_the_wheel_the_notebooks_and_metadata(kernels):
    dataset = kernels["dataset"]
    assert len(list(dataset.glob("seglib-*.whl"))) == 1
    assert sorted(path.name for path in (dataset / "notebooks").glob("*.ipynb")) == [f"{k}.ipynb" for k in KERNELS]
    metadata = json.loads((dataset / "dataset-metadata.json").read_text())
    assert metadata["id"] == "tester/seglib" and metadata["title"] == "seglib"


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_each_kernel_writes_only_its_own_outputs_to_kaggle_working(kernels, kernel):
    working = kernels["roots"][kernel] / "working"
    for name in OWN_OUTPUTS[kernel]:
        assert (working / name).is_file(), f"{kernel} did not write {name}"
    for other, names in OWN_OUTPUTS.items():
        if other != kernel:
            assert not any((working / name).exists() for name in names), f"{kernel} wrote {other}'s outputs"
    assert not list(working.rglob("*.partial*"))


def test_kernels_say_where_they_run(kernels):
    notebook = json.loads((kernels["executed"] / "01_eda.ipynb").read_text())
    printed = "".join(text for cell in notebook["cells"] for output in cell.get("outputs", [])
                      for text in output.get("text", []))
    assert "platform:   kaggle" in printed and "TensorFlow 2.20.0, Keras 3.13.2" in printed
    assert f"data:       {kernels['roots']['01_eda'] / 'input' / SLUG}" in printed
    assert "run folder: ." in printed  # /kaggle/working, the kernel's working directory


def test_attached_inputs_are_left_untouched(kernels):
    assert kernels["digests_after"] == kernels["digests"]


def test_the_last_kernel_submission_is_valid(kernels):
    submission = kernels["roots"]["05_submission"] / "working" / "submission.csv"
    printed = run(kernels["python"], "-m", "seglib", "validate", "tgs", kernels["competition"], submission)
    assert "valid ({'rows': 40" in printed


def test_missing_competition_data_is_an_error_naming_the_slug(platform, tmp_path):
    """A kernel without the competition attached stops in its first cell that needs data, saying what to do."""
    python = platform["python"]
    root = tmp_path / "kaggle"
    for folder in ("input", "working"):
        (root / folder).mkdir(parents=True)
    notebooks = tmp_path / "notebooks"
    run(python, "-m", "seglib", "notebooks", notebooks)
    completed = subprocess.run([python, "-m", "papermill", notebooks / "02_mean_std.ipynb", tmp_path / "out.ipynb",
                                "--kernel", "python3", "--cwd", root / "working", "--no-progress-bar"],
                               capture_output=True, text=True, env=kernel_environment(root), timeout=600)
    assert completed.returncode != 0
    assert f"no data for competition 'tgs' on kaggle: looked in {root / 'input' / SLUG}" in completed.stderr
    assert f"Attach the Kaggle competition '{SLUG}'" in completed.stderr
    assert not list((root / "working").iterdir()), "nothing written"
