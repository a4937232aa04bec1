"""Soft Jaccard / Dice: known values, empty and perfect masks, unlabelled pairs."""

from __future__ import annotations

import math

import pytest
import torch

from dermseg.losses import (
    SoftDiceLoss,
    SoftJaccardLoss,
    soft_dice_loss,
    soft_jaccard_loss,
)
from tests.losses.conftest import G, M, S, rand_masks


def _half_probability_case() -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 5, 1, 2): zero logits (p = 0.5); globules on both pixels, milia on the first."""
    masks = torch.zeros(1, 5, 1, 2, dtype=torch.uint8)
    masks[0, G] = 1
    masks[0, M, 0, 0] = 1
    return torch.zeros(1, 5, 1, 2), masks


def test_soft_jaccard_known_value() -> None:
    logits, masks = _half_probability_case()
    # smooth 1; globules: I = 1, U = 1 + 2 - 1 = 2 -> J = 2/3, loss 1/3
    # milia: I = 0.5, U = 1 + 1 - 0.5 = 1.5 -> J = 1.5 / 2.5, loss 0.4
    # three absent attributes: I = 0, U = 1 -> J = 1/2, loss 0.5 each
    expected = (1 / 3 + 0.4 + 3 * 0.5) / 5
    assert math.isclose(soft_jaccard_loss(logits, masks).item(), expected, rel_tol=1e-6)
    assert math.isclose(SoftJaccardLoss()(logits, masks).item(), expected, rel_tol=1e-6)


def test_soft_dice_known_value() -> None:
    logits, masks = _half_probability_case()
    # globules: (2 + 1) / (1 + 2 + 1) = 3/4 -> 1/4; milia: (1 + 1) / (1 + 1 + 1) -> 1/3; absent: 1/2 -> 1/2
    expected = (0.25 + 1 / 3 + 3 * 0.5) / 5
    assert math.isclose(soft_dice_loss(logits, masks).item(), expected, rel_tol=1e-6)
    assert math.isclose(SoftDiceLoss(smooth=1.0)(logits, masks).item(), expected, rel_tol=1e-6)


@pytest.mark.parametrize("loss_fn", [soft_jaccard_loss, soft_dice_loss])
def test_soft_losses_empty_and_perfect(loss_fn) -> None:
    empty = torch.zeros(2, 5, 3, 3, dtype=torch.uint8)
    # absent everywhere, predicted empty (p ~ 1e-13): loss ~ 0, by the smooth-term convention
    assert loss_fn(torch.full((2, 5, 3, 3), -30.0), empty).item() < 1e-6
    # absent everywhere, predicted everywhere (sum p = 18): 1 - 1/19 (Jaccard) or 1 - 1/19 (Dice)
    assert math.isclose(loss_fn(torch.full((2, 5, 3, 3), 30.0), empty).item(), 18 / 19, rel_tol=1e-5)
    # a perfect prediction
    masks = rand_masks((2, 5, 3, 3))
    assert loss_fn(masks.float() * 60 - 30, masks).item() < 1e-6


def test_soft_jaccard_multiclass_known_value() -> None:
    # one pixel with globules + streaks -> class streaks; zero logits: p = 1/6 on each class
    masks = torch.zeros(1, 5, 1, 1, dtype=torch.uint8)
    masks[0, G] = masks[0, S] = 1
    # streaks: I = 1/6, U = 1/6 + 1 - 1/6 = 1 -> J = (7/6) / 2 = 7/12, loss 5/12
    # the other four (globules lost the pixel): I = 0, U = 1/6 -> J = 6/7, loss 1/7
    expected = (5 / 12 + 4 / 7) / 5
    loss = soft_jaccard_loss(torch.zeros(1, 6, 1, 1), masks, "multiclass")
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


@pytest.mark.parametrize("loss_fn", [soft_jaccard_loss, soft_dice_loss])
def test_soft_losses_labelled(loss_fn) -> None:
    logits, masks = _half_probability_case()
    # a second image identical in logits, garbage masks, completely unlabelled: no effect
    batch_logits = torch.cat([logits, logits])
    batch_masks = torch.cat([masks, 1 - masks])
    labelled = torch.tensor([[True] * 5, [False] * 5])
    single = loss_fn(logits, masks)
    assert torch.allclose(loss_fn(batch_logits, batch_masks, labelled=labelled), single, atol=1e-7)
    # globules unlabelled in the only image: left out of the channel mean
    labelled = torch.tensor([[False, True, True, True, True]])
    per_attribute = {soft_jaccard_loss: [0.4, 0.5, 0.5, 0.5], soft_dice_loss: [1 / 3, 0.5, 0.5, 0.5]}[loss_fn]
    assert math.isclose(
        loss_fn(logits, masks, labelled=labelled).item(), sum(per_attribute) / 4, rel_tol=1e-6
    )
    # nothing labelled: 0
    assert loss_fn(logits, masks, labelled=torch.zeros(1, 5, dtype=torch.bool)).item() == 0.0


@pytest.mark.parametrize("smooth", [0.0, -1.0, float("inf")])
def test_soft_losses_reject_bad_smooth(smooth: float) -> None:
    with pytest.raises(ValueError, match="smooth"):
        SoftJaccardLoss(smooth=smooth)
    with pytest.raises(ValueError, match="smooth"):
        soft_dice_loss(torch.zeros(1, 5, 1, 1), torch.zeros(1, 5, 1, 1), smooth=smooth)
