"""The stronger U-Net options of build_unet: residual blocks, scSE, hypercolumn and the image-level empty head."""

import subprocess
import sys

import numpy as np
import pytest

from seglib.backend import keras
from seglib.models import CLASSIC_TGS, STRONG_TGS, build_model, build_unet, has_empty_head

SIZE = 32
BATCH = 2
SMALL = {"depth": 2, "base_filters": 4}
# The parameters of build_unet((128, 128, 1), **CLASSIC_TGS), measured before the options existed.
CLASSIC_TGS_PARAMETERS = 485673

CONFIGURATIONS = {
    "plain": {},
    "residual": {"residual": True},
    "scse": {"scse": True},
    "hypercolumn": {"hypercolumn": True},
    "empty_head": {"empty_head": True},
    "all": {"residual": True, "scse": True, "hypercolumn": True, "empty_head": True, "batch_norm": True,
            "dropout": 0.1},
}
# Layers each option must add (for SMALL: decoder levels 1 and 0).
ADDED_LAYERS = {
    "residual": ["down0_shortcut", "bottleneck_residual_add", "up0_residual_add"],
    "scse": ["up1_scse_excite", "up1_scse_spatial_gate", "up0_scse"],
    "hypercolumn": ["hypercolumn_up1", "hypercolumn"],
    "empty_head": ["non_empty_pool", "non_empty"],
}
ADDED_LAYERS["all"] = [name for names in ADDED_LAYERS.values() for name in names] + ["down0_shortcut_bn"]


def small_unet(configuration, output_channels=1, seed=0):
    keras.utils.set_random_seed(seed)
    return build_unet((SIZE, SIZE, 1), output_channels=output_channels, **SMALL, **CONFIGURATIONS[configuration])


def random_batch(output_channels=1, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(BATCH, SIZE, SIZE, 1)).astype("float32")
    masks = (rng.uniform(size=(BATCH, SIZE, SIZE, output_channels)) > 0.7).astype("float32")
    masks[0] = 0.0  # one empty image, so "non_empty" has both classes
    return images, masks


def layer_names(model):
    return {layer.name for layer in model.layers}


# --- building ------------------------------------------------------------------------------------------------


def test_classic_tgs_parameter_count_unchanged():
    model = build_unet((128, 128, 1), **CLASSIC_TGS)
    assert model.count_params() == CLASSIC_TGS_PARAMETERS
    assert not has_empty_head(model)
    assert not any(word in name for name in layer_names(model)
                   for word in ("scse", "hypercolumn", "residual", "shortcut", "non_empty"))


@pytest.mark.parametrize("configuration", [name for name in CONFIGURATIONS if name != "plain"])
def test_each_option_changes_the_model(configuration):
    plain = small_unet("plain", output_channels=2)
    model = small_unet(configuration, output_channels=2)
    assert model.count_params() != plain.count_params()
    missing = set(ADDED_LAYERS[configuration]) - layer_names(model)
    assert not missing, missing
    # The pixel head keeps its names and float32 in every configuration.
    assert model.get_layer("logits").dtype_policy.name == "float32"
    images, _ = random_batch()
    outputs = model.predict_on_batch(images)
    if CONFIGURATIONS[configuration].get("empty_head"):
        assert has_empty_head(model)
        assert set(outputs) == {"logits", "non_empty"}
        assert outputs["non_empty"].shape == (BATCH, 2)
        assert model.get_layer("non_empty").dtype_policy.name == "float32"
        logits = outputs["logits"]
    else:
        assert not has_empty_head(model)
        logits = outputs
    assert logits.shape == (BATCH, SIZE, SIZE, 2)
    assert np.isfinite(logits).all()
    assert (logits < 0).any() and (logits > 0).any(), "logits, not probabilities: no sigmoid at the end"


