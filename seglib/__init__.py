"""seglib: the tested helper package behind the notebooks.

Data flow, one module per step:
competitions (adapter) -> split -> data (tf.data pipeline, geometry, stats) -> models + losses -> train ->
predict -> policy -> rle -> submit. ``env`` resolves paths, seeds and the tf.distribute strategy;
``eda`` and ``plots`` serve the notebooks; ``notebooks`` runs all five with papermill.
"""

import contextlib
import importlib.util
import os

__version__ = "0.1.0"


@contextlib.contextmanager
def _stderr_silenced():
    """Send the process's stderr (file descriptor 2) to /dev/null for the duration.

    TensorFlow's C++ start-up lines (oneDNN, "All log messages before absl::InitializeLog()") are written to
    the process's stderr while it loads, before TF_CPP_MIN_LOG_LEVEL is read; a Jupyter kernel forwards that
    descriptor into the notebook, so they would be stored in every notebook's outputs. Python errors raised
    during the import still reach the user: they are raised, not written to descriptor 2.
    """
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


# TensorFlow reads this when it is first imported; quiet its C++ logs unless the user asked otherwise.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Register seglib's custom Keras objects (the losses) on import, so that a saved ``.keras`` model compiled with
# one of them loads with plain ``keras.models.load_model`` once seglib is imported (notebooks 04 and 05 do
# exactly that). TensorFlow and Keras are an optional extra, so skip it where Keras is not installed.
if importlib.util.find_spec("keras") is not None:
    with _stderr_silenced():
        import tensorflow  # noqa: F401  (loaded here, quietly, rather than by the first module that needs it)
    from seglib import losses  # noqa: F401
