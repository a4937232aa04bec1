"""Threshold tuning for the official ISIC 2018 Task 2 Jaccard, streaming over images.

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

Thresholds tuned on the data they are then scored on overestimate the score: tune on a
validation split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dermseg.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from dermseg.evaluation.metrics import jaccard_from_counts, scores_from_counts
from dermseg.evaluation.ranking import ArrayLike, as_probability_batch

#: Default candidate thresholds: 0.05, 0.10, ..., 0.95.
DEFAULT_THRESHOLDS: np.ndarray = np.linspace(0.05, 0.95, 19)
# Tolerance under which two Jaccard values count as tied (float sums differ in the last bits).
_TIE = 1e-12
# Probabilities are first located in 2**16 equal cells by a lookup table; only pixels in the few
# cells that contain a threshold are compared exactly (np.searchsorted is ~10x slower per pixel).
_CELLS = 1 << 16


class ThresholdTuner:
    """Official Jaccard per attribute at every candidate threshold, accumulated image by image.

    Args:
        thresholds: candidate thresholds in [0, 1] (sorted, duplicates removed); default
            :data:`DEFAULT_THRESHOLDS`.

    Raises:
        ValueError: an empty grid or thresholds outside [0, 1].

    Example:
        >>> tuner = ThresholdTuner()
        >>> for probs, truth in validation:  # doctest: +SKIP
        ...     tuner.update(probs, truth)
        >>> thresholds = tuner.best()  # doctest: +SKIP
    """

    def __init__(self, thresholds: Sequence[float] | np.ndarray | None = None) -> None:
        grid = DEFAULT_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0:
            raise ValueError(f"thresholds must be a non-empty 1-D grid; got {thresholds!r}")
        if np.isnan(grid).any() or grid.min() < 0 or grid.max() > 1:
            raise ValueError(f"thresholds must lie in [0, 1]; got {grid.tolist()}")
        self.thresholds: np.ndarray = np.unique(grid)
        self._tables: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._sum = np.zeros((NUM_ATTRIBUTES, self.thresholds.size, 4), dtype=np.float64)
        self.num_images = 0

    # -- accumulation -------------------------------------------------------------------------

    def _table(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
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

    def _index(self, p: ArrayLike) -> ArrayLike:
        """Number of grid thresholds strictly below each probability of an ``(H, W)`` map."""
        if isinstance(p, torch.Tensor):  # CUDA: bucketize counts the boundaries < x, like side="left"
            p = p.float() if p.dtype in (torch.float16, torch.bfloat16) else p
            edges = torch.as_tensor(self.thresholds, device=p.device).to(p.dtype)
            return torch.bucketize(p, edges, right=False)
        if p.dtype not in (np.float32, np.float64):
            p = p.astype(np.float32)
        edges, table = self._table(p.dtype)
        cell = (p * _CELLS).astype(np.intp)  # exact: scaling by a power of two, then floor (p >= 0)
        index = np.take(table, cell)
        fix = index == np.iinfo(table.dtype).max
        if fix.any():
            index[fix] = np.searchsorted(edges, p[fix], side="left")
        return index

    def update(
        self, probs: ArrayLike, truth: ArrayLike, sizes: Sequence[tuple[int, int]] | None = None
    ) -> None:
        """Add one image or a batch.

        Args:
            probs: ``(5, H, W)`` or ``(B, 5, H, W)`` float probabilities in [0, 1] (numpy or
                tensors; CUDA tensors are counted on their device).
            truth: same shape, bool or binary integer.
            sizes: for a batch, optional ``(h, w)`` per image: only ``[:h, :w]`` is scored and
                normalised by ``h * w`` (as :class:`dermseg.evaluation.metrics.IsicTask2Metric`).

        Raises:
            ValueError: bad shapes or dtypes, probabilities outside [0, 1], a bad size, or an
                empty image.
        """
        p, t, _ = as_probability_batch(probs, truth, None, NUM_ATTRIBUTES)
        height, width = p.shape[-2:]
        if sizes is not None and len(sizes) != p.shape[0]:
            raise ValueError(f"got {len(sizes)} sizes for a batch of {p.shape[0]} images")
        n_t = self.thresholds.size
        for b in range(p.shape[0]):
            h, w = (height, width) if sizes is None else sizes[b]
            if not (0 < h <= height and 0 < w <= width):
                raise ValueError(f"size {(h, w)} of image {b} does not fit the shape {(height, width)}")
            counts = np.empty((NUM_ATTRIBUTES, n_t, 4), dtype=np.float64)
            for k in range(NUM_ATTRIBUTES):
                key = self._index(p[b, k, :h, :w])
                tk = t[b, k, :h, :w]
                if isinstance(key, torch.Tensor):
                    hist = torch.bincount((key + tk.long() * (n_t + 1)).ravel(), minlength=2 * (n_t + 1))
                    hist = hist.cpu().numpy()
                else:
                    hist = np.bincount((key + tk * (n_t + 1)).ravel(), minlength=2 * (n_t + 1))
                neg, pos = hist.reshape(2, n_t + 1).astype(np.int64)
                # positive at threshold j  <=>  more than j thresholds lie below the probability
                tp = np.cumsum(pos[::-1])[::-1][1:]
                fp = np.cumsum(neg[::-1])[::-1][1:]
                fn = pos.sum() - tp
                raw = np.stack([tp, fp, fn, h * w - tp - fp - fn], axis=-1)
                counts[k] = raw / np.int64(h * w)  # the metric's (and the scorer's) normalisation
            self._sum += counts  # image by image, the scorer's summation order
            self.num_images += 1

    def merge(self, other: ThresholdTuner) -> None:
        """Add another tuner's counts (same grid), e.g. from another process.

        Raises:
            ValueError: the grids differ.
        """
        if not np.array_equal(other.thresholds, self.thresholds):
            raise ValueError("cannot merge tuners with different threshold grids")
        self._sum += other._sum
        self.num_images += other.num_images

    # -- results ------------------------------------------------------------------------------

    @property
    def counts(self) -> np.ndarray:
        """``(5, T, 4)`` normalised ``[tp, fp, fn, tn]`` summed over images, per grid threshold."""
        return self._sum.copy()

    def _check(self) -> None:
        if self.num_images == 0:
            raise ValueError("ThresholdTuner has seen no image; call update() first")

    def jaccard(self) -> np.ndarray:
        """``(5, T)`` official Jaccard of each attribute at each grid threshold.

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
            for k, name in enumerate(ATTRIBUTES)
        }

    def _pick(self, values: np.ndarray, current: int | None = None) -> int:
        """Index of the maximum; ties: ``current`` if tied, else closest to 0.5, else the lower."""
        tied = np.flatnonzero(values >= values.max() - _TIE)
        if current is not None and current in tied:
            return current
        distance = np.abs(self.thresholds[tied] - 0.5)
        return int(tied[np.flatnonzero(distance <= distance.min() + _TIE)[0]])  # |0.7 - 0.5| < 0.2

    def best(self) -> np.ndarray:
        """Per attribute, the grid threshold maximising its own official Jaccard.

        Ties (within 1e-12) go to the threshold closest to 0.5, then to the lower one.

        Returns:
            ``(5,)`` float64 thresholds, ATTRIBUTES order.

        Raises:
            ValueError: no image was added.
        """
        jac = self.jaccard()
        return self.thresholds[[self._pick(row) for row in jac]]

    def _indices(self, thresholds: float | Sequence[float] | np.ndarray) -> np.ndarray:
        thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (NUM_ATTRIBUTES,))
        hit = np.abs(thr[:, None] - self.thresholds[None, :]) <= 1e-12
        if not hit.any(axis=1).all():
            raise ValueError(
                f"thresholds {thr.tolist()} are not all on the tuner's grid {self.thresholds.tolist()}"
            )
        return hit.argmax(axis=1)

    def counts_at(self, thresholds: float | Sequence[float] | np.ndarray) -> np.ndarray:
        """``(5, 4)`` summed normalised counts at one grid threshold per attribute (or one for all).

        Raises:
            ValueError: a threshold not on the grid (within 1e-12), or no image was added.
        """
        self._check()
        return self._sum[np.arange(NUM_ATTRIBUTES), self._indices(thresholds)]

    def scores_at(self, thresholds: float | Sequence[float] | np.ndarray) -> dict[str, Any]:
        """The official score dict (:func:`~dermseg.evaluation.metrics.scores_from_counts`) at grid
        thresholds."""
        return scores_from_counts(self.counts_at(thresholds))

    def overall_at(self, thresholds: float | Sequence[float] | np.ndarray) -> float:
        """The official overall (micro-averaged) Jaccard at one grid threshold per attribute.

        Raises:
            ValueError: a threshold not on the grid, or no image was added.
        """
        return float(self.scores_at(thresholds)["overall"])

    def best_overall(self, iterations: int = 2) -> np.ndarray:
        """Thresholds improving the overall (micro) Jaccard by coordinate ascent from :meth:`best`.

        Each iteration visits the attributes in order and moves each one's threshold to the grid
        value maximising the overall Jaccard with the other four fixed (keeping the current one
        on ties); it stops early when an iteration changes nothing. The result's overall Jaccard
        is never below that of :meth:`best`, but is a local optimum, not necessarily the global
        one over all ``T**5`` combinations.

        Args:
            iterations: passes over the five attributes, >= 0 (0 returns :meth:`best`).

        Returns:
            ``(5,)`` float64 grid thresholds.

        Raises:
            ValueError: ``iterations < 0`` or no image was added.
        """
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0; got {iterations}")
        idx = self._indices(self.best())
        tp = self._sum[..., 0]
        err = self._sum[..., 0] + self._sum[..., 1] + self._sum[..., 2]  # tp + fp + fn, (5, T)
        rows = np.arange(NUM_ATTRIBUTES)
        for _ in range(iterations):
            changed = False
            for k in range(NUM_ATTRIBUTES):
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


__all__ = ["DEFAULT_THRESHOLDS", "ThresholdTuner"]
