"""Label-set helpers for scoring a :class:`~dermseg.inference.segmenter.Segmenter` of any label set.

:class:`Segmenter` reads a checkpoint's label set and post-processes its ``C`` labels itself;
this module gives the evaluation wing the post-processing as plain per-label lists
(:func:`segmenter_settings`) and applies a variant of it to
probabilities (:func:`apply_label_postprocess`), as the tuner's step-by-step report needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.inference.postprocess import (
    PostprocessSettings,
    apply_postprocess,
    disk,
    remove_small_components,
    scale_kernel,
)
from dermseg.inference.segmenter import Segmenter
from dermseg.labels import DEFAULT, LabelSet

#: The fields of a post-processing description, each a list of one value per label.
POSTPROCESS_FIELDS: tuple[str, ...] = ("thresholds", "opening", "min_area", "presence")


def apply_label_postprocess(
    probs: np.ndarray, settings: Mapping[str, Sequence[float]], from_side: float, to_side: float
) -> np.ndarray:
    """Masks of one image from the probabilities of C labels, as
    :func:`~dermseg.inference.postprocess.apply_postprocess` makes them for five.

    Per label: threshold (``prob > t``, in the probabilities' dtype), presence gate, opening with
    a disk, small-component removal; sizes given for a field of short side ``from_side`` and
    rescaled to ``to_side`` as :meth:`PostprocessSettings.rescaled` does. With five labels it is
    :func:`apply_postprocess` itself.

    Args:
        probs: ``(C, H, W)`` float probabilities in [0, 1].
        settings: ``thresholds``, ``opening``, ``min_area``, ``presence``: C values each.
        from_side: the side the sizes are given for (the working size).
        to_side: the short side of the field the probabilities were predicted on.

    Returns:
        ``(C, H, W)`` bool.

    Raises:
        ValueError: ``probs`` is not ``(C, H, W)`` probabilities, or settings of another length.
    """
    p = np.asarray(probs)
    if p.ndim != 3 or p.dtype.kind != "f":
        raise ValueError(f"probs must be (C, H, W) float probabilities; got {p.shape} {p.dtype}")
    c = p.shape[0]
    if c == NUM_ATTRIBUTES:
        fixed = PostprocessSettings.from_dict({k: list(v) for k, v in settings.items()})
        return apply_postprocess(p, fixed.rescaled(from_side, to_side))
    if any(len(settings[name]) != c for name in POSTPROCESS_FIELDS):
        raise ValueError(f"postprocess settings need {c} value(s) per field, one per label")
    out = np.zeros(p.shape, dtype=bool)
    if p.size == 0:
        return out
    if np.isnan(p).any() or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must be probabilities in [0, 1] (got NaN or values outside; logits?)")
    ratio = float(to_side) / float(from_side)
    for k in range(c):
        if p[k].max() < settings["presence"][k]:
            continue  # gated: judged absent from the image
        mask = p[k] > p.dtype.type(settings["thresholds"][k])
        opening = scale_kernel(int(settings["opening"][k]), from_side, to_side)
        if opening > 1 and mask.any():
            mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk(opening)).astype(bool)
        area = int(settings["min_area"][k])
        out[k] = remove_small_components(mask, max(1, round(area * ratio * ratio)) if area else 0)
    return out


def segmenter_from_checkpoint(path: str | Path, device: str = "cpu", tta: bool | None = None) -> Segmenter:
    """The segmenter of a checkpoint of any label set: :meth:`Segmenter.from_checkpoint`, which
    reads the checkpoint's label set and post-processes ``C`` labels."""
    return Segmenter.from_checkpoint(path, device=device, tta=tta)


def segmenter_labels(segmenter: Segmenter) -> LabelSet:
    """The label set a segmenter predicts: its ``labels`` where it has one, else Task 2's."""
    labels = getattr(segmenter, "labels", None)
    return labels if isinstance(labels, LabelSet) else DEFAULT


def segmenter_settings(segmenter: Segmenter) -> dict[str, list[Any]]:
    """A segmenter's post-processing as lists, one value per label (C)."""
    return {k: list(v) for k, v in segmenter.postprocess.to_dict().items()}


__all__ = [
    "POSTPROCESS_FIELDS",
    "apply_label_postprocess",
    "segmenter_from_checkpoint",
    "segmenter_labels",
    "segmenter_settings",
]
