"""CombinedLoss and build_loss: finite gradients of every term, config forms, errors."""

from __future__ import annotations

import pytest
import torch

from dermseg.losses import (
    LOSSES,
    CombinedLoss,
    binary_cross_entropy,
    build_loss,
    class_weights_from_counts,
    cross_entropy,
    focal_loss,
    soft_jaccard_loss,
)
from tests.losses.conftest import rand, rand_masks

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
    logits = (rand((2, channels, 3, 3)) * scale).requires_grad_(True)
    masks = torch.zeros(2, 5, 3, 3, dtype=torch.uint8) if empty else rand_masks((2, 5, 3, 3))
    loss = CombinedLoss(terms, encoding, **options)(logits, masks)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_half_precision_logits_give_float32_loss() -> None:
    logits = rand((1, 5, 2, 2)).half()
    assert binary_cross_entropy(logits, rand_masks((1, 5, 2, 2))).dtype == torch.float32


# --------------------------------------------------------------------------- combined / factory


def test_combined_is_the_weighted_sum() -> None:
    logits, masks = rand((2, 5, 3, 4)), rand_masks((2, 5, 3, 4))
    loss = CombinedLoss({"bce": 1.0, "soft_jaccard": 2.0}, "multilabel")
    expected = binary_cross_entropy(logits, masks) + 2 * soft_jaccard_loss(logits, masks)
    assert torch.allclose(loss(logits, masks), expected, atol=1e-6)
    assert set(loss.last_terms) == {"bce", "soft_jaccard"}
    assert torch.allclose(loss.last_terms["bce"], binary_cross_entropy(logits, masks))


def test_build_loss_config_forms() -> None:
    logits, masks = rand((1, 6, 2, 2)), rand_masks((1, 5, 2, 2))
    w = class_weights_from_counts([100, 5, 5, 5, 50, 1])
    ce = build_loss({"ce": 1.0}, "multiclass", class_weights=w)
    assert torch.allclose(ce(logits, masks), cross_entropy(logits, masks, w))
    nested = build_loss({"terms": {"focal": 0.5}, "gamma": 0.0, "class_weights": w.tolist()}, "multiclass")
    assert torch.allclose(nested(logits, masks), 0.5 * cross_entropy(logits, masks, w), atol=1e-6)
    assert isinstance(build_loss({"soft_dice": 1}, "multilabel"), torch.nn.Module)
    assert LOSSES == ("ce", "bce", "focal", "soft_jaccard", "soft_dice")


def test_build_loss_accepts_loss_config_fields() -> None:
    """The fields of dermseg.config.LossConfig: focal_gamma, class_weights none / inverse_frequency."""
    logits, masks = rand((1, 6, 2, 2)), rand_masks((1, 5, 2, 2))
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
