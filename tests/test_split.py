"""stratified_split: balanced, disjoint, complete and seeded train/validation splits."""

import collections

import numpy as np
import pytest

from seglib.split import merge_rare_classes, stratified_split


def make_labels(counts):
    """Ids "id000".. and labels with ``counts[label]`` members each, interleaved by a fixed permutation."""
    labels = np.concatenate([np.full(count, label) for label, count in enumerate(counts)])
    labels = labels[np.random.default_rng(0).permutation(len(labels))]
    ids = [f"id{index:03d}" for index in range(len(labels))]
    return ids, labels


@pytest.mark.parametrize("fraction", [0.2, 0.25, 0.5])
def test_class_proportions_kept(fraction):
    counts = [57, 12, 9, 10, 11, 9, 8, 10, 9, 7, 8]
    ids, labels = make_labels(counts)
    label_of = dict(zip(ids, labels))
    train, validation = stratified_split(ids, labels, fraction, seed=1)
    in_validation = collections.Counter(label_of[image_id] for image_id in validation)
    for label, count in enumerate(counts):
        assert abs(in_validation[label] - fraction * count) <= 1, (label, in_validation[label], fraction * count)
    assert abs(len(validation) - fraction * len(ids)) <= 1


def test_no_overlap_and_union_is_everything():
    ids, labels = make_labels([30, 20, 10])
    train, validation = stratified_split(ids, labels, 0.3, seed=4)
    assert not set(train) & set(validation)
    assert sorted(train + validation) == sorted(ids)
    assert len(train) + len(validation) == len(ids)
    assert all(isinstance(image_id, str) for image_id in train + validation)


def test_deterministic_for_a_seed_and_different_for_another():
    ids, labels = make_labels([40, 30, 30])
    first = stratified_split(ids, labels, 0.2, seed=7)
    assert stratified_split(ids, labels, 0.2, seed=7) == first
    assert stratified_split(ids, labels, 0.2, seed=8)[1] != first[1]


def test_rare_classes_do_not_crash():
    ids, labels = make_labels([20, 1, 15, 1, 10])  # classes 1 and 3 have a single member
    train, validation = stratified_split(ids, labels, 0.2, seed=0)
    assert sorted(train + validation) == sorted(ids)
    assert not set(train) & set(validation)


def test_merge_rare_classes_moves_to_nearest():
    merged = merge_rare_classes(np.array([0, 0, 0, 4, 5, 5, 9, 9]), minimum=2)
    assert list(merged) == [0, 0, 0, 5, 5, 5, 9, 9]


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="3 ids but 2 labels"):
        stratified_split(["a", "b", "c"], [0, 1], 0.5, seed=0)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_bad_fraction(fraction):
    ids, labels = make_labels([10, 10])
    with pytest.raises(ValueError, match="validation_fraction"):
        stratified_split(ids, labels, fraction, seed=0)


def test_split_of_the_sample_by_coverage_class(sample_dir):
    from seglib.competitions import get_competition

    competition = get_competition("tgs", sample_dir)
    ids = competition.train_ids()
    labels = competition.stratify_labels(ids)
    assert len(labels) == len(ids) and set(labels) <= set(range(11))
    train, validation = stratified_split(ids, labels, 0.2, seed=0)
    empty = {image_id for image_id, label in zip(ids, labels) if label == 0}
    assert len(empty) == 57
    assert abs(len(empty & set(validation)) - 0.2 * 57) <= 1
    assert sorted(train + validation) == sorted(ids)
