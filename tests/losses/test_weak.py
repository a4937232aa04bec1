"""Learning from image-level labels (``dermseg.losses.weak``, the weak side of ``presence``), by hand."""

from __future__ import annotations

import math

import pytest
import torch

from dermseg.losses import CombinedLoss, WeakTargets, build_loss, mil_loss, mil_pool
from dermseg.losses.presence import presence_loss
from tests.losses.conftest import LN2, LN6, rand, rand_masks

MAP = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2)
PEAK = torch.tensor([[[[0.0, 0.0], [0.0, math.log(5.0)]]]])  # mean of exp = (1 + 1 + 1 + 5) / 4 = 2


@pytest.mark.parametrize(
    ("logits", "mode", "topk", "expected"),
    [
        (MAP, "topk", 0.5, 3.5),  # the top 2 of 4 pixels: (4 + 3) / 2
        (MAP, "topk", 0.25, 4.0),  # the top pixel: the maximum
        (MAP, "topk", 0.01, 4.0),  # less than one pixel: still one
        (MAP, "topk", 1.0, 2.5),  # every pixel: the mean
        (torch.zeros(1, 1, 2, 2), "max", 0.02, 0.0),  # log-mean-exp of a flat map is its value
        (PEAK, "max", 0.02, LN2),  # log((1 + 1 + 1 + 5) / 4)
        (MAP, "max", 0.02, math.log((math.e + math.e**2 + math.e**3 + math.e**4) / 4)),
    ],
)
def test_mil_pool_by_hand(logits: torch.Tensor, mode: str, topk: float, expected: float) -> None:
    assert mil_pool(logits, mode, topk).item() == pytest.approx(expected)


def test_smooth_max_lies_between_the_mean_and_the_maximum() -> None:
    logits = rand((2, 5, 6, 7))
    pooled = mil_pool(logits, "max")
    assert pooled.shape == (2, 5)
    assert (pooled >= logits.mean(dim=(2, 3)) - 1e-6).all() and (pooled <= logits.amax(dim=(2, 3))).all()


@pytest.mark.parametrize(
    ("mode", "topk", "message"),
    [("mean", 0.02, "unknown MIL pooling"), ("topk", 0.0, "fraction"), ("topk", 1.5, "fraction")],
)
def test_mil_pool_refuses_bad_options(mode: str, topk: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mil_pool(MAP, mode, topk)


def _present_absent_unknown() -> tuple[torch.Tensor, WeakTargets]:
    """One image, three attributes: a flat 0 map labelled present, PEAK labelled absent, unknown."""
    logits = torch.cat([torch.zeros(1, 1, 2, 2), PEAK, torch.full((1, 1, 2, 2), 9.0)], dim=1)
    weak = WeakTargets(torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([[True, True, False]]))
    return logits, weak


def test_mil_loss_present_absent_unknown_by_hand() -> None:
    logits, weak = _present_absent_unknown()
    # max: pooled 0 -> BCE(0, 1) = ln 2; pooled ln 2 (p = 2/3) -> BCE(ln 2, 0) = ln 3; unknown left out
    assert mil_loss(logits, weak, "max").item() == pytest.approx((LN2 + math.log(3.0)) / 2)
    # top pixel: pooled 0 -> ln 2; pooled ln 5 (p = 5/6) -> ln 6
    assert mil_loss(logits, weak, "topk", 0.25).item() == pytest.approx((LN2 + LN6) / 2)
    nothing = WeakTargets(weak.presence, torch.zeros_like(weak.known))
    assert mil_loss(logits, nothing, "max").item() == 0.0


def test_present_pushes_the_top_pixels_up_and_absent_pushes_every_pixel_down() -> None:
    logits, weak = _present_absent_unknown()
    logits = (logits + torch.tensor([0.0, 0.1, 0.2, 0.3]).view(1, 1, 2, 2)).requires_grad_()
    mil_loss(logits, weak, "topk", 0.25).backward()
    grad = logits.grad
    assert grad is not None
    present, absent, unknown = grad[0, 0].flatten(), grad[0, 1].flatten(), grad[0, 2]
    assert present[3] < 0 and (present[:3] == 0).all()  # gradient descent raises the top pixel only
    assert absent[3] > 0 and (absent[:3] == 0).all()  # top-k: the top pixel is what is lowered
    assert (unknown == 0).all()
    logits.grad = None
    mil_loss(logits, weak, "max").backward()
    assert (logits.grad[0, 1] > 0).all() and (logits.grad[0, 0] < 0).all()  # smooth max: every pixel


def test_presence_loss_uses_the_weak_labels_where_there_is_no_mask() -> None:
    masks = torch.zeros(1, 5, 2, 2)
    labelled = torch.zeros(1, 5, dtype=torch.bool)
    weak = WeakTargets(
        torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0]]), torch.tensor([[True, True, False, False, False]])
    )
    assert presence_loss(torch.zeros(1, 5), masks, labelled, weak).item() == pytest.approx(LN2)
    sure = torch.tensor([[20.0, -20.0, 20.0, 20.0, -20.0]])  # the unknown three are wrong: not counted
    assert presence_loss(sure, masks, labelled, weak).item() < 1e-6
    # a given mask wins over an image-level label: the empty mask of attribute 0 says absent
    labelled[0, 0] = True
    two = torch.tensor([[2.0, -20.0, 0.0, 0.0, 0.0]])
    expected = (math.log1p(math.exp(2.0)) + 0.0) / 2  # BCE(2, 0) and BCE(-20, 0) ~ 0
    assert presence_loss(two, masks, labelled, weak).item() == pytest.approx(expected, abs=1e-6)


