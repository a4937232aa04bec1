"""Cross-entropy and BCE: known values on tiny tensors, references from torch.nn.functional."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dermseg.encoding import masks_to_classes
from dermseg.losses import (
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    binary_cross_entropy,
    cross_entropy,
)
from tests.losses.conftest import LN2, LN6, G, P, S, rand, rand_masks

# --------------------------------------------------------------------------- cross-entropy


def test_cross_entropy_known_values() -> None:
    # all-zero logits: p = 1/6 for every class -> ln 6 whatever the targets and weights
    masks = torch.zeros(1, 5, 2, 2, dtype=torch.uint8)
    masks[0, S, 0, 0] = 1
    assert math.isclose(cross_entropy(torch.zeros(1, 6, 2, 2), masks).item(), LN6, rel_tol=1e-6)
    # two pixels: background with zero logits (ln 6); streaks (class 5) with logit ln 5 -> p = 5/10 (ln 2)
    logits = torch.zeros(1, 6, 1, 2)
    logits[0, 5, 0, 1] = math.log(5.0)
    masks = torch.zeros(1, 5, 1, 2, dtype=torch.uint8)
    masks[0, S, 0, 1] = 1
    masks[0, P, 0, 1] = 1  # overlaps streaks: priority keeps class 5
    assert math.isclose(cross_entropy(logits, masks).item(), (LN6 + LN2) / 2, rel_tol=1e-6)
    # weights w0 = 1, w5 = 3: weighted mean (1 ln 6 + 3 ln 2) / 4
    w = [1.0, 1.0, 1.0, 1.0, 1.0, 3.0]
    assert math.isclose(cross_entropy(logits, masks, w).item(), (LN6 + 3 * LN2) / 4, rel_tol=1e-6)
    assert math.isclose(CrossEntropyLoss(w)(logits, masks).item(), (LN6 + 3 * LN2) / 4, rel_tol=1e-6)


def test_cross_entropy_matches_torch() -> None:
    logits, masks = rand((2, 6, 3, 4)), rand_masks((2, 5, 3, 4))
    w = torch.tensor([0.1, 0.3, 0.2, 0.15, 0.05, 0.2])
    ref = F.cross_entropy(logits, masks_to_classes(masks), weight=w)
    assert torch.allclose(cross_entropy(logits, masks, w), ref, atol=1e-6)


def test_cross_entropy_errors() -> None:
    masks = torch.zeros(1, 5, 2, 2)
    with pytest.raises(ValueError, match=r"multiclass logits must be \(B, 6, H, W\)"):
        cross_entropy(torch.zeros(1, 5, 2, 2), masks)
    with pytest.raises(ValueError, match="6 entries"):
        cross_entropy(torch.zeros(1, 6, 2, 2), masks, weight=[1.0] * 5)
    with pytest.raises(ValueError, match="masks must be"):
        cross_entropy(torch.zeros(1, 6, 2, 2), torch.zeros(1, 5, 2, 3))
    unlabelled = torch.ones(1, 5, dtype=torch.bool)
    unlabelled[0, S] = False
    with pytest.raises(ValueError, match="cannot ignore"):
        cross_entropy(torch.zeros(1, 6, 2, 2), masks, labelled=unlabelled)


# --------------------------------------------------------------------------- BCE


def test_bce_known_values() -> None:
    masks = torch.zeros(1, 5, 2, 2, dtype=torch.uint8)  # 20 elements, one positive
    masks[0, G, 0, 0] = 1
    logits = torch.zeros(1, 5, 2, 2)  # every element costs ln 2
    assert math.isclose(binary_cross_entropy(logits, masks).item(), LN2, rel_tol=1e-6)
    # empty masks: still ln 2 per element
    assert math.isclose(binary_cross_entropy(logits, torch.zeros_like(masks)).item(), LN2, rel_tol=1e-6)
    # pos_weight 3: (19 ln 2 + 3 ln 2) / 20 = 1.1 ln 2
    assert math.isclose(
        binary_cross_entropy(logits, masks, pos_weight=[3.0] * 5).item(), 1.1 * LN2, rel_tol=1e-6
    )
    assert math.isclose(BinaryCrossEntropyLoss([3.0] * 5)(logits, masks).item(), 1.1 * LN2, rel_tol=1e-6)


def test_bce_matches_torch_and_labelled_excludes_pairs() -> None:
    logits, masks = rand((2, 5, 3, 4)), rand_masks((2, 5, 3, 4))
    pw = torch.tensor([1.0, 2.0, 3.0, 0.5, 4.0])
    ref = F.binary_cross_entropy_with_logits(logits, masks.float(), pos_weight=pw.view(1, 5, 1, 1))
    assert torch.allclose(binary_cross_entropy(logits, masks, pos_weight=pw), ref, atol=1e-6)
    # image 1 unlabelled for streaks: the mean runs over the 9 remaining (image, attribute) pairs
    labelled = torch.ones(2, 5, dtype=torch.bool)
    labelled[1, S] = False
    elementwise = F.binary_cross_entropy_with_logits(logits, masks.float(), reduction="none")
    ref = elementwise[labelled].mean()
    assert torch.allclose(binary_cross_entropy(logits, masks, labelled=labelled), ref, atol=1e-6)
    # nothing labelled: loss 0, gradient zero and finite
    logits.requires_grad_(True)
    loss = binary_cross_entropy(logits, masks, labelled=torch.zeros(2, 5, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_bce_channel_weights_are_a_weighted_mean() -> None:
    logits, masks = rand((1, 5, 2, 2)), rand_masks((1, 5, 2, 2))
    elementwise = F.binary_cross_entropy_with_logits(logits, masks.float(), reduction="none")
    per_channel = elementwise.mean(dim=(0, 2, 3))
    w = torch.tensor([1.0, 0.0, 0.0, 0.0, 3.0])  # (1 l_globules + 3 l_streaks) / 4
    expected = (per_channel[0] + 3 * per_channel[4]) / 4
    assert torch.allclose(binary_cross_entropy(logits, masks, weight=w), expected, atol=1e-6)
