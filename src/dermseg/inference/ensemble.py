"""Ensembles: average the label probabilities of several models (e.g. k-fold models).

The 2018 winner was an ensemble; dermseg's headline stays a single model, but users who
train k folds (``data.folds``/``data.fold``) can predict with all of them:
``dermseg predict --checkpoint fold0.safetensors --checkpoint fold1.safetensors ...``.
Each member segments the same resized image; their ``(B, C, H, W)`` probabilities are
averaged, and the masks are cut at the mean of the members' tuned thresholds. Flip TTA
defaults to how the members' thresholds were tuned, which must then be the same for all.
Members must segment the same label set (:mod:`dermseg.labels`): a lesion model does not
average with a Task 2 one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dermseg.errors import ConfigError, DataError
from dermseg.inference.segmenter import Segmenter, same_label_set


class EnsembleNet:
    """Calls each member's network and averages their probabilities.

    Args:
        members: segmenters sharing input size, normalisation and background cropping.
    """

    def __init__(self, members: Sequence[Segmenter]) -> None:
        self.members = list(members)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised images -> ``(B, C, H, W)`` mean probabilities."""
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
    threads: int | None = None,
) -> Segmenter:
    """A segmenter averaging the models in ``paths`` (one path gives that model alone).

    Args:
        paths: the members' checkpoints or ONNX exports.
        backend, device, threads: as for :meth:`Segmenter.from_path`.
        tta: flip test-time augmentation; ``None`` (default): as the members' thresholds were
            tuned (off when none was tuned).

    Raises:
        ConfigError: the models disagree on input size, normalisation, background cropping or
            training field (they would need different inputs), or no path is given.
        DataError: a file is not a usable model; a member segments another label set than the
            first (named); ``tta`` is ``None`` and the members'
            thresholds were tuned with and without flip TTA (the message names a member); or the
            members' post-processing (opening, small-component removal, presence gate) differs
            (:func:`require_same_postprocessing`).
    """
    if not paths:
        raise ConfigError("give at least one --checkpoint")
    members = [
        Segmenter.from_path(p, backend=backend, device=device, tta=tta, threads=threads) for p in paths
    ]
    first = members[0]
    if len(members) == 1:
        return first
    require_same_label_set(paths, members)
    tuned = _common_tuned_tta(paths, members, overridden=tta is not None)
    for path, m in zip(paths[1:], members[1:], strict=True):
        same = (m.input_size, m.mean, m.std, m.crop_background, m.trained_field) == (
            first.input_size,
            first.mean,
            first.std,
            first.crop_background,
            first.trained_field,
        )
        if not same:
            raise ConfigError(
                "ensemble members must share input size, normalisation and background cropping "
                f"({_input_difference(m, first, paths[0])})",
                Path(path),
            )
    require_same_postprocessing(paths, members)
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


def _input_difference(member: Segmenter, first: Segmenter, first_path: str | Path) -> str:
    """The first input setting ``member`` differs in from ``first``, both values, e.g.
    ``normalisation mean [0.5, 0.5, 0.5] here but [0.485, 0.456, 0.406] in fold0.safetensors``."""
    name = Path(first_path).name
    for label, mine, theirs in (
        ("input size", member.input_size, first.input_size),
        ("normalisation mean", list(member.mean), list(first.mean)),
        ("normalisation std", list(member.std), list(first.std)),
        ("background cropping", member.crop_background, first.crop_background),
        ("training field", member.trained_field, first.trained_field),
    ):
        if mine != theirs:
            return f"{label} {mine} here but {theirs} in {name}"
    return "they differ"


def require_same_label_set(paths: Sequence[str | Path], members: Sequence[Segmenter]) -> None:
    """Check that every member segments the label set of the first.

    Args:
        paths: the members' files, in the order of ``members`` (named in the error).
        members: the members' segmenters.

    Raises:
        DataError: a member's label set differs, e.g. ``b.safetensors: ensemble members must
            segment the same label set: ph2 (lesion) here but isic2018_task2 (globules, ...) in
            a.safetensors``.
    """
    first = members[0].labels
    for path, m in zip(paths[1:], members[1:], strict=True):
        if not same_label_set(m.labels, first):
            raise DataError(
                f"ensemble members must segment the same label set: {m.labels.name} "
                f"({', '.join(m.labels.names)}) here but {first.name} ({', '.join(first.names)}) in "
                f"{Path(paths[0]).name}",
                Path(path),
            )


def require_same_postprocessing(paths: Sequence[str | Path], members: Sequence[Segmenter]) -> None:
    """Check that every member post-processes its masks as the first one does.

    An ensemble turns its averaged probabilities into masks once, with one post-processing: the
    members' thresholds are averaged (each was tuned for its own model), while the opening
    kernels, minimum component areas and presence gates, which are settings of the recipe, must
    be the same in every member (and, where there are sizes, the side they are given for).

    Args:
        paths: the members' files, in the order of ``members`` (named in the error).
        members: the members' segmenters.

    Raises:
        DataError: a member differs from the first; the message names it, the setting, and both
            values.
    """
    first = members[0]
    reference = Path(paths[0]).name
    for path, m in zip(paths[1:], members[1:], strict=True):
        for label, field_name in (
            ("opening", "opening"),
            ("small-component removal (min_area)", "min_area"),
            ("presence gate", "presence"),
        ):
            mine, theirs = (
                list(getattr(m.postprocess, field_name)),
                list(getattr(first.postprocess, field_name)),
            )
            if mine != theirs:
                raise DataError(
                    f"ensemble members must post-process alike: {label} {mine} here but {theirs} in "
                    f"{reference}",
                    Path(path),
                )
        sized = any(m.postprocess.opening) or any(m.postprocess.min_area)
        if sized and m.postprocess_side != first.postprocess_side:
            raise DataError(
                "ensemble members must post-process alike: post-processing sizes given for side "
                f"{m.postprocess_side} here but {first.postprocess_side} in {reference}",
                Path(path),
            )
