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
        logits: ``(B, 6, H, W)``.
        masks: ``(B, 5, H, W)`` mask stack.
        weight: optional ``(6,)`` class weights (index 0 = background).
        labelled: optional ``(B, 5)``; must be all True.

    Returns:
        Scalar loss.

    Raises:
        ValueError: wrong shapes, bad weights, or unlabelled attributes.
    """
    logits, masks, labelled = _check(logits, masks, "multiclass", labelled)
    _no_unlabelled(labelled, "ce")
    w = _channel_vector(weight, NUM_ATTRIBUTES + 1, "class weights")
    return F.cross_entropy(logits, masks_to_classes(masks), weight=None if w is None else w.to(logits.device))


def binary_cross_entropy(
    logits: torch.Tensor,
    masks: torch.Tensor,
    pos_weight: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    labelled: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-attribute sigmoid binary cross-entropy (``"multilabel"``).

    Args:
        logits: ``(B, 5, H, W)``.
        masks: ``(B, 5, H, W)`` mask stack.
        pos_weight: optional ``(5,)`` factor on the positive term of each attribute
            (see :func:`pos_weight_from_counts`).
        weight: optional ``(5,)`` attribute weights of the weighted mean over channels.
        labelled: optional ``(B, 5)``; unlabelled pairs are excluded from the mean.

    Returns:
        Scalar: mean over the pixels of labelled (image, attribute) pairs; 0 if none is labelled.

    Raises:
        ValueError: wrong shapes or bad weights.
    """
    logits, masks, labelled = _check(logits, masks, "multilabel", labelled)
    pw = _channel_vector(pos_weight, NUM_ATTRIBUTES, "pos_weight")
    w = _channel_vector(weight, NUM_ATTRIBUTES, "class weights")
    loss = F.binary_cross_entropy_with_logits(
        logits,
        masks.float(),
        pos_weight=None if pw is None else pw.to(logits.device).view(1, -1, 1, 1),
        reduction="none",
    )
    return _weighted_pixel_mean(loss, labelled, w)


class CrossEntropyLoss(nn.Module):
    """Module form of :func:`cross_entropy` (``"multiclass"``); ``weight`` is ``(6,)`` or None."""

    def __init__(self, weight: ArrayLike | None = None) -> None:
        super().__init__()
        self.encoding = "multiclass"
        _buffer(self, "weight", weight, NUM_ATTRIBUTES + 1)

    def forward(
        self, logits: torch.Tensor, masks: torch.Tensor, labelled: torch.Tensor | None = None
    ) -> torch.Tensor:
        return cross_entropy(logits, masks, self.weight, labelled)


class BinaryCrossEntropyLoss(nn.Module):
    """Module form of :func:`binary_cross_entropy` (``"multilabel"``)."""

    def __init__(self, pos_weight: ArrayLike | None = None, weight: ArrayLike | None = None) -> None:
        super().__init__()
        self.encoding = "multilabel"
        _buffer(self, "pos_weight", pos_weight, NUM_ATTRIBUTES)
        _buffer(self, "weight", weight, NUM_ATTRIBUTES)

    def forward(
        self, logits: torch.Tensor, masks: torch.Tensor, labelled: torch.Tensor | None = None
    ) -> torch.Tensor:
        return binary_cross_entropy(logits, masks, self.pos_weight, self.weight, labelled)
