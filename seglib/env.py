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


# Notebooks and tests pick the strategy through this variable when distribution_strategy gets no name.
STRATEGY_VARIABLE = "SEGLIB_STRATEGY"
STRATEGIES = ("auto", "default", "mirrored", "tpu")


def split_cpu(count):
    """Split the CPU into ``count`` logical devices, so multi-replica strategies can run without GPUs.

    TensorFlow fixes its device list the first time it creates a tensor, variable or strategy, so this must
    run before that, at the top of the process (importing seglib and Keras is fine).

    Args:
        count: the number of logical CPU devices, at least 1.

    Returns:
        The logical CPU device names, e.g. ["/device:CPU:0", "/device:CPU:1"].
    """
    import tensorflow as tf

    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    # Asking again for the split already in place (unsplit = one device) is harmless, even after initialisation.
    if count != (len(current) if current else 1):
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError as error:
            raise RuntimeError(
                f"cannot split the CPU into {count} devices: TensorFlow has already initialised its devices "
                f"({len(tf.config.list_logical_devices('CPU'))} CPU). Call split_cpu first thing in a fresh "
                "process, before any tensor, model or strategy is created.") from error
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def _attached_tpu():
    """The initialised TPU cluster resolver, or None when no TPU is attached."""
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.NotFoundError):
        return None
    return resolver


def distribution_strategy(name=None, devices=None):
    """The tf.distribute strategy to build and compile models in (``with strategy.scope():``), by name.

    Args:
        name: "auto" (TPU if one is attached, else MirroredStrategy over several GPUs, else one device),
            "default" (one device), "mirrored" (all GPUs, or ``devices``; without GPUs all logical CPUs, see
            ``split_cpu``) or "tpu"; None reads $SEGLIB_STRATEGY, "auto" if unset.
        devices: for "mirrored" only, the devices to mirror over, e.g. ["/gpu:0", "/gpu:1"] or
            ["/cpu:0", "/cpu:1"].

    Returns:
        A ``tf.distribute.Strategy``; ``num_replicas_in_sync`` replicas each get an equal share of every
        global batch.
    """
    import tensorflow as tf

    if name is None:
        name = os.environ.get(STRATEGY_VARIABLE) or "auto"
    name = name.strip().lower()
    if name not in STRATEGIES:
        raise ValueError(f"unknown distribution strategy {name!r} (argument or ${STRATEGY_VARIABLE}); "
                         f"known: {STRATEGIES}")
    if devices is not None and name != "mirrored":
        raise ValueError(f"devices are for the 'mirrored' strategy only, not {name!r}")

    strategy = None
    if name in ("auto", "tpu"):
        resolver = _attached_tpu()
        if resolver is not None:
            strategy = tf.distribute.TPUStrategy(resolver)
        elif name == "tpu":
            raise ValueError("distribution strategy 'tpu' asked for, but no TPU is attached "
                             "(on Kaggle or Colab, switch the accelerator to TPU first)")
    if strategy is None and name == "mirrored":
        if devices is None:
            gpus = tf.config.list_logical_devices("GPU")
            # MirroredStrategy() alone would use one CPU; split_cpu's logical CPUs make a CPU-only test of it.
            devices = [device.name for device in gpus or tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
    if strategy is None and name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1:
        strategy = tf.distribute.MirroredStrategy()
    if strategy is None:
        strategy = tf.distribute.get_strategy()
        kind = "default strategy (one device)"
    else:
        devices = [device.rsplit("/", 1)[-1].replace("device:", "") for device in strategy.extended.worker_devices]
        kind = f"{type(strategy).__name__} over {', '.join(devices)}"
    print(f"Distribution: {kind}, {strategy.num_replicas_in_sync} replica(s)")
    return strategy


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
