"""The stages of ``dermseg reproduce``: each does its work, or says why it is already done."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dermseg.config import Config, dump_config
from dermseg.data.layout import discover
from dermseg.errors import DataError
from dermseg.files import atomic_path
from dermseg.models.checkpoint import read_meta
from dermseg.reproduce.plan import (
    parts_needed,
)
from dermseg.reproduce.state import (
    PREDICTED_SPLITS,
    Hooks,
    Reproduction,
    data_missing,
    is_done,
    mark,
    submission_complete,
    write_json,
)

logger = logging.getLogger(__name__)


def stage_download(r: Reproduction, hooks: Hooks) -> None:
    missing = data_missing(r)
    if not missing:
        hooks.stage("download", "done", f"{r.data_dir} holds every split the recipe needs")
        if not is_done(r, "download"):
            mark(r, "download", downloaded=[])
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
    mark(r, "download", downloaded=missing)


def stage_cache(r: Reproduction, hooks: Hooks) -> None:
    if not r.uses_cache():
        hooks.stage("cache", "skipped", f"the config's data.cache {r.cfg.data.cache} is used")
        return
    from dermseg.data.cache import open_cache, prepare_cache

    if is_done(r, "cache"):
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
    mark(r, "cache", size=r.cfg.data.size)


def _train_config(r: Reproduction, fold: int) -> Config:
    cfg = copy.deepcopy(r.cfg)
    cfg.data.root = str(r.data_dir.resolve())
    cfg.data.fold = fold
    if r.uses_cache():
        cfg.data.cache = str(r.cache_dir.resolve())
    return cfg


def stage_train(r: Reproduction, hooks: Hooks) -> None:
    """Train the model (or each fold's model); a killed training resumes from its last state."""
    if is_done(r, "train") and all(b.is_file() for b in r.bests):
        hooks.stage(
            "train", "done", "best checkpoint" + (f"s of {r.folds} folds" if r.folds > 1 else f" {r.best}")
        )
        return
    for fold in range(r.folds):
        name = "train" if r.folds == 1 else f"train-fold{fold}"
        run_dir, best = r.fold_dir(fold), r.fold_best(fold)
        if r.folds > 1 and is_done(r, name) and best.is_file():
            hooks.stage("train", "done", f"fold {fold}: {best}")
            continue
        resume = (run_dir / "checkpoints" / "last_state.pt").is_file()
        cfg = _train_config(r, fold)
        what = f"fold {fold} of {r.folds} " if r.folds > 1 else ""
        hooks.stage("train", "running", ("resuming " if resume else "") + f"{what}into {run_dir}")
        if r.gpus > 1:
            _train_torchrun(r, cfg, run_dir, resume)
        else:
            from dermseg.training.loop import train

            train(cfg, r.data_dir, run_dir, resume=resume, callbacks=hooks.train_callbacks, device=r.device)
        if not best.is_file():
            raise DataError("training ended without a best checkpoint", run_dir)
        if r.folds > 1:
            mark(r, name, best_epoch=read_meta(best).get("epoch"))
    metas = [read_meta(b) for b in r.bests]
    mark(
        r,
        "train",
        best_epoch=[m.get("epoch") for m in metas],
        jaccard_at_working_size=[m.get("jaccard") for m in metas],
    )


def _train_torchrun(r: Reproduction, cfg: Config, run_dir: Path, resume: bool) -> None:
    """Train on ``r.gpus`` GPUs of this machine with torchrun (one process per GPU)."""
    config_path = r.run_dir / f"{run_dir.name}_config.yaml"
    with atomic_path(config_path) as tmp:
        tmp.write_text(dump_config(cfg))
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={r.gpus}"]
    args += ["-m", "dermseg", "train", "--data", str(r.data_dir)]
    args += ["--resume", str(run_dir)] if resume else ["--out", str(run_dir), "--config", str(config_path)]
    if r.device:
        args += ["--device", r.device]
    logger.info("launching %s", " ".join(args))
    code = subprocess.run(args, env=os.environ.copy(), check=False).returncode
    if code != 0:
        raise DataError(f"torchrun training exited with code {code}; rerun the command to resume", run_dir)


def stage_tune(r: Reproduction, hooks: Hooks) -> None:
    """Thresholds of each model, tuned on its own held-out images (training usually did it)."""
    if is_done(r, "tune"):
        hooks.stage("tune", "done", "thresholds stored in the best checkpoint" + ("s" if r.folds > 1 else ""))
        return
    summary = []
    for best in r.bests:
        meta = read_meta(best)
        tuning = meta.get("tuning")
        if tuning is None or bool(tuning.get("tta", False)) != r.cfg.predict.tta:
            from dermseg.evaluation.model import select_samples, tune_and_store
            from dermseg.inference.segmenter import Segmenter

            hooks.stage("tune", "running", f"{best} on its held-out images")
            segmenter = Segmenter.from_checkpoint(best, device=r.resolved_device(), tta=r.cfg.predict.tta)
            tuning, _ = tune_and_store(segmenter, best, select_samples(r.data_dir, "val", meta))  # the report
        summary.append({k: tuning[k] for k in ("overall_at_default", "overall_tuned", "images")})
    mark(r, "tune", **(summary[0] if r.folds == 1 else {"folds": summary}))


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


def stage_predict(r: Reproduction, hooks: Hooks) -> None:
    folders = {split: r.run_dir / "submission" / split for split in PREDICTED_SPLITS}
    images = {split: _official_images(r, split) for split in PREDICTED_SPLITS}
    complete = all(submission_complete(folders[s], images[s]) for s in PREDICTED_SPLITS)
    if is_done(r, "predict") and complete:
        hooks.stage("predict", "done", f"masks in {r.run_dir / 'submission'}")
        return
    from dermseg.inference.ensemble import ensemble_segmenter
    from dermseg.inference.folder import predict_images

    # one model, or the folds' probabilities averaged
    segmenter = ensemble_segmenter(r.bests, device=r.resolved_device(), tta=r.cfg.predict.tta)
    counts = {}
    for split in PREDICTED_SPLITS:
        todo = [p for p in images[split] if not submission_complete(folders[split], [p])]
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
    mark(r, "predict", images=counts, tta=r.cfg.predict.tta)


def stage_score(r: Reproduction, hooks: Hooks) -> dict[str, Any]:
    from dermseg.evaluation.folders import evaluate_folders

    layout = discover(r.data_dir)
    scores: dict[str, Any] = {}
    for split in PREDICTED_SPLITS:
        found = layout.splits.get(split)
        path = r.run_dir / "scores" / f"{split}.json"
        if found is None or found.mask_dir is None:
            hooks.stage("score", "skipped", f"{split}: no ground truth in the data folder")
            continue
        if is_done(r, "score") and path.is_file():
            scores[split] = json.loads(path.read_text())
            continue
        hooks.stage("score", "running", f"{split} against {found.mask_dir}")
        result = evaluate_folders(r.run_dir / "submission" / split, found.mask_dir)
        scores[split] = result.to_dict()
        write_json(path, scores[split])
    mark(r, "score", splits=sorted(scores))
    return scores


def stage_report(r: Reproduction, hooks: Hooks) -> Path:
    """The HTML report of each training run (each fold's, with folds); returns the first."""
    pages = [r.fold_dir(k) / "report.html" for k in range(r.folds)]
    if is_done(r, "report") and all(p.is_file() for p in pages):
        hooks.stage(
            "report", "done", str(pages[0]) + (f" (and {r.folds - 1} more folds)" if r.folds > 1 else "")
        )
        return pages[0]
    from dermseg.report import write_report

    written = []
    for k in range(r.folds):
        hooks.stage("report", "running", str(pages[k]))
        written.append(
            write_report(
                r.fold_dir(k),
                data=r.data_dir,
                device=r.resolved_device(),
                progress=lambda done, total: hooks.progress("report", done, total),
            )
        )
    mark(r, "report", html=[str(p) for p in written])
    return written[0]
