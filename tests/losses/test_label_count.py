"""Losses and encodings for label sets of other sizes than the five Task 2 attributes (a lesion: one
label; a user's set: two), with values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dermseg.encoding import classes_to_masks, masks_to_classes, num_output_channels, probabilities
from dermseg.losses import build_loss, pixel_counts
from dermseg.losses.entropy import binary_cross_entropy, cross_entropy
from dermseg.losses.overlap import soft_jaccard_loss
from dermseg.losses.presence import presence_targets


def test_channels_per_label_count() -> None:
    assert num_output_channels("multilabel", 1) == 1 and num_output_channels("multiclass", 2) == 3
    with pytest.raises(ValueError, match="positive integer"):
        num_output_channels("multilabel", 0)


def test_one_label_by_hand() -> None:
    logits = torch.zeros(1, 1, 1, 2)  # p = 0.5 on both pixels
    masks = torch.tensor([[[[1, 0]]]], dtype=torch.uint8)
    assert math.isclose(binary_cross_entropy(logits, masks).item(), math.log(2), rel_tol=1e-6)
    # I = 0.5, sum p = 1, sum t = 1, U = 1.5; smooth 1: 1 - 1.5 / 2.5 = 0.4
    assert math.isclose(soft_jaccard_loss(logits, masks).item(), 0.4, rel_tol=1e-6)
    loss = build_loss({"bce": 1.0, "soft_jaccard": 1.0}, "multilabel", num_labels=1, class_weights=[1.0])
    assert math.isclose(loss(logits, masks).item(), math.log(2) + 0.4, rel_tol=1e-6)
    assert probabilities(logits, "multilabel", 1).shape == (1, 1, 1, 2)
    assert presence_targets(masks).tolist() == [[1.0]]
    assert pixel_counts([masks[0]], "multilabel", 1).tolist() == [1]
    with pytest.raises(ValueError, match="1 entries"):
        build_loss({"bce": 1.0}, "multilabel", num_labels=1, class_weights=[1.0] * 5)
    with pytest.raises(ValueError, match=r"multilabel logits must be \(B, 1, H, W\)"):
        binary_cross_entropy(torch.zeros(1, 5, 1, 2), masks)


def test_two_labels_softmax_first_label_wins() -> None:
    masks = torch.zeros(1, 2, 1, 3, dtype=torch.uint8)
    masks[0, 0, 0, 0] = 1  # label 0 alone
    masks[0, :, 0, 1] = 1  # both labels: the first in channel order wins
    masks[0, 1, 0, 2] = 1  # label 1 alone
    classes = masks_to_classes(masks, 2)
    assert classes.tolist() == [[[1, 1, 2]]]
    assert classes_to_masks(classes, 2).shape == (1, 2, 1, 3)
    assert pixel_counts([masks], "multiclass", 2).tolist() == [0, 2, 1]
    # all-zero logits: every class has probability 1/3, CE = ln 3 on every pixel
    assert math.isclose(cross_entropy(torch.zeros(1, 3, 1, 3), masks).item(), math.log(3), rel_tol=1e-6)


def test_balanced_sampling_with_two_labels_by_hand() -> None:
    from dermseg.data.sampling import attribute_balance_weights

    presence = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], bool)
    # frequencies 0.75 and 0.25: weights 1, 1, 1, 3 (power 1), normalised to mean 1
    np.testing.assert_allclose(attribute_balance_weights(presence, 1.0, 2), [2 / 3, 2 / 3, 2 / 3, 2.0])
    np.testing.assert_allclose(attribute_balance_weights(presence[:, :1], 1.0, 1), [1.0] * 4)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        attribute_balance_weights(presence[:, :1], 1.0, 2)
