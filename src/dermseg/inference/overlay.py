"""Coloured overlays of label masks on an image, for people to look at.

Each label is drawn in its colour from the model's :class:`~dermseg.labels.LabelSet` (Task 2's
five attribute colours by default; a lesion in its own).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from dermseg.labels import DEFAULT, LabelSet


def overlay(
    image: np.ndarray,
    masks: np.ndarray,
    alpha: float = 0.45,
    outline: bool = True,
    labels: LabelSet = DEFAULT,
) -> np.ndarray:
    """Blend each label's colour over ``image`` where its mask is on.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(C, H, W)`` bool/0-1, one per label of ``labels`` in its channel order;
            overlapping labels mix.
        alpha: opacity of the fill, in ``[0, 1]``.
        outline: draw each region's border at full opacity.
        labels: the label set (its colours); Task 2's five attributes by default.

    Returns:
        ``(H, W, 3)`` uint8.

    Raises:
        ValueError: shapes disagree or ``alpha`` is out of range.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    masks = np.asarray(masks).astype(bool)
    if image.ndim != 3 or masks.shape != (labels.num_labels, *image.shape[:2]):
        raise ValueError(f"image {image.shape} and masks {masks.shape} do not match")
    out = image.astype(np.float32)
    for info in labels.labels:
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


def with_legend(
    panel: np.ndarray, present: np.ndarray | None = None, labels: LabelSet = DEFAULT
) -> np.ndarray:
    """Add a white strip under ``panel`` naming each label in its overlay colour.

    Args:
        panel: ``(H, W, 3)`` uint8.
        present: ``(C,)`` bool; labels not present are listed in grey.
        labels: the label set (display names and colours); Task 2's five attributes by default.

    Returns:
        ``(H + strip, W, 3)`` uint8.
    """
    from PIL import Image, ImageDraw, ImageFont

    width = panel.shape[1]
    size = max(10, min(28, width // 60))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    strip = Image.new("RGB", (width, int(size * 2.2)), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    x = size // 2
    for info in labels.labels:
        on = present is None or bool(present[info.index])
        colour = info.colour if on else (170, 170, 170)
        draw.rectangle([x, size // 2, x + size, size // 2 + size], fill=colour)
        label = info.display_name
        ink = (0, 0, 0) if on else (150, 150, 150)
        draw.text((x + int(size * 1.3), size // 2), label, fill=ink, font=font)
        x += int(size * 1.3) + int(draw.textlength(label, font=font)) + size
    return np.concatenate([panel, np.asarray(strip)], axis=0)
