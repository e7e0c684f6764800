"""What each step of a recipe buys, measured on any competition folder at equal CPU-minutes.

Every recipe trains for the same wall-clock budget on the same fixed split (train / validation / held-out test),
gets its post-processing policy (threshold x min area x fill holes) fitted on the validation images, as notebook
04 does, and is scored with the competition metric on the held-out test images only, with a 95 % bootstrap
interval. The recipes add one step each to the one before:

    previous   the defaults before issue 12: classic TGS-kernel U-Net, BCE, reflect-pad to 128, flip TTA, the
               learning rate halved on plateaus
    cosine     + the learning rate annealed along a cosine over the wall-clock budget
    size112    + reflect-pad 101 -> 112 instead of 128 (fewer pixels per image: more images per minute)
    bf16       + mixed bfloat16 (this CPU has avx512_bf16)
    wide       + 12 base filters instead of 8 (about 2.2x the work per image)
    lovasz     + a Lovasz-hinge fine-tuning stage from the best checkpoint (the last third of the budget)
    strong     + residual blocks, scSE attention and a hypercolumn head (models.STRONG_TGS)

Run, e.g.:
    python benchmarks/quality.py tgs ../shared/realdata/tgs_salt --minutes 6 --test-fraction 0.2
    python benchmarks/quality.py folder ../shared/realdata/isbi_membrane --img-size 256 --minutes 3
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

from seglib import env, models, policy, predict, split, stats, train  # noqa: E402
from seglib.metrics import bootstrap_interval  # noqa: E402
from seglib.competitions import get_competition  # noqa: E402
from seglib.data import Normalization, make_dataset  # noqa: E402
from seglib.geometry import Geometry  # noqa: E402
from seglib.metrics import get_metric  # noqa: E402

# Each recipe is the one before plus one step.
RECIPES = {
    "previous": {"title": "classic U-Net, BCE, pad 128, flip TTA, plateau", "loss": "bce", "geometry": "auto",
                 "tta": "hflip", "fine_tune": None, "model": models.CLASSIC_TGS, "schedule": "plateau",
                 "img_size": 128, "precision": "float32"},
    "cosine": {"title": "+ cosine over the budget", "schedule": "cosine"},
    "size112": {"title": "+ pad to 112", "img_size": 112},
    "bf16": {"title": "+ mixed bfloat16", "precision": "mixed_bfloat16"},
    "wide": {"title": "+ 12 base filters", "model": {**models.CLASSIC_TGS, "base_filters": 12}},
    "lovasz": {"title": "+ Lovasz stage (last third)", "fine_tune": "lovasz"},
    "strong": {"title": "+ residual/scSE/hypercolumn U-Net", "model": models.STRONG_TGS},
}
# The share of a recipe's budget that goes to the Lovasz stage.
FINE_TUNE_SHARE = 1 / 3


def cumulative_recipes(names):
    """The settings of every recipe in ``names``, each inheriting the one before it in RECIPES."""
    settings, resolved = {}, {}
    for name, changes in RECIPES.items():
        settings = {**settings, **changes}
        resolved[name] = settings
    unknown = [name for name in names if name not in RECIPES]
    if unknown:
        raise ValueError(f"unknown recipe(s) {unknown}; known: {list(RECIPES)}")
    return {name: resolved[name] for name in names}


def fixed_split(competition, test_fraction, validation_fraction, seed):
    """(train, validation, test) ids: the competition's own split rule (grouped/stratified) applied twice."""
    development_ids, test_ids, _ = split.holdout_split(competition, competition.train_ids(), test_fraction, seed)
    train_ids, validation_ids, _ = split.holdout_split(competition, development_ids, validation_fraction, seed)
    return train_ids, validation_ids, test_ids


def train_recipe(recipe, competition, train_ids, validation_ids, normalization, arguments, run_dir):
    """Train one recipe within the budget; returns (model, geometry, history)."""
    env.seed_everything(arguments.seed)
    keras.mixed_precision.set_global_policy(recipe["precision"])
    size = recipe["img_size"] if arguments.img_size is None else arguments.img_size
    geometry = Geometry(recipe["geometry"], size, competition.image_size)
    train_dataset = make_dataset(competition, train_ids, geometry, normalization, arguments.batch_size,
                                 shuffle=True, augmentations=competition.default_augmentations, seed=arguments.seed)
    validation_dataset = make_dataset(competition, validation_ids, geometry, normalization, arguments.batch_size)
    model = models.build_model("unet", (size, size, competition.image_channels),
                               output_channels=competition.num_classes, **recipe["model"])
    train.compile_model(model, loss=recipe["loss"], learning_rate=arguments.learning_rate,
                        metric=competition.metric, crop=geometry.crop)
    fine_tune = recipe["fine_tune"]
    first_minutes = arguments.minutes * (1 - FINE_TUNE_SHARE) if fine_tune else arguments.minutes
    history, model = train.fit_recipe(
        model, train_dataset, validation_dataset, run_dir, epochs=arguments.epochs, minutes=first_minutes,
        patience=arguments.patience, fine_tune_loss=fine_tune, fine_tune_epochs=arguments.epochs,
        fine_tune_minutes=arguments.minutes * FINE_TUNE_SHARE, fine_tune_learning_rate=arguments.learning_rate / 10,
        verbose=0, schedule=recipe["schedule"])
    keras.mixed_precision.set_global_policy("float32")
    return model, geometry, history


