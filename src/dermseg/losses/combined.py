"""A weighted sum of loss terms (:class:`CombinedLoss`) from a name -> class table (:data:`TERMS`),
and its builder from the fields of a loss config (:func:`build_loss`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.encoding import ENCODINGS, validate_encoding
from dermseg.losses._common import ArrayLike
from dermseg.losses.entropy import BinaryCrossEntropyLoss, CrossEntropyLoss
from dermseg.losses.focal import FocalLoss
from dermseg.losses.overlap import SoftDiceLoss, SoftJaccardLoss
from dermseg.losses.presence import PresenceLoss
from dermseg.losses.weak import MilLoss, WeakTargets


@dataclass(frozen=True)
class Term:
    """How :class:`CombinedLoss` builds one loss term and what the term scores.

    Attributes:
        cls: the term's module; called as ``cls(...)(scored, masks, labelled)``, and with
            ``takes_weak`` as ``cls(...)(scored, masks, labelled, weak)``.
        options: the :class:`CombinedLoss` options the term takes -> the name ``cls`` gives each.
        encodings: the target encodings the term works with.
        takes_encoding: ``cls`` takes the encoding as its ``encoding`` argument (the others are
            written for one encoding, or, like ``presence``, score no mask logits).
        output: the model output the term scores: ``masks`` (``(B, K, H, W)`` logits) or
            ``presence`` (``(B, C)`` logits of the presence head).
        takes_num_labels: ``cls`` takes the label count as ``num_labels`` (its per-channel
            weights have one entry per label, or per class).
        takes_weak: the term also scores image-level labels (:class:`~dermseg.losses.weak.WeakTargets`)
            and sees the whole batch; the others are pixel terms and, in a batch with weak
            labels, see only the images that have masks.
    """

    cls: type[nn.Module]
    options: Mapping[str, str] = field(default_factory=dict)
    encodings: tuple[str, ...] = ENCODINGS
    takes_encoding: bool = True
    output: str = "masks"
    takes_num_labels: bool = False
    takes_weak: bool = False


#: Loss name -> how to build it; the names :class:`CombinedLoss` and :func:`build_loss` understand.
TERMS: dict[str, Term] = {
    "ce": Term(
        CrossEntropyLoss,
        {"class_weights": "weight"},
        ("multiclass",),
        takes_encoding=False,
        takes_num_labels=True,
    ),
    "bce": Term(
        BinaryCrossEntropyLoss,
        {"pos_weight": "pos_weight", "class_weights": "weight"},
        ("multilabel",),
        takes_encoding=False,
        takes_num_labels=True,
    ),
    "focal": Term(
        FocalLoss,
        {"focal_gamma": "gamma", "alpha": "alpha", "class_weights": "weight"},
        takes_num_labels=True,
    ),
    "soft_jaccard": Term(SoftJaccardLoss, {"smooth": "smooth"}),
    "soft_dice": Term(SoftDiceLoss, {"smooth": "smooth"}),
    "presence": Term(PresenceLoss, takes_encoding=False, output="presence", takes_weak=True),
    "mil": Term(
        MilLoss,
        {"weak_mil": "mode", "weak_topk": "topk"},
        ("multilabel",),
        takes_encoding=False,
        takes_weak=True,
    ),
}

#: Loss names, in :data:`TERMS` order.
LOSSES: tuple[str, ...] = tuple(TERMS)

#: CombinedLoss options and the loss terms that use them.
OPTIONS: dict[str, tuple[str, ...]] = {
    option: tuple(name for name, term in TERMS.items() if option in term.options)
    for term in TERMS.values()
    for option in term.options
}


def _make_term(name: str, encoding: str, options: Mapping[str, Any], num_labels: int) -> nn.Module:
    term = TERMS.get(name)
    if term is None:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    if encoding not in term.encodings:
        # the terms written for this encoding alone are the counterparts of those written for the other
        counterparts = [n for n, t in TERMS.items() if t.encodings == (encoding,) and not t.takes_weak]
        raise ValueError(
            f"loss {name!r} needs the {' or '.join(term.encodings)} encoding; "
            f"use {' or '.join(repr(n) for n in counterparts)} for {encoding}"
        )
    kwargs = {arg: options[option] for option, arg in term.options.items() if option in options}
    if term.takes_num_labels:
        kwargs["num_labels"] = num_labels
    return term.cls(encoding, **kwargs) if term.takes_encoding else term.cls(**kwargs)


class CombinedLoss(nn.Module):
    """Weighted sum of loss terms, e.g. ``CombinedLoss({"bce": 1.0, "soft_jaccard": 1.0})``.

    Args:
        terms: loss name (one of :data:`LOSSES`) -> weight (finite, ``>= 0``).
        encoding: ``"multilabel"`` or ``"multiclass"``.
        num_labels: ``C``, the labels of the set (5 for the Task 2 attributes, 1 for a lesion).
        **options: shared by the terms that use them (:data:`OPTIONS`): ``class_weights``
            (``(C + 1,)`` multiclass / ``(C,)`` multilabel), ``pos_weight`` ``(C,)``,
            ``focal_gamma``, ``alpha``, ``smooth``, ``weak_mil`` and ``weak_topk`` (the ``mil``
            term's pooling); a term not given an option keeps its own default.

    Attributes:
        last_terms: the unweighted value of each term at the last forward call (detached), for
            logging.

    Raises:
        ValueError: no terms, unknown loss or option name, a bad weight or option, or a term that
            does not fit the encoding.
    """

    def __init__(
        self,
        terms: Mapping[str, float],
        encoding: str = "multilabel",
        num_labels: int = NUM_ATTRIBUTES,
        **options: Any,
    ) -> None:
        super().__init__()
        self.encoding = validate_encoding(encoding)
        self.num_labels = num_labels
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
            modules[name] = _make_term(name, encoding, options, num_labels)
            self.weights[name] = float(weight)
        self.terms = nn.ModuleDict(modules)
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(
        self,
        output: torch.Tensor | Mapping[str, torch.Tensor],
        masks: torch.Tensor,
        labelled: torch.Tensor | None = None,
        weak: WeakTargets | None = None,
    ) -> torch.Tensor:
        """Weighted sum of the terms, in the order they were given.

        Args:
            output: the model's output: ``(B, K, H, W)`` mask logits, or a mapping with them
                under ``masks`` and the ``(B, C)`` presence logits under ``presence``.
            masks: ``(B, C, H, W)`` mask stack.
            labelled: optional ``(B, C)`` bool.
            weak: optional ``(B, C)`` image-level targets and flags. With them, the pixel terms
                score only the images with at least one mask (``labelled`` not all False), so
                an image with image-level labels alone reaches no pixel term, also not ``ce``,
                which cannot leave out single attributes; in a batch without any mask the
                pixel terms are 0.

        Returns:
            Scalar float32 loss. A term whose output is not there is left out: the ``presence``
            term of a model without a presence head, or of mask logits passed alone.

        Raises:
            ValueError: a mapping without ``masks``, or shapes that do not fit.
        """
        outputs = output if isinstance(output, Mapping) else {"masks": output}
        if "masks" not in outputs:
            raise ValueError(f"the model output has no 'masks'; got {', '.join(outputs)}")
        total = outputs["masks"].new_zeros((), dtype=torch.float32)
        rows = None
        if weak is not None and labelled is not None:
            rows = labelled.to(torch.bool).any(dim=1)
        for name, term in self.terms.items():
            scored = outputs.get(TERMS[name].output)
            if scored is None:
                continue
            if TERMS[name].takes_weak:
                value = term(scored, masks, labelled, weak)
            elif rows is None:
                value = term(scored, masks, labelled)
            elif bool(rows.any()):
                value = term(scored[rows], masks[rows], labelled[rows])  # type: ignore[index]
            else:  # no image of the batch has a mask: nothing for the pixel terms, kept in the graph
                value = scored.sum() * 0.0
            self.last_terms[name] = value.detach()
            total = total + self.weights[name] * value
        return total


def build_loss(
    terms: Mapping[str, float],
    encoding: str = "multilabel",
    *,
    num_labels: int = NUM_ATTRIBUTES,
    class_weights: ArrayLike | str | None = None,
    presence_weight: float | None = None,
    weak_mil: str = "none",
    weak_mil_weight: float = 1.0,
    **options: Any,
) -> CombinedLoss:
    """Build a :class:`CombinedLoss` from the fields of a loss config, one keyword each.

    ``build_loss(**asdict(cfg.loss), encoding=cfg.model.encoding)`` takes
    ``dermseg.config.LossConfig`` as it is, once its ``class_weights: inverse_frequency`` is
    replaced by the weights counted on the training masks.

    Args:
        terms: loss name -> weight, e.g. ``{"bce": 1.0, "soft_jaccard": 1.0}``.
        encoding: ``"multilabel"`` or ``"multiclass"``.
        num_labels: ``C``, the labels of the run's label set (5 for Task 2, 1 for a lesion).
        class_weights: ``(C + 1,)`` multiclass / ``(C,)`` multilabel weights, e.g.
            ``class_weights_from_counts(pixel_counts(train_masks, encoding))``, or ``"none"``.
        presence_weight: weight of the ``presence`` term, added after ``terms`` (it scores a
            presence head's output and is left out for models without one); ``None`` for none.
        weak_mil: ``none``, or the pooling (``max``, ``topk``) of the ``mil`` term, which trains
            the mask logits on image-level labels (:mod:`dermseg.losses.weak`); added after
            ``terms``, weighted ``weak_mil_weight``.
        weak_mil_weight: weight of the ``mil`` term.
        **options: the other :class:`CombinedLoss` options (``focal_gamma``, ``pos_weight``,
            ``alpha``, ``smooth``, ``weak_topk``).

    Returns:
        The loss module; call it as ``loss(output, masks, labelled=None)``.

    Raises:
        ValueError: unknown loss or option name (the message lists the valid ones), bad values,
            ``class_weights: inverse_frequency`` (the weights themselves are needed), or a
            ``presence`` term given both in ``terms`` and as ``presence_weight``.
    """
    if not isinstance(terms, Mapping):
        raise ValueError(f"loss terms must be a mapping of name -> weight; got {terms!r}")
    if isinstance(class_weights, str):
        if class_weights == "inverse_frequency":
            raise ValueError(
                "class_weights: inverse_frequency needs the weights: pass "
                "class_weights=class_weights_from_counts(pixel_counts(train_masks, encoding))"
            )
        if class_weights != "none":
            raise ValueError(f"class_weights must be none or numbers; got {class_weights!r}")
        class_weights = None
    if class_weights is not None:
        options["class_weights"] = class_weights
    if presence_weight is not None:
        if "presence" in terms:
            raise ValueError("give the presence term either in terms or as presence_weight, not both")
        terms = {**terms, "presence": presence_weight}
    if weak_mil != "none":
        if "mil" in terms:
            raise ValueError("give the mil term either in terms or as weak_mil, not both")
        terms = {**terms, "mil": weak_mil_weight}
        options["weak_mil"] = weak_mil
    return CombinedLoss(terms, encoding, num_labels, **options)
