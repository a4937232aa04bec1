"""Drawing primitives of the synthetic dermoscopy generator.

Everything here works on float32 fields with vectorised numpy / OpenCV calls; the
only Python loops run over a handful of shapes (discs, curves), never over pixels.
Lengths are in pixels of the output image: callers scale them with
``scale = min(H, W) / 512`` so that structures keep their size relative to the frame.
Every function that is random takes a :class:`numpy.random.Generator` and draws
from it in a fixed order, so a seeded generator gives the same picture every time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: ``(height, width)`` of a field.
Shape = tuple[int, int]

_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_ONE = 1 << _SHIFT
_NOISE_GAIN = 1 / math.sqrt(0.74)  # bicubic interpolation of white noise keeps ~74 % of its variance
_ANGLES = 1024  # samples of a lesion's border radius over one turn (a power of two)

#: Skin tones under polarised dermoscopy, fair to medium-dark, RGB in [0, 1].
SKIN_TONES = (
    np.array(
        [
            [240, 206, 196],
            [230, 184, 164],
            [216, 162, 134],
            [196, 140, 108],
            [166, 112, 84],
            [128, 84, 62],
        ],
        dtype=np.float32,
    )
    / 255.0
)


def smooth_noise(rng: np.random.Generator, shape: Shape, cells: float) -> np.ndarray:
    """Smooth random field: a coarse Gaussian grid upsampled bicubically.

    The grid is upsampled bicubically to ~16 pixels per control point (160 at least), then
    bilinearly to ``shape`` (indistinguishable, and ten times faster than one bicubic step).

    Args:
        rng: random generator.
        shape: ``(h, w)`` of the field.
        cells: number of independent control points along the longer side
            (small = slowly varying).

    Returns:
        ``(h, w)`` float32 field, zero mean and unit variance in expectation.
    """
    h, w = shape
    longest = max(h, w)
    gh = max(2, round(cells * h / longest)) + 2
    gw = max(2, round(cells * w / longest)) + 2
    grid = rng.standard_normal((gh, gw), dtype=np.float32) * np.float32(_NOISE_GAIN)
    step = min(1.0, max(16 * max(gh, gw), 160) / longest)
    mid = (max(1, round(w * step)), max(1, round(h * step)))
    field = cv2.resize(grid, mid, interpolation=cv2.INTER_CUBIC)
    if mid != (w, h):
        field = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    return field


def fractal_noise(rng: np.random.Generator, shape: Shape, cells: float, octaves: int = 3) -> np.ndarray:
    """Sum of :func:`smooth_noise` octaves (each twice as fine, half as strong).

    Args:
        rng: random generator.
        shape: ``(h, w)`` of the field.
        cells: control points along the longer side for the coarsest octave.
        octaves: number of octaves.

    Returns:
        ``(h, w)`` float32 field with zero mean and unit standard deviation.
    """
    total = np.zeros(shape, np.float32)
    for octave in range(octaves):
        total += smooth_noise(rng, shape, cells * 2**octave) * 0.5**octave
    std = float(total.std())
    return total / std if std > 1e-6 else total


def skin_texture(rng: np.random.Generator, shape: Shape, scale: float) -> np.ndarray:
    """Fine skin relief: the polygonal mesh of skin furrows plus pores.

    Args:
        rng: random generator.
        shape: ``(h, w)`` of the field.
        scale: pixels per pixel of a 512-pixel frame (sets the furrow spacing).

    Returns:
        ``(h, w)`` float32 field, zero mean, unit standard deviation.
    """
    furrows = network_pattern(rng, shape, max(3.0, rng.uniform(22, 44) * scale), 1)
    pores = cv2.GaussianBlur(rng.standard_normal(shape, dtype=np.float32), (0, 0), 0.5 + 0.6 * scale)
    furrows *= np.clip(smooth_noise(rng, shape, 6) * np.float32(0.5) + np.float32(0.6), 0, 1)
    pores *= np.float32(1 / (float(pores.std()) + 1e-6))
    furrows *= np.float32(0.35 / (float(furrows.std()) + 1e-6))
    texture = pores - furrows
    return (texture - texture.mean()) / (float(texture.std()) + 1e-6)


def skin_colour(rng: np.random.Generator) -> np.ndarray:
    """A skin tone, mostly fair (as in ISIC), sometimes medium-dark.

    Returns:
        ``(3,)`` float32 RGB in [0, 1].
    """
    t = rng.beta(1.3, 2.6) * (len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    f = t - i
    colour = (1 - f) * SKIN_TONES[i] + f * SKIN_TONES[i + 1]
    colour = colour * (1 + rng.normal(0, 0.025, 3))
    return np.clip(colour, 0.05, 1.0).astype(np.float32)


def skin_background(
    rng: np.random.Generator, shape: Shape, scale: float, colour: np.ndarray | None = None
) -> np.ndarray:
    """Skin seen through a dermoscope: a tone, uneven lighting, redness and fine relief.

    Made at half resolution (the sensor noise added later supplies the finest grain).

    Args:
        rng: random generator.
        shape: ``(h, w)`` of the image.
        scale: pixels per pixel of a 512-pixel frame.
        colour: ``(3,)`` RGB tone in [0, 1]; ``None`` draws one with :func:`skin_colour`.

    Returns:
        ``(3, h, w)`` float32 RGB planes in [0, 1].
    """
    h, w = shape
    half = (max(8, (h + 1) // 2), max(8, (w + 1) // 2))
    colour = skin_colour(rng) if colour is None else colour
    light = 1 + np.float32(rng.uniform(0.02, 0.07)) * smooth_noise(rng, half, 3)
    yy = np.linspace(-1, 1, half[0], dtype=np.float32)[:, None] + np.float32(rng.uniform(-0.3, 0.3))
    xx = np.linspace(-1, 1, half[1], dtype=np.float32)[None, :] + np.float32(rng.uniform(-0.3, 0.3))
    light *= 1 - np.float32(rng.uniform(0.0, 0.15)) * (xx * xx + yy * yy)
    light *= 1 + np.float32(rng.uniform(0.01, 0.03)) * skin_texture(rng, half, scale / 2)
    redness = np.clip(smooth_noise(rng, half, 4) * np.float32(0.5), 0, 1) * np.float32(rng.uniform(0.0, 0.1))
    planes = (colour[0] * light, colour[1] * light * (1 - redness), colour[2] * light * (1 - 0.7 * redness))
    return np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for p in planes])


@dataclass(frozen=True)
class LesionGeometry:
    """Shape of an irregular lesion: a rotated ellipse whose radius varies with angle.

    Attributes:
        cx, cy: centre in pixels.
        rotation: angle of the major axis, radians.
        aspect: minor / major axis ratio, <= 1.
        radii: ``(N,)`` border radius in pixels (major-axis units) at ``N`` equally spaced
            angles from 0 to 2 pi in the lesion frame (``N`` a power of two).
        d: ``(H, W)`` float32 normalised distance, < 1 inside the lesion, 1 on its border.
        theta: ``(H, W)`` float32 angle in [0, 2 pi) of each pixel in the lesion frame.
    """

    cx: float
    cy: float
    rotation: float
    aspect: float
    radii: np.ndarray
    d: np.ndarray
    theta: np.ndarray

    @property
    def mean_radius(self) -> float:
        """Geometric mean of the two semi-axes, in pixels."""
        return float(self.radii.mean()) * math.sqrt(self.aspect)

    def radius_at(self, theta: np.ndarray) -> np.ndarray:
        """Border radius (lesion frame, major-axis pixels) at angles ``theta``, same shape."""
        return _radius_lookup(self.radii, theta)

    def to_image(self, rho: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Image coordinates of lesion-frame polar points.

        Args:
            rho: radii in major-axis pixels, any shape.
            theta: lesion-frame angles, same shape.

        Returns:
            ``(..., 2)`` float array of ``(x, y)``.
        """
        u = rho * np.cos(theta)
        v = rho * np.sin(theta) * self.aspect
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        return np.stack([self.cx + u * c - v * s, self.cy + u * s + v * c], axis=-1)


