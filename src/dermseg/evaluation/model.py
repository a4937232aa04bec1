"""Evaluating and tuning a checkpoint on a dataset, at the images' original size.

:func:`evaluate_checkpoint` runs the model once over the images and reports the
official ISIC 2018 Task 2 scores of its masks (thresholds and post-processing as
the checkpoint says), per-attribute pixel ROC AUC and average precision
(streaming histograms: bounded memory) and image-level presence AUC.

:func:`tune_checkpoint` picks per-attribute thresholds that maximise the
official Jaccard on the data given (a validation set, never the test set), then
measures what each configured post-processing step does to the official score,
and returns the settings to store in the checkpoint; :func:`tune_and_store` stores
them (what the end of training, ``dermseg tune`` and ``dermseg reproduce`` do).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from dermseg.attributes import ATTRIBUTES
from dermseg.data.background import CropBox
from dermseg.data.imageio import read_image, read_mask
from dermseg.data.layout import IsicSample, discover
from dermseg.data.splits import split_from_config
from dermseg.errors import ConfigError, DataError
from dermseg.evaluation.metrics import IsicTask2Metric
from dermseg.evaluation.ranking import PresenceAUC, StreamingRanking
from dermseg.evaluation.tuning import ThresholdTuner
from dermseg.inference.postprocess import PostprocessSettings, apply_postprocess
from dermseg.inference.segmenter import Segmenter
from dermseg.models.checkpoint import update_checkpoint_meta

logger = logging.getLogger(__name__)


def select_samples(data_dir: str | Path, subset: str, meta: dict[str, Any]) -> list[IsicSample]:
    """The samples to score.

    Args:
        data_dir: dataset folder.
        subset: ``val`` (the validation split the checkpoint was selected on: the official
            validation folder, or the same stratified hold-out or fold as in training),
            ``validation`` or ``test`` (the official folder), or ``all`` (every image with masks).
        meta: the checkpoint's description (its config gives the split's fraction and seed).

    Raises:
        DataError: no labelled images in that subset, or a sample lacks masks.
    """
    layout = discover(data_dir)
    if subset == "auto":
        subset = auto_subset(data_dir)
    if subset == "all":
        samples = [s for split in layout.splits.values() if split.mask_dir is not None for s in split.samples]
    elif subset in ("test", "validation"):  # an official folder, as it is
        official = layout.splits.get(subset)
        samples = official.samples if official is not None and official.mask_dir is not None else []
    elif subset == "val":
        split = split_from_config(data_dir, (meta.get("config") or {}).get("data", {}))
        by_id = {s.isic_id: s for s in layout.samples}
        samples = [by_id[i] for i in split.val]
    else:
        raise ConfigError(f"--subset must be auto, val, validation, test or all, got {subset!r}")
    if not samples:
        raise DataError(f"no images with ground truth in the {subset!r} subset", Path(data_dir))
    for s in samples:
        if s.missing_attributes:
            raise DataError(f"missing mask {s.isic_id}_attribute_{s.missing_attributes[0]}.png", s.image_path)
    return samples


#: What thresholds may be tuned on: ``val`` (the checkpoint's own selection split) and
#: ``validation`` (the official validation folder). Never ``test`` (it would leak into the test
#: score) nor ``all`` (the test images, and the training images whose probabilities are overfit).
TUNE_SUBSETS: tuple[str, ...] = ("val", "validation")


def tuning_samples(data_dir: str | Path, subset: str, meta: dict[str, Any]) -> list[IsicSample]:
    """The samples thresholds are tuned on: :func:`select_samples` restricted to :data:`TUNE_SUBSETS`.

    Raises:
        ConfigError: ``subset`` is not in :data:`TUNE_SUBSETS` (``test``, ``all``, ``auto``, ...).
        DataError: as :func:`select_samples`.
    """
    if subset not in TUNE_SUBSETS:
        why = {
            "test": "tuning on the test set would leak it into the score",
            "all": "all holds the test images and the training images, whose probabilities are overfit",
        }.get(subset, f"got {subset!r}")
        raise ConfigError(
            f"--subset must be val (the checkpoint's own hold-out) or validation (the official "
            f"validation folder): {why}"
        )
    return select_samples(data_dir, subset, meta)


def auto_subset(data_dir: str | Path) -> str:
    """``test`` when the official test ground truth is there, else ``val`` for the official
    layout, else ``all`` (a flat folder is taken as the set to score)."""
    layout = discover(data_dir)
    if layout.kind != "official":
        return "all"
    test = layout.splits.get("test")
    return "test" if test is not None and test.mask_dir is not None else "val"


def _predictions(
    segmenter: Segmenter, samples: list[IsicSample], progress: Callable[[int], None] | None
) -> Iterator[tuple[np.ndarray, np.ndarray, CropBox]]:
    """``(probabilities (5, H, W), truth (5, H, W) bool, field of view)`` per sample, at the
    original size; post-processing sizes scale with the field's short side."""
    for sample in samples:
        image = read_image(sample.image_path)
        h, w = image.shape[:2]
        truth = np.stack([read_mask(p, expected_size=(w, h)) for p in sample.mask_paths])
        field = segmenter.field_of_view(image)
        yield segmenter.probabilities(image, field), truth, field
        if progress is not None:
            progress(1)


