"""Issue 15: a cross-validation run killed with kill -9 in fold 2 of 3 and started again reuses fold 1's model
and out-of-fold predictions (it is not trained again) and ends in the same submission, byte for byte, as a run
that was never stopped.

Both runs are ``python -m seglib run`` processes on the bundled TGS sample. The epoch limit, not a wall-clock
budget, ends each fold (TRAIN_MINUTES None), so that the learning-rate schedule and hence the weights depend on
nothing but the seed; the kill lands as fold 2 starts, before its first epoch is backed up. For the same reason
the uninterrupted run can share the two cores with the other one: it runs at the same time, which makes the test
about a third shorter.
"""

import json
import time

import pytest
import seglib_runs

from seglib import artifacts

pytestmark = pytest.mark.slow  # whole-run or multi-process tests: outside the `-m "not slow"` inner loop

PARAMETERS = {"FOLDS": 3, "EPOCHS": 10, "TRAIN_MINUTES": None, "CHECK_DATA": False, "LOSS": "bce_dice",
              "LEARNING_RATE": 0.003}  # leaves the all-empty start in 10 epochs


def notebook_text(run_dir, name="03_train_unet.ipynb"):
    cells = json.loads((run_dir / "notebooks" / name).read_text())["cells"]
    return "\n".join("".join(output.get("text", "")) for cell in cells for output in cell.get("outputs", []))


def test_a_run_killed_in_fold_2_of_3_reuses_fold_1_and_gives_the_same_submission(tmp_path):
    killed, uninterrupted = tmp_path / "killed", tmp_path / "uninterrupted"
    processes = [seglib_runs.start(run_dir, PARAMETERS) for run_dir in (killed, uninterrupted)]
    try:
        deadline = time.monotonic() + 600
        while not (killed / "fold1").exists():  # fold 2 (counted from 1) starts
            assert processes[0].poll() is None and time.monotonic() < deadline, "the run never reached fold 2"
            time.sleep(0.1)
        seglib_runs.kill(processes[0])
        fold_1_log = (killed / "fold0" / artifacts.HISTORY).read_bytes()
        fold_1_model = (killed / "fold0" / artifacts.MODEL).stat().st_mtime_ns
        assert not (killed / artifacts.OOF_STORE).exists() and (killed / f".{artifacts.OOF_STORE}.partial").is_dir()

        processes[0] = seglib_runs.start(killed, PARAMETERS)
        seglib_runs.wait(processes[0], timeout=900)
        seglib_runs.wait(processes[1], timeout=900)
    finally:
        for process in processes:
            seglib_runs.kill(process)
    log = notebook_text(killed)
    assert "fold 1/3: finished by an earlier run; its model and predictions are reused" in log
    fold_lines = [line for line in log.splitlines() if line.startswith("--- fold ")]
    assert [line[:14] for line in fold_lines] == ["--- fold 1/3: ", "--- fold 2/3: ", "--- fold 3/3: "], fold_lines
    assert (killed / "fold0" / artifacts.HISTORY).read_bytes() == fold_1_log
    assert (killed / "fold0" / artifacts.MODEL).stat().st_mtime_ns == fold_1_model, "fold 1 was trained again"
    assert (killed / artifacts.SUBMISSION).read_bytes() == (uninterrupted / artifacts.SUBMISSION).read_bytes()
    assert not list(killed.rglob("*.partial*"))
