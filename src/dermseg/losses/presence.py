"""The auxiliary image-level presence task: targets and loss.

A 2018 winners' trick: besides the masks, the network predicts for each attribute whether
it is in the image at all (one logit per attribute from the deepest features, see
:class:`~dermseg.models.heads.PresenceHead`). Trained with BCE against "the mask has a
pixel", it learns the image-level question the pixel loss answers poorly on rare
attributes; at prediction it gates the masks (:func:`dermseg.encoding.output_probabilities`).

:class:`PresenceLoss` is the term ``presence`` of :class:`~dermseg.losses.CombinedLoss`, which hands
it the model's ``presence`` output instead of its mask logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def presence_targets(masks: torch.Tensor) -> torch.Tensor:
    """Which labels each image (or crop) contains.

    Args:
        masks: ``(B, C, H, W)`` binary masks (C = 5 for the Task 2 attributes).

    Returns:
        ``(B, C)`` float, 1 where the mask has at least one pixel.
    """
    if masks.ndim != 4 or masks.shape[1] < 1:
        raise ValueError(f"masks must be (B, C, H, W) with C >= 1; got {tuple(masks.shape)}")
    return (masks.flatten(2) > 0).any(dim=2).float()


def presence_loss(
    logits: torch.Tensor, masks: torch.Tensor, labelled: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean BCE of presence logits against the masks' presence, over labelled attributes only.

    Args:
        logits: ``(B, C)`` presence logits.
        masks: ``(B, C, H, W)`` binary masks.
        labelled: ``(B, C)`` bool, whether each mask was given (missing masks do not count).

    Returns:
        A scalar; 0 when nothing is labelled.
    """
    targets = presence_targets(masks)
    if logits.shape != targets.shape:
        raise ValueError(f"presence logits must be {tuple(targets.shape)}; got {tuple(logits.shape)}")
    per = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    weight = torch.ones_like(per) if labelled is None else labelled.to(per.dtype)
    return (per * weight).sum() / weight.sum().clamp_min(1.0)


class PresenceLoss(nn.Module):
    """Module form of :func:`presence_loss`: scores the ``(B, C)`` presence logits, not the masks."""

    def forward(
        self, logits: torch.Tensor, masks: torch.Tensor, labelled: torch.Tensor | None = None
    ) -> torch.Tensor:
        return presence_loss(logits, masks, labelled)
