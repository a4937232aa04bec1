"""Coloured overlays of attribute masks on an image, for people to look at."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from dermseg.attributes import ATTRIBUTE_INFO


def overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.45, outline: bool = True) -> np.ndarray:
    """Blend each attribute's colour over ``image`` where its mask is on.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(5, H, W)`` bool/0-1 (ATTRIBUTES order); overlapping attributes mix.
        alpha: opacity of the fill, in ``[0, 1]``.
        outline: draw each region's border at full opacity.

    Returns:
        ``(H, W, 3)`` uint8.

    Raises:
        ValueError: shapes disagree or ``alpha`` is out of range.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    masks = np.asarray(masks).astype(bool)
    if image.ndim != 3 or masks.shape != (len(ATTRIBUTE_INFO), *image.shape[:2]):
        raise ValueError(f"image {image.shape} and masks {masks.shape} do not match")
    out = image.astype(np.float32)
    for info in ATTRIBUTE_INFO:
        m = masks[info.index]
        if not m.any():
            continue
        colour = np.array(info.colour, np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * colour
        if outline:
            edge = m & ~ndimage.binary_erosion(m, iterations=max(1, min(image.shape[:2]) // 300))
            out[edge] = colour
    return out.clip(0, 255).astype(np.uint8)


def side_by_side(*panels: np.ndarray, gap: int = 4) -> np.ndarray:
    """Place ``(H, W, 3)`` uint8 panels of equal height left to right with white gaps."""
    h = panels[0].shape[0]
    parts: list[np.ndarray] = []
    for k, p in enumerate(panels):
        if p.shape[0] != h:
            raise ValueError("panels must have the same height")
        if k:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
        parts.append(p)
    return np.concatenate(parts, axis=1)
