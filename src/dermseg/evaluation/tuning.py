"""Threshold tuning for the official ISIC 2018 Task 2 and Task 1 metrics, streaming over images.

:class:`ThresholdTuner` sees each image once and keeps, for every attribute and every candidate
threshold on its grid, the official normalised confusion counts (``[tp, fp, fn, tn]`` divided by
the image's pixel count and summed over images; see :mod:`dermseg.evaluation.metrics`). Per image and
attribute this costs one histogram of the pixels by "how many grid thresholds lie below the
probability", split by truth, and a cumulative sum; not one full comparison per threshold.

Binarisation is the official strict one: a pixel is positive at threshold ``t`` when
``prob > t``, compared in the probabilities' dtype (``t`` cast to float32 for float32 maps), as
:func:`~dermseg.evaluation.metrics.binarise` and
:class:`~dermseg.evaluation.metrics.IsicTask2Metric` do; so at a grid threshold the tuner's
scores equal ``IsicTask2Metric(thresholds)``'s, summed in the same image order.

Choosing each attribute's threshold to maximise its own Jaccard (:meth:`ThresholdTuner.best`)
does not exactly maximise the leaderboard number, the micro-averaged ("overall") Jaccard: that
pools the counts of all attributes, so attributes with large areas (pigment network) weigh more
and an attribute's best threshold for the pool can differ from its own best.
:meth:`ThresholdTuner.best_overall` starts from the per-attribute optimum and improves the
overall Jaccard by coordinate ascent (one attribute at a time, the others fixed).

The Task 1 metric (one lesion label) is a mean over images of each image's own Jaccard, not a
ratio of pooled counts, so :class:`Task1ThresholdTuner` keeps each image's raw counts at every
grid threshold (``(N, T, 4)`` integers, from the same histogram and cumulative sum) and picks
the threshold maximising the **mean per-image Jaccard**; at a grid threshold its scores equal
:class:`~dermseg.evaluation.task1.IsicTask1Metric`'s (the official scorer's).

Thresholds tuned on the data they are then scored on overestimate the score: tune on a
validation split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dermseg.attributes import ATTRIBUTES
from dermseg.evaluation.metrics import jaccard_from_counts, scores_from_counts
from dermseg.evaluation.ranking import ArrayLike, as_probability_batch
from dermseg.evaluation.task1 import binarise_mask, per_image_scores
from dermseg.evaluation.task1 import scores_from_counts as task1_scores_from_counts

#: Default candidate thresholds: 0.05, 0.10, ..., 0.95.
DEFAULT_THRESHOLDS: np.ndarray = np.linspace(0.05, 0.95, 19)
# Tolerance under which two Jaccard values count as tied (float sums differ in the last bits).
_TIE = 1e-12
# Probabilities are first located in 2**16 equal cells by a lookup table; only pixels in the few
# cells that contain a threshold are compared exactly (np.searchsorted is ~10x slower per pixel).
_CELLS = 1 << 16


class _ThresholdGrid:
    """A sorted grid of thresholds and, per map, the pixels' confusion counts at each of them.

    Raises:
        ValueError: an empty grid or thresholds outside [0, 1].
    """

    def __init__(self, thresholds: Sequence[float] | np.ndarray | None = None) -> None:
        grid = DEFAULT_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0:
            raise ValueError(f"thresholds must be a non-empty 1-D grid; got {thresholds!r}")
        if np.isnan(grid).any() or grid.min() < 0 or grid.max() > 1:
            raise ValueError(f"thresholds must lie in [0, 1]; got {grid.tolist()}")
        self.thresholds: np.ndarray = np.unique(grid)
        self._tables: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}

    def table(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """The grid in ``dtype``, and per cell the number of thresholds below it (or a sentinel)."""
        if dtype not in self._tables:
            edges = self.thresholds.astype(dtype)
            exact = edges.astype(np.float64)  # exactly the values compared against
            lo = np.arange(_CELLS + 1, dtype=np.float64) / _CELLS
            below = np.searchsorted(exact, lo, side="left")  # thresholds < every value of the cell
            inside = np.searchsorted(exact, lo + 1.0 / _CELLS, side="left") != below
            small = np.uint8 if edges.size < 255 else np.int64
            table = below.astype(small)
            table[inside] = np.iinfo(small).max  # a threshold inside the cell: compare exactly
            self._tables[dtype] = (edges, table)
        return self._tables[dtype]

    def index(self, p: ArrayLike) -> ArrayLike:
        """Number of grid thresholds strictly below each probability of an ``(H, W)`` map."""
        if isinstance(p, torch.Tensor):  # CUDA: bucketize counts the boundaries < x, like side="left"
            p = p.float() if p.dtype in (torch.float16, torch.bfloat16) else p
            edges = torch.as_tensor(self.thresholds, device=p.device).to(p.dtype)
            return torch.bucketize(p, edges, right=False)
        if p.dtype not in (np.float32, np.float64):
            p = p.astype(np.float32)
        edges, table = self.table(p.dtype)
        cell = (p * _CELLS).astype(np.intp)  # exact: scaling by a power of two, then floor (p >= 0)
        index = np.take(table, cell)
        fix = index == np.iinfo(table.dtype).max
        if fix.any():
            index[fix] = np.searchsorted(edges, p[fix], side="left")
        return index

    def raw_counts(self, p: ArrayLike, t: ArrayLike) -> np.ndarray:
        """``(T, 4)`` int64 raw ``[tp, fp, fn, tn]`` of one ``(h, w)`` map at every grid threshold.

        One histogram of the pixels by "how many grid thresholds lie below the probability",
        split by truth, and a cumulative sum: not one comparison per threshold.
        """
        n_t = self.thresholds.size
        key = self.index(p)
        if isinstance(key, torch.Tensor):
            hist = torch.bincount((key + t.long() * (n_t + 1)).ravel(), minlength=2 * (n_t + 1))
            hist = hist.cpu().numpy()
        else:
            hist = np.bincount((key + t * (n_t + 1)).ravel(), minlength=2 * (n_t + 1))
        neg, pos = hist.reshape(2, n_t + 1).astype(np.int64)
        # positive at threshold j  <=>  more than j thresholds lie below the probability
        tp = np.cumsum(pos[::-1])[::-1][1:]
        fp = np.cumsum(neg[::-1])[::-1][1:]
        fn = pos.sum() - tp
        pixels = int(np.prod(p.shape))
        return np.stack([tp, fp, fn, pixels - tp - fp - fn], axis=-1)


class ThresholdTuner:
    """Official Jaccard per attribute at every candidate threshold, accumulated image by image.

    Args:
        thresholds: candidate thresholds in [0, 1] (sorted, duplicates removed); default
            :data:`DEFAULT_THRESHOLDS`.
        names: the labels, in channel order: the five Task 2 attributes by default, or those of
            another label set scored with the Task 2 metric.

    Raises:
        ValueError: an empty grid or thresholds outside [0, 1].

    Example:
        >>> tuner = ThresholdTuner()
        >>> for probs, truth in validation:  # doctest: +SKIP
        ...     tuner.update(probs, truth)
        >>> thresholds = tuner.best()  # doctest: +SKIP
    """

    def __init__(
        self, thresholds: Sequence[float] | np.ndarray | None = None, names: Sequence[str] = ATTRIBUTES
    ) -> None:
        self._grid = _ThresholdGrid(thresholds)
        self.thresholds: np.ndarray = self._grid.thresholds
        self.names: tuple[str, ...] = tuple(names)
        self.reset()

    @property
    def num_labels(self) -> int:
        """C, the labels tuned (5 for the Task 2 attributes)."""
        return len(self.names)

    def reset(self) -> None:
        """Forget every image seen."""
        self._sum = np.zeros((self.num_labels, self.thresholds.size, 4), dtype=np.float64)
        self.num_images = 0

    # -- accumulation -------------------------------------------------------------------------

    def _index(self, p: ArrayLike) -> ArrayLike:
        """Number of grid thresholds strictly below each probability of an ``(H, W)`` map."""
        return self._grid.index(p)

    def update(
        self, probs: ArrayLike, truth: ArrayLike, sizes: Sequence[tuple[int, int]] | None = None
    ) -> None:
        """Add one image or a batch.

        Args:
            probs: ``(C, H, W)`` or ``(B, C, H, W)`` float probabilities in [0, 1] (numpy or
                tensors; CUDA tensors are counted on their device); C = 5 for the attributes.
            truth: same shape, bool or binary integer.
            sizes: for a batch, optional ``(h, w)`` per image: only ``[:h, :w]`` is scored and
                normalised by ``h * w`` (as :class:`dermseg.evaluation.metrics.IsicTask2Metric`).

        Raises:
            ValueError: bad shapes or dtypes, probabilities outside [0, 1], a bad size, or an
                empty image.
        """
        p, t, _ = as_probability_batch(probs, truth, None, self.num_labels)
        height, width = p.shape[-2:]
        if sizes is not None and len(sizes) != p.shape[0]:
            raise ValueError(f"got {len(sizes)} sizes for a batch of {p.shape[0]} images")
        n_t = self.thresholds.size
        for b in range(p.shape[0]):
            h, w = (height, width) if sizes is None else sizes[b]
            if not (0 < h <= height and 0 < w <= width):
                raise ValueError(f"size {(h, w)} of image {b} does not fit the shape {(height, width)}")
            counts = np.empty((self.num_labels, n_t, 4), dtype=np.float64)
            for k in range(self.num_labels):
                raw = self._grid.raw_counts(p[b, k, :h, :w], t[b, k, :h, :w])
                counts[k] = raw / np.int64(h * w)  # the metric's (and the scorer's) normalisation
            self._sum += counts  # image by image, the scorer's summation order
            self.num_images += 1

    def merge(self, other: ThresholdTuner) -> None:
        """Add another tuner's counts (same grid), e.g. from another process.

        Raises:
            ValueError: the grids differ.
        """
        if not np.array_equal(other.thresholds, self.thresholds) or other.names != self.names:
            raise ValueError("cannot merge tuners with different threshold grids or labels")
        self._sum += other._sum
        self.num_images += other.num_images

    # -- results ------------------------------------------------------------------------------

    @property
    def counts(self) -> np.ndarray:
        """``(C, T, 4)`` normalised ``[tp, fp, fn, tn]`` summed over images, per grid threshold."""
        return self._sum.copy()

    def _check(self) -> None:
        if self.num_images == 0:
            raise ValueError("ThresholdTuner has seen no image; call update() first")

    def jaccard(self) -> np.ndarray:
        """``(C, T)`` official Jaccard of each label at each grid threshold.

        Raises:
            ValueError: no image was added.
        """
        self._check()
        return np.asarray(jaccard_from_counts(self._sum), dtype=np.float64)

    def curves(self) -> dict[str, list[tuple[float, float]]]:
        """``{attribute: [(threshold, jaccard), ...]}`` along the grid, for plots.

        Raises:
            ValueError: no image was added.
        """
        jac = self.jaccard()
        return {
            name: [(float(t), float(j)) for t, j in zip(self.thresholds, jac[k], strict=True)]
            for k, name in enumerate(self.names)
        }

    def _pick(self, values: np.ndarray, current: int | None = None) -> int:
        """Index of the maximum; ties: ``current`` if tied, else closest to 0.5, else the lower."""
        return _pick(self.thresholds, values, current)

    def best(self) -> np.ndarray:
        """Per attribute, the grid threshold maximising its own official Jaccard.

        Ties (within 1e-12) go to the threshold closest to 0.5, then to the lower one.

        Returns:
            ``(C,)`` float64 thresholds, in label order.

        Raises:
            ValueError: no image was added.
        """
        jac = self.jaccard()
        return self.thresholds[[self._pick(row) for row in jac]]

    def _indices(self, thresholds: float | Sequence[float] | np.ndarray) -> np.ndarray:
        thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (self.num_labels,))
        hit = np.abs(thr[:, None] - self.thresholds[None, :]) <= 1e-12
        if not hit.any(axis=1).all():
            raise ValueError(
                f"thresholds {thr.tolist()} are not all on the tuner's grid {self.thresholds.tolist()}"
            )
        return hit.argmax(axis=1)

    def counts_at(self, thresholds: float | Sequence[float] | np.ndarray) -> np.ndarray:
        """``(C, 4)`` summed normalised counts at one grid threshold per label (or one for all).

        Raises:
            ValueError: a threshold not on the grid (within 1e-12), or no image was added.
        """
        self._check()
        return self._sum[np.arange(self.num_labels), self._indices(thresholds)]

    def scores_at(self, thresholds: float | Sequence[float] | np.ndarray) -> dict[str, Any]:
        """The official score dict (:func:`~dermseg.evaluation.metrics.scores_from_counts`) at grid
        thresholds."""
        return scores_from_counts(self.counts_at(thresholds), self.names)

    def overall_at(self, thresholds: float | Sequence[float] | np.ndarray) -> float:
        """The official overall (micro-averaged) Jaccard at one grid threshold per attribute.

        Raises:
            ValueError: a threshold not on the grid, or no image was added.
        """
        return float(self.scores_at(thresholds)["overall"])

    def best_overall(self, iterations: int = 2) -> np.ndarray:
        """Thresholds improving the overall (micro) Jaccard by coordinate ascent from :meth:`best`.

        Each iteration visits the labels in order and moves each one's threshold to the grid
        value maximising the overall Jaccard with the others fixed (keeping the current one
        on ties); it stops early when an iteration changes nothing. The result's overall Jaccard
        is never below that of :meth:`best`, but is a local optimum, not necessarily the global
        one over all ``T**5`` combinations.

        Args:
            iterations: passes over the five attributes, >= 0 (0 returns :meth:`best`).

        Returns:
            ``(C,)`` float64 grid thresholds.

        Raises:
            ValueError: ``iterations < 0`` or no image was added.
        """
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0; got {iterations}")
        idx = self._indices(self.best())
        tp = self._sum[..., 0]
        err = self._sum[..., 0] + self._sum[..., 1] + self._sum[..., 2]  # tp + fp + fn, (C, T)
        rows = np.arange(self.num_labels)
        for _ in range(iterations):
            changed = False
            for k in range(self.num_labels):
                others = rows != k
                num = tp[others, idx[others]].sum() + tp[k]
                den = err[others, idx[others]].sum() + err[k]
                with np.errstate(divide="ignore", invalid="ignore"):
                    overall = np.where(den == 0, 1.0, num / np.where(den == 0, 1.0, den))
                new = self._pick(overall, current=int(idx[k]))
                changed |= new != idx[k]
                idx[k] = new
            if not changed:
                break
        return self.thresholds[idx]


def _pick(grid: np.ndarray, values: np.ndarray, current: int | None = None) -> int:
    """Index of the maximum of ``values`` over ``grid``; ties (within 1e-12): ``current`` if tied,
    else the threshold closest to 0.5, else the lower one."""
    tied = np.flatnonzero(values >= values.max() - _TIE)
    if current is not None and current in tied:
        return current
    distance = np.abs(grid[tied] - 0.5)
    return int(tied[np.flatnonzero(distance <= distance.min() + _TIE)[0]])  # |0.7 - 0.5| < 0.2


class Task1ThresholdTuner:
    """Official ISIC 2018 Task 1 scores of one label (a lesion) at every candidate threshold.

    Each image's raw ``[tp, fp, fn, tn]`` at every grid threshold is kept (``(N, T, 4)`` int64:
    19 thresholds cost 76 integers per image), so any per-image score can be averaged over
    images at any grid threshold. :meth:`best` maximises the **mean per-image Jaccard** (what
    training selects epochs on); :meth:`scores_at` gives the official score dict there
    (thresholded Jaccard, Dice, ...).

    Args:
        thresholds: candidate thresholds in [0, 1]; default :data:`DEFAULT_THRESHOLDS`.

    Raises:
        ValueError: an empty grid or thresholds outside [0, 1].

    Example:
        >>> tuner = Task1ThresholdTuner()
        >>> for prob, truth in validation:  # doctest: +SKIP
        ...     tuner.update(prob, truth)
        >>> threshold = tuner.best()  # doctest: +SKIP
    """

    def __init__(self, thresholds: Sequence[float] | np.ndarray | None = None) -> None:
        self._grid = _ThresholdGrid(thresholds)
        self.thresholds: np.ndarray = self._grid.thresholds
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._counts: list[np.ndarray] = []

    @property
    def num_images(self) -> int:
        return len(self._counts)

    def update(self, prob: ArrayLike, truth: ArrayLike) -> np.ndarray:
        """Add one image.

        Args:
            prob: ``(H, W)`` (or ``(1, H, W)``) float probabilities in [0, 1], numpy or torch.
            truth: the same shape: bool, 0/1 or 0/255 integers (the rules of
                :func:`~dermseg.evaluation.task1.binarise_mask`).

        Returns:
            ``(T, 4)`` int64 raw counts of this image at every grid threshold.

        Raises:
            ValueError: shapes that differ or are not 2-D, an empty image, integer
                probabilities, or values outside [0, 1].
        """
        if tuple(prob.shape) != tuple(truth.shape):
            raise ValueError(f"prob and truth differ in shape: {tuple(prob.shape)} and {tuple(truth.shape)}")
        if len(prob.shape) == 3 and prob.shape[0] == 1:
            prob, truth = prob[0], truth[0]
        if len(prob.shape) != 2 or prob.shape[0] * prob.shape[1] == 0:
            raise ValueError(f"expected one (H, W) map of one label; got shape {tuple(prob.shape)}")
        if isinstance(prob, torch.Tensor):
            if not prob.is_floating_point():
                raise ValueError(f"probabilities must be floats; got {prob.dtype}")
            if bool(prob.min() < 0) or bool(prob.max() > 1):
                raise ValueError("probabilities must lie in [0, 1] (logits?)")
            t = binarise_mask(torch.as_tensor(truth, device=prob.device))
        else:
            prob = np.asarray(prob)
            if prob.dtype.kind != "f":
                raise ValueError(f"probabilities must be floats; got {prob.dtype}")
            if prob.min() < 0 or prob.max() > 1:
                raise ValueError("probabilities must lie in [0, 1] (logits?)")
            t = np.asarray(binarise_mask(np.asarray(truth))).astype(np.intp)
        raw = self._grid.raw_counts(prob, t)
        self._counts.append(raw)
        return raw

    @property
    def per_image_counts(self) -> np.ndarray:
        """``(N, T, 4)`` int64 raw counts of every image at every grid threshold, in update order."""
        if not self._counts:
            return np.zeros((0, self.thresholds.size, 4), dtype=np.int64)
        return np.stack(self._counts)

    def _check(self) -> None:
        if not self._counts:
            raise ValueError("Task1ThresholdTuner has seen no image; call update() first")

    def mean_jaccard(self) -> np.ndarray:
        """``(T,)`` the mean over images of each image's Jaccard (the scorer's conventions: an
        image with empty truth and prediction scores 1) at each grid threshold.

        Raises:
            ValueError: no image was added.
        """
        self._check()
        counts = self.per_image_counts
        per_threshold = [per_image_scores(counts[:, j])["jaccard"] for j in range(self.thresholds.size)]
        return np.array([float(np.mean(j)) for j in per_threshold])

    def curve(self) -> list[tuple[float, float]]:
        """``[(threshold, mean per-image Jaccard), ...]`` along the grid, for plots."""
        return [(float(t), float(j)) for t, j in zip(self.thresholds, self.mean_jaccard(), strict=True)]

    def best(self) -> float:
        """The grid threshold maximising the mean per-image Jaccard (ties: closest to 0.5, then
        the lower).

        Raises:
            ValueError: no image was added.
        """
        return float(self.thresholds[_pick(self.thresholds, self.mean_jaccard())])

    def counts_at(self, threshold: float) -> np.ndarray:
        """``(N, 4)`` raw counts of every image at one grid threshold.

        Raises:
            ValueError: a threshold not on the grid (within 1e-12), or no image was added.
        """
        self._check()
        hit = np.flatnonzero(np.abs(self.thresholds - float(threshold)) <= 1e-12)
        if hit.size == 0:
            raise ValueError(f"threshold {threshold} is not on the tuner's grid {self.thresholds.tolist()}")
        return self.per_image_counts[:, int(hit[0])]

    def scores_at(self, threshold: float) -> dict[str, Any]:
        """The official Task 1 score dict (:func:`dermseg.evaluation.task1.scores_from_counts`) at
        one grid threshold: ``overall`` (thresholded Jaccard) and the ``macro_average`` scores."""
        return task1_scores_from_counts(self.counts_at(threshold))


__all__ = ["DEFAULT_THRESHOLDS", "Task1ThresholdTuner", "ThresholdTuner"]
