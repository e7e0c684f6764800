"""seglib: the tested helper package behind the notebooks.

Data flow, one module per step:
competitions (adapter) -> split -> data (tf.data pipeline, geometry, stats) -> models + losses -> train ->
predict -> policy -> rle -> submit. ``env`` resolves paths, seeds and the tf.distribute strategy;
``eda`` and ``plots`` serve the notebooks; ``notebooks`` runs all five with papermill.
"""

import os

# TensorFlow reads this when it is first imported; quiet its C++ logs unless the user asked otherwise.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"

# Register seglib's custom Keras objects (the losses) on import, so that a saved ``.keras`` model compiled with
# one of them loads with plain ``keras.models.load_model`` once seglib is imported (notebooks 04 and 05 do
# exactly that). TensorFlow and Keras are an optional extra, so skip it where Keras is not installed.
import importlib.util  # noqa: E402

if importlib.util.find_spec("keras") is not None:
    from seglib import losses  # noqa: E402,F401
