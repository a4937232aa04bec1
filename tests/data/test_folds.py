"""k stratified folds and the hold-out split (``dermseg.data.splits``) of a dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dermseg.data.splits import split_layout, stratified_folds


def test_stratified_folds_partition_the_ids() -> None:
    rng = np.random.default_rng(0)
    ids = [f"ISIC_{i:07d}" for i in range(50)]
    presence = rng.random((50, 5)) < [0.2, 0.3, 0.1, 0.6, 0.1]
    folds = stratified_folds(ids, presence, 5, seed=1)
    assert sorted(i for f in folds for i in f) == ids and all(len(f) == 10 for f in folds)
    assert folds == stratified_folds(list(reversed(ids)), presence[::-1], 5, seed=1)


def test_fold_and_holdout_splits_of_a_dataset(synth_dataset: Path) -> None:
    official = split_layout(synth_dataset)
    assert official.source == "official" and len(official.val) == 4
    holdout = split_layout(synth_dataset, val_fraction=0.25, holdout=True)
    assert (
        holdout.source == "stratified" and set(holdout.val) <= set(official.train) and len(holdout.val) == 3
    )
    folds = [split_layout(synth_dataset, folds=3, fold=k) for k in range(3)]
    assert sorted(i for f in folds for i in f.val) == sorted(official.train)
    assert all(set(f.val).isdisjoint(f.train) for f in folds)
