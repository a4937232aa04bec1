"""Losses for the five-attribute segmentation, built for severe class imbalance.

Most pixels carry no attribute, and streaks appear on about 4 % of the training images, so
every loss here can be re-weighted (class weights, positive weights, focal modulation) or is
insensitive to the background by construction (soft Jaccard / Dice).

Every loss takes the raw model output and the raw mask stack and does the target encoding
itself (:mod:`dermseg.encoding`):

- ``logits``: ``(B, C, H, W)`` float, ``C = 5`` for ``"multilabel"``, ``6`` for ``"multiclass"``;
- ``masks``: ``(B, 5, H, W)`` bool or integer (nonzero = present), channels in ATTRIBUTES order;
- ``labelled`` (optional): ``(B, 5)`` bool, ``False`` where an attribute was not annotated for an
  image. Those (image, attribute) pairs are left out of the losses' means and sums. Supported by
  ``bce``, ``focal`` (multilabel) and ``soft_jaccard`` / ``soft_dice`` (both encodings); ``ce``
  and multiclass ``focal`` cannot ignore one attribute of a softmax and raise ``ValueError``
  when some attribute is unlabelled.

Each loss is a pure function plus a small :class:`torch.nn.Module`; :class:`CombinedLoss` sums
several of them and :func:`build_loss` builds one from a config dict. Losses are computed in
float32 whatever the logits' dtype (safe under autocast).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.encoding import (
    classes_to_masks,
    masks_to_classes,
    num_output_channels,
    probabilities,
    validate_encoding,
)

#: Loss names understood by :class:`CombinedLoss` and :func:`build_loss`.
LOSSES: tuple[str, ...] = ("ce", "bce", "focal", "soft_jaccard", "soft_dice")

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


# --------------------------------------------------------------------------- class statistics


def pixel_counts(masks: Iterable[torch.Tensor | np.ndarray], encoding: str) -> torch.Tensor:
    """Count the training pixels of each output class, once, for :func:`class_weights_from_counts`.

    Args:
        masks: iterable of mask stacks, each ``(5, H, W)`` or ``(B, 5, H, W)`` (numpy or torch,
            bool or integer, nonzero = present); sizes may differ between items.
        encoding: ``"multilabel"`` or ``"multiclass"``.

    Returns:
        int64 tensor. ``"multiclass"``: shape ``(6,)``, pixels per class after the priority rule
        (index 0 = background), summing to the number of pixels seen. ``"multilabel"``: shape
        ``(5,)``, positive pixels per attribute (overlapping pixels count for each attribute).

    Raises:
        ValueError: unknown encoding, a mask stack of the wrong shape, or no masks at all.
    """
    validate_encoding(encoding)
    total = torch.zeros(num_output_channels(encoding), dtype=torch.int64)
    seen = False
    for item in masks:
        stack = torch.as_tensor(item)
        if stack.ndim == 3:
            stack = stack.unsqueeze(0)
        if stack.ndim != 4 or stack.shape[1] != NUM_ATTRIBUTES:
            raise ValueError(f"each mask stack must be (5, H, W) or (B, 5, H, W); got {tuple(stack.shape)}")
        seen = True
        if encoding == "multiclass":
            classes = masks_to_classes(stack).flatten()
            total += torch.bincount(classes, minlength=NUM_ATTRIBUTES + 1).cpu()
        else:
            total += (stack != 0).sum(dim=(0, 2, 3)).cpu().to(torch.int64)
    if not seen:
        raise ValueError("pixel_counts needs at least one mask stack")
    return total


def _as_counts(counts: ArrayLike, name: str) -> torch.Tensor:
    counts = torch.as_tensor(np.asarray(counts, dtype=np.float64) if not torch.is_tensor(counts) else counts)
    counts = counts.detach().cpu().to(torch.float64)
    if counts.ndim != 1 or counts.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence; got shape {tuple(counts.shape)}")
    if not torch.isfinite(counts).all() or (counts < 0).any():
        raise ValueError(f"{name} must be finite and >= 0; got {counts.tolist()}")
    return counts


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


# --------------------------------------------------------------------------- input checking


def _check(
    logits: torch.Tensor, masks: torch.Tensor, encoding: str, labelled: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate shapes; return float32 logits, bool masks and bool labelled (or None)."""
    channels = num_output_channels(encoding)
    if logits.ndim != 4 or logits.shape[1] != channels:
        raise ValueError(f"{encoding} logits must be (B, {channels}, H, W); got {tuple(logits.shape)}")
    expected = (logits.shape[0], NUM_ATTRIBUTES, *logits.shape[2:])
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


