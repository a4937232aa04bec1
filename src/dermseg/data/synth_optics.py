"""What the dermoscope and the camera add to a synthetic picture ("real" look of the generator).

Looked for side by side with the PH2 and ISIC photographs: the field of view darkens
softly to a grey-black surround (a circle, an ellipse, dark corners only, or nothing);
non-polarised (contact, immersion gel) pictures show a whitish surface reflection, air
bubbles and glints on scales of the skin, polarised ones hardly any; hairs are thin,
brown to black, from none to dense; some photographs carry a ruler's ticks or ink marks;
then blur, sensor noise and JPEG. Every effect is a randomised, seeded option: the
functions draw from the generator they are given in a fixed order.

Lengths are pixels at 512 px and scale with ``scale = min(H, W) / 512``. Images are RGB
planes, a list of three ``(H, W)`` float32 arrays in [0, 1], changed in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dermseg.data import synth_draw as draw

#: Chance that a picture is taken with polarised light (no gel: no bubbles, few glints).
POLARISED_PROBABILITY: float = 0.5
#: Chance of air bubbles in a non-polarised picture.
BUBBLE_PROBABILITY: float = 0.4
#: Chance of a ruler's ticks along one side.
RULER_PROBABILITY: float = 0.08
#: Chance of a surgical-ink mark.
INK_PROBABILITY: float = 0.05

#: Shapes of the field of view's falloff and their chances, when the picture has one.
VIGNETTE_SHAPES: dict[str, float] = {"circle": 0.5, "ellipse": 0.2, "corners": 0.3}


@dataclass(frozen=True)
class View:
    """How one picture is taken.

    Attributes:
        polarised: polarised light (True) or contact with gel (False).
        visibility: ``(H, W)`` float32 in [0, 1], the field of view's brightness falloff.
        floor: brightness of the surround where ``visibility`` is 0 (grey-black, not pure black).
    """

    polarised: bool
    visibility: np.ndarray
    floor: float

    @property
    def field(self) -> np.ndarray:
        """``(H, W)`` bool: where structures are visible enough to be drawn and marked."""
        return self.visibility > 0.5


def sample_view(
    rng: np.random.Generator, shape: draw.Shape, scale: float, vignette_probability: float
) -> View:
    """Polarisation and the shape of the field of view.

    Args:
        rng: random generator.
        shape: ``(H, W)`` of the image.
        scale: pixels per pixel of a 512-pixel frame.
        vignette_probability: chance that the field of view darkens towards the frame.

    Returns:
        The view.
    """
    h, w = shape
    short = min(h, w)
    polarised = bool(rng.random() < POLARISED_PROBABILITY)
    names = list(VIGNETTE_SHAPES)
    kind = names[int(rng.choice(len(names), p=np.array(list(VIGNETTE_SHAPES.values()))))]
    floor = float(rng.uniform(0.0, 0.12))
    if rng.random() >= vignette_probability:
        return View(polarised, np.ones(shape, np.float32), floor)
    radius = 0.5 * short * (rng.uniform(1.25, 1.6) if kind == "corners" else rng.uniform(0.92, 1.3))
    aspect = rng.uniform(1.0, 1.35) if kind == "ellipse" else 1.0
    cx = w / 2 + rng.normal(0, 0.03) * short
    cy = h / 2 + rng.normal(0, 0.03) * short
    soft = rng.uniform(0.03, 0.2) * short + 1.5 * scale
    xx = (np.arange(w, dtype=np.float32)[None, :] - np.float32(cx)) / np.float32(aspect)
    yy = np.arange(h, dtype=np.float32)[:, None] - np.float32(cy)
    dist = np.sqrt(xx * xx + yy * yy)
    t = np.clip((np.float32(radius) - dist) / np.float32(soft) + np.float32(0.5), 0, 1)
    return View(polarised, (t * t * (3 - 2 * t)).astype(np.float32), floor)


def _blend(planes: list[np.ndarray], alpha: np.ndarray, colour: np.ndarray) -> None:
    """Paint ``colour`` (3,) with opacity ``alpha`` (H, W) over ``planes``, in place."""
    for c in range(3):
        planes[c] += alpha * (np.float32(colour[c]) - planes[c])


def surface_reflection(rng: np.random.Generator, planes: list[np.ndarray], view: View) -> None:
    """Non-polarised pictures: a faint whitish sheen of light reflected by the skin surface."""
    if view.polarised:
        return
    sheen = np.float32(rng.uniform(0.02, 0.08))
    colour = np.array([0.96, 0.97, 1.0], np.float32)
    for c in range(3):
        planes[c] *= 1 - sheen
        planes[c] += sheen * colour[c]


def glints(rng: np.random.Generator, planes: list[np.ndarray], view: View, scale: float) -> None:
    """Small white glints on skin scales (many without polarisation, a few or none with it)."""
    h, w = planes[0].shape
    mean = 6.0 if view.polarised else rng.choice([10.0, 40.0, 120.0])
    count = int(rng.poisson(mean * (h * w) / 512**2))
    if count == 0:
        return
    gate = draw.smooth_noise(rng, (h, w), 4)  # glints gather in patches of dry skin
    xs, ys = rng.uniform(0, w, count), rng.uniform(0, h, count)
    keep = gate[np.clip(ys.astype(int), 0, h - 1), np.clip(xs.astype(int), 0, w - 1)] > rng.uniform(-1, 0.5)
    angles = rng.uniform(0, math.pi, count)
    lengths = rng.uniform(1.0, 6.0, count) * scale
    curves, widths, values = [], [], []
    for x, y, a, length in zip(xs[keep], ys[keep], angles[keep], lengths[keep], strict=True):
        d = np.array([math.cos(a), math.sin(a)]) * length / 2
        curves.append(np.array([[x, y] - d, [x, y] + d]))
        widths.append(1)
        values.append(float(rng.uniform(0.35, 0.9)))
    if curves:  # antialiased lines; the field's falloff is applied to everything by finish()
        _blend(
            planes, draw.draw_curves((h, w), curves, widths, values), np.array([0.98, 0.98, 1.0], np.float32)
        )


def bubbles(rng: np.random.Generator, planes: list[np.ndarray], view: View, scale: float) -> None:
    """Air bubbles in the immersion gel: bright thin rims with a dark edge and a highlight."""
    if view.polarised or rng.random() >= BUBBLE_PROBABILITY:
        return
    h, w = planes[0].shape
    count = int(rng.integers(1, 9))
    centres = np.stack([rng.uniform(0, w, count), rng.uniform(0, h, count)], axis=1)
    radii = rng.uniform(3, 28, count) * scale + 1.5
    rim = np.maximum(0.8 * scale, 0.12 * radii)
    ones = np.ones(count)
    outer = draw.draw_discs((h, w), centres, radii, ones)
    inner = draw.draw_discs((h, w), centres, radii - rim, ones)
    dark = draw.draw_discs((h, w), centres, radii + 0.8 * rim, ones) - outer
    spot = centres - 0.4 * radii[:, None]
    highlight = draw.draw_discs((h, w), spot, np.maximum(0.12 * radii, 0.8), ones)
    _blend(planes, np.clip(dark, 0, 1) * np.float32(0.35), np.zeros(3, np.float32))
    _blend(planes, np.clip(outer - inner, 0, 1) * np.float32(0.7), np.array([0.97, 0.97, 0.98], np.float32))
    _blend(planes, inner * np.float32(0.08), np.ones(3, np.float32))
    _blend(planes, highlight * np.float32(0.9), np.ones(3, np.float32))


def hairs(rng: np.random.Generator, shape: draw.Shape, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Thin hairs, brown to black, from a few to dense, many shorter than the frame.

    Returns:
        ``(H, W)`` float32 opacity and ``(3,)`` float32 RGB colour.
    """
    alpha = draw.hair_layer(
        rng,
        shape,
        scale,
        density=(2.0, 6.0, 16.0, 45.0),
        max_count=80,
        length=(0.1, 0.9),
        width=(0.5, 2.4),
        bend=0.12,
    )
    colour = np.array([0.30, 0.22, 0.16], np.float32) * np.float32(rng.uniform(0.25, 1.5))
    return alpha, np.clip(colour, 0, 1)


