"""Image-level presence of an attribute: a per-image score, and its ROC AUC against weak labels.

A segmentation model says *where*; image-level criteria (PH2, Derm7pt, see
:mod:`dermseg.data.weak_labels`) say only *whether*. To compare them, each image gets one
presence score per attribute, stated with every result:

* ``p99``: the 99th percentile of the attribute's probability over the pixels of the image's
  field of view (the part the network saw). A high percentile rather than the maximum, so that a
  handful of stray pixels does not decide; 1 % of a 768x560 field is ~4,000 pixels, about the
  area of a few globules.
* ``head``: the sigmoid of the model's presence head (:class:`~dermseg.models.heads.PresenceHead`),
  for checkpoints that have one, averaged over the flips when TTA is on.

The AUC is the Mann-Whitney statistic: the fraction of (positive, negative) image pairs in which
the positive image scores higher, a tie counting half (:func:`~dermseg.evaluation.ranking.exact_ranking`,
which gives scikit-learn's ``roc_auc_score``). With a few dozen images an AUC is uncertain by
+-0.1 or more, so every AUC comes with a stratified bootstrap interval (:func:`auc_interval`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dermseg.data.background import CropBox
from dermseg.evaluation.ranking import exact_ranking
from dermseg.inference.segmenter import Prediction, Segmenter

#: The percentile of :func:`percentile_presence` used by the real-structure benchmark.
PRESENCE_PERCENTILE: float = 99.0

#: How each presence score is described in tables and JSON.
SCORE_DESCRIPTIONS: dict[str, str] = {
    "p99": "99th percentile of the attribute's probability inside the field of view",
    "head": "sigmoid of the presence head (mean over TTA flips)",
}


def percentile_presence(
    probabilities: np.ndarray, field: CropBox | None = None, q: float = PRESENCE_PERCENTILE
) -> np.ndarray:
    """Per-label presence score: the ``q``-th percentile of the probabilities inside ``field``.

    Args:
        probabilities: ``(C, H, W)`` float probabilities (a :class:`Prediction`'s).
        field: the field of view; None scores the whole image.
        q: the percentile, in [0, 100] (100 is the maximum, :attr:`Prediction.presence`).

    Returns:
        ``(C,)`` float64.

    Raises:
        ValueError: ``probabilities`` is not 3-D or has no pixel in ``field``, or ``q`` is outside [0, 100].
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must lie in [0, 100]; got {q}")
    p = np.asarray(probabilities)
    if p.ndim != 3:
        raise ValueError(f"probabilities must be (C, H, W); got shape {p.shape}")
    if field is not None:
        p = p[:, field.top : field.bottom, field.left : field.right]
    if p.shape[1] * p.shape[2] == 0:
        raise ValueError(f"no pixel to score in probabilities of shape {np.asarray(probabilities).shape}")
    return np.percentile(p.reshape(len(p), -1).astype(np.float64), q, axis=1)


def predict_with_presence_head(
    segmenter: Segmenter, image: np.ndarray | str
) -> tuple[Prediction, np.ndarray | None]:
    """Segment ``image`` and read the presence head's probabilities on the way.

    The head's logits are captured with a forward hook while :class:`Segmenter` runs as usual
    (same preprocessing, same TTA), so nothing of the prediction path is repeated here.

    Args:
        segmenter: a PyTorch segmenter (ONNX and ensembles have no head to read).
        image: ``(H, W, 3)`` uint8 RGB or an image path.

    Returns:
        ``(prediction, head)``: ``head`` is ``(C,)`` float64 sigmoid probabilities, the mean
        over the network's forward passes, or None when the model has no presence head.

    Raises:
        ValueError: the segmenter predicts in tiles (each tile's head judges only its tile).
    """
    head = getattr(segmenter.model, "presence_head", None)
    if not isinstance(head, nn.Module):
        return segmenter(image), None
    if segmenter.tiling is not None:
        raise ValueError("the presence head judges the whole field: read it without --tiles")
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        captured.append(torch.sigmoid(output.detach().float()).cpu())

    handle = head.register_forward_hook(keep)
    try:
        prediction = segmenter(image)
    finally:
        handle.remove()
    return prediction, torch.stack(captured).mean(dim=0)[0].double().numpy()


@dataclass(frozen=True)
class PresenceAUC:
    """The presence ROC AUC of one attribute over a set of images.

    Attributes:
        n: images that have both a score and a label.
        n_positive: of those, the images labelled present.
        auc: Mann-Whitney AUC, ties half; None without a positive or without a negative.
        interval: its 95 % stratified bootstrap interval (:func:`auc_interval`), or None with ``auc``.
    """

    n: int
    n_positive: int
    auc: float | None
    interval: tuple[float, float] | None = None


def presence_auc(scores: Mapping[str, float], labels: Mapping[str, bool]) -> PresenceAUC:
    """ROC AUC of per-image presence scores against image-level labels.

    Args:
        scores: ``{image: score}``.
        labels: ``{image: present}``; images missing from ``scores`` are left out (and so are
            scores without a label).

    Returns:
        The AUC with the counts it rests on.

    Raises:
        ValueError: a score is NaN.
    """
    images = [image for image in labels if image in scores]
    s = np.array([scores[i] for i in images], dtype=np.float64)
    y = np.array([bool(labels[i]) for i in images], dtype=bool)
    auc, _ap = exact_ranking(s, y)
    interval = None if auc is None else auc_interval(s[y], s[~y])
    return PresenceAUC(n=len(images), n_positive=int(y.sum()), auc=auc, interval=interval)


def auc_interval(
    positive: np.ndarray, negative: np.ndarray, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Stratified percentile-bootstrap interval of the Mann-Whitney AUC.

    Positives and negatives are resampled separately (with replacement, each group keeping its
    size), so every resample has both; the interval holds the central ``level`` of the resampled
    AUCs (``inverted_cdf`` quantiles: values that occur, no interpolation). Exact per resample:
    with ``W[i, j]`` = 1 when positive i outscores negative j (1/2 on a tie), a resample drawing
    positive i ``a_i`` times and negative j ``b_j`` times has AUC ``a @ W @ b / (P * N)``.

    Args:
        positive: ``(P,)`` scores of the images labelled present, P >= 1.
        negative: ``(N,)`` scores of the images labelled absent, N >= 1.
        level: the interval's coverage, in (0, 1).
        resamples: bootstrap resamples.
        seed: the resampling's seed (the same interval for the same inputs).

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: an empty group, or ``level`` outside (0, 1).
    """
    pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("an AUC interval needs at least one positive and one negative")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    rng = np.random.default_rng(seed)
    a = rng.multinomial(pos.size, np.full(pos.size, 1.0 / pos.size), size=resamples)
    b = rng.multinomial(neg.size, np.full(neg.size, 1.0 / neg.size), size=resamples)
    aucs = np.einsum("rp,pn,rn->r", a, wins, b) / (pos.size * neg.size)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(aucs, [tail, 1.0 - tail], method="inverted_cdf")
    return float(low), float(high)


__all__ = [
    "PRESENCE_PERCENTILE",
    "SCORE_DESCRIPTIONS",
    "PresenceAUC",
    "auc_interval",
    "percentile_presence",
    "predict_with_presence_head",
    "presence_auc",
]
