from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dermseg.cli import main
from dermseg.data.splits import presence_table, split_layout, stratified_split
from dermseg.errors import ConfigError

ISIC_FREQ = np.array([0.23, 0.26, 0.07, 0.59, 0.04])


def _labels(n: int, seed: int = 3) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"ISIC_{i:07d}" for i in range(n)], rng.random((n, 5)) < ISIC_FREQ


def test_sizes_disjoint_and_complete() -> None:
    ids, presence = _labels(500)
    s = stratified_split(ids, presence, val_fraction=0.2, seed=0)
    assert len(s.val) == 100 and len(s.train) == 400
    assert set(s.train).isdisjoint(s.val) and set(s.train) | set(s.val) == set(ids)


def test_rare_attributes_are_balanced_better_than_random() -> None:
    ids, presence = _labels(2594)
    s = stratified_split(ids, presence, val_fraction=0.1, seed=0)
    table = presence_table(s, ids, presence)
    overall = presence.mean(0)
    gaps = np.abs(np.array(list(table["val"].values())) - overall)
    # iterative stratification keeps every attribute within 0.5 point of its overall rate
    assert gaps.max() < 0.005, table
    # a plain random split of the same size is typically much worse on the rare ones
    rng = np.random.default_rng(0)
    worst_random = max(
        np.abs(presence[rng.permutation(2594)[:259]].mean(0) - overall).max() for _ in range(20)
    )
    assert worst_random > gaps.max()


def test_deterministic_and_order_independent() -> None:
    ids, presence = _labels(300)
    a = stratified_split(ids, presence, 0.1, seed=7)
    perm = np.random.default_rng(1).permutation(300)
    b = stratified_split([ids[i] for i in perm], presence[perm], 0.1, seed=7)
    assert a == b
    c = stratified_split(ids, presence, 0.1, seed=8)
    assert c.val != a.val


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_bad_fraction(fraction: float) -> None:
    ids, presence = _labels(10)
    with pytest.raises(ConfigError, match="val_fraction"):
        stratified_split(ids, presence, fraction)


def test_official_validation_used_when_present(official_dataset: Path, tmp_path: Path) -> None:
    s = split_layout(official_dataset)
    assert s.source == "official"
    assert s.val == ["ISIC_0000010", "ISIC_0000011"] and len(s.train) == 4
    out = tmp_path / "split.json"
    assert main(["split", str(official_dataset), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["val"] == s.val


def test_flat_folder_is_stratified(flat_dataset: Path) -> None:
    s = split_layout(flat_dataset, val_fraction=0.34, seed=0)
    assert s.source == "stratified" and len(s.val) == 1 and len(s.train) == 2
