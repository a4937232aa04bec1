"""Cross-entropy and BCE: values computed by hand on tiny tensors (logits are logs of small integers)."""

from __future__ import annotations

import math

import pytest
import torch

from dermseg.losses import (
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    binary_cross_entropy,
    cross_entropy,
)
from tests.losses.conftest import LN2, LN6, G, N, P, S

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


def test_cross_entropy_2x2_by_hand() -> None:
    # one 2x2 image; each pixel's logits are logs, so its softmax is a ratio of small integers
    #   pixel    attributes           class (rarest wins)   exp(logits)             p(class)
    #   (0, 0)   none                 0 background          [2, 1, 1, 1, 1, 2]      2/8
    #   (0, 1)   globules + pigment   1 globules            [1, 3, 1, 1, 1, 1]      3/8
    #   (1, 0)   pigment              4 pigment network     [1, 1, 1, 1, 4, 1]      4/9
    #   (1, 1)   streaks + negative   5 streaks             [1, 1, 1, 1, 1, 1]      1/6
    exp = torch.ones(1, 6, 2, 2)
    exp[0, [0, 5], 0, 0] = 2.0
    exp[0, 1, 0, 1] = 3.0
    exp[0, 4, 1, 0] = 4.0
    masks = torch.zeros(1, 5, 2, 2, dtype=torch.uint8)
    masks[0, [G, P], 0, 1] = 1
    masks[0, P, 1, 0] = 1
    masks[0, [S, N], 1, 1] = 1
    losses = [math.log(8 / 2), math.log(8 / 3), math.log(9 / 4), math.log(6)]
    logits = exp.log()
    assert math.isclose(cross_entropy(logits, masks).item(), sum(losses) / 4, rel_tol=1e-6)
    # class weights count by the pixel's true class: 1, 2, 3 and 0.5 here (classes 2 and 3 absent)
    w = [1.0, 2.0, 7.0, 7.0, 3.0, 0.5]
    expected = (1 * losses[0] + 2 * losses[1] + 3 * losses[2] + 0.5 * losses[3]) / (1 + 2 + 3 + 0.5)
    assert math.isclose(cross_entropy(logits, masks, w).item(), expected, rel_tol=1e-6)
    assert math.isclose(CrossEntropyLoss(w)(logits, masks).item(), expected, rel_tol=1e-6)
    labelled = torch.ones(1, 5, dtype=torch.bool)  # every attribute labelled: the same loss
    assert math.isclose(cross_entropy(logits, masks, w, labelled).item(), expected, rel_tol=1e-6)


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


def _bce_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 1x2 images, every logit ln 3 (sigmoid 3/4): a positive costs ln(4/3), a negative ln 4.

    Positives: globules on both pixels of image 0, pigment network on pixel 0 of image 0,
    streaks on pixel 1 of image 1; per channel (4 elements each): G 2+, M 0+, N 0+, P 1+, S 1+.
    """
    logits = torch.full((2, 5, 1, 2), math.log(3.0))
    masks = torch.zeros(2, 5, 1, 2, dtype=torch.uint8)
    masks[0, G] = 1
    masks[0, P, 0, 0] = 1
    masks[1, S, 0, 1] = 1
    return logits, masks


POS, NEG = math.log(4 / 3), math.log(4.0)


def test_bce_by_hand_with_pos_weight_and_unlabelled_pairs() -> None:
    logits, masks = _bce_case()
    # 4 positives and 16 negatives
    assert math.isclose(binary_cross_entropy(logits, masks).item(), (4 * POS + 16 * NEG) / 20, rel_tol=1e-6)
    # pos_weight multiplies only the positive terms: 2 x 1 (G) + 1 x 0.5 (P) + 1 x 4 (S) = 6.5
    pw = [1.0, 2.0, 3.0, 0.5, 4.0]
    expected = (6.5 * POS + 16 * NEG) / 20
    assert math.isclose(binary_cross_entropy(logits, masks, pos_weight=pw).item(), expected, rel_tol=1e-6)
    assert math.isclose(BinaryCrossEntropyLoss(pw)(logits, masks).item(), expected, rel_tol=1e-6)
    # image 1 unlabelled for streaks: its two elements (one positive) leave the mean: 3+ and 15-
    labelled = torch.ones(2, 5, dtype=torch.bool)
    labelled[1, S] = False
    expected = (3 * POS + 15 * NEG) / 18
    assert math.isclose(binary_cross_entropy(logits, masks, labelled=labelled).item(), expected, rel_tol=1e-6)
    # nothing labelled: loss 0, gradient zero and finite
    logits.requires_grad_(True)
    loss = binary_cross_entropy(logits, masks, labelled=torch.zeros(2, 5, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_bce_channel_weights_are_a_weighted_mean() -> None:
    logits, masks = _bce_case()
    globules, streaks = (2 * POS + 2 * NEG) / 4, (1 * POS + 3 * NEG) / 4  # per-channel means
    w = torch.tensor([1.0, 0.0, 0.0, 0.0, 3.0])  # (1 l_globules + 3 l_streaks) / 4
    expected = (globules + 3 * streaks) / 4
    assert math.isclose(binary_cross_entropy(logits, masks, weight=w).item(), expected, rel_tol=1e-6)
