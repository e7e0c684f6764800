"""Where am I running, where are the data and the run folder, and how do I seed and distribute.

The same notebook runs on a laptop, in a Kaggle kernel and on Colab; only paths and hardware differ.
"""

import logging
import os
import platform as python_platform
import sys
from pathlib import Path

from seglib.errors import SeglibError

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
# A wheel carries the notebooks and the samples in seglib/_bundle (pyproject.toml); a source checkout keeps them
# beside the package, in notebooks/ and data/sample/.
_BUNDLE = PACKAGE_DIR / "_bundle"
NOTEBOOK_DIR = _BUNDLE / "notebooks" if (_BUNDLE / "notebooks").is_dir() else PACKAGE_DIR.parent / "notebooks"
SAMPLE_ROOT = _BUNDLE / "sample" if (_BUNDLE / "sample").is_dir() else PACKAGE_DIR.parent / "data" / "sample"
KAGGLE_ROOT_VARIABLE = "SEGLIB_KAGGLE_ROOT"  # /kaggle (read-only input/, the kernel's working/), or a test's fake
COLAB_ROOT = Path("/content")
COLAB_DRIVE = COLAB_ROOT / "drive" / "MyDrive"
RUN_DIR_VARIABLE = "SEGLIB_RUN_DIR"  # how the run script and tests point every notebook at one run folder
SAMPLE = "sample"  # DATA_DIR = "sample" picks the bundled sample anywhere, also on Kaggle and Colab
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGY_VARIABLE = "SEGLIB_STRATEGY"  # the strategy's name when distribution_strategy gets none
STRATEGIES = ("auto", "default", "mirrored", "tpu")


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
    # Kaggle mounts a competition at input/<slug>; newer kernels may put it under input/competitions/<slug>.
    return {"kaggle": [kaggle_root() / "input" / slug, kaggle_root() / "input" / "competitions" / slug],
            "colab": [COLAB_ROOT / slug, COLAB_DRIVE / slug]}.get(platform(), [])


def resolve_data_dir(competition, data_dir=None):
    """The competition's data folder: ``data_dir``; the bundled sample for "sample"; for None the competition on
    Kaggle or Colab (``data_candidates``; missing data is an error there, never the sample), else the sample."""
    from seglib.competitions.base import _REGISTRY, known_competitions

    if competition not in _REGISTRY:
        raise SeglibError(f"unknown competition {competition!r}; known: {known_competitions()}")
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
    """The run folder every notebook reads and writes, created and checked writable (not read-only or full). None
    means $SEGLIB_RUN_DIR if set; on Kaggle /kaggle/working (where Kaggle looks for submission.csv); on Colab
    Google Drive if mounted (a run then resumes after a disconnect), else /content; else runs/latest."""
    from seglib.artifacts import check_writable

    run_dir = run_dir or os.environ.get(RUN_DIR_VARIABLE) or {
        "kaggle": kaggle_root() / "working",
        "colab": (COLAB_DRIVE if COLAB_DRIVE.is_dir() else COLAB_ROOT) / "seglib_run",
    }.get(platform(), Path.cwd() / "runs" / "latest")
    return check_writable(Path(run_dir).expanduser().resolve())


def attached_run_dirs(markers):
    """On Kaggle, the folders under /kaggle/input holding any of ``markers``: earlier notebooks' outputs (each
    notebook may be its own kernel, whose output reaches the next as an input, at most two folders deeper)."""
    if platform() != "kaggle":
        return []
    inputs = kaggle_root() / "input"
    return sorted({path.parent for depth in (1, 2, 3) for marker in markers
                   for path in inputs.glob("*/" * depth + marker)})


def _shown(path):
    """A path as the user would type it: relative to the working directory when it lies below it."""
    path = Path(path)
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def describe(data_dir=None, run_dir=None):
    """Lines saying where this runs: platform, Python, devices, TensorFlow and Keras versions, data and run
    folders (what a notebook shows first, so a shared notebook says what it ran on)."""
    from seglib.backend import keras, tf

    devices = []
    for device in tf.config.list_physical_devices():
        details = tf.config.experimental.get_device_details(device) if device.device_type == "GPU" else {}
        devices.append(device.device_type + (f" ({details['device_name']})" if "device_name" in details else ""))
    lines = [f"platform:   {platform()} (Python {python_platform.python_version()})",
             f"devices:    {', '.join(devices)}",
             f"versions:   TensorFlow {tf.__version__}, Keras {keras.__version__}"]
    if data_dir is not None:
        lines.append(f"data:       {_shown(data_dir)}")
    if run_dir is not None:
        lines.append(f"run folder: {_shown(run_dir)}")
    return lines


def seed_everything(seed, deterministic=True):
    """Seed Python, numpy and TensorFlow and, if ``deterministic``, make TensorFlow's ops deterministic; return
    whether they are. "auto" is on without a GPU (cheap on the CPU), off with one (slow there)."""
    from seglib.backend import keras, tf

    keras.utils.set_random_seed(seed)
    if deterministic == "auto":
        deterministic = not tf.config.list_physical_devices("GPU")
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return bool(deterministic)