def _check_gamma(gamma: float) -> None:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not np.isfinite(gamma) or gamma < 0:
        raise ValueError(f"gamma must be a finite number >= 0; got {gamma!r}")


def _alpha_tensor(alpha: float | ArrayLike | None) -> torch.Tensor | None:
    """``alpha`` as a 0-d or ``(5,)`` float32 tensor in [0, 1]."""
    if alpha is None:
        return None
    a = torch.as_tensor(alpha, dtype=torch.float32)
    if a.ndim > 1 or (a.ndim == 1 and a.numel() != NUM_ATTRIBUTES):
        raise ValueError(f"alpha must be a float or {NUM_ATTRIBUTES} values; got shape {tuple(a.shape)}")
    if a.device.type == "cpu" and not bool(((a >= 0) & (a <= 1)).all()):
        raise ValueError(f"alpha must lie in [0, 1]; got {a.tolist()}")
    return a


#: Smallest positive float32: keeps denominators and focal factors away from 0 without a sync.
_TINY = torch.finfo(torch.float32).tiny


def _weighted_pixel_mean(
    loss: torch.Tensor, labelled: torch.Tensor | None, weight: torch.Tensor | None
) -> torch.Tensor:
    """Mean of a ``(B, 5, H, W)`` loss over labelled (image, attribute) pairs, weighted per channel."""
    b, c = loss.shape[:2]
    pair_weight = torch.ones(b, c, device=loss.device)
    if labelled is not None:
        pair_weight = pair_weight * labelled
    if weight is not None:
        pair_weight = pair_weight * weight.to(loss.device).view(1, c)
    denominator = pair_weight.sum() * loss[0, 0].numel()
    # nothing labelled: numerator and denominator are 0 and the result is 0, still in the graph
    return (loss.sum(dim=(2, 3)) * pair_weight).sum() / denominator.clamp(min=_TINY)


# --------------------------------------------------------------------------- pure losses


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
    ``1 - p`` on negatives; ``alpha`` (a float or ``(5,)``) weighs positives by ``alpha`` and
    negatives by ``1 - alpha``; reduced like :func:`binary_cross_entropy`. With ``gamma = 0`` and
    no alpha it equals :func:`binary_cross_entropy`.

    ``"multiclass"``: softmax focal loss, ``p_t`` the probability of the pixel's class, reduced as
    the weighted mean ``sum w_y l / sum w_y``; with ``gamma = 0`` it equals :func:`cross_entropy`.

    Args:
        logits: ``(B, C, H, W)``.
        masks: ``(B, 5, H, W)`` mask stack.
        encoding: ``"multilabel"`` or ``"multiclass"``.
        gamma: focusing parameter, ``>= 0``.
        alpha: multilabel only, in ``[0, 1]``.
        weight: optional class weights: ``(5,)`` attribute weights (multilabel) or ``(6,)`` class
            weights (multiclass).
        labelled: optional ``(B, 5)`` (multilabel; multiclass requires all True).

    Returns:
        Scalar loss.

    Raises:
        ValueError: bad gamma/alpha/weights, wrong shapes, or alpha with ``"multiclass"``.
    """
    validate_encoding(encoding)
    _check_gamma(gamma)
    logits, masks, labelled = _check(logits, masks, encoding, labelled)
    w = _channel_vector(weight, num_output_channels(encoding), "class weights")
    a = _alpha_tensor(alpha)
    if encoding == "multiclass":
        if a is not None:
            raise ValueError("alpha applies to the multilabel focal loss; use class weights for multiclass")
        _no_unlabelled(labelled, "multiclass focal")
        target = masks_to_classes(masks)
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


def _soft_overlap(
    logits: torch.Tensor, masks: torch.Tensor, encoding: str, labelled: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch-level ``(intersection, prob_sum + target_sum, counted)`` per attribute, each ``(5,)``."""
    validate_encoding(encoding)
    logits, masks, labelled = _check(logits, masks, encoding, labelled)
    probs = probabilities(logits, encoding)
    if encoding == "multiclass":
        masks = classes_to_masks(masks_to_classes(masks))  # the one-hot target the softmax can reach
    target = masks.float()
    if labelled is not None:
        keep = labelled.float().view(*labelled.shape, 1, 1)
        probs, target = probs * keep, target * keep
        counted = labelled.any(dim=0)
    else:
        counted = torch.ones(NUM_ATTRIBUTES, dtype=torch.bool, device=logits.device)
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
    """Batch-level soft Jaccard loss, averaged over the five attributes.

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
        logits: ``(B, C, H, W)``.
        masks: ``(B, 5, H, W)`` mask stack.
        encoding: ``"multilabel"`` or ``"multiclass"``.
        smooth: additive smoothing, ``> 0``.
        labelled: optional ``(B, 5)`` bool.

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
    """Batch-level soft Dice loss, averaged over the five attributes.

    As :func:`soft_jaccard_loss`, with ``loss_c = 1 - (2 I + smooth) / (sum p + sum t + smooth)``
    (same absent-attribute convention: 0 when predicted empty).

    Args:
        logits: ``(B, C, H, W)``.
        masks: ``(B, 5, H, W)`` mask stack.
        encoding: ``"multilabel"`` or ``"multiclass"``.
        smooth: additive smoothing, ``> 0``.
        labelled: optional ``(B, 5)`` bool.

    Returns:
        Scalar in ``[0, 1)``.

    Raises:
        ValueError: bad ``smooth`` or shapes.
    """
    _check_smooth(smooth)
    intersection, total, counted = _soft_overlap(logits, masks, encoding, labelled)
    dice = (2 * intersection + smooth) / (total + smooth)
    return _mean_over_counted(1 - dice, counted)


# --------------------------------------------------------------------------- modules


def _buffer(module: nn.Module, name: str, value: ArrayLike | None, length: int) -> None:
    module.register_buffer(name, _channel_vector(value, length, name))


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


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss`; options are validated on construction."""

    def __init__(
        self,
        encoding: str = "multilabel",
        gamma: float = 2.0,
        alpha: float | ArrayLike | None = None,
        weight: ArrayLike | None = None,
    ) -> None:
        super().__init__()
        self.encoding = validate_encoding(encoding)
        _check_gamma(gamma)
        self.gamma = gamma
        alpha_t = _alpha_tensor(alpha)
        if alpha_t is not None and encoding == "multiclass":
            raise ValueError("alpha applies to the multilabel focal loss; use class weights for multiclass")
        self.register_buffer("alpha", alpha_t)
        _buffer(self, "weight", weight, num_output_channels(encoding))

    def forward(
        self, logits: torch.Tensor, masks: torch.Tensor, labelled: torch.Tensor | None = None
    ) -> torch.Tensor:
        return focal_loss(logits, masks, self.encoding, self.gamma, self.alpha, self.weight, labelled)


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