def _radius_lookup(radii: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Table look-up of ``radii`` (sampled on ``[0, 2 pi)``, length a power of two) at angles ``theta``.

    Any angle works: a negative one wraps around (two's-complement ``&``).
    """
    n = len(radii)
    idx = (np.asarray(theta, dtype=np.float32) * np.float32(n / (2 * math.pi))).astype(np.int32)
    idx &= n - 1
    return np.take(radii, idx)


def make_lesion(
    rng: np.random.Generator, shape: Shape, centre: tuple[float, float], area: float
) -> LesionGeometry:
    """Random irregular lesion outline.

    Args:
        rng: random generator.
        shape: ``(H, W)`` of the image.
        centre: ``(x, y)`` in pixels.
        area: target area in pixels.

    Returns:
        The lesion geometry, with its distance and angle fields over the whole image.
    """
    h, w = shape
    aspect = rng.uniform(0.7, 1.0)
    rotation = rng.uniform(0, math.pi)
    radius = math.sqrt(area / (math.pi * aspect))
    angles = np.linspace(0, 2 * math.pi, _ANGLES, endpoint=False)
    irregularity = rng.uniform(0.04, 0.13)
    profile = np.ones(_ANGLES)
    for k in range(2, 25):
        amp = irregularity * rng.standard_normal() / k ** (1.1 if k < 9 else 1.5)
        profile += amp * np.cos(k * angles + rng.uniform(0, 2 * math.pi))
    radii = (np.clip(profile, 0.55, 1.6) * radius).astype(np.float32)

    cx, cy = centre
    c, s = math.cos(rotation), math.sin(rotation)
    dx = np.arange(w, dtype=np.float32)[None, :] - cx
    dy = np.arange(h, dtype=np.float32)[:, None] - cy
    u = dx * c + dy * s
    v = (dy * c - dx * s) / aspect
    rho, theta = cv2.cartToPolar(np.ascontiguousarray(u), np.ascontiguousarray(v))
    d = rho / _radius_lookup(radii, theta)
    d *= 1 + np.float32(rng.uniform(0.02, 0.06)) * smooth_noise(rng, shape, 8)
    return LesionGeometry(cx, cy, rotation, aspect, radii, d, theta)


def lesion_melanin(rng: np.random.Generator, lesion: LesionGeometry) -> np.ndarray:
    """Melanin density of the lesion: a soft-bordered, uneven brown with darker and lighter zones.

    The slowly varying pigmentation is computed at half resolution; only the border is
    evaluated at full resolution.

    Returns:
        ``(H, W)`` float32 optical density, 0 on plain skin, about 0.5-2.5 in the lesion.
    """
    h, w = lesion.d.shape
    edge = rng.uniform(0.03, 0.16)
    t = np.clip((1 + edge / 2 - lesion.d) * np.float32(1 / edge), 0, 1)
    inside = t * t * (3 - 2 * t)

    half = (max(8, (h + 1) // 2), max(8, (w + 1) // 2))
    fy, fx = h / half[0], w / half[1]
    d = cv2.resize(lesion.d, half[::-1], interpolation=cv2.INTER_NEAREST)
    noise = fractal_noise(rng, half, 4, octaves=5)
    density = np.float32(rng.uniform(0.5, 1.3)) * (1 + np.float32(rng.uniform(0.15, 0.35)) * noise)
    density *= 1 + np.float32(rng.uniform(-0.3, 0.5)) * (0.6 - np.minimum(d, 1))
    for _ in range(rng.integers(0, 3)):
        rho = rng.uniform(0, 0.5) * float(lesion.radii.mean())
        x, y = (float(v) for v in lesion.to_image(np.float64(rho), np.float64(rng.uniform(0, 2 * math.pi))))
        sigma = rng.uniform(0.12, 0.3) * lesion.mean_radius
        gx = np.exp(-(((np.arange(half[1], dtype=np.float32) * fx - x) / sigma) ** 2) / 2)
        gy = np.exp(-(((np.arange(half[0], dtype=np.float32) * fy - y) / sigma) ** 2) / 2)
        density += np.float32(rng.uniform(0.3, 0.9)) * gy[:, None] * gx[None, :]
    light = np.clip(smooth_noise(rng, half, 5) * np.float32(0.5) - np.float32(0.3), 0, 1)
    density *= 1 - np.float32(rng.uniform(0.0, 0.6)) * light * light * (3 - 2 * light)
    density = cv2.resize(np.maximum(density, np.float32(0.05)), (w, h), interpolation=cv2.INTER_LINEAR)
    return density * inside


def blob_region(
    rng: np.random.Generator, shape: Shape, centre: tuple[float, float], radius: float, roughness: float = 0.3
) -> np.ndarray:
    """An irregular round region: a disc whose edge is perturbed by smooth noise.

    Args:
        rng: random generator.
        shape: ``(H, W)`` of the image.
        centre: ``(x, y)`` in pixels; the pixel under it is always in the region.
        radius: mean radius in pixels.
        roughness: amplitude of the edge perturbation relative to ``radius``.

    Returns:
        ``(H, W)`` bool region.
    """
    h, w = shape
    cx, cy = centre
    reach = radius * (1 + 2 * roughness) + 1
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
    region = np.zeros(shape, bool)
    if x1 > x0 and y1 > y0:
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        noise = np.clip(smooth_noise(rng, (y1 - y0, x1 - x0), 5), -2, 2)
        region[y0:y1, x0:x1] = np.sqrt(xx * xx + yy * yy) / max(radius, 1e-3) + roughness * noise < 1
    region[min(h - 1, max(0, int(cy))), min(w - 1, max(0, int(cx)))] = True
    return region


def soft_weight(region: np.ndarray, width: float) -> np.ndarray:
    """Weight that is 1 deep inside ``region``, ramps down towards its edge and is 0 outside.

    Args:
        region: ``(H, W)`` bool, not empty.
        width: ramp width in pixels, measured inwards from the region's edge.

    Returns:
        ``(H, W)`` float32 in [0, 1], 0 exactly where ``region`` is False.
    """
    h, w = region.shape
    rows, cols = bounding_box(region)
    rows = slice(max(0, rows.start - 1), min(h, rows.stop + 1))
    cols = slice(max(0, cols.start - 1), min(w, cols.stop + 1))
    out = np.zeros(region.shape, np.float32)
    dist = cv2.distanceTransform(region[rows, cols].astype(np.uint8), cv2.DIST_L2, 3)
    t = np.clip(dist * np.float32(1 / max(width, 1e-3)), 0, 1)
    out[rows, cols] = t * t * (3 - 2 * t)
    return out


def blur(field: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float32 field; wide blurs are done on a downsampled copy (fast, same look)."""
    if sigma <= 0.3:
        return field
    h, w = field.shape
    factor = int(sigma / 2)
    if factor < 2 or min(h, w) < 8 * factor:
        return cv2.GaussianBlur(field, (0, 0), sigma)
    small = cv2.resize(field, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def bounding_box(region: np.ndarray) -> tuple[slice, slice]:
    """Rows and columns slices of the smallest box holding all True pixels of a non-empty region."""
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def warp(field: np.ndarray, rng: np.random.Generator, amplitude: float, cells: float) -> np.ndarray:
    """Displace ``field`` by a smooth random vector field of ``amplitude`` pixels (bilinear)."""
    h, w = field.shape
    if amplitude <= 0:
        return field
    mx = np.arange(w, dtype=np.float32)[None, :] + amplitude * smooth_noise(rng, (h, w), cells)
    my = np.arange(h, dtype=np.float32)[:, None] + amplitude * smooth_noise(rng, (h, w), cells)
    return cv2.remap(field, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def network_pattern(rng: np.random.Generator, shape: Shape, cell: float, thickness: int) -> np.ndarray:
    """Reticular pattern: boundaries of jittered hexagonal Voronoi cells, warped to look organic.

    Args:
        rng: random generator.
        shape: ``(h, w)`` of the patch.
        cell: mean hole diameter in pixels.
        thickness: line thickness in pixels (>= 1).

    Returns:
        ``(h, w)`` float32 line intensity in [0, 1] (1 on the lines).
    """
    h, w = shape
    cell = max(cell, 2.0)
    dy = cell * math.sqrt(3) / 2
    rows, cols = int(h / dy) + 5, int(w / cell) + 5
    ii, jj = np.mgrid[0:rows, 0:cols].astype(np.float32)
    x = (jj - 2 + 0.5 * (ii % 2)) * cell + rng.uniform(-0.3, 0.3, ii.shape).astype(np.float32) * cell
    y = (ii - 2) * dy + rng.uniform(-0.3, 0.3, ii.shape).astype(np.float32) * dy
    points = np.stack([x.ravel(), y.ravel()], axis=1)
    lo, hi = points.min(axis=0) - 2, points.max(axis=0) + 2
    subdiv = cv2.Subdiv2D((int(lo[0]), int(lo[1]), int(hi[0] - lo[0]) + 2, int(hi[1] - lo[1]) + 2))
    inside = (
        (points[:, 0] >= -cell)
        & (points[:, 0] <= w + cell)
        & (points[:, 1] >= -cell)
        & (points[:, 1] <= h + cell)
    )
    subdiv.insert(points)
    # Subdiv2D numbers its 4 virtual corner vertices first, then the points in insertion order.
    facets, _ = subdiv.getVoronoiFacetList((np.flatnonzero(inside) + 4).tolist())
    keep = [(f * _ONE).astype(np.int32) for f in facets]
    canvas = np.zeros((h, w), np.uint8)
    cv2.polylines(canvas, keep, True, 255, int(thickness), cv2.LINE_AA, _SHIFT)
    lines = canvas.astype(np.float32) / 255
    lines = warp(lines, rng, 0.25 * cell, max(w, h) / (2.5 * cell))
    lines *= np.clip(0.75 + 0.3 * smooth_noise(rng, shape, max(w, h) / (3 * cell)), 0.2, 1)
    return cv2.GaussianBlur(lines, (0, 0), 0.5)


def draw_discs(
    shape: Shape, centres: np.ndarray, radii: np.ndarray, values: np.ndarray, supersample: int | None = None
) -> np.ndarray:
    """Antialiased filled discs, drawn supersampled over their bounding box so small ones stay round.

    Args:
        shape: ``(h, w)`` of the canvas.
        centres: ``(N, 2)`` ``(x, y)`` in pixels (pixel centres at integers).
        radii: ``(N,)`` radii in pixels.
        values: ``(N,)`` intensities in [0, 1]; a later disc overwrites an earlier one.
        supersample: drawing resolution factor; ``None`` picks 4 for discs of a few pixels,
            less for larger ones (1 gives plain OpenCV discs).

    Returns:
        ``(h, w)`` float32 in [0, 1].
    """
    h, w = shape
    out = np.zeros(shape, np.float32)
    centres, radii = np.asarray(centres, float).reshape(-1, 2), np.asarray(radii, float)
    if radii.size == 0:
        return out
    x0 = max(0, int(np.floor((centres[:, 0] - radii).min())) - 1)
    x1 = min(w, int(np.ceil((centres[:, 0] + radii).max())) + 2)
    y0 = max(0, int(np.floor((centres[:, 1] - radii).min())) - 1)
    y1 = min(h, int(np.ceil((centres[:, 1] + radii).max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return out
    k = supersample or (4 if radii.mean() < 3 else 2 if radii.mean() < 8 else 1)
    canvas = np.zeros(((y1 - y0) * k, (x1 - x0) * k), np.uint8)
    for (x, y), r, v in zip(centres, radii, values, strict=True):
        cx, cy = ((x - x0 + 0.5) * k - 0.5) * _ONE, ((y - y0 + 0.5) * k - 0.5) * _ONE
        radius = max(1, int(round(r * k * _ONE)))
        cv2.circle(
            canvas, (int(round(cx)), int(round(cy))), radius, int(round(v * 255)), -1, cv2.LINE_AA, _SHIFT
        )
    if k > 1:
        canvas = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    out[y0:y1, x0:x1] = canvas.astype(np.float32) / 255
    return out


def draw_curves(
    shape: Shape, curves: list[np.ndarray], thickness: list[int], values: list[float]
) -> np.ndarray:
    """Antialiased open polylines.

    Args:
        shape: ``(h, w)`` of the canvas.
        curves: each a ``(K, 2)`` array of ``(x, y)`` points in pixels.
        thickness: line thickness per curve, pixels.
        values: intensity per curve in [0, 1].

    Returns:
        ``(h, w)`` float32 in [0, 1].
    """
    canvas = np.zeros(shape, np.uint8)
    for points, t, v in zip(curves, thickness, values, strict=True):
        pts = np.round(np.clip(points, -1e5, 1e5) * _ONE).astype(np.int32)
        cv2.polylines(canvas, [pts], False, int(round(v * 255)), max(1, int(t)), cv2.LINE_AA, _SHIFT)
    return canvas.astype(np.float32) / 255


def bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, n: int) -> np.ndarray:
    """``(n, 2)`` points of the cubic Bezier curve with control points ``p0 .. p3``."""
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def hair_layer(
    rng: np.random.Generator,
    shape: Shape,
    scale: float,
    density: tuple[float, ...] = (2.0, 6.0, 14.0),
    max_count: int = 30,
    length: tuple[float, float] = (0.3, 1.1),
    width: tuple[float, float] = (1.2, 3.5),
    bend: float = 0.15,
) -> np.ndarray:
    """Dark hairs: thin curved strands, by default most of them crossing the frame.

    Args:
        rng: random generator.
        shape: ``(h, w)`` of the image.
        scale: pixels per pixel of a 512-pixel frame.
        density: mean hair counts, one picked per image (a Poisson draw around it).
        max_count: most hairs in one image.
        length: range of a hair's length, fraction of the frame's diagonal.
        width: range of a hair's width, pixels at 512 px (thinner than a pixel: fainter).
        bend: standard deviation of the sideways bend, fraction of the length.

    Returns:
        ``(h, w)`` float32 opacity in [0, 1].
    """
    h, w = shape
    diag = math.hypot(h, w)
    count = int(np.clip(1 + rng.poisson(rng.choice(list(density))), 1, max_count))
    curves, widths, values = [], [], []
    for _ in range(count):
        start = np.array([rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h])
        angle = rng.uniform(0, 2 * math.pi)
        size = rng.uniform(*length) * diag
        direction = np.array([math.cos(angle), math.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        end = start + size * direction
        bend1 = start + 0.33 * size * direction + rng.normal(0, bend) * size * normal
        bend2 = start + 0.67 * size * direction + rng.normal(0, bend) * size * normal
        curves.append(bezier(start, bend1, bend2, end, 48))
        thick = rng.uniform(*width) * scale
        widths.append(max(1, int(round(thick))))
        values.append(rng.uniform(0.6, 0.95) * min(1.0, thick))  # sub-pixel hairs: fainter, not thicker
    return cv2.GaussianBlur(draw_curves(shape, curves, widths, values), (0, 0), 0.6)


def vignette(rng: np.random.Generator, shape: Shape, scale: float) -> np.ndarray:
    """Visibility of the dermoscope's circular field: 1 inside the circle, 0 in the black surround.

    Returns:
        ``(h, w)`` float32 in [0, 1].
    """
    h, w = shape
    short = min(h, w)
    radius = 0.5 * short * rng.uniform(0.9, 1.28)
    cx = w / 2 + rng.normal(0, 0.015) * short
    cy = h / 2 + rng.normal(0, 0.015) * short
    edge = rng.uniform(1.0, 5.0) * scale + 0.5
    xx = np.arange(w, dtype=np.float32)[None, :] - cx
    yy = np.arange(h, dtype=np.float32)[:, None] - cy
    return np.clip((radius - np.sqrt(xx * xx + yy * yy)) / edge + 0.5, 0, 1).astype(np.float32)
