"""``dermseg reproduce isic2018``: the whole ISIC 2018 Task 2 benchmark as one resumable chain.

Stages (see :mod:`dermseg.reproduce.plan`): download what is missing -> prepare the cache
-> train (selecting the best epoch on a held-out split) -> tune thresholds on it -> predict
the official validation and test sets in submission format -> score them with the official
metric where their ground truth is present -> write the report and ``results.json``.

A run folder holds::

    config.yaml            the resolved recipe (a rerun with another one is refused)
    stages/<stage>.json    written when a stage has finished: its outputs are then valid
    cache/                 the prepared images (when the recipe can use them)
    train/                 the training run (checkpoints, metrics, report.html)
    submission/<split>/    ISIC_<id>_attribute_<name>.png, and submission/<split>.zip
    scores/<split>.json    official scores
    results.json, RESULTS.md

Every stage is skipped when its marker is there and its outputs still exist; training
resumes from its last state after a crash, so rerunning the same command continues.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dermseg.attributes import ATTRIBUTES
from dermseg.checkpoint import read_meta
from dermseg.config import Config, dump_config
from dermseg.data.imageio import atomic_path
from dermseg.data.layout import discover
from dermseg.errors import ConfigError, DataError
from dermseg.reproduce.plan import (
    STAGES,
    PlannedStage,
    describe,
    parts_needed,
    stage_descriptions,
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
        train_callbacks: the training loop's callbacks (see :class:`dermseg.train.Callbacks`).
    """

    stage: Callable[[str, str, str], None] = lambda name, state, detail: None
    progress: Progress = lambda label, done, total: None
    train_callbacks: Any = None


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
    """

    cfg: Config
    data_dir: Path
    run_dir: Path
    gpus: int = 1
    device: str | None = None
    base_url: str | None = None
    dry_run: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def train_dir(self) -> Path:
        return self.run_dir / "train"

    @property
    def best(self) -> Path:
        return self.train_dir / "checkpoints" / "best.safetensors"

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


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")


def _done(r: Reproduction, stage: str) -> bool:
    return r.marker(stage).is_file()


def _mark(r: Reproduction, stage: str, **info: Any) -> None:
    _write_json(
        r.marker(stage),
        {"stage": stage, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), **info},
    )


# --- checks of each stage's outputs (a marker alone is not trusted) --------------------------


def data_missing(r: Reproduction) -> list[str]:
    """What the recipe needs that the data folder lacks (empty when complete)."""
    if not r.data_dir.is_dir():
        return ["the data folder"]
    layout = discover(r.data_dir)
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


def _submission_complete(folder: Path, images: list[Path]) -> bool:
    return folder.is_dir() and all(
        (folder / f"{img.stem}_attribute_{a}.png").is_file() for img in images for a in ATTRIBUTES
    )


def plan(r: Reproduction) -> list[PlannedStage]:
    """The stages and the state each is in (nothing is changed)."""
    what, estimate = stage_descriptions(r.cfg), describe(r.cfg, r.gpus, dry_run=r.dry_run)
    states: dict[str, str] = {}
    states["download"] = "done" if not data_missing(r) else "to do"
    states["cache"] = (
        "skipped"
        if not r.uses_cache()
        else ("resume" if r.cache_dir.is_dir() and not _done(r, "cache") else "to do")
    )
    if _done(r, "cache") and r.uses_cache():
        states["cache"] = "done"
    if _done(r, "train") and r.best.is_file():
        states["train"] = "done"
    elif (r.train_dir / "checkpoints" / "last_state.pt").is_file():
        states["train"] = "resume"
    else:
        states["train"] = "to do"
    for stage in ("tune", "predict", "score", "report"):
        states[stage] = "done" if _done(r, stage) else "to do"
    notes = {"cache": "data.cache is set in the config: training reads that cache"}
    return [
        PlannedStage(
            name,
            what[name],
            states[name],
            notes.get(name, estimate[name]) if states[name] == "skipped" else estimate[name],
        )
        for name in STAGES
    ]


# --- the stages -----------------------------------------------------------------------------


def _stage_download(r: Reproduction, hooks: Hooks) -> None:
    missing = data_missing(r)
    if not missing:
        hooks.stage("download", "done", f"{r.data_dir} holds every split the recipe needs")
        if not _done(r, "download"):
            _mark(r, "download", downloaded=[])
        return
    from dermseg.data.download import ISIC2018_URL, download_isic2018

    hooks.stage("download", "running", "missing: " + ", ".join(missing))
    parts, lesions = parts_needed(r.cfg)
    download_isic2018(
        r.data_dir, parts, lesion_masks=lesions, base_url=r.base_url or ISIC2018_URL, progress=hooks.progress
    )
    still = data_missing(r)
    if still:
        raise DataError("after the download the data folder still lacks " + ", ".join(still), r.data_dir)
    _mark(r, "download", downloaded=missing)


def _stage_cache(r: Reproduction, hooks: Hooks) -> None:
    if not r.uses_cache():
        hooks.stage("cache", "skipped", f"the config's data.cache {r.cfg.data.cache} is used")
        return
    from dermseg.data.cache import open_cache, prepare_cache

    if _done(r, "cache"):
        try:  # every source file is stat'ed against the manifest
            open_cache(r.cache_dir, r.data_dir)
            hooks.stage("cache", "done", f"{r.cache_dir} is up to date with {r.data_dir}")
            return
        except DataError as err:
            hooks.stage("cache", "stale", str(err))
    # An up-to-date part of a cache is kept; only changed or new sources are decoded.
    hooks.stage("cache", "running", f"at {r.cfg.data.size} px into {r.cache_dir}")
    prepare_cache(
        r.data_dir,
        r.cache_dir,
        r.cfg.data.size,
        workers=None,
        progress=lambda done, total: hooks.progress("cache", done, total),
        crop_background=r.cfg.data.crop_background,
    )
    _mark(r, "cache", size=r.cfg.data.size)


def _train_config(r: Reproduction) -> Config:
    cfg = copy.deepcopy(r.cfg)
    cfg.data.root = str(r.data_dir.resolve())
    if r.uses_cache():
        cfg.data.cache = str(r.cache_dir.resolve())
    return cfg


def _stage_train(r: Reproduction, hooks: Hooks) -> None:
    if _done(r, "train") and r.best.is_file():
        hooks.stage("train", "done", f"best checkpoint {r.best}")
        return
    resume = (r.train_dir / "checkpoints" / "last_state.pt").is_file()
    cfg = _train_config(r)
    hooks.stage("train", "running", ("resuming " if resume else "") + f"into {r.train_dir}")
    if r.gpus > 1:
        _train_torchrun(r, cfg, resume)
    else:
        from dermseg.train import train

        train(cfg, r.data_dir, r.train_dir, resume=resume, callbacks=hooks.train_callbacks, device=r.device)
    if not r.best.is_file():
        raise DataError("training ended without a best checkpoint", r.train_dir)
    meta = read_meta(r.best)
    _mark(r, "train", best_epoch=meta.get("epoch"), jaccard_at_working_size=meta.get("jaccard"))


def _train_torchrun(r: Reproduction, cfg: Config, resume: bool) -> None:
    """Train on ``r.gpus`` GPUs of this machine with torchrun (one process per GPU)."""
    config_path = r.run_dir / "train_config.yaml"
    with atomic_path(config_path) as tmp:
        tmp.write_text(dump_config(cfg))
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={r.gpus}"]
    args += ["-m", "dermseg", "train", "--data", str(r.data_dir)]
    args += (
        ["--resume", str(r.train_dir)]
        if resume
        else ["--out", str(r.train_dir), "--config", str(config_path)]
    )
    if r.device:
        args += ["--device", r.device]
    logger.info("launching %s", " ".join(args))
    code = subprocess.run(args, env=os.environ.copy(), check=False).returncode
    if code != 0:
        raise DataError(
            f"torchrun training exited with code {code}; rerun the command to resume", r.train_dir
        )


def _stage_tune(r: Reproduction, hooks: Hooks) -> None:
    if _done(r, "tune"):
        hooks.stage("tune", "done", "thresholds stored in the best checkpoint")
        return
    meta = read_meta(r.best)
    tuning = meta.get("tuning")
    if tuning is None or bool(tuning.get("tta", False)) != r.cfg.predict.tta:
        from dermseg.checkpoint import update_checkpoint_meta
        from dermseg.evaluate_model import select_samples, tune_checkpoint
        from dermseg.predict import Segmenter

        hooks.stage("tune", "running", "on the held-out images")
        segmenter = Segmenter.from_checkpoint(r.best, device=r.resolved_device(), tta=r.cfg.predict.tta)
        samples = select_samples(r.data_dir, "val", meta)
        report = tune_checkpoint(segmenter, samples)
        tuning = {k: report[k] for k in ("overall_at_default", "overall_tuned", "steps", "images")}
        tuning |= {"subset": "val", "tta": r.cfg.predict.tta}
        update_checkpoint_meta(
            r.best, {"postprocess": report["settings"], "thresholds": report["thresholds"], "tuning": tuning}
        )
    _mark(r, "tune", **{k: tuning[k] for k in ("overall_at_default", "overall_tuned", "images")})


def _official_images(r: Reproduction, split: str) -> list[Path]:
    found = discover(r.data_dir).splits.get(split)
    return [s.image_path for s in found.samples] if found is not None else []


def _zip_submission(folder: Path, target: Path) -> None:
    """The masks of a split as one zip (the challenge took the PNGs zipped, flat)."""
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for png in sorted(folder.glob("ISIC_*_attribute_*.png")):
            zf.write(png, png.name)


def _counter(hooks: Hooks, label: str, total: int) -> Callable[[int], None]:
    """A ``progress(k)`` callback adding up to ``hooks.progress(label, done, total)``."""
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        hooks.progress(label, done, total)

    return tick


def _stage_predict(r: Reproduction, hooks: Hooks) -> None:
    folders = {split: r.run_dir / "submission" / split for split in PREDICTED_SPLITS}
    images = {split: _official_images(r, split) for split in PREDICTED_SPLITS}
    complete = all(_submission_complete(folders[s], images[s]) for s in PREDICTED_SPLITS)
    if _done(r, "predict") and complete:
        hooks.stage("predict", "done", f"masks in {r.run_dir / 'submission'}")
        return
    from dermseg.predict import Segmenter
    from dermseg.predict_folder import predict_images

    segmenter = Segmenter.from_checkpoint(r.best, device=r.resolved_device(), tta=r.cfg.predict.tta)
    counts = {}
    for split in PREDICTED_SPLITS:
        todo = [p for p in images[split] if not _submission_complete(folders[split], [p])]
        hooks.stage("predict", "running", f"{split}: {len(todo)} of {len(images[split])} images to do")
        report = predict_images(
            segmenter, todo, folders[split], progress=_counter(hooks, f"predict {split}", len(todo))
        )
        if report.failed:
            path, message = report.failed[0]
            raise DataError(f"{len(report.failed)} image(s) could not be predicted, first: {message}", path)
        if images[split]:
            _zip_submission(folders[split], r.run_dir / "submission" / f"{split}.zip")
        counts[split] = len(images[split])
    _mark(r, "predict", images=counts, tta=r.cfg.predict.tta)


def _stage_score(r: Reproduction, hooks: Hooks) -> dict[str, Any]:
    from dermseg.evaluate import evaluate_folders

    layout = discover(r.data_dir)
    scores: dict[str, Any] = {}
    for split in PREDICTED_SPLITS:
        found = layout.splits.get(split)
        path = r.run_dir / "scores" / f"{split}.json"
        if found is None or found.mask_dir is None:
            hooks.stage("score", "skipped", f"{split}: no ground truth in the data folder")
            continue
        if _done(r, "score") and path.is_file():
            scores[split] = json.loads(path.read_text())
            continue
        hooks.stage("score", "running", f"{split} against {found.mask_dir}")
        result = evaluate_folders(r.run_dir / "submission" / split, found.mask_dir)
        scores[split] = result.to_dict()
        _write_json(path, scores[split])
    _mark(r, "score", splits=sorted(scores))
    return scores


def _stage_report(r: Reproduction, hooks: Hooks) -> Path:
    html = r.train_dir / "report.html"
    if _done(r, "report") and html.is_file():
        hooks.stage("report", "done", str(html))
        return html
    from dermseg.report import write_report

    hooks.stage("report", "running", str(html))
    path = write_report(
        r.train_dir,
        data=r.data_dir,
        device=r.resolved_device(),
        progress=lambda done, total: hooks.progress("report", done, total),
    )
    _mark(r, "report", html=str(path))
    return path


def _hardware(device: str) -> str:
    import platform

    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU {platform.machine()} ({os.cpu_count()} cores), no GPU"


def _results(r: Reproduction, scores: dict[str, Any], report: Path, command: list[str]) -> dict[str, Any]:
    meta = read_meta(r.best)
    timings = {}
    for stage in STAGES:
        if r.marker(stage).is_file():
            timings[stage] = json.loads(r.marker(stage).read_text()).get("seconds")
    rows = []
    for split, s in scores.items():
        rows.append(
            {
                "model": f"{r.cfg.model.arch} / {r.cfg.model.encoder_name}",
                "split": split,
                "images": s.get("images"),
                "official_jaccard": s["overall"],
                "per_attribute": {a: s[a]["jaccard"] for a in ATTRIBUTES if a in s},
            }
        )
    return {
        "rows": rows,
        "hardware": _hardware(r.resolved_device()),
        "stage_seconds": timings,
        "wall_seconds": sum(v for v in timings.values() if v),
        "command": " ".join(command),
        "best_epoch": meta.get("epoch"),
        "tuning": meta.get("tuning"),
        "report": str(report),
        "config": asdict(r.cfg),
    }


def results_markdown(results: dict[str, Any]) -> str:
    """The README-style Results table of a reproduction."""
    head = "| model | data split | official Jaccard | " + " | ".join(ATTRIBUTES) + " | hardware | wall time |"
    lines = [head, "|" + "---|" * (len(ATTRIBUTES) + 5)]
    minutes = results["wall_seconds"] / 60
    for row in results["rows"]:
        per = " | ".join(f"{row['per_attribute'].get(a, float('nan')):.3f}" for a in ATTRIBUTES)
        lines.append(
            f"| {row['model']} | {row['split']} ({row['images']} images) | **{row['official_jaccard']:.3f}** "
            f"| {per} | {results['hardware']} | {minutes:.0f} min |"
        )
    lines.append("")
    lines.append(f"Command: `{results['command']}`")
    return "\n".join(lines) + "\n"


def _check_run_config(r: Reproduction) -> None:
    """A run folder belongs to one recipe: a rerun must not mix two."""
    path = r.run_dir / "config.yaml"
    text = dump_config(r.cfg)
    if path.is_file():
        if path.read_text() != text:
            raise ConfigError(
                "this run folder was started with another config; rerun with the same config "
                "(see its config.yaml) or choose another --out",
                r.run_dir,
            )
        return
    r.run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def run(r: Reproduction, hooks: Hooks | None = None, command: list[str] | None = None) -> dict[str, Any]:
    """Run every stage that is not done yet; return the results (also in ``results.json``).

    Raises:
        DermsegError: a stage failed (its message names the file); rerunning resumes there.
    """
    hooks = hooks or Hooks()
    _check_run_config(r)
    scores: dict[str, Any] = {}
    report = r.train_dir / "report.html"
    for stage in STAGES:
        started = time.monotonic()
        had_marker = _done(r, stage)
        if stage == "download":
            _stage_download(r, hooks)
        elif stage == "cache":
            _stage_cache(r, hooks)
        elif stage == "train":
            _stage_train(r, hooks)
        elif stage == "tune":
            _stage_tune(r, hooks)
        elif stage == "predict":
            _stage_predict(r, hooks)
        elif stage == "score":
            scores = _stage_score(r, hooks)
        else:
            report = _stage_report(r, hooks)
        seconds = time.monotonic() - started
        r.stage_seconds[stage] = seconds
        if r.marker(stage).is_file() and not had_marker:  # record how long it took, once
            data = json.loads(r.marker(stage).read_text())
            _write_json(r.marker(stage), {**data, "seconds": round(seconds, 1)})
            hooks.stage(stage, "finished", f"{seconds:.0f} s")
    results = _results(r, scores, report, command or sys.argv)
    _write_json(r.run_dir / "results.json", results)
    with atomic_path(r.run_dir / "RESULTS.md") as tmp:
        tmp.write_text(results_markdown(results))
    return results
