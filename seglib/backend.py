"""TensorFlow and Keras, imported once and quietly.

Only the modules that build, train, load or run a model import this, so ``from seglib import stats, rle`` stays
light (no TensorFlow in memory). Importing it also registers seglib's losses, so a saved ``.keras`` model
loads with plain ``keras.models.load_model``.
"""

import contextlib
import os


@contextlib.contextmanager
def _stderr_silenced():
    # TensorFlow's C++ start-up lines (oneDNN, absl) go to file descriptor 2 before TF_CPP_MIN_LOG_LEVEL is read;
    # a Jupyter kernel would store them in every notebook. Python errors are raised, so they still reach the user.
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
with _stderr_silenced():
    import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

__all__ = ["keras", "tf"]

from seglib import losses  # noqa: E402,F401  (registers the custom losses for load_model)