def test_residual_shortcut_only_when_the_filter_count_changes():
    model = small_unet("residual")
    # Every block here changes the filter count: each level doubles it, each up-step concatenates a skip.
    assert {"down0_shortcut", "down1_shortcut", "bottleneck_shortcut", "up1_shortcut", "up0_shortcut"} <= \
        layer_names(model)
    same_filters = build_unet((SIZE, SIZE, 4), depth=1, base_filters=4, residual=True)
    assert "down0_shortcut" not in layer_names(same_filters)
    assert "down0_residual_add" in layer_names(same_filters)


def test_hypercolumn_head_sees_every_decoder_level():
    model = small_unet("hypercolumn")
    # up1 (8 filters) upsampled plus up0 (4 filters): the 1x1 head has 12 inputs.
    assert tuple(model.get_layer("hypercolumn").output.shape) == (None, SIZE, SIZE, 12)
    assert model.get_layer("logits").get_weights()[0].shape == (1, 1, 12, 1)


@pytest.mark.slow
def test_strong_tgs_and_registry():
    strong = build_unet((SIZE, SIZE, 1), **STRONG_TGS)
    assert strong.count_params() > build_unet((SIZE, SIZE, 1), **CLASSIC_TGS).count_params()
    assert not has_empty_head(strong)
    assert {"down0_shortcut_bn", "up3_scse", "hypercolumn_up3", "hypercolumn"} <= layer_names(strong)
    registered = build_model("unet", (SIZE, SIZE, 1), output_channels=3, **SMALL, scse=True, empty_head=True)
    assert has_empty_head(registered)
    assert tuple(registered.output["non_empty"].shape) == (None, 3)


# --- training ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
def test_one_training_step(configuration):
    model = small_unet(configuration)
    images, masks = random_batch()
    if has_empty_head(model):
        losses = {"logits": keras.losses.BinaryCrossentropy(from_logits=True),
                  "non_empty": keras.losses.BinaryCrossentropy(from_logits=True)}
        targets = {"logits": masks, "non_empty": masks.max(axis=(1, 2))}
    else:
        losses, targets = keras.losses.BinaryCrossentropy(from_logits=True), masks
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=losses, run_eagerly=True)
    watched = ["down0_conv1", "up0_conv2", "logits"] + (["non_empty"] if has_empty_head(model) else [])
    before = {name: model.get_layer(name).get_weights()[0] for name in watched}
    history = model.fit(images, targets, batch_size=BATCH, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for name in watched:
        assert not np.array_equal(model.get_layer(name).get_weights()[0], before[name]), name


# --- saving and loading --------------------------------------------------------------------------------------

LOAD_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
import keras
folder = Path(sys.argv[1])
images = np.load(folder / "images.npy")
for name in sys.argv[2:]:
    model = keras.models.load_model(folder / f"{name}.keras")
    outputs = model.predict_on_batch(images)
    if not isinstance(outputs, dict):
        outputs = {"logits": outputs}
    for key, value in outputs.items():
        expected = np.load(folder / f"{name}_{key}.npy")
        assert np.allclose(value, expected, atol=1e-5), (name, key, np.abs(value - expected).max())
    assert ("non_empty" in model.output_names) == ("non_empty" in outputs), (name, model.output_names)
    print("OK", name, sorted(outputs))
"""


@pytest.mark.slow
def test_every_configuration_loads_in_a_fresh_process(tmp_path):
    images, _ = random_batch(seed=1)
    np.save(tmp_path / "images.npy", images)
    for configuration in CONFIGURATIONS:
        model = small_unet(configuration, seed=2)
        model.save(tmp_path / f"{configuration}.keras")
        outputs = model.predict_on_batch(images)
        if not isinstance(outputs, dict):
            outputs = {"logits": outputs}
        for key, value in outputs.items():
            np.save(tmp_path / f"{configuration}_{key}.npy", value)
    # has_empty_head must also recognise a loaded model.
    assert has_empty_head(keras.models.load_model(tmp_path / "empty_head.keras"))
    assert not has_empty_head(keras.models.load_model(tmp_path / "plain.keras"))

    # No seglib import: the saved models need only built-in Keras layers.
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(tmp_path), *CONFIGURATIONS],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("OK") == len(CONFIGURATIONS), result.stdout
