"""Batch-level soft Jaccard and soft Dice losses, for either encoding.

Insensitive to the background by construction; each is a pure function plus its module form.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dermseg.encoding import classes_to_masks, masks_to_classes, probabilities, validate_encoding
from dermseg.losses._common import _check, num_labels_of


def _soft_overlap(
    logits: torch.Tensor, masks: torch.Tensor, encoding: str, labelled: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch-level ``(intersection, prob_sum + target_sum, counted)`` per label, each ``(C,)``."""
    validate_encoding(encoding)
    logits, masks, labelled = _check(logits, masks, encoding, labelled)
    n = num_labels_of(masks)
    probs = probabilities(logits, encoding, n)
    if encoding == "multiclass":
        masks = classes_to_masks(masks_to_classes(masks, n), n)  # the one-hot target the softmax can reach
    target = masks.float()
    if labelled is not None:
        keep = labelled.float().view(*labelled.shape, 1, 1)
        probs, target = probs * keep, target * keep
        counted = labelled.any(dim=0)
    else:
        counted = torch.ones(n, dtype=torch.bool, device=logits.device)
    intersection = (probs * target).sum(dim=(0, 2, 3))
    total = probs.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3))
    return intersection, total, counted


def _mean_over_counted(per_channel: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """Mean over counted attributes; 0 (still in the graph) when none is counted."""
    counted = counted.float()
    return (per_channel * counted).sum() / counted.sum().clamp(min=1.0)


def _check_smooth(smooth: float) -> None:
    if not (isinstance(smooth, (int, float)) and np.isfinite(smooth) and smooth > 0):
        raise ValueError(f"smooth must be a finite number > 0; got {smooth!r}")


def soft_jaccard_loss(
    logits: torch.Tensor,
    masks: torch.Tensor,
    encoding: str = "multilabel",
    smooth: float = 1.0,
    labelled: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batch-level soft Jaccard loss, averaged over the labels (the five Task 2 attributes, or one lesion).

    Per attribute ``c``, with probabilities ``p`` (:func:`~dermseg.encoding.probabilities`) and
    targets ``t`` summed over the **whole batch** (all images and pixels):
    ``I = sum p t``, ``U = sum p + sum t - I``, ``loss_c = 1 - (I + smooth) / (U + smooth)``;
    the loss is the mean of ``loss_c`` over attributes. Summing over the batch, like the official
    metric sums confusion counts over images, keeps rare attributes from being drowned by
    per-image empty cases. Convention for an attribute absent from the whole batch: its loss is
    ``1 - smooth / (sum p + smooth)``, i.e. 0 when it is predicted empty and growing towards 1 with
    the predicted mass. For ``"multiclass"`` the targets are the priority-resolved one-hot classes
    and the background channel is not scored. Unlabelled (image, attribute) pairs are removed from
    the sums; an attribute unlabelled in every image is left out of the mean.

    Args:
        logits: ``(B, K, H, W)``: ``K = C`` (multilabel) or ``C + 1`` (multiclass).
        masks: ``(B, C, H, W)`` mask stack (C = 5 for the Task 2 attributes).
        encoding: ``"multilabel"`` or ``"multiclass"``.
        smooth: additive smoothing, ``> 0``.
        labelled: optional ``(B, C)`` bool.

    Returns:
        Scalar in ``[0, 1)``.

    Raises:
        ValueError: bad ``smooth`` or shapes.
    """
    _check_smooth(smooth)
    intersection, total, counted = _soft_overlap(logits, masks, encoding, labelled)
    jaccard = (intersection + smooth) / (total - intersection + smooth)
    return _mean_over_counted(1 - jaccard, counted)


def soft_dice_loss(
    logits: torch.Tensor,
    masks: torch.Tensor,
    encoding: str = "multilabel",
    smooth: float = 1.0,
    labelled: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batch-level soft Dice loss, averaged over the labels.

    As :func:`soft_jaccard_loss`, with ``loss_c = 1 - (2 I + smooth) / (sum p + sum t + smooth)``
    (same absent-attribute convention: 0 when predicted empty).

    Args:
        logits: ``(B, K, H, W)``: ``K = C`` (multilabel) or ``C + 1`` (multiclass).
        masks: ``(B, C, H, W)`` mask stack (C = 5 for the Task 2 attributes).
        encoding: ``"multilabel"`` or ``"multiclass"``.
        smooth: additive smoothing, ``> 0``.
        labelled: optional ``(B, C)`` bool.

    Returns:
        Scalar in ``[0, 1)``.

    Raises:
        ValueError: bad ``smooth`` or shapes.
    """
    _check_smooth(smooth)
    intersection, total, counted = _soft_overlap(logits, masks, encoding, labelled)
    dice = (2 * intersection + smooth) / (total + smooth)
    return _mean_over_counted(1 - dice, counted)


class _SoftOverlapLoss(nn.Module):
    def __init__(self, encoding: str = "multilabel", smooth: float = 1.0) -> None:
        super().__init__()
        self.encoding = validate_encoding(encoding)
        _check_smooth(smooth)
        self.smooth = smooth


class SoftJaccardLoss(_SoftOverlapLoss):
    """Module form of :func:`soft_jaccard_loss` (``encoding``, ``smooth`` as there)."""

    def forward(
        self, logits: torch.Tensor, masks: torch.Tensor, labelled: torch.Tensor | None = None
    ) -> torch.Tensor:
        return soft_jaccard_loss(logits, masks, self.encoding, self.smooth, labelled)


class SoftDiceLoss(_SoftOverlapLoss):
    """Module form of :func:`soft_dice_loss` (``encoding``, ``smooth`` as there)."""

    def forward(
        self, logits: torch.Tensor, masks: torch.Tensor, labelled: torch.Tensor | None = None
    ) -> torch.Tensor:
        return soft_dice_loss(logits, masks, self.encoding, self.smooth, labelled)
