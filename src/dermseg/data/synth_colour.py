"""Skin and lesion colours for the synthetic generator, sampled from real photographs.

``real_stats.json`` (beside this module) holds the per-image statistics of
:mod:`dermseg.data.realism` measured on the PH2 photographs of the shared sample with
their expert lesion masks; ``benchmarks/synth_realism.py --write-stats`` regenerates it.
:func:`sample_colours` draws one photograph's skin and lesion colour together (so that
their correlation, e.g. dark skin with dark lesions, is kept) and jitters it by a fraction
of the spread over photographs: a smoothed bootstrap (a kernel density estimate) of the
measured joint distribution, not a hand-picked palette.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermseg.data.realism import lab_to_rgb

#: The measured statistics shipped with the package.
REAL_STATS_PATH: Path = Path(__file__).with_name("real_stats.json")

#: Kernel width of the smoothed bootstrap, as a fraction of the spread over photographs.
JITTER: float = 0.3

_COLOUR_KEYS = ("skin_L", "skin_a", "skin_b", "lesion_L", "lesion_a", "lesion_b")


@dataclass(frozen=True)
class RealColours:
    """Per-photograph colour statistics to sample from.

    Attributes:
        lab: ``(N, 6)`` float64 ``skin L, a, b, lesion L, a, b`` of ``N`` photographs.
        lesion_l_std: ``(N,)`` standard deviation of ``L*`` inside each lesion.
        source: what the statistics were measured on, in words.
    """

    lab: np.ndarray
    lesion_l_std: np.ndarray
    source: str


@functools.lru_cache(maxsize=4)
def load_real_colours(path: Path = REAL_STATS_PATH) -> RealColours:
    """Read the per-image statistics written by ``benchmarks/synth_realism.py``.

    Args:
        path: a ``real_stats.json`` file.

    Returns:
        The statistics (cached: the file is read once per process).

    Raises:
        ValueError: the file holds no usable images.
    """
    data = json.loads(Path(path).read_text())
    images = data.get("images", [])
    if not images:
        raise ValueError(f"{path}: no per-image statistics")
    lab = np.array([[row[k] for k in _COLOUR_KEYS] for row in images], np.float64)
    std = np.array([row["lesion_L_std"] for row in images], np.float64)
    return RealColours(lab, std, str(data.get("source", "")))


@dataclass(frozen=True)
class ColourDraw:
    """One sampled pair of colours.

    Attributes:
        skin: ``(3,)`` float32 sRGB in [0, 1] of the skin.
        lesion: ``(3,)`` float32 sRGB in [0, 1] of the lesion's mean colour.
        lesion_l_std: the variegation to aim at, standard deviation of ``L*`` in the lesion.
    """

    skin: np.ndarray
    lesion: np.ndarray
    lesion_l_std: float


def sample_colours(rng: np.random.Generator, colours: RealColours | None = None) -> ColourDraw:
    """Skin and lesion colours of one synthetic image, from the measured distribution.

    Args:
        rng: random generator (draws one integer and seven normals).
        colours: statistics to sample from; the packaged ones by default.

    Returns:
        The colours; the lesion is kept at least 4 ``L*`` darker than the skin.
    """
    stats = colours or load_real_colours()
    k = int(rng.integers(len(stats.lab)))
    spread = stats.lab.std(axis=0)
    lab = stats.lab[k] + rng.normal(0.0, 1.0, 6) * JITTER * spread
    lab[0] = np.clip(lab[0], 30.0, 98.0)
    lab[3] = np.clip(lab[3], 8.0, lab[0] - 4.0)
    std = float(stats.lesion_l_std[k] * np.exp(rng.normal(0.0, JITTER * 0.5)))
    return ColourDraw(lab_to_rgb(lab[:3]), lab_to_rgb(lab[3:]), std)
