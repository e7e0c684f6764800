"""Where am I running, where are the data and the run folder, and how do I seed and distribute.

The same notebook runs on a laptop, in a Kaggle kernel and on Colab; only paths and hardware differ.
"""

import os
import platform as python_platform
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# A wheel carries the notebooks and the samples in seglib/_bundle (pyproject.toml); a source checkout (an
# editable install) keeps them beside the package, in notebooks/ and data/sample/.
_BUNDLE = PACKAGE_DIR / "_bundle"
NOTEBOOK_DIR = _BUNDLE / "notebooks" if (_BUNDLE / "notebooks").is_dir() else PACKAGE_DIR.parent / "notebooks"
SAMPLE_ROOT = _BUNDLE / "sample" if (_BUNDLE / "sample").is_dir() else PACKAGE_DIR.parent / "data" / "sample"
# Kaggle mounts inputs read-only under /kaggle/input and keeps a kernel's output in /kaggle/working; tests lay out
# a fake one and point this variable at it.
KAGGLE_ROOT_VARIABLE = "SEGLIB_KAGGLE_ROOT"
COLAB_ROOT = Path("/content")
COLAB_DRIVE = COLAB_ROOT / "drive" / "MyDrive"
# Tests and the run script point every notebook at one run folder through this variable.
RUN_DIR_VARIABLE = "SEGLIB_RUN_DIR"
# DATA_DIR = "sample" picks the bundled sample anywhere, also on Kaggle and Colab.
SAMPLE = "sample"


def kaggle_root():
    """Kaggle's root folder: /kaggle, or $SEGLIB_KAGGLE_ROOT."""
    return Path(os.environ.get(KAGGLE_ROOT_VARIABLE, "/kaggle"))


def platform():
    """"kaggle", "colab" or "local"."""
    root = kaggle_root()
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") or (root / "working").is_dir() and (root / "input").is_dir():
        return "kaggle"
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return "colab"
    return "local"


def data_candidates(competition):
    """Where the competition's data may be mounted or downloaded on this platform (none locally)."""
    from seglib.competitions.base import _REGISTRY

    slug = _REGISTRY[competition].kaggle_slug
    where = platform()
    if where == "kaggle":
        # Competitions are mounted at input/<slug>; newer kernels may put them under input/competitions/<slug>.
        return [kaggle_root() / "input" / slug, kaggle_root() / "input" / "competitions" / slug]
    if where == "colab":
        return [COLAB_ROOT / slug, COLAB_DRIVE / slug]
    return []


def resolve_data_dir(competition, data_dir=None):
    """The competition's data folder.

    Args:
        competition: a registered competition name.
        data_dir: an explicit folder; "sample" for the bundled sample; None for the competition's folder on
            Kaggle or Colab (see ``data_candidates``), the bundled sample elsewhere. On Kaggle and Colab missing
            data is an error, never a silent fall-back to the 150-image sample.
    """
    from seglib.competitions.base import _REGISTRY, known_competitions

    if competition not in _REGISTRY:
        raise ValueError(f"unknown competition {competition!r}; known: {known_competitions()}")
    if data_dir == SAMPLE or data_dir is None and platform() == "local":
        path = SAMPLE_ROOT / competition
    elif data_dir is not None:
        path = Path(data_dir).expanduser()
    else:
        candidates = data_candidates(competition)
        found = [candidate for candidate in candidates if candidate.is_dir()]
        if not found:
            slug = _REGISTRY[competition].kaggle_slug
            raise FileNotFoundError(
                f"no data for competition {competition!r} on {platform()}: looked in "
                f"{', '.join(map(str, candidates))}. Attach the Kaggle competition {slug!r} as an input "
                f"(Kaggle: Add Input > Competitions), or download it (kaggle competitions download -c {slug} "
                f"-p {COLAB_ROOT / slug}), or set DATA_DIR to its folder (DATA_DIR = 'sample' for the bundled sample)")
        path = found[0]
    if not path.is_dir():
        raise FileNotFoundError(f"data folder for {competition!r} not found: {path}")
    return path.absolute()  # links kept: the folder is named as the user (or Kaggle) sees it


