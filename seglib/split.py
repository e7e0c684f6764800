"""Train/validation splits that keep what matters balanced, with scikit-learn's splitters.

TGS is stratified by coverage class: a validation side with few empty masks would fit a policy that never
predicts "empty". Grouped images (Carvana's 16 angles of a car, a patient's two hands) split by group: with one
car on both sides the model would be validated on the very background and paint it has trained on.
"""

import numpy as np
import pandas as pd
from sklearn.model_selection import (GroupKFold, GroupShuffleSplit, KFold, ShuffleSplit, StratifiedKFold,
                                     StratifiedShuffleSplit)

from seglib.errors import SeglibError


def _groups_and_labels(competition, image_ids):
    """The competition's groups, else its stratification labels (either may be None)."""
    groups = competition.groups(image_ids)
    return groups, None if groups is not None else competition.stratify_labels(image_ids)


def holdout_split(competition, image_ids, validation_fraction, seed):
    """Split ids the way the competition asks: by group if it has groups, else stratified by its labels, else
    at random. Returns (train_ids, validation_ids, summary DataFrame with one row per side)."""
    image_ids = list(image_ids)
    groups, labels = _groups_and_labels(competition, image_ids)
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
    """K splits that together validate every image once, chosen like ``holdout_split`` (grouped, stratified or
    plain K-fold); ``folds=1`` is one hold-out split of ``validation_fraction``.
    Returns (list of (train_ids, validation_ids) per fold, summary DataFrame with one row per fold)."""
    image_ids = list(image_ids)
    if not isinstance(folds, int) or folds < 1:
        raise SeglibError(f"folds must be a positive integer, got {folds!r}")
    if folds == 1:
        splits = [holdout_split(competition, image_ids, validation_fraction, seed)[:2]]
    else:
        splits = _kfold(competition, image_ids, folds, seed)
    summary = pd.DataFrame([{"fold": fold, "train images": len(train), "validation images": len(validation)}
                            for fold, (train, validation) in enumerate(splits)]).set_index("fold")
    return splits, summary


def _kfold(competition, image_ids, folds, seed):
    ids = np.asarray(image_ids)
    groups, labels = _groups_and_labels(competition, image_ids)
    if groups is not None:
        groups = np.asarray(groups)
        if len(np.unique(groups)) < folds:
            raise SeglibError(f"{folds} grouped folds need at least {folds} groups, got {len(np.unique(groups))}")
        splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    elif labels is not None:
        # Classes with fewer members than folds cannot be spread over every fold: merge them first.
        labels = merge_rare_classes(labels, minimum=folds)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(list(ids[np.sort(train_index)]), list(ids[np.sort(validation_index)]))
            for train_index, validation_index in splitter.split(ids, labels, groups=groups)]


def describe_split(image_ids, train_ids, validation_ids, labels=None, groups=None):
    """Images per side, with groups per side or images per label class."""
    side = pd.Series(["train"] * len(train_ids) + ["validation"] * len(validation_ids),
                     index=list(train_ids) + list(validation_ids))
    summary = side.value_counts().sort_index().rename("images").to_frame()
    if groups is not None:
        summary["groups"] = pd.Series(groups, index=list(image_ids))[side.index].groupby(side).nunique()
    if labels is not None:
        labels = pd.Series(labels, index=list(image_ids))[side.index]
        summary = summary.join(pd.crosstab(side, labels).rename(columns=lambda label: f"class {label}"))
    return summary.rename_axis(None).astype(int)


def grouped_split(image_ids, groups, validation_fraction, seed):
    """Split ids so that no group (Carvana: the car; hand bone: the patient) has images on both sides."""
    image_ids, groups = np.asarray(image_ids), np.asarray(groups)
    if len(image_ids) != len(groups):
        raise SeglibError(f"{len(image_ids)} ids but {len(groups)} groups")
    _check_fraction(validation_fraction)
    if len(np.unique(groups)) < 2:
        raise SeglibError(f"a grouped split needs at least 2 groups, got {len(np.unique(groups))}")
    splitter = GroupShuffleSplit(n_splits=1, test_size=validation_fraction, random_state=seed)
    return _first_split(splitter, image_ids, groups=groups)


def stratified_split(image_ids, labels, validation_fraction, seed):
    """Split ids into (train_ids, validation_ids) keeping the label proportions. Classes too small for both
    sides merge into their nearest neighbour first, so a tiny sample never makes scikit-learn refuse."""
    image_ids, labels = np.asarray(image_ids), np.asarray(labels)
    if len(image_ids) != len(labels):
        raise SeglibError(f"{len(image_ids)} ids but {len(labels)} labels")
    _check_fraction(validation_fraction)
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=validation_fraction, random_state=seed)
    return _first_split(splitter, image_ids, merge_rare_classes(labels, minimum=2))


def _check_fraction(validation_fraction):
    if not 0 < validation_fraction < 1:
        raise SeglibError(f"validation_fraction must be in (0, 1), got {validation_fraction}")


def _first_split(splitter, image_ids, labels=None, groups=None):
    """(train_ids, validation_ids) of a scikit-learn splitter's first split, each in the ids' order."""
    train_index, validation_index = next(splitter.split(image_ids, labels, groups=groups))
    return list(image_ids[np.sort(train_index)]), list(image_ids[np.sort(validation_index)])


def merge_rare_classes(labels, minimum):
    """Relabel classes with fewer than ``minimum`` members as the nearest larger class."""
    labels = np.asarray(labels).copy()
    while True:
        values, counts = np.unique(labels, return_counts=True)
        rare = values[counts < minimum]
        if len(rare) == 0 or len(values) == 1:
            return labels
        others = values[values != rare[0]]
        labels[labels == rare[0]] = others[np.argmin(np.abs(others - rare[0]))]
