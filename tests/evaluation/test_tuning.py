from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dermseg.attributes import ATTRIBUTES
from dermseg.evaluation.metrics import IsicTask2Metric
from dermseg.evaluation.tuning import DEFAULT_THRESHOLDS, ThresholdTuner


def _noisy(seed: int, shape: tuple[int, ...], on_grid: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities correlated with the truth; a fraction lies exactly on the 0.05 grid (float32)."""
    rng = np.random.default_rng(seed)
    prevalence = np.array([0.03, 0.01, 0.05, 0.3, 0.02])[:, None, None]
    truth = rng.random(shape) < prevalence
    logits = rng.normal(size=shape) * 1.2 + 2.0 * truth - 1.0
    probs = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    snap = rng.random(shape) < on_grid
    probs[snap] = (np.round(probs[snap] * 20) / 20).astype(np.float32)  # exactly at thresholds
    return probs, truth


def test_known_optimum():
    rng = np.random.default_rng(0)
    cut = np.array([0.3, 0.5, 0.7, 0.1, 0.85])
    tuner = ThresholdTuner()
    for _ in range(3):
        probs = rng.random((5, 32, 40)).astype(np.float32)
        tuner.update(probs, probs > cut.astype(np.float32)[:, None, None])
    assert np.allclose(tuner.best(), cut, atol=1e-12)
    jac = tuner.jaccard()
    assert jac.shape == (5, 19)
    for k in range(5):
        j = int(np.argmin(np.abs(tuner.thresholds - cut[k])))
        assert jac[k, j] == 1.0 and (np.delete(jac[k], j) < 1.0).all()
    assert tuner.overall_at(cut) == 1.0


def test_optimum_between_grid_points_goes_to_the_point_below():
    rng = np.random.default_rng(1)
    probs = rng.random((5, 100, 100)).astype(np.float32)
    tuner = ThresholdTuner()
    tuner.update(probs, probs > np.float32(0.32))
    assert np.allclose(tuner.best(), 0.3)  # 0.3 costs ~2% FP, 0.35 ~3% FN
    curve = tuner.curves()["globules"]
    assert [t for t, _ in curve] == pytest.approx(DEFAULT_THRESHOLDS.tolist())
    best_j = max(j for _, j in curve)
    assert best_j == pytest.approx(0.68 / 0.70, abs=5e-3) and dict(curve)[tuner.best()[0]] == best_j


def test_parity_with_official_metric_at_grid_thresholds():
    shapes = [(5, 17, 23), (5, 30, 30), (5, 8, 41), (5, 25, 12)]
    images = [_noisy(seed, shape) for seed, shape in enumerate(shapes)]
    tuner = ThresholdTuner()
    for probs, truth in images:
        tuner.update(probs, truth)
    assert tuner.num_images == 4
    grid = DEFAULT_THRESHOLDS
    for thresholds in ([0.5] * 5, [grid[0], grid[5], grid[9], grid[13], grid[18]], tuner.best()):
        metric = IsicTask2Metric(thresholds=list(thresholds))
        for probs, truth in images:
            metric.update(probs[None], truth[None])
        np.testing.assert_allclose(tuner.counts_at(thresholds), metric.counts_sum, rtol=0, atol=1e-12)
        expected = metric.compute()
        got = tuner.scores_at(thresholds)
        for name in (*ATTRIBUTES, "micro_average"):
            assert got[name]["jaccard"] == pytest.approx(expected[name]["jaccard"], abs=1e-9)
            assert got[name]["dice"] == pytest.approx(expected[name]["dice"], abs=1e-9)
        assert tuner.overall_at(thresholds) == pytest.approx(expected["overall"], abs=1e-9)


def test_strict_rule_at_the_threshold():
    probs = np.zeros((5, 1, 4), dtype=np.float32)
    probs[:, 0] = [0.25, 0.5, 0.5, 0.75]  # exactly representable; 0.5 is on the grid
    truth = np.zeros((5, 1, 4), dtype=bool)
    truth[:, 0, 3] = True
    tuner = ThresholdTuner([0.25, 0.5, 0.75])
    tuner.update(probs, truth)
    # at 0.25: tp=1, fp=2; at 0.5 only the 0.75 pixel is positive (tp=1); at 0.75 nothing is (fn=1)
    assert tuner.jaccard()[0].tolist() == [pytest.approx(1 / 3), 1.0, 0.0]
    assert tuner.counts_at(0.75)[0].tolist() == [0.0, 0.0, 0.25, 0.75]
    assert tuner.best().tolist() == [0.5] * 5


def test_ties_go_to_the_threshold_closest_to_half():
    probs = np.full((5, 6, 6), 0.2, dtype=np.float32)
    truth = np.zeros((5, 6, 6), dtype=bool)  # absent: Jaccard 1.0 (empty pair) for every t >= 0.2
    tuner = ThresholdTuner()
    tuner.update(probs, truth)
    assert tuner.best().tolist() == pytest.approx([0.5] * 5)
    tuner = ThresholdTuner([0.1, 0.3, 0.7])  # 0.3 and 0.7 tie and are equally close: the lower
    tuner.update(probs, truth)
    assert tuner.best().tolist() == [0.3] * 5


def test_batches_sizes_and_tensors():
    images = [_noisy(10 + i, (5, 20, 24)) for i in range(3)]
    probs = np.stack([p for p, _ in images])
    truth = np.stack([t for _, t in images])
    one_by_one = ThresholdTuner()
    for p, t in images:
        one_by_one.update(p, t)
    batch = ThresholdTuner()
    batch.update(torch.from_numpy(probs), torch.from_numpy(truth))
    np.testing.assert_array_equal(batch.counts, one_by_one.counts)
    # padded batch: the valid regions only, as IsicTask2Metric scores them
    sizes = [(20, 24), (11, 7), (3, 24)]
    padded = ThresholdTuner()
    padded.update(probs, truth, sizes=sizes)
    metric = IsicTask2Metric(thresholds=0.35)
    metric.update(probs, truth, sizes=sizes)
    np.testing.assert_allclose(padded.counts_at(0.35), metric.counts_sum, rtol=0, atol=1e-12)
    # merge
    a, b = ThresholdTuner(), ThresholdTuner()
    a.update(probs[:1], truth[:1])
    b.update(probs[1:], truth[1:])
    a.merge(b)
    np.testing.assert_allclose(a.counts, batch.counts, rtol=0, atol=1e-12)
    assert a.num_images == 3
    with pytest.raises(ValueError, match="grids"):
        a.merge(ThresholdTuner([0.5]))
    a.reset()
    assert a.num_images == 0 and a.counts.sum() == 0


def test_float64_probabilities_compare_in_float64():
    probs = np.full((5, 2, 2), 0.3, dtype=np.float64)  # above float64 0.3? no: equal -> negative
    truth = np.ones((5, 2, 2), dtype=bool)
    tuner = ThresholdTuner([0.3])
    tuner.update(probs, truth)
    metric = IsicTask2Metric(thresholds=0.3)
    metric.update(probs[None], truth[None])
    np.testing.assert_array_equal(tuner.counts_at(0.3), metric.counts_sum)


def test_best_overall_known_case():
    # attribute 0: 4 positives; at 0.4 tp=2, fp=0 (J=2/4); lowering to 0.2 gains 1 tp for 3 fp (J=3/7)
    # attribute 1: large and poor, 40 positives, tp=4 at both thresholds (J=0.1)
    # overall: (2 + 4) / (4 + 40) = 0.136 at 0.4, but (3 + 4) / (7 + 40) = 0.149 at 0.2 for attribute 0
    probs = np.zeros((5, 1, 64), dtype=np.float32)
    truth = np.zeros((5, 1, 64), dtype=bool)
    probs[0, 0, :7] = [0.9, 0.9, 0.3, 0.1, 0.3, 0.3, 0.3]
    truth[0, 0, :4] = True
    probs[1, 0, :4] = 0.9
    truth[1, 0, :40] = True
    tuner = ThresholdTuner([0.2, 0.4])
    tuner.update(probs, truth)
    assert tuner.jaccard()[:2].tolist() == [[pytest.approx(3 / 7), 0.5], [0.1, 0.1]]
    assert tuner.best().tolist() == [0.4] * 5
    assert tuner.best_overall().tolist() == [0.2, 0.4, 0.4, 0.4, 0.4]
    assert tuner.overall_at(tuner.best()) == pytest.approx(6 / 44)
    assert tuner.overall_at(tuner.best_overall()) == pytest.approx(7 / 47)
    np.testing.assert_array_equal(tuner.best_overall(iterations=0), tuner.best())
    with pytest.raises(ValueError, match="iterations"):
        tuner.best_overall(iterations=-1)


def test_best_overall_reaches_the_brute_force_optimum():
    tuner = ThresholdTuner([0.2, 0.4, 0.6, 0.8])
    tuner.update(*_noisy(1, (5, 40, 40), on_grid=0.0))
    per_attribute = tuner.overall_at(tuner.best())
    ascent = tuner.overall_at(tuner.best_overall(iterations=3))
    optimum = max(tuner.overall_at(c) for c in itertools.product(tuner.thresholds, repeat=5))
    assert per_attribute < ascent  # this data needs the ascent
    assert ascent == pytest.approx(optimum, abs=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="non-empty"):
        ThresholdTuner([])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ThresholdTuner([0.5, 1.5])
    tuner = ThresholdTuner()
    with pytest.raises(ValueError, match="update"):
        tuner.best()
    with pytest.raises(ValueError, match=r"\(5, H, W\)"):
        tuner.update(np.zeros((4, 3, 3), np.float32), np.zeros((4, 3, 3), bool))
    with pytest.raises(ValueError, match="logits"):
        tuner.update(np.full((5, 3, 3), -0.5, np.float32), np.zeros((5, 3, 3), bool))
    with pytest.raises(ValueError, match="sizes"):
        tuner.update(np.zeros((2, 5, 3, 3), np.float32), np.zeros((2, 5, 3, 3), bool), sizes=[(3, 3)])
    with pytest.raises(ValueError, match="fit"):
        tuner.update(np.zeros((1, 5, 3, 3), np.float32), np.zeros((1, 5, 3, 3), bool), sizes=[(4, 3)])
    tuner.update(np.zeros((5, 3, 3), np.float32), np.zeros((5, 3, 3), bool))
    with pytest.raises(ValueError, match="grid"):
        tuner.overall_at(0.52)
    assert tuner.num_images == 1


def test_torch_index_path_matches_numpy():
    # the path CUDA tensors take (torch.bucketize), run here on CPU tensors
    probs, _ = _noisy(30, (5, 16, 16), on_grid=0.5)
    tuner = ThresholdTuner()
    for dtype in (np.float32, np.float64):
        p = probs[0].astype(dtype)
        np.testing.assert_array_equal(tuner._index(torch.from_numpy(p)).numpy(), tuner._index(p))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    probs, truth = _noisy(31, (5, 64, 64))
    cpu, gpu = ThresholdTuner(), ThresholdTuner()
    cpu.update(probs, truth)
    gpu.update(torch.from_numpy(probs).cuda(), torch.from_numpy(truth).cuda())
    np.testing.assert_array_equal(gpu.counts, cpu.counts)
