"""CombinedLoss and build_loss: finite gradients of every term, the presence term, config fields, errors."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch

from dermseg.config import LossConfig
from dermseg.losses import (
    LOSSES,
    OPTIONS,
    TERMS,
    CombinedLoss,
    binary_cross_entropy,
    build_loss,
    class_weights_from_counts,
    cross_entropy,
    focal_loss,
    presence_loss,
    soft_jaccard_loss,
)
from tests.losses.conftest import rand, rand_masks

# --------------------------------------------------------------------------- gradients

GRADIENT_CASES = [
    ("multilabel", {"bce": 1.0}, {"pos_weight": [2.0] * 5}),
    ("multilabel", {"focal": 1.0}, {"focal_gamma": 0.5, "alpha": 0.25}),
    ("multilabel", {"soft_jaccard": 1.0, "soft_dice": 1.0}, {}),
    ("multiclass", {"ce": 1.0}, {"class_weights": [0.5, 1, 1, 1, 1, 2]}),
    ("multiclass", {"focal": 1.0}, {"focal_gamma": 0.5}),
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


def test_the_table_names_every_term_and_option() -> None:
    assert LOSSES == tuple(TERMS) == ("ce", "bce", "focal", "soft_jaccard", "soft_dice", "presence", "mil")
    assert OPTIONS == {
        "class_weights": ("ce", "bce", "focal"),
        "pos_weight": ("bce",),
        "focal_gamma": ("focal",),
        "alpha": ("focal",),
        "smooth": ("soft_jaccard", "soft_dice"),
        "weak_mil": ("mil",),
        "weak_topk": ("mil",),
    }


def test_the_presence_term_scores_the_presence_output() -> None:
    """Logits 0 score ln 2 per attribute; the mask terms see the mask logits alone."""
    logits, masks = rand((2, 5, 3, 4)), rand_masks((2, 5, 3, 4))
    presence = torch.zeros(2, 5)
    loss = CombinedLoss({"bce": 1.0, "presence": 0.5}, "multilabel")
    total = loss({"masks": logits, "presence": presence}, masks)
    assert torch.allclose(total, binary_cross_entropy(logits, masks) + 0.5 * math.log(2.0), atol=1e-6)
    assert torch.allclose(loss.last_terms["presence"], presence_loss(presence, masks))
    # no presence output (a model without the head, or mask logits alone): the term is left out
    assert torch.equal(loss(logits, masks), binary_cross_entropy(logits, masks))
    assert torch.equal(loss({"masks": logits}, masks), binary_cross_entropy(logits, masks))
    with pytest.raises(ValueError, match="no 'masks'"):
        loss({"presence": presence}, masks)


def test_build_loss_takes_the_loss_config_fields_one_to_one() -> None:
    """build_loss(**asdict(LossConfig)): focal_gamma, class_weights none / numbers, presence_weight."""
    logits, masks = rand((1, 6, 2, 2)), rand_masks((1, 5, 2, 2))
    w = class_weights_from_counts([100, 5, 5, 5, 50, 1])
    fields = asdict(LossConfig(terms={"focal": 1.0}, focal_gamma=0.0, class_weights="none"))
    assert set(fields) == {
        "terms",
        "focal_gamma",
        "class_weights",
        "presence_weight",
        "weak_mil",
        "weak_topk",
        "weak_mil_weight",
    }
    loss = build_loss(**{**fields, "class_weights": w}, encoding="multiclass")
    assert torch.allclose(loss(logits, masks), cross_entropy(logits, masks, w), atol=1e-6)
    assert loss.weights == {"focal": 1.0, "presence": 0.5}
    loss = build_loss(**{**fields, "focal_gamma": 2.0}, encoding="multiclass")
    assert torch.allclose(loss(logits, masks), focal_loss(logits, masks, "multiclass"))
    ce = build_loss({"ce": 1.0}, "multiclass", class_weights=w)
    assert torch.allclose(ce(logits, masks), cross_entropy(logits, masks, w))
    assert list(ce.weights) == ["ce"]  # no presence_weight, no presence term


@pytest.mark.parametrize(
    ("terms", "kwargs", "match"),
    [
        ({"dice": 1.0}, {}, "unknown loss 'dice'; expected one of ce, bce, focal, soft_jaccard"),
        ({}, {}, "no loss terms"),
        ({"ce": 1.0}, {}, "loss 'ce' needs the multiclass encoding; use 'bce' for multilabel"),
        ({"bce": 1.0}, {"encoding": "multiclass"}, "loss 'bce' needs the multilabel encoding; use 'ce'"),
        ({"bce": -1.0}, {}, ">= 0"),
        ({"bce": "one"}, {}, "finite number"),
        ({"bce": 1.0}, {"gamma": 2.0}, "unknown loss option.*gamma.*focal_gamma"),
        ({"bce": 1.0}, {"class_weights": "inverse_frequency"}, "needs the weights"),
        ({"bce": 1.0}, {"class_weights": "median"}, "none or numbers"),
        ({"presence": 1.0}, {"presence_weight": 0.5}, "not both"),
        ({"bce": 1.0}, {"presence_weight": float("nan")}, "finite number"),
        ({"bce": 1.0}, {"encoding": "softmax"}, "unknown encoding"),
        ([("bce", 1.0)], {}, "must be a mapping"),
    ],
)
def test_build_loss_errors(terms: object, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_loss(terms, **kwargs)  # type: ignore[arg-type]


def test_weights_move_with_the_module() -> None:
    loss = build_loss({"bce": 1.0, "focal": 1.0}, "multilabel", class_weights=[1.0, 2.0, 3.0, 4.0, 5.0])
    names = {name for name, _ in loss.named_buffers()}
    assert "terms.bce.weight" in names and "terms.focal.weight" in names
    assert loss.to(torch.float64).terms["bce"].weight.dtype == torch.float64
