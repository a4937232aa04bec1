"""Focal loss: known values, reduction to cross-entropy at gamma 0, option checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dermseg.encoding import masks_to_classes
from dermseg.losses import (
    FocalLoss,
    binary_cross_entropy,
    focal_loss,
)
from tests.losses.conftest import LN2, LN6, G, rand, rand_masks


def test_focal_multilabel_known_values() -> None:
    # one pixel, zero logits (p = 0.5, ce = ln 2), only globules positive, gamma 2 -> factor 0.5^2
    masks = torch.zeros(1, 5, 1, 1, dtype=torch.uint8)
    masks[0, G] = 1
    logits = torch.zeros(1, 5, 1, 1)
    assert math.isclose(focal_loss(logits, masks, gamma=2.0).item(), 0.25 * LN2, rel_tol=1e-6)
    # alpha 0.25: positive x 0.25, four negatives x 0.75 -> 0.25 ln 2 (0.25 + 4 * 0.75) / 5 = 0.1625 ln 2
    assert math.isclose(focal_loss(logits, masks, gamma=2.0, alpha=0.25).item(), 0.1625 * LN2, rel_tol=1e-6)
    alpha = [0.25, 1.0, 1.0, 1.0, 1.0]  # per attribute: only negatives of channels 1-4 weigh 0
    assert math.isclose(focal_loss(logits, masks, alpha=alpha).item(), 0.25 * LN2 * 0.25 / 5, rel_tol=1e-6)
    assert math.isclose(FocalLoss(alpha=alpha)(logits, masks).item(), 0.25 * LN2 * 0.25 / 5, rel_tol=1e-6)


def test_focal_multiclass_known_value() -> None:
    # zero logits: p_t = 1/6 -> (5/6)^2 ln 6
    loss = focal_loss(torch.zeros(1, 6, 2, 2), torch.zeros(1, 5, 2, 2), "multiclass", gamma=2.0)
    assert math.isclose(loss.item(), (5 / 6) ** 2 * LN6, rel_tol=1e-6)


def test_focal_gamma_zero_equals_cross_entropy() -> None:
    masks = rand_masks((2, 5, 3, 4))
    logits = rand((2, 5, 3, 4))
    labelled = torch.tensor([[True] * 5, [False, True, True, True, False]])
    assert torch.allclose(
        focal_loss(logits, masks, gamma=0.0, labelled=labelled),
        binary_cross_entropy(logits, masks, labelled=labelled),
        atol=1e-6,
    )
    logits = rand((2, 6, 3, 4))
    w = torch.tensor([0.1, 0.3, 0.2, 0.15, 0.05, 0.2])
    ref = F.cross_entropy(logits, masks_to_classes(masks), weight=w)
    assert torch.allclose(focal_loss(logits, masks, "multiclass", gamma=0.0, weight=w), ref, atol=1e-6)
    assert torch.allclose(FocalLoss("multiclass", gamma=0.0, weight=w)(logits, masks), ref, atol=1e-6)


def test_focal_down_weights_easy_pixels() -> None:
    logits, masks = rand((1, 5, 4, 4)), rand_masks((1, 5, 4, 4))
    assert focal_loss(logits, masks, gamma=2.0) < focal_loss(logits, masks, gamma=0.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": -1.0}, "gamma"),
        ({"gamma": float("nan")}, "gamma"),
        ({"alpha": 1.5}, r"\[0, 1\]"),
        ({"alpha": [0.5, 0.5]}, "5 values"),
        ({"weight": [1.0] * 6}, "5 entries"),
        ({"encoding": "multiclass", "alpha": 0.25}, "alpha applies"),
        ({"encoding": "softmax"}, "unknown encoding"),
    ],
)
def test_focal_option_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FocalLoss(**kwargs)
