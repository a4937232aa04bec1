"""Threshold-free ranking metrics: pixel-level ROC AUC and average precision, streaming.

:class:`StreamingRanking` keeps, per attribute, a histogram of the probabilities of positive and
of negative pixels, so memory is ``O(bins)`` whatever the number of images. Probabilities are
rounded to the nearest multiple of ``1 / bins`` (``bins + 1`` cells, 0 and 1 included); the
metrics are then computed exactly as scikit-learn computes them for these rounded scores:

* **AUC** (``sklearn.metrics.roc_auc_score``): the trapezoid under the ROC whose points are the
  thresholds at the cell values; a positive and a negative in the same cell count as a tie
  (half a correctly ordered pair), as sklearn counts tied scores;
* **AP** (``sklearn.metrics.average_precision_score``): the step-wise sum
  ``sum_k (R_k - R_{k-1}) P_k`` over the same thresholds, descending.

So probabilities already on the ``1 / bins`` grid give sklearn's values (to float rounding); for
continuous probabilities the only error comes from positives and negatives that share a cell
(they count as ties). For AUC it is at most half the fraction of positive-negative pairs sharing
a cell. With well-spread probabilities and the default 4096 bins the tests see AUC errors of
~1e-5 and AP errors below 5e-4; probabilities piled into one cell (e.g. saturated sigmoids all
above 1 - 1/8192, which share the top cell) tie more pairs: raise ``bins`` for such models.

:class:`PresenceAUC` ranks images instead of pixels: an image's score for an attribute is its
maximum probability and its label whether the attribute is present in its truth; it keeps one
pair per image and computes AUC and AP exactly (:func:`exact_ranking`, ties as sklearn).

Undefined values are ``None``: AUC when an attribute has no positive or no negative (pixels or
images), AP when it has no positive. With positives only, AP is 1.0 (every precision is 1), as
in sklearn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dermseg.attributes import ATTRIBUTES

ArrayLike = np.ndarray | torch.Tensor
Scores = dict[str, dict[str, float | None]]


def auc_ap_from_histograms(pos: np.ndarray, neg: np.ndarray) -> tuple[float | None, float | None]:
    """ROC AUC and average precision from counts of positives and negatives per score value.

    Args:
        pos: ``(M,)`` number of positives at each score value, in **ascending** score order.
        neg: ``(M,)`` number of negatives at the same score values.

    Returns:
        ``(auc, ap)``: sklearn's ``roc_auc_score`` and ``average_precision_score`` for scores
        with these counts; ``auc`` is None without positives or negatives, ``ap`` without
        positives.

    Raises:
        ValueError: shapes differ or are not 1-D.
    """
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    if pos.ndim != 1 or pos.shape != neg.shape:
        raise ValueError(f"pos and neg must be 1-D of the same length; got {pos.shape} and {neg.shape}")
    pos, neg = pos[::-1], neg[::-1]  # descending scores: lowering the threshold one value at a time
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    n_pos = tp[-1] if tp.size else 0.0
    n_neg = fp[-1] if fp.size else 0.0
    ap = None
    if n_pos > 0:
        hit = pos > 0  # only thresholds that add recall contribute
        ap = float(np.sum(pos[hit] * (tp[hit] / (tp[hit] + fp[hit]))) / n_pos)
    auc = None
    if n_pos > 0 and n_neg > 0:
        # each negative at a value beats the positives above it and ties with those at its value
        tp_above = tp - pos
        auc = float(np.sum(neg * (tp_above + 0.5 * pos)) / (n_pos * n_neg))
    return auc, ap


def curves_from_histograms(pos: np.ndarray, neg: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
    """ROC and precision-recall points from counts of positives and negatives per score value.

    The points are those of sklearn's ``roc_curve`` (with the ``(0, 0)`` start and without
    dropping collinear points) and ``precision_recall_curve`` (without its final ``(recall 0,
    precision 1)`` point) for scores with these counts: one point per score value that holds a
    pixel, thresholds descending. The trapezoid under ``(fpr, tpr)`` is the AUC and
    ``sum(diff(recall, prepend=0) * precision)`` the AP of :func:`auc_ap_from_histograms`.

    Args:
        pos: ``(M,)`` number of positives at each score value, in **ascending** score order.
        neg: ``(M,)`` number of negatives at the same score values.
        values: ``(M,)`` the score values themselves (ascending).

    Returns:
        ``{"roc_thresholds", "fpr", "tpr"}`` (``K + 1`` points, the first at threshold ``inf``)
        and ``{"pr_thresholds", "precision", "recall"}`` (``K`` points), float64 arrays; the ROC
        arrays are empty without positives or negatives, the PR arrays without positives.

    Raises:
        ValueError: shapes differ or are not 1-D.
    """
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if pos.ndim != 1 or pos.shape != neg.shape or values.shape != pos.shape:
        raise ValueError(
            "pos, neg and values must be 1-D of the same length; "
            f"got {pos.shape}, {neg.shape}, {values.shape}"
        )
    pos, neg, values = pos[::-1], neg[::-1], values[::-1]
    held = (pos + neg) > 0  # a threshold at an empty cell adds no point
    tp, fp, thr = np.cumsum(pos)[held], np.cumsum(neg)[held], values[held]
    n_pos, n_neg = pos.sum(), neg.sum()
    empty = np.zeros(0)
    out = {k: empty for k in ("roc_thresholds", "fpr", "tpr", "pr_thresholds", "precision", "recall")}
    if n_pos > 0 and n_neg > 0:
        out["roc_thresholds"] = np.concatenate([[np.inf], thr])
        out["fpr"] = np.concatenate([[0.0], fp / n_neg])
        out["tpr"] = np.concatenate([[0.0], tp / n_pos])
    if n_pos > 0:
        out["pr_thresholds"] = thr
        out["precision"] = tp / (tp + fp)
        out["recall"] = tp / n_pos
    return out


def exact_ranking(scores: np.ndarray, labels: np.ndarray) -> tuple[float | None, float | None]:
    """Exact ROC AUC and average precision of scores against binary labels (ties as sklearn).

    Args:
        scores: ``(N,)`` real scores.
        labels: ``(N,)`` bool (or 0/1) labels.

    Returns:
        ``(auc, ap)``, None where undefined (see :func:`auc_ap_from_histograms`).

    Raises:
        ValueError: shapes differ or are not 1-D, or scores contain NaN.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if s.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"scores and labels must be 1-D of the same length; got {s.shape} and {y.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    values, inverse = np.unique(s, return_inverse=True)
    pos = np.bincount(inverse.ravel(), weights=y, minlength=values.size)
    total = np.bincount(inverse.ravel(), minlength=values.size)
    return auc_ap_from_histograms(pos, total - pos)


