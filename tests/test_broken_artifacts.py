"""Issue 15: a truncated or foreign artifact in a run folder is named, with what writes it again; a run folder
that cannot take the run's files fails before any work."""

import os

import numpy as np
import pytest

from seglib import artifacts, models, policy, stats, store, submit, train
from seglib.env import open_run


@pytest.fixture
def run_folder(tmp_path):
    """A run folder with a real (tiny) model, mean/std file, policy, config and out-of-fold store."""
    model = models.build_model("unet", (32, 32, 1), depth=2, base_filters=4)
    model.save(tmp_path / artifacts.MODEL)
    stats.save_mean_std(tmp_path / artifacts.MEAN_STD, stats.mean_std(np.ones((4, 8, 8, 1), np.uint8)))
    policy.save_policy(tmp_path / artifacts.POLICY, policy.Policy(0.5))
    train.TrainSettings("tgs", {}, {"mode": "pad", "size": 32, "original_size": [32, 32]}, "unet", {}, "bce", 1e-3,
                        "cosine", 1, None, 4, 1, None, [0, None, 0.0], [], 0, 1, "none", "float32", [["a", "b"]],
                        models=[artifacts.MODEL]).save(tmp_path / artifacts.TRAIN_CONFIG)
    with store.PredictionWriter(tmp_path / artifacts.OOF_STORE, ["a", "b"], (32, 32, 1)) as writer:
        writer.write(["a", "b"], np.zeros((2, 32, 32, 1)))
    return tmp_path


def cut(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


READERS = {
    artifacts.MODEL: lambda path: artifacts.load_model(path),
    artifacts.MEAN_STD: stats.load_mean_std,
    artifacts.POLICY: policy.load_policy,
    artifacts.TRAIN_CONFIG: lambda path: artifacts.load_json(path, what="training config (notebook 03)"),
    f"{artifacts.OOF_STORE}/probabilities.npy": lambda path: store.Predictions(path.parent),
}


@pytest.mark.parametrize("name", list(READERS))
@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_broken_artifact_is_named_with_what_writes_it(run_folder, name, damage):
    path = run_folder / name
    if damage == "truncated":
        cut(path)
    else:
        path.write_bytes(b"\x89PNG\r\n\x1a\n not what this file should be")
    with pytest.raises(ValueError) as raised:
        READERS[name](path)
    message = str(raised.value)
    assert str(path.parent if name.startswith(artifacts.OOF_STORE) else path) in message
    assert "re-run the notebook that writes it" in message


def test_a_truncated_model_is_not_reported_as_missing(run_folder):
    cut(run_folder / artifacts.MODEL)
    with pytest.raises(ValueError, match=f"{run_folder / artifacts.MODEL}: cannot be read as the model"):
        submit.load_trained_run(run_folder)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_folder_fails_before_any_work(tmp_path, sample_dir):
    read_only = tmp_path / "run"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        with pytest.raises(ValueError, match=f"run folder {read_only} is not writable"):
            open_run("tgs", sample_dir, read_only)
    finally:
        read_only.chmod(0o755)


def test_a_full_run_folder_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="MiB free, under the"):
        artifacts.check_writable(tmp_path, min_free_bytes=2**62)
    assert artifacts.check_writable(tmp_path / "new") == tmp_path / "new"


def test_a_run_folder_that_cannot_be_made_fails_before_any_work(tmp_path, sample_dir):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ValueError, match="a-file/run is not writable"):
        open_run("tgs", sample_dir, tmp_path / "a-file" / "run")