def ruler(rng: np.random.Generator, planes: list[np.ndarray], scale: float) -> None:
    """A ruler's ticks (every fifth one longer) along one side of the picture."""
    if rng.random() >= RULER_PROBABILITY:
        return
    h, w = planes[0].shape
    side = int(rng.integers(4))
    along, across = (w, h) if side < 2 else (h, w)
    step = rng.uniform(8, 16) * scale
    base = rng.uniform(0.03, 0.15) * across
    base = base if side % 2 == 0 else across - base
    sign = 1 if side % 2 == 0 else -1
    ticks = np.arange(rng.uniform(0, step), along, step)
    curves = []
    for i, t in enumerate(ticks):
        length = (14 if i % 5 == 0 else 7) * scale * sign
        seg = np.array([[t, base], [t, base + length]])
        curves.append(seg if side < 2 else seg[:, ::-1])
    curves.append(np.array([[0, base], [along, base]]) if side < 2 else np.array([[base, 0], [base, along]]))
    alpha = draw.draw_curves((h, w), curves, [max(1, round(scale))] * len(curves), [0.85] * len(curves))
    colour = np.array([0.05, 0.05, 0.06], np.float32) if rng.random() < 0.7 else np.full(3, 0.95, np.float32)
    _blend(planes, alpha, colour)