def _names(num_classes: int, names: Sequence[str] | None) -> tuple[str, ...]:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1; got {num_classes}")
    if names is None:
        names = ATTRIBUTES if num_classes == len(ATTRIBUTES) else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"got {len(names)} names for {num_classes} classes")
    return tuple(names)


def _to_backend(x: ArrayLike, cuda: bool) -> np.ndarray | torch.Tensor:
    if cuda:  # torch cannot wrap numpy arrays with negative strides (flipped views)
        return torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def as_probability_batch(
    probs: ArrayLike, truth: ArrayLike, valid: ArrayLike | None = None, num_classes: int = len(ATTRIBUTES)
) -> tuple[ArrayLike, ArrayLike, ArrayLike | None]:
    """Check a batch of probability maps with their truth and bring it to a common form.

    Inputs on a CUDA device stay there as tensors (so that the caller's histograms run on the
    device); anything else becomes numpy (``np.bincount`` is ~10x faster than ``torch.bincount``
    on the CPU).

    Args:
        probs: ``(B, C, H, W)`` or ``(C, H, W)`` float probabilities in [0, 1].
        truth: same shape, bool or binary integer (nonzero is positive).
        valid: optional pixel mask ``(B, H, W)`` / ``(H, W)`` (all classes) or the shape of
            ``probs``; nonzero is valid.
        num_classes: expected ``C``.

    Returns:
        ``(p, t, v)``: ``(B, C, H, W)`` float, ``(B, C, H, W)`` bool, and ``(B, 1 or C, H, W)``
        bool or None; all numpy arrays, or all CUDA tensors.

    Raises:
        ValueError: shapes or dtypes do not match, or probabilities are outside [0, 1] or NaN.
    """
    cuda = isinstance(probs, torch.Tensor) and probs.is_cuda
    p, t = _to_backend(probs, cuda), _to_backend(truth, cuda)
    v = None if valid is None else _to_backend(valid, cuda)
    if cuda:
        t = t.to(p.device)
        v = None if v is None else v.to(p.device)
    if p.ndim == 3:
        p, t = p[None], t[None]
        v = None if v is None else v[None]
    if p.ndim != 4 or p.shape[1] != num_classes or tuple(t.shape) != tuple(p.shape):
        raise ValueError(
            f"probs and truth must both be ({num_classes}, H, W) or (B, {num_classes}, H, W); "
            f"got {tuple(p.shape)} and {tuple(t.shape)}"
        )
    is_float = torch.is_floating_point(p) if cuda else p.dtype.kind == "f"
    if not is_float:
        raise ValueError(f"probs must be float probabilities; got {p.dtype}")
    t_float = torch.is_floating_point(t) if cuda else t.dtype.kind in "fc"
    if t_float:
        raise ValueError(f"truth must be bool or binary integers; got {t.dtype}")
    if p.numel() if cuda else p.size:
        bad = p.isnan().any() if cuda else np.isnan(p).any()
        if bool(bad) or bool(p.min() < 0) or bool(p.max() > 1):
            raise ValueError("probs must be probabilities in [0, 1] (got NaN or values outside; logits?)")
    if v is not None:
        if v.ndim == 3:
            v = v[:, None]
        if (
            v.ndim != 4
            or v.shape[0] != p.shape[0]
            or v.shape[1] not in (1, num_classes)
            or tuple(v.shape[2:]) != tuple(p.shape[2:])
        ):
            raise ValueError(
                f"valid must be (B, H, W) or (B, C, H, W) for probs {tuple(p.shape)}; got {tuple(v.shape)}"
            )
        v = v != 0
    return p, t != 0, v


