"""Where am I running, where are the data and the run folder, and how do I seed and distribute.

The same notebook runs on a laptop, in a Kaggle kernel and on Colab; only paths and hardware differ.
"""

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_ROOT = REPO_ROOT / "data" / "sample"
KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")
# Tests and the run script point every notebook at one run folder through this variable.
RUN_DIR_VARIABLE = "SEGLIB_RUN_DIR"


def platform():
    """"kaggle", "colab" or "local"."""
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") or KAGGLE_WORKING.is_dir() and KAGGLE_INPUT.is_dir():
        return "kaggle"
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return "colab"
    return "local"


def resolve_data_dir(competition, data_dir=None):
    """The competition's data folder.

    Args:
        competition: a registered competition name.
        data_dir: an explicit folder, or None for: the Kaggle input folder on Kaggle, else the bundled sample.
    """
    from seglib.competitions.base import _REGISTRY, known_competitions

    if competition not in _REGISTRY:
        raise ValueError(f"unknown competition {competition!r}; known: {known_competitions()}")
    if data_dir is not None:
        path = Path(data_dir).expanduser()
    elif platform() == "kaggle" and (KAGGLE_INPUT / _REGISTRY[competition].kaggle_slug).is_dir():
        path = KAGGLE_INPUT / _REGISTRY[competition].kaggle_slug
    else:
        path = SAMPLE_ROOT / competition
    if not path.is_dir():
        raise FileNotFoundError(f"data folder for {competition!r} not found: {path}")
    return path.resolve()


def resolve_run_dir(run_dir=None):
    """The run folder every notebook reads from and writes to (created if missing).

    None means: $SEGLIB_RUN_DIR if set, else /kaggle/working/run on Kaggle, else <repo>/runs/latest.
    """
    if run_dir is None:
        run_dir = os.environ.get(RUN_DIR_VARIABLE)
    if run_dir is None:
        run_dir = KAGGLE_WORKING / "run" if platform() == "kaggle" else REPO_ROOT / "runs" / "latest"
    path = Path(run_dir).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def seed_everything(seed):
    """Seed Python, numpy and TensorFlow and make TensorFlow ops deterministic, for repeatable runs."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def distribution_strategy():
    """TPU if one is attached, MirroredStrategy over several GPUs, else the default strategy."""
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.NotFoundError):
        pass
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def open_run(competition_name, data_dir=None, run_dir=None, options=None):
    """Resolve the data and run folders, open the competition adapter and say where everything is.

    Args:
        options: the adapter's switches (notebook parameter COMPETITION_OPTIONS), e.g. Carvana's
            ``{"background_channels": True}``.

    Returns:
        (competition adapter, run folder Path).
    """
    from seglib.competitions import get_competition

    competition = get_competition(competition_name, resolve_data_dir(competition_name, data_dir),
                                  **(options or {}))
    run_dir = resolve_run_dir(run_dir)
    print(f"{competition.title} on {platform()}: data {competition.data_dir.name}/, run folder {run_dir.name}/")
    return competition, run_dir
