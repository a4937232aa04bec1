"""What ``dermseg reproduce isic2018`` will do: its stages, their state, sizes and time estimates.

The estimates are arithmetic on stated assumptions, not measurements: the download sizes
are the archives' approximate sizes, and the GPU time takes :data:`ASSUMED_TRAIN_IMG_S`
training images per second per GPU (measured once on an H200, whole run) and
:data:`ASSUMED_INFER_IMG_S` inference images per second (assumed) for Inception-v3 at 512 px
with bf16. ``--plan`` prints
them as such; the real throughput is in ``metrics.jsonl`` once a run has started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dermseg.config import Config
from dermseg.data.download import ARCHIVES, archive_names

#: Training throughput per GPU (Inception-v3 UNetASPP, 512 px crops, batch 16, bf16): dermseg's
#: own loop fed from the cache, measured once on an NVIDIA H200 over a whole run, epoch ends
#: included (benchmarks/gpu_numbers.py, BENCHMARKS.md); a slower GPU takes longer.
ASSUMED_TRAIN_IMG_S = 70.0
#: Assumed whole-image inference throughput per GPU (one forward pass, 640 px): an estimate.
ASSUMED_INFER_IMG_S = 40.0
#: Images/s one DataLoader worker decodes from 4288x2848 JPEGs (draft mode) to 512 px: measured
#: by benchmarks/data_loading.py on one x86_64 core (BENCHMARKS.md); bounds training without a cache.
MEASURED_DRAFT_DECODE_IMG_S = 6.25
#: Images/s one worker reads from the prepared cache at 512 px (same benchmark, lowest of our runs).
MEASURED_CACHE_IMG_S = 104.0
#: Official image counts of ISIC 2018 Task 2.
OFFICIAL_IMAGES = {"training": 2594, "validation": 100, "test": 1000}

STAGES = ("download", "cache", "train", "tune", "predict", "score", "report")


@dataclass(frozen=True)
class PlannedStage:
    """One stage of the plan.

    Attributes:
        name: one of :data:`STAGES`.
        what: what the stage does, in a sentence.
        state: ``done`` (valid output found: skipped), ``resume`` (partial output: continued),
            ``to do`` or ``skipped`` (not needed with this config).
        estimate: expected size or time, marked as an estimate.
    """

    name: str
    what: str
    state: str
    estimate: str


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def parts_needed(cfg: Config) -> tuple[list[str], bool]:
    """The download parts and whether the Task 1 lesion masks are needed by ``cfg``."""
    return ["train", "val", "test"], cfg.augment.lesion_crop > 0


def download_bytes(cfg: Config) -> int:
    """Approximate size of every archive the config needs."""
    parts, lesions = parts_needed(cfg)
    return sum(ARCHIVES[name].approx_bytes for name in archive_names(parts, lesions))


def _worker_rate(cfg: Config) -> float:
    return MEASURED_CACHE_IMG_S if cfg.data.cache is None else MEASURED_DRAFT_DECODE_IMG_S


def training_rate(cfg: Config) -> float:
    """Images/s per GPU: the assumed GPU rate, or the loading rate of the workers when that is
    lower (from the prepared cache, or JPEGs decoded every epoch without one)."""
    return min(ASSUMED_TRAIN_IMG_S, max(1, cfg.data.workers) * _worker_rate(cfg))  # reproduce makes a cache


def training_hours(cfg: Config, gpus: int, images: int = OFFICIAL_IMAGES["training"]) -> float:
    """Estimated GPU-hours of training (all GPUs together), from :func:`training_rate`."""
    if cfg.data.validation == "holdout" or cfg.data.folds > 1:
        held = images // cfg.data.folds if cfg.data.folds > 1 else round(images * cfg.data.val_fraction)
        images -= held
    return max(1, cfg.data.folds) * cfg.train.epochs * images / training_rate(cfg) / 3600.0


def inference_hours(cfg: Config) -> float:
    """Estimated GPU-hours of predicting the official validation and test sets (with TTA if set)."""
    passes = 3 if cfg.predict.tta else 1
    images = OFFICIAL_IMAGES["validation"] + OFFICIAL_IMAGES["test"]
    return images * passes / ASSUMED_INFER_IMG_S / 3600.0


def describe(cfg: Config, gpus: int, dry_run: bool = False) -> dict[str, str]:
    """The estimate line of each stage (for the official data; a dry run takes CPU seconds)."""
    if dry_run:
        return {name: "dry run: synthetic data of 128 px images, CPU seconds" for name in STAGES}
    cache_gib = sum(OFFICIAL_IMAGES.values()) * cfg.data.size * cfg.data.size * 1.5 * 3 / 2**30
    train_h = training_hours(cfg, gpus)
    wall = train_h / max(1, gpus)
    return {
        "download": f"about {_gib(download_bytes(cfg))} of archives (approximate sizes), twice that on disk",
        "cache": f"about {cache_gib:.1f} GiB at {cfg.data.size} px; CPU minutes",
        "train": (
            f"estimate: {train_h:.1f} GPU-hours ({wall:.1f} h on {max(1, gpus)} GPU(s)) for "
            f"{cfg.train.epochs} epochs at {training_rate(cfg):.0f} img/s per GPU ("
            + (
                f"GPU rate {ASSUMED_TRAIN_IMG_S:.0f} (measured on an H200)"
                if training_rate(cfg) == ASSUMED_TRAIN_IMG_S
                else f"loading by {cfg.data.workers} workers at a measured {_worker_rate(cfg)} img/s each"
            )
            + ")"
        ),
        "tune": "minutes (one pass over the held-out images)",
        "predict": f"estimate: {inference_hours(cfg) * 60:.0f} GPU-minutes for 1100 images"
        + (" with flip TTA" if cfg.predict.tta else ""),
        "score": "seconds (official metric)",
        "report": "a minute (one pass over the held-out images)",
    }


def stage_descriptions(cfg: Config) -> dict[str, str]:
    """What each stage does with this config."""
    parts, lesions = parts_needed(cfg)
    selection = (
        "each model's held-out fold"
        if cfg.data.folds > 1
        else (
            f"a stratified {cfg.data.val_fraction:.0%} hold-out of the training images"
            if cfg.data.validation == "holdout"
            else "the official validation set"
        )
    )
    return {
        "download": "fetch what is missing of the official archives ("
        + ", ".join(parts)
        + (" + Task 1 lesion masks" if lesions else "")
        + ")",
        "cache": "decode, crop and resize every image once (dermseg prepare)",
        "train": (
            f"train {cfg.data.folds} {cfg.model.arch}/{cfg.model.encoder_name} models, one per fold, "
            "each selecting its best epoch on its held-out fold"
            if cfg.data.folds > 1
            else f"train {cfg.model.arch}/{cfg.model.encoder_name} on the training images, "
            f"selecting the best epoch on {selection}"
        ),
        "tune": f"tune per-attribute thresholds on {selection}",
        "predict": "write the official validation and test masks in submission format (and zips)"
        + (f", averaging the {cfg.data.folds} folds' probabilities" if cfg.data.folds > 1 else ""),
        "score": "score them with the official metric where their ground truth is present",
        "report": "write the HTML report of the run",
    }


def format_plan(stages: list[PlannedStage], data_dir: Path, run_dir: Path) -> list[str]:
    """Text lines of a plan, for ``--plan`` and the start of a run."""
    width = max(len(s.name) for s in stages)
    lines = [f"data: {data_dir}", f"run:  {run_dir}"]
    for s in stages:
        lines.append(f"  {s.name:<{width}}  [{s.state}]  {s.what}")
        lines.append(f"  {'':<{width}}  {'':<{len(s.state) + 2}}  {s.estimate}")
    lines.append(
        "Estimates are arithmetic on assumed sizes and throughput, not measurements "
        "(see dermseg.reproduce.plan)."
    )
    return lines
