"""Training: one function that reads top to bottom.

``train(cfg, data_dir, run_dir)`` splits the data, builds the model and the
loss from the config, and runs AdamW with warm-up + cosine decay, validating
with the official ISIC 2018 Task 2 metric every ``eval_every`` epochs and
keeping the best checkpoint by it. A run directory holds::

    config.yaml        the resolved config
    provenance.json    versions, git commit, device, command, data manifest hash
    split.json         the train/val ids
    metrics.jsonl      one JSON line per epoch
    curves.png         loss and official Jaccard per epoch
    checkpoints/best.safetensors, last.safetensors   self-describing weights
    checkpoints/last_state.pt                        everything --resume needs

Crash safety: every file is written atomically (temporary file, fsync, rename), so a
kill at any moment leaves the previous checkpoint intact. The state holds the model,
optimiser, scheduler, AMP scaler, epoch, position in the epoch, the partial epoch's
loss and every RNG; the training order and each image's augmentation are functions of
the seed (:mod:`dermseg.data.sampling`). A run killed mid-epoch and resumed therefore
ends, with ``deterministic: true`` on CPU, with bit-identical weights.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from dermseg.config import Config, dump_config, load_config
from dermseg.data.cache import CachedIsicDataset
from dermseg.data.check import check_headers
from dermseg.data.dataset import IsicDataset
from dermseg.data.layout import discover
from dermseg.data.sampling import ResumableSampler, SeededItems
from dermseg.data.splits import split_from_config
from dermseg.data.transforms import build_eval_transform, build_train_transform
from dermseg.errors import ConfigError, DataError, DermsegError
from dermseg.files import atomic_path
from dermseg.losses import build_loss
from dermseg.losses.presence import presence_loss
from dermseg.models.checkpoint import load_train_state, save_checkpoint, save_train_state
from dermseg.models.factory import create_model, parameter_groups
from dermseg.training import distributed
from dermseg.training.reproducibility import (
    get_rng_state,
    provenance,
    seed_everything,
    set_deterministic,
    set_rng_state,
)
from dermseg.training.setup import (
    amp_dtype,
    checkpoint_meta,
    class_weights,
    input_normalization,
    lr_lambda,
    model_kwargs,
    open_training_cache,
    sampling_weights,
    transform_config,
)
from dermseg.training.validation import model_logits, validate

__all__ = [
    "Callbacks",
    "TrainingDiverged",
    "amp_dtype",
    "checkpoint_meta",
    "lr_lambda",
    "model_kwargs",
    "resume_config",
    "train",
    "transform_config",
    "validate",
]

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


def _data_files(layout: Any) -> list[Path]:
    files = []
    for s in layout.samples:
        files.append(s.image_path)
        files.extend(p for p in s.mask_paths if p is not None)
        if s.lesion_mask_path is not None:
            files.append(s.lesion_mask_path)
    return files


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def _write_records(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """metrics.jsonl and curves.png, rewritten whole from the state's records (so they match it)."""
    from dermseg.training.plots import training_curves

    with atomic_path(run_dir / "metrics.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    training_curves(records, run_dir / "curves.png")


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
        The last epoch's record plus ``best_jaccard`` and ``best_epoch``.

    Raises:
        DermsegError: bad data or config, or a diverged loss (:class:`TrainingDiverged`).
    """
    info = distributed.setup(device)
    # Denormal floats appear in the weights after a few steps and make CPU kernels ~40x slower.
    torch.set_flush_denormal(True)
    set_deterministic(cfg.deterministic)
    callbacks = callbacks if (callbacks is not None and info.is_main) else _Silent()
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    seed_everything(cfg.seed + info.rank)

    # --- data: the official validation split when present, else a stratified hold-out
    layout = discover(data_dir)
    layout.raise_for_problems()  # a mask without its image etc.: the folder is not what it seems
    split = split_from_config(data_dir, asdict(cfg.data))
    by_id = {s.isic_id: s for s in layout.samples}
    train_ids = split.train[: cfg.data.limit] if cfg.data.limit else split.train
    val_samples = [by_id[i] for i in split.val]
    tcfg = transform_config(cfg)
    # Reseeded for every item from the sampler (see dermseg.data.sampling).
    train_transform = build_train_transform(tcfg, seed=cfg.seed)
    # The encoder's input normalisation; a resumed run keeps the one its state records.
    resumed_state = load_train_state(ckpt_dir / "last_state.pt") if resume else None
    norm = input_normalization(cfg, resumed_state)
    train_set: IsicDataset | CachedIsicDataset
    val_set: IsicDataset | CachedIsicDataset
    if cfg.data.cache:
        # Decoded, cropped and resized once by `dermseg prepare`; the eval transform's resize
        # to data.size is then a no-op, so validation sees the same pixels as without the cache.
        cache = open_training_cache(cfg, data_dir)
        train_set = CachedIsicDataset(
            cache, train_ids, train_transform, lesion_masks=cfg.augment.lesion_crop > 0, **norm
        )
        val_set = CachedIsicDataset(cache, split.val, build_eval_transform(tcfg), **norm)
    else:
        train_set = IsicDataset(
            [by_id[i] for i in train_ids],
            train_transform,
            decode_side=cfg.data.size,
            crop_background=cfg.data.crop_background,
            lesion_masks=cfg.augment.lesion_crop > 0,
            **norm,
        )
        val_set = IsicDataset(
            val_samples,
            build_eval_transform(tcfg),
            decode_side=cfg.data.size,
            crop_background=cfg.data.crop_background,
            **norm,
        )
    if cfg.augment.lesion_crop > 0 and not any(s.lesion_mask_path for s in layout.samples):
        logger.warning(
            "augment.lesion_crop is set but %s has no Task 1 lesion masks: crops stay uniform", data_dir
        )
    if len(train_set) == 0 or len(val_set) == 0:
        raise ConfigError(f"need training and validation images; got {len(train_set)} and {len(val_set)}")
    if not cfg.data.cache:
        # Header of every file before anything is written: a bad file fails now, not in epoch 3,
        # and leaves no half-made run folder.
        check_headers([by_id[i] for i in train_ids] + val_samples, lesion_masks=cfg.augment.lesion_crop > 0)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(run_dir / "config.yaml") as tmp:
            tmp.write_text(dump_config(cfg))
        _write_json(run_dir / "split.json", split.to_dict())
    run_provenance = provenance(data_dir, _data_files(layout), info.device)
    if info.is_main:
        _write_json(run_dir / "provenance.json", run_provenance)
    distributed.barrier(info)

    pin = info.device.type == "cuda"
    # The order of epoch e is a function of (seed, e) and can start at any batch: resumable.
    sampler = ResumableSampler(
        len(train_set),
        seed=cfg.seed,
        batch_size=cfg.train.batch_size,
        rank=info.rank,
        world_size=info.world_size,
        drop_last=len(train_set) >= cfg.train.batch_size * info.world_size,
        weights=sampling_weights(cfg, train_set, run_dir, train_ids),
    )
    workers = cfg.data.workers
    train_loader = DataLoader(
        SeededItems(train_set),
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        drop_last=sampler.drop_last,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=torch.Generator().manual_seed(cfg.seed),  # keeps the global RNG untouched
    )
    # Validation images keep their aspect ratio, so they go one by one; each rank scores a shard.
    val_loader = DataLoader(
        Subset(val_set, list(range(info.rank, len(val_set), info.world_size))),
        batch_size=1,
        num_workers=min(workers, 2),
        pin_memory=pin,
    )

    # --- model, loss, optimiser
    model = create_model(cfg.model.arch, **model_kwargs(cfg)).to(info.device)
    if cfg.train.channels_last and info.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    weights = class_weights(cfg, train_set, run_dir, train_ids) if info.is_main or not info.enabled else None
    if info.enabled and cfg.loss.class_weights != "none":
        distributed.barrier(info)
        weights = class_weights(cfg, train_set, run_dir, train_ids)
    loss_cfg = asdict(cfg.loss)
    presence_weight = float(loss_cfg.pop("presence_weight"))
    loss_fn = build_loss(loss_cfg, cfg.model.encoding, class_weights=weights).to(info.device)
    groups = parameter_groups(model)
    optimizer = torch.optim.AdamW(
        [
            {"params": groups["encoder"], "lr": cfg.train.lr * cfg.train.encoder_lr_mult},
            {"params": groups["decoder"], "lr": cfg.train.lr},
        ],
        weight_decay=cfg.train.weight_decay,
    )
    steps_per_epoch = sampler.batches_per_epoch()
    if cfg.train.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps_per_epoch)
    total_steps = steps_per_epoch * cfg.train.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, round(cfg.train.warmup_epochs * steps_per_epoch))
    )
    dtype = amp_dtype(cfg, info.device)
    # fp16 needs loss scaling against underflow; bf16 has float32's range and does not.
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    # Where the run stands: epoch, batches done in it, global step, the partial epoch's loss.
    pos = {"epoch": 0, "batch": 0, "step": 0, "loss_sum": 0.0, "seen": 0}
    best, best_epoch, records = -1.0, -1, []
    if resume:
        for stale in ckpt_dir.glob(".*.tmp*"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)
        state = resumed_state
        assert state is not None
        if "position" not in state:
            raise DataError("training state of an older dermseg version: cannot resume", ckpt_dir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        pos = dict(state["position"])
        if pos["batch"] >= steps_per_epoch:  # saved at an epoch's end: start the next one
            pos = {"epoch": pos["epoch"] + 1, "batch": 0, "step": pos["step"], "loss_sum": 0.0, "seen": 0}
        best, best_epoch, records = state["best"], state["best_epoch"], state["records"]
        set_rng_state(state["rng"])
        logger.info(
            "resumed %s at epoch %d, batch %d, step %d", run_dir, pos["epoch"], pos["batch"], pos["step"]
        )

    def save_state() -> None:
        """Everything --resume needs; atomic, so a kill while writing keeps the previous one."""
        save_train_state(
            ckpt_dir / "last_state.pt",
            {
                "position": dict(pos),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "best": best,
                "best_epoch": best_epoch,
                "records": records,
                "rng": get_rng_state(),
                "normalization": norm,
            },
        )

    train_model: nn.Module = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if info.device.type == "cuda" else None
        )
    if cfg.train.compile:
        train_model = torch.compile(train_model)
    meta = {
        **checkpoint_meta(cfg, norm),
        "encoder_init": getattr(model, "dermseg_encoder_weights", None),
        "provenance": {k: run_provenance[k] for k in ("versions", "git", "device", "data")},
    }

    started = time.monotonic()
    deadline = started + 60 * cfg.train.max_minutes if cfg.train.max_minutes else None
    out_of_time = False
    for epoch in range(pos["epoch"], cfg.train.epochs):
        sampler.set_epoch(epoch, start_batch=pos["batch"])
        train_model.train()
        callbacks.on_epoch_start(epoch, steps_per_epoch)
        t0, seen_before = time.monotonic(), pos["seen"]
        for i, batch in enumerate(train_loader, start=pos["batch"]):
            if i >= steps_per_epoch:
                break
            images = batch["image"].to(info.device, non_blocking=True)
            masks = batch["masks"].to(info.device, non_blocking=True)
            labelled = batch["labelled"].to(info.device, non_blocking=True)
            if cfg.train.channels_last and info.device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(info.device.type, dtype=dtype, enabled=dtype is not None):
                output = train_model(images)
            loss = loss_fn(model_logits(output).float(), masks, labelled=labelled)
            if isinstance(output, dict) and "presence" in output:  # the auxiliary image-level task
                loss = loss + presence_weight * presence_loss(output["presence"], masks, labelled)
            if not torch.isfinite(loss):
                # Stop before the bad step touches the weights; last_state.pt is the last good one.
                raise TrainingDiverged(
                    f"loss is {loss.item()} at epoch {epoch}, step {pos['step']}; training stopped and "
                    "the last good checkpoint is kept (lower train.lr or enable train.grad_clip)",
                    run_dir,
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
            every = cfg.train.checkpoint_every
            if every and pos["step"] % every == 0 and pos["batch"] < steps_per_epoch and info.is_main:
                save_state()
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
        last_epoch = out_of_time or epoch == cfg.train.epochs - 1
        if (epoch + 1) % cfg.train.eval_every == 0 or last_epoch:
            result = validate(
                model,
                val_loader,
                loss_fn,
                cfg.model.encoding,
                cfg.postprocess.thresholds,
                info.device,
                dtype,
                info,
            )
            record["val_loss"] = result["loss"]
            record["jaccard"] = result["scores"]["overall"]
            record["jaccard_per_attribute"] = {
                k: v["jaccard"]
                for k, v in result["scores"].items()
                if isinstance(v, dict) and k != "micro_average"
            }
        records.append(record)
        pos["batch"] = steps_per_epoch  # the epoch is complete (also when the time ran out in it)
        if info.is_main:
            if record.get("jaccard", -1.0) > best:
                best, best_epoch = record["jaccard"], epoch
                save_checkpoint(
                    ckpt_dir / "best.safetensors", model, {**meta, "epoch": epoch, "jaccard": best}
                )
            save_checkpoint(ckpt_dir / "last.safetensors", model, {**meta, "epoch": epoch})
            save_state()
            _write_records(run_dir, records)
        pos.update(epoch=epoch + 1, batch=0, loss_sum=0.0, seen=0)
        callbacks.on_epoch_end(record)
        if out_of_time:
            logger.info("time budget of %s min reached at epoch %d", cfg.train.max_minutes, epoch)
            break
    if info.is_main and cfg.train.tune_thresholds and (ckpt_dir / "best.safetensors").is_file():
        # Tuned on the original images (the official metric's resolution), cache or not.
        _tune_best(ckpt_dir / "best.safetensors", val_samples, info.device, tta=cfg.predict.tta)
    distributed.barrier(info)
    distributed.teardown()
    return {**records[-1], "best_jaccard": best, "best_epoch": best_epoch} if records else {}


def _tune_best(path: Path, samples: list, device: torch.device, tta: bool = False) -> None:
    """Tune the best checkpoint's thresholds on the validation images and store them in it."""
    from dermseg.evaluation.model import tune_checkpoint
    from dermseg.inference.segmenter import Segmenter
    from dermseg.models.checkpoint import update_checkpoint_meta

    report = tune_checkpoint(Segmenter.from_checkpoint(path, device=str(device), tta=tta), samples)
    tuning = {k: report[k] for k in ("overall_at_default", "overall_tuned", "steps", "images")}
    update_checkpoint_meta(
        path,
        {
            "postprocess": report["settings"],
            "thresholds": report["thresholds"],
            "tuning": {**tuning, "subset": "val", "tta": tta},
        },
    )
    logger.info(
        "tuned thresholds %s: official Jaccard %.4f -> %.4f on validation",
        report["thresholds"],
        report["overall_at_default"],
        report["overall_tuned"],
    )


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> Config:
    """The config of an existing run (for ``--resume``), with optional overrides such as more epochs."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError("no config.yaml: not a dermseg run folder", Path(run_dir))
    return load_config(path, overrides)
