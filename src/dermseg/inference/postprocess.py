"""Turning attribute probabilities into masks: thresholds, presence gate, opening, small components.

:func:`apply_postprocess` runs, per attribute, in this order:

1. **threshold**: ``probs > threshold`` (strict, like the official binarisation and
   :func:`dermseg.evaluation.metrics.binarise`; a pixel exactly at the threshold is negative);
2. **presence gate**: the whole mask is zeroed when the attribute's maximum probability over the
   image is below ``presence`` (an image-level "is it there at all" decision; 0 = off);
3. **morphological opening** (erosion then dilation) with a disk of diameter ``opening`` pixels
   (0 = off): removes specks and spurs thinner than the disk;
4. **small-component removal**: 8-connected components of fewer than ``min_area`` pixels are
   removed (0 = off).

Sizes are in pixels of the array the probabilities are at. The thesis opening kernels
(configs/seed.yaml: globules 15, milia-like cysts 21, negative network 21, pigment network 15,
streaks 5) were meant for its working resolution, images resized to a short side of
:data:`THESIS_SIDE` = 256 px (``data.size``), whereas :class:`dermseg.inference.segmenter.Segmenter` returns
probabilities at the original image size (ISIC images are ~1000-6000 px): scale them with
:func:`scale_kernel` or :meth:`PostprocessSettings.rescaled` to the short side of the part of the
image that was resized to the working size, i.e. the dermoscope's field of view (the background
crop box), e.g. ``scale_kernel(15, 256, min(box.height, box.width))``;
:meth:`dermseg.inference.segmenter.Segmenter.postprocess_for` does this.

Border handling: erosion treats the outside of the image as foreground (OpenCV's default), so a
structure touching the image edge is not eaten away from the edge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from dermseg.attributes import NUM_ATTRIBUTES

#: Opening kernel sizes of the thesis, ATTRIBUTES order, at its working resolution.
THESIS_OPENING: tuple[int, ...] = (15, 21, 21, 15, 5)
#: Short side (px) of the images the thesis kernels were meant for (configs/seed.yaml data.size).
THESIS_SIDE: int = 256


def _per_attribute(value: Any, name: str, kind: type) -> tuple[Any, ...]:
    """One value or one per attribute -> a tuple of NUM_ATTRIBUTES python floats/ints."""
    values = [value] * NUM_ATTRIBUTES if np.ndim(value) == 0 else list(np.asarray(value).ravel())
    if np.ndim(value) > 1 or len(values) != NUM_ATTRIBUTES:
        raise ValueError(f"{name} must be one value or {NUM_ATTRIBUTES} (one per attribute); got {value!r}")
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} must be numbers; got {value!r}")
        if kind is int:
            if float(v) != math.floor(float(v)):
                raise ValueError(f"{name} must be whole numbers of pixels; got {value!r}")
            out.append(int(v))
        else:
            if not math.isfinite(float(v)):
                raise ValueError(f"{name} must be finite; got {value!r}")
            out.append(float(v))
    return tuple(out)


@dataclass
class PostprocessSettings:
    """How to turn ``(5, H, W)`` probabilities into masks; each field has one value per attribute.

    A single value is accepted for any field and repeated for the five attributes. Fields are
    stored as tuples in ATTRIBUTES order.

    Attributes:
        thresholds: probability thresholds in [0, 1]; positive where ``prob > threshold``.
        opening: opening disk diameters in pixels: 0 (off) or an odd number >= 1 (a disk must be
            centred on a pixel; 1 changes nothing).
        min_area: components smaller than this many pixels are removed; 0 (or 1) = off.
        presence: image-level gate in [0, 1]: the mask is zeroed when the attribute's maximum
            probability is below it; 0 = off.

    Raises:
        ValueError: a field of the wrong length or type, or a value out of range.
    """

    thresholds: Sequence[float] | float = field(default_factory=lambda: (0.5,) * NUM_ATTRIBUTES)
    opening: Sequence[int] | int = field(default_factory=lambda: (0,) * NUM_ATTRIBUTES)
    min_area: Sequence[int] | int = field(default_factory=lambda: (0,) * NUM_ATTRIBUTES)
    presence: Sequence[float] | float = field(default_factory=lambda: (0.0,) * NUM_ATTRIBUTES)

    def __post_init__(self) -> None:
        self.thresholds = _per_attribute(self.thresholds, "thresholds", float)
        self.opening = _per_attribute(self.opening, "opening", int)
        self.min_area = _per_attribute(self.min_area, "min_area", int)
        self.presence = _per_attribute(self.presence, "presence", float)
        if not all(0.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError(f"thresholds must lie in [0, 1]; got {list(self.thresholds)}")
        if not all(p == 0 or (p > 0 and p % 2 == 1) for p in self.opening):
            raise ValueError(
                f"opening sizes must be 0 (off) or odd (a disk centred on a pixel); got {list(self.opening)}"
            )
        if not all(a >= 0 for a in self.min_area):
            raise ValueError(f"min_area must be >= 0; got {list(self.min_area)}")
        if not all(0.0 <= p <= 1.0 for p in self.presence):
            raise ValueError(f"presence gates must lie in [0, 1]; got {list(self.presence)}")

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        """JSON-able dict of lists (e.g. for a checkpoint's metadata); :meth:`from_dict` inverts it."""
        return {
            "thresholds": list(self.thresholds),
            "opening": list(self.opening),
            "min_area": list(self.min_area),
            "presence": list(self.presence),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PostprocessSettings:
        """Settings from a dict such as :meth:`to_dict`'s or ``asdict(config.postprocess)``.

        Missing keys take their defaults.

        Raises:
            ValueError: an unknown key or an invalid value.
        """
        known = {"thresholds", "opening", "min_area", "presence"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown postprocess setting(s) {unknown}; expected some of {sorted(known)}")
        return cls(**{k: data[k] for k in known if k in data})

    def rescaled(self, from_side: float, to_side: float) -> PostprocessSettings:
        """The same settings for images whose side is ``to_side`` instead of ``from_side``.

        Opening diameters scale linearly (:func:`scale_kernel`), ``min_area`` with the square of
        the ratio (rounded, kept >= 1 where it was on); thresholds and gates are unchanged.

        Raises:
            ValueError: non-positive sides.
        """
        ratio = _ratio(from_side, to_side)
        return PostprocessSettings(
            thresholds=self.thresholds,
            opening=[scale_kernel(k, from_side, to_side) for k in self.opening],
            min_area=[max(1, round(a * ratio * ratio)) if a else 0 for a in self.min_area],
            presence=self.presence,
        )


def _ratio(from_side: float, to_side: float) -> float:
    if not (from_side > 0 and to_side > 0):
        raise ValueError(f"image sides must be > 0; got from_side={from_side!r}, to_side={to_side!r}")
    return float(to_side) / float(from_side)


def scale_kernel(size: int, from_side: float, to_side: float) -> int:
    """Scale an opening diameter from one image resolution to another.

    Args:
        size: diameter in pixels at ``from_side`` (0 = off, stays 0).
        from_side: image side (e.g. short side) the size was chosen for, e.g. :data:`THESIS_SIDE`.
        to_side: the same side of the image the probabilities are at.

    Returns:
        ``size * to_side / from_side`` rounded to the nearest odd integer (>= 1), or 0 for 0.

    Raises:
        ValueError: negative size or non-positive sides.
    """
    if size < 0:
        raise ValueError(f"kernel size must be >= 0; got {size}")
    ratio = _ratio(from_side, to_side)
    if size == 0:
        return 0
    return max(1, 2 * math.floor((size * ratio - 1) / 2 + 0.5) + 1)


def disk(size: int) -> np.ndarray:
    """Disk structuring element of diameter ``size`` (odd): ``i**2 + j**2 <= r**2``, ``r = (size-1)/2``.

    This is ``skimage.morphology.disk(r)``; it is symmetric under rotation by 90 degrees and
    reflection, unlike OpenCV's ``MORPH_ELLIPSE`` (whose 5x5 element differs from its transpose).

    Returns:
        ``(size, size)`` uint8 array of 0/1.

    Raises:
        ValueError: ``size`` is not odd and positive.
    """
    if size < 1 or size % 2 != 1:
        raise ValueError(f"disk diameter must be odd and >= 1; got {size}")
    r = (size - 1) // 2
    i, j = np.ogrid[-r : r + 1, -r : r + 1]
    return (i * i + j * j <= r * r).astype(np.uint8)


def remove_small_components(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Remove the 8-connected components of a 2-D mask that have fewer than ``min_area`` pixels.

    Args:
        mask: ``(H, W)`` bool.
        min_area: smallest component kept, in pixels (0 or 1 keeps everything).

    Returns:
        ``(H, W)`` bool.
    """
    if min_area <= 1 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False  # label 0 is the background
    return keep[labels] if n > 1 else mask


def apply_postprocess(probs: np.ndarray, settings: PostprocessSettings | None = None) -> np.ndarray:
    """Masks of one image from its attribute probabilities (see the module docstring for the steps).

    Args:
        probs: ``(5, H, W)`` float probabilities in [0, 1] (ATTRIBUTES order), numpy or a CPU
            tensor; sizes in ``settings`` are in pixels of this array.
        settings: defaults to thresholds 0.5 and nothing else.

    Returns:
        ``(5, H, W)`` bool masks.

    Raises:
        ValueError: ``probs`` is not ``(5, H, W)`` floats in [0, 1].
    """
    settings = settings or PostprocessSettings()
    p = np.asarray(probs)
    if p.ndim != 3 or p.shape[0] != NUM_ATTRIBUTES:
        raise ValueError(f"probs must be ({NUM_ATTRIBUTES}, H, W); got shape {p.shape}")
    if p.dtype.kind != "f":
        raise ValueError(f"probs must be float probabilities; got dtype {p.dtype}")
    out = np.zeros(p.shape, dtype=bool)
    if p.size == 0:
        return out
    peaks = p.reshape(NUM_ATTRIBUTES, -1).max(axis=1)
    if np.isnan(p).any() or p.min() < 0 or peaks.max() > 1:
        raise ValueError("probs must be probabilities in [0, 1] (got NaN or values outside; logits?)")
    for k in range(NUM_ATTRIBUTES):
        if peaks[k] < settings.presence[k]:
            continue  # gated: the attribute is judged absent from the image
        # compare in the probabilities' dtype, exactly as dermseg.evaluation.metrics.binarise does
        mask = p[k] > p.dtype.type(settings.thresholds[k])
        if settings.opening[k] > 1 and mask.any():
            opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk(settings.opening[k]))
            mask = opened.astype(bool)
        out[k] = remove_small_components(mask, settings.min_area[k])
    return out


__all__ = [
    "THESIS_OPENING",
    "THESIS_SIDE",
    "PostprocessSettings",
    "apply_postprocess",
    "disk",
    "postprocess_from_meta",
    "remove_small_components",
    "scale_kernel",
    "tuned_tta",
]


# --- from a checkpoint's description (also what an ONNX export stores) ------------------------


def tuned_tta(meta: dict[str, Any]) -> bool | None:
    """Whether a checkpoint's thresholds were tuned with flip TTA: its ``tuning`` record's ``tta``.

    ``None`` when the description has no tuning record (thresholds not tuned); a record
    without ``tta`` was written by a ``dermseg tune`` that always tuned without TTA: ``False``.

    Args:
        meta: a checkpoint description (:attr:`dermseg.models.checkpoint.Checkpoint.meta`).

    Raises:
        TypeError: the tuning record is not a mapping (malformed metadata).
    """
    tuning = meta.get("tuning")
    if tuning is None:
        return None
    if not isinstance(tuning, dict):
        raise TypeError(f"'tuning' is a {type(tuning).__name__}, expected a mapping")
    return bool(tuning.get("tta", False))


def postprocess_from_meta(meta: dict[str, Any]) -> PostprocessSettings:
    """The post-processing a checkpoint describes (older descriptions: thresholds only).

    Args:
        meta: a checkpoint description, with ``postprocess`` (a :meth:`PostprocessSettings.to_dict`)
            or, in older ones, only ``thresholds`` (or neither: 0.5 everywhere).

    Raises:
        ValueError: the recorded settings are invalid.
    """
    if "postprocess" in meta:
        return PostprocessSettings.from_dict(meta["postprocess"])
    return PostprocessSettings(thresholds=meta.get("thresholds", [0.5] * NUM_ATTRIBUTES))
