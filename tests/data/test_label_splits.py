"""dermseg.data.splits on one categorical label (PH2's diagnosis): counts by hand, determinism, coverage."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from dermseg.data.splits import (
    Split,
    label_table,
    stratified_folds_by_label,
    stratified_split_by_label,
)
from dermseg.errors import ConfigError
from tests.conftest import PH2_SAMPLE

#: The shared PH2 sample: 56 common nevi, 56 atypical nevi, 28 melanomas.
PH2_CLASSES = {"common_nevus": 56, "atypical_nevus": 56, "melanoma": 28}


def _ph2_like(seed: int = 0) -> tuple[list[str], list[str]]:
    """140 ids with the sample's class sizes, classes interleaved in a shuffled order."""
    labels = [label for label, n in PH2_CLASSES.items() for _ in range(n)]
    order = np.random.default_rng(seed).permutation(len(labels))
    return [f"IMD{i:03d}" for i in range(len(labels))], [labels[k] for k in order]


def _real_ph2() -> tuple[list[str], list[str]]:
    """Ids and diagnoses of the real sample, read from labels.csv by hand (one X per row)."""
    with open(PH2_SAMPLE / "labels.csv", newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    ids = [row["image"] for row in rows]
    labels = []
    for row in rows:
        (marked,) = [name for name in PH2_CLASSES if row[name].strip().upper() == "X"]
        labels.append(marked)
    return ids, labels


def _class_counts(side: list[str], ids: list[str], labels: list[str]) -> dict[str, int]:
    label_of = dict(zip(ids, labels, strict=True))
    return dict(Counter(label_of[i] for i in side))


def _check_partition(split: Split, ids: list[str]) -> None:
    assert set(split.train).isdisjoint(split.val)
    assert sorted(split.train + split.val) == sorted(ids)
    assert split.train == sorted(split.train) and split.val == sorted(split.val)


# --------------------------------------------------------------------------- exact counts


def _check_ph2_counts(ids: list[str], labels: list[str]) -> Split:
    # n_val = round(140 * 0.3) = 42. Shares: common 42 * 56 / 140 = 16.8, atypical 16.8,
    # melanoma 42 * 28 / 140 = 8.4; floors 16 + 16 + 8 = 40; the 2 left go to the largest
    # remainders (0.8, 0.8): val 17 / 17 / 8, train 39 / 39 / 20.
    split = stratified_split_by_label(ids, labels, val_fraction=0.3, seed=0)
    _check_partition(split, ids)
    assert len(split.val) == 42 and len(split.train) == 98
    assert _class_counts(split.val, ids, labels) == {"common_nevus": 17, "atypical_nevus": 17, "melanoma": 8}
    assert _class_counts(split.train, ids, labels) == {
        "common_nevus": 39,
        "atypical_nevus": 39,
        "melanoma": 20,
    }
    for seed in range(1, 6):  # the counts do not depend on the seed here: no tie to break
        other = stratified_split_by_label(ids, labels, val_fraction=0.3, seed=seed)
        assert _class_counts(other.val, ids, labels) == _class_counts(split.val, ids, labels)
    return split


def test_ph2_sized_split_counts_by_hand() -> None:
    ids, labels = _ph2_like()
    split = _check_ph2_counts(ids, labels)
    assert split.source == "stratified"
    table = label_table(split, ids, labels)
    assert table == {
        "train": {"atypical_nevus": 39, "common_nevus": 39, "melanoma": 20},
        "val": {"atypical_nevus": 17, "common_nevus": 17, "melanoma": 8},
    }


@pytest.mark.skipif(
    not (PH2_SAMPLE / "labels.csv").is_file(), reason=f"real PH2 sample not found at {PH2_SAMPLE}"
)
def test_real_ph2_sample_split() -> None:
    ids, labels = _real_ph2()
    assert Counter(labels) == PH2_CLASSES
    split = _check_ph2_counts(ids, labels)
    assert split == stratified_split_by_label(list(reversed(ids)), list(reversed(labels)), 0.3, seed=0)


def test_largest_remainders_and_ties() -> None:
    """Classes 5, 3, 2 at one half: shares 2.5, 1.5, 1.0; floors 2 + 1 + 1 = 4; the one left goes
    to a class of remainder 0.5 (a tie, drawn by the seed), never to the class of remainder 0."""
    ids = [f"s{i:02d}" for i in range(10)]
    labels = ["a"] * 5 + ["b"] * 3 + ["c"] * 2
    seen = set()
    for seed in range(20):
        counts = _class_counts(stratified_split_by_label(ids, labels, 0.5, seed=seed).val, ids, labels)
        assert counts in ({"a": 3, "b": 1, "c": 1}, {"a": 2, "b": 2, "c": 1}), counts
        seen.add(tuple(sorted(counts.items())))
    assert len(seen) == 2  # both ways of breaking the tie occur
    # a class of one id: 0.3 * 1 rounds to nothing; 10 ids at 0.3: 3 to val, shares 2.7 and 0.3
    counts = _class_counts(stratified_split_by_label(ids, ["a"] * 9 + ["z"], 0.3).val, ids, ["a"] * 9 + ["z"])
    assert counts == {"a": 3}


def test_integer_labels() -> None:
    ids = [f"x{i}" for i in range(12)]
    labels = [0, 1, 2] * 4
    split = stratified_split_by_label(ids, labels, 0.25, seed=3)  # 3 to val: one of each
    assert sorted(_class_counts(split.val, ids, labels).items()) == [(0, 1), (1, 1), (2, 1)]


# --------------------------------------------------------------------------- determinism


def test_deterministic_and_order_independent() -> None:
    ids, labels = _ph2_like()
    a = stratified_split_by_label(ids, labels, 0.3, seed=7)
    assert a == stratified_split_by_label(ids, labels, 0.3, seed=7)
    perm = np.random.default_rng(1).permutation(len(ids))
    assert a == stratified_split_by_label([ids[i] for i in perm], [labels[i] for i in perm], 0.3, seed=7)
    assert stratified_split_by_label(ids, labels, 0.3, seed=8).val != a.val


# --------------------------------------------------------------------------- folds


def test_folds_by_hand_and_partition() -> None:
    ids, labels = _ph2_like()
    parts = stratified_folds_by_label(ids, labels, folds=5, seed=0)
    assert [len(p) for p in parts] == [28] * 5
    assert sorted(i for p in parts for i in p) == sorted(ids)
    assert len({i for p in parts for i in p}) == 140
    counts = [_class_counts(p, ids, labels) for p in parts]
    # the classes end to end (atypical 0..55, common 56..111, melanoma 112..139), dealt in turn:
    # atypical's 56 = 5 * 11 + 1 give fold 0 one more; common starts at fold 56 mod 5 = 1, so fold 1
    # gets its extra one; melanoma's 28 = 5 * 5 + 3 start at fold 112 mod 5 = 2: folds 2, 3, 4 get 6
    assert counts == [
        {"atypical_nevus": 12, "common_nevus": 11, "melanoma": 5},
        {"atypical_nevus": 11, "common_nevus": 12, "melanoma": 5},
        {"atypical_nevus": 11, "common_nevus": 11, "melanoma": 6},
        {"atypical_nevus": 11, "common_nevus": 11, "melanoma": 6},
        {"atypical_nevus": 11, "common_nevus": 11, "melanoma": 6},
    ]
    assert parts == stratified_folds_by_label(list(reversed(ids)), list(reversed(labels)), 5, seed=0)
    assert parts != stratified_folds_by_label(ids, labels, 5, seed=1)


def test_folds_uneven_sizes() -> None:
    ids = [f"s{i:02d}" for i in range(11)]
    labels = ["a"] * 7 + ["b"] * 4
    for seed in range(5):
        parts = stratified_folds_by_label(ids, labels, folds=3, seed=seed)
        assert [len(p) for p in parts] == [4, 4, 3]  # the first 11 mod 3 folds take one more
        assert sorted(i for p in parts for i in p) == ids
        for p in parts:
            assert _class_counts(p, ids, labels).get("b", 0) in (1, 2)  # 4 / 3 = 1.33 each


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_bad_fraction(fraction: float) -> None:
    ids, labels = _ph2_like()
    with pytest.raises(ConfigError, match="val_fraction"):
        stratified_split_by_label(ids, labels, fraction)


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="one label per id"):
        stratified_split_by_label(["a", "b"], ["x"], 0.5)
    with pytest.raises(ConfigError, match="unique"):
        stratified_split_by_label(["a", "a", "b"], ["x", "x", "y"], 0.5)
    with pytest.raises(ConfigError, match="not one string"):
        stratified_split_by_label(["a", "b"], "xy", 0.5)
    with pytest.raises(ConfigError, match="zero ids"):
        stratified_split_by_label([], [], 0.5)
    with pytest.raises(ConfigError, match="leaves a side of the split empty"):
        stratified_split_by_label(["a", "b", "c"], ["x", "y", "x"], 0.1)  # round(0.3) = 0
    with pytest.raises(ConfigError, match="folds must be between 2 and the number of images"):
        stratified_folds_by_label(["a", "b"], ["x", "y"], folds=3)
    with pytest.raises(ConfigError, match="folds"):
        stratified_folds_by_label(["a", "b"], ["x", "y"], folds=1)
    with pytest.raises(ConfigError, match="has no label"):
        label_table(Split(train=["a"], val=["q"]), ["a", "b"], ["x", "y"])


def test_folds_every_class_within_one_of_its_share() -> None:
    """Random class sizes and k: each fold holds floor(n_c / k) or ceil(n_c / k) of each class."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        sizes = rng.integers(1, 30, size=rng.integers(1, 6))
        labels = [f"class{c}" for c, size in enumerate(sizes) for _ in range(size)]
        if len(labels) < 2:
            continue
        ids = [f"id{i:03d}" for i in range(len(labels))]
        k = int(rng.integers(2, min(10, len(ids)) + 1))
        parts = stratified_folds_by_label(ids, labels, k, seed=trial)
        assert sorted(i for p in parts for i in p) == ids
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        for part in parts:
            got = _class_counts(part, ids, labels)
            for c, size in enumerate(sizes):
                assert size // k <= got.get(f"class{c}", 0) <= -(-size // k), (trial, sizes, k)
