"""Synthetic dermoscopy: the embedded default dataset for demos, tests and benchmarks.

Each sample is a skin background with an irregular pigmented lesion on which some of
the five ISIC 2018 Task 2 structures are painted (pigment network, negative network,
globules, streaks, milia-like cysts), plus hairs, the dermoscope's dark circular
border, blur, noise and JPEG compression. The masks mark the *regions* where a
structure was painted, like the challenge's superpixel masks.

Structures appear with the ISIC 2018 training frequencies (see :func:`sample_presence`).
:func:`write_dataset` writes the official folder layout; sample ``k`` is drawn from its
own generator seeded with ``(seed, split, k)``, so a dataset is byte-identical for a
given seed whatever ``n``, order or parallelism.

Two looks (:attr:`SynthConfig.look`): ``"classic"``, the hand-picked colours and black
dermoscope border of the first generator (the default, byte-identical to earlier
releases, so measured benchmarks stay reproducible), and ``"real"``, whose skin and lesion
colours are sampled from statistics measured on real photographs
(:mod:`dermseg.data.synth_colour`) and which adds the dermoscope's and camera's marks
(:mod:`dermseg.data.synth_optics`). :meth:`SynthConfig.real` also widens the blur, noise
and JPEG ranges to those of real photographs.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from dermseg.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from dermseg.data import synth_draw as draw
from dermseg.data import synth_optics as optics
from dermseg.data import synth_structures as structures
from dermseg.data.imageio import write_image, write_mask
from dermseg.data.synth_colour import sample_colours
from dermseg.files import atomic_path

logger = logging.getLogger(__name__)

#: Fraction of ISIC 2018 Task 2 training images showing each structure.
ISIC2018_PRESENCE: dict[str, float] = {
    "globules": 0.23,
    "milia_like_cyst": 0.26,
    "negative_network": 0.07,
    "pigment_network": 0.59,
    "streaks": 0.04,
}

#: split -> (index used to seed samples, image folder, ground-truth folder).
SPLITS: dict[str, tuple[int, str, str]] = {
    "training": (0, "ISIC2018_Task1-2_Training_Input", "ISIC2018_Task2_Training_GroundTruth_v3"),
    "validation": (1, "ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task2_Validation_GroundTruth"),
    "test": (2, "ISIC2018_Task1-2_Test_Input", "ISIC2018_Task2_Test_GroundTruth"),
}

#: Optical density of melanin per RGB channel (absorbs blue most, red least).
_MELANIN_ABSORPTION = np.array([0.62, 0.98, 1.22], np.float32)

#: The generator's looks (see the module docstring).
LOOKS: tuple[str, ...] = ("classic", "real")

#: Camera settings of :meth:`SynthConfig.real`: wider blur, noise and JPEG ranges, more hair.
REAL_LOOK: dict[str, object] = {
    "look": "real",
    "hair_probability": 0.55,
    "vignette_probability": 0.85,
    "blur_sigma": (0.2, 1.1),
    "noise_sigma": (0.003, 0.02),
    "jpeg_quality": (60, 98),
}


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator. Lengths are given for a 512-pixel frame and scale with it.

    Attributes:
        size: image width in pixels (and height unless ``height`` is set).
        height: image height in pixels; ``None`` for a square image.
        presence: target fraction of images showing each attribute; attributes left
            out are never drawn.
        none_fraction: fraction of images showing no attribute at all.
        hair_probability: chance that an image has hairs.
        vignette_probability: chance of the dark circular border of a dermoscope.
        veil_probability: chance of a blue-grey veil (a distractor, not an attribute).
        lesion_area: range of the lesion area as a fraction of the frame.
        blur_sigma: range of the final Gaussian blur, pixels at 512 px.
        noise_sigma: range of the sensor noise standard deviation (image in [0, 1]).
        jpeg_quality: inclusive range of the JPEG quality used by :func:`write_dataset`.
        look: ``"classic"`` (hand-picked colours, the default) or ``"real"`` (colours sampled
            from real photographs, plus polarisation, bubbles, glints, rulers, ink and soft
            vignettes of several shapes).
    """

    size: int = 512
    height: int | None = None
    presence: Mapping[str, float] = field(default_factory=lambda: dict(ISIC2018_PRESENCE))
    none_fraction: float = 0.20
    hair_probability: float = 0.35
    vignette_probability: float = 0.35
    veil_probability: float = 0.08
    lesion_area: tuple[float, float] = (0.15, 0.60)
    blur_sigma: tuple[float, float] = (0.2, 0.8)
    noise_sigma: tuple[float, float] = (0.004, 0.014)
    jpeg_quality: tuple[int, int] = (80, 95)
    look: str = "classic"

    @classmethod
    def real(cls, **overrides: object) -> SynthConfig:
        """The ``"real"`` look with the camera ranges of :data:`REAL_LOOK`; ``overrides`` win."""
        return cls(**{**REAL_LOOK, **overrides})  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.look not in LOOKS:
            raise ValueError(f"look must be one of {', '.join(LOOKS)}, got {self.look!r}")
        if self.size < 16 or (self.height is not None and self.height < 16):
            raise ValueError(f"image sides must be >= 16 pixels, got size={self.size} height={self.height}")
        unknown = sorted(set(self.presence) - set(ATTRIBUTES))
        if unknown:
            raise ValueError(
                f"unknown attributes in presence: {unknown}; expected some of {list(ATTRIBUTES)}"
            )
        if not 0.0 <= self.none_fraction <= 1.0:
            raise ValueError(f"none_fraction must be in [0, 1], got {self.none_fraction}")
        for name, p in self.presence.items():
            if not 0.0 <= p <= 1.0 - self.none_fraction + 1e-9:
                limit = 1 - self.none_fraction
                raise ValueError(f"presence[{name!r}]={p} must be in [0, 1 - none_fraction] = [0, {limit:g}]")
        for name in ("hair_probability", "vignette_probability", "veil_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        lo, hi = self.lesion_area
        if not 0.0 < lo <= hi <= 0.9:
            raise ValueError(f"lesion_area must satisfy 0 < low <= high <= 0.9, got {self.lesion_area}")
        qlo, qhi = self.jpeg_quality
        if not 1 <= qlo <= qhi <= 100:
            raise ValueError(f"jpeg_quality must satisfy 1 <= low <= high <= 100, got {self.jpeg_quality}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the generated images."""
        return (self.height if self.height is not None else self.size, self.size)

    def rates(self) -> np.ndarray:
        """Target presence per attribute, ``(5,)`` float64 in channel order."""
        return np.array([float(self.presence.get(name, 0.0)) for name in ATTRIBUTES])


@dataclass(frozen=True)
class SyntheticSample:
    """One generated image with its ground truth and the scene facts the tests check.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, before JPEG compression.
        masks: ``(5, H, W)`` uint8 in {0, 1}, channel order of :data:`ATTRIBUTES`.
        presence: ``(5,)`` bool, the attributes that were drawn.
        lesion: ``(H, W)`` bool, the lesion's extent.
        field: ``(H, W)`` bool, the visible field (False under the dermoscope's black border).
    """

    image: np.ndarray
    masks: np.ndarray
    presence: np.ndarray
    lesion: np.ndarray
    field: np.ndarray


@functools.lru_cache(maxsize=64)
def _conditional_rates(rates: tuple[float, ...], none_fraction: float) -> tuple[tuple[float, ...], bool]:
    """Per-attribute probabilities ``q`` for sampling "independently, given at least one".

    An image that is not in the ``none_fraction`` draws each attribute with probability
    ``q_a`` and redraws until one is present, so ``P(a) = (1 - none) q_a / Z`` with
    ``Z = 1 - prod(1 - q_b)``. Solving ``q_a = r_a Z`` for ``r = rates / (1 - none)``
    (``Z`` is the positive root of a concave function, found by bisection) makes the
    marginals exact. When ``sum(r) <= 1`` no root exists and exactly one attribute is
    drawn, with probability proportional to ``r`` (flag ``True``).
    """
    r = np.asarray(rates) / max(1.0 - none_fraction, 1e-12)
    if r.sum() <= 1.0:
        return tuple(r / max(r.sum(), 1e-12)), True
    lo, hi = 1e-9, 1.0
    if 1.0 - np.prod(1.0 - r) >= 1.0:  # some r_a == 1: Z = 1
        return tuple(np.minimum(r, 1.0)), False
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if 1.0 - np.prod(1.0 - r * mid) > mid else (lo, mid)
    return tuple(np.minimum(r * lo, 1.0)), False


def sample_presence(rng: np.random.Generator, config: SynthConfig) -> np.ndarray:
    """Which attributes one image shows.

    With probability ``none_fraction`` none; otherwise each attribute independently with
    a probability chosen so that, after redrawing empty sets, the marginal frequencies
    equal ``config.presence`` (see :func:`_conditional_rates`).

    Args:
        rng: random generator.
        config: generator settings.

    Returns:
        ``(5,)`` bool in channel order.
    """
    rates = config.rates()
    if rng.random() < config.none_fraction or rates.sum() <= 0:
        return np.zeros(NUM_ATTRIBUTES, bool)
    q, exclusive = _conditional_rates(tuple(rates), config.none_fraction)
    if exclusive:
        chosen = np.zeros(NUM_ATTRIBUTES, bool)
        chosen[rng.choice(NUM_ATTRIBUTES, p=np.asarray(q))] = True
        return chosen
    while True:
        chosen = rng.random(NUM_ATTRIBUTES) < np.asarray(q)
        if chosen.any():
            return chosen


def _make_scene(
    rng: np.random.Generator, config: SynthConfig, visible: np.ndarray | None
) -> structures.Scene:
    """Place the lesion (inside the visible field) and compute its melanin density."""
    h, w = config.shape
    short = min(h, w)
    scale = short / 512
    field_map = np.ones((h, w), bool) if visible is None else visible > 0.5
    area = rng.uniform(*config.lesion_area) * h * w
    area = min(area, config.lesion_area[1] * short * short)
    if visible is not None:
        area = min(area, 0.6 * float(visible.sum()))
    offset = np.clip(rng.normal(0, 0.07, 2), -0.15, 0.15) * short
    lesion = draw.make_lesion(rng, (h, w), (w / 2 + offset[0], h / 2 + offset[1]), area)
    density = draw.lesion_melanin(rng, lesion)
    strict = field_map if visible is None else visible > 0.95
    core = (lesion.d < 0.85) & strict
    rim = (np.abs(lesion.d - 1) < 0.05) & strict
    return structures.Scene(lesion, density, [], field_map, core, rim, scale)


def _paint_structures(
    rng: np.random.Generator, scene: structures.Scene, presence: np.ndarray, config: SynthConfig
) -> dict[str, np.ndarray]:
    """Paint the present attributes (and maybe a veil) into ``scene``; returns name -> region ``(H, W)``."""
    regions: dict[str, np.ndarray] = {}
    for name in ("pigment_network", "negative_network", "streaks", "globules", "milia_like_cyst"):
        if presence[ATTRIBUTES.index(name)]:
            regions[name] = structures.PAINTERS[name](rng, scene)
    if rng.random() < config.veil_probability:
        structures.add_veil(rng, scene)
    return regions


def _colour(
    scene: structures.Scene, skin: np.ndarray, absorption: np.ndarray, grey: tuple[float, float] | None = None
) -> list[np.ndarray]:
    """RGB planes: skin ``(3, H, W)`` attenuated by melanin (Beer-Lambert), then the overlays.

    ``grey = (cap, k)``: density above ``cap`` absorbs all channels alike with ``k``, so the
    darkest parts of a lesion turn dark brown-black instead of ever more saturated.
    """
    excess = None
    if grey is not None:
        excess = np.maximum(scene.density - np.float32(grey[0]), 0) * np.float32(-grey[1])
    planes = []
    for c in range(3):  # in place, no temporaries
        if excess is None:
            plane = scene.density * -absorption[c]
        else:
            plane = np.minimum(scene.density, np.float32(grey[0])) * -absorption[c]
            plane += excess
        np.exp(plane, out=plane)
        plane *= skin[c]
        planes.append(plane)
    for alpha, colour in scene.overlays:
        _blend(planes, alpha, colour)
    return planes


def _sample(
    image: np.ndarray, scene: structures.Scene, regions: dict[str, np.ndarray], presence: np.ndarray
) -> SyntheticSample:
    """The sample: masks of the painted regions, cut to the visible field."""
    h, w = scene.shape
    masks = np.zeros((NUM_ATTRIBUTES, h, w), np.uint8)
    for name, region in regions.items():
        masks[ATTRIBUTES.index(name)] = region & scene.field
    lesion = (scene.lesion.d < 1) & scene.field
    return SyntheticSample(image, masks, presence, lesion, scene.field)


def render_sample(rng: np.random.Generator, config: SynthConfig) -> SyntheticSample:
    """Generate one image with its masks and scene facts.

    Args:
        rng: random generator; the sample is a pure function of its state.
        config: generator settings.

    Returns:
        The sample (image before JPEG compression).
    """
    if config.look == "real":
        return _render_real(rng, config)
    h, w = config.shape
    scale = min(h, w) / 512
    presence = sample_presence(rng, config)
    visible = draw.vignette(rng, (h, w), scale) if rng.random() < config.vignette_probability else None
    scene = _make_scene(rng, config, visible)
    skin = draw.skin_background(rng, (h, w), scale)
    regions = _paint_structures(rng, scene, presence, config)

    absorption = _MELANIN_ABSORPTION * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    planes = _colour(scene, skin, absorption)
    if rng.random() < config.hair_probability:
        colour = np.array([0.13, 0.09, 0.07], np.float32) * np.float32(rng.uniform(0.4, 1.4))
        _blend(planes, draw.hair_layer(rng, (h, w), scale), colour)
    image = _finish(rng, planes, visible, config, scale)

    return _sample(image, scene, regions, presence)


def _absorption(density: np.ndarray, ratio: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Per-channel absorption ``k`` with ``mean(weight * exp(-k * density)) = ratio`` (Newton's method).

    Args:
        density: ``(N,)`` float32 melanin densities of lesion pixels, > 0.
        ratio: ``(3,)`` lesion / skin brightness per channel, in (0, 1).
        weight: ``(N,)`` a channel-independent attenuation of each pixel; ones if ``None``.

    Returns:
        ``(3,)`` float32 absorptions.
    """
    d = density.astype(np.float64)
    wt = np.ones_like(d) if weight is None else weight.astype(np.float64)
    k = -np.log(ratio) / max(float(d.mean()), 1e-3)
    for _ in range(8):
        e = np.exp(-k[:, None] * d[None, :]) * wt[None, :]
        k = np.maximum(k + (e.mean(axis=1) - ratio) / np.maximum((d * e).mean(axis=1), 1e-6), 0.0)
    return k.astype(np.float32)


def _render_real(rng: np.random.Generator, config: SynthConfig) -> SyntheticSample:
    """:func:`render_sample` in the ``"real"`` look.

    The skin tone and the lesion's mean colour come from :func:`sample_colours`; the
    melanin absorption per channel is then solved so that the painted lesion (structures
    included) has that mean colour over the skin tone.
    """
    h, w = config.shape
    scale = min(h, w) / 512
    presence = sample_presence(rng, config)
    view = optics.sample_view(rng, (h, w), scale, config.vignette_probability)
    colours = sample_colours(rng)
    scene = _make_scene(rng, config, view.visibility)
    # structures a little finer than the classic look's, as in photographs of 1024-4288 px brought down
    scene.scale *= float(rng.uniform(0.55, 1.0))
    skin = draw.skin_background(rng, (h, w), scale, colour=colours.skin)
    # the measured colour is the mean over the visible skin, falloff included: match that mean
    where = (scene.lesion.d[::4, ::4] > 1.2) & scene.field[::4, ::4]
    if where.any():
        seen = skin[:, ::4, ::4][:, where] * view.visibility[::4, ::4][where]
        gain = np.clip(colours.skin / np.maximum(seen.mean(axis=1), 1e-3), 0.7, 1.5).astype(np.float32)
        skin *= gain[:, None, None]
    # real lesions are more variegated than lesion_melanin's zones: more of it, as much as measured
    mottle = draw.fractal_noise(rng, ((h + 1) // 2, (w + 1) // 2), 6, octaves=5)
    amp = np.float32(np.clip(0.03 * colours.lesion_l_std, 0.08, 0.5))
    mottle = cv2.resize(np.clip(1 + amp * mottle, 0.3, 2.0), (w, h), interpolation=cv2.INTER_LINEAR)
    scene.density *= mottle
    regions = _paint_structures(rng, scene, presence, config)

    inside = scene.density[::3, ::3][(scene.lesion.d[::3, ::3] < 0.9) & scene.field[::3, ::3]]
    ratio = np.clip(colours.lesion / np.maximum(colours.skin, 1e-3), 0.03, 0.97)
    grey = None
    absorption = _MELANIN_ABSORPTION
    if inside.size:
        cap = float(np.percentile(inside, 60))  # above it, melanin darkens without more colour
        k_grey = float(-np.log(ratio).mean()) / max(cap, 1e-3)
        weight = np.exp(-k_grey * np.maximum(inside - cap, 0))
        absorption = _absorption(np.clip(inside, 1e-3, cap), ratio, weight)
        grey = (cap, k_grey)
    planes = _colour(scene, skin, absorption, grey)
    if rng.random() < config.hair_probability:
        _blend(planes, *optics.hairs(rng, (h, w), scale))
    optics.surface_reflection(rng, planes, view)
    optics.glints(rng, planes, view, scale)
    optics.bubbles(rng, planes, view, scale)
    optics.ruler(rng, planes, scale)
    optics.ink(rng, planes, scale)
    optics.fine_texture(rng, planes, scale)
    image = optics.finish(rng, planes, view, config.blur_sigma, config.noise_sigma, scale)

    return _sample(image, scene, regions, presence)


def _blend(planes: list[np.ndarray], alpha: np.ndarray, colour: np.ndarray) -> None:
    """Paint ``colour`` (3,) with opacity ``alpha`` (H, W) over RGB ``planes`` (3 x (H, W)), in place."""
    for c in range(3):
        planes[c] += alpha * (colour[c] - planes[c])


def _finish(
    rng: np.random.Generator,
    planes: list[np.ndarray],
    visible: np.ndarray | None,
    config: SynthConfig,
    scale: float,
) -> np.ndarray:
    """Camera effects: blur, white balance, dermoscope border, sensor noise.

    Returns:
        ``(H, W, 3)`` uint8 image.
    """
    sigma = rng.uniform(*config.blur_sigma) * scale
    gains = (1 + rng.normal(0, 0.02, 3)).astype(np.float32)
    black = np.float32(rng.uniform(0.0, 0.04))
    amplitude = np.float32(rng.uniform(*config.noise_sigma) * math.sqrt(12))
    noise = (rng.random(planes[0].shape, dtype=np.float32) - np.float32(0.5)) * amplitude
    out = []
    for c, plane in enumerate(planes):
        if sigma > 0.25:
            plane = cv2.GaussianBlur(plane, (0, 0), sigma)
        plane += noise
        if visible is not None:
            plane -= black
            plane *= visible
            plane += black
        # |x| folds the rare slightly negative values (noise on the black border) back up
        out.append(cv2.convertScaleAbs(plane, alpha=255 * float(gains[c])))
    return cv2.merge(out)


def synthesize_sample(rng: np.random.Generator, config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """Generate one synthetic dermoscopy image and its five attribute masks.

    Args:
        rng: random generator; the sample is a pure function of its state.
        config: generator settings.

    Returns:
        ``image`` ``(H, W, 3)`` uint8 RGB (before JPEG compression) and ``masks``
        ``(5, H, W)`` uint8 in {0, 1}, in the channel order of :data:`ATTRIBUTES`.
    """
    sample = render_sample(rng, config)
    return sample.image, sample.masks


def split_folders(split: str) -> tuple[str, str]:
    """Official ``(image folder, ground-truth folder)`` names of a split.

    Raises:
        ValueError: unknown split (the message lists the valid ones).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    _, images, truth = SPLITS[split]
    return images, truth


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of sample ``index`` (its ISIC id number) of ``split`` for ``seed``."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed} index={index}")
    split_folders(split)
    return np.random.default_rng([seed, SPLITS[split][0], index])


#: A file in the root of every synthetic dataset (layout discovery ignores ``.txt`` files).
SYNTHETIC_MARKER = "SYNTHETIC.txt"


def write_dataset(
    out: Path,
    n: int,
    size: int = 512,
    seed: int = 0,
    split: str = "training",
    start_id: int = 0,
    progress: Callable[[int], None] | None = None,
    config: SynthConfig | None = None,
    lesion_masks: bool = False,
) -> list[str]:
    """Write ``n`` synthetic samples in the official ISIC 2018 Task 2 layout.

    Images go to ``out/<image folder>/ISIC_<id>.jpg`` (JPEG, random quality in
    ``config.jpeg_quality``) and masks to ``out/<truth folder>/ISIC_<id>_attribute_<name>.png``
    (0/255, all five per image). Sample ``ISIC_k`` is drawn from
    ``np.random.default_rng([seed, split index, k])``, so it does not depend on ``n``,
    on the order of writing, or on other samples.

    Args:
        out: dataset root (created if needed).
        n: number of samples.
        size: image width (and height, unless ``config.height`` is set), pixels.
        seed: dataset seed, >= 0.
        split: ``"training"``, ``"validation"`` or ``"test"``.
        start_id: number of the first id (``ISIC_%07d``).
        progress: called with the number of samples written so far after each one.
        config: other generator settings; its ``size`` is replaced by ``size``.
        lesion_masks: also write the Task 1 lesion masks,
            ``out/ISIC2018_Task1_<Split>_GroundTruth/ISIC_<id>_segmentation.png``.

    Returns:
        The ids written, e.g. ``["ISIC_0000000", ...]``.

    Raises:
        ValueError: unknown split, negative ``n``/``seed``/``start_id``, or ids beyond 7 digits.
    """
    images_name, truth_name = split_folders(split)
    if n < 0 or start_id < 0 or seed < 0:
        raise ValueError(f"n, seed and start_id must be >= 0, got n={n} seed={seed} start_id={start_id}")
    if start_id + n > 10**7:
        raise ValueError(f"ids must fit in 7 digits; start_id + n = {start_id + n}")
    cfg = replace(config or SynthConfig(), size=size)
    images_dir, truth_dir = Path(out) / images_name, Path(out) / truth_name
    images_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    lesion_dir = Path(out) / f"ISIC2018_Task1_{split.capitalize()}_GroundTruth"
    marker = Path(out) / SYNTHETIC_MARKER
    if not marker.exists():  # tells reports (and people) that these are not real lesions
        with atomic_path(marker) as tmp:
            tmp.write_text(
                "Synthetic dermoscopy images written by dermseg's generator (dermseg synth / demo).\n"
                "Scores measured on them say nothing about accuracy on real lesions.\n"
            )
    logger.info("writing %d synthetic %s samples of %dx%d to %s", n, split, *cfg.shape[::-1], out)
    ids: list[str] = []
    for i in range(n):
        number = start_id + i
        rng = sample_rng(seed, split, number)
        sample = render_sample(rng, cfg)
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        isic_id = f"ISIC_{number:07d}"
        write_image(images_dir / f"{isic_id}.jpg", sample.image, quality=quality)
        for channel, name in enumerate(ATTRIBUTES):
            write_mask(truth_dir / f"{isic_id}_attribute_{name}.png", sample.masks[channel])
        if lesion_masks:
            write_mask(lesion_dir / f"{isic_id}_segmentation.png", sample.lesion)
        ids.append(isic_id)
        if progress is not None:
            progress(i + 1)
    return ids
