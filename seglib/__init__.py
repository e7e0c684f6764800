"""seglib: the tested helper package behind the notebooks.

Data flow, one module per step:
competitions (adapter) -> split -> data (tf.data pipeline, geometry, stats) -> models + losses -> train ->
predict -> policy -> rle -> submit. ``env`` resolves paths, seeds and the tf.distribute strategy;
``eda`` and ``plots`` serve the notebooks; ``notebooks`` runs all five with papermill.
"""

import logging

from seglib.errors import SeglibError

__version__ = "0.1.0"
__all__ = ["SeglibError", "__version__"]

# Library code logs; a notebook or the CLI shows INFO lines unless the user configures logging otherwise.
logging.getLogger("seglib").addHandler(logging.NullHandler())
