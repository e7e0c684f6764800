"""Atomic writes and the JSON / npz artifact helpers."""

import numpy as np
import pytest

from seglib.artifacts import atomic_path, load_json, load_npz, save_json, save_npz


def test_atomic_path_success_leaves_only_the_target(tmp_path):
    target = tmp_path / "sub" / "model.keras"
    with atomic_path(target) as temporary:
        assert temporary.parent.parent == target.parent  # same file system, so the rename is atomic
        assert temporary.suffix == ".keras" and temporary != target
        assert not target.exists()
        temporary.write_text("weights")
    assert target.read_text() == "weights"
    assert [path.name for path in target.parent.iterdir()] == ["model.keras"]


def test_atomic_path_replaces_an_existing_target(tmp_path):
    target = tmp_path / "history.csv"
    target.write_text("old")
    with atomic_path(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new"
    assert [path.name for path in tmp_path.iterdir()] == ["history.csv"]


def test_atomic_path_exception_leaves_nothing(tmp_path):
    target = tmp_path / "submission.csv"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as temporary:
            temporary.write_text("half a file")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_exception_keeps_the_previous_target(tmp_path):
    target = tmp_path / "policy.json"
    target.write_text("finished")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as temporary:
            temporary.write_text("partial")
            raise KeyboardInterrupt
    assert target.read_text() == "finished"
    assert [path.name for path in tmp_path.iterdir()] == ["policy.json"]


def test_json_round_trip(tmp_path):
    payload = {"threshold": 0.42, "metric": "tgs", "sizes": [101, 128], "nested": {"ok": True, "none": None}}
    path = save_json(tmp_path / "run" / "policy.json", payload)
    assert path == tmp_path / "run" / "policy.json"
    assert load_json(path) == payload
    assert path.read_text().endswith("\n")
    assert [entry.name for entry in path.parent.iterdir()] == ["policy.json"]


def test_load_json_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="train config"):
        load_json(tmp_path / "train_config.json", what="train config")


def test_npz_round_trip(tmp_path):
    arrays = {"mean": np.arange(6, dtype=np.float64).reshape(2, 3), "count": np.int64(7)}
    path = save_npz(tmp_path / "mean_std.npz", **arrays)
    loaded = load_npz(path)
    assert set(loaded) == {"mean", "count"}
    np.testing.assert_array_equal(loaded["mean"], arrays["mean"])
    assert int(loaded["count"]) == 7
    assert [entry.name for entry in tmp_path.iterdir()] == ["mean_std.npz"]
    with pytest.raises(FileNotFoundError, match="mean/std"):
        load_npz(tmp_path / "other.npz", what="mean/std file")