def predictions(competition, model, geometry, normalization, image_ids, tta, batch_size):
    """Model-size probabilities of ``image_ids`` (float16), streamed."""
    return np.concatenate([outputs.astype(np.float16) for _, outputs in predict.predict_batches(
        model, competition, image_ids, geometry, normalization, batch_size, part="train", progress=False, tta=tta)])


def test_scores(competition, geometry, image_ids, outputs, run_policy):
    """Per-image competition scores of ``outputs`` under ``run_policy``, at the original size."""
    metric = get_metric(competition.metric)
    pairs = predict.truth_and_predictions(competition, image_ids, geometry, outputs)()
    return np.array([metric.image_scores(mask[np.newaxis], policy.apply_policy(probabilities[np.newaxis],
                                                                                run_policy))[0]
                     for mask, probabilities in pairs])


def evaluate(name, recipe, competition, split_ids, normalization, arguments):
    """Train, fit the policy on validation, score the held-out test images: one row of the table."""
    train_ids, validation_ids, test_ids = split_ids
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as run_dir:
        model, geometry, history = train_recipe(recipe, competition, train_ids, validation_ids, normalization,
                                                arguments, run_dir)
    validation = predictions(competition, model, geometry, normalization, validation_ids, recipe["tta"],
                             arguments.batch_size)
    fitted, _ = policy.fit_policy_pairs(predict.truth_and_predictions(competition, validation_ids, geometry,
                                                                      validation), competition.metric)
    test = predictions(competition, model, geometry, normalization, test_ids, recipe["tta"], arguments.batch_size)
    plain = test_scores(competition, geometry, test_ids, test, policy.Policy(0.5))
    scores = test_scores(competition, geometry, test_ids, test, fitted)
    low, high = bootstrap_interval(scores, resamples=1000)  # differences inside it may be noise
    return {"recipe": name, "what": recipe["title"], "test score": scores.mean(), "95% CI low": low,
            "95% CI high": high, "at 0.5": plain.mean(), "validation": fitted.validation_score,
            "epochs": len(history),
            "policy": f"t={fitted.threshold:.2f} area={fitted.min_area} fill={fitted.fill_holes}",
            "minutes": (time.monotonic() - started) / 60}


def markdown_table(table):
    """The table as GitHub markdown, for the README (pandas' to_markdown needs the tabulate package)."""
    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("competition", help="tgs, carvana, handbone or folder")
    parser.add_argument("data_dir", nargs="?", default=None, help="default: the bundled sample")
    parser.add_argument("--minutes", type=float, default=3.0, help="wall-clock training budget per recipe")
    parser.add_argument("--img-size", type=int, help="the model's input side for every recipe (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=500, help="upper bound; the budget or patience ends sooner")
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated, from " + ", ".join(RECIPES))
    parser.add_argument("--output", help="also write the table to this CSV")
    arguments = parser.parse_args(argv)
    # predict_on_batch retraces for the last, smaller batch of every recipe: expected, not worth a warning.
    tf.get_logger().setLevel("ERROR")

    competition = get_competition(arguments.competition, env.resolve_data_dir(arguments.competition,
                                                                              arguments.data_dir))
    recipes = cumulative_recipes([name.strip() for name in arguments.recipes.split(",") if name.strip()])
    train_ids, validation_ids, test_ids = fixed_split(competition, arguments.test_fraction,
                                                      arguments.validation_fraction, arguments.seed)
    print(f"split: {len(train_ids)} train, {len(validation_ids)} validation, {len(test_ids)} held-out test images; "
          f"budget {arguments.minutes} min per recipe on {os.cpu_count()} CPU(s)")
    normalization = Normalization.from_mean_std(
        stats.mean_std(competition.read_image(image_id) for image_id in train_ids))
    empty_score = get_metric(competition.metric).image_scores(
        np.stack([competition.read_mask(image_id) for image_id in test_ids]),
        np.zeros((len(test_ids), *competition.read_mask(test_ids[0]).shape), dtype=bool)).mean()
    print(f"all-empty submission on the test images: {empty_score:.4f}")

    rows = []
    for name, recipe in recipes.items():
        rows.append(evaluate(name, recipe, competition, (train_ids, validation_ids, test_ids), normalization,
                             arguments))
        print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1, float_format="%.4f"), flush=True)

    table = pd.DataFrame(rows)
    print(f"\n{competition.title} ({competition.metric}), {len(test_ids)} held-out images, "
          f"{arguments.minutes} min per recipe:")
    print(markdown_table(table))
    if arguments.output:
        table.to_csv(arguments.output, index=False)


if __name__ == "__main__":
    main()
