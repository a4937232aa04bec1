"""The main job on the embedded default: synthesise, train, evaluate, predict, show.

``run_demo`` (``dermseg demo``) writes into one folder::

    data/           synthetic training, validation and held-out test sets (official layout)
    run/            the training run (config, metrics.jsonl, curves.png, checkpoints/)
    predictions/    test-set masks in ISIC submission format
    overlays/       image | ground truth | prediction, for a few test images
    summary.json    the official scores of the trained model and of the baselines

``run_lesion_demo`` (``dermseg demo --task lesion --data PH2_DIR``) does the same on real
images: the PH2 folder is split once, stratified on the diagnosis, into training and held-out
images; a lesion model is trained on the training side (the shipped ``lesion`` recipe, which
selects its epoch and tunes its threshold on an inner hold-out), the held-out images' lesion
masks are predicted at their own size and scored with the official ISIC 2018 Task 1 metric::

    data/train/, data/test/   the two sides of the split (PH2 flat form, links to the images)
    run/                      the training run, with its report.html
    predictions/              IMDxxx_lesion.png of the held-out images, at their size
    overlays/                 image | ground truth | prediction, for a few held-out images
    summary.json              the official Task 1 scores, the split and the paths
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermseg.attributes import ATTRIBUTES
from dermseg.config import Config
from dermseg.data.imageio import image_size, read_image, read_mask
from dermseg.data.layout import discover
from dermseg.data.ph2 import COLOURS, DIAGNOSES, Ph2Sample, is_ph2, read_ph2
from dermseg.data.splits import Split, split_layout
from dermseg.data.synthetic import write_dataset
from dermseg.errors import DataError
from dermseg.evaluation.metrics import IsicTask2Metric
from dermseg.files import atomic_path
from dermseg.inference.overlay import overlay, side_by_side, with_legend
from dermseg.inference.segmenter import Segmenter, write_submission_masks
from dermseg.labels import PH2
from dermseg.models.checkpoint import load_checkpoint
from dermseg.training.loop import Callbacks, train
from dermseg.training.setup import build_model, checkpoint_meta

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSizes:
    """How much synthetic data the demo makes."""

    train: int = 240
    val: int = 40
    test: int = 40
    image_size: int = 256
    overlays: int = 6


def score_segmenter(segmenter: Segmenter | None, samples: list, progress: Any = None) -> dict[str, Any]:
    """Official ISIC Task 2 scores of ``segmenter`` on samples at their original size.

    ``segmenter=None`` scores the empty prediction (every mask empty).
    """
    metric = IsicTask2Metric()
    for sample in samples:
        w, h = image_size(sample.image_path)
        truth = np.stack([read_mask(p, expected_size=(w, h)) for p in sample.mask_paths])
        pred = np.zeros_like(truth) if segmenter is None else segmenter(sample.image_path).masks
        metric.update(pred[None], truth[None])
        if progress is not None:
            progress(1)
    return metric.compute()


def run_demo(
    out: str | Path,
    cfg: Config,
    sizes: DemoSizes = DemoSizes(),
    callbacks: Callbacks | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Synthesise data, train ``cfg`` on it, evaluate on a held-out test set, predict, draw overlays.

    Args:
        out: output folder (created).
        cfg: the training config (``configs/demo.yaml`` by default in the CLI).
        sizes: dataset sizes.
        callbacks: training progress reporting.
        seed: seed of the synthetic data.

    Returns:
        The summary written to ``out/summary.json``: official scores of the trained
        model, of the same model before training, and of the empty prediction.
    """
    out = Path(out)
    data = out / "data"
    started = time.monotonic()
    write_dataset(data, sizes.train, size=sizes.image_size, seed=seed, split="training")
    write_dataset(data, sizes.val, size=sizes.image_size, seed=seed, split="validation", start_id=sizes.train)
    write_dataset(
        data, sizes.test, size=sizes.image_size, seed=seed, split="test", start_id=sizes.train + sizes.val
    )
    test_samples = discover(data).splits["test"].samples
    meta = checkpoint_meta(cfg)
    # The untrained baseline: the same network as training starts it (pretrained encoder, random decoder).
    import torch

    torch.manual_seed(cfg.seed)
    untrained = Segmenter.from_model(build_model(cfg), meta)
    baseline = score_segmenter(untrained, test_samples)
    empty = score_segmenter(None, test_samples)

    run = out / "run"
    cfg.data.root = str(Path(data).resolve())  # recorded in the run, so `dermseg report` finds the data
    result = train(cfg, data, run, callbacks=callbacks)
    ckpt_path = run / "checkpoints" / "best.safetensors"
    segmenter = Segmenter.from_checkpoint(ckpt_path)
    trained = score_segmenter(segmenter, test_samples)

    pred_dir, overlay_dir = out / "predictions", out / "overlays"
    overlay_dir.mkdir(parents=True, exist_ok=True)
    for k, sample in enumerate(test_samples):
        masks = segmenter(sample.image_path).masks  # read as predict reads it
        write_submission_masks(pred_dir, sample.isic_id, masks)
        if k < sizes.overlays:
            image = read_image(sample.image_path)
            h, w = image.shape[:2]
            truth = np.stack([read_mask(p, expected_size=(w, h)) for p in sample.mask_paths])
            panel = side_by_side(image, overlay(image, truth), overlay(image, masks))
            with atomic_path(overlay_dir / f"{sample.isic_id}_overlay.png") as tmp:
                Image.fromarray(panel).save(tmp, format="PNG")

    from dermseg.report import write_report

    report = write_report(run, data=data)
    summary = {
        "official_jaccard": {
            "trained": trained["overall"],
            "untrained": baseline["overall"],
            "empty_prediction": empty["overall"],
        },
        "per_attribute_jaccard_trained": {a: trained[a]["jaccard"] for a in ATTRIBUTES},
        "scores_trained": trained,
        "test_images": len(test_samples),
        "training": {k: v for k, v in result.items() if k != "jaccard_per_attribute"},
        "checkpoint": str(ckpt_path),
        "checkpoint_epoch": load_checkpoint(ckpt_path).meta.get("epoch"),
        "encoder": cfg.model.encoder_name,
        "wall_time_s": time.monotonic() - started,
        "paths": {
            "data": str(data),
            "run": str(run),
            "curves": str(run / "curves.png"),
            "report": str(report),
            "predictions": str(pred_dir),
            "overlays": str(overlay_dir),
        },
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary


# --------------------------------------------------------------------------- lesion demo (PH2)

#: Share of the PH2 images held out for the scores (stratified on the diagnosis).
LESION_TEST_FRACTION = 0.3


#: Columns of the flat form's ``labels.csv`` (as in the shared PH2 sample).
_CRITERIA_COLUMNS: tuple[str, ...] = (
    "image",
    "histological_diagnosis",
    *DIAGNOSES,
    "asymmetry",
    "pigment_network",
    "dots_globules",
    "streaks",
    "regression_areas",
    "blue_whitish_veil",
    *COLOURS,
)


def _criteria_row(image_id: str, sample: Ph2Sample) -> list[str]:
    """One ``labels.csv`` row: diagnoses and colours marked X, criteria in the reader's words."""
    c = sample.criteria
    return [
        image_id,
        sample.histological_diagnosis or "",
        *("X" if sample.diagnosis == d else "" for d in DIAGNOSES),
        str(c["asymmetry"]),
        c["pigment_network"],
        c["dots_globules"],
        c["streaks"],
        c["regression_areas"],
        c["blue_whitish_veil"],
        *("X" if colour in c["colours"] else "" for colour in COLOURS),
    ]


def _place(source: Path, target: Path) -> None:
    """``target`` pointing at ``source`` (a symbolic link; a copy where links are not allowed)."""
    try:
        os.symlink(source.resolve(), target)
    except OSError:
        shutil.copy2(source, target)


def split_ph2(
    data: str | Path, out: str | Path, test_fraction: float = LESION_TEST_FRACTION, seed: int = 0
) -> tuple[Split, Path, Path]:
    """Split a PH2 folder, stratified on the diagnosis, into two PH2 folders (flat form).

    Args:
        data: the PH2 database, distributed or flat form.
        out: where ``train/`` and ``test/`` are made (``images/``, ``masks/``, ``labels.csv``;
            the images and masks are links to ``data``'s, or copies where links are refused).
        test_fraction: share held out, in each diagnosis.
        seed: split seed.

    Returns:
        The split (``val``: the held-out ids) and the two folders.

    Raises:
        DataError: ``data`` is not a readable PH2 folder (the first bad file named).
    """
    data, out = Path(data), Path(out)
    if not is_ph2(data):
        raise DataError(
            "not a PH2 folder (expected 'PH2 Dataset images/' and PH2_dataset.txt, or images/, "
            "masks/IMDxxx_lesion.png and labels.csv)",
            data,
        )
    split = split_layout(data, val_fraction=test_fraction, seed=seed, labels=PH2)
    ph2 = read_ph2(data)
    folders = []
    for side, ids in (("train", split.train), ("test", split.val)):
        folder = out / side
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(exist_ok=True)
        rows = []
        for image_id in ids:
            sample = ph2.get(image_id)
            image_target = folder / "images" / f"{image_id}{sample.image_path.suffix.lower()}"
            _place(sample.image_path, image_target)
            if sample.mask_path is None:  # read_ph2 requires the masks; kept for the type checker
                raise DataError(f"no lesion mask for {image_id}", sample.image_path)
            _place(sample.mask_path, folder / "masks" / f"{image_id}_lesion{sample.mask_path.suffix.lower()}")
            rows.append(_criteria_row(image_id, sample))
        with atomic_path(folder / "labels.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(_CRITERIA_COLUMNS)
            writer.writerows(rows)
        folders.append(folder)
    return split, folders[0], folders[1]


def run_lesion_demo(
    out: str | Path,
    data: str | Path,
    cfg: Config,
    *,
    test_fraction: float = LESION_TEST_FRACTION,
    seed: int = 0,
    overlays: int = 6,
    callbacks: Callbacks | None = None,
) -> dict[str, Any]:
    """Train a lesion model on PH2, predict the held-out images and score them (ISIC 2018 Task 1).

    Args:
        out: output folder (created).
        data: the PH2 database (distributed or flat form).
        cfg: the training config (the shipped ``lesion`` recipe in the CLI); its ``data.labels`` must
            be a lesion set (``ph2``).
        test_fraction: share of each diagnosis held out for the scores.
        seed: split seed.
        overlays: held-out images drawn as image | ground truth | prediction.
        callbacks: training progress reporting.

    Returns:
        The summary written to ``out/summary.json``: ``scores`` (the official Task 1 keys with
        ``images``, ``images_with_lesion`` and ``per_image``), ``split`` (ids and diagnoses per
        side), ``training``, ``checkpoint`` and ``paths``.

    Raises:
        DataError: ``data`` is not a readable PH2 folder; the trained model is not a lesion model.
    """
    from dermseg.evaluation.task1_folders import evaluate_task1_folders
    from dermseg.inference.folder import predict_images
    from dermseg.report import write_report

    out = Path(out)
    started = time.monotonic()
    split, train_dir, test_dir = split_ph2(data, out / "data", test_fraction=test_fraction, seed=seed)
    diagnoses = {s.id: s.diagnosis for s in read_ph2(data)}

    run = out / "run"
    cfg.data.root = str(train_dir.resolve())  # recorded in the run, so `dermseg report` finds the data
    result = train(cfg, train_dir, run, callbacks=callbacks)
    ckpt_path = run / "checkpoints" / "best.safetensors"
    segmenter = Segmenter.from_checkpoint(ckpt_path)
    if segmenter.labels.metric != "isic2018_task1":
        raise DataError(
            f"the demo trained a {segmenter.labels.name} model, not a lesion model; "
            "use a config whose data.labels is ph2",
            ckpt_path,
        )

    pred_dir, overlay_dir = out / "predictions", out / "overlays"
    test_images = sorted((test_dir / "images").iterdir())
    report = predict_images(segmenter, test_images, pred_dir)
    if report.failed:
        path, message = report.failed[0]
        raise DataError(message, path)
    scores = evaluate_task1_folders(pred_dir, test_dir / "masks")

    overlay_dir.mkdir(parents=True, exist_ok=True)
    labels = segmenter.labels
    for image_path in test_images[:overlays]:
        image = read_image(image_path)
        h, w = image.shape[:2]
        mask_path = next((test_dir / "masks").glob(f"{image_path.stem}_lesion.*"))
        truth = read_mask(mask_path, expected_size=(w, h))[None]
        pred = read_mask(pred_dir / labels.mask_name(image_path.stem, labels.names[0]))[None]
        panel = side_by_side(image, overlay(image, truth, labels=labels), overlay(image, pred, labels=labels))
        with atomic_path(overlay_dir / f"{image_path.stem}_overlay.png") as tmp:
            Image.fromarray(with_legend(panel, labels=labels)).save(tmp, format="PNG")

    report_path = write_report(run, data=train_dir)
    summary = {
        "scores": scores.to_dict(),
        "test_images": scores.images,
        "split": {
            "seed": seed,
            "test_fraction": test_fraction,
            "source": split.source,
            "train": split.train,
            "test": split.val,
            "diagnoses": {
                side: {d: sum(diagnoses[i] == d for i in ids) for d in DIAGNOSES}
                for side, ids in (("train", split.train), ("test", split.val))
            },
        },
        "training": {k: v for k, v in result.items() if k != "jaccard_per_attribute"},
        "checkpoint": str(ckpt_path),
        "checkpoint_epoch": load_checkpoint(ckpt_path).meta.get("epoch"),
        "encoder": cfg.model.encoder_name,
        "wall_time_s": time.monotonic() - started,
        "paths": {
            "data": str(out / "data"),
            "run": str(run),
            "report": str(report_path),
            "predictions": str(pred_dir),
            "overlays": str(overlay_dir),
        },
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary
