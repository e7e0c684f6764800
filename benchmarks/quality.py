"""What each step of the winning TGS/Carvana recipe buys, measured on any competition folder.

Every recipe trains the same way for the same wall-clock budget on the same fixed split (train / validation /
held-out test) and is scored with the competition metric on the held-out test images only. The recipes add
one step each to the one before:

    baseline   the classic TGS-kernel U-Net with BCE, images resized to the model size, threshold 0.5
    bce_dice   + BCE + per-image Dice loss
    pad_tta    + reflect-padding instead of resizing (where the images fit) and horizontal-flip TTA
    lovasz     + a Lovasz-hinge fine-tuning stage from the best checkpoint (a third of the same budget)
    policy     + the post-processing policy (threshold x min area x fill holes) fitted on validation
    strong     + residual blocks, scSE attention and a hypercolumn head (models.STRONG_TGS)

Run, e.g.:
    python benchmarks/quality.py tgs --minutes 3
    python benchmarks/quality.py folder ../shared/realdata/isbi_membrane --img-size 256 --minutes 3
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

from seglib import env, models, policy, predict, split, stats, train  # noqa: E402
from seglib.competitions import get_competition  # noqa: E402
from seglib.data import Normalization, make_dataset  # noqa: E402
from seglib.geometry import Geometry  # noqa: E402
from seglib.metrics import get_metric  # noqa: E402

# Each recipe is the one before plus one step; "reuses" scores the previous recipe's model again.
RECIPES = {
    "baseline": {"title": "classic U-Net, BCE", "loss": "bce", "geometry": "resize", "tta": "none",
                 "fine_tune": None, "policy": False, "model": models.CLASSIC_TGS},
    "bce_dice": {"title": "+ BCE/Dice", "loss": "bce_dice"},
    "pad_tta": {"title": "+ reflect-pad & flip TTA", "geometry": "auto", "tta": "hflip"},
    "lovasz": {"title": "+ Lovasz stage", "fine_tune": "lovasz"},
    "policy": {"title": "+ policy (threshold x min area x fill)", "policy": True, "reuses": "lovasz"},
    "strong": {"title": "+ residual/scSE/hypercolumn U-Net", "model": models.STRONG_TGS},
}
# The share of a recipe's budget that goes to the Lovasz stage.
FINE_TUNE_SHARE = 1 / 3
DEFAULT_POLICY = {"threshold": 0.5, "fill_holes": False}


def cumulative_recipes(names):
    """The settings of every recipe in ``names``, each inheriting the one before it in RECIPES."""
    settings, resolved = {}, {}
    for name, changes in RECIPES.items():
        settings = {**{key: value for key, value in settings.items() if key != "reuses"}, **changes}
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
    geometry = Geometry(recipe["geometry"], arguments.img_size, competition.image_size)
    train_dataset = make_dataset(competition, train_ids, geometry, normalization, arguments.batch_size,
                                 shuffle=True, augmentations=competition.default_augmentations, seed=arguments.seed)
    validation_dataset = make_dataset(competition, validation_ids, geometry, normalization, arguments.batch_size)
    model = models.build_model("unet", (arguments.img_size, arguments.img_size, competition.image_channels),
                               output_channels=competition.num_classes, **recipe["model"])
    train.compile_model(model, loss=recipe["loss"], learning_rate=arguments.learning_rate)
    fine_tune = recipe["fine_tune"]
    first_minutes = arguments.minutes * (1 - FINE_TUNE_SHARE) if fine_tune else arguments.minutes
    history, model = train.fit_recipe(
        model, train_dataset, validation_dataset, run_dir, epochs=arguments.epochs, minutes=first_minutes,
        patience=arguments.patience, fine_tune_loss=fine_tune, fine_tune_epochs=arguments.epochs,
        fine_tune_minutes=arguments.minutes * FINE_TUNE_SHARE, verbose=0)
    return model, geometry, history


def score(competition, model, geometry, normalization, image_ids, tta, run_policy, batch_size):
    """Per-image competition scores of ``model`` under ``run_policy`` (streamed, at the original size)."""
    metric = get_metric(competition.metric)
    scores = []
    for image_id, probabilities in predict.predict_images(model, competition, image_ids, geometry, normalization,
                                                          batch_size, part="train", progress=False, tta=tta):
        mask = policy.apply_policy(probabilities[np.newaxis], run_policy)
        scores.append(metric.image_scores(competition.read_mask(image_id)[np.newaxis], mask))
    return np.concatenate(scores)


def fit_validation_policy(competition, model, geometry, normalization, validation_ids, tta, batch_size):
    """The joint policy fitted on the validation predictions."""
    outputs = predict.predict_model_size(model, competition, validation_ids, geometry, normalization, batch_size,
                                         part="train", progress=False, tta=tta)
    fitted, _ = policy.fit_policy_pairs(predict.truth_and_predictions(competition, validation_ids, geometry, outputs),
                                        competition.metric)
    return fitted


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
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=500, help="upper bound; the budget or patience ends sooner")
    parser.add_argument("--patience", type=int, default=20)
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

    rows, trained = [], {}
    for name, recipe in recipes.items():
        started = time.monotonic()
        if "reuses" in recipe and recipe["reuses"] in trained:
            model, geometry, history = trained[recipe["reuses"]]
        else:
            with tempfile.TemporaryDirectory() as run_dir:
                model, geometry, history = train_recipe(recipe, competition, train_ids, validation_ids,
                                                        normalization, arguments, run_dir)
        trained[name] = (model, geometry, history)
        run_policy, interval = DEFAULT_POLICY, (np.nan, np.nan)
        if recipe["policy"]:
            run_policy = fit_validation_policy(competition, model, geometry, normalization, validation_ids,
                                               recipe["tta"], arguments.batch_size)
        test_scores = score(competition, model, geometry, normalization, test_ids, recipe["tta"], run_policy,
                            arguments.batch_size)
        # The 95 % bootstrap interval over the held-out images: differences inside it may be noise.
        resamples = np.random.default_rng(0).integers(0, len(test_scores), (1000, len(test_scores)))
        interval = np.percentile(test_scores[resamples].mean(axis=1), [2.5, 97.5])
        rows.append({"recipe": name, "what": recipe["title"], "test score": test_scores.mean(),
                     "95% CI low": interval[0], "95% CI high": interval[1], "epochs": len(history),
                     "policy": "-" if not recipe["policy"] else
                     f"t={run_policy['threshold']:.2f} area={run_policy.get('min_area', 0)} "
                     f"fill={run_policy['fill_holes']}",
                     "minutes": (time.monotonic() - started) / 60})
        print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1, float_format="%.4f"), flush=True)

    table = pd.DataFrame(rows)
    print(f"\n{competition.title} ({competition.metric}), {len(test_ids)} held-out images, "
          f"{arguments.minutes} min per recipe, img size {arguments.img_size}:")
    print(markdown_table(table))
    if arguments.output:
        table.to_csv(arguments.output, index=False)


if __name__ == "__main__":
    main()
