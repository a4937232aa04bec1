"""The class weights cached in a run folder are reused only for the same training images and the
same preprocessing; expected weights are computed by hand from known pixel counts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dermseg.config import load_config
from dermseg.training.data import class_weights
from tests.conftest import TINY_TRAIN


class Masks:
    """A stand-in training set: ``load(i)[1]`` is a ``(5, 4, 4)`` stack whose attribute k has
    ``counts[i][k]`` positive pixels."""

    def __init__(self, counts: list[list[int]]) -> None:
        self.counts = counts

    def __len__(self) -> int:
        return len(self.counts)

    def load(self, index: int) -> tuple[None, np.ndarray]:
        stack = np.zeros((5, 16), np.uint8)
        for k, n in enumerate(self.counts[index]):
            stack[k, :n] = 1
        return None, stack.reshape(5, 4, 4)


class Unreadable:
    """A training set that must not be read (the cached weights are to be used)."""

    def __len__(self) -> int:
        return 4

    def load(self, index: int) -> None:
        raise AssertionError("the class weights were counted again")


def by_hand(total: list[int]) -> list[float]:
    """Normalised inverse frequency: (1 / n_k) / sum_j (1 / n_j)."""
    inverse = [1.0 / n for n in total]
    return [v / sum(inverse) for v in inverse]


IDS = ["ISIC_0000001", "ISIC_0000002", "ISIC_0000003", "ISIC_0000004"]
# per image, positive pixels of each attribute; totals [4, 4, 8, 8, 16] and [4, 4, 8, 16, 12]
FIRST = [[1, 1, 2, 2, 4]] * 4
SECOND = [[1, 1, 2, 2, 4]] * 3 + [[1, 1, 2, 10, 0]]


@pytest.fixture
def cfg():  # type: ignore[no-untyped-def]
    return load_config(None, [*TINY_TRAIN, "loss.class_weights=inverse_frequency"])


def test_the_cache_is_reused_for_the_same_split(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = class_weights(cfg, Masks(FIRST), tmp_path, IDS)
    np.testing.assert_allclose(first.numpy(), by_hand([4, 4, 8, 8, 16]), rtol=1e-6)
    again = class_weights(cfg, Unreadable(), tmp_path, list(IDS))
    np.testing.assert_allclose(again.numpy(), first.numpy())


def test_a_split_differing_after_its_third_image_is_counted_again(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    class_weights(cfg, Masks(FIRST), tmp_path, IDS)
    other_ids = [*IDS[:3], "ISIC_0000099"]  # same count, same first three ids
    weights = class_weights(cfg, Masks(SECOND), tmp_path, other_ids)
    np.testing.assert_allclose(weights.numpy(), by_hand([4, 4, 8, 16, 12]), rtol=1e-6)


@pytest.mark.parametrize(
    "change",
    [
        {"crop_background": False},  # the border rows and columns are counted too
        {"cache": "prepared"},  # masks at exactly data.size instead of the decoded resolution
    ],
)
def test_a_preprocessing_change_is_counted_again(cfg, tmp_path: Path, change: dict) -> None:  # type: ignore[no-untyped-def]
    class_weights(cfg, Masks(FIRST), tmp_path, IDS)
    changed = replace(cfg, data=replace(cfg.data, **change))
    weights = class_weights(changed, Masks(SECOND), tmp_path, IDS)
    np.testing.assert_allclose(weights.numpy(), by_hand([4, 4, 8, 16, 12]), rtol=1e-6)
