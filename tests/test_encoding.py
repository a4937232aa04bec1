"""Target encodings: channel counts, the overlap priority rule, probabilities."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from dermseg.attributes import ATTRIBUTES
from dermseg.encoding import (
    ENCODINGS,
    classes_to_masks,
    masks_to_classes,
    num_output_channels,
    output_probabilities,
    probabilities,
    validate_encoding,
)

# channel (= class - 1) of each attribute: globules 0, milia 1, negative 2, pigment 3, streaks 4
G, M, N, P, S = range(5)


def test_encodings_and_channels() -> None:
    assert ENCODINGS == ("multilabel", "multiclass")
    assert num_output_channels("multilabel") == 5
    assert num_output_channels("multiclass") == 6
    assert validate_encoding("multiclass") == "multiclass"


@pytest.mark.parametrize("bad", ["softmax", "", "Multilabel"])
def test_unknown_encoding_lists_valid_names(bad: str) -> None:
    with pytest.raises(ValueError, match="multilabel, multiclass"):
        validate_encoding(bad)
    with pytest.raises(ValueError, match="unknown encoding"):
        num_output_channels(bad)


#: Share (%) of ISIC 2018 Task 2 training images holding each attribute (see dermseg.encoding).
TRAINING_FREQUENCY = {
    "streaks": 4,
    "negative_network": 7,
    "globules": 23,
    "milia_like_cyst": 26,
    "pigment_network": 59,
}


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(ATTRIBUTES, 2)))
def test_every_overlap_goes_to_the_rarer_attribute(a: str, b: str) -> None:
    masks = np.zeros((1, 5, 1, 1), np.uint8)
    masks[0, [ATTRIBUTES.index(a), ATTRIBUTES.index(b)]] = 1
    rarer = min(a, b, key=TRAINING_FREQUENCY.__getitem__)
    assert masks_to_classes(masks).item() == ATTRIBUTES.index(rarer) + 1


# attributes present on one pixel -> expected class (0 = background, k + 1 = attribute k)
PRIORITY_TABLE = [
    ((), 0),
    ((P,), P + 1),
    ((G,), G + 1),
    ((G, P), G + 1),  # globules (23 %) beat pigment network (59 %)
    ((M, P), M + 1),  # milia (26 %) beat pigment network
    ((G, M), G + 1),  # globules (23 %) beat milia (26 %)
    ((N, G), N + 1),  # negative network (7 %) beats globules
    ((S, N), S + 1),  # streaks (4 %) beat everything
    ((G, M, N, P, S), S + 1),
    ((G, M, P), G + 1),
]


@pytest.mark.parametrize(("present", "expected"), PRIORITY_TABLE)
def test_masks_to_classes_priority(present: tuple[int, ...], expected: int) -> None:
    masks = np.zeros((1, 5, 1, 1), np.uint8)
    for k in present:
        masks[0, k] = 1
    classes = masks_to_classes(masks)
    assert classes.dtype == torch.int64
    assert classes.shape == (1, 1, 1)
    assert classes.item() == expected


def test_masks_to_classes_2x2_batch_bool_and_255() -> None:
    masks = torch.zeros(2, 5, 2, 2, dtype=torch.bool)
    masks[0, P] = True  # pigment everywhere in image 0
    masks[0, S, 0, 0] = True  # streaks on top-left
    masks[1, M, 1, 1] = True  # image 1: milia bottom-right only
    expected = torch.tensor([[[5, 4], [4, 4]], [[0, 0], [0, 2]]])
    assert torch.equal(masks_to_classes(masks), expected)
    assert torch.equal(masks_to_classes(masks.to(torch.uint8) * 255), expected)


def test_classes_to_masks_inverts_non_overlapping() -> None:
    classes = torch.tensor([[[0, 1], [5, 3]]])
    masks = classes_to_masks(classes)
    assert masks.shape == (1, 5, 2, 2) and masks.dtype == torch.bool
    assert masks.sum().item() == 3  # three non-background pixels, one attribute each
    assert torch.equal(masks_to_classes(masks), classes)


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"\(B, 5, H, W\)"):
        masks_to_classes(torch.zeros(5, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, 5, H, W\)"):
        masks_to_classes(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        classes_to_masks(torch.zeros(1, 1, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(B, 6, H, W\)"):
        probabilities(torch.zeros(1, 5, 2, 2), "multiclass")
    with pytest.raises(ValueError, match=r"\(B, 5, H, W\)"):
        probabilities(torch.zeros(1, 6, 2, 2), "multilabel")


def test_probabilities_known_values() -> None:
    # multilabel: sigmoid(0) = 0.5, sigmoid(ln 3) = 3 / 4
    logits = torch.zeros(1, 5, 1, 1)
    logits[0, S] = math.log(3.0)
    probs = probabilities(logits, "multilabel")
    assert probs.shape == (1, 5, 1, 1)
    assert torch.allclose(probs.flatten(), torch.tensor([0.5, 0.5, 0.5, 0.5, 0.75]))
    # multiclass: all-zero logits -> 1/6 each; background dropped
    probs = probabilities(torch.zeros(1, 6, 2, 2), "multiclass")
    assert probs.shape == (1, 5, 2, 2)
    assert torch.allclose(probs, torch.full_like(probs, 1 / 6))
    # background logit ln 5 -> exp: [5, 1, 1, 1, 1, 1] / 10
    logits = torch.zeros(1, 6, 1, 1)
    logits[0, 0] = math.log(5.0)
    assert torch.allclose(probabilities(logits, "multiclass").flatten(), torch.full((5,), 0.1))


def test_probabilities_by_hand_keep_the_channel_order() -> None:
    # multiclass: exp(logits) = [1, 2, 3, 4, 5, 6] sums to 21; background (channel 0) is dropped
    logits = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).log().view(1, 6, 1, 1)
    expected = torch.tensor([2.0, 3.0, 4.0, 5.0, 6.0]) / 21
    assert torch.allclose(probabilities(logits, "multiclass").flatten(), expected, atol=1e-7)
    # multilabel: sigmoid(ln k) = k / (k + 1), one channel each, in ATTRIBUTES order
    logits = torch.tensor([3.0, 1 / 3, 1.0, 9.0, 1 / 9]).log().view(1, 5, 1, 1)
    expected = torch.tensor([3 / 4, 1 / 4, 1 / 2, 9 / 10, 1 / 10])
    assert torch.allclose(probabilities(logits, "multilabel").flatten(), expected, atol=1e-7)


def test_round_trips_between_masks_and_classes() -> None:
    # every class on a 2x3 map, twice in a batch of 2: classes -> masks -> classes is the identity
    classes = torch.tensor([[[0, 1, 2], [3, 4, 5]], [[5, 4, 3], [2, 1, 0]]])
    masks = classes_to_masks(classes)
    assert torch.equal(masks_to_classes(masks), classes)
    assert masks.sum(dim=1).tolist() == [[[0, 1, 1], [1, 1, 1]], [[1, 1, 1], [1, 1, 0]]]
    # masks -> classes -> masks keeps, on each pixel, its rarest attribute only
    overlapping = np.zeros((1, 5, 1, 3), bool)
    overlapping[0, [P, G], 0, 0] = True  # globules win
    overlapping[0, [M, N, S], 0, 1] = True  # streaks win
    overlapping[0, P, 0, 2] = True  # alone
    want = np.zeros((1, 5, 1, 3), bool)
    want[0, G, 0, 0] = want[0, S, 0, 1] = want[0, P, 0, 2] = True
    assert np.array_equal(classes_to_masks(masks_to_classes(overlapping)).numpy(), want)


def test_presence_logits_gate_the_pixel_probabilities() -> None:
    # mask logit ln 3 (3/4) everywhere; presence 1/4, 1/2, 3/4 and ~1, ~0 by hand
    masks = torch.full((1, 5, 2, 2), math.log(3.0))
    presence = torch.tensor([[math.log(1 / 3), 0.0, math.log(3.0), 30.0, -30.0]])
    got = output_probabilities({"masks": masks, "presence": presence}, "multilabel")
    expected = torch.tensor([3 / 16, 3 / 8, 9 / 16, 3 / 4, 0.0]).view(1, 5, 1, 1).expand(1, 5, 2, 2)
    assert torch.allclose(got, expected, atol=1e-7)
    # without presence logits, the plain probabilities
    assert torch.allclose(output_probabilities({"masks": masks}, "multilabel"), torch.full_like(masks, 0.75))
