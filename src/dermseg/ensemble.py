"""Ensembles: average the attribute probabilities of several models (e.g. k-fold models).

The 2018 winner was an ensemble; dermseg's headline stays a single model, but users who
train k folds (``data.folds``/``data.fold``) can predict with all of them:
``dermseg predict --checkpoint fold0.safetensors --checkpoint fold1.safetensors ...``.
Each member segments the same resized image; their ``(B, 5, H, W)`` probabilities are
averaged, and the masks are cut at the mean of the members' tuned thresholds. Flip TTA
defaults to how the members' thresholds were tuned, which must then be the same for all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dermseg.errors import ConfigError, DataError
from dermseg.predict import Segmenter


class EnsembleNet:
    """Calls each member's network and averages their probabilities.

    Args:
        members: segmenters sharing input size, normalisation and background cropping.
    """

    def __init__(self, members: Sequence[Segmenter]) -> None:
        self.members = list(members)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised images -> ``(B, 5, H, W)`` mean probabilities."""
        total = None
        for member in self.members:
            probs = member.network_probabilities(x)
            total = probs if total is None else total + probs
        assert total is not None
        return total / len(self.members)


def ensemble_segmenter(
    paths: Sequence[str | Path],
    backend: str | None = None,
    device: str = "cpu",
    tta: bool | None = None,
) -> Segmenter:
    """A segmenter averaging the models in ``paths`` (one path gives that model alone).

    Args:
        paths: the members' checkpoints or ONNX exports.
        backend, device: as for :meth:`Segmenter.from_path`.
        tta: flip test-time augmentation; ``None`` (default): as the members' thresholds were
            tuned (off when none was tuned).

    Raises:
        ConfigError: the models disagree on input size, normalisation or background cropping
            (they would need different inputs), or no path is given.
        DataError: a file is not a usable model, or ``tta`` is ``None`` and the members'
            thresholds were tuned with and without flip TTA (the message names a member).
    """
    if not paths:
        raise ConfigError("give at least one --checkpoint")
    members = [Segmenter.from_path(p, backend=backend, device=device, tta=tta) for p in paths]
    first = members[0]
    if len(members) == 1:
        return first
    tuned = _common_tuned_tta(paths, members, overridden=tta is not None)
    for path, m in zip(paths[1:], members[1:], strict=True):
        same = (m.input_size, m.mean, m.std, m.crop_background) == (
            first.input_size,
            first.mean,
            first.std,
            first.crop_background,
        )
        if not same:
            raise ConfigError(
                "ensemble members must share input size, normalisation and background cropping "
                f"(input size {m.input_size} vs {first.input_size})",
                Path(path),
            )
    thresholds = np.mean([m.postprocess.thresholds for m in members], axis=0)
    postprocess = replace(first.postprocess, thresholds=tuple(float(t) for t in thresholds))
    return replace(first, model=EnsembleNet(members), postprocess=postprocess, tuned_tta=tuned)


def _common_tuned_tta(paths: Sequence[str | Path], members: list[Segmenter], overridden: bool) -> bool | None:
    """The flip-TTA setting all members' thresholds were tuned with (``None``: none was tuned).

    Raises:
        DataError: not ``overridden`` and members were tuned with different settings.
    """
    settings = [bool(m.tuned_tta) for m in members]  # untuned thresholds default to no TTA
    if all(m.tuned_tta is None for m in members):
        return None
    for path, setting in zip(paths, settings, strict=True):
        if setting != settings[0]:
            if overridden:
                return None
            raise DataError(
                f"its thresholds were tuned with flip TTA {'on' if setting else 'off'} but those of "
                f"{Path(paths[0]).name} with it {'on' if settings[0] else 'off'}; "
                "give --tta or --no-tta to choose",
                Path(path),
            )
    return settings[0]
