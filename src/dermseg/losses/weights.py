"""Class statistics of the training masks and the loss weights derived from them.

Counted once before training: :func:`pixel_counts` feeds :func:`class_weights_from_counts`
(``ce`` / ``focal`` / ``bce`` class weights) and :func:`pos_weight_from_counts` (``bce``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.encoding import masks_to_classes, num_output_channels, validate_encoding
from dermseg.losses._common import ArrayLike, _as_counts


def pixel_counts(
    masks: Iterable[torch.Tensor | np.ndarray], encoding: str, num_labels: int = NUM_ATTRIBUTES
) -> torch.Tensor:
    """Count the training pixels of each output class, once, for :func:`class_weights_from_counts`.

    Args:
        masks: iterable of mask stacks, each ``(C, H, W)`` or ``(B, C, H, W)`` with
            ``C = num_labels`` (numpy or torch, bool or integer, nonzero = present); sizes may
            differ between items.
        encoding: ``"multilabel"`` or ``"multiclass"``.
        num_labels: labels of the set (5 for the Task 2 attributes, 1 for a lesion).

    Returns:
        int64 tensor. ``"multiclass"``: shape ``(C + 1,)``, pixels per class after the priority
        rule (index 0 = background), summing to the number of pixels seen. ``"multilabel"``: shape
        ``(C,)``, positive pixels per label (overlapping pixels count for each label).

    Raises:
        ValueError: unknown encoding, a mask stack of the wrong shape, or no masks at all.
    """
    validate_encoding(encoding)
    total = torch.zeros(num_output_channels(encoding, num_labels), dtype=torch.int64)
    seen = False
    for item in masks:
        stack = torch.as_tensor(item)
        if stack.ndim == 3:
            stack = stack.unsqueeze(0)
        if stack.ndim != 4 or stack.shape[1] != num_labels:
            raise ValueError(
                f"each mask stack must be ({num_labels}, H, W) or (B, {num_labels}, H, W); "
                f"got {tuple(stack.shape)}"
            )
        seen = True
        if encoding == "multiclass":
            classes = masks_to_classes(stack, num_labels).flatten()
            total += torch.bincount(classes, minlength=num_labels + 1).cpu()
        else:
            total += (stack != 0).sum(dim=(0, 2, 3)).cpu().to(torch.int64)
    if not seen:
        raise ValueError("pixel_counts needs at least one mask stack")
    return total


def _inverse_with_fill(counts: torch.Tensor, numerator: torch.Tensor) -> torch.Tensor:
    """``numerator / counts``, where ``counts == 0`` gets the largest finite value instead of inf."""
    seen = counts > 0
    out = torch.zeros_like(counts)
    out[seen] = numerator[seen] / counts[seen]
    out[~seen] = out[seen].max()
    return out


def class_weights_from_counts(counts: ArrayLike) -> torch.Tensor:
    """Normalised inverse-frequency class weights (the thesis formula).

    ``w_c = (1 / n_c) / sum_j (1 / n_j)``, so the weights are positive and sum to 1; only their
    ratios matter for ``ce`` (a weighted mean), while ``focal`` in ``"multiclass"`` also uses the
    scale. A class with ``n_c = 0`` (never seen in training) would get an infinite weight; it is
    given the weight of the rarest class that was seen instead (the largest finite ``1 / n_j``),
    before normalising.

    Args:
        counts: ``(C,)`` pixel counts, e.g. from :func:`pixel_counts`.

    Returns:
        ``(C,)`` float32 tensor summing to 1.

    Raises:
        ValueError: not 1-D, negative or non-finite counts, or all counts zero.
    """
    counts = _as_counts(counts, "counts")
    if not (counts > 0).any():
        raise ValueError("all pixel counts are zero: cannot derive class weights")
    inverse = _inverse_with_fill(counts, torch.ones_like(counts))
    return (inverse / inverse.sum()).to(torch.float32)


def pos_weight_from_counts(positive_counts: ArrayLike, total_pixels: int) -> torch.Tensor:
    """BCE positive weights ``negatives / positives`` per attribute (``"multilabel"``).

    Args:
        positive_counts: ``(5,)`` positive pixels per attribute (:func:`pixel_counts` with
            ``"multilabel"``).
        total_pixels: pixels counted per attribute (the sum of ``H * W`` over the masks counted).

    Returns:
        ``(5,)`` float32. An attribute never seen gets the largest finite weight of the others.

    Raises:
        ValueError: bad counts, ``total_pixels`` smaller than a count, or no positive pixel at all.
    """
    counts = _as_counts(positive_counts, "positive_counts")
    if (counts > total_pixels).any():
        raise ValueError(f"total_pixels={total_pixels} is smaller than a positive count {counts.tolist()}")
    if not (counts > 0).any():
        raise ValueError("no positive pixel in any attribute: cannot derive positive weights")
    return _inverse_with_fill(counts, total_pixels - counts).to(torch.float32)
