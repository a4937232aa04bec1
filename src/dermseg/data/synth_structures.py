"""The five ISIC 2018 Task 2 structures, painted into a synthetic lesion (generator internals).

Each painter takes the scene of one image being generated (its lesion geometry and melanin
density, the visible field), paints its structure by changing the density or adding a
coloured overlay, and returns the *region* it painted (a superpixel-like mask, as in the
challenge's ground truth). :data:`PAINTERS` maps attribute names to them; :func:`add_veil`
paints a blue-grey veil, a distractor that is not an attribute. Lengths scale with
``scene.scale`` (pixels per pixel of a 512-pixel frame).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from dermseg.data import synth_draw as draw


@dataclass
class Scene:
    """Mutable state while one image is painted."""

    lesion: draw.LesionGeometry
    density: np.ndarray  # (H, W) melanin optical density
    overlays: list[tuple[np.ndarray, np.ndarray]]  # (alpha (H, W), colour (3,)) painted over
    field: np.ndarray  # (H, W) bool visible
    core: np.ndarray  # (H, W) bool: well inside the lesion and visible, seeds of structures
    rim: np.ndarray  # (H, W) bool: lesion border, visible
    scale: float

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the image."""
        h, w = self.density.shape
        return h, w


def _pick(rng: np.random.Generator, *candidates: np.ndarray) -> tuple[int, int]:
    """A random ``(x, y)`` pixel of the first non-empty boolean map."""
    for candidate in candidates:
        flat = np.flatnonzero(candidate)
        if flat.size:
            y, x = divmod(int(flat[rng.integers(flat.size)]), candidate.shape[1])
            return x, y
    raise AssertionError("no candidate pixel")  # the visible field is never empty


def _inside(scene: Scene, points: np.ndarray, max_d: float) -> np.ndarray:
    """``(N,)`` bool: points ``(N, 2)`` in frame, visible and at normalised distance < ``max_d``."""
    h, w = scene.shape
    xi, yi = np.round(points[:, 0]).astype(int), np.round(points[:, 1]).astype(int)
    ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    xi, yi = np.where(ok, xi, 0), np.where(ok, yi, 0)
    return ok & scene.field[yi, xi] & (scene.lesion.d[yi, xi] < max_d)


def _paint_network(rng: np.random.Generator, scene: Scene, negative: bool) -> np.ndarray:
    """Pigment network (dark lines, lighter holes) or negative network (light lines, dark holes)."""
    lesion, s = scene.lesion, scene.scale
    seed = _pick(rng, scene.core, scene.field)
    reach = rng.uniform(0.3, 0.75) if negative else rng.uniform(0.5, 1.3)
    radius = reach * lesion.mean_radius
    region = draw.blob_region(rng, scene.shape, seed, radius) & (lesion.d < (0.95 if negative else 1.0))
    region[seed[1], seed[0]] = True
    rows, cols = draw.bounding_box(region)
    patch = (rows.stop - rows.start, cols.stop - cols.start)
    if negative:
        cell, thick = max(6.0, rng.uniform(14, 24) * s), max(1, round(rng.uniform(1.6, 3.5) * s))
    else:
        cell, thick = max(4.5, rng.uniform(9, 17) * s), max(1, round(rng.uniform(0.8, 2.2) * s))
    lines = draw.network_pattern(rng, patch, cell, thick)
    weight = draw.soft_weight(region, rng.uniform(0.1, 0.3) * radius)[rows, cols]
    weight *= np.clip(0.75 + 0.35 * draw.smooth_noise(rng, patch, 4), 0.25, 1)
    density = scene.density[rows, cols]
    if negative:
        lines = cv2.GaussianBlur(np.clip(lines * 1.3, 0, 1), (0, 0), 1.1 * s + 0.3)
        darker = 1 + rng.uniform(0.3, 0.7) * weight * (1 - lines)
        scene.density[rows, cols] = density * darker * (1 - rng.uniform(0.35, 0.6) * lines * weight)
    else:
        amp = rng.uniform(0.5, 1.0)
        scene.density[rows, cols] = density * (1 - rng.uniform(0.2, 0.45) * weight) + amp * lines * weight
    return region


def _cluster_points(
    rng: np.random.Generator, scene: Scene, count: int, spread: float, peripheral: bool
) -> np.ndarray:
    """Up to ``count`` ``(x, y)`` points inside the visible lesion, around a random seed; never empty."""
    lesion = scene.lesion
    seed = _pick(rng, scene.rim if peripheral else scene.core, scene.core, scene.field)
    if peripheral:
        theta0 = float(lesion.theta[seed[1], seed[0]])
        theta = theta0 + rng.uniform(-1, 1, 3 * count) * rng.uniform(0.4, 1.4)
        rho = rng.uniform(0.75, 0.95, 3 * count) * lesion.radius_at(theta)
        points = lesion.to_image(rho, theta)
    else:
        points = np.asarray(seed, float) + rng.normal(0, spread / 2, (3 * count, 2))
    points = points[_inside(scene, points, 0.97)][: count - 1]
    return np.concatenate([np.asarray([seed], float), points])


def _region_from_discs(scene: Scene, centres: np.ndarray, radii: np.ndarray, close: float) -> np.ndarray:
    """Union of discs, closed with a round kernel of diameter ``close`` pixels (a region mask)."""
    region = draw.draw_discs(scene.shape, centres, radii, np.ones(len(radii)), supersample=1) > 0
    k = max(1, int(close) | 1)
    if k > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        region = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    return region


