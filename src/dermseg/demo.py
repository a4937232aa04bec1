"""The main job on the embedded default: synthesise, train, evaluate, predict, show.

``run_demo`` writes into one folder::

    data/           synthetic training, validation and held-out test sets (official layout)
    run/            the training run (config, metrics.jsonl, curves.png, checkpoints/)
    predictions/    test-set masks in ISIC submission format
    overlays/       image | ground truth | prediction, for a few test images
    summary.json    the official scores of the trained model and of the baselines
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermseg.attributes import ATTRIBUTES
from dermseg.config import Config
from dermseg.data.imageio import read_image, read_mask
from dermseg.data.layout import discover
from dermseg.data.synthetic import write_dataset
from dermseg.evaluation.metrics import IsicTask2Metric
from dermseg.files import atomic_path
from dermseg.inference.overlay import overlay, side_by_side
from dermseg.inference.segmenter import Segmenter, write_submission_masks
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
        image = read_image(sample.image_path)
        h, w = image.shape[:2]
        truth = np.stack([read_mask(p, expected_size=(w, h)) for p in sample.mask_paths])
        pred = np.zeros_like(truth) if segmenter is None else segmenter.masks(image)
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
        image = read_image(sample.image_path)
        masks = segmenter.masks(image)
        write_submission_masks(pred_dir, sample.isic_id, masks)
        if k < sizes.overlays:
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
