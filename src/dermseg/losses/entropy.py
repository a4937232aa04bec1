"""Cross-entropy losses: softmax ``ce`` (``"multiclass"``) and sigmoid ``bce`` (``"multilabel"``).

Each is a pure function plus its module form; ``ce`` is the thesis loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.encoding import masks_to_classes
from dermseg.losses._common import (
    ArrayLike,
    _buffer,
    _channel_vector,
    _check,
    _no_unlabelled,
    _weighted_pixel_mean,
    num_labels_of,
)


def cross_entropy(
    logits: torch.Tensor,
    masks: torch.Tensor,
    weight: ArrayLike | None = None,
    labelled: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class-weighted softmax cross-entropy (``"multiclass"``), the thesis loss.

    Targets are :func:`~dermseg.encoding.masks_to_classes` of ``masks``. The reduction is the
    weighted mean ``sum_i w_{y_i} l_i / sum_i w_{y_i}``, identical to
    :func:`torch.nn.functional.cross_entropy` with ``weight``.

    Args:
        logits: ``(B, C + 1, H, W)`` (``(B, 6, H, W)`` for the five Task 2 attributes).
        masks: ``(B, C, H, W)`` mask stack.
        weight: optional ``(C + 1,)`` class weights (index 0 = background).
        labelled: optional ``(B, C)``; must be all True.

    Returns:
        Scalar loss.

    Raises:
        ValueError: wrong shapes, bad weights, or unlabelled attributes.
    """
    logits, masks, labelled = _check(logits, masks, "multiclass", labelled)
    _no_unlabelled(labelled, "ce")
    n = num_labels_of(masks)
    w = _channel_vector(weight, n + 1, "class weights")
    target = masks_to_classes(masks, n)
    return F.cross_entropy(logits, target, weight=None if w is None else w.to(logits.device))


def binary_cross_entropy(
    logits: torch.Tensor,
    masks: torch.Tensor,
    pos_weight: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    labelled: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-label sigmoid binary cross-entropy (``"multilabel"``).

    Args:
        logits: ``(B, C, H, W)`` (C = 5 for the Task 2 attributes).
        masks: ``(B, C, H, W)`` mask stack.
        pos_weight: optional ``(C,)`` factor on the positive term of each label
            (see :func:`pos_weight_from_counts`).
        weight: optional ``(C,)`` label weights of the weighted mean over channels.
        labelled: optional ``(B, C)``; unlabelled pairs are excluded from the mean.

    Returns:
        Scalar: mean over the pixels of labelled (image, attribute) pairs; 0 if none is labelled.

    Raises:
        ValueError: wrong shapes or bad weights.
    """
    logits, masks, labelled = _check(logits, masks, "multilabel", labelled)
    n = num_labels_of(masks)
    pw = _channel_vector(pos_weight, n, "pos_weight")
    w = _channel_vector(weight, n, "class weights")
    loss = F.binary_cross_entropy_with_logits(
        logits,
        masks.float(),
        pos_weight=None if pw is None else pw.to(logits.device).view(1, -1, 1, 1),
        reduction="none",
    )
    return _weighted_pixel_mean(loss, labelled, w)


class CrossEntropyLoss(nn.Module):
    """Module form of :func:`cross_entropy` (``"multiclass"``); ``weight`` is ``(num_labels + 1,)``
    or None."""

    def __init__(self, weight: ArrayLike | None = None, num_labels: int = NUM_ATTRIBUTES) -> None:
        super().__init__()
        self.encoding = "multiclass"
        _buffer(self, "weight", weight, num_labels + 1)

    def forward(
        self, logits: torch.Tensor, masks: torch.Tensor, labelled: torch.Tensor | None = None
    ) -> torch.Tensor:
        return cross_entropy(logits, masks, self.weight, labelled)


class BinaryCrossEntropyLoss(nn.Module):
    """Module form of :func:`binary_cross_entropy` (``"multilabel"``); weights are ``(num_labels,)``."""

    def __init__(
        self,
        pos_weight: ArrayLike | None = None,
        weight: ArrayLike | None = None,
        num_labels: int = NUM_ATTRIBUTES,
    ) -> None:
        super().__init__()
        self.encoding = "multilabel"
        _buffer(self, "pos_weight", pos_weight, num_labels)
        _buffer(self, "weight", weight, num_labels)

    def forward(
        self, logits: torch.Tensor, masks: torch.Tensor, labelled: torch.Tensor | None = None
    ) -> torch.Tensor:
        return binary_cross_entropy(logits, masks, self.pos_weight, self.weight, labelled)
