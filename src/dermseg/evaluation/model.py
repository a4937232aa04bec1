"""Evaluating and tuning a checkpoint on a dataset, at the images' original size.

Both follow the checkpoint's label set (:func:`dermseg.labels.label_set_of`; the segmenter's
``labels``, Task 2's when it has none) and its metric:

* ``isic2018_task2``: :func:`evaluate_checkpoint` runs the model once over the images and
  reports the official ISIC 2018 Task 2 scores of its masks (thresholds and post-processing as
  the checkpoint says), per-label pixel ROC AUC and average precision (streaming histograms:
  bounded memory) and image-level presence AUC. :func:`tune_checkpoint` picks per-label
  thresholds that maximise the official (pooled) Jaccard on the data given (a validation set,
  never the test set);
* ``isic2018_task1`` (a lesion): the official Task 1 scores (thresholded Jaccard, mean Jaccard,
  Dice, ...) and pixel AUC; the threshold is tuned for the **mean per-image Jaccard**
  (:class:`~dermseg.evaluation.tuning.Task1ThresholdTuner`), what training selects epochs on.

Tuning then measures what each configured post-processing step does to the tuned score, and
returns the settings to store in the checkpoint; :func:`tune_and_store` stores them (what the
end of training, ``dermseg tune`` and ``dermseg reproduce`` do).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dermseg.data.background import CropBox
from dermseg.data.imageio import Decoded, read_image, read_mask
from dermseg.data.layout import IsicSample, discover
from dermseg.data.lesion_box import lesion_box
from dermseg.data.shape_limits import naming
from dermseg.data.splits import split_from_config
from dermseg.errors import ConfigError, DataError
from dermseg.evaluation.metrics import IsicTask2Metric
from dermseg.evaluation.ranking import PresenceAUC, StreamingRanking
from dermseg.evaluation.task1 import IsicTask1Metric
from dermseg.evaluation.tuning import Task1ThresholdTuner, ThresholdTuner
from dermseg.inference.postprocess import PostprocessSettings, apply_postprocess
from dermseg.inference.segmenter import Segmenter, full_frame_field
from dermseg.labels import DEFAULT, LabelSet, label_set_of
from dermseg.models.checkpoint import update_checkpoint_meta

logger = logging.getLogger(__name__)


def select_samples(data_dir: str | Path, subset: str, meta: dict[str, Any]) -> list[IsicSample]:
    """The samples to score.

    Args:
        data_dir: dataset folder.
        subset: ``val`` (the validation split the checkpoint was selected on: the official
            validation folder, or the same stratified hold-out or fold as in training),
            ``validation`` or ``test`` (the official folder), or ``all`` (every image with masks).
        meta: the checkpoint's description: its label set (:func:`~dermseg.labels.label_set_of`)
            says how the folder is read, its config gives the split's fraction and seed.

    Raises:
        DataError: no labelled images in that subset, or a sample lacks masks.
        ConfigError: an unknown subset, or a bad label set in ``meta``.
    """
    labels = label_set_of(meta)
    layout = discover(data_dir, labels)
    if subset == "auto":
        subset = auto_subset(data_dir, labels)
    if subset == "all":
        samples = [s for split in layout.splits.values() if split.mask_dir is not None for s in split.samples]
    elif subset in ("test", "validation"):  # an official folder, as it is
        official = layout.splits.get(subset)
        samples = official.samples if official is not None and official.mask_dir is not None else []
    elif subset == "val":
        data = {**((meta.get("config") or {}).get("data") or {}), "labels": labels.to_meta()}
        split = split_from_config(data_dir, data)
        by_id = {s.isic_id: s for s in layout.samples}
        samples = [by_id[i] for i in split.val]
    else:
        raise ConfigError(f"--subset must be auto, val, validation, test or all, got {subset!r}")
    if not samples:
        raise DataError(f"no images with ground truth in the {subset!r} subset", Path(data_dir))
    for s in samples:
        if s.missing_labels:
            raise DataError(f"missing mask {s.mask_name(s.missing_labels[0])}", s.image_path)
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


def auto_subset(data_dir: str | Path, labels: LabelSet = DEFAULT) -> str:
    """``test`` when the official test ground truth is there, else ``val`` for the official
    layout, else ``all`` (a flat or PH2 folder is taken as the set to score); the folder read
    as ``labels`` says."""
    layout = discover(data_dir, labels)
    if layout.kind != "official":
        return "all"
    test = layout.splits.get("test")
    return "test" if test is not None and test.mask_dir is not None else "val"


def _predictions(
    segmenter: Segmenter,
    samples: list[IsicSample],
    progress: Callable[[int], None] | None,
    truth_boxes: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray, CropBox]]:
    """``(probabilities (C, H, W), truth (C, H, W) bool, field of view)`` per sample, at the
    original size; post-processing sizes scale with the field's short side.

    ``truth_boxes``: a model trained on lesion boxes (``data.field: lesion``) and given no lesion
    model sees each image's **ground-truth** lesion box with its training margin, as its
    validation did in training (for tuning its thresholds on labelled images at the scale it
    was trained at; never for scoring).
    """
    kind, margin = segmenter.trained_field
    truth_boxes = truth_boxes and kind == "lesion" and segmenter.lesion_field is None
    for sample in samples:
        boxed = truth_boxes and sample.lesion_mask_path is not None
        if boxed:  # the truth box is found at full scale, as before draft decoding
            image = read_image(sample.image_path)
            decoded = Decoded(image, (image.shape[0], image.shape[1]))
        else:  # as predict decodes it: a large JPEG at a reduced scale, as training decodes it
            decoded = segmenter.read(sample.image_path)
        h, w = decoded.size
        truth = np.stack([read_mask(p, expected_size=(w, h)) for p in sample.mask_paths])
        field = segmenter.field_of_view(decoded.pixels)
        if boxed:
            lesion = read_mask(sample.lesion_mask_path, expected_size=(w, h))
            field = lesion_box(lesion, margin or 0.0, within=field) or field
        with naming(sample.image_path):
            probs = segmenter.probabilities(decoded.pixels, field, size=decoded.size)
        yield probs, truth, full_frame_field(field, decoded)
        if progress is not None:
            progress(1)


def evaluate_checkpoint(
    segmenter: Segmenter,
    samples: list[IsicSample],
    progress: Callable[[int], None] | None = None,
    *,
    labels: LabelSet | None = None,
) -> dict[str, Any]:
    """Official scores of the segmenter's masks plus threshold-free ranking metrics.

    Args:
        segmenter: the checkpoint's segmenter
            (:meth:`~dermseg.inference.segmenter.Segmenter.from_checkpoint`).
        samples: the images, with masks of the label set.
        progress: called with the number of images done.
        labels: the label set (C labels); ``None``: the segmenter's (Task 2's when it has none).

    Returns:
        ``isic2018_task2``: the official keys (per label ``jaccard``/``dice``,
        ``micro_average``, ``overall``), ``mean_attribute_jaccard``, ``per_image_mean_jaccard``
        (the thesis's number, not official), ``pixel`` ({label: {auc, ap}}), ``presence``
        ({label: {auc, ap}}), ``images`` and ``images_with_attribute``.
        ``isic2018_task1``: the official Task 1 keys (``overall`` = mean thresholded Jaccard,
        ``validation``, ``macro_average`` with ``jaccard``, ``threshold_jaccard``, ``dice``,
        ``accuracy``, ``sensitivity``, ``specificity``), ``pixel`` and ``images``.
    """
    labels = labels or segmenter.labels
    n = labels.num_labels
    if labels.metric == "isic2018_task1":
        lesion = IsicTask1Metric()
        pixels = StreamingRanking(n, names=labels.names)
        predictions = _predictions(segmenter, samples, progress)
        for sample, (probs, truth, field) in zip(samples, predictions, strict=True):
            lesion.update(segmenter.binarise(probs, field)[0], truth[0], image_id=sample.isic_id)
            pixels.update(probs, truth)
        return {**lesion.compute(), "pixel": pixels.compute(), "images": lesion.num_images}
    metric = IsicTask2Metric(names=labels.names)
    ranking = StreamingRanking(n, names=labels.names)
    presence = PresenceAUC(n, names=labels.names)
    with_attribute = np.zeros(n, dtype=int)
    for probs, truth, field in _predictions(segmenter, samples, progress):
        metric.update(segmenter.binarise(probs, field)[None], truth[None])
        ranking.update(probs, truth)
        presence.update(probs, truth)
        with_attribute += truth.any(axis=(1, 2))
    return summarise_scores(metric, ranking, presence, with_attribute)


def summarise_scores(
    metric: IsicTask2Metric, ranking: StreamingRanking, presence: PresenceAUC, with_attribute: np.ndarray
) -> dict[str, Any]:
    """The Task 2 dict :func:`evaluate_checkpoint` returns, from its accumulators (also used by
    the report).

    Args:
        metric, ranking, presence: the accumulators, updated with every image.
        with_attribute: ``(C,)`` number of images whose ground truth holds each label.
    """
    names = metric.names
    scores = metric.compute()
    scores["mean_attribute_jaccard"] = float(np.mean([scores[a]["jaccard"] for a in names]))
    scores["per_image_mean_jaccard"] = metric.per_image_mean_jaccard()
    scores["pixel"] = ranking.compute()
    scores["presence"] = presence.compute()
    scores["images"] = metric.num_images
    scores["images_with_attribute"] = {a: int(n) for a, n in zip(names, with_attribute, strict=True)}
    return scores


def tune_checkpoint(
    segmenter: Segmenter,
    samples: list[IsicSample],
    progress: Callable[[int], None] | None = None,
    *,
    labels: LabelSet | None = None,
) -> dict[str, Any]:
    """Tune per-label thresholds for the label set's official metric and measure each
    post-processing step.

    Two passes over ``samples``: the first accumulates, for a grid of thresholds, the counts
    and picks the thresholds; the second scores, with those thresholds, the masks before and
    after each post-processing step the checkpoint configures (opening, small-component
    removal, presence gate), cumulatively.

    * ``isic2018_task2``: the official size-normalised counts pooled over images; thresholds
      per label, then coordinate ascent on the overall micro Jaccard.
    * ``isic2018_task1``: each image's raw counts; the threshold maximising the mean per-image
      Jaccard. ``overall_*``, ``steps`` and ``per_attribute_tuned`` are then that mean Jaccard
      (the tuned objective), and ``threshold_jaccard_at_default`` / ``threshold_jaccard_tuned``
      / ``dice_tuned`` the official Task 1 numbers beside it.

    A model trained on lesion boxes (``data.field: lesion``) and given no lesion model is tuned
    on each image's ground-truth lesion box, the scale it was trained and validated at (the
    tuning images' labels are what tuning uses anyway); with a lesion model, on its boxes.

    Args:
        segmenter: the checkpoint's segmenter.
        samples: validation images (never the test set).
        progress: called with the number of images done (once or twice per image).
        labels: the label set; ``None``: the segmenter's (Task 2's when it has none).

    Returns:
        ``thresholds`` (C,), ``overall_at_default`` (thresholds 0.5), ``overall_tuned``,
        ``per_attribute_tuned``, ``curves`` ({label: [(threshold, score), ...]}), ``steps``
        (list of ``{step, overall}``), ``settings`` (the tuned post-processing, C values per
        field), ``images`` and ``objective`` (what was maximised).
    """
    labels = labels or segmenter.labels
    if labels.metric == "isic2018_task1":
        return _tune_task1(segmenter, samples, progress, labels)
    tuner = ThresholdTuner(names=labels.names)
    for probs, truth, _ in _predictions(segmenter, samples, progress, truth_boxes=True):
        tuner.update(probs, truth)
    tuned = tuner.best_overall()
    configured = segmenter.postprocess.to_dict()
    variants = _variants(configured, [float(t) for t in tuned])
    if len(variants) > 1:
        metrics = [IsicTask2Metric(names=labels.names) for _ in variants]
        for probs, truth, field in _predictions(segmenter, samples, progress, truth_boxes=True):
            for (_, settings), metric in zip(variants, metrics, strict=True):
                metric.update(_variant_masks(segmenter, probs, settings, field)[None], truth[None])
        steps = [
            {"step": name, "overall": m.compute()["overall"]}
            for (name, _), m in zip(variants, metrics, strict=True)
        ]
    else:
        steps = [{"step": variants[0][0], "overall": tuner.overall_at(tuned)}]
    return {
        "thresholds": [float(t) for t in tuned],
        "overall_at_default": tuner.overall_at([0.5] * labels.num_labels),
        "overall_tuned": tuner.overall_at(tuned),
        "per_attribute_tuned": {a: tuner.scores_at(tuned)[a]["jaccard"] for a in labels.names},
        "curves": tuner.curves(),
        "steps": steps,
        "settings": {**configured, "thresholds": [float(t) for t in tuned]},
        "images": tuner.num_images,
        "objective": "official Task 2 Jaccard (pooled over images)",
    }


def _variant_masks(
    segmenter: Segmenter, probs: np.ndarray, settings: dict[str, list[Any]], field: CropBox
) -> np.ndarray:
    """``(C, H, W)`` bool masks of ``probs`` under a variant of the segmenter's post-processing, its
    sizes scaled to the short side of the field the network saw (not the whole image's)."""
    fixed = PostprocessSettings.from_dict(settings).rescaled(
        segmenter.postprocess_side, min(field.height, field.width)
    )
    return apply_postprocess(probs, fixed)


def _variants(configured: dict[str, list[Any]], tuned: list[float]) -> list[tuple[str, dict[str, list[Any]]]]:
    """The tuned thresholds alone, then each post-processing step the checkpoint configures added
    in turn (cumulatively)."""
    n = len(tuned)
    current: dict[str, list[Any]] = {"thresholds": tuned, "opening": [0] * n, "min_area": [0] * n}
    current["presence"] = [0.0] * n
    variants = [("thresholds only", current)]
    for step, name, off in (
        ("+ opening", "opening", [0] * n),
        ("+ small-component removal", "min_area", [0] * n),
        ("+ presence gate", "presence", [0.0] * n),
    ):
        value = list(configured[name])
        if value != off:
            current = {**current, name: value}
            variants.append((step, current))
    return variants


def _tune_task1(
    segmenter: Segmenter,
    samples: list[IsicSample],
    progress: Callable[[int], None] | None,
    labels: LabelSet,
) -> dict[str, Any]:
    """:func:`tune_checkpoint` for a lesion (metric ``isic2018_task1``): the threshold of the best
    mean per-image Jaccard."""
    tuner = Task1ThresholdTuner()
    for probs, truth, _ in _predictions(segmenter, samples, progress, truth_boxes=True):
        tuner.update(probs[0], truth[0])
    tuned = tuner.best()
    default = float(tuner.thresholds[np.argmin(np.abs(tuner.thresholds - 0.5))])  # 0.5 on the default grid
    at_default, at_tuned = tuner.scores_at(default), tuner.scores_at(tuned)
    configured = segmenter.postprocess.to_dict()
    variants = _variants(configured, [tuned])
    if len(variants) > 1:
        metrics = [IsicTask1Metric() for _ in variants]
        for probs, truth, field in _predictions(segmenter, samples, progress, truth_boxes=True):
            for (_, settings), metric in zip(variants, metrics, strict=True):
                metric.update(_variant_masks(segmenter, probs, settings, field)[0], truth[0])
        steps = [
            {"step": name, "overall": m.compute()["macro_average"]["jaccard"]}
            for (name, _), m in zip(variants, metrics, strict=True)
        ]
    else:
        steps = [{"step": variants[0][0], "overall": at_tuned["macro_average"]["jaccard"]}]
    name = labels.names[0]
    return {
        "thresholds": [tuned],
        "overall_at_default": at_default["macro_average"]["jaccard"],
        "overall_tuned": at_tuned["macro_average"]["jaccard"],
        "threshold_jaccard_at_default": at_default["overall"],
        "threshold_jaccard_tuned": at_tuned["overall"],
        "dice_tuned": at_tuned["macro_average"]["dice"],
        "per_attribute_tuned": {name: at_tuned["macro_average"]["jaccard"]},
        "curves": {name: tuner.curve()},
        "steps": steps,
        "settings": {**configured, "thresholds": [tuned]},
        "images": tuner.num_images,
        "objective": "mean per-image Jaccard (ISIC 2018 Task 1)",
    }


def tune_and_store(
    segmenter: Segmenter,
    checkpoint: str | Path,
    samples: list[IsicSample],
    *,
    subset: str = "val",
    out: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    labels: LabelSet | None = None,
) -> tuple[dict[str, Any], Path]:
    """Tune a checkpoint's thresholds (:func:`tune_checkpoint`) and store them in the checkpoint.

    The checkpoint then holds the tuned ``postprocess`` settings and ``thresholds``, which
    prediction uses by default, and a ``tuning`` record: ``overall_at_default``,
    ``overall_tuned``, ``steps``, ``images``, the ``subset`` tuned on and whether flip TTA was
    on (``tta``; prediction then uses the same setting by default); for a lesion (Task 1 metric)
    also ``objective`` (the mean per-image Jaccard) and the official ``threshold_jaccard_*``.

    Args:
        segmenter: the checkpoint's segmenter, with flip TTA on or off as the tuning should be.
        checkpoint: the checkpoint file ``segmenter`` was built from.
        samples: the images to tune on: validation images, never the test set
            (:func:`tuning_samples`).
        subset: what ``samples`` are (``val`` or ``validation``), recorded.
        out: where to write the tuned checkpoint; ``None`` replaces ``checkpoint`` (atomically).
        progress: called with the number of images done, twice per image when the checkpoint
            configures post-processing steps beyond the thresholds.
        labels: the label set; ``None``: the segmenter's (Task 2's when it has none).

    Returns:
        The report of :func:`tune_checkpoint` and the path written.
    """
    labels = labels or segmenter.labels
    report = tune_checkpoint(segmenter, samples, progress, labels=labels)
    keys = ["overall_at_default", "overall_tuned", "steps", "images"]
    if labels.metric == "isic2018_task1":
        keys += ["objective", "threshold_jaccard_at_default", "threshold_jaccard_tuned"]
    tuning = {k: report[k] for k in keys}
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
        "tuned thresholds %s: %s %.4f -> %.4f on %s",
        report["thresholds"],
        report["objective"],
        report["overall_at_default"],
        report["overall_tuned"],
        subset,
    )
    return report, target
