"""Train/validation splits that keep what matters balanced, with scikit-learn's splitters.

TGS is stratified by coverage class (empty, then tenths of the image): an unlucky split with few empty
masks in validation would fit a policy that never predicts "empty". Competitions whose images come in
groups (Carvana's 16 angles of one car, a patient's two hands) split by group instead, later.
"""

import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit


def stratified_split(image_ids, labels, validation_fraction, seed):
    """Split ids into (train_ids, validation_ids) keeping the label proportions.

    Classes too small to appear on both sides are merged into their nearest neighbour first, so a tiny
    sample never makes scikit-learn refuse the split.

    Args:
        image_ids: the ids.
        labels: one integer class per id (e.g. the coverage class).
        validation_fraction: share of ids held out, in (0, 1).
        seed: random state of the splitter.
    """
    image_ids = np.asarray(image_ids)
    labels = np.asarray(labels)
    if len(image_ids) != len(labels):
        raise ValueError(f"{len(image_ids)} ids but {len(labels)} labels")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    labels = merge_rare_classes(labels, minimum=2)
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=validation_fraction, random_state=seed)
    train_index, validation_index = next(splitter.split(image_ids, labels))
    return list(image_ids[np.sort(train_index)]), list(image_ids[np.sort(validation_index)])


def merge_rare_classes(labels, minimum):
    """Relabel classes with fewer than ``minimum`` members as the nearest larger class."""
    labels = np.asarray(labels).copy()
    while True:
        values, counts = np.unique(labels, return_counts=True)
        rare = values[counts < minimum]
        if len(rare) == 0 or len(values) == 1:
            return labels
        value = rare[0]
        others = values[values != value]
        labels[labels == value] = others[np.argmin(np.abs(others - value))]
