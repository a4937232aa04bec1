"""The official ISIC 2018 Task 2 metric, computed in memory.

Definition (``isic_challenge_scoring.task2.score``, version 5.6.0, which we match to 1e-9):

1. per image and attribute, binarise truth and prediction (the scorer reads 0/255 PNGs and uses
   ``> 128``; here truth and prediction are bool arrays, see :func:`binarise`);
2. count TP, FP, FN, TN and divide all four by the image's pixel count, so that every image
   weighs the same whatever its size;
3. per attribute, sum these normalised counts over all images:
   ``jaccard = TP / (TP + FP + FN)``, ``dice = 2 TP / (2 TP + FP + FN)``;
4. ``micro_average``: the same on the counts summed over all images **and** attributes;
   ``overall`` (the leaderboard number) is ``micro_average["jaccard"]``.

When ``TP + FP + FN == 0`` (an attribute neither present nor predicted in any image) the scorer
returns 1.0 for both Jaccard and Dice ("a perfect answer"); so do we.

Float arithmetic: the scorer divides integer counts by the integer pixel count (one correctly
rounded float64 division each, as here) and sums with pandas in image order; our sums run in
update order, which can differ from the scorer's only in the last bits (~1e-16 relative).

Resolution: normalising by the pixel count of the array that is scored makes each image weigh
one whatever its size, so scoring predictions at a reduced resolution gives a close estimate,
but **the official number requires scoring at the original image size** (the truth masks as
published and the predictions resized to them), which is what the evaluation code does.

:func:`per_image_mean_jaccard` is an extra, **not** the official metric: the mean over images
of per-image Jaccard indices, as reported in some theses and papers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dermseg.attributes import ATTRIBUTES

if TYPE_CHECKING:  # torch is imported where a mask is counted: scoring from counts needs numpy only
    import torch

    ArrayLike = np.ndarray | torch.Tensor

#: Column order of every confusion-count array.
COUNT_NAMES: tuple[str, ...] = ("tp", "fp", "fn", "tn")


def binarise(x: ArrayLike, threshold: float | ArrayLike = 0.5) -> torch.Tensor:
    """Turn a mask, probability map or stack of them into bool.

    Args:
        x: bool (used as is); integer, a binary mask with values in {0, 1} or {0, 255} (nonzero
            is positive, which equals the scorer's ``> 128`` on 0/255 PNGs); or float
            probabilities in [0, 1], positive where ``x > threshold`` (strict, like the scorer).
        threshold: float, or one per channel (dimension ``-3``) for floats.

    Returns:
        bool tensor of the same shape (on the same device for torch input).

    Raises:
        ValueError: integer values other than 0, 1 and 255; floats outside [0, 1] (logits?);
            thresholds outside [0, 1] or of the wrong length.
    """
    import torch

    if isinstance(x, np.ndarray):
        # torch has no negative strides and little support for wide unsigned types
        x = np.ascontiguousarray(x.astype(np.int64) if x.dtype.kind == "u" and x.dtype != np.uint8 else x)
    t = torch.as_tensor(x)
    if t.dtype == torch.bool:
        return t
    if not torch.is_floating_point(t):
        if bool(((t != 0) & (t != 1) & (t != 255)).any()):
            raise ValueError("integer masks must be binary (0/1 or 0/255); pass probabilities as floats")
        return t != 0
    if t.numel() and (bool(t.min() < 0) or bool(t.max() > 1)):
        raise ValueError("float predictions must be probabilities in [0, 1]; got values outside (logits?)")
    thr = torch.as_tensor(threshold, dtype=t.dtype, device=t.device)
    if thr.ndim == 1:
        if t.ndim < 3 or thr.numel() != t.shape[-3]:
            raise ValueError(f"{thr.numel()} thresholds do not match the channels of shape {tuple(t.shape)}")
        thr = thr.view(-1, 1, 1)
    elif thr.ndim > 1:
        raise ValueError(f"threshold must be a float or one per channel; got shape {tuple(thr.shape)}")
    if bool((thr < 0).any()) or bool((thr > 1).any()):
        raise ValueError(f"thresholds must lie in [0, 1]; got {thr.flatten().tolist()}")
    return t > thr


def _raw_counts(pred: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """Integer ``(..., K, 4)`` [tp, fp, fn, tn] of bool ``(..., K, H, W)`` arrays."""
    import torch

    tp = (pred & truth).sum(dim=(-2, -1))
    fp = (pred & ~truth).sum(dim=(-2, -1))
    fn = (~pred & truth).sum(dim=(-2, -1))
    n = pred.shape[-2] * pred.shape[-1]
    return torch.stack([tp, fp, fn, n - tp - fp - fn], dim=-1).cpu().numpy().astype(np.int64)


def _normalise(raw: np.ndarray, pixels: int) -> np.ndarray:
    # one correctly rounded int / int division per count, exactly as the scorer's cm / cm.sum()
    return raw / np.int64(pixels)


def _check_pair(pred: torch.Tensor, truth: torch.Tensor, ndim: int, what: str) -> None:
    if pred.ndim != ndim or pred.shape != truth.shape:
        raise ValueError(
            f"pred and truth must both be {what}; got {tuple(pred.shape)} and {tuple(truth.shape)}"
        )
    if pred.shape[-1] * pred.shape[-2] == 0:
        raise ValueError(f"cannot score an empty image of shape {tuple(pred.shape)}")


def confusion_counts(pred: ArrayLike, truth: ArrayLike) -> np.ndarray:
    """Normalised confusion counts of one image, per attribute.

    Args:
        pred: ``(5, H, W)`` prediction (bool, binary integer, or probabilities thresholded at 0.5;
            see :func:`binarise`).
        truth: ``(5, H, W)`` ground truth, same rules.

    Returns:
        ``(5, 4)`` float64 ``[tp, fp, fn, tn]`` divided by ``H * W`` (each row sums to 1).

    Raises:
        ValueError: shapes differ, are not 3-D, or the image is empty.
    """
    p, t = binarise(pred), binarise(truth)
    _check_pair(p, t, 3, "(K, H, W)")
    return _normalise(_raw_counts(p, t.to(p.device)), p.shape[-2] * p.shape[-1])


def batch_confusion_counts(
    pred: ArrayLike,
    truth: ArrayLike,
    sizes: Sequence[tuple[int, int]] | None = None,
    thresholds: float | Sequence[float] = 0.5,
) -> np.ndarray:
    """Normalised confusion counts of a batch of images.

    Args:
        pred: ``(B, 5, H, W)`` bool / binary integer, or probabilities (see :func:`binarise`).
        truth: ``(B, 5, H, W)`` ground truth.
        sizes: optional ``(h, w)`` per image: only the top-left ``[:h, :w]`` region is scored and
            normalised by ``h * w`` (images of different sizes padded into one batch).
        thresholds: for probabilities, one threshold or one per attribute.

    Returns:
        ``(B, 5, 4)`` float64 normalised ``[tp, fp, fn, tn]``.

    Raises:
        ValueError: mismatched shapes, a bad size, or bad thresholds.
    """
    p, t = binarise(pred, thresholds), binarise(truth)
    _check_pair(p, t, 4, "(B, K, H, W)")
    t = t.to(p.device)
    if sizes is None:
        return _normalise(_raw_counts(p, t), p.shape[-2] * p.shape[-1])
    if len(sizes) != p.shape[0]:
        raise ValueError(f"got {len(sizes)} sizes for a batch of {p.shape[0]} images")
    out = []
    for b, (h, w) in enumerate(sizes):
        if not (0 < h <= p.shape[-2] and 0 < w <= p.shape[-1]):
            raise ValueError(f"size {(h, w)} of image {b} does not fit the batch shape {tuple(p.shape[-2:])}")
        out.append(_normalise(_raw_counts(p[b, :, :h, :w], t[b, :, :h, :w]), h * w))
    return np.stack(out)


def jaccard_from_counts(counts: np.ndarray) -> np.ndarray | float:
    """``TP / (TP + FP + FN)``, 1.0 where ``TP + FP + FN == 0`` (the scorer's convention).

    Args:
        counts: ``(..., 4)`` ``[tp, fp, fn, tn]`` (normalised or not).

    Returns:
        float for a single ``(4,)`` row, else a ``(...)`` float64 array.
    """
    return _ratio(counts, dice=False)


def dice_from_counts(counts: np.ndarray) -> np.ndarray | float:
    """``2 TP / (2 TP + FP + FN)``, 1.0 where ``TP + FP + FN == 0`` (the scorer's convention).

    Args:
        counts: ``(..., 4)`` ``[tp, fp, fn, tn]``.

    Returns:
        float for a single ``(4,)`` row, else a ``(...)`` float64 array.
    """
    return _ratio(counts, dice=True)


def _ratio(counts: np.ndarray, dice: bool) -> np.ndarray | float:
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim == 0 or c.shape[-1] != 4:
        raise ValueError(f"counts must have shape (..., 4) [tp, fp, fn, tn]; got {c.shape}")
    tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
    # same operation order as isic_challenge_scoring.metrics.binary_jaccard / binary_dice
    num, den = (2 * tp, 2 * tp + fp + fn) if dice else (tp, tp + fp + fn)
    empty = (tp + fp + fn) == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(empty, 1.0, num / np.where(empty, 1.0, den))
    return float(out) if out.ndim == 0 else out


def scores_from_counts(counts_sum: np.ndarray, names: Sequence[str] = ATTRIBUTES) -> dict[str, Any]:
    """The official score dict from per-attribute summed normalised counts.

    Args:
        counts_sum: ``(C, 4)`` ``[tp, fp, fn, tn]`` per label, summed over images (C = 5: the
            Task 2 attributes).
        names: the C labels, in channel order (a label set scored with the Task 2 metric).

    Returns:
        ``{"globules": {"jaccard": j, "dice": d}, ... (the five attributes),
        "micro_average": {"jaccard": j, "dice": d}, "overall": micro jaccard}``, all floats;
        the keys and values of ``isic_challenge_scoring.task2.score``.

    Raises:
        ValueError: ``counts_sum`` is not ``(C, 4)``.
    """
    c = np.asarray(counts_sum, dtype=np.float64)
    if c.shape != (len(names), 4):
        raise ValueError(f"counts_sum must have shape ({len(names)}, 4); got {c.shape}")
    scores: dict[str, Any] = {
        name: {"jaccard": float(jaccard_from_counts(row)), "dice": float(dice_from_counts(row))}
        for name, row in zip(names, c, strict=True)
    }
    micro = c.sum(axis=0)
    scores["micro_average"] = {
        "jaccard": float(jaccard_from_counts(micro)),
        "dice": float(dice_from_counts(micro)),
    }
    scores["overall"] = scores["micro_average"]["jaccard"]
    return scores


def per_image_mean_jaccard(
    per_image_counts: np.ndarray, empty_score: float | None = 1.0, names: Sequence[str] = ATTRIBUTES
) -> dict[str, float]:
    """NOT the official metric: the mean over images of each image's Jaccard index.

    Each image's Jaccard per attribute is ``TP / (TP + FP + FN)`` of that image alone. An image
    where the attribute is neither present nor predicted scores ``empty_score`` (1.0, the
    scorer's convention for an empty pair), or is skipped with ``None``. With 1.0, rare
    attributes score high simply because most images lack them; compare with ``None``.

    Args:
        per_image_counts: ``(N, C, 4)`` counts, e.g. :attr:`IsicTask2Metric.per_image_counts`.
        empty_score: score of an empty pair, or None to skip such pairs.
        names: the C labels (the five attributes by default).

    Returns:
        ``{attribute: mean over images, ..., "mean": mean of the five}``; NaN for an attribute
        with no scored image (and then "mean" averages the others).

    Raises:
        ValueError: ``per_image_counts`` is not ``(N, 5, 4)`` with ``N >= 1``.
    """
    c = np.asarray(per_image_counts, dtype=np.float64)
    if c.ndim != 3 or c.shape[1:] != (len(names), 4) or c.shape[0] == 0:
        raise ValueError(f"per_image_counts must have shape (N >= 1, {len(names)}, 4); got {c.shape}")
    jac = np.asarray(jaccard_from_counts(c), dtype=np.float64)
    empty = c[..., :3].sum(axis=-1) == 0
    jac = np.where(empty, np.nan if empty_score is None else float(empty_score), jac)
    result: dict[str, float] = {}
    for k, name in enumerate(names):
        column = jac[:, k][~np.isnan(jac[:, k])]
        result[name] = float(column.mean()) if column.size else float("nan")
    means = [v for v in result.values() if not np.isnan(v)]
    result["mean"] = float(np.mean(means)) if means else float("nan")
    return result


class IsicTask2Metric:
    """Streaming official ISIC 2018 Task 2 metric: ``update`` per batch, ``compute``, ``reset``.

    Args:
        thresholds: applied to probability predictions, ``pred > threshold``: one float or one
            per label (channel order), each in [0, 1].
        names: the labels, in channel order: the five Task 2 attributes by default, or those
            of another label set scored with this metric.

    Raises:
        ValueError: bad thresholds.

    Example:
        >>> metric = IsicTask2Metric(thresholds=0.5)
        >>> metric.update(torch.sigmoid(logits), masks)  # doctest: +SKIP
        >>> metric.compute()["overall"]  # doctest: +SKIP
    """

    def __init__(self, thresholds: float | Sequence[float] = 0.5, names: Sequence[str] = ATTRIBUTES) -> None:
        self.names: tuple[str, ...] = tuple(names)
        n = len(self.names)
        thr = np.asarray(thresholds, dtype=np.float64)
        if thr.ndim > 1 or (thr.ndim == 1 and thr.size != n):
            raise ValueError(f"thresholds must be one float or {n} floats; got {thresholds!r}")
        if not np.all((thr >= 0) & (thr <= 1)):
            raise ValueError(f"thresholds must lie in [0, 1]; got {thresholds!r}")
        self.thresholds: float | list[float] = float(thr) if thr.ndim == 0 else thr.tolist()
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._counts: list[np.ndarray] = []
        self._sum = np.zeros((len(self.names), 4), dtype=np.float64)

    def update(
        self, pred: ArrayLike, truth: ArrayLike, sizes: Sequence[tuple[int, int]] | None = None
    ) -> np.ndarray:
        """Add a batch of images.

        Args:
            pred: ``(B, C, H, W)`` bool / binary integer masks, or float probabilities
                (thresholded with :attr:`thresholds`); C = 5 for the attributes.
            truth: ``(B, C, H, W)`` bool or binary integer ground truth.
            sizes: optional ``(h, w)`` per image of the valid top-left region (padded batches).

        Returns:
            ``(B, C, 4)`` the batch's normalised counts.

        Raises:
            ValueError: see :func:`batch_confusion_counts`.
        """
        counts = batch_confusion_counts(pred, truth, sizes, self.thresholds)
        if counts.shape[1] != len(self.names):
            raise ValueError(f"expected {len(self.names)} attribute channels; got {counts.shape[1]}")
        for image_counts in counts:  # image by image, the scorer's summation order
            self._sum += image_counts
        self._counts.append(counts)
        return counts

    @property
    def num_images(self) -> int:
        """Number of images seen since the last reset."""
        return sum(len(c) for c in self._counts)

    @property
    def per_image_counts(self) -> np.ndarray:
        """``(N, C, 4)`` normalised counts of every image seen, in update order."""
        if not self._counts:
            return np.zeros((0, len(self.names), 4))
        return np.concatenate(self._counts)

    @property
    def counts_sum(self) -> np.ndarray:
        """``(C, 4)`` normalised counts summed over images."""
        return self._sum.copy()

    def compute(self) -> dict[str, Any]:
        """The official score dict (see :func:`scores_from_counts`).

        Raises:
            ValueError: no image was added.
        """
        if not self._counts:
            raise ValueError("IsicTask2Metric.compute() called before any update()")
        return scores_from_counts(self._sum, self.names)

    def per_image_mean_jaccard(self, empty_score: float | None = 1.0) -> dict[str, float]:
        """NOT official: :func:`per_image_mean_jaccard` of the images seen."""
        if not self._counts:
            raise ValueError("IsicTask2Metric.per_image_mean_jaccard() called before any update()")
        return per_image_mean_jaccard(self.per_image_counts, empty_score, self.names)


__all__ = [
    "COUNT_NAMES",
    "IsicTask2Metric",
    "batch_confusion_counts",
    "binarise",
    "confusion_counts",
    "dice_from_counts",
    "jaccard_from_counts",
    "per_image_mean_jaccard",
    "scores_from_counts",
]
