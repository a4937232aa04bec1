"""Training: one function that reads top to bottom.

``train(cfg, data_dir, run_dir)`` builds the run from the config
(:func:`dermseg.training.setup.build_run`: data, model, loss, optimiser) and runs
AdamW with warm-up + cosine decay, validating with the official metric of the run's
label set every ``eval_every`` epochs and keeping the best checkpoint by the record's
``jaccard``: the ISIC 2018 Task 2 (pooled) Jaccard, or for a lesion set (metric
``isic2018_task1``) the mean per-image Jaccard, recorded beside the official thresholded
Jaccard (``threshold_jaccard``) and ``dice``. At the end it tunes the best checkpoint's
thresholds on the validation images for the same metric
(:func:`dermseg.evaluation.model.tune_and_store`). A run directory holds::

    config.yaml        the resolved config
    provenance.json    versions, git commit, device, command, data manifest hash
    split.json         the train/val ids
    metrics.jsonl      one JSON line per epoch
    curves.png         loss and validation Jaccard per epoch
    checkpoints/best.safetensors, last.safetensors   self-describing weights
    checkpoints/last_state.pt                        everything --resume needs

Crash safety: every file is written atomically (temporary file, fsync, rename), so a
kill at any moment leaves the previous checkpoint intact; at an epoch's end the state is
written before the weights files, which a resume completes from it
(:mod:`dermseg.training.checkpoints`), and a full disk is one line naming the file. The state holds the model,
optimiser, scheduler, AMP scaler, epoch, position in the epoch, the partial epoch's
loss and every RNG; the training order and each image's augmentation are functions of
the seed (:mod:`dermseg.data.sampling`). A run killed mid-epoch and resumed therefore
ends, with ``deterministic: true`` on CPU, with bit-identical weights.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from dermseg.config import Config, load_config
from dermseg.errors import ConfigError, DermsegError
from dermseg.evaluation.model import tune_and_store
from dermseg.files import atomic_path
from dermseg.inference.segmenter import Segmenter
from dermseg.labels import LabelSet
from dermseg.losses import WeakTargets
from dermseg.training import distributed
from dermseg.training.checkpoints import complete_checkpoints, save_epoch_end
from dermseg.training.reproducibility import seed_everything, set_deterministic
from dermseg.training.setup import Run, build_run, save_state
from dermseg.training.validation import validate

__all__ = ["Callbacks", "TrainingDiverged", "resume_config", "train"]

logger = logging.getLogger(__name__)


class TrainingDiverged(DermsegError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Callbacks(Protocol):
    """What the trainer reports while it runs (the CLI draws progress bars from it)."""

    def on_epoch_start(self, epoch: int, steps: int) -> None: ...
    def on_step(self, loss: float, images_per_s: float) -> None: ...
    def on_epoch_end(self, record: dict[str, Any]) -> None: ...


class _Silent:
    def on_epoch_start(self, epoch: int, steps: int) -> None:
        pass

    def on_step(self, loss: float, images_per_s: float) -> None:
        pass

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        pass


def train(
    cfg: Config,
    data_dir: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    callbacks: Callbacks | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Train a model as ``cfg`` says and write the run directory.

    Args:
        cfg: the run config.
        data_dir: dataset folder (official layout or flat folder with masks).
        run_dir: output folder; with ``resume`` the run found there is continued.
        resume: continue from ``run_dir/checkpoints/last_state.pt`` (mid-epoch too).
        callbacks: progress reporting (rank 0 only).
        device: ``cpu``/``cuda``; default CUDA when available.

    Returns:
        The last epoch's record plus ``best_jaccard`` (the best ``jaccard`` of the records: see
        the module docstring) and ``best_epoch``.

    Raises:
        DermsegError: bad data or config, or a diverged loss (:class:`TrainingDiverged`).
    """
    info = distributed.setup(device)
    # Denormal floats appear in the weights after a few steps and make CPU kernels ~40x slower.
    torch.set_flush_denormal(True)
    set_deterministic(cfg.deterministic)
    callbacks = callbacks if (callbacks is not None and info.is_main) else _Silent()
    # Seeded before the model is built; each rank its own stream (DDP copies rank 0's weights).
    seed_everything(cfg.seed + info.rank)
    run = build_run(cfg, data_dir, run_dir, info, resume=resume)
    if resume and info.is_main:
        complete_checkpoints(run)  # a failure between the state and the weights files left them behind
    model, loss_fn = run.model, run.loss_fn
    optimizer, scheduler, scaler = run.optimizer, run.scheduler, run.scaler
    pos, steps, dtype, ckpt_dir = run.position, run.steps_per_epoch, run.amp_dtype, run.ckpt_dir
    channels_last = cfg.train.channels_last and info.device.type == "cuda"

    deadline = time.monotonic() + 60 * cfg.train.max_minutes if cfg.train.max_minutes else None
    out_of_time = False
    for epoch in range(pos["epoch"], cfg.train.epochs):
        # The order of epoch e is a function of (seed, e) and can start at any batch: resumable.
        run.sampler.set_epoch(epoch, start_batch=pos["batch"])
        run.train_model.train()
        callbacks.on_epoch_start(epoch, steps)
        t0, seen_before = time.monotonic(), pos["seen"]
        for i, batch in enumerate(run.train_loader, start=pos["batch"]):
            if i >= steps:
                break
            images = batch["image"].to(info.device, non_blocking=True)
            masks = batch["masks"].to(info.device, non_blocking=True)
            labelled = batch["labelled"].to(info.device, non_blocking=True)
            # Images with image-level labels only (data.weak_labels): no masks, a presence target instead.
            weak = None
            if "weak" in batch:
                weak = WeakTargets(
                    batch["weak_presence"].to(info.device, non_blocking=True),
                    batch["weak"].to(info.device, non_blocking=True),
                )
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            # Mixed precision for the network only; every loss term computes in float32.
            with torch.autocast(info.device.type, dtype=dtype, enabled=dtype is not None):
                output = run.train_model(images)
            # mask terms, plus presence with a presence head, plus mil with weak labels and loss.weak_mil
            loss = loss_fn(output, masks, labelled, weak)
            if not torch.isfinite(loss):
                # Stop before the bad step touches the weights; last_state.pt is the last good one.
                raise TrainingDiverged(
                    f"loss is {loss.item()} at epoch {epoch}, step {pos['step']}; training stopped and "
                    "the last good checkpoint is kept (lower train.lr or enable train.grad_clip)",
                    run.run_dir,
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.train.grad_clip > 0:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            pos["step"] += 1
            pos["batch"] = i + 1
            pos["loss_sum"] += loss.item() * len(images)
            pos["seen"] += len(images)
            rate = (pos["seen"] - seen_before) * info.world_size / max(1e-9, time.monotonic() - t0)
            callbacks.on_step(loss.item(), rate)
            # A mid-epoch state bounds what a kill loses to checkpoint_every steps.
            every = cfg.train.checkpoint_every
            if every and pos["step"] % every == 0 and pos["batch"] < steps and info.is_main:
                save_state(run)
            # Rank 0's clock decides for all ranks, so no rank waits at a collective alone.
            if deadline is not None and distributed.broadcast_flag(time.monotonic() > deadline, info):
                out_of_time = True
                break

        epoch_time = time.monotonic() - t0
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": pos["step"],
            "train_loss": pos["loss_sum"] / max(1, pos["seen"]),
            "lr": scheduler.get_last_lr()[-1],
            "images_per_s": (pos["seen"] - seen_before) * info.world_size / max(1e-9, epoch_time),
            "epoch_time_s": epoch_time,
        }
        if (epoch + 1) % cfg.train.eval_every == 0 or out_of_time or epoch == cfg.train.epochs - 1:
            record |= _validation_record(run)  # its "jaccard" selects the best checkpoint
        run.records.append(record)
        pos["batch"] = steps  # the epoch is complete (also when the time ran out in it)
        if info.is_main:
            improved = record.get("jaccard", -1.0) > run.best
            if improved:
                run.best, run.best_epoch = record["jaccard"], epoch
            save_epoch_end(run, epoch, improved)  # the state first: see dermseg.training.checkpoints
            _write_records(run.run_dir, run.records, run.labels)
        pos.update(epoch=epoch + 1, batch=0, loss_sum=0.0, seen=0)
        callbacks.on_epoch_end(record)
        if out_of_time:
            logger.info("time budget of %s min reached at epoch %d", cfg.train.max_minutes, epoch)
            break

    best_path = ckpt_dir / "best.safetensors"
    if info.is_main and cfg.train.tune_thresholds and best_path.is_file():
        # On the original images (the official metric's resolution), whether training used a cache or not.
        segmenter = Segmenter.from_checkpoint(best_path, device=str(info.device), tta=cfg.predict.tta)
        tune_and_store(segmenter, best_path, run.val_samples, labels=run.labels)
    distributed.barrier(info)
    distributed.teardown()
    if not run.records:
        return {}
    return {**run.records[-1], "best_jaccard": run.best, "best_epoch": run.best_epoch}


