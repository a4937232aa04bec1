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

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dermseg.attributes import ATTRIBUTES
from dermseg.config import dump_config
from dermseg.errors import ConfigError
from dermseg.files import atomic_path
from dermseg.models.checkpoint import read_meta
from dermseg.reproduce.plan import (
    STAGES,
    PlannedStage,
    describe,
    stage_descriptions,
)
from dermseg.reproduce.stages import (
    stage_cache,
    stage_download,
    stage_predict,
    stage_report,
    stage_score,
    stage_train,
    stage_tune,
)
from dermseg.reproduce.state import (
    Hooks,
    Reproduction,
    data_missing,
    is_done,
    write_json,
)

__all__ = ["Hooks", "Reproduction", "plan", "results_markdown", "run"]


def plan(r: Reproduction) -> list[PlannedStage]:
    """The stages and the state each is in (nothing is changed)."""
    what, estimate = stage_descriptions(r.cfg), describe(r.cfg, r.gpus, dry_run=r.dry_run)
    states: dict[str, str] = {}
    states["download"] = "done" if not data_missing(r) else "to do"
    states["cache"] = (
        "skipped"
        if not r.uses_cache()
        else ("resume" if r.cache_dir.is_dir() and not is_done(r, "cache") else "to do")
    )
    if is_done(r, "cache") and r.uses_cache():
        states["cache"] = "done"
    if is_done(r, "train") and all(b.is_file() for b in r.bests):
        states["train"] = "done"
    elif any((r.fold_dir(k) / "checkpoints" / "last_state.pt").is_file() for k in range(r.folds)):
        states["train"] = "resume"
    else:
        states["train"] = "to do"
    for stage in ("tune", "predict", "score", "report"):
        states[stage] = "done" if is_done(r, stage) else "to do"
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


def _hardware(device: str) -> str:
    import platform

    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU {platform.machine()} ({os.cpu_count()} cores), no GPU"


def _results(r: Reproduction, scores: dict[str, Any], report: Path, command: list[str]) -> dict[str, Any]:
    from dermseg.report.collect import selection_split

    metas = [read_meta(b) for b in r.bests]
    split_file = r.train_dir / "split.json"
    selection = selection_split(split_file) if split_file.is_file() else "unknown (no split.json)"
    if r.folds > 1:
        selection = f"each model's own fold of the training images ({r.folds} folds)"
    timings = {}
    for stage in STAGES:
        if r.marker(stage).is_file():
            timings[stage] = json.loads(r.marker(stage).read_text()).get("seconds")
    rows = []
    for split, s in scores.items():
        rows.append(
            {
                "model": f"{r.cfg.model.arch} / {r.cfg.model.encoder_name}"
                + (f", ensemble of {r.folds} folds" if r.folds > 1 else ""),
                "split": split,
                "images": s.get("images"),
                "official_jaccard": s["overall"],
                "per_attribute": {a: s[a]["jaccard"] for a in ATTRIBUTES if a in s},
                "selected_on": selection,
            }
        )
    return {
        "rows": rows,
        "hardware": _hardware(r.resolved_device()),
        "stage_seconds": timings,
        "wall_seconds": sum(v for v in timings.values() if v),
        "command": " ".join(command),
        "best_epoch": metas[0].get("epoch") if r.folds == 1 else [m.get("epoch") for m in metas],
        "tuning": metas[0].get("tuning") if r.folds == 1 else [m.get("tuning") for m in metas],
        "selected_on": selection,
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
    chosen = sorted({row["selected_on"] for row in results["rows"] if row.get("selected_on")})
    if chosen:
        biased = "the official validation set" in chosen
        lines.append(
            "The best epoch was selected and the thresholds tuned on "
            + "; ".join(chosen)
            + (
                ": the validation row's score is optimistic (its images chose them)."
                if biased
                else ": no row's images chose anything."
            )
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
        had_marker = is_done(r, stage)
        if stage == "download":
            stage_download(r, hooks)
        elif stage == "cache":
            stage_cache(r, hooks)
        elif stage == "train":
            stage_train(r, hooks)
        elif stage == "tune":
            stage_tune(r, hooks)
        elif stage == "predict":
            stage_predict(r, hooks)
        elif stage == "score":
            scores = stage_score(r, hooks)
        else:
            report = stage_report(r, hooks)
        seconds = time.monotonic() - started
        r.stage_seconds[stage] = seconds
        if r.marker(stage).is_file() and not had_marker:  # record how long it took, once
            data = json.loads(r.marker(stage).read_text())
            write_json(r.marker(stage), {**data, "seconds": round(seconds, 1)})
            hooks.stage(stage, "finished", f"{seconds:.0f} s")
    results = _results(r, scores, report, command or sys.argv)
    write_json(r.run_dir / "results.json", results)
    with atomic_path(r.run_dir / "RESULTS.md") as tmp:
        tmp.write_text(results_markdown(results))
    return results
