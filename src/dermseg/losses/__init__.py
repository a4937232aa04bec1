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
several of them, named in the table :data:`TERMS`, and :func:`build_loss` builds one from the
fields of a loss config. Besides the mask terms, ``presence`` scores a presence head's ``(B, 5)``
image-level logits, and ``mil`` (:mod:`~dermseg.losses.weak`) trains the mask logits on image-level
(weak) labels through a multiple-instance pooling; :class:`CombinedLoss` takes the model's whole
output and hands each term its part. Losses are computed in float32 whatever the logits' dtype
(safe under autocast).

Modules: :mod:`~dermseg.losses.weights` (pixel counts and class / positive weights),
:mod:`~dermseg.losses.entropy` (``ce``, ``bce``), :mod:`~dermseg.losses.focal`,
:mod:`~dermseg.losses.overlap` (``soft_jaccard``, ``soft_dice``),
:mod:`~dermseg.losses.presence` (``presence``), :mod:`~dermseg.losses.weak` (``mil``,
:class:`WeakTargets`) and
:mod:`~dermseg.losses.combined` (:data:`TERMS`, :class:`CombinedLoss`, :func:`build_loss`).
"""

from __future__ import annotations

from dermseg.losses.combined import LOSSES, OPTIONS, TERMS, CombinedLoss, Term, build_loss
from dermseg.losses.entropy import (
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    binary_cross_entropy,
    cross_entropy,
)
from dermseg.losses.focal import FocalLoss, focal_loss
from dermseg.losses.overlap import SoftDiceLoss, SoftJaccardLoss, soft_dice_loss, soft_jaccard_loss
from dermseg.losses.presence import PresenceLoss, presence_loss
from dermseg.losses.weak import MIL_MODES, MilLoss, WeakTargets, mil_loss, mil_pool
from dermseg.losses.weights import class_weights_from_counts, pixel_counts, pos_weight_from_counts

__all__ = [
    "LOSSES",
    "MIL_MODES",
    "OPTIONS",
    "TERMS",
    "BinaryCrossEntropyLoss",
    "CombinedLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "MilLoss",
    "PresenceLoss",
    "SoftDiceLoss",
    "SoftJaccardLoss",
    "Term",
    "WeakTargets",
    "binary_cross_entropy",
    "build_loss",
    "class_weights_from_counts",
    "cross_entropy",
    "focal_loss",
    "mil_loss",
    "mil_pool",
    "pixel_counts",
    "pos_weight_from_counts",
    "presence_loss",
    "soft_dice_loss",
    "soft_jaccard_loss",
]