def _cell_counts(p: ArrayLike, t: ArrayLike, valid: ArrayLike | None, bins: int) -> np.ndarray:
    """``(2 * (bins + 1),)`` counts of ``(H, W)`` probs rounded to ``1 / bins`` (negatives, positives)."""
    cells = bins + 1
    if isinstance(p, torch.Tensor):
        if p.dtype in (torch.float16, torch.bfloat16):
            p = p.float()
        key = torch.round(p * bins).long() + t.long() * cells  # round half to even, like np.rint
        if valid is not None:
            key = key[valid]
        return torch.bincount(key.ravel(), minlength=2 * cells).cpu().numpy()
    key = np.rint(p * bins).astype(np.intp)
    key += t * cells
    if valid is not None:
        key = key[valid]
    return np.bincount(key.ravel(), minlength=2 * cells)


class StreamingRanking:
    """Streaming pixel-level ROC AUC and average precision per attribute (bounded memory).

    ``update`` per batch, ``compute``, ``reset``, ``merge`` (e.g. after gathering from other
    processes). See the module docstring for the binning and its accuracy.

    Args:
        num_classes: channels of the probability maps (5 attributes).
        bins: probabilities are rounded to multiples of ``1 / bins``; memory ``2 * C * (bins + 1)``
            int64.
        names: keys of :meth:`compute`; default ATTRIBUTES for 5 classes, else ``"0", "1", ...``.

    Raises:
        ValueError: ``bins < 1`` or names that do not match ``num_classes``.
    """

    def __init__(
        self, num_classes: int = len(ATTRIBUTES), bins: int = 4096, names: Sequence[str] | None = None
    ) -> None:
        if bins < 1:
            raise ValueError(f"bins must be >= 1; got {bins}")
        self.names = _names(num_classes, names)
        self.num_classes = num_classes
        self.bins = int(bins)
        self.reset()

    def reset(self) -> None:
        """Forget every pixel seen."""
        #: ``(C, 2, bins + 1)`` pixel counts per cell: ``[:, 0]`` negatives, ``[:, 1]`` positives.
        self.histograms = np.zeros((self.num_classes, 2, self.bins + 1), dtype=np.int64)

    @torch.no_grad()
    def update(self, probs: ArrayLike, truth: ArrayLike, valid: ArrayLike | None = None) -> None:
        """Add the pixels of a batch (or one image).

        CUDA tensors are histogrammed on their device (no copy of the maps to the CPU).

        Args:
            probs: ``(B, C, H, W)`` or ``(C, H, W)`` float probabilities in [0, 1].
            truth: same shape, bool or binary integer (nonzero is positive).
            valid: optional bool mask of the pixels to count, ``(B, H, W)`` / ``(H, W)`` for all
                classes or the full shape of ``probs``.

        Raises:
            ValueError: shapes or dtypes do not match, or probabilities outside [0, 1].
        """
        p, t, v = as_probability_batch(probs, truth, valid, self.num_classes)
        cells = self.bins + 1
        for b in range(p.shape[0]):  # image by image, channel by channel: bounded temporaries
            for c in range(self.num_classes):
                mask = None if v is None else v[b, c if v.shape[1] > 1 else 0]
                self.histograms[c] += _cell_counts(p[b, c], t[b, c], mask, self.bins).reshape(2, cells)

    def merge(self, other: StreamingRanking) -> None:
        """Add another accumulator's counts (same ``num_classes`` and ``bins``).

        Raises:
            ValueError: the accumulators are not compatible.
        """
        if other.histograms.shape != self.histograms.shape:
            raise ValueError(
                f"cannot merge histograms of shape {other.histograms.shape} into {self.histograms.shape}"
            )
        self.histograms += other.histograms

    def compute(self) -> Scores:
        """Per-class metrics.

        Returns:
            ``{name: {"auc": float | None, "ap": float | None}}`` in class order (None: see the
            module docstring).
        """
        out: Scores = {}
        for name, (neg, pos) in zip(self.names, self.histograms, strict=True):
            auc, ap = auc_ap_from_histograms(pos, neg)
            out[name] = {"auc": auc, "ap": ap}
        return out

    def curves(self) -> dict[str, dict[str, np.ndarray]]:
        """Per-class ROC and precision-recall points (:func:`curves_from_histograms`).

        Returns:
            ``{name: {"roc_thresholds", "fpr", "tpr", "pr_thresholds", "precision", "recall"}}``;
            thresholds are the cell values ``k / bins``.
        """
        values = np.arange(self.bins + 1, dtype=np.float64) / self.bins
        return {
            name: curves_from_histograms(pos, neg, values)
            for name, (neg, pos) in zip(self.names, self.histograms, strict=True)
        }


