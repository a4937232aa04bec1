"""The official ISIC 2018 Task 1 (lesion segmentation) metric, computed in memory.

Definition (``isic_challenge_scoring.SegmentationScore``, version 5.6.0, which we match to 1e-9):

1. per image, binarise truth and prediction (the scorer reads 8-bit greyscale PNGs and keeps
   ``value > 128``; the rules for in-memory arrays are those of :func:`binarise_mask`) and count
   the pixels TP, FP, FN, TN (raw counts, not normalised);
2. per image, six scores:

   * ``accuracy = (TP + TN) / (TP + TN + FP + FN)``;
   * ``sensitivity = TP / (TP + FN)``, **1.0** when ``TP + FN == 0`` (no lesion in the truth);
   * ``specificity = TN / (TN + FP)``, **1.0** when ``TN + FP == 0`` (lesion everywhere);
   * ``jaccard = TP / (TP + FP + FN)``, **1.0** when ``TP + FP + FN == 0`` (truth and
     prediction both empty);
   * ``threshold_jaccard``: ``jaccard`` if ``jaccard >= 0.65`` else 0.0 (so the empty/empty pair
     scores 1.0 here too);
   * ``dice = 2 TP / (2 TP + FP + FN)``, **1.0** when ``TP + FP + FN == 0``;

3. ``macro_average``: the plain mean over images of each score (every image weighs one,
   whatever its size);
4. the score dict (``SegmentationScore.to_dict()``) is
   ``{"overall": t, "validation": t, "macro_average": {"accuracy": .., "sensitivity": ..,
   "specificity": .., "jaccard": .., "threshold_jaccard": .., "dice": ..}}`` where
   ``t = macro_average["threshold_jaccard"]`` is the leaderboard number.

So an empty truth with a non-empty prediction scores jaccard = dice = threshold_jaccard = 0,
sensitivity = 1 and specificity < 1; an empty truth with an empty prediction scores 1 everywhere.

Unlike Task 2 (:mod:`dermseg.evaluation.metrics`), nothing is normalised by the image size and nothing is
summed over images before dividing: every ratio is per image, then averaged. Per-image ratios
are one correctly rounded float64 division of integer counts, as in the scorer; the means may
differ from pandas' in the last bits (~1e-16).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported where a mask is counted: scoring from counts needs numpy only
    import torch

    ArrayLike = np.ndarray | torch.Tensor

#: Column order of every confusion-count array (the order of :mod:`dermseg.evaluation.metrics` as well).
COUNT_NAMES: tuple[str, ...] = ("tp", "fp", "fn", "tn")

#: Per-image scores, in the scorer's column order.
SCORE_NAMES: tuple[str, ...] = (
    "accuracy",
    "sensitivity",
    "specificity",
    "jaccard",
    "threshold_jaccard",
    "dice",
)

#: A per-image Jaccard index below this counts as 0 in ``threshold_jaccard``.
JACCARD_THRESHOLD: float = 0.65

#: The scorer keeps 8-bit mask values strictly above this.
PNG_THRESHOLD: int = 128


def binarise_mask(x: ArrayLike, threshold: float = 0.5) -> np.ndarray | torch.Tensor:
    """Turn one mask or probability map into bool, keeping numpy as numpy and torch as torch.

    Args:
        x: an array or tensor of any shape:

            * bool: used as is;
            * integer with values in 0..255: a 0/1 mask when every value is 0 or 1 (then 1 is
              positive), otherwise an 8-bit mask positive where ``x > 128``, the scorer's rule
              (0/255 masks and grey-level predictions alike). Caution: an 8-bit *file* holding
              only 0 and 1 is empty for the scorer; here such an array is a 0/1 mask;
            * float probabilities in [0, 1]: positive where ``x > threshold`` (strict). A
              probability saved as a 0-255 PNG and scored officially is positive where
              ``round(255 p) > 128``, i.e. ``p > 0.5039``, which a threshold of 0.5 matches
              except for ``0.5 < p <= 0.5039``.
        threshold: for floats, in [0, 1].

    Returns:
        bool array (numpy) or tensor (torch, on the input's device) of the same shape.

    Raises:
        ValueError: integers outside 0..255, floats outside [0, 1] (logits?), a threshold
            outside [0, 1], or a dtype that is none of bool, integer and float.
    """
    import torch

    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1]; got {threshold}")
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.bool:
            return x
        if x.is_floating_point():
            if x.numel() and (bool(x.min() < 0) or bool(x.max() > 1)):
                raise ValueError("float masks must be probabilities in [0, 1]; got values outside (logits?)")
            return x > threshold
        if x.is_complex():
            raise ValueError(f"cannot binarise a mask of dtype {x.dtype}")
        if x.numel() == 0:
            return x.to(torch.bool)
        lo, hi = int(x.min()), int(x.max())
        return _int_rule(x, lo, hi)
    x = np.asarray(x)
    if x.dtype == np.bool_:
        return x
    if x.dtype.kind == "f":
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError("float masks must be probabilities in [0, 1]; got values outside (logits?)")
        return x > threshold
    if x.dtype.kind not in "iu":
        raise ValueError(f"cannot binarise a mask of dtype {x.dtype}")
    if x.size == 0:
        return x.astype(bool)
    lo, hi = (0, int(x.max())) if x.dtype == np.uint8 else (int(x.min()), int(x.max()))
    return _int_rule(x, lo, hi)


def _int_rule(x: Any, lo: int, hi: int) -> Any:
    if lo < 0 or hi > 255:
        raise ValueError(f"integer masks must hold values in 0..255; got values in {lo}..{hi}")
    return x == 1 if hi <= 1 else x > PNG_THRESHOLD


def confusion_counts(pred: ArrayLike, truth: ArrayLike, threshold: float = 0.5) -> np.ndarray:
    """Raw confusion counts of one image.

    Args:
        pred: ``(H, W)`` prediction: bool, integer 0/1 or 0..255, or float probabilities
            (see :func:`binarise_mask`); numpy or torch.
        truth: ``(H, W)`` ground truth, same rules.
        threshold: applied to float inputs, ``x > threshold``.

    Returns:
        ``(4,)`` int64 ``[tp, fp, fn, tn]`` (they sum to ``H * W``).

    Raises:
        ValueError: shapes differ, are not 2-D, the image has no pixel, or a value is invalid
            (see :func:`binarise_mask`).
    """
    import torch

    if tuple(pred.shape) != tuple(truth.shape) or len(pred.shape) != 2:
        raise ValueError(
            "pred and truth must both be (H, W) of one shape; "
            f"got {tuple(pred.shape)} and {tuple(truth.shape)}"
        )
    h, w = pred.shape
    if h * w == 0:
        raise ValueError(f"cannot score an empty image of shape {(h, w)}")
    # CPU tensors are scored with numpy (zero-copy), which is several times faster than torch's
    # CPU kernels for these reductions; tensors on an accelerator are counted there
    pred, truth = _numpy_if_cpu(pred), _numpy_if_cpu(truth)
    p, t = binarise_mask(pred, threshold), binarise_mask(truth, threshold)
    if isinstance(p, torch.Tensor) or isinstance(t, torch.Tensor):
        device = p.device if isinstance(p, torch.Tensor) else t.device
        p, t = torch.as_tensor(p, device=device), torch.as_tensor(t, device=device)
        stacked = torch.stack(
            [torch.count_nonzero(p & t), torch.count_nonzero(p), torch.count_nonzero(t)]
        ).cpu()
        tp, n_pred, n_truth = (int(v) for v in stacked)
    else:
        tp, n_pred, n_truth = np.count_nonzero(p & t), np.count_nonzero(p), np.count_nonzero(t)
    fp, fn = n_pred - tp, n_truth - tp
    return np.array([tp, fp, fn, h * w - tp - fp - fn], dtype=np.int64)


def _numpy_if_cpu(x: ArrayLike) -> ArrayLike:
    import torch

    if isinstance(x, torch.Tensor) and x.device.type == "cpu":
        x = x.detach().resolve_conj().resolve_neg()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return x


def per_image_scores(counts: np.ndarray) -> dict[str, np.ndarray]:
    """The scorer's six per-image scores from raw confusion counts.

    Args:
        counts: ``(N, 4)`` (or ``(4,)`` for one image) ``[tp, fp, fn, tn]`` pixel counts;
            each row must count at least one pixel.

    Returns:
        ``{name: (N,) float64}`` for every name of :data:`SCORE_NAMES`, with the scorer's
        conventions for empty denominators (see the module docstring).

    Raises:
        ValueError: wrong shape, negative counts, or a row with no pixel.
    """
    c = np.asarray(counts)
    if c.ndim == 1:
        c = c[None]
    if c.ndim != 2 or c.shape[1] != 4:
        raise ValueError(f"counts must have shape (N, 4) [tp, fp, fn, tn]; got {np.asarray(counts).shape}")
    if c.dtype.kind not in "iuf":
        raise ValueError(f"counts must be numbers; got dtype {c.dtype}")
    if (c < 0).any():
        raise ValueError("confusion counts cannot be negative")
    if c.dtype.kind == "u":
        c = c.astype(np.int64)
    tp, fp, fn, tn = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
    total = tp + fp + fn + tn
    if (total == 0).any():
        raise ValueError("every image must count at least one pixel")

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        empty = den == 0
        # one division of the (integer) counts, as the scorer does; 1.0 where undefined
        return np.where(empty, 1.0, num / np.where(empty, 1, den))

    jaccard = ratio(tp, tp + fp + fn)
    return {
        "accuracy": (tp + tn) / total,
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "jaccard": jaccard,
        "threshold_jaccard": np.where(jaccard >= JACCARD_THRESHOLD, jaccard, 0.0),
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
    }


def scores_from_counts(counts: np.ndarray) -> dict[str, Any]:
    """The official Task 1 score dict from per-image raw confusion counts.

    Args:
        counts: ``(N, 4)`` ``[tp, fp, fn, tn]``, one row per image, ``N >= 1``.

    Returns:
        ``{"overall": t, "validation": t, "macro_average": {name: mean over images}}`` with the
        names of :data:`SCORE_NAMES` and ``t = macro_average["threshold_jaccard"]``: the keys
        and values of ``SegmentationScore.to_dict()``; plain floats.

    Raises:
        ValueError: no image, or see :func:`per_image_scores`.
    """
    scores = per_image_scores(counts)
    if len(scores["accuracy"]) == 0:
        raise ValueError("cannot average over zero images")
    macro = {name: float(np.mean(scores[name])) for name in SCORE_NAMES}
    overall = macro["threshold_jaccard"]
    return {"overall": overall, "validation": overall, "macro_average": macro}


class IsicTask1Metric:
    """Streaming official ISIC 2018 Task 1 metric: ``update`` per image, ``compute``, ``reset``.

    Args:
        threshold: applied to float probability inputs, ``x > threshold``, in [0, 1].

    Raises:
        ValueError: a threshold outside [0, 1].

    Example:
        >>> metric = IsicTask1Metric()
        >>> metric.update(prob_map, truth_mask, image_id="ISIC_0000000")  # doctest: +SKIP
        >>> metric.compute()["overall"]  # doctest: +SKIP
    """

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1]; got {threshold}")
        self.threshold = float(threshold)
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._counts: list[np.ndarray] = []
        self._ids: list[str | None] = []

    def update(self, pred: ArrayLike, truth: ArrayLike, image_id: str | None = None) -> np.ndarray:
        """Add one image.

        Args:
            pred: ``(H, W)`` prediction: bool, integer 0/1 or 0..255 (``> 128``), or float
                probabilities (``> threshold``); numpy or torch (any device).
            truth: ``(H, W)`` ground truth, same rules.
            image_id: optional name, kept in :attr:`image_ids`.

        Returns:
            ``(4,)`` int64 ``[tp, fp, fn, tn]`` of this image.

        Raises:
            ValueError: see :func:`confusion_counts`.
        """
        counts = confusion_counts(pred, truth, self.threshold)
        self._counts.append(counts)
        self._ids.append(image_id)
        return counts

    @property
    def num_images(self) -> int:
        """Number of images seen since the last reset."""
        return len(self._counts)

    @property
    def image_ids(self) -> list[str | None]:
        """The ``image_id`` given with each image, in update order (None where none was)."""
        return list(self._ids)

    @property
    def per_image_counts(self) -> np.ndarray:
        """``(N, 4)`` int64 ``[tp, fp, fn, tn]`` of every image seen, in update order."""
        if not self._counts:
            return np.zeros((0, 4), dtype=np.int64)
        return np.stack(self._counts)

    def per_image_scores(self) -> dict[str, np.ndarray]:
        """``{name: (N,) float64}`` the six scores of every image seen (see :func:`per_image_scores`)."""
        if not self._counts:
            return {name: np.zeros(0) for name in SCORE_NAMES}
        return per_image_scores(self.per_image_counts)

    def compute(self) -> dict[str, Any]:
        """The official score dict (see :func:`scores_from_counts`).

        Raises:
            ValueError: no image was added.
        """
        if not self._counts:
            raise ValueError("IsicTask1Metric.compute() called before any update()")
        return scores_from_counts(self.per_image_counts)


__all__ = [
    "COUNT_NAMES",
    "JACCARD_THRESHOLD",
    "PNG_THRESHOLD",
    "SCORE_NAMES",
    "IsicTask1Metric",
    "binarise_mask",
    "confusion_counts",
    "per_image_scores",
    "scores_from_counts",
]