def resolve_run_dir(run_dir=None):
    """The run folder every notebook reads from and writes to (created if missing; ValueError if it is
    read-only or nearly full).

    None means: $SEGLIB_RUN_DIR if set; on Kaggle /kaggle/working (the kernel's output, where Kaggle looks for
    submission.csv); on Colab a folder on Google Drive if it is mounted (a training run then resumes after a
    disconnect), else /content/seglib_run; elsewhere runs/latest in the working directory.
    """
    if run_dir is None:
        run_dir = os.environ.get(RUN_DIR_VARIABLE)
    if run_dir is None:
        run_dir = {"kaggle": kaggle_root() / "working",
                   "colab": (COLAB_DRIVE if COLAB_DRIVE.is_dir() else COLAB_ROOT) / "seglib_run",
                   }.get(platform(), Path.cwd() / "runs" / "latest")
    from seglib.artifacts import check_writable

    # Created here, and checked before any work: a read-only or full folder fails now, not at the first save.
    return check_writable(Path(run_dir).expanduser().resolve())


def attached_run_dirs(markers):
    """On Kaggle, the folders under /kaggle/input holding any of ``markers``: earlier notebooks' outputs (each
    notebook may be its own kernel, whose /kaggle/working reaches the next one as a read-only input, its files at
    most two folders deeper). Empty elsewhere."""
    if platform() != "kaggle":
        return []
    inputs = kaggle_root() / "input"
    found = {path.parent for depth in (1, 2, 3) for marker in markers
             for path in inputs.glob("*/" * depth + marker)}
    return sorted(found)


def _shown(path):
    """A path as the user would type it: relative to the working directory when it lies below it."""
    path = Path(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def describe(data_dir=None, run_dir=None):
    """Lines saying where this runs: platform, Python, devices, TensorFlow and Keras versions, data and run
    folders (what a notebook prints first, so a shared notebook says what it ran on)."""
    import keras
    import tensorflow as tf

    devices = []
    for device in tf.config.list_physical_devices():
        details = tf.config.experimental.get_device_details(device) if device.device_type == "GPU" else {}
        devices.append(f"{device.device_type}" + (f" ({details['device_name']})" if "device_name" in details else ""))
    lines = [f"platform:   {platform()} (Python {python_platform.python_version()})",
             f"devices:    {', '.join(devices)}",
             f"versions:   TensorFlow {tf.__version__}, Keras {keras.__version__}"]
    if data_dir is not None:
        lines.append(f"data:       {_shown(data_dir)}")
    if run_dir is not None:
        lines.append(f"run folder: {_shown(run_dir)}")
    return lines


def seed_everything(seed, deterministic=True):
    """Seed Python, numpy and TensorFlow and, if asked, make TensorFlow ops deterministic (repeatable runs).

    Args:
        deterministic: True, False, or "auto": on without a GPU (it costs little on the CPU), off with one (where
            deterministic kernels slow training down).

    Returns:
        Whether op determinism is on.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic == "auto":
        deterministic = not tf.config.list_physical_devices("GPU")
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return bool(deterministic)


PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def cpu_has_bfloat16():
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def set_precision(name="auto"):
    """Set Keras' global dtype policy and return its name.

    Args:
        name: "float32", "mixed_float16" (GPU), "mixed_bfloat16", or "auto": mixed_float16 with a GPU,
            mixed_bfloat16 on a CPU that computes bfloat16 natively (measured 1.3-1.7x the images per second of
            float32 here, benchmarks/quality.py), else float32 (emulated bfloat16 is slower than float32).
    """
    import keras
    import tensorflow as tf

    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; known: {PRECISIONS}")
    if name == "auto":
        name = ("mixed_float16" if tf.config.list_physical_devices("GPU") else
                "mixed_bfloat16" if cpu_has_bfloat16() else "float32")
    keras.mixed_precision.set_global_policy(name)
    return name


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
    print(f"{competition.title}")
    print("\n".join(describe(competition.data_dir, run_dir)))
    return competition, run_dir
