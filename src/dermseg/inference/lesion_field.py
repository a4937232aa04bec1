"""A lesion model as the field of a structure model: look only at the lesion's box.

A Task 2 model normally sees the whole dermoscope field resized to its working size. Given a
lesion model (Task 1 / PH2, one ``lesion`` label), :class:`LesionField` predicts the lesion,
takes its box with a margin (:func:`~dermseg.data.lesion_box.lesion_box`) and hands that box to
the structure model as its field: the box, not the whole field, is resized to the working size,
so more pixels land on the structures. Optionally (``empty_outside``) the structure
probabilities outside the predicted lesion, dilated, are set to 0.

When the lesion model finds no lesion, the whole field of view is used (nothing is emptied).

Scale: a model trained with ``data.field: lesion`` saw ground-truth lesion boxes with the same
margin resized to its working size; its checkpoint records the margin (:func:`trained_field`),
and that is the default margin here. A model trained on the whole field sees, with a lesion
field, the lesion larger than it was trained on; :func:`field_description` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from dermseg.data.background import CropBox
from dermseg.data.lesion_box import DEFAULT_MARGIN, check_margin, lesion_box
from dermseg.errors import DataError
from dermseg.labels import LabelSet

#: Default dilation of the predicted lesion before structures outside it are emptied, as a
#: fraction of the lesion box's longer side.
DEFAULT_DILATION: float = 0.05

#: ``data.field`` values: the dermoscope's field of view, or the lesion's box.
FIELDS: tuple[str, ...] = ("fov", "lesion")


class MaskModel(Protocol):
    """What :class:`LesionField` needs of a lesion model (a ``Segmenter``)."""

    labels: LabelSet

    def masks(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> ``(C, H, W)`` bool masks at the image's size."""
        ...


@dataclass(frozen=True, eq=False)
class LesionBox(CropBox):
    """The field a structure model sees when a lesion model chose it.

    A :class:`~dermseg.data.background.CropBox` (the lesion's box with its margin, or the whole
    field of view when no lesion was found) that also carries what to keep.

    Attributes:
        region: ``(H, W)`` bool in the image's frame: the dilated predicted lesion, outside which
            structures are emptied; ``None`` keeps everything in the box.
        found: whether the lesion model found a lesion (else the box is the field of view).
    """

    region: np.ndarray | None = field(default=None, repr=False)
    found: bool = True


@dataclass
class LesionField:
    """Chooses the field of a structure model from a lesion model's prediction.

    Attributes:
        model: the lesion model; its label set has one label (``lesion``).
        margin: skin kept around the lesion's box, as a fraction of its longer side, in ``[0, 2]``.
        empty_outside: set structure probabilities outside the dilated predicted lesion to 0.
        dilation: how far the lesion is dilated first, as a fraction of the longer side of the
            predicted lesion's bounding box, in ``[0, 1]``.
        name: what the lesion model is (its file name), for messages.

    Raises:
        DataError: the model's label set has more than one label (not a lesion model).
        ValueError: ``margin`` or ``dilation`` is out of range.
    """

    model: MaskModel
    margin: float = DEFAULT_MARGIN
    empty_outside: bool = False
    dilation: float = DEFAULT_DILATION
    name: str = "lesion model"

    def __post_init__(self) -> None:
        self.margin = check_margin(self.margin)
        if not 0.0 <= float(self.dilation) <= 1.0:
            raise ValueError(f"the lesion dilation must be in [0, 1], got {self.dilation!r}")
        labels = self.model.labels
        if labels.num_labels != 1:
            raise DataError(
                f"is not a lesion model: it segments {labels.num_labels} labels of label set "
                f"{labels.name} ({', '.join(labels.names)}); give a model trained for isic2018_task1 or ph2",
                self.name,
            )

    def locate(self, image: np.ndarray, fov: CropBox) -> LesionBox:
        """The field of ``image`` for the structure model.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            fov: the dermoscope's field of view in ``image`` (the lesion box stays inside it).

        Returns:
            The lesion's box with its margin (and, with ``empty_outside``, the region to keep),
            or ``fov`` itself with ``found=False`` when the lesion model finds no lesion.
        """
        lesion = self.model.masks(image)[0]
        box = lesion_box(lesion, self.margin, within=fov)
        if box is None:
            return LesionBox(fov.top, fov.left, fov.bottom, fov.right, found=False)
        region = None
        if self.empty_outside:
            _, _, w, h = cv2.boundingRect(np.ascontiguousarray(lesion).view(np.uint8))
            region = dilated(lesion, self.dilation * max(w, h))
        return LesionBox(box.top, box.left, box.bottom, box.right, region=region)

    @property
    def description(self) -> str:
        """E.g. ``lesion box from best.safetensors (margin 0.2; structures outside the lesion emptied)``."""
        outside = (
            f"structures outside the lesion dilated by {self.dilation:g} emptied"
            if self.empty_outside
            else "structures outside the lesion kept"
        )
        return f"lesion box from {self.name} (margin {self.margin:g}; {outside})"


def dilated(mask: np.ndarray, radius: float) -> np.ndarray:
    """``(H, W)`` bool: the pixels within ``radius`` pixels (Euclidean) of ``mask``."""
    outside = np.ascontiguousarray(mask == 0).view(np.uint8)
    if not outside.any():
        return np.ones(mask.shape, dtype=bool)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance <= radius


def trained_field(meta: dict[str, Any]) -> tuple[str, float | None]:
    """What a model's training resized to the working size: ``("fov", None)`` or ``("lesion", margin)``.

    Read from the description's ``field`` entry (an ONNX export's copy of the checkpoint's
    description too); a model without one was trained on the field of view.

    Raises:
        DataError: the entry is malformed.
    """
    entry = meta.get("field")
    if entry is None and isinstance(meta.get("checkpoint_meta"), dict):
        entry = meta["checkpoint_meta"].get("field")
    if entry is None:
        return "fov", None
    kind = entry.get("kind") if isinstance(entry, dict) else None
    if kind == "fov":
        return "fov", None
    if kind == "lesion":
        try:
            return "lesion", check_margin(entry.get("margin"))
        except ValueError as err:
            raise DataError(f"checkpoint metadata: field: {err}") from None
    raise DataError(f"checkpoint metadata: field must be fov or lesion, got {entry!r}")


def field_description(trained: tuple[str, float | None], lesion: LesionField | None) -> str:
    """One line on what the structure model sees, and whether it matches its training.

    E.g. ``field: lesion box from lesion.safetensors (margin 0.2; ...) (as trained)``, or
    ``field: whole field of view (the model was trained on lesion boxes: give a lesion model)``.
    """
    kind, margin = trained
    if lesion is None:
        if kind == "lesion":
            return (
                "field: whole field of view (the model was trained on lesion boxes with margin "
                f"{margin:g}: give it a lesion model, or it sees the lesion smaller than in training)"
            )
        return "field: whole field of view (as trained)"
    if kind == "fov":
        return f"field: {lesion.description} (the model was trained on the whole field: other scale)"
    if margin is not None and abs(margin - lesion.margin) > 1e-9:
        return f"field: {lesion.description} (trained with margin {margin:g})"
    return f"field: {lesion.description} (as trained)"