def evaluate_checkpoint(
    segmenter: Segmenter, samples: list[IsicSample], progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Official scores of the segmenter's masks plus threshold-free ranking metrics.

    Returns:
        The official keys (per attribute ``jaccard``/``dice``, ``micro_average``, ``overall``),
        ``mean_attribute_jaccard``, ``per_image_mean_jaccard`` (the thesis's number, not
        official), ``pixel`` ({attribute: {auc, ap}}), ``presence`` ({attribute: {auc, ap}}),
        ``images`` and ``images_with_attribute``.
    """
    metric = IsicTask2Metric()
    ranking = StreamingRanking()
    presence = PresenceAUC()
    with_attribute = np.zeros(len(ATTRIBUTES), dtype=int)
    for probs, truth, field in _predictions(segmenter, samples, progress):
        metric.update(segmenter.binarise(probs, field)[None], truth[None])
        ranking.update(probs, truth)
        presence.update(probs, truth)
        with_attribute += truth.any(axis=(1, 2))
    return summarise_scores(metric, ranking, presence, with_attribute)


def summarise_scores(
    metric: IsicTask2Metric, ranking: StreamingRanking, presence: PresenceAUC, with_attribute: np.ndarray
) -> dict[str, Any]:
    """The dict :func:`evaluate_checkpoint` returns, from its accumulators (also used by the report).

    Args:
        metric, ranking, presence: the accumulators, updated with every image.
        with_attribute: ``(5,)`` number of images whose ground truth holds each attribute.
    """
    scores = metric.compute()
    scores["mean_attribute_jaccard"] = float(np.mean([scores[a]["jaccard"] for a in ATTRIBUTES]))
    scores["per_image_mean_jaccard"] = metric.per_image_mean_jaccard()
    scores["pixel"] = ranking.compute()
    scores["presence"] = presence.compute()
    scores["images"] = metric.num_images
    scores["images_with_attribute"] = {a: int(n) for a, n in zip(ATTRIBUTES, with_attribute, strict=True)}
    return scores


def tune_checkpoint(
    segmenter: Segmenter, samples: list[IsicSample], progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Tune per-attribute thresholds for the official Jaccard and measure each post-processing step.

    Two passes over ``samples``: the first accumulates, for a grid of thresholds, the official
    size-normalised counts and picks the thresholds (per attribute, then coordinate ascent on
    the overall micro Jaccard); the second scores, with those thresholds, the masks before and
    after each post-processing step the checkpoint configures (opening, small-component
    removal, presence gate), cumulatively.

    Returns:
        ``thresholds`` (5,), ``overall_at_default`` (thresholds 0.5), ``overall_tuned``,
        ``curves`` ({attribute: [(threshold, jaccard), ...]}), ``steps`` (list of
        ``{step, overall}``) and ``settings`` (the tuned :class:`PostprocessSettings` as a dict).
    """
    tuner = ThresholdTuner()
    for probs, truth, _ in _predictions(segmenter, samples, progress):
        tuner.update(probs, truth)
    tuned = tuner.best_overall()
    configured = segmenter.postprocess
    variants: list[tuple[str, PostprocessSettings]] = [
        ("thresholds only", PostprocessSettings(thresholds=tuned))
    ]
    zero = [0] * len(ATTRIBUTES)
    current = variants[0][1]
    for step, field_name, off in (
        ("+ opening", "opening", zero),
        ("+ small-component removal", "min_area", zero),
        ("+ presence gate", "presence", [0.0] * len(ATTRIBUTES)),
    ):
        value = list(getattr(configured, field_name))
        if value != off:
            current = replace(current, **{field_name: tuple(value)})
            variants.append((step, current))
    metrics = [IsicTask2Metric() for _ in variants]
    if len(variants) > 1:
        for probs, truth, field in _predictions(segmenter, samples, progress):
            side = min(field.height, field.width)  # the field the network saw, not the whole image
            for (_, settings), metric in zip(variants, metrics, strict=True):
                masks = apply_postprocess(probs, settings.rescaled(segmenter.postprocess_side, side))
                metric.update(masks[None], truth[None])
        steps = [
            {"step": name, "overall": m.compute()["overall"]}
            for (name, _), m in zip(variants, metrics, strict=True)
        ]
    else:
        steps = [{"step": variants[0][0], "overall": tuner.overall_at(tuned)}]
    return {
        "thresholds": [float(t) for t in tuned],
        "overall_at_default": tuner.overall_at([0.5] * len(ATTRIBUTES)),
        "overall_tuned": tuner.overall_at(tuned),
        "per_attribute_tuned": {a: tuner.scores_at(tuned)[a]["jaccard"] for a in ATTRIBUTES},
        "curves": tuner.curves(),
        "steps": steps,
        "settings": replace(configured, thresholds=tuple(float(t) for t in tuned)).to_dict(),
        "images": tuner.num_images,
    }


def tune_and_store(
    segmenter: Segmenter,
    checkpoint: str | Path,
    samples: list[IsicSample],
    *,
    subset: str = "val",
    out: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Tune a checkpoint's thresholds (:func:`tune_checkpoint`) and store them in the checkpoint.

    The checkpoint then holds the tuned ``postprocess`` settings and ``thresholds``, which
    prediction uses by default, and a ``tuning`` record: ``overall_at_default``,
    ``overall_tuned``, ``steps``, ``images``, the ``subset`` tuned on and whether flip TTA was
    on (``tta``; prediction then uses the same setting by default).

    Args:
        segmenter: the checkpoint's segmenter, with flip TTA on or off as the tuning should be.
        checkpoint: the checkpoint file ``segmenter`` was built from.
        samples: the images to tune on: validation images, never the test set
            (:func:`tuning_samples`).
        subset: what ``samples`` are (``val`` or ``validation``), recorded.
        out: where to write the tuned checkpoint; ``None`` replaces ``checkpoint`` (atomically).
        progress: called with the number of images done, twice per image when the checkpoint
            configures post-processing steps beyond the thresholds.

    Returns:
        The report of :func:`tune_checkpoint` and the path written.
    """
    report = tune_checkpoint(segmenter, samples, progress)
    tuning = {k: report[k] for k in ("overall_at_default", "overall_tuned", "steps", "images")}
    target = update_checkpoint_meta(
        checkpoint,
        {
            "postprocess": report["settings"],
            "thresholds": report["thresholds"],
            "tuning": tuning | {"subset": subset, "tta": segmenter.tta},
        },
        out,
    )
    logger.info(
        "tuned thresholds %s: official Jaccard %.4f -> %.4f on %s",
        report["thresholds"],
        report["overall_at_default"],
        report["overall_tuned"],
        subset,
    )
    return report, target
