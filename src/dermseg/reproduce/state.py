"""A reproduction's run folder: where things are, stage markers, and checks of stage outputs.

A stage is done when its marker ``stages/<stage>.json`` exists *and* its outputs still check
out: a marker alone is not trusted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dermseg.attributes import ATTRIBUTES
from dermseg.config import Config
from dermseg.data.layout import discover
from dermseg.errors import ConfigError, DataError
from dermseg.files import atomic_path
from dermseg.reproduce.plan import (
    parts_needed,
)

logger = logging.getLogger(__name__)

#: The official splits predicted and scored, with their names in ``discover``'s layout.
PREDICTED_SPLITS = ("validation", "test")

Progress = Callable[[str, int, int | None], None]


@dataclass
class Hooks:
    """How the pipeline reports (the CLI draws progress bars; tests pass nothing).

    Attributes:
        stage: called with ``(stage name, state, detail)`` when a stage starts, is skipped or ends.
        progress: called with ``(label, done, total)`` during long stages.
        train_callbacks: the training loop's callbacks (see :class:`dermseg.training.loop.Callbacks`).
    """

    stage: Callable[[str, str, str], None] = lambda name, state, detail: None
    progress: Progress = lambda label, done, total: None
    train_callbacks: Any = None


def check_selection(cfg: Config, source: str | Path | None = None) -> None:
    """Refuse a recipe that would select the epoch and tune the thresholds on the official validation set.

    A reproduction scores the official validation and test sets; a score is only unbiased on
    images that chose nothing. The epoch and thresholds must therefore come from held-out
    training images: ``data.validation: holdout``, or k folds (``data.folds > 1``: each model is
    selected on its own fold of the training images).

    Args:
        cfg: the recipe.
        source: its file, named in the error.

    Raises:
        ConfigError: ``data.validation`` is not ``holdout`` and there are no folds.
    """
    if cfg.data.validation == "holdout" or cfg.data.folds > 1:
        return
    raise ConfigError(
        f"data.validation is {cfg.data.validation}: the best epoch and the thresholds would be chosen on "
        "the official validation set, whose score reproduce reports; set data.validation: holdout "
        "(--set data.validation=holdout)",
        source,
    )


@dataclass
class Reproduction:
    """Where a reproduction lives and how it runs.

    Attributes:
        cfg: the recipe.
        data_dir: the dataset folder (filled by the download stage when incomplete).
        run_dir: the run folder.
        gpus: GPUs to train on (``> 1`` launches torchrun).
        device: ``cpu``/``cuda``; ``None`` picks CUDA when available.
        base_url: where the official archives are fetched from.
        stage_seconds: wall time of each stage run now (filled while running).

    Raises:
        ConfigError: the recipe selects on the official validation set (:func:`check_selection`).
    """

    cfg: Config
    data_dir: Path
    run_dir: Path
    gpus: int = 1
    device: str | None = None
    base_url: str | None = None
    dry_run: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_selection(self.cfg)

    @property
    def folds(self) -> int:
        """Models trained: 1, or k with ``data.folds: k`` (every fold, then their ensemble)."""
        return max(1, self.cfg.data.folds)

    def fold_dir(self, fold: int) -> Path:
        """The training run of one fold (``train/`` when there are no folds)."""
        return self.run_dir / ("train" if self.folds == 1 else f"train-fold{fold}")

    def fold_best(self, fold: int) -> Path:
        return self.fold_dir(fold) / "checkpoints" / "best.safetensors"

    @property
    def train_dir(self) -> Path:
        """The first (or only) training run: its report is the run's report."""
        return self.fold_dir(0)

    @property
    def best(self) -> Path:
        return self.fold_best(0)

    @property
    def bests(self) -> list[Path]:
        """The best checkpoint of every fold (one without folds)."""
        return [self.fold_best(k) for k in range(self.folds)]

    @property
    def cache_dir(self) -> Path:
        return self.run_dir / "cache"

    def marker(self, stage: str) -> Path:
        return self.run_dir / "stages" / f"{stage}.json"

    def uses_cache(self) -> bool:
        """Whether training reads the prepared cache (it holds the lesion masks too)."""
        return self.cfg.data.cache is None

    def resolved_device(self) -> str:
        if self.device:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")


def is_done(r: Reproduction, stage: str) -> bool:
    """Whether ``stage`` left its marker (its outputs are checked by the stage itself)."""
    return r.marker(stage).is_file()


def mark(r: Reproduction, stage: str, **info: Any) -> None:
    """Record that ``stage`` finished, with ``info`` about what it did."""
    write_json(
        r.marker(stage),
        {"stage": stage, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), **info},
    )


# --- checks of each stage's outputs (a marker alone is not trusted) --------------------------


def data_missing(r: Reproduction) -> list[str]:
    """What the recipe needs that the data folder lacks (empty when complete).

    Raises:
        DataError: ``data_dir`` is a file.
    """
    if r.data_dir.exists() and not r.data_dir.is_dir():
        raise DataError("is a file, expected the dataset folder (or a folder to download into)", r.data_dir)
    if not r.data_dir.is_dir():
        return ["the data folder"]
    try:
        layout = discover(r.data_dir)
    except DataError:  # empty, or only a download in progress: nothing usable yet
        return ["every part (no ISIC images found yet)"]
    missing = []
    wanted = {"training": "train", "validation": "val", "test": "test"}
    for split, part in wanted.items():
        found = layout.splits.get(split)
        if found is None or not found.samples:
            missing.append(f"{part} images")
        elif split == "training" and found.mask_dir is None:
            missing.append("train masks")
    _, lesions = parts_needed(r.cfg)
    training = layout.splits.get("training")
    if lesions and training is not None and not any(s.lesion_mask_path for s in training.samples):
        missing.append("train lesion masks")
    return missing


def submission_complete(folder: Path, images: list[Path]) -> bool:
    """Whether ``folder`` holds the five masks of every image of ``images``."""
    return folder.is_dir() and all(
        (folder / f"{img.stem}_attribute_{a}.png").is_file() for img in images for a in ATTRIBUTES
    )