def cpu_has_bfloat16():
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def set_precision(name="auto"):
    """Set Keras' global dtype policy and return its name: "float32", "mixed_float16", "mixed_bfloat16", or
    "auto": mixed_float16 with a GPU, mixed_bfloat16 on a CPU with native bfloat16 (1.3-1.7x float32's images
    per second, benchmarks/quality.py), else float32 (emulated bfloat16 is slower)."""
    from seglib.backend import keras, tf

    if name not in PRECISIONS:
        raise SeglibError(f"unknown precision {name!r}; known: {PRECISIONS}")
    if name == "auto":
        name = ("mixed_float16" if tf.config.list_physical_devices("GPU") else
                "mixed_bfloat16" if cpu_has_bfloat16() else "float32")
    keras.mixed_precision.set_global_policy(name)
    return name


def split_cpu(count):
    """Split the CPU into ``count`` logical devices (so multi-replica strategies run without GPUs) and return
    their names; only before TensorFlow creates its first tensor, variable or strategy in the process."""
    from seglib.backend import tf

    if count < 1:
        raise SeglibError(f"count must be at least 1, got {count}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    # Asking again for the split in place (unsplit = one device) is harmless, even after initialisation.
    if count != (len(current) if current else 1):
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError as error:
            raise RuntimeError(f"cannot split the CPU into {count} devices: TensorFlow has already initialised "
                               f"its devices ({len(tf.config.list_logical_devices('CPU'))} CPU). Call split_cpu "
                               "first thing in a fresh process, before any tensor, model or strategy.") from error
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def _tpu_strategy(required):
    """A TPUStrategy on the attached TPU; None without one, unless ``required``."""
    from seglib.backend import tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.NotFoundError):
        if required:
            raise SeglibError("distribution strategy 'tpu' asked for, but no TPU is attached "
                              "(on Kaggle or Colab, switch the accelerator to TPU first)") from None
        return None
    return tf.distribute.TPUStrategy(resolver)


def distribution_strategy(name=None, devices=None):
    """The tf.distribute strategy to build and compile models in (``with strategy.scope():``), by ``name``:
    "auto" (a TPU if attached, else all of several GPUs, else one device), "default" (one device), "mirrored"
    (over ``devices``, default all GPUs, else all logical CPUs: see ``split_cpu``) or "tpu"; None reads
    $SEGLIB_STRATEGY, "auto" if unset."""
    from seglib.backend import tf

    name = (name or os.environ.get(STRATEGY_VARIABLE) or "auto").strip().lower()
    if name not in STRATEGIES:
        raise SeglibError(f"unknown distribution strategy {name!r} (argument or ${STRATEGY_VARIABLE}); "
                          f"known: {STRATEGIES}")
    if devices is not None and name != "mirrored":
        raise SeglibError(f"devices are for the 'mirrored' strategy only, not {name!r}")
    strategy = _tpu_strategy(required=name == "tpu") if name in ("auto", "tpu") else None
    if strategy is None and name == "mirrored":
        # MirroredStrategy() alone would use one CPU; split_cpu's logical CPUs make a CPU-only test of it.
        devices = devices or [device.name for device in tf.config.list_logical_devices("GPU")
                              or tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
    if strategy is None and name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1:
        strategy = tf.distribute.MirroredStrategy()
    if strategy is None:
        strategy, kind = tf.distribute.get_strategy(), "default strategy (one device)"
    else:
        devices = [device.rsplit("/", 1)[-1].replace("device:", "") for device in strategy.extended.worker_devices]
        kind = f"{type(strategy).__name__} over {', '.join(devices)}"
    log.info("Distribution: %s, %d replica(s)", kind, strategy.num_replicas_in_sync)
    return strategy


def show_logs(stream="stdout"):
    """Show seglib's INFO lines on sys.stdout (a notebook's output) or sys.stderr (beside a command's result),
    unless logging is configured already."""
    logger = logging.getLogger("seglib")
    if not logging.getLogger().handlers and logger.level == logging.NOTSET:
        logger.addHandler(logging.StreamHandler(getattr(sys, stream)))
        logger.setLevel(logging.INFO)


def open_run(competition_name, data_dir=None, run_dir=None, options=None):
    """Resolve the data and run folders, open the competition adapter (``options``: its switches, e.g. Carvana's
    ``{"background_channels": True}``) and say where everything is; return (adapter, run folder)."""
    from seglib.competitions import get_competition

    show_logs()
    competition = get_competition(competition_name, resolve_data_dir(competition_name, data_dir), **(options or {}))
    run_dir = resolve_run_dir(run_dir)
    log.info("\n".join([competition.title, *describe(competition.data_dir, run_dir)]))
    return competition, run_dir
