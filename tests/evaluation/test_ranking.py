from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from dermseg.attributes import ATTRIBUTES
from dermseg.evaluation.ranking import PresenceAUC, StreamingRanking, auc_ap_from_histograms, exact_ranking


def _maps(seed: int, shape=(3, 5, 40, 48), grid: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities that rank the truth well but not perfectly, with a different prevalence per class."""
    rng = np.random.default_rng(seed)
    prevalence = np.array([0.02, 0.05, 0.1, 0.3, 0.5])[None, :, None, None]
    truth = rng.random(shape) < prevalence
    logits = rng.normal(size=shape) + 1.5 * truth
    probs = 1.0 / (1.0 + np.exp(-logits))
    if grid is not None:
        probs = np.round(probs * grid) / grid
    return probs.astype(np.float32), truth


def _sklearn(probs: np.ndarray, truth: np.ndarray, k: int) -> tuple[float, float]:
    y, s = truth[:, k].ravel(), probs[:, k].ravel().astype(np.float64)
    return roc_auc_score(y, s), average_precision_score(y, s)


def test_known_values():
    # scores 0.1 (neg), 0.4 (pos), 0.35 (neg), 0.8 (pos): the classic sklearn example
    assert exact_ranking(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(
        (0.75, 0.8333333)
    )
    # ties: one positive and one negative with the same score count half
    assert exact_ranking(np.array([0.5, 0.5]), np.array([1, 0]))[0] == 0.5
    assert exact_ranking(np.array([0.2, 0.9, 0.9]), np.array([0, 1, 0])) == pytest.approx((0.75, 0.5))
    # histogram form, ascending score order
    assert auc_ap_from_histograms(np.array([0, 1]), np.array([1, 0])) == (1.0, 1.0)
    assert auc_ap_from_histograms(np.array([1, 0]), np.array([0, 1])) == (0.0, 0.5)
    assert auc_ap_from_histograms(np.array([0, 0]), np.array([3, 1])) == (None, None)
    assert auc_ap_from_histograms(np.array([2, 1]), np.array([0, 0])) == (None, 1.0)
    assert auc_ap_from_histograms(np.array([], dtype=int), np.array([], dtype=int)) == (None, None)


def test_exact_ranking_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        s = rng.integers(0, 7, 300) / 6.0  # many ties
        y = rng.random(300) < 0.3
        auc, ap = exact_ranking(s, y)
        assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert ap == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_grid_probabilities_match_sklearn_exactly():
    probs, truth = _maps(1, grid=4096)
    metric = StreamingRanking()
    metric.update(probs, truth)
    result = metric.compute()
    assert list(result) == list(ATTRIBUTES)
    for k, name in enumerate(ATTRIBUTES):
        auc, ap = _sklearn(probs, truth, k)
        assert result[name]["auc"] == pytest.approx(auc, abs=1e-9)
        assert result[name]["ap"] == pytest.approx(ap, abs=1e-9)


def test_continuous_probabilities_within_binning_error():
    probs, truth = _maps(2, shape=(4, 5, 64, 64))
    metric = StreamingRanking(bins=4096)
    metric.update(probs, truth)
    result = metric.compute()
    for k, name in enumerate(ATTRIBUTES):
        auc, ap = _sklearn(probs, truth, k)
        assert abs(result[name]["auc"] - auc) < 1e-3
        assert abs(result[name]["ap"] - ap) < 1e-3
    # coarse bins are visibly worse (the test above is not vacuous)
    coarse = StreamingRanking(bins=4)
    coarse.update(probs, truth)
    assert abs(coarse.compute()["pigment_network"]["auc"] - _sklearn(probs, truth, 3)[0]) > 1e-2


def test_many_updates_equal_one_and_merge():
    probs, truth = _maps(3)
    one = StreamingRanking()
    one.update(probs, truth)
    many = StreamingRanking()
    for b in range(probs.shape[0]):
        many.update(probs[b], truth[b])  # (5, H, W) single images
    assert np.array_equal(one.histograms, many.histograms)
    assert one.compute() == many.compute()
    a, b = StreamingRanking(), StreamingRanking()
    a.update(probs[:1], truth[:1])
    b.update(torch.from_numpy(probs[1:]), torch.from_numpy(truth[1:]).to(torch.uint8))  # CPU tensors
    a.merge(b)
    assert np.array_equal(a.histograms, one.histograms)
    with pytest.raises(ValueError, match="merge"):
        a.merge(StreamingRanking(bins=10))
    one.reset()
    assert one.histograms.sum() == 0


def test_valid_mask():
    probs, truth = _maps(4, shape=(2, 5, 16, 16), grid=4096)
    valid = np.zeros((2, 16, 16), dtype=bool)
    valid[:, 2:12, 3:9] = True
    metric = StreamingRanking()
    metric.update(probs, truth, valid)
    assert metric.histograms.sum() == 5 * valid.sum()
    sel = np.broadcast_to(valid[:, None], probs.shape)
    for k, name in enumerate(ATTRIBUTES):
        y, s = truth[:, k][sel[:, k]], probs[:, k][sel[:, k]]
        if y.any() and not y.all():
            assert metric.compute()[name]["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    # a per-class mask of the full shape is accepted too
    full = StreamingRanking()
    full.update(probs, truth, np.broadcast_to(valid[:, None], probs.shape))
    assert np.array_equal(full.histograms, metric.histograms)


def test_empty_classes_are_none():
    probs = np.random.default_rng(5).random((2, 5, 8, 8)).astype(np.float32)
    truth = np.zeros(probs.shape, dtype=bool)
    truth[:, 1] = True  # all positive
    truth[:, 2, 0, 0] = True  # some
    metric = StreamingRanking()
    metric.update(probs, truth)
    result = metric.compute()
    assert result["globules"] == {"auc": None, "ap": None}  # no positives
    assert result["milia_like_cyst"] == {"auc": None, "ap": 1.0}  # no negatives: AP is 1, AUC undefined
    assert result["negative_network"]["auc"] is not None
    assert StreamingRanking().compute()["streaks"] == {"auc": None, "ap": None}  # nothing seen


@pytest.mark.parametrize(
    "probs, truth, message",
    [
        (np.zeros((4, 3, 3), np.float32), np.zeros((4, 3, 3), bool), r"\(5, H, W\)"),
        (np.zeros((5, 3, 3), np.float32), np.zeros((5, 3, 4), bool), r"\(5, H, W\)"),
        (np.full((5, 3, 3), 1.5, np.float32), np.zeros((5, 3, 3), bool), "logits"),
        (np.full((5, 3, 3), np.nan, np.float32), np.zeros((5, 3, 3), bool), "NaN"),
        (np.zeros((5, 3, 3), np.uint8), np.zeros((5, 3, 3), bool), "float"),
        (np.zeros((5, 3, 3), np.float32), np.zeros((5, 3, 3), np.float32), "truth"),
    ],
)
def test_input_validation(probs, truth, message):
    with pytest.raises(ValueError, match=message):
        StreamingRanking().update(probs, truth)


def test_constructor_validation():
    with pytest.raises(ValueError, match="bins"):
        StreamingRanking(bins=0)
    with pytest.raises(ValueError, match="names"):
        StreamingRanking(num_classes=2, names=["a"])
    assert list(StreamingRanking(num_classes=2).compute()) == ["0", "1"]


def test_presence_auc_matches_sklearn():
    rng = np.random.default_rng(6)
    truth = np.zeros((30, 5, 12, 12), dtype=bool)
    present = rng.random((30, 5)) < 0.4
    present[:, 4] = True  # streaks everywhere: AUC undefined
    probs = rng.random(truth.shape).astype(np.float32) * 0.5
    for i, k in zip(*np.nonzero(present), strict=True):
        truth[i, k, 3:6, 4:8] = True
        probs[i, k, 4, 5] = rng.uniform(0.3, 1.0)  # present -> usually a higher maximum
    probs[:5] = np.round(probs[:5] * 4) / 4  # some tied maxima
    metric = PresenceAUC()
    metric.update(probs[:10], truth[:10])
    for i in range(10, 30):
        metric.update(torch.from_numpy(probs[i]), torch.from_numpy(truth[i]))
    assert metric.scores.shape == (30, 5) and metric.labels.shape == (30, 5)
    result = metric.compute()
    for k, name in enumerate(ATTRIBUTES[:4]):
        s, y = probs[:, k].reshape(30, -1).max(axis=1), present[:, k]
        assert result[name]["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert result[name]["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert result["streaks"] == {"auc": None, "ap": 1.0}


def test_presence_valid_mask():
    probs = np.zeros((1, 5, 4, 4), dtype=np.float32)
    truth = np.zeros((1, 5, 4, 4), dtype=bool)
    probs[0, :, 0, 0] = 0.9  # outside the valid region
    truth[0, :, 0, 0] = True
    probs[0, :, 2, 2] = 0.3
    valid = np.zeros((1, 4, 4), dtype=bool)
    valid[0, 1:, 1:] = True
    metric = PresenceAUC()
    metric.update(probs, truth, valid)
    assert metric.scores[0].tolist() == pytest.approx([0.3] * 5) and not metric.labels.any()
    metric.reset()
    assert metric.scores.shape == (0, 5)


def test_torch_histogram_path_matches_numpy():
    # the path CUDA tensors take, run here on CPU tensors
    from dermseg.evaluation.ranking import _cell_counts

    probs, truth = _maps(7, shape=(1, 5, 16, 16))
    valid = np.random.default_rng(7).random((16, 16)) < 0.7
    for k in range(5):
        expected = _cell_counts(probs[0, k], truth[0, k], valid, 4096)
        got = _cell_counts(
            torch.from_numpy(probs[0, k]), torch.from_numpy(truth[0, k]), torch.from_numpy(valid), 4096
        )
        np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    probs, truth = _maps(8, shape=(2, 5, 64, 64))
    valid = np.random.default_rng(8).random((2, 64, 64)) < 0.8
    cpu, gpu = StreamingRanking(), StreamingRanking()
    cpu.update(probs, truth, valid)
    gpu.update(torch.from_numpy(probs).cuda(), torch.from_numpy(truth).cuda(), torch.from_numpy(valid).cuda())
    np.testing.assert_array_equal(gpu.histograms, cpu.histograms)
    cpu_p, gpu_p = PresenceAUC(), PresenceAUC()
    cpu_p.update(probs, truth, valid)
    gpu_p.update(torch.from_numpy(probs).cuda(), torch.from_numpy(truth).cuda(), valid)  # mixed devices
    np.testing.assert_array_equal(gpu_p.scores, cpu_p.scores)
    np.testing.assert_array_equal(gpu_p.labels, cpu_p.labels)
