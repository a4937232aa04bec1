"""A weighted sum of loss terms (:class:`CombinedLoss`) and its factory from a config (:func:`build_loss`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from dermseg.encoding import validate_encoding
from dermseg.losses._common import ArrayLike
from dermseg.losses.entropy import BinaryCrossEntropyLoss, CrossEntropyLoss
from dermseg.losses.focal import FocalLoss
from dermseg.losses.overlap import SoftDiceLoss, SoftJaccardLoss

#: Loss names understood by :class:`CombinedLoss` and :func:`build_loss`.
LOSSES: tuple[str, ...] = ("ce", "bce", "focal", "soft_jaccard", "soft_dice")

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
