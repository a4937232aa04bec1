"""The auxiliary image-level presence task: targets and loss.

A 2018 winners' trick: besides the masks, the network predicts for each attribute whether
it is in the image at all (one logit per attribute from the deepest features, see
:class:`~dermseg.models.heads.PresenceHead`). Trained with BCE against "the mask has a
pixel", it learns the image-level question the pixel loss answers poorly on rare
attributes; at prediction it gates the masks (:func:`dermseg.encoding.output_probabilities`).

:class:`PresenceLoss` is the term ``presence`` of :class:`~dermseg.losses.CombinedLoss`, which hands
it the model's ``presence`` output instead of its mask logits. Image-level (weak) labels train the
same head: where :class:`~dermseg.losses.weak.WeakTargets` says an attribute's presence is known,
it is the target (see :mod:`dermseg.losses.weak`).
"""

from __future__ import annotations

import torch
from torch import nn

from dermseg.losses.weak import WeakTargets, masked_bce


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
    logits: torch.Tensor,
    masks: torch.Tensor,
    labelled: torch.Tensor | None = None,
    weak: WeakTargets | None = None,
) -> torch.Tensor:
    """Mean BCE of presence logits against the masks' presence and the image-level labels.

    An (image, attribute) pair counts when its mask was given (target: the mask has a pixel)
    or, failing that, when ``weak`` knows it (target: the image-level label); the others are
    unknown and left out.

    Args:
        logits: ``(B, C)`` presence logits.
        masks: ``(B, C, H, W)`` binary masks.
        labelled: ``(B, C)`` bool, whether each mask was given (missing masks do not count).
        weak: optional ``(B, C)`` image-level targets and flags (:mod:`dermseg.losses.weak`).

    Returns:
        A scalar; 0 when nothing is labelled.
    """
    targets = presence_targets(masks)
    if logits.shape != targets.shape:
        raise ValueError(f"presence logits must be {tuple(targets.shape)}; got {tuple(logits.shape)}")
    keep = torch.ones_like(targets, dtype=torch.bool) if labelled is None else labelled.to(torch.bool)
    if weak is not None:
        from_weak = weak.known.to(torch.bool) & ~keep  # a given mask wins over an image-level label
        targets = torch.where(from_weak, weak.presence.to(targets.dtype), targets)
        keep = keep | from_weak
    return masked_bce(logits, targets, keep)


class PresenceLoss(nn.Module):
    """Module form of :func:`presence_loss`: scores the ``(B, C)`` presence logits, not the masks."""

    def forward(
        self,
        logits: torch.Tensor,
        masks: torch.Tensor,
        labelled: torch.Tensor | None = None,
        weak: WeakTargets | None = None,
    ) -> torch.Tensor:
        return presence_loss(logits, masks, labelled, weak)