def _validation_record(run: Run) -> dict[str, Any]:
    """The validation scores of an epoch, at the working resolution.

    ``val_loss``, ``jaccard`` (what selects the checkpoint: the official Task 2 Jaccard, or for
    the Task 1 metric the mean per-image Jaccard) and ``jaccard_per_attribute`` (per label);
    for the Task 1 metric also the official ``threshold_jaccard`` and ``dice``.
    """
    cfg, info = run.cfg, run.info
    result = validate(
        run.model,
        run.val_loader,
        run.loss_fn,
        cfg.model.encoding,
        cfg.postprocess.thresholds,
        info.device,
        run.amp_dtype,
        info,
        labels=run.labels,
    )
    scores = result["scores"]
    if run.labels.metric == "isic2018_task1":
        mean = scores["macro_average"]
        return {
            "val_loss": result["loss"],
            "jaccard": mean["jaccard"],
            "threshold_jaccard": mean["threshold_jaccard"],
            "dice": mean["dice"],
            "jaccard_per_attribute": {run.labels.names[0]: mean["jaccard"]},
        }
    per_attribute = {
        k: v["jaccard"] for k, v in scores.items() if isinstance(v, dict) and k != "micro_average"
    }
    return {"val_loss": result["loss"], "jaccard": scores["overall"], "jaccard_per_attribute": per_attribute}


def _write_records(run_dir: Path, records: list[dict[str, Any]], labels: LabelSet) -> None:
    """metrics.jsonl and curves.png, rewritten whole from the state's records (so they match it)."""
    from dermseg.training.plots import training_curves  # matplotlib: only once an epoch has ended

    with atomic_path(run_dir / "metrics.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    training_curves(records, run_dir / "curves.png", labels)


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> Config:
    """The config of an existing run (for ``--resume``), with optional overrides such as more epochs."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError("no config.yaml: not a dermseg run folder", Path(run_dir))
    return load_config(path, overrides)
