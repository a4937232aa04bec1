"""Learning from image-level labels: "this image holds streaks" without a mask saying where.

An image with weak labels (PH2 / Derm7pt criteria, a CSV of ``image, attribute, present``:
:mod:`dermseg.data.weak_labels`) has no pixel mask for any attribute (``labelled`` is all False,
so every pixel loss leaves it out); instead each of its items carries :class:`WeakTargets`, a
``(C,)`` presence target and a ``(C,)`` flag saying which attributes the image-level label
covers. An attribute neither masked nor weakly labelled is unknown and trains nothing.

Two terms learn from them:

* ``presence`` (:mod:`dermseg.losses.presence`): the presence head's BCE, on the weak targets
  where the flag is set (and on the masks' presence where masks were given);
* ``mil`` (:class:`MilLoss`, ``loss.weak_mil``): multiple-instance learning on the
  segmentation map itself. The attribute's ``(H, W)`` logit map is pooled to one image-level
  logit (:func:`mil_pool`) and scored with BCE against the weak target; what each answer
  moves depends on the pooling:

  - ``max``: a smooth maximum, the log-mean-exp ``log(mean_i exp(x_i))`` of the logits, which
    lies between the mean and the maximum (the mean plus a bonus for a few high pixels) and,
    unlike the log-sum-exp, does not grow with the number of pixels (``log N``); its gradient
    is the softmax of the map, so both "present" (up) and "absent" (down) move every pixel,
    the highest ones most;
  - ``topk``: the mean of the highest ``topk`` fraction of the logits (at least one pixel):
    both answers move only those pixels, "absent" lowering the top of the map until nothing
    stands out.

The image-level label holds for the whole image, but training sees a random crop of it: an
"absent" label stays true on any crop, a "present" one may not (the structure can lie outside
the crop). That is label noise; crops covering most of the field (``data.crop_size`` close to
``data.size``) keep it small.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

#: The pooling modes of :func:`mil_pool` (``none`` switches the term off in a config).
MIL_MODES: tuple[str, ...] = ("max", "topk")


class WeakTargets(NamedTuple):
    """The image-level labels of a batch.

    Attributes:
        presence: ``(B, C)`` float, 1 where the image holds the attribute, 0 where it does not
            (any value where ``known`` is False).
        known: ``(B, C)`` bool, whether an image-level label was given for the attribute.
    """

    presence: torch.Tensor
    known: torch.Tensor


def mil_pool(logits: torch.Tensor, mode: str = "max", topk: float = 0.02) -> torch.Tensor:
    """Pool each ``(H, W)`` logit map to one image-level logit.

    Args:
        logits: ``(B, C, H, W)`` mask logits.
        mode: ``max`` (log-mean-exp, a smooth maximum) or ``topk`` (mean of the top fraction).
        topk: with ``topk``, the fraction of the pixels averaged, in ``(0, 1]``; at least one pixel.

    Returns:
        ``(B, C)`` float32 logits.

    Raises:
        ValueError: a bad shape, mode or fraction.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, C, H, W); got {tuple(logits.shape)}")
    if mode not in MIL_MODES:
        raise ValueError(f"unknown MIL pooling {mode!r}; expected one of {', '.join(MIL_MODES)}")
    if not 0 < topk <= 1:
        raise ValueError(f"topk must be a fraction in (0, 1]; got {topk}")
    flat = logits.float().flatten(2)
    if mode == "max":
        return torch.logsumexp(flat, dim=2) - math.log(flat.shape[2])
    k = max(1, round(topk * flat.shape[2]))
    return flat.topk(k, dim=2).values.mean(dim=2)


def mil_loss(logits: torch.Tensor, weak: WeakTargets, mode: str = "max", topk: float = 0.02) -> torch.Tensor:
    """Mean BCE of the pooled mask logits against the weak targets, over the known labels only.

    Args:
        logits: ``(B, C, H, W)`` mask logits (multilabel: one sigmoid map per attribute).
        weak: ``(B, C)`` targets and flags.
        mode, topk: see :func:`mil_pool`.

    Returns:
        A scalar; 0 (still in the graph) when no image-level label is known.

    Raises:
        ValueError: shapes that do not fit, a bad mode or fraction.
    """
    pooled = mil_pool(logits, mode, topk)
    if tuple(weak.presence.shape) != tuple(pooled.shape) or tuple(weak.known.shape) != tuple(pooled.shape):
        raise ValueError(
            f"weak targets must be {tuple(pooled.shape)}; got {tuple(weak.presence.shape)} "
            f"and {tuple(weak.known.shape)}"
        )
    return masked_bce(pooled, weak.presence, weak.known)


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean BCE with logits of the ``(B, C)`` entries where ``keep`` is True; 0 when none is."""
    per = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    weight = keep.to(device=per.device, dtype=per.dtype)
    return (per * weight).sum() / weight.sum().clamp_min(1.0)


class MilLoss(nn.Module):
    """Module form of :func:`mil_loss`: the term ``mil`` of :class:`~dermseg.losses.CombinedLoss`.

    Args:
        mode: ``max`` or ``topk`` (see :func:`mil_pool`).
        topk: the fraction of pixels of ``topk``.

    Raises:
        ValueError: a bad mode or fraction.
    """

    def __init__(self, mode: str = "max", topk: float = 0.02) -> None:
        super().__init__()
        mil_pool(torch.zeros(1, 1, 1, 1), mode, topk)  # validates both now, not at the first step
        self.mode, self.topk = mode, topk

    def forward(
        self,
        logits: torch.Tensor,
        masks: torch.Tensor,
        labelled: torch.Tensor | None = None,
        weak: WeakTargets | None = None,
    ) -> torch.Tensor:
        """The MIL loss of a batch; 0 without weak targets (the masks are scored by the pixel terms)."""
        if weak is None:
            return logits.new_zeros((), dtype=torch.float32)
        return mil_loss(logits, weak, self.mode, self.topk)
