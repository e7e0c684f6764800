"""Write the submission CSV from streamed test predictions, and validate it before calling it done.

predict (batch by batch) -> original size -> policy -> RLE -> CSV rows in a temporary file -> rename.
The validator checks what Kaggle would reject, plus what Kaggle would silently score as wrong.
"""

import csv

import numpy as np
import pandas as pd

from seglib import rle
from seglib.artifacts import atomic_path
from seglib.policy import apply_policy
from seglib.predict import predict_images


class SubmissionError(ValueError):
    """A submission file that Kaggle would reject or mis-score."""


def write_submission(path, competition, model, geometry, normalization, policy, batch_size, image_ids=None,
                     tta="none"):
    """Predict every test image and write the submission CSV atomically, then validate it.

    Args:
        path: where to write (e.g. RUN_DIR/submission.csv).
        competition: the adapter (its test ids, RLE order and submission rows).
        model, geometry, normalization: as trained; ``model`` may be a list (the fold models, averaged).
        policy: the post-processing policy from notebook 04.
        batch_size: images per prediction batch.
        image_ids: test ids to predict; default all of them (a subset will fail validation).
        tta: test-time augmentation, the same as the policy was fitted with ("none", "hflip", "d4").

    Returns:
        The validation summary of ``validate_submission``.
    """
    image_ids = competition.test_ids() if image_ids is None else list(image_ids)
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(competition.submission_columns)
            for image_id, probabilities in predict_images(model, competition, image_ids, geometry,
                                                          normalization, batch_size, part="test", tta=tta):
                mask = apply_policy(probabilities[np.newaxis], policy)[0]
                writer.writerows(competition.submission_rows(image_id, mask))
        summary = validate_submission(temporary, competition)
    return summary


def validate_submission(path, competition):
    """Check a submission against the competition's sample submission.

    Checks the header, that the key column(s) hold exactly the expected set with no duplicates, and that
    every RLE parses (pairs, positive lengths, sorted, inside the image).

    Returns:
        A dict with the row count, the count of empty masks and the mean predicted coverage.

    Raises:
        SubmissionError naming the row or id at fault.
    """
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    expected_columns = list(competition.submission_columns)
    if list(table.columns) != expected_columns:
        raise SubmissionError(f"{path}: header is {list(table.columns)}, expected {expected_columns}")
    expected = competition.expected_submission()
    key_columns = list(expected.columns)
    # A row's key as text ("id", or "image_name/class" for several key columns), for lookups and messages.
    keys = table[key_columns].astype(str).agg("/".join, axis=1)
    duplicated = keys[keys.duplicated()]
    if len(duplicated):
        raise SubmissionError(f"{path}: duplicate row(s) for {list(duplicated[:5])}")
    expected_keys = set(expected.astype(str).agg("/".join, axis=1))
    missing, unknown = expected_keys - set(keys), set(keys) - expected_keys
    if missing or unknown:
        raise SubmissionError(f"{path}: {len(missing)} expected row(s) missing (e.g. {sorted(missing)[:3]}), "
                              f"{len(unknown)} unknown (e.g. {sorted(unknown)[:3]})")
    height, width = competition.image_size
    rle_column = expected_columns[-1]
    covered_pixels = 0
    for key, text in zip(keys, table[rle_column]):
        try:
            starts, ends = rle.parse(text, height * width, name=f"{path} row {key}")
        except ValueError as error:
            raise SubmissionError(str(error)) from None
        covered_pixels += int((ends - starts).sum())
    return {
        "rows": len(table),
        "empty_masks": int((table[rle_column].str.strip() == "").sum()),
        "mean_coverage": covered_pixels / max(1, len(table)) / (height * width),
    }


def submission_masks(table, competition, image_ids):
    """The masks of ``image_ids`` decoded back from a submission table, shaped like ``read_mask``'s.

    The rows of an image are found by the keys ``competition.submission_rows`` gives it, so this works for one
    row per image (TGS, Carvana) and one row per image and class (hand bone) alike.
    """
    key_columns = list(table.columns[:-1])
    rle_by_key = dict(zip(map(tuple, table[key_columns].astype(str).to_numpy()), table[table.columns[-1]]))
    mask_shape = tuple(competition.image_size) + ((competition.num_classes,) if competition.num_classes > 1 else ())
    masks = []
    for image_id in image_ids:
        keys = [tuple(map(str, row[:-1])) for row in competition.submission_rows(image_id, np.zeros(mask_shape, bool))]
        missing = [key for key in keys if key not in rle_by_key]
        if missing:
            raise SubmissionError(f"submission has no row for {'/'.join(missing[0])}")
        channels = [rle.decode(rle_by_key[key], competition.image_size, competition.rle_order) for key in keys]
        masks.append(np.stack(channels, axis=-1) if competition.num_classes > 1 else channels[0])
    return np.stack(masks)
