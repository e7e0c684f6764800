"""Training survives kill -9 and goes on from the last finished epoch; the same seed gives the same score.

Both run tests/sample_training.py as real processes on the committed TGS sample: a kill needs a process of its
own, and determinism must hold between two fresh processes, not only within one.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from seglib import artifacts, train
from seglib.models import build_unet

pytestmark = pytest.mark.slow  # whole-run or multi-process tests: outside the `-m "not slow"` inner loop

SCRIPT = Path(__file__).with_name("sample_training.py")
ENVIRONMENT = dict(os.environ)


def run_training(run_dir, *arguments, timeout=300):
    completed = subprocess.run([sys.executable, str(SCRIPT), str(run_dir), *arguments], capture_output=True,
                               text=True, timeout=timeout, env=ENVIRONMENT)
    if completed.returncode != 0:
        raise AssertionError(f"training failed:\n{completed.stdout}\n{completed.stderr[-3000:]}")
    return completed.stdout


def validation_score(output):
    return float(re.search(r"validation score: (\S+)", output).group(1))


def test_training_killed_mid_epoch_resumes_from_the_last_finished_epoch(tmp_path):
    epochs, killed_in = 5, 2
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path), "--epochs", str(epochs),
                                "--stall-at-epoch", str(killed_in)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENVIRONMENT)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "stalled").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the run never reached epoch {killed_in}:\n{process.communicate()[1][-3000:]}")
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)  # kill -9: no Python cleanup, no callbacks
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    # Two epochs finished and were logged and backed up; the third was cut in the middle.
    assert list(pd.read_csv(tmp_path / artifacts.HISTORY)["epoch"]) == [0, 1]
    backup = tmp_path / artifacts.BACKUP / "history"
    assert (backup / "training_metadata.json").is_file()
    assert not (tmp_path / artifacts.MODEL).exists(), "the final model is written only when the fit ends"

    output = run_training(tmp_path, "--epochs", str(epochs))
    assert f"after {killed_in} finished epoch(s)" in output
    # Keras counts epochs from 1: the resumed run starts with the third and never repeats the first two.
    epoch_lines = re.findall(r"^Epoch (\d+)/(\d+)$", output, flags=re.MULTILINE)
    assert epoch_lines == [(str(epoch), str(epochs)) for epoch in range(killed_in + 1, epochs + 1)], output
    history = pd.read_csv(tmp_path / artifacts.HISTORY)
    assert list(history["epoch"]) == list(range(epochs))
    assert (tmp_path / artifacts.MODEL).is_file() and not backup.exists()
    assert 0.0 <= validation_score(output) <= 1.0


def test_the_same_seed_gives_the_same_validation_score(tmp_path):
    first = run_training(tmp_path / "first", "--epochs", "3", "--seed", "7")
    second = run_training(tmp_path / "second", "--epochs", "3", "--seed", "7")
    assert validation_score(first) == validation_score(second)
    # Everything but the wall-clock minutes each epoch ended at.
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "first" / artifacts.HISTORY).drop(columns="minutes"),
                                  pd.read_csv(tmp_path / "second" / artifacts.HISTORY).drop(columns="minutes"))


# --- in one process: what resumes and what starts afresh ----------------------------------------------------


class Interrupt(keras.callbacks.Callback):
    """Raise in the middle of epoch ``epoch``, as a crash would (the backup of the epochs before stays)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.current = epoch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch:
            raise RuntimeError("interrupted")


def small_model(learning_rate=1e-3):
    keras.utils.set_random_seed(1)
    return train.compile_model(build_unet((32, 32, 1), depth=2, base_filters=4), learning_rate=learning_rate)


def small_dataset():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 32, 32, 1)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((images, (images > 0.3).astype("float32"))).batch(4)


def interrupted_fit(run_dir):
    model = small_model()
    fit = model.fit
    model.fit = lambda *args, callbacks=(), **kwargs: fit(*args, callbacks=[*callbacks, Interrupt(2)], **kwargs)
    with pytest.raises(RuntimeError, match="interrupted"):
        train.fit(model, small_dataset(), small_dataset(), run_dir, epochs=4, verbose=0)


def test_a_fit_with_the_same_settings_resumes(tmp_path, caplog):
    interrupted_fit(tmp_path)
    with caplog.at_level("INFO", logger="seglib"):
        history = train.fit(small_model(), small_dataset(), small_dataset(), tmp_path, epochs=4, verbose=0)
    assert "after 2 finished epoch(s)" in caplog.text
    assert list(history.index) == [0, 1, 2, 3]
    assert not (tmp_path / artifacts.BACKUP).exists()


def test_a_fit_with_other_settings_starts_afresh(tmp_path, caplog):
    interrupted_fit(tmp_path)
    with caplog.at_level("INFO", logger="seglib"):
        history = train.fit(small_model(learning_rate=1e-2), small_dataset(), small_dataset(), tmp_path, epochs=3,
                            verbose=0)
    assert "made with other settings: starting afresh" in caplog.text
    assert list(pd.read_csv(tmp_path / artifacts.HISTORY)["epoch"]) == [0, 1, 2] and len(history) == 3


def test_resume_false_ignores_the_backup(tmp_path, caplog):
    interrupted_fit(tmp_path)
    with caplog.at_level("INFO", logger="seglib"):
        train.fit(small_model(), small_dataset(), small_dataset(), tmp_path, epochs=3, verbose=0, resume=False)
    assert "Resuming" not in caplog.text
    assert list(pd.read_csv(tmp_path / artifacts.HISTORY)["epoch"]) == [0, 1, 2]