#: CombinedLoss options and the loss terms that use them.
OPTIONS: dict[str, tuple[str, ...]] = {
    "class_weights": ("ce", "bce", "focal"),
    "pos_weight": ("bce",),
    "gamma": ("focal",),
    "alpha": ("focal",),
    "smooth": ("soft_jaccard", "soft_dice"),
}


def _make_term(name: str, encoding: str, options: Mapping[str, Any]) -> nn.Module:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    if name == "ce":
        if encoding != "multiclass":
            raise ValueError("loss 'ce' needs the multiclass encoding; use 'bce' for multilabel")
        return CrossEntropyLoss(options.get("class_weights"))
    if name == "bce":
        if encoding != "multilabel":
            raise ValueError("loss 'bce' needs the multilabel encoding; use 'ce' for multiclass")
        return BinaryCrossEntropyLoss(options.get("pos_weight"), options.get("class_weights"))
    if name == "focal":
        return FocalLoss(
            encoding, options.get("gamma", 2.0), options.get("alpha"), options.get("class_weights")
        )
    smooth = options.get("smooth", 1.0)
    return SoftJaccardLoss(encoding, smooth) if name == "soft_jaccard" else SoftDiceLoss(encoding, smooth)


class CombinedLoss(nn.Module):
    """Weighted sum of loss terms, e.g. ``CombinedLoss({"bce": 1.0, "soft_jaccard": 1.0})``.

    Args:
        terms: loss name (one of :data:`LOSSES`) -> weight (finite, ``>= 0``).
        encoding: ``"multilabel"`` or ``"multiclass"``.
        **options: shared by the terms that use them (:data:`OPTIONS`): ``class_weights``
            (``(6,)`` multiclass / ``(5,)`` multilabel), ``pos_weight`` ``(5,)``, ``gamma``,
            ``alpha``, ``smooth``.

    Attributes:
        last_terms: the unweighted value of each term at the last forward call (detached), for
            logging.

    Raises:
        ValueError: no terms, unknown loss or option name, a bad weight or option, or a term that
            does not fit the encoding.
    """

    def __init__(self, terms: Mapping[str, float], encoding: str = "multilabel", **options: Any) -> None:
        super().__init__()
        self.encoding = validate_encoding(encoding)
        if not terms:
            raise ValueError(f"no loss terms given; expected some of {', '.join(LOSSES)}")
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(
                f"unknown loss option(s) {', '.join(unknown)}; expected some of {', '.join(OPTIONS)}"
            )
        self.weights: dict[str, float] = {}
        modules = {}
        for name, weight in terms.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight):
                raise ValueError(f"weight of loss {name!r} must be a finite number; got {weight!r}")
            if weight < 0:
                raise ValueError(f"weight of loss {name!r} must be >= 0; got {weight}")
            modules[name] = _make_term(name, encoding, options)
            self.weights[name] = float(weight)
        self.terms = nn.ModuleDict(modules)
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(
        self, logits: torch.Tensor, masks: torch.Tensor, labelled: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Weighted sum of the terms.

        Args:
            logits: ``(B, C, H, W)``.
            masks: ``(B, 5, H, W)`` mask stack.
            labelled: optional ``(B, 5)`` bool.

        Returns:
            Scalar loss.
        """
        total = logits.new_zeros((), dtype=torch.float32)
        for name, term in self.terms.items():
            value = term(logits, masks, labelled)
            self.last_terms[name] = value.detach()
            total = total + self.weights[name] * value
        return total


def build_loss(
    config: Mapping[str, Any], encoding: str = "multilabel", class_weights: ArrayLike | None = None
) -> CombinedLoss:
    """Build a :class:`CombinedLoss` from a config dict.

    Args:
        config: either the terms alone, ``{"bce": 1.0, "soft_jaccard": 1.0}``, or
            ``{"terms": {...}, <option>: value, ...}`` with options as in :class:`CombinedLoss`.
            The fields of ``dermseg.config.LossConfig`` are understood too: ``focal_gamma`` is
            ``gamma``, and ``class_weights`` may be ``"none"`` or ``"inverse_frequency"`` (which
            needs the ``class_weights`` argument).
        encoding: ``"multilabel"`` or ``"multiclass"``.
        class_weights: optional class weights, e.g.
            ``class_weights_from_counts(pixel_counts(train_masks, encoding))``.

    Returns:
        The loss module (an ``nn.Module``; call it as ``loss(logits, masks, labelled=None)``).

    Raises:
        ValueError: unknown loss or option name (the message lists the valid ones), bad values,
            ``class_weights`` given both here and as numbers in ``config``, or
            ``"inverse_frequency"`` without the argument.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"loss config must be a mapping; got {type(config).__name__}")
    if "terms" not in config:
        return CombinedLoss(
            config, encoding, **({} if class_weights is None else {"class_weights": class_weights})
        )
    terms = config["terms"]
    if not isinstance(terms, Mapping):
        raise ValueError(f"loss config 'terms' must be a mapping of name -> weight; got {terms!r}")
    options = {k: v for k, v in config.items() if k != "terms"}
    if "focal_gamma" in options:
        if "gamma" in options:
            raise ValueError("give either gamma or focal_gamma in the loss config, not both")
        options["gamma"] = options.pop("focal_gamma")
    weights = options.pop("class_weights", None)
    if isinstance(weights, str):
        if weights not in ("none", "inverse_frequency"):
            raise ValueError(f"class_weights must be none, inverse_frequency or numbers; got {weights!r}")
        if weights == "inverse_frequency" and class_weights is None:
            raise ValueError(
                "class_weights: inverse_frequency needs the weights: pass "
                "class_weights=class_weights_from_counts(pixel_counts(train_masks, encoding))"
            )
        if weights == "none" and class_weights is not None:
            raise ValueError("class weights were passed but the loss config says class_weights: none")
        weights = None
    if weights is not None and class_weights is not None:
        raise ValueError("class_weights given both in the loss config and as an argument")
    weights = class_weights if weights is None else weights
    if weights is not None:
        options["class_weights"] = weights
    return CombinedLoss(terms, encoding, **options)


__all__ = [
    "LOSSES",
    "OPTIONS",
    "BinaryCrossEntropyLoss",
    "CombinedLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "SoftDiceLoss",
    "SoftJaccardLoss",
    "binary_cross_entropy",
    "build_loss",
    "class_weights_from_counts",
    "cross_entropy",
    "focal_loss",
    "pixel_counts",
    "pos_weight_from_counts",
    "soft_dice_loss",
    "soft_jaccard_loss",
]
