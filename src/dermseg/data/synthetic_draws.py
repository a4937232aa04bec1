"""Synthetic images drawn on the fly, as training items beside real ones (``data.synthetic_mix``).

Draw ``k`` of a run is a pure function of ``(seed, k)``: the generator of
:mod:`dermseg.data.synthetic` runs from ``np.random.default_rng([seed, MIX_STREAM, k, attempt])``
in whichever DataLoader worker asks for it, so there is no pool to store, and a rerun, a resumed
run or another number of workers sees byte-identical images. :data:`MIX_STREAM` is none of the
generator's split indices (0-2), so a draw is never an image ``dermseg synth`` writes for the
same seed (a "real" folder made by it for a test does not meet itself).

Each draw is JPEG-compressed at a quality from the generator's range, as ``dermseg synth`` writes
it, then read like a real image: background crop (and lesion box with ``data.field: lesion``),
the same training transform, the same normalisation. Its masks are all annotated.

With ``rare_only`` a draw keeps the first attempt whose structures include streaks or negative
network (:data:`RARE_ATTRIBUTES`): the generator's own choice at the ISIC 2018 frequencies,
conditioned on holding a rare one, so the other structures still appear with them. Which
structures an image holds is the first thing the generator draws, so an attempt that is not kept
costs a few random numbers.

:class:`WithSyntheticDraws` puts real items (indices ``0 .. len(real) - 1``) and draws (index
``len(real) + k`` is draw ``k``) in one dataset for :class:`~dermseg.data.sampling.SeededItems`;
:class:`~dermseg.data.mix_sampling.SyntheticMixSampler` decides how many draws each batch gets.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dermseg.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from dermseg.data.dataset import crop_to_field, make_item
from dermseg.data.synthetic import SynthConfig, SyntheticSample, render_sample, sample_presence
from dermseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD

#: The structures ``rare_only`` draws hold (at least one of): 7 % and 4 % of ISIC 2018's images.
RARE_ATTRIBUTES: tuple[str, ...] = ("negative_network", "streaks")

#: The generator stream of the mix: the second seed word, beside the split indices 0-2 of
#: :data:`dermseg.data.synthetic.SPLITS`.
MIX_STREAM = 3

#: Attempts of a rare-only draw before giving up (about 1 in 9 qualifies at ISIC frequencies).
MAX_ATTEMPTS = 10_000

#: How many draws :class:`SyntheticDraws` numbers (its ``len``): more than any run asks for.
MAX_DRAWS = 2**40

_RARE = np.array([a in RARE_ATTRIBUTES for a in ATTRIBUTES])


def _rng(seed: int, k: int, attempt: int) -> np.random.Generator:
    return np.random.default_rng([seed, MIX_STREAM, k, attempt])


def draw_sample(seed: int, k: int, config: SynthConfig, rare_only: bool = False) -> SyntheticSample:
    """Draw ``k`` of the mix for ``seed``, its image JPEG-compressed and decoded again.

    Args:
        seed: the run's seed, ``>= 0``.
        k: the draw number, ``>= 0``.
        config: the generator settings (``config.size``: the image side).
        rare_only: keep only a draw holding streaks or negative network (see the module docstring).

    Returns:
        The sample; ``image`` ``(H, W, 3)`` uint8 after the JPEG round trip.

    Raises:
        ValueError: a negative ``seed`` or ``k``, or ``rare_only`` with a ``config`` that never
            draws a rare structure.
    """
    if seed < 0 or k < 0:
        raise ValueError(f"seed and k must be >= 0, got seed={seed} k={k}")
    attempt = 0
    if rare_only:
        if not config.rates()[_RARE].any():
            raise ValueError(f"rare_only: the generator config never draws {' or '.join(RARE_ATTRIBUTES)}")
        while not sample_presence(_rng(seed, k, attempt), config)[_RARE].any():
            attempt += 1
            if attempt >= MAX_ATTEMPTS:
                raise ValueError(f"rare_only: no draw with a rare structure in {MAX_ATTEMPTS} attempts")
    rng = _rng(seed, k, attempt)  # render_sample draws the structures first: the same ones as above
    sample = render_sample(rng, config)
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    buffer = io.BytesIO()
    Image.fromarray(sample.image).save(buffer, format="JPEG", quality=quality)  # as write_dataset does
    image = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return replace(sample, image=image)


class SyntheticDraws(Dataset):
    """Draws of the synthetic generator as training items (item ``k`` is draw ``k``).

    Args:
        seed: the run's seed.
        size: the side of the square images (``data.synthetic_size``, else ``data.size``).
        transform: the real training set's transform (one object:
            :class:`~dermseg.data.sampling.SeededItems` reseeds it for every item).
        rare_only: draw only images holding streaks or negative network.
        crop_background, lesion_field, mean, std: as :class:`~dermseg.data.dataset.IsicDataset`.
        lesion_masks: append the drawn lesion as a last mask channel before the transform, for
            lesion-centred crops (``augment.lesion_crop``), as the real items do.
        weak: add ``weak`` and ``weak_presence`` (all zeros: no image-level label), for a training
            set with weak-labelled images (:class:`~dermseg.data.weak_dataset.MixedDataset`).

    Each item is an :class:`~dermseg.data.dataset.IsicDataset` item: ``image`` ``(3, h, w)``,
    ``masks`` ``(5, h, w)`` uint8, ``labelled`` ``(5,)`` all True, ``id`` ``synthetic_<k>``,
    ``crop``, ``size``.
    """

    def __init__(
        self,
        seed: int,
        size: int,
        transform: Callable[..., Any] | None = None,
        *,
        rare_only: bool = False,
        crop_background: bool = True,
        lesion_field: float | None = None,
        lesion_masks: bool = False,
        weak: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.seed, self.config, self.rare_only = seed, SynthConfig(size=size), rare_only
        self.transform = transform
        self.crop_background, self.lesion_field = crop_background, lesion_field
        self.lesion_masks = lesion_masks
        self.weak = weak
        self.mean, self.std = tuple(mean), tuple(std)

    def __len__(self) -> int:
        return MAX_DRAWS

    def __getitem__(self, k: int) -> dict[str, Any]:
        sample = draw_sample(self.seed, k, self.config, self.rare_only)
        masks = sample.masks
        if self.lesion_masks:
            masks = np.concatenate([masks, sample.lesion[None].astype(np.uint8)])
        lesion = sample.lesion if self.lesion_field is not None else None
        image, masks, box = crop_to_field(
            sample.image, masks, lesion, crop_background=self.crop_background, lesion_field=self.lesion_field
        )
        labelled = np.ones(NUM_ATTRIBUTES, dtype=bool)
        full = sample.image.shape[:2]
        item = make_item(
            f"synthetic_{k}", image, masks, labelled, box, full, self.transform, mean=self.mean, std=self.std
        )
        if self.weak:
            none = torch.zeros(NUM_ATTRIBUTES, dtype=torch.bool)
            item |= {"weak": none, "weak_presence": torch.zeros(NUM_ATTRIBUTES)}
        return item


class WithSyntheticDraws(Dataset):
    """Real training items (indices ``0 .. len(real) - 1``), then synthetic draws (``len(real) + k``).

    Args:
        real: the training set (with a ``transform`` attribute).
        draws: the synthetic draws; they must share ``real``'s transform object.

    Raises:
        ValueError: the two have different transforms.
    """

    def __init__(self, real: Any, draws: SyntheticDraws) -> None:
        if real.transform is not draws.transform:
            raise ValueError("the synthetic draws must share the real images' transform")
        self.real, self.draws = real, draws

    @property
    def transform(self) -> Callable[..., Any] | None:
        return self.real.transform

    def __len__(self) -> int:
        return len(self.real) + len(self.draws)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.real)
        return self.real[index] if index < n else self.draws[index - n]


__all__ = [
    "MAX_ATTEMPTS",
    "MAX_DRAWS",
    "MIX_STREAM",
    "RARE_ATTRIBUTES",
    "SyntheticDraws",
    "WithSyntheticDraws",
    "draw_sample",
]
