"""Shared by the loss modules: input checking, per-channel weight vectors, the weighted pixel mean."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.encoding import num_output_channels

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


def _as_counts(counts: ArrayLike, name: str) -> torch.Tensor:
    counts = torch.as_tensor(np.asarray(counts, dtype=np.float64) if not torch.is_tensor(counts) else counts)
    counts = counts.detach().cpu().to(torch.float64)
    if counts.ndim != 1 or counts.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence; got shape {tuple(counts.shape)}")
    if not torch.isfinite(counts).all() or (counts < 0).any():
        raise ValueError(f"{name} must be finite and >= 0; got {counts.tolist()}")
    return counts


def num_labels_of(masks: torch.Tensor) -> int:
    """``C`` of a ``(B, C, H, W)`` mask stack (the five Task 2 attributes when it is not 4-D:
    the shape check then names the expected shape)."""
    return int(masks.shape[1]) if masks.ndim == 4 and masks.shape[1] >= 1 else NUM_ATTRIBUTES


def _check(
    logits: torch.Tensor, masks: torch.Tensor, encoding: str, labelled: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate shapes; return float32 logits, bool masks and bool labelled (or None).

    The masks say how many labels there are (``C``); the logits must have
    ``num_output_channels(encoding, C)`` channels.
    """
    num_labels = num_labels_of(masks)
    channels = num_output_channels(encoding, num_labels)
    if logits.ndim != 4 or logits.shape[1] != channels:
        raise ValueError(f"{encoding} logits must be (B, {channels}, H, W); got {tuple(logits.shape)}")
    expected = (logits.shape[0], num_labels, *logits.shape[2:])
    if tuple(masks.shape) != expected:
        raise ValueError(f"masks must be {expected} to match logits; got {tuple(masks.shape)}")
    if labelled is not None:
        if tuple(labelled.shape) != expected[:2]:
            raise ValueError(f"labelled must be {expected[:2]}; got {tuple(labelled.shape)}")
        labelled = labelled.to(device=logits.device, dtype=torch.bool)
    return logits.float(), masks.to(logits.device) != 0, labelled


def _no_unlabelled(labelled: torch.Tensor | None, what: str) -> None:
    if labelled is not None and not bool(labelled.all()):
        raise ValueError(
            f"{what} cannot ignore single unlabelled attributes; use the multilabel encoding "
            "or soft_jaccard / soft_dice"
        )


def _channel_vector(value: ArrayLike | None, length: int, name: str) -> torch.Tensor | None:
    """``(length,)`` float32 weights; values are checked unless already on an accelerator (no sync)."""
    if value is None:
        return None
    if torch.is_tensor(value) and value.device.type != "cpu":
        vec = value.detach().to(torch.float32)
    else:
        vec = _as_counts(value, name).to(torch.float32)
    if vec.ndim != 1 or vec.numel() != length:
        raise ValueError(f"{name} must have {length} entries; got shape {tuple(vec.shape)}")
    return vec


#: Smallest positive float32: keeps denominators and focal factors away from 0 without a sync.
_TINY = torch.finfo(torch.float32).tiny


def _weighted_pixel_mean(
    loss: torch.Tensor, labelled: torch.Tensor | None, weight: torch.Tensor | None
) -> torch.Tensor:
    """Mean of a ``(B, C, H, W)`` loss over labelled (image, label) pairs, weighted per channel."""
    b, c = loss.shape[:2]
    pair_weight = torch.ones(b, c, device=loss.device)
    if labelled is not None:
        pair_weight = pair_weight * labelled
    if weight is not None:
        pair_weight = pair_weight * weight.to(loss.device).view(1, c)
    denominator = pair_weight.sum() * loss[0, 0].numel()
    # nothing labelled: numerator and denominator are 0 and the result is 0, still in the graph
    return (loss.sum(dim=(2, 3)) * pair_weight).sum() / denominator.clamp(min=_TINY)


def _buffer(module: nn.Module, name: str, value: ArrayLike | None, length: int) -> None:
    module.register_buffer(name, _channel_vector(value, length, name))
