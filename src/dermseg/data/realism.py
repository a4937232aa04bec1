"""Colour and texture statistics of skin and lesion in a dermoscopy photograph.

The same measurement runs on real photographs (PH2, with their expert lesion masks) and
on synthetic ones (with the generator's lesion masks), so the two can be compared number
for number and the generator can sample its colours from the real distribution
(:mod:`dermseg.data.synth_colour`).

Every image is first resized to :data:`MEASURE_WIDTH` pixels wide, so the texture
statistic is taken at the same scale relative to the lesion whatever the photograph's
size. Colours are in CIELAB (OpenCV's float convention: ``L`` in [0, 100], ``a`` and ``b``
about [-128, 127]), from sRGB.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import cv2
import numpy as np

#: Width the images are resized to before measuring.
MEASURE_WIDTH: int = 512

#: Sigma (pixels at :data:`MEASURE_WIDTH`) of the low-pass whose residual is the "fine detail".
DETAIL_SIGMA: float = 2.0

#: Pixels this close to the lesion border (either side, at :data:`MEASURE_WIDTH`) are not measured.
BORDER_MARGIN: int = 6

#: Pixels darker than this ``L*`` are taken as the dermoscope's dark surround, not skin.
MIN_FIELD_L: float = 20.0

#: D65 reference white (X, Y, Z) and the XYZ -> linear sRGB matrix.
_WHITE = np.array([0.950456, 1.0, 1.088754])
_XYZ_TO_RGB = np.array(
    [[3.240479, -1.53715, -0.498535], [-0.969256, 1.875991, 0.041556], [0.055648, -0.204043, 1.057311]]
)

#: Names of the per-image statistics, in the order :func:`image_stats` returns them.
STAT_NAMES: tuple[str, ...] = (
    "skin_L",
    "skin_a",
    "skin_b",
    "lesion_L",
    "lesion_a",
    "lesion_b",
    "skin_L_std",
    "lesion_L_std",
    "skin_detail",
    "lesion_detail",
)


def to_lab(image: np.ndarray) -> np.ndarray:
    """CIELAB of an sRGB image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.

    Returns:
        ``(H, W, 3)`` float32 ``L, a, b``.
    """
    return cv2.cvtColor(image.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2Lab)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] of CIELAB colours (the inverse of :func:`to_lab`, D65 white, in numpy).

    Args:
        lab: ``(..., 3)`` ``L, a, b``.

    Returns:
        ``(..., 3)`` float32 RGB clipped to [0, 1].
    """
    lab = np.asarray(lab, np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _WHITE
    linear = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    rgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def image_stats(image: np.ndarray, lesion: np.ndarray) -> dict[str, float] | None:
    """Colour and texture statistics of the skin and of the lesion of one photograph.

    Skin is the visible field (``L* >=`` :data:`MIN_FIELD_L`) outside the lesion; both
    leave out a band of :data:`BORDER_MARGIN` pixels around the lesion border. ``*_detail``
    is the standard deviation of ``L*`` minus its Gaussian blur of sigma
    :data:`DETAIL_SIGMA`: the energy of the fine texture (skin furrows, network lines,
    dots, sensor noise, minus what blur and JPEG removed).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        lesion: ``(H, W)`` mask, non-zero on the lesion.

    Returns:
        :data:`STAT_NAMES` -> value, or ``None`` when the skin or the lesion has fewer
        than 500 measurable pixels.
    """
    h, w = lesion.shape
    size = (MEASURE_WIDTH, max(16, round(h * MEASURE_WIDTH / w)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize((lesion > 0).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * BORDER_MARGIN + 1,) * 2)
    inner = cv2.erode(mask, kernel).astype(bool)
    outer = cv2.dilate(mask, kernel).astype(bool)
    lab = to_lab(small)
    light = lab[..., 0]
    detail = light - cv2.GaussianBlur(light, (0, 0), DETAIL_SIGMA)
    skin = ~outer & (light >= MIN_FIELD_L)
    if skin.sum() < 500 or inner.sum() < 500:
        return None
    stats: dict[str, float] = {}
    for part, where in (("skin", skin), ("lesion", inner)):
        for c, name in enumerate("Lab"):
            stats[f"{part}_{name}"] = float(lab[..., c][where].mean())
    stats["skin_L_std"] = float(light[skin].std())
    stats["lesion_L_std"] = float(light[inner].std())
    stats["skin_detail"] = float(detail[skin].std())
    stats["lesion_detail"] = float(detail[inner].std())
    return {name: stats[name] for name in STAT_NAMES}


def summarise(records: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation and quartiles over images of each statistic.

    Args:
        records: per-image statistics (:func:`image_stats`).

    Returns:
        statistic -> ``{"mean", "std", "p25", "p50", "p75"}``.

    Raises:
        ValueError: no records.
    """
    rows = list(records)
    if not rows:
        raise ValueError("no images to summarise")
    out: dict[str, dict[str, float]] = {}
    for name in STAT_NAMES:
        values = np.array([row[name] for row in rows], np.float64)
        p25, p50, p75 = np.percentile(values, [25, 50, 75])
        out[name] = {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "p25": float(p25),
            "p50": float(p50),
            "p75": float(p75),
        }
    return out
