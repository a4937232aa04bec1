"""Per-image presence scores and their AUC, against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermseg.data.background import CropBox
from dermseg.evaluation.presence_auc import (
    auc_interval,
    percentile_presence,
    predict_with_presence_head,
    presence_auc,
)
from dermseg.inference.segmenter import Segmenter
from tests.inference.test_segmenter import META as SEGMENTER_META

META = SEGMENTER_META | {"input_size": 32, "crop_background": False}

#: (positive scores, negative scores, AUC by counting pairs: wins + ties / 2 over n_pos * n_neg)
AUC_CASES = [
    ([0.9, 0.8], [0.1, 0.2], 1.0),  # every positive above every negative
    ([0.1], [0.9, 0.8], 0.0),  # every positive below
    ([0.5, 0.5], [0.5], 0.5),  # all tied: each pair counts half
    ([0.8, 0.4], [0.5, 0.4], 0.625),  # 0.8>0.5, 0.8>0.4, 0.4<0.5, 0.4=0.4: (1 + 1 + 0 + 0.5) / 4
    ([3.0, 1.0, 2.0], [2.0, 0.0], 4.5 / 6),  # 3>2, 3>0, 1<2, 1>0, 2=2, 2>0
]


@pytest.mark.parametrize("pos, neg, expected", AUC_CASES)
def test_auc_counts_pairs_ties_half(pos: list[float], neg: list[float], expected: float) -> None:
    scores = {f"p{i}": s for i, s in enumerate(pos)} | {f"n{i}": s for i, s in enumerate(neg)}
    labels = {f"p{i}": True for i in range(len(pos))} | {f"n{i}": False for i in range(len(neg))}
    result = presence_auc(scores, labels)
    assert result.auc == pytest.approx(expected)
    assert (result.n, result.n_positive) == (len(pos) + len(neg), len(pos))


def test_auc_uses_only_images_with_a_score_and_a_label() -> None:
    result = presence_auc(
        {"a": 0.9, "b": 0.1, "c": 0.5, "unlabelled": 0.0}, {"a": True, "b": False, "missing": True}
    )
    assert (result.n, result.n_positive, result.auc) == (2, 1, 1.0)


def test_auc_is_undefined_with_one_class() -> None:
    assert presence_auc({"a": 0.9, "b": 0.1}, {"a": True, "b": True}).auc is None
    assert presence_auc({}, {}).auc is None


def test_auc_interval_of_separated_and_tied_scores_is_a_point() -> None:
    # every resample of a perfectly ordered (or all-tied) pair of groups has the same AUC
    assert auc_interval(np.array([0.9, 0.8, 0.7]), np.array([0.1, 0.2])) == (1.0, 1.0)
    assert auc_interval(np.array([0.1, 0.2]), np.array([0.9, 0.8, 0.7])) == (0.0, 0.0)
    assert auc_interval(np.array([0.5, 0.5]), np.array([0.5])) == (0.5, 0.5)


@pytest.mark.parametrize("level, expected", [(0.3, (0.0, 0.25)), (0.8, (0.0, 0.5))])
def test_auc_interval_follows_the_bootstrap_distribution_worked_by_hand(
    level: float, expected: tuple[float, float]
) -> None:
    # positives 1, 3; negatives 2, 4: only the pair (3, 2) is won, so a resample's AUC is
    # (copies of 3) * (copies of 2) / 4, each count 0/1/2 with probability 1/4, 1/2, 1/4:
    # AUC 0 w.p. 7/16, 1/4 w.p. 4/16, 1/2 w.p. 4/16, 1 w.p. 1/16 (cumulative .4375 .6875 .9375 1).
    # level 0.3: quantiles .35 -> 0 and .65 -> 1/4; level 0.8: .10 -> 0 and .90 -> 1/2.
    got = auc_interval(np.array([1.0, 3.0]), np.array([2.0, 4.0]), level=level, resamples=40_000)
    assert got == expected


def test_presence_auc_carries_an_interval_around_its_value() -> None:
    rng = np.random.default_rng(1)
    scores = {f"p{i}": float(rng.normal(1.0)) for i in range(30)} | {
        f"n{i}": float(rng.normal(0.0)) for i in range(30)
    }
    labels = {k: k.startswith("p") for k in scores}
    result = presence_auc(scores, labels)
    assert result.interval is not None
    low, high = result.interval
    assert low < result.auc < high
    assert 0.05 < high - low < 0.4  # 30 + 30 images: wide, yet far from [0, 1]
    assert presence_auc({"a": 0.9, "b": 0.1}, {"a": True, "b": True}).interval is None


def test_auc_interval_refuses_an_empty_group_and_a_bad_level() -> None:
    with pytest.raises(ValueError, match="one positive and one negative"):
        auc_interval(np.array([]), np.array([0.1]))
    with pytest.raises(ValueError, match="level"):
        auc_interval(np.array([0.2]), np.array([0.1]), level=1.0)


def test_percentile_inside_the_field() -> None:
    probs = np.zeros((2, 10, 10), np.float32)
    probs[0, 2:7, 2:7] = np.arange(25, dtype=np.float32).reshape(5, 5) / 100  # 0.00 ... 0.24
    probs[1] = 1.0  # outside the field too: cropped away below
    field = CropBox(2, 2, 7, 7)
    # numpy's linear percentile of 0..24 (/100): rank 0.99 * 24 = 23.76 -> 0.2376
    np.testing.assert_allclose(percentile_presence(probs, field), [0.2376, 1.0])
    np.testing.assert_allclose(percentile_presence(probs, field, q=50), [0.12, 1.0])
    np.testing.assert_allclose(percentile_presence(probs, None, q=100), [0.24, 1.0])
    with pytest.raises(ValueError, match="q must lie"):
        percentile_presence(probs, field, q=101)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        percentile_presence(probs[0])


class WithHead(torch.nn.Module):
    """Constant mask logits 0 and a presence head whose logits are known: ln(1/4), 0, ln 4, 0, 0."""

    dermseg_arch = "test"

    def __init__(self) -> None:
        super().__init__()
        self.presence_head = torch.nn.Linear(1, 5)
        with torch.no_grad():
            self.presence_head.weight.zero_()
            self.presence_head.bias.copy_(torch.tensor([np.log(0.25), 0.0, np.log(4.0), 0.0, 0.0]))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = x.shape
        return {"masks": torch.zeros(b, 5, h, w), "presence": self.presence_head(x.mean((1, 2, 3))[:, None])}


class NoHead(torch.nn.Module):
    dermseg_arch = "test"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 5, *x.shape[2:])


@pytest.mark.parametrize("tta", [False, True])
def test_presence_head_is_read_on_the_way(tta: bool) -> None:
    image = np.full((40, 48, 3), 120, np.uint8)
    segmenter = Segmenter.from_model(WithHead(), META, tta=tta)
    prediction, head = predict_with_presence_head(segmenter, image)
    assert head is not None
    np.testing.assert_allclose(head, [0.2, 0.5, 0.8, 0.5, 0.5], atol=1e-6)  # sigmoid(ln r) = r / (1 + r)
    # the maps are the gated ones the segmenter always gives: sigmoid(0) * head
    np.testing.assert_allclose(prediction.probabilities[:, 0, 0], 0.5 * head, atol=1e-6)
    assert not segmenter.model.presence_head._forward_hooks  # the hook is removed again


def test_no_head_gives_none() -> None:
    prediction, head = predict_with_presence_head(
        Segmenter.from_model(NoHead(), META), np.zeros((20, 20, 3), np.uint8)
    )
    assert head is None and prediction.probabilities.shape == (5, 20, 20)


def test_the_presence_head_is_not_read_from_tiles() -> None:
    from dermseg.inference.tiling import Tiling

    segmenter = Segmenter.from_model(WithHead(), META)
    segmenter.tiling = Tiling(size=8)  # several tiles, each with its own head output
    with pytest.raises(ValueError, match="without --tiles"):
        predict_with_presence_head(segmenter, np.full((40, 48, 3), 120, np.uint8))
