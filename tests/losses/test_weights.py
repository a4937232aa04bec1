"""Class statistics: pixel counts, inverse-frequency class weights, BCE positive weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dermseg.losses import (
    class_weights_from_counts,
    pixel_counts,
    pos_weight_from_counts,
)
from tests.losses.conftest import G, P, S

WEIGHT_TABLE = [
    # counts, expected weights, arithmetic
    ([1, 3], [0.75, 0.25], "1/n = [1, 1/3], sum 4/3"),
    ([2, 2, 2], [1 / 3, 1 / 3, 1 / 3], "equal counts"),
    ([0, 1, 3], [3 / 7, 3 / 7, 1 / 7], "unseen class gets max 1/n = 1: [1, 1, 1/3], sum 7/3"),
    ([100, 0, 0, 4], [1 / 76, 25 / 76, 25 / 76, 25 / 76], "[.01, .25, .25, .25], sum .76"),
]


@pytest.mark.parametrize(("counts", "expected", "why"), WEIGHT_TABLE)
def test_class_weights_from_counts(counts: list[int], expected: list[float], why: str) -> None:
    for given in (counts, np.array(counts), torch.tensor(counts)):
        weights = class_weights_from_counts(given)
        assert weights.dtype == torch.float32
        assert torch.allclose(weights, torch.tensor(expected), atol=1e-7), why
        assert math.isclose(weights.sum().item(), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        ([0, 0], "all pixel counts are zero"),
        ([1, -1], ">= 0"),
        ([[1, 2]], "1-D"),
        ([], "1-D"),
        ([1, np.inf], "finite"),
    ],
)
def test_class_weights_errors(counts: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        class_weights_from_counts(counts)


def test_pos_weight_from_counts() -> None:
    # negatives / positives with 4 pixels: [3/1, unseen -> max 3, 2/2, 0/4, 3/1]
    weights = pos_weight_from_counts([1, 0, 2, 4, 1], total_pixels=4)
    assert torch.allclose(weights, torch.tensor([3.0, 3.0, 1.0, 0.0, 3.0]))
    with pytest.raises(ValueError, match="no positive pixel"):
        pos_weight_from_counts([0] * 5, total_pixels=4)
    with pytest.raises(ValueError, match="smaller than"):
        pos_weight_from_counts([5, 0, 0, 0, 0], total_pixels=4)


def test_pixel_counts_both_encodings() -> None:
    a = np.zeros((5, 2, 2), np.uint8)  # one (5, H, W) stack
    a[P] = 1  # pigment on all 4 pixels
    a[G, 0, 0] = 1  # globules overlap pigment on one pixel
    b = np.zeros((1, 5, 1, 3), bool)  # one (B, 5, H, W) batch of another size; 3 background pixels
    b[0, S, 0, 2] = True
    multilabel = pixel_counts([a, torch.from_numpy(b)], "multilabel")
    assert multilabel.tolist() == [1, 0, 0, 4, 1]
    multiclass = pixel_counts([a, b], "multiclass")
    # background 2, globules wins its pixel, pigment keeps 3, streaks 1; sums to 4 + 3 pixels
    assert multiclass.tolist() == [2, 1, 0, 0, 3, 1]
    assert multiclass.dtype == torch.int64
    with pytest.raises(ValueError, match="at least one"):
        pixel_counts([], "multiclass")
    with pytest.raises(ValueError, match=r"\(5, H, W\)"):
        pixel_counts([np.zeros((4, 2, 2))], "multilabel")