class PresenceAUC:
    """Image-level presence ranking: max probability per image vs "is the attribute present".

    Keeps one score and one label per image and class, and computes AUC and AP exactly.

    Args:
        num_classes: channels (5 attributes).
        names: keys of :meth:`compute` (default as :class:`StreamingRanking`).
    """

    def __init__(self, num_classes: int = len(ATTRIBUTES), names: Sequence[str] | None = None) -> None:
        self.names = _names(num_classes, names)
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    @torch.no_grad()
    def update(self, probs: ArrayLike, truth: ArrayLike, valid: ArrayLike | None = None) -> None:
        """Add a batch (or one image).

        Args:
            probs: ``(B, C, H, W)`` or ``(C, H, W)`` float probabilities in [0, 1].
            truth: same shape, bool or binary integer.
            valid: optional mask as in :meth:`StreamingRanking.update`; only valid pixels count
                (an image without valid pixels scores 0 and is absent).

        Raises:
            ValueError: see :meth:`StreamingRanking.update`.
        """
        p, t, v = as_probability_batch(probs, truth, valid, self.num_classes)
        if v is not None:
            p, t = p * v, t & v  # probabilities are >= 0, so zeroing keeps the max of the valid ones
        b, c = p.shape[:2]
        if p.shape[-1] * p.shape[-2] == 0:
            scores, labels = np.zeros((b, c)), np.zeros((b, c), dtype=bool)
        elif isinstance(p, torch.Tensor):
            scores = p.reshape(b, c, -1).amax(dim=2).double().cpu().numpy()
            labels = t.reshape(b, c, -1).any(dim=2).cpu().numpy()
        else:
            scores = p.reshape(b, c, -1).max(axis=2).astype(np.float64)
            labels = t.reshape(b, c, -1).any(axis=2)
        self._scores.append(scores)
        self._labels.append(labels)

    @property
    def scores(self) -> np.ndarray:
        """``(N, C)`` float64 max probability of every image seen."""
        return np.concatenate(self._scores) if self._scores else np.zeros((0, self.num_classes))

    @property
    def labels(self) -> np.ndarray:
        """``(N, C)`` bool presence of every image seen."""
        return np.concatenate(self._labels) if self._labels else np.zeros((0, self.num_classes), dtype=bool)

    def compute(self) -> Scores:
        """Per-class image-level metrics.

        Returns:
            ``{name: {"auc": float | None, "ap": float | None}}``; None where undefined (e.g. an
            attribute present in every image or in none).
        """
        scores, labels = self.scores, self.labels
        out: Scores = {}
        for c, name in enumerate(self.names):
            auc, ap = exact_ranking(scores[:, c], labels[:, c])
            out[name] = {"auc": auc, "ap": ap}
        return out


__all__ = [
    "PresenceAUC",
    "StreamingRanking",
    "auc_ap_from_histograms",
    "curves_from_histograms",
    "exact_ranking",
]
