"""Train/validation splits that keep what matters balanced, with scikit-learn's splitters.

TGS is stratified by coverage class (empty, then tenths of the image): an unlucky split with few empty
masks in validation would fit a policy that never predicts "empty". Competitions whose images come in
groups (Carvana's 16 angles of one car, a patient's two hands) split by group: with one car on both sides the
model would be validated on the very background and paint it has trained on.
"""

import numpy as np
import pandas as pd
from sklearn.model_selection import (GroupKFold, GroupShuffleSplit, KFold, ShuffleSplit, StratifiedKFold,
                                     StratifiedShuffleSplit)


def holdout_split(competition, image_ids, validation_fraction, seed):
    """Split ids into (train_ids, validation_ids) the way the competition asks: by group if it has groups,
    else stratified by its labels, else at random.

    Returns:
        (train_ids, validation_ids, summary DataFrame with one row per side).
    """
    image_ids = list(image_ids)
    groups = competition.groups(image_ids)
    labels = None if groups is not None else competition.stratify_labels(image_ids)
    if groups is not None:
        train_ids, validation_ids = grouped_split(image_ids, groups, validation_fraction, seed)
    elif labels is not None:
        train_ids, validation_ids = stratified_split(image_ids, labels, validation_fraction, seed)
    else:
        _check_fraction(validation_fraction)
        splitter = ShuffleSplit(n_splits=1, test_size=validation_fraction, random_state=seed)
        train_ids, validation_ids = _first_split(splitter, np.asarray(image_ids))
    return train_ids, validation_ids, describe_split(image_ids, train_ids, validation_ids, labels, groups)


def kfold_split(competition, image_ids, folds, seed, validation_fraction=0.2):
    """K train/validation splits that together validate every image once, chosen like ``holdout_split``:
    grouped K-fold when the competition has groups, stratified K-fold on its labels, else plain K-fold.

    Args:
        competition: the adapter (its ``groups`` and ``stratify_labels``).
        image_ids: the training ids.
        folds: the number of folds; 1 means a single hold-out split of ``validation_fraction``.
        seed: shuffles the folds.
        validation_fraction: the hold-out share when ``folds`` is 1.

    Returns:
        (list of (train_ids, validation_ids) per fold, summary DataFrame with one row per fold).
    """
    image_ids = list(image_ids)
    if not isinstance(folds, int) or folds < 1:
        raise ValueError(f"folds must be a positive integer, got {folds!r}")
    if folds == 1:
        train_ids, validation_ids, _ = holdout_split(competition, image_ids, validation_fraction, seed)
        splits = [(train_ids, validation_ids)]
    else:
        splits = _kfold(competition, image_ids, folds, seed)
    summary = pd.DataFrame([{"fold": fold, "train images": len(train), "validation images": len(validation)}
                            for fold, (train, validation) in enumerate(splits)]).set_index("fold")
    return splits, summary


def _kfold(competition, image_ids, folds, seed):
    ids = np.asarray(image_ids)
    if folds > len(ids):
        raise ValueError(f"{folds} folds need at least {folds} images, got {len(ids)}")
    groups = competition.groups(image_ids)
    labels = None if groups is not None else competition.stratify_labels(image_ids)
    if groups is not None:
        groups = np.asarray(groups)
        if len(np.unique(groups)) < folds:
            raise ValueError(f"{folds} grouped folds need at least {folds} groups, got {len(np.unique(groups))}")
        splitter, split_labels = GroupKFold(n_splits=folds, shuffle=True, random_state=seed), None
    elif labels is not None:
        # Classes with fewer members than folds cannot be spread over every fold: merge them first.
        split_labels = merge_rare_classes(labels, minimum=folds)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        splitter, split_labels = KFold(n_splits=folds, shuffle=True, random_state=seed), None
    return [(list(ids[np.sort(train_index)]), list(ids[np.sort(validation_index)]))
            for train_index, validation_index in splitter.split(ids, split_labels, groups=groups)]


def describe_split(image_ids, train_ids, validation_ids, labels=None, groups=None):
    """Images per side, with groups per side or images per label class."""
    sides = {"train": train_ids, "validation": validation_ids}
    summary = pd.DataFrame({"images": {side: len(ids) for side, ids in sides.items()}})
    if groups is not None:
        group_of = dict(zip(image_ids, groups))
        summary["groups"] = pd.Series({side: len({group_of[i] for i in ids}) for side, ids in sides.items()})
    if labels is not None:
        label_of = dict(zip(image_ids, labels))
        for side, ids in sides.items():
            for label, count in pd.Series([label_of[i] for i in ids]).value_counts().items():
                summary.loc[side, f"class {label}"] = count
        class_columns = sorted((c for c in summary.columns if c.startswith("class ")), key=lambda c: int(c[6:]))
        summary = summary[["images"] + class_columns].fillna(0)
    return summary.astype(int)


def grouped_split(image_ids, groups, validation_fraction, seed):
    """Split ids so that no group has images on both sides (scikit-learn's GroupShuffleSplit).

    Args:
        image_ids: the ids.
        groups: one group name per id (Carvana: the car; hand bone: the patient).
        validation_fraction: share of groups held out, in (0, 1).
        seed: random state of the splitter.
    """
    image_ids = np.asarray(image_ids)
    groups = np.asarray(groups)
    if len(image_ids) != len(groups):
        raise ValueError(f"{len(image_ids)} ids but {len(groups)} groups")
    _check_fraction(validation_fraction)
    if len(np.unique(groups)) < 2:
        raise ValueError(f"a grouped split needs at least 2 groups, got {len(np.unique(groups))}")
    splitter = GroupShuffleSplit(n_splits=1, test_size=validation_fraction, random_state=seed)
    return _first_split(splitter, image_ids, groups=groups)


def _check_fraction(validation_fraction):
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")


def _first_split(splitter, image_ids, labels=None, groups=None):
    """(train_ids, validation_ids) of a scikit-learn splitter's first split, each in the ids' order."""
    train_index, validation_index = next(splitter.split(image_ids, labels, groups=groups))
    return list(image_ids[np.sort(train_index)]), list(image_ids[np.sort(validation_index)])


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
    _check_fraction(validation_fraction)
    labels = merge_rare_classes(labels, minimum=2)
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=validation_fraction, random_state=seed)
    return _first_split(splitter, image_ids, labels)


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
