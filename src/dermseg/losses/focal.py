"""Focal loss (Lin et al. 2017), sigmoid (``"multilabel"``) or softmax (``"multiclass"``).

A pure function plus its module form.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.encoding import masks_to_classes, num_output_channels, validate_encoding
from dermseg.losses._common import (
    _TINY,
    ArrayLike,
    _buffer,
    _channel_vector,
    _check,
    _no_unlabelled,
    _weighted_pixel_mean,
    num_labels_of,
)


def _check_gamma(gamma: float) -> None:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not np.isfinite(gamma) or gamma < 0:
        raise ValueError(f"gamma must be a finite number >= 0; got {gamma!r}")


def _alpha_tensor(alpha: float | ArrayLike | None, num_labels: int = NUM_ATTRIBUTES) -> torch.Tensor | None:
    """``alpha`` as a 0-d or ``(num_labels,)`` float32 tensor in [0, 1]."""
    if alpha is None:
        return None
    a = torch.as_tensor(alpha, dtype=torch.float32)
    if a.ndim > 1 or (a.ndim == 1 and a.numel() != num_labels):
        raise ValueError(f"alpha must be a float or {num_labels} values; got shape {tuple(a.shape)}")
    if a.device.type == "cpu" and not bool(((a >= 0) & (a <= 1)).all()):
        raise ValueError(f"alpha must lie in [0, 1]; got {a.tolist()}")
    return a


def focal_loss(
    logits: torch.Tensor,
    masks: torch.Tensor,
    encoding: str = "multilabel",
    gamma: float = 2.0,
    alpha: float | ArrayLike | None = None,
    weight: ArrayLike | None = None,
    labelled: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss ``-a_t (1 - p_t)^gamma log p_t`` (Lin et al. 2017).

    ``"multilabel"``: sigmoid focal loss per attribute and pixel, ``p_t = p`` on positives and
    ``1 - p`` on negatives; ``alpha`` (a float or ``(C,)``) weighs positives by ``alpha`` and
    negatives by ``1 - alpha``; reduced like :func:`binary_cross_entropy`. With ``gamma = 0`` and
    no alpha it equals :func:`binary_cross_entropy`.

    ``"multiclass"``: softmax focal loss, ``p_t`` the probability of the pixel's class, reduced as
    the weighted mean ``sum w_y l / sum w_y``; with ``gamma = 0`` it equals :func:`cross_entropy`.

    Args:
        logits: ``(B, K, H, W)``: ``K = C`` (multilabel) or ``C + 1`` (multiclass).
        masks: ``(B, C, H, W)`` mask stack (C = 5 for the Task 2 attributes).
        encoding: ``"multilabel"`` or ``"multiclass"``.
        gamma: focusing parameter, ``>= 0``.
        alpha: multilabel only, in ``[0, 1]``.
        weight: optional class weights: ``(C,)`` label weights (multilabel) or ``(C + 1,)`` class
            weights (multiclass).
        labelled: optional ``(B, C)`` (multilabel; multiclass requires all True).

    Returns:
        Scalar loss.

    Raises:
        ValueError: bad gamma/alpha/weights, wrong shapes, or alpha with ``"multiclass"``.
    """
    validate_encoding(encoding)
    _check_gamma(gamma)
    logits, masks, labelled = _check(logits, masks, encoding, labelled)
    n = num_labels_of(masks)
    w = _channel_vector(weight, num_output_channels(encoding, n), "class weights")
    a = _alpha_tensor(alpha, n)
    if encoding == "multiclass":
        if a is not None:
            raise ValueError("alpha applies to the multilabel focal loss; use class weights for multiclass")
        _no_unlabelled(labelled, "multiclass focal")
        target = masks_to_classes(masks, n)
        log_pt = F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
        # clamp: (1 - p_t)^gamma keeps a finite gradient at p_t == 1 even for gamma < 1
        loss = -((1 - log_pt.exp()).clamp(min=_TINY) ** gamma) * log_pt
        pixel_w = torch.ones_like(loss) if w is None else w.to(logits.device)[target]
        return (loss * pixel_w).sum() / pixel_w.sum().clamp(min=_TINY)

    target = masks.float()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t).clamp(min=_TINY) ** gamma
    if a is not None:
        a = a.to(logits.device).view(1, -1, 1, 1) if a.ndim == 1 else a.to(logits.device)
        loss = loss * (a * target + (1 - a) * (1 - target))
    return _weighted_pixel_mean(loss, labelled, w)


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss`; options are validated on construction (``alpha`` and
    ``weight`` for ``num_labels`` labels)."""

    def __init__(
        self,
        encoding: str = "multilabel",
        gamma: float = 2.0,
        alpha: float | ArrayLike | None = None,
        weight: ArrayLike | None = None,
        num_labels: int = NUM_ATTRIBUTES,
    ) -> None:
        super().__init__()
        self.encoding = validate_encoding(encoding)
        _check_gamma(gamma)
        self.gamma = gamma
        alpha_t = _alpha_tensor(alpha, num_labels)
        if alpha_t is not None and encoding == "multiclass":
            raise ValueError("alpha applies to the multilabel focal loss; use class weights for multiclass")
        self.register_buffer("alpha", alpha_t)
        _buffer(self, "weight", weight, num_output_channels(encoding, num_labels))

    def forward(
        self, logits: torch.Tensor, masks: torch.Tensor, labelled: torch.Tensor | None = None
    ) -> torch.Tensor:
        return focal_loss(logits, masks, self.encoding, self.gamma, self.alpha, self.weight, labelled)