def test_pixel_terms_ignore_weak_items() -> None:
    logits, masks = rand((2, 5, 4, 4)), rand_masks((2, 5, 4, 4))
    labelled = torch.tensor([[True] * 5, [False] * 5])  # image 1 has image-level labels only
    weak = WeakTargets(torch.tensor([[0.0] * 5, [1.0] * 5]), torch.tensor([[False] * 5, [True] * 5]))
    pixel = CombinedLoss({"bce": 1.0, "soft_jaccard": 1.0, "focal": 1.0})
    alone = pixel(logits[:1], masks[:1], labelled[:1])
    assert pixel(logits, masks, labelled, weak).item() == pytest.approx(alone.item())
    assert pixel(logits, masks, labelled).item() == pytest.approx(alone.item())  # as labelled said already
    # ce cannot leave out single attributes, but an image without any mask is left out whole
    ce = CombinedLoss({"ce": 1.0}, "multiclass")
    six = rand((2, 6, 4, 4))
    with pytest.raises(ValueError, match="cannot ignore"):
        ce(six, masks, labelled)
    assert ce(six, masks, labelled, weak).item() == pytest.approx(ce(six[:1], masks[:1]).item())


def test_a_batch_of_weak_items_only_trains_through_presence_and_mil() -> None:
    loss = build_loss({"bce": 1.0, "soft_jaccard": 1.0}, presence_weight=1.0, weak_mil="topk", weak_topk=0.25)
    masks = torch.zeros(1, 5, 2, 2)
    labelled = torch.zeros(1, 5, dtype=torch.bool)
    weak = WeakTargets(
        torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]]), torch.tensor([[True, True, False, False, False]])
    )
    out = {
        "masks": torch.zeros(1, 5, 2, 2, requires_grad=True),
        "presence": torch.zeros(1, 5, requires_grad=True),
    }
    total = loss(out, masks, labelled, weak)
    assert loss.last_terms["bce"].item() == 0.0 and loss.last_terms["soft_jaccard"].item() == 0.0
    assert loss.last_terms["presence"].item() == pytest.approx(LN2)
    assert loss.last_terms["mil"].item() == pytest.approx(LN2)
    assert total.item() == pytest.approx(2 * LN2)
    total.backward()
    assert out["masks"].grad is not None and out["masks"].grad[0, 0].min() < 0


def test_build_loss_adds_the_mil_term_only_when_asked() -> None:
    assert "mil" not in build_loss({"bce": 1.0}, weak_mil="none", weak_topk=0.1).terms
    loss = build_loss({"bce": 1.0}, weak_mil="max", weak_mil_weight=0.3)
    assert loss.weights["mil"] == 0.3 and loss.terms["mil"].mode == "max"
    # without weak targets (validation), the term is 0
    assert loss.terms["mil"](rand((1, 5, 2, 2)), torch.zeros(1, 5, 2, 2)).item() == 0.0
    with pytest.raises(ValueError, match="multilabel"):
        build_loss({"ce": 1.0}, "multiclass", weak_mil="max")
    with pytest.raises(ValueError, match="unknown MIL pooling"):
        build_loss({"bce": 1.0}, weak_mil="mean")
