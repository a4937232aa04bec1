"""Losses: known values on tiny tensors, references from torch.nn.functional, option checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dermseg.encoding import masks_to_classes
from dermseg.losses import (
    LOSSES,
    BinaryCrossEntropyLoss,
    CombinedLoss,
    CrossEntropyLoss,
    FocalLoss,
    SoftDiceLoss,
    SoftJaccardLoss,
    binary_cross_entropy,
    build_loss,
    class_weights_from_counts,
    cross_entropy,
    focal_loss,
    pixel_counts,
    pos_weight_from_counts,
    soft_dice_loss,
    soft_jaccard_loss,
)

LN2, LN6 = math.log(2.0), math.log(6.0)
G, M, N, P, S = range(5)


def _rand(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _rand_masks(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.3).to(torch.uint8)


# --------------------------------------------------------------------------- class statistics

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
    logits, masks = _rand((2, 6, 3, 4)), _rand_masks((2, 5, 3, 4))
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


# --------------------------------------------------------------------------- BCE and focal


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
    logits, masks = _rand((2, 5, 3, 4)), _rand_masks((2, 5, 3, 4))
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
    logits, masks = _rand((1, 5, 2, 2)), _rand_masks((1, 5, 2, 2))
    elementwise = F.binary_cross_entropy_with_logits(logits, masks.float(), reduction="none")
    per_channel = elementwise.mean(dim=(0, 2, 3))
    w = torch.tensor([1.0, 0.0, 0.0, 0.0, 3.0])  # (1 l_globules + 3 l_streaks) / 4
    expected = (per_channel[0] + 3 * per_channel[4]) / 4
    assert torch.allclose(binary_cross_entropy(logits, masks, weight=w), expected, atol=1e-6)


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
    masks = _rand_masks((2, 5, 3, 4))
    logits = _rand((2, 5, 3, 4))
    labelled = torch.tensor([[True] * 5, [False, True, True, True, False]])
    assert torch.allclose(
        focal_loss(logits, masks, gamma=0.0, labelled=labelled),
        binary_cross_entropy(logits, masks, labelled=labelled),
        atol=1e-6,
    )
    logits = _rand((2, 6, 3, 4))
    w = torch.tensor([0.1, 0.3, 0.2, 0.15, 0.05, 0.2])
    ref = F.cross_entropy(logits, masks_to_classes(masks), weight=w)
    assert torch.allclose(focal_loss(logits, masks, "multiclass", gamma=0.0, weight=w), ref, atol=1e-6)
    assert torch.allclose(FocalLoss("multiclass", gamma=0.0, weight=w)(logits, masks), ref, atol=1e-6)


def test_focal_down_weights_easy_pixels() -> None:
    logits, masks = _rand((1, 5, 4, 4)), _rand_masks((1, 5, 4, 4))
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


# --------------------------------------------------------------------------- soft Jaccard / Dice


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
    masks = _rand_masks((2, 5, 3, 3))
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


# --------------------------------------------------------------------------- gradients

GRADIENT_CASES = [
    ("multilabel", {"bce": 1.0}, {"pos_weight": [2.0] * 5}),
    ("multilabel", {"focal": 1.0}, {"gamma": 0.5, "alpha": 0.25}),
    ("multilabel", {"soft_jaccard": 1.0, "soft_dice": 1.0}, {}),
    ("multiclass", {"ce": 1.0}, {"class_weights": [0.5, 1, 1, 1, 1, 2]}),
    ("multiclass", {"focal": 1.0}, {"gamma": 0.5}),
    ("multiclass", {"soft_jaccard": 1.0}, {}),
]


@pytest.mark.parametrize(("encoding", "terms", "options"), GRADIENT_CASES)
@pytest.mark.parametrize("scale", [1.0, 200.0])  # 200: saturated logits, p_t == 1 in float32
@pytest.mark.parametrize("empty", [False, True])
def test_gradients_finite(encoding: str, terms: dict, options: dict, scale: float, empty: bool) -> None:
    channels = 5 if encoding == "multilabel" else 6
    logits = (_rand((2, channels, 3, 3)) * scale).requires_grad_(True)
    masks = torch.zeros(2, 5, 3, 3, dtype=torch.uint8) if empty else _rand_masks((2, 5, 3, 3))
    loss = CombinedLoss(terms, encoding, **options)(logits, masks)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_half_precision_logits_give_float32_loss() -> None:
    logits = _rand((1, 5, 2, 2)).half()
    assert binary_cross_entropy(logits, _rand_masks((1, 5, 2, 2))).dtype == torch.float32


# --------------------------------------------------------------------------- combined / factory


def test_combined_is_the_weighted_sum() -> None:
    logits, masks = _rand((2, 5, 3, 4)), _rand_masks((2, 5, 3, 4))
    loss = CombinedLoss({"bce": 1.0, "soft_jaccard": 2.0}, "multilabel")
    expected = binary_cross_entropy(logits, masks) + 2 * soft_jaccard_loss(logits, masks)
    assert torch.allclose(loss(logits, masks), expected, atol=1e-6)
    assert set(loss.last_terms) == {"bce", "soft_jaccard"}
    assert torch.allclose(loss.last_terms["bce"], binary_cross_entropy(logits, masks))


def test_build_loss_config_forms() -> None:
    logits, masks = _rand((1, 6, 2, 2)), _rand_masks((1, 5, 2, 2))
    w = class_weights_from_counts([100, 5, 5, 5, 50, 1])
    ce = build_loss({"ce": 1.0}, "multiclass", class_weights=w)
    assert torch.allclose(ce(logits, masks), cross_entropy(logits, masks, w))
    nested = build_loss({"terms": {"focal": 0.5}, "gamma": 0.0, "class_weights": w.tolist()}, "multiclass")
    assert torch.allclose(nested(logits, masks), 0.5 * cross_entropy(logits, masks, w), atol=1e-6)
    assert isinstance(build_loss({"soft_dice": 1}, "multilabel"), torch.nn.Module)
    assert LOSSES == ("ce", "bce", "focal", "soft_jaccard", "soft_dice")


def test_build_loss_accepts_loss_config_fields() -> None:
    """The fields of dermseg.config.LossConfig: focal_gamma, class_weights none / inverse_frequency."""
    logits, masks = _rand((1, 6, 2, 2)), _rand_masks((1, 5, 2, 2))
    w = class_weights_from_counts([100, 5, 5, 5, 50, 1])
    config = {"terms": {"focal": 1.0}, "focal_gamma": 0.0, "class_weights": "inverse_frequency"}
    loss = build_loss(config, "multiclass", class_weights=w)
    assert torch.allclose(loss(logits, masks), cross_entropy(logits, masks, w), atol=1e-6)
    config = {"terms": {"focal": 1.0}, "focal_gamma": 2.0, "class_weights": "none"}
    assert torch.allclose(
        build_loss(config, "multiclass")(logits, masks), focal_loss(logits, masks, "multiclass")
    )


@pytest.mark.parametrize(
    ("config", "encoding", "match"),
    [
        ({"dice": 1.0}, "multilabel", "unknown loss 'dice'; expected one of ce, bce, focal, soft_jaccard"),
        ({}, "multilabel", "no loss terms"),
        ({"ce": 1.0}, "multilabel", "needs the multiclass encoding"),
        ({"bce": 1.0}, "multiclass", "needs the multilabel encoding"),
        ({"bce": -1.0}, "multilabel", ">= 0"),
        ({"bce": "one"}, "multilabel", "finite number"),
        ({"terms": {"bce": 1.0}, "gama": 2.0}, "multilabel", "unknown loss option.*gama.*gamma"),
        ({"terms": {"bce": 1.0}, "class_weights": [1.0] * 5}, "multilabel", "both"),
        ({"terms": {"bce": 1.0}, "class_weights": "inverse_frequency"}, "multilabel", "needs the weights"),
        ({"terms": {"bce": 1.0}, "class_weights": "median"}, "multilabel", "none, inverse_frequency"),
        ({"terms": {"focal": 1.0}, "gamma": 1.0, "focal_gamma": 2.0}, "multilabel", "not both"),
        ({"bce": 1.0}, "softmax", "unknown encoding"),
    ],
)
def test_build_loss_errors(config: dict, encoding: str, match: str) -> None:
    class_weights = [1.0] * 5 if isinstance(config.get("class_weights"), list) else None  # the "both" case
    with pytest.raises(ValueError, match=match):
        build_loss(config, encoding, class_weights=class_weights)


def test_weights_move_with_the_module() -> None:
    loss = build_loss({"bce": 1.0, "focal": 1.0}, "multilabel", class_weights=[1.0, 2.0, 3.0, 4.0, 5.0])
    names = {name for name, _ in loss.named_buffers()}
    assert "terms.bce.weight" in names and "terms.focal.weight" in names
    assert loss.to(torch.float64).terms["bce"].weight.dtype == torch.float64
