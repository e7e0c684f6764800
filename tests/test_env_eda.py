"""Paths, platform, seeding and strategy (seglib.env), and the EDA tables (seglib.eda) on the sample."""

import logging

import keras
import numpy as np
import pandas as pd
import pytest

from seglib import env, rle
from seglib.competitions import get_competition
from seglib.eda import ceiling_image_scores, coverage_table, survey_masks


@pytest.fixture
def local(monkeypatch, tmp_path):
    """Whatever machine runs the tests, look like a laptop to seglib.env."""
    for variable in ("KAGGLE_KERNEL_RUN_TYPE", "COLAB_RELEASE_TAG", env.RUN_DIR_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(env.KAGGLE_ROOT_VARIABLE, str(tmp_path / "no-kaggle-here"))


@pytest.fixture
def kaggle(local, monkeypatch, tmp_path):
    """A fake Kaggle kernel: its root (input/, working/) in tmp_path/kaggle."""
    root = tmp_path / "kaggle"
    for folder in ("input", "working"):
        (root / folder).mkdir(parents=True)
    monkeypatch.setenv(env.KAGGLE_ROOT_VARIABLE, str(root))
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    return root


def test_platform_is_local_here(local):
    assert env.platform() == "local"


def test_platform_recognises_kaggle_and_colab(local, monkeypatch):
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20240101-060000_RC00")
    assert env.platform() == "colab"
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert env.platform() == "kaggle"


def test_resolve_data_dir_defaults_to_the_sample(local, sample_dir):
    path = env.resolve_data_dir("tgs")
    assert path == sample_dir.resolve()
    assert (path / "train.csv").is_file()


def test_resolve_data_dir_explicit(tmp_path, monkeypatch):
    assert env.resolve_data_dir("tgs", tmp_path) == tmp_path.resolve()
    monkeypatch.chdir(tmp_path.parent)
    assert env.resolve_data_dir("tgs", tmp_path.name) == tmp_path.resolve()  # relative to the working directory


def test_resolve_data_dir_unknown_competition(tmp_path):
    with pytest.raises(ValueError, match="'severstal'.*known: \\['carvana', 'folder', 'handbone', 'tgs'\\]"):
        env.resolve_data_dir("severstal", tmp_path)


def test_resolve_data_dir_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        env.resolve_data_dir("tgs", tmp_path / "nowhere")


def test_kaggle_finds_the_competition_input(kaggle, sample_dir):
    competition_input = kaggle / "input" / "tgs-salt-identification-challenge"
    competition_input.symlink_to(sample_dir)
    assert env.platform() == "kaggle"
    assert env.resolve_data_dir("tgs") == competition_input
    assert env.resolve_data_dir("tgs", "sample") == sample_dir.resolve()  # the sample, only when asked for


@pytest.mark.parametrize("where", ["kaggle", "colab"])
def test_missing_competition_data_is_an_error_never_the_sample(kaggle, monkeypatch, where):
    if where == "colab":
        monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE")
        monkeypatch.setenv(env.KAGGLE_ROOT_VARIABLE, str(kaggle / "absent"))
        monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20251201")
    assert env.platform() == where
    with pytest.raises(FileNotFoundError) as error:
        env.resolve_data_dir("carvana")
    message = str(error.value)
    assert "'carvana-image-masking-challenge'" in message and f"on {where}: looked in" in message
    for candidate in env.data_candidates("carvana"):
        assert str(candidate) in message


def test_kaggle_run_dir_is_the_kernel_output(kaggle):
    assert env.resolve_run_dir() == (kaggle / "working").resolve()


def test_local_run_dir_is_in_the_working_directory(local, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert env.resolve_run_dir() == (tmp_path / "runs" / "latest").resolve()


def test_artifacts_are_found_in_earlier_kernels_outputs(kaggle, tmp_path):
    from seglib import artifacts

    run_dir = kaggle / "working"
    # Notebook 02's output attached at input/<kernel>/, notebook 03's one folder deeper.
    mean_std_kernel = kaggle / "input" / "seglib-02" / artifacts.MEAN_STD
    train_kernel = kaggle / "input" / "seglib-03" / "output" / artifacts.TRAIN_CONFIG
    for path in (mean_std_kernel, train_kernel):
        path.parent.mkdir(parents=True)
        path.write_text("{}")
    assert artifacts.find(run_dir, artifacts.MEAN_STD) == mean_std_kernel
    assert artifacts.find(run_dir, artifacts.TRAIN_CONFIG) == train_kernel
    assert artifacts.find(run_dir, artifacts.POLICY) == run_dir / artifacts.POLICY  # nowhere: named in the run
    (run_dir / artifacts.MEAN_STD).write_text("{}")
    assert artifacts.find(run_dir, artifacts.MEAN_STD) == run_dir / artifacts.MEAN_STD  # the kernel's own first
    other = kaggle / "input" / "old-run" / artifacts.TRAIN_CONFIG
    other.parent.mkdir()
    other.write_text("{}")
    with pytest.raises(ValueError, match="train_config.json is in several attached inputs"):
        artifacts.find(run_dir, artifacts.TRAIN_CONFIG)


def test_inputs_are_not_searched_off_kaggle(local, tmp_path):
    from seglib import artifacts

    assert artifacts.find(tmp_path, artifacts.POLICY) == tmp_path / artifacts.POLICY


def test_resolve_run_dir_honours_the_variable(monkeypatch, tmp_path):
    target = tmp_path / "runs" / "from-variable"
    monkeypatch.setenv(env.RUN_DIR_VARIABLE, str(target))
    assert not target.exists()
    path = env.resolve_run_dir()
    assert path == target.resolve() and path.is_dir()
    # An explicit folder wins over the variable.
    explicit = tmp_path / "explicit"
    assert env.resolve_run_dir(explicit) == explicit.resolve() and explicit.is_dir()
    assert env.resolve_run_dir(target) == path  # an existing folder is fine


def test_open_run_says_where_it_runs(local, monkeypatch, tmp_path, caplog):
    import tensorflow as tf

    monkeypatch.setenv(env.RUN_DIR_VARIABLE, str(tmp_path / "run"))
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="seglib"):
        competition, run_dir = env.open_run("tgs")
    assert competition.name == "tgs" and run_dir == (tmp_path / "run").resolve()
    out = caplog.text
    assert "run folder: run\n" in out  # relative to the working directory
    assert "platform:   local" in out and "devices:    CPU" in out
    assert f"TensorFlow {tf.__version__}, Keras {keras.__version__}" in out
    assert f"data:       {env.SAMPLE_ROOT / 'tgs'}" in out


def test_show_logs_prints_info_lines_where_logging_is_unconfigured(monkeypatch, capsys):
    """A notebook's kernel has no logging set up: open_run makes seglib's INFO lines part of the cell output."""
    logger = logging.getLogger("seglib")
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    try:
        env.show_logs()
        env.show_logs()  # a second call adds no second handler
        logging.getLogger("seglib.env").info("hello")
    finally:
        logger.setLevel(logging.NOTSET)
    assert capsys.readouterr().out == "hello\n"


@pytest.fixture
def restore_determinism():
    """seed_everything switches TensorFlow's op determinism on for the process; switch it back afterwards."""
    from tensorflow.python.framework import config as tf_config

    enabled = tf_config.is_op_determinism_enabled()
    yield
    if not enabled:
        tf_config.disable_op_determinism()


def draws():
    return (keras.ops.convert_to_numpy(keras.random.uniform((5,))), np.random.rand(5),
            keras.ops.convert_to_numpy(keras.random.normal((2, 3))))


def test_determinism_auto_is_on_without_a_gpu(restore_determinism):
    from tensorflow.python.framework import config as tf_config

    assert env.seed_everything(1, "auto") is True and tf_config.is_op_determinism_enabled()


def test_seed_everything_repeats_draws(restore_determinism):
    env.seed_everything(123)
    first = draws()
    env.seed_everything(123)
    second = draws()
    env.seed_everything(124)
    other = draws()
    for a, b, c in zip(first, second, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    # Within one seeding, successive draws differ (the generator advances).
    env.seed_everything(123)
    assert not np.array_equal(draws()[0], draws()[0])


def test_distribution_strategy_on_cpu():
    strategy = env.distribution_strategy()
    assert strategy.num_replicas_in_sync == 1
    with strategy.scope():
        assert keras.Variable(1.0).numpy() == 1.0


# --- eda ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def competition(sample_dir):
    return get_competition("tgs", sample_dir)


def test_coverage_table(competition, sample_dir):
    ids = competition.train_ids()
    table = coverage_table(competition, ids, competition.read_masks(ids))
    assert list(table.index) == ids and table.index.is_unique and len(table) == 150
    assert {"coverage", "empty", "z"} <= set(table.columns)
    assert table["coverage"].between(0, 1).all()
    assert (table["empty"] == (table["coverage"] == 0)).all()
    assert table["empty"].sum() == 57
    assert table["empty"].mean() == pytest.approx(57 / 150)
    assert (table["coverage"] == 1).any()  # the sample holds full masks
    # Coverage and depth independently from the CSVs.
    train = pd.read_csv(sample_dir / "train.csv", dtype=str, keep_default_na=False).set_index("id")
    for image_id in ids[:15]:
        mask = rle.decode(train.at[image_id, "rle_mask"], (101, 101), order="F")
        assert table.at[image_id, "coverage"] == pytest.approx(mask.mean())
    depths = pd.read_csv(sample_dir / "depths.csv", dtype={"id": str}).set_index("id")
    np.testing.assert_array_equal(table["z"].to_numpy(), depths.loc[ids, "z"].to_numpy())


def test_resolution_ceiling_on_the_sample(competition):
    ids = competition.train_ids()
    sizes = [32, 101, 64, 16]
    table = survey_masks(competition, ids, sizes, ceiling_images=len(ids), progress=False).ceiling
    assert list(table.columns) == ["size", "score"] and list(table["size"]) == sizes
    score = dict(zip(table["size"], table["score"]))
    assert score[101] == 1.0  # no resampling at the native size
    ordered = [score[size] for size in (101, 64, 32, 16)]
    assert all(later <= earlier for earlier, later in zip(ordered, ordered[1:])), ordered
    # The sample's tiny masks (20-90 pixels) cannot all survive 16x16 cells of about 40 pixels each.
    assert score[16] < 1.0
    assert all(0 <= value <= 1 for value in ordered)


def test_resolution_ceiling_of_empty_and_full_masks():
    masks = np.stack([np.zeros((101, 101), bool), np.ones((101, 101), bool)])
    scores = ceiling_image_scores(masks, [64, 16], "dice")
    assert scores.shape == (2, 2) and (scores == 1.0).all()


def test_set_precision_auto_follows_the_hardware():
    try:
        expected = "mixed_bfloat16" if env.cpu_has_bfloat16() else "float32"  # no GPU here
        assert env.set_precision("auto") == expected == keras.mixed_precision.global_policy().name
        assert env.set_precision("float32") == "float32"
        with pytest.raises(ValueError, match="unknown precision 'float8'"):
            env.set_precision("float8")
    finally:
        keras.mixed_precision.set_global_policy("float32")
