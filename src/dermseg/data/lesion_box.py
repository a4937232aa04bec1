"""The lesion's box: the part of an image a structure model looks at when a lesion mask is known.

Task 2 structures lie on the lesion, and dermoscopy photographs are large (4288x2848 is
common) while the network works at a few hundred pixels. Resizing only the lesion's box (with
a margin of skin around it) to the working size puts more pixels on the structures than
resizing the whole field of view. The same box is used

* in training (``data.field: lesion``), from the ground-truth Task 1 lesion mask, and
* at prediction (:mod:`dermseg.inference.lesion_field`), from a lesion model's predicted mask,

so training and prediction see the lesion at the same scale: the box's short side becomes the
working size in both.

How the box is found from a ``(H, W)`` mask:

1. the connected components of the mask (8-connectivity); those smaller than
   :data:`MIN_COMPONENT_SHARE` of the largest are ignored (specks of a predicted mask must not
   stretch the box across the image);
2. the bounding box of the rest, grown by ``margin`` times its longer side on every side;
3. grown (about its centre) to at least :data:`MIN_SIDE_FRACTION` of the field's short side
   each way, so a tiny lesion is not enlarged beyond reason;
4. clipped to the field of view it lies in.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from dermseg.data.background import CropBox

#: Components smaller than this share of the largest one do not widen the box.
MIN_COMPONENT_SHARE: float = 0.1

#: The box is at least this fraction of the field's short side in height and width.
MIN_SIDE_FRACTION: float = 0.25

#: Default margin around the lesion, as a fraction of the lesion box's longer side.
DEFAULT_MARGIN: float = 0.2


def check_margin(margin: float) -> float:
    """``margin`` as a float, checked to lie in ``[0, 2]``.

    Raises:
        ValueError: not a finite number in ``[0, 2]``.
    """
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 <= margin <= 2.0:
        raise ValueError(f"the lesion margin must be a number in [0, 2], got {margin!r}")
    return float(margin)


def lesion_box(
    mask: np.ndarray, margin: float = DEFAULT_MARGIN, within: CropBox | None = None
) -> CropBox | None:
    """The box around the lesion of ``mask``, with a margin, inside ``within``.

    Args:
        mask: ``(H, W)`` lesion mask, any non-zero value is lesion.
        margin: added on every side, as a fraction of the lesion box's longer side, in ``[0, 2]``.
        within: the field of view, in ``mask``'s coordinates (the whole mask when ``None``): only
            the lesion inside it counts, and the box is clipped to it.

    Returns:
        The box in ``mask``'s coordinates, or ``None`` when there is no lesion inside ``within``.

    Raises:
        ValueError: ``mask`` is not 2-D, or ``margin`` is out of range.
    """
    margin = check_margin(margin)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
    h, w = mask.shape
    field = CropBox.full(h, w) if within is None else within.clipped(h, w)
    inside = np.ascontiguousarray(mask[field.top : field.bottom, field.left : field.right] != 0)
    if not inside.any():
        return None
    count, _, stats, _ = cv2.connectedComponentsWithStats(inside.view(np.uint8), connectivity=8)
    areas = stats[1:count, cv2.CC_STAT_AREA]
    keep = stats[1:count][areas >= MIN_COMPONENT_SHARE * areas.max()]
    top = int(keep[:, cv2.CC_STAT_TOP].min())
    left = int(keep[:, cv2.CC_STAT_LEFT].min())
    bottom = int((keep[:, cv2.CC_STAT_TOP] + keep[:, cv2.CC_STAT_HEIGHT]).max())
    right = int((keep[:, cv2.CC_STAT_LEFT] + keep[:, cv2.CC_STAT_WIDTH]).max())
    grow = margin * max(bottom - top, right - left)
    minimum = MIN_SIDE_FRACTION * min(field.height, field.width)
    top, bottom = _grown(top - grow, bottom + grow, minimum, field.height)
    left, right = _grown(left - grow, right + grow, minimum, field.width)
    return CropBox(
        field.top + max(0, math.floor(top)),
        field.left + max(0, math.floor(left)),
        field.top + min(field.height, math.ceil(bottom)),
        field.left + min(field.width, math.ceil(right)),
    )


def _grown(start: float, end: float, minimum: float, length: int) -> tuple[float, float]:
    """``[start, end)`` clipped to ``[0, length)``, then widened about its centre to at least
    ``minimum``, shifted back inside where the widening crosses an edge (a lesion in a corner
    still gets the minimum side)."""
    start, end = max(0.0, start), min(float(length), end)
    missing = minimum - (end - start)
    if missing <= 0:
        return start, end
    start, end = start - missing / 2, end + missing / 2
    shift = max(0.0, -start) - max(0.0, end - length)
    return max(0.0, start + shift), min(float(length), end + shift)
