"""Target encodings: how the ``(B, C, H, W)`` mask stack becomes a training target.

``C`` is the number of labels of the run's label set (:mod:`dermseg.labels`): 5 for the ISIC
2018 Task 2 attributes (the default of every function here), 1 for a lesion. Two encodings:

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
    many pixels. With another number of labels than five, the first label in channel order wins.
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


def _check_num_labels(num_labels: int) -> int:
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive integer; got {num_labels!r}")
    return num_labels


def num_output_channels(encoding: str, num_labels: int = NUM_ATTRIBUTES) -> int:
    """Number of logit channels a model must produce for ``encoding``.

    Args:
        encoding: one of :data:`ENCODINGS`.
        num_labels: labels of the label set (5 for Task 2, 1 for a lesion).

    Returns:
        ``num_labels`` for ``"multilabel"`` (5 for Task 2), ``num_labels + 1`` (background +
        labels; 6 for Task 2) for ``"multiclass"``.

    Raises:
        ValueError: unknown encoding, or ``num_labels < 1``.
    """
    validate_encoding(encoding)
    _check_num_labels(num_labels)
    return num_labels if encoding == "multilabel" else num_labels + 1


def _as_mask_tensor(masks: torch.Tensor | np.ndarray, num_labels: int) -> torch.Tensor:
    masks = torch.as_tensor(masks)
    if masks.ndim != 4 or masks.shape[1] != num_labels:
        raise ValueError(f"masks must have shape (B, {num_labels}, H, W); got {tuple(masks.shape)}")
    return masks


def _priority(num_labels: int) -> list[int]:
    """Channels from highest to lowest priority: :data:`PRIORITY` for the five Task 2
    attributes, else channel order (the first label wins)."""
    if num_labels == NUM_ATTRIBUTES:
        return [attribute_index(name) for name in PRIORITY]
    return list(range(num_labels))


def masks_to_classes(masks: torch.Tensor | np.ndarray, num_labels: int = NUM_ATTRIBUTES) -> torch.Tensor:
    """Resolve a mask stack into one class per pixel with the :data:`PRIORITY` rule.

    Args:
        masks: ``(B, C, H, W)`` bool or integer (nonzero = present) mask stack, ``C = num_labels``.
        num_labels: labels of the set (5: the Task 2 attributes, resolved by :data:`PRIORITY`;
            any other number: the first label in channel order wins).

    Returns:
        ``(B, H, W)`` int64 tensor: 0 = background, ``k + 1`` = label ``k``.

    Raises:
        ValueError: ``masks`` does not have shape ``(B, num_labels, H, W)``.
    """
    present = _as_mask_tensor(masks, _check_num_labels(num_labels)) != 0
    classes = torch.zeros(present.shape[0], *present.shape[2:], dtype=torch.int64, device=present.device)
    # Paint from lowest to highest priority, so the rarest attribute present is written last.
    for k in reversed(_priority(num_labels)):
        classes[present[:, k]] = k + 1
    return classes


def classes_to_masks(classes: torch.Tensor, num_labels: int = NUM_ATTRIBUTES) -> torch.Tensor:
    """One-hot label masks from a class map (the argmax decision of ``"multiclass"``).

    Args:
        classes: ``(B, H, W)`` integer class map, 0 = background, ``k + 1`` = label ``k``.
        num_labels: labels of the set (5 for Task 2).

    Returns:
        ``(B, num_labels, H, W)`` bool mask stack (at most one label per pixel).

    Raises:
        ValueError: ``classes`` is not 3-D.
    """
    if classes.ndim != 3:
        raise ValueError(f"classes must have shape (B, H, W); got {tuple(classes.shape)}")
    ids = torch.arange(1, _check_num_labels(num_labels) + 1, device=classes.device).view(1, -1, 1, 1)
    return classes.unsqueeze(1) == ids


def probabilities(logits: torch.Tensor, encoding: str, num_labels: int = NUM_ATTRIBUTES) -> torch.Tensor:
    """Per-label probabilities from model logits.

    Args:
        logits: ``(B, K, H, W)`` with ``K = num_output_channels(encoding, num_labels)``.
        encoding: one of :data:`ENCODINGS`.
        num_labels: labels of the set (5 for Task 2, 1 for a lesion).

    Returns:
        ``(B, num_labels, H, W)`` float: sigmoid of the logits for ``"multilabel"``; for
        ``"multiclass"`` the softmax over the ``num_labels + 1`` channels, background (channel 0)
        dropped.

    Raises:
        ValueError: unknown encoding, or ``logits`` has the wrong shape.
    """
    channels = num_output_channels(encoding, num_labels)
    if logits.ndim != 4 or logits.shape[1] != channels:
        raise ValueError(
            f"{encoding} logits must have shape (B, {channels}, H, W); got {tuple(logits.shape)}"
        )
    if encoding == "multilabel":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)[:, 1:]


def output_probabilities(
    output: torch.Tensor | Mapping[str, torch.Tensor], encoding: str, num_labels: int = NUM_ATTRIBUTES
) -> torch.Tensor:
    """Per-label probabilities from a model's output, presence-gated when it has a presence head.

    With a presence head the pixel probability is multiplied by the image-level presence
    probability: ``P(pixel has it) = P(image has it) * P(pixel has it | image has it)``, a soft
    gate that empties the maps of attributes the head judges absent.

    Args:
        output: ``(B, K, H, W)`` logits, or ``{"masks": (B, K, H, W), "presence": (B, C)}`` logits.
        encoding: one of :data:`ENCODINGS`.
        num_labels: ``C``, the labels of the set (5 for Task 2).

    Returns:
        ``(B, C, H, W)`` float probabilities.
    """
    if not isinstance(output, Mapping):
        return probabilities(output.float(), encoding, num_labels)
    probs = probabilities(output["masks"].float(), encoding, num_labels)
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
