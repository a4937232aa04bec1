"""Target encodings: how the ``(B, 5, H, W)`` mask stack becomes a training target.

Two encodings are supported:

``"multilabel"`` (the default for ISIC 2018)
    Five independent sigmoid channels, one per attribute in :data:`~dermseg.attributes.ATTRIBUTES`
    order. Attributes may overlap, exactly as in the ground truth; the target is the mask stack as
    float.

``"multiclass"`` (the thesis setup)
    One softmax over six channels: channel 0 is background, channel ``k + 1`` is attribute ``k``.
    A pixel can belong to one class only, so a pixel carrying several attributes is resolved by a
    fixed priority: **the rarer attribute wins** (:data:`PRIORITY`). The order is ascending
    frequency in the ISIC 2018 Task 2 training set (share of images containing the attribute):
    streaks 4 %, negative network 7 %, globules 23 %, milia-like cysts 26 %, pigment network
    59 %. Pigment network covers large areas and overlaps most other structures; if it won the
    overlaps, the rare classes would lose a large part of their few pixels and would hardly ever
    be learned. Letting the rare class win costs the common class only a small fraction of its
    many pixels.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from dermseg.attributes import NUM_ATTRIBUTES, attribute_index

#: Valid encoding names; the first is the default.
ENCODINGS: tuple[str, ...] = ("multilabel", "multiclass")

#: Overlap resolution for ``"multiclass"``, highest priority first (rarest attribute first).
PRIORITY: tuple[str, ...] = ("streaks", "negative_network", "globules", "milia_like_cyst", "pigment_network")


def validate_encoding(name: str) -> str:
    """Check an encoding name.

    Args:
        name: the encoding name.

    Returns:
        ``name`` unchanged.

    Raises:
        ValueError: ``name`` is not in :data:`ENCODINGS` (the message lists the valid names).
    """
    if name not in ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; expected one of {', '.join(ENCODINGS)}")
    return name


def num_output_channels(encoding: str) -> int:
    """Number of logit channels a model must produce for ``encoding``.

    Returns:
        5 for ``"multilabel"``, 6 (background + 5 attributes) for ``"multiclass"``.

    Raises:
        ValueError: unknown encoding.
    """
    validate_encoding(encoding)
    return NUM_ATTRIBUTES if encoding == "multilabel" else NUM_ATTRIBUTES + 1


def _as_mask_tensor(masks: torch.Tensor | np.ndarray) -> torch.Tensor:
    masks = torch.as_tensor(masks)
    if masks.ndim != 4 or masks.shape[1] != NUM_ATTRIBUTES:
        raise ValueError(f"masks must have shape (B, {NUM_ATTRIBUTES}, H, W); got {tuple(masks.shape)}")
    return masks


def masks_to_classes(masks: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Resolve a mask stack into one class per pixel with the :data:`PRIORITY` rule.

    Args:
        masks: ``(B, 5, H, W)`` bool or integer (nonzero = present) mask stack.

    Returns:
        ``(B, H, W)`` int64 tensor: 0 = background, ``k + 1`` = attribute ``k`` of ATTRIBUTES.

    Raises:
        ValueError: ``masks`` does not have shape ``(B, 5, H, W)``.
    """
    present = _as_mask_tensor(masks) != 0
    classes = torch.zeros(present.shape[0], *present.shape[2:], dtype=torch.int64, device=present.device)
    # Paint from lowest to highest priority, so the rarest attribute present is written last.
    for name in reversed(PRIORITY):
        k = attribute_index(name)
        classes[present[:, k]] = k + 1
    return classes


def classes_to_masks(classes: torch.Tensor) -> torch.Tensor:
    """One-hot attribute masks from a class map (the argmax decision of ``"multiclass"``).

    Args:
        classes: ``(B, H, W)`` integer class map, 0 = background, ``k + 1`` = attribute ``k``.

    Returns:
        ``(B, 5, H, W)`` bool mask stack (at most one attribute per pixel).

    Raises:
        ValueError: ``classes`` is not 3-D.
    """
    if classes.ndim != 3:
        raise ValueError(f"classes must have shape (B, H, W); got {tuple(classes.shape)}")
    ids = torch.arange(1, NUM_ATTRIBUTES + 1, device=classes.device).view(1, -1, 1, 1)
    return classes.unsqueeze(1) == ids


def probabilities(logits: torch.Tensor, encoding: str) -> torch.Tensor:
    """Per-attribute probabilities from model logits.

    Args:
        logits: ``(B, C, H, W)`` with ``C = num_output_channels(encoding)``.
        encoding: one of :data:`ENCODINGS`.

    Returns:
        ``(B, 5, H, W)`` float: sigmoid of the logits for ``"multilabel"``; for ``"multiclass"``
        the softmax over the six channels, background (channel 0) dropped.

    Raises:
        ValueError: unknown encoding, or ``logits`` has the wrong shape.
    """
    channels = num_output_channels(encoding)
    if logits.ndim != 4 or logits.shape[1] != channels:
        raise ValueError(
            f"{encoding} logits must have shape (B, {channels}, H, W); got {tuple(logits.shape)}"
        )
    if encoding == "multilabel":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)[:, 1:]


def output_probabilities(output: torch.Tensor | Mapping[str, torch.Tensor], encoding: str) -> torch.Tensor:
    """Per-attribute probabilities from a model's output, presence-gated when it has a presence head.

    With a presence head the pixel probability is multiplied by the image-level presence
    probability: ``P(pixel has it) = P(image has it) * P(pixel has it | image has it)``, a soft
    gate that empties the maps of attributes the head judges absent.

    Args:
        output: ``(B, C, H, W)`` logits, or ``{"masks": (B, C, H, W), "presence": (B, 5)}`` logits.
        encoding: one of :data:`ENCODINGS`.

    Returns:
        ``(B, 5, H, W)`` float probabilities.
    """
    if not isinstance(output, Mapping):
        return probabilities(output.float(), encoding)
    probs = probabilities(output["masks"].float(), encoding)
    if "presence" in output:
        probs = probs * torch.sigmoid(output["presence"].float())[:, :, None, None]
    return probs


__all__ = [
    "ENCODINGS",
    "output_probabilities",
    "PRIORITY",
    "classes_to_masks",
    "masks_to_classes",
    "num_output_channels",
    "probabilities",
    "validate_encoding",
]
