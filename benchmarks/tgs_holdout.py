"""Judge the notebooks' TGS defaults the way the project is judged: train on real images in the Kaggle layout,
submit for images the run never saw, score the submission with the official metric.

    python benchmarks/tgs_holdout.py make ../shared/realdata/tgs_salt /tmp/tgs-holdout      # 2,560 train / 640 test
    python -m seglib run --run-dir /tmp/tgs-run -p DATA_DIR /tmp/tgs-holdout -p TRAIN_MINUTES 15
    python benchmarks/tgs_holdout.py score /tmp/tgs-holdout /tmp/tgs-run/submission.csv [--against other.csv]

``make`` writes a competition folder in the Kaggle layout (train/images, train/masks, train.csv, depths.csv,
test/images, sample_submission.csv; image files are links into the real data) and keeps the held-out masks in
``<folder>-truth/``, outside the folder the run reads. ``score`` prints the mean official score with a 95 %
bootstrap interval, the all-empty baseline on the same images, and where the score is lost (salt missed or
invented per image, or imperfect masks on the salt images found); ``--against`` another submission adds the
paired difference on the same images.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from seglib import rle
from seglib.competitions import get_competition
from seglib.metrics import bootstrap_interval, tgs_image_scores


def make(source, target, test_size, seed):
    """Split ``source`` (a real TGS training folder) into ``target`` (train + test) and ``target-truth``."""
    source, target = Path(source).resolve(), Path(target)
    table = pd.read_csv(source / "train.csv", dtype=str, keep_default_na=False)
    depths = pd.read_csv(source / "depths.csv", dtype={"id": str})
    # Stratified by whether salt is present, so both parts keep the real empty share (~39 %).
    train, test = train_test_split(table, test_size=test_size, random_state=seed, stratify=table["rle_mask"] == "")
    truth = Path(f"{target}-truth")
    for folder in (target / "train/images", target / "train/masks", target / "test/images", truth):
        folder.mkdir(parents=True, exist_ok=True)
    for image_id in train["id"]:
        for part in ("images", "masks"):
            link = target / "train" / part / f"{image_id}.png"
            link.unlink(missing_ok=True)
            link.symlink_to(source / "train" / part / f"{image_id}.png")
    for image_id in test["id"]:
        (target / "test/images" / f"{image_id}.png").unlink(missing_ok=True)
        (target / "test/images" / f"{image_id}.png").symlink_to(source / "train/images" / f"{image_id}.png")
    train.sort_values("id").to_csv(target / "train.csv", index=False)
    depths.to_csv(target / "depths.csv", index=False)
    pd.DataFrame({"id": sorted(test["id"]), "rle_mask": "1 1"}).to_csv(target / "sample_submission.csv", index=False)
    test.sort_values("id").to_csv(truth / "test_truth.csv", index=False)
    print(f"{target}: {len(train)} train, {len(test)} test images; held-out truth in {truth}")


def image_scores(target, submission):
    """The official TGS score of each held-out image (in ``test_truth.csv`` order) and the true masks."""
    competition = get_competition("tgs", target)
    truth = pd.read_csv(Path(f"{Path(target)}-truth") / "test_truth.csv", dtype=str, keep_default_na=False)
    submitted = pd.read_csv(submission, dtype=str, keep_default_na=False).set_index("id")
    missing = sorted(set(truth["id"]) - set(submitted.index))
    if missing:
        raise ValueError(f"{submission}: no rows for {len(missing)} held-out ids, e.g. {missing[:3]}")
    shape = competition.image_size
    true = np.stack([rle.decode(code, shape, order="F") for code in truth["rle_mask"]])
    predicted = np.stack([rle.decode(submitted.at[image_id, "rle_mask"], shape, order="F") for image_id in truth["id"]])
    return tgs_image_scores(true, predicted), true, predicted


def score(target, submission, against=None):
    """Print the official TGS score of ``submission`` on the held-out images, with a 95 % bootstrap interval, where
    the rest is lost, and, ``against`` another submission, the paired difference: both scored on the same images,
    its interval leaves out which images were held out, so it is several times narrower than either score's."""
    scores, true, predicted = image_scores(target, submission)
    low, high = bootstrap_interval(scores)
    empty = tgs_image_scores(true, np.zeros_like(true)).mean()
    print(f"{submission}: official TGS score {scores.mean():.4f} (95% CI {low:.4f}-{high:.4f}) on {len(scores)} "
          f"held-out images; all-empty masks {empty:.4f}")
    # Where the rest is lost: a salt image predicted empty (or the reverse) scores 0, whatever the pixels.
    has_salt, found = true.any(axis=(1, 2)), predicted.any(axis=(1, 2))
    for name, part in (("salt images predicted empty", has_salt & ~found),
                       ("empty images predicted with salt", ~has_salt & found),
                       ("salt images found", has_salt & found)):
        print(f"  {name}: {part.sum()} of {len(scores)}, mean score {scores[part].mean() if part.any() else 0:.3f}, "
              f"score lost {(1 - scores[part]).sum() / len(scores):.3f}")
    if against:
        difference = scores - image_scores(target, against)[0]
        low, high = bootstrap_interval(difference)
        print(f"  minus {against}: {difference.mean():+.4f} (95% paired CI {low:+.4f} to {high:+.4f}; a second run "
              f"of the same recipe also differs: training is not repeatable bit for bit)")
    return scores.mean()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    making = commands.add_parser("make", help="write the train/test folder and its held-out truth")
    making.add_argument("source", help="the real TGS training folder (../shared/realdata/tgs_salt)")
    making.add_argument("target")
    making.add_argument("--test-size", type=int, default=640)
    making.add_argument("--seed", type=int, default=2018)
    scoring = commands.add_parser("score", help="score a submission on the held-out images")
    scoring.add_argument("target")
    scoring.add_argument("submission")
    scoring.add_argument("--against", help="another submission: print the paired difference on the same images")
    arguments = parser.parse_args(argv)
    if arguments.command == "make":
        make(arguments.source, arguments.target, arguments.test_size, arguments.seed)
    else:
        score(arguments.target, arguments.submission, arguments.against)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