def _paint_globules(rng: np.random.Generator, scene: Scene) -> np.ndarray:
    """A cluster (or a peripheral rim) of round brown-black dots."""
    s = scene.scale
    spread = rng.uniform(0.15, 0.45) * scene.lesion.mean_radius
    centres = _cluster_points(rng, scene, int(rng.integers(6, 36)), spread, rng.random() < 0.3)
    radii = np.maximum(rng.uniform(2.0, 5.5, len(centres)) * s, 0.7)
    dots = draw.draw_discs(scene.shape, centres, radii, rng.uniform(0.6, 1.0, len(centres)))
    dots = cv2.GaussianBlur(dots, (0, 0), max(0.4, 0.3 * float(radii.mean())))
    scene.density += rng.uniform(1.2, 2.2) * dots
    pad = rng.uniform(3, 8) * s + 1
    close = 0.35 * spread
    if len(centres) > 1:
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(len(centres)) * 1e9
        close = max(close, 2.0 * float(np.median(gaps.min(axis=1))))
    return _region_from_discs(scene, centres, radii + pad, close) & (scene.lesion.d < 1.1)


def _paint_milia(rng: np.random.Generator, scene: Scene) -> np.ndarray:
    """A few to a dozen small white-yellow round spots, some blurred."""
    s = scene.scale
    spread = rng.uniform(0.35, 0.9) * scene.lesion.mean_radius
    centres = _cluster_points(rng, scene, int(rng.integers(2, 13)), spread, False)
    radii = np.maximum(rng.uniform(2.5, 7.0, len(centres)) * s, 0.8)
    alpha = draw.draw_discs(scene.shape, centres, radii, rng.uniform(0.6, 0.95, len(centres)))
    r_mean = float(radii.mean())
    glow = draw.blur(alpha, 1.5 * r_mean + 0.5) * np.float32(rng.uniform(0.2, 0.5))
    alpha = np.clip(draw.blur(alpha, max(0.4, rng.uniform(0.25, 0.7) * r_mean)) * np.float32(1.3), 0, 1)
    alpha = np.maximum(alpha, glow)
    colour = np.array([rng.uniform(0.95, 1.0), rng.uniform(0.92, 0.98), rng.uniform(0.78, 0.9)], np.float32)
    scene.overlays.append((alpha, colour))
    return _region_from_discs(scene, centres, radii + rng.uniform(2, 5) * s + 1, 0)


def _paint_streaks(rng: np.random.Generator, scene: Scene) -> np.ndarray:
    """Radial dark lines (some with bulbous tips) crossing a sector of the lesion border outwards."""
    lesion, s = scene.lesion, scene.scale
    seed = _pick(rng, scene.rim, scene.core, scene.field)
    theta0 = float(lesion.theta[seed[1], seed[0]])
    half = rng.uniform(0.25, 1.1)
    spacing = max(2.5, rng.uniform(6, 12) * s)
    count = int(np.clip(2 * half * float(lesion.radius_at(np.float64(theta0))) / spacing, 3, 60))
    angles = theta0 + np.linspace(-half, half, count) + rng.normal(0, 0.3 * half / count, count)
    t = np.linspace(0, 1, 8)
    bend = rng.normal(0, 0.03)
    start, stop = rng.uniform(0.78, 0.9), rng.uniform(1.05, 1.18)
    thick = max(1, round(rng.uniform(1.2, 3.0) * s))
    base, tips = [], []
    for a in angles:
        r = float(lesion.radius_at(np.float64(a)))
        rho = r * (start + rng.normal(0, 0.03) + t * (stop - start + rng.normal(0, 0.04)))
        theta = a + (bend + rng.normal(0, 0.01)) * t**2 + np.cumsum(rng.normal(0, 0.003, len(t)))
        base.append(lesion.to_image(rho, theta))
        tips.append(base[-1][-1])
    values = list(rng.uniform(0.55, 1.0, count))
    layer = draw.draw_curves(scene.shape, base, [thick] * count, values)  # thicker at the base: tapered
    layer = np.maximum(
        layer, draw.draw_curves(scene.shape, [c[:4] for c in base], [thick + 1] * count, values)
    )
    if rng.random() < 0.5:
        bulbs = draw.draw_discs(
            scene.shape, np.asarray(tips), np.full(count, 0.8 * thick + 0.5), np.full(count, 0.9)
        )
        layer = np.maximum(layer, bulbs)
    halo = draw.blur(layer, max(2 * spacing, 0.06 * lesion.mean_radius))
    halo *= rng.uniform(0.4, 0.9) / max(float(halo.max()), 1e-6)
    scene.density += rng.uniform(1.0, 1.8) * cv2.GaussianBlur(layer, (0, 0), 0.6) + halo
    k = max(3, int(1.5 * spacing + 4 * s) | 1)
    band = cv2.dilate((layer > 0.05).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return band.astype(bool)


def add_veil(rng: np.random.Generator, scene: Scene) -> None:
    """A blue-grey veil over part of the lesion (a distractor, not one of the five attributes)."""
    seed = _pick(rng, scene.core, scene.field)
    region = draw.blob_region(rng, scene.shape, seed, rng.uniform(0.25, 0.6) * scene.lesion.mean_radius)
    alpha = draw.soft_weight(region & (scene.lesion.d < 0.95), 0.2 * scene.lesion.mean_radius)
    colour = np.array([0.45, 0.5, 0.58], np.float32) * np.float32(rng.uniform(0.8, 1.15))
    scene.overlays.append((alpha * np.float32(rng.uniform(0.2, 0.45)), colour))


PAINTERS: dict[str, Callable[[np.random.Generator, Scene], np.ndarray]] = {
    "pigment_network": lambda rng, scene: _paint_network(rng, scene, negative=False),
    "negative_network": lambda rng, scene: _paint_network(rng, scene, negative=True),
    "streaks": _paint_streaks,
    "globules": _paint_globules,
    "milia_like_cyst": _paint_milia,
}