def ink(rng: np.random.Generator, planes: list[np.ndarray], scale: float) -> None:
    """A surgical-ink (gentian violet) stroke or dot near the lesion's surround."""
    if rng.random() >= INK_PROBABILITY:
        return
    h, w = planes[0].shape
    start = np.array([rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h])
    points = start + np.cumsum(rng.normal(0, 12 * scale, (int(rng.integers(2, 8)), 2)), axis=0)
    width = max(2, round(rng.uniform(3, 9) * scale))
    alpha = draw.blur(draw.draw_curves((h, w), [points], [width], [1.0]), 1.5 * scale)
    colour = np.array([0.35, 0.2, 0.55], np.float32) * np.float32(rng.uniform(0.6, 1.1))
    _blend(planes, alpha * np.float32(rng.uniform(0.5, 0.85)), colour)


def fine_texture(rng: np.random.Generator, planes: list[np.ndarray], scale: float) -> None:
    """Grain of skin relief and pigment a pixel or two across (real photographs have about twice
    the fine-detail energy of a smooth synthetic picture, ``benchmarks/synth_realism.py``)."""
    h, w = planes[0].shape
    half = (max(8, (h + 1) // 2), max(8, (w + 1) // 2))  # drawn at half size: a quarter of the cost
    sigma = 0.3 + 0.2 * scale
    grain = cv2.GaussianBlur(rng.standard_normal(half, dtype=np.float32), (0, 0), sigma)
    # a Gaussian blur of sigma s leaves white noise a standard deviation of about 1 / (2 s sqrt(pi))
    grain *= np.float32(rng.uniform(0.02, 0.07) * 2 * sigma * math.sqrt(math.pi))
    grain = cv2.resize(grain, (w, h), interpolation=cv2.INTER_LINEAR)
    grain += np.float32(1)
    for plane in planes:
        plane *= grain


def finish(
    rng: np.random.Generator,
    planes: list[np.ndarray],
    view: View,
    blur_sigma: tuple[float, float],
    noise_sigma: tuple[float, float],
    scale: float,
) -> np.ndarray:
    """Field-of-view falloff, optics blur, white balance and sensor noise.

    Args:
        rng: random generator.
        planes: RGB planes, consumed.
        view: the picture's view.
        blur_sigma: range of the Gaussian blur, pixels at 512 px.
        noise_sigma: range of the noise standard deviation (image in [0, 1]).
        scale: pixels per pixel of a 512-pixel frame.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    sigma = rng.uniform(*blur_sigma) * scale
    gains = (1 + rng.normal(0, 0.03, 3)).astype(np.float32)
    amplitude = np.float32(rng.uniform(*noise_sigma) * math.sqrt(12))
    grain = rng.random(planes[0].shape, dtype=np.float32) - np.float32(0.5)
    if rng.random() < 0.5:  # demosaicing makes real sensor noise a little blotchy
        grain = cv2.GaussianBlur(grain, (0, 0), 0.7) * np.float32(2.0)
    floor = np.float32(view.floor)
    out = []
    for c, plane in enumerate(planes):
        plane -= floor
        plane *= view.visibility
        plane += floor
        if sigma > 0.25:
            plane = cv2.GaussianBlur(plane, (0, 0), sigma)
        plane += grain * amplitude
        out.append(cv2.convertScaleAbs(plane, alpha=255 * float(gains[c])))
    return cv2.merge(out)
