"""Training: one function that reads top to bottom.

``train(cfg, data_dir, run_dir)`` splits the data, builds the model and the
loss from the config, and runs AdamW with warm-up + cosine decay, validating
with the official ISIC 2018 Task 2 metric every ``eval_every`` epochs and
keeping the best checkpoint by it. A run directory holds::

    config.yaml        the resolved config
    split.json         the train/val ids
    metrics.jsonl      one JSON line per epoch
    curves.png         loss and official Jaccard per epoch
    checkpoints/best.safetensors, last.safetensors   self-describing weights
    checkpoints/last_state.pt                        optimiser etc. for --resume
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from dermseg import distributed
from dermseg.checkpoint import load_train_state, save_checkpoint, save_train_state
from dermseg.config import Config, dump_config, load_config
from dermseg.data.cache import CachedIsicDataset, CacheManifest, open_cache
from dermseg.data.dataset import IsicDataset
from dermseg.data.imageio import atomic_path
from dermseg.data.layout import discover
from dermseg.data.splits import split_layout
from dermseg.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TransformConfig,
    build_eval_transform,
    build_train_transform,
)
from dermseg.encoding import num_output_channels, probabilities
from dermseg.errors import ConfigError, DermsegError
from dermseg.losses import build_loss, class_weights_from_counts, pixel_counts
from dermseg.metrics import IsicTask2Metric
from dermseg.models.factory import create_model, parameter_groups

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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def transform_config(cfg: Config) -> TransformConfig:
    """The preprocessing settings of a run config."""
    return TransformConfig(size=cfg.data.size, crop_size=cfg.data.crop_size, **asdict(cfg.augment))


def model_kwargs(cfg: Config) -> dict[str, Any]:
    """Keyword arguments of ``create_model`` from the config's model section."""
    kwargs = asdict(cfg.model)
    kwargs.pop("arch")
    encoding = kwargs.pop("encoding")
    kwargs["classes"] = num_output_channels(encoding)
    if cfg.model.arch != "unet_aspp":
        kwargs.pop("aspp_rates")
    if cfg.model.arch in ("smp_fpn", "smp_deeplabv3plus"):
        kwargs["decoder_channels"] = int(cfg.model.decoder_channels[0])  # one decoder width
    return kwargs


def checkpoint_meta(cfg: Config) -> dict[str, Any]:
    """What a checkpoint of this run says about how to use the model (see :mod:`dermseg.checkpoint`)."""
    return {
        "encoding": cfg.model.encoding,
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "input_size": cfg.data.size,
        "thresholds": list(cfg.postprocess.thresholds),
        "postprocess": asdict(cfg.postprocess),
        "postprocess_side": cfg.data.size,
        "crop_background": cfg.data.crop_background,
        "config": cfg.to_dict(),
    }


def lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up from ~0 to 1, then cosine decay to 0, as a LambdaLR factor."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def amp_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: only on CUDA; bf16 where the card supports it."""
    if device.type != "cuda" or cfg.train.amp == "off":
        return None
    if cfg.train.amp == "fp16" or (cfg.train.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def _logits(output: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    return output["masks"] if isinstance(output, dict) else output


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    encoding: str,
    thresholds: list[float],
    device: torch.device,
    dtype: torch.dtype | None = None,
    info: distributed.DistInfo | None = None,
) -> dict[str, Any]:
    """Official ISIC Task 2 scores and mean loss of ``model`` on ``loader`` (summed over DDP ranks).

    Scored at the working resolution (every image weighs the same, as officially);
    the evaluator scores at the original size.

    Returns:
        ``{"loss": float, "scores": official dict (per attribute, micro_average, overall)}``.
    """
    model.eval()
    metric = IsicTask2Metric(thresholds=thresholds)
    loss_sum, n = 0.0, 0
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        masks = batch["masks"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = _logits(model(images))
        logits = logits.float()
        loss_sum += float(loss_fn(logits, masks, labelled=batch["labelled"].to(device))) * len(images)
        n += len(images)
        metric.update(probabilities(logits, encoding).cpu(), masks.cpu())
    counts = torch.tensor(metric.counts_sum if metric.num_images else np.zeros((5, 4)), dtype=torch.float64)
    totals = torch.tensor([loss_sum, float(n)], dtype=torch.float64)
    if info is not None and info.enabled:
        counts = distributed.all_reduce_sum(counts.to(info.device), info).cpu()
        totals = distributed.all_reduce_sum(totals.to(info.device), info).cpu()
    from dermseg.metrics import scores_from_counts

    return {
        "loss": float(totals[0] / max(1.0, float(totals[1]))),
        "scores": scores_from_counts(counts.numpy()),
    }


def _open_training_cache(cfg: Config, data_dir: str | Path) -> CacheManifest:
    """The prepared cache ``cfg.data.cache``, checked against ``data_dir`` and the config.

    Raises:
        DataError: the cache is incomplete or stale (a source file changed since).
        ConfigError: it was prepared at another size or background setting.
    """
    assert cfg.data.cache is not None
    cache = open_cache(cfg.data.cache, data_dir)
    if cache.size != cfg.data.size:
        raise ConfigError(
            f"the cache was prepared at size {cache.size} but data.size is {cfg.data.size}; "
            f"set data.size={cache.size} or prepare a cache with --size {cfg.data.size}",
            Path(cfg.data.cache),
        )
    if cache.crop_background != cfg.data.crop_background:
        raise ConfigError(
            f"the cache was prepared with crop_background={cache.crop_background} but "
            f"data.crop_background is {cfg.data.crop_background}; prepare the cache again",
            Path(cfg.data.cache),
        )
    return cache


def _class_weights(
    cfg: Config, train_set: IsicDataset | CachedIsicDataset, run_dir: Path, ids: list[str]
) -> torch.Tensor | None:
    """Inverse pixel frequency weights (the thesis), computed once per split and cached in the run dir."""
    if cfg.loss.class_weights == "none":
        return None
    cache = run_dir / "class_weights.json"
    key = {"ids": len(ids), "first": ids[:3], "size": cfg.data.size, "encoding": cfg.model.encoding}
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            return torch.tensor(data["weights"], dtype=torch.float32)
    masks = (train_set.load(i)[1] for i in range(len(train_set)))
    weights = class_weights_from_counts(pixel_counts(masks, cfg.model.encoding))
    with atomic_path(cache) as tmp:
        tmp.write_text(json.dumps({"key": key, "weights": weights.tolist()}))
    return weights


def _write_curves(run_dir: Path, records: list[dict[str, Any]]) -> None:
    from dermseg.plots import training_curves

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
        resume: continue from ``run_dir/checkpoints/last_state.pt``.
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
    callbacks = callbacks if (callbacks is not None and info.is_main) else _Silent()
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    seed_everything(cfg.seed + info.rank)

    # --- data: the official validation split when present, else a stratified hold-out
    layout = discover(data_dir)
    split = split_layout(data_dir, val_fraction=cfg.data.val_fraction, seed=cfg.data.split_seed)
    by_id = {s.isic_id: s for s in layout.samples}
    train_ids = split.train[: cfg.data.limit] if cfg.data.limit else split.train
    val_samples = [by_id[i] for i in split.val]
    tcfg = transform_config(cfg)
    train_transform = build_train_transform(tcfg, seed=cfg.seed + info.rank)
    train_set: IsicDataset | CachedIsicDataset
    val_set: IsicDataset | CachedIsicDataset
    if cfg.data.cache:
        # Decoded, cropped and resized once by `dermseg prepare`; the eval transform's resize
        # to data.size is then a no-op, so validation sees the same pixels as without the cache.
        cache = _open_training_cache(cfg, data_dir)
        train_set = CachedIsicDataset(cache, train_ids, train_transform)
        val_set = CachedIsicDataset(cache, split.val, build_eval_transform(tcfg))
    else:
        train_set = IsicDataset(
            [by_id[i] for i in train_ids],
            train_transform,
            decode_side=cfg.data.size,
            crop_background=cfg.data.crop_background,
        )
        val_set = IsicDataset(
            val_samples,
            build_eval_transform(tcfg),
            decode_side=cfg.data.size,
            crop_background=cfg.data.crop_background,
        )
    if len(train_set) == 0 or len(val_set) == 0:
        raise ConfigError(f"need training and validation images; got {len(train_set)} and {len(val_set)}")
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(run_dir / "config.yaml") as tmp:
            tmp.write_text(dump_config(cfg))
        with atomic_path(run_dir / "split.json") as tmp:
            tmp.write_text(json.dumps(split.to_dict(), indent=1))
    distributed.barrier(info)

    pin = info.device.type == "cuda"
    sampler = (
        DistributedSampler(train_set, info.world_size, info.rank, shuffle=True, seed=cfg.seed)
        if (info.enabled)
        else None
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    workers = cfg.data.workers
    train_loader = DataLoader(
        train_set,
        batch_size=cfg.train.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        drop_last=len(train_set) >= cfg.train.batch_size * info.world_size,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=generator,
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
    weights = _class_weights(cfg, train_set, run_dir, train_ids) if info.is_main or not info.enabled else None
    if info.enabled and cfg.loss.class_weights != "none":
        distributed.barrier(info)
        weights = _class_weights(cfg, train_set, run_dir, train_ids)
    loss_fn = build_loss(asdict(cfg.loss), cfg.model.encoding, class_weights=weights).to(info.device)
    groups = parameter_groups(model)
    optimizer = torch.optim.AdamW(
        [
            {"params": groups["encoder"], "lr": cfg.train.lr * cfg.train.encoder_lr_mult},
            {"params": groups["decoder"], "lr": cfg.train.lr},
        ],
        weight_decay=cfg.train.weight_decay,
    )
    steps_per_epoch = len(train_loader)
    if cfg.train.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps_per_epoch)
    total_steps = steps_per_epoch * cfg.train.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, round(cfg.train.warmup_epochs * steps_per_epoch))
    )
    dtype = amp_dtype(cfg, info.device)
    # fp16 needs loss scaling against underflow; bf16 has float32's range and does not.
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    start_epoch, step, best, best_epoch, records = 0, 0, -1.0, -1, []
    if resume:
        state = load_train_state(ckpt_dir / "last_state.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, step = state["epoch"] + 1, state["step"]
        best, best_epoch, records = state["best"], state["best_epoch"], state["records"]
        _set_rng_state(state["rng"])
        generator.set_state(state["loader_rng"])
        logger.info("resumed %s at epoch %d, step %d", run_dir, start_epoch, step)

    train_model: nn.Module = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if info.device.type == "cuda" else None
        )
    if cfg.train.compile:
        train_model = torch.compile(train_model)
    meta = {**checkpoint_meta(cfg), "encoder_init": getattr(model, "dermseg_encoder_weights", None)}

    started = time.monotonic()
    deadline = started + 60 * cfg.train.max_minutes if cfg.train.max_minutes else None
    out_of_time = False
    for epoch in range(start_epoch, cfg.train.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        train_model.train()
        callbacks.on_epoch_start(epoch, steps_per_epoch)
        loss_sum, seen, t0 = 0.0, 0, time.monotonic()
        for i, batch in enumerate(train_loader):
            if i >= steps_per_epoch:
                break
            images = batch["image"].to(info.device, non_blocking=True)
            masks = batch["masks"].to(info.device, non_blocking=True)
            labelled = batch["labelled"].to(info.device, non_blocking=True)
            if cfg.train.channels_last and info.device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(info.device.type, dtype=dtype, enabled=dtype is not None):
                logits = _logits(train_model(images))
            loss = loss_fn(logits.float(), masks, labelled=labelled)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss is {loss.item()} at epoch {epoch}, step {step}; the last good checkpoint is kept "
                    "(lower train.lr or enable train.grad_clip)",
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
            step += 1
            loss_sum += loss.item() * len(images)
            seen += len(images)
            callbacks.on_step(loss.item(), seen * info.world_size / max(1e-9, time.monotonic() - t0))
            if deadline is not None and distributed.broadcast_flag(time.monotonic() > deadline, info):
                out_of_time = True
                break
        epoch_time = time.monotonic() - t0
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "train_loss": loss_sum / max(1, seen),
            "lr": scheduler.get_last_lr()[-1],
            "images_per_s": seen * info.world_size / max(1e-9, epoch_time),
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
        if info.is_main:
            if record.get("jaccard", -1.0) > best:
                best, best_epoch = record["jaccard"], epoch
                save_checkpoint(
                    ckpt_dir / "best.safetensors", model, {**meta, "epoch": epoch, "jaccard": best}
                )
            save_checkpoint(ckpt_dir / "last.safetensors", model, {**meta, "epoch": epoch})
            save_train_state(
                ckpt_dir / "last_state.pt",
                {
                    "epoch": epoch,
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "best": best,
                    "best_epoch": best_epoch,
                    "records": records,
                    "rng": _get_rng_state(),
                    "loader_rng": generator.get_state(),
                },
            )
            with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            _write_curves(run_dir, records)
        callbacks.on_epoch_end(record)
        if out_of_time:
            logger.info("time budget of %s min reached at epoch %d", cfg.train.max_minutes, epoch)
            break
    if info.is_main and cfg.train.tune_thresholds and (ckpt_dir / "best.safetensors").is_file():
        # Tuned on the original images (the official metric's resolution), cache or not.
        _tune_best(ckpt_dir / "best.safetensors", val_samples, info.device)
    distributed.barrier(info)
    distributed.teardown()
    return {**records[-1], "best_jaccard": best, "best_epoch": best_epoch} if records else {}


def _tune_best(path: Path, samples: list, device: torch.device) -> None:
    """Tune the best checkpoint's thresholds on the validation images and store them in it."""
    from dermseg.checkpoint import update_checkpoint_meta
    from dermseg.evaluate_model import tune_checkpoint
    from dermseg.predict import Segmenter

    report = tune_checkpoint(Segmenter.from_checkpoint(path, device=str(device)), samples)
    tuning = {k: report[k] for k in ("overall_at_default", "overall_tuned", "steps", "images")}
    update_checkpoint_meta(
        path,
        {
            "postprocess": report["settings"],
            "thresholds": report["thresholds"],
            "tuning": {**tuning, "subset": "val"},
        },
    )
    logger.info(
        "tuned thresholds %s: official Jaccard %.4f -> %.4f on validation",
        report["thresholds"],
        report["overall_at_default"],
        report["overall_tuned"],
    )


def _get_rng_state() -> dict[str, Any]:
    """All RNG states as plain data (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> Config:
    """The config of an existing run (for ``--resume``), with optional overrides such as more epochs."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError("no config.yaml: not a dermseg run folder", Path(run_dir))
    return load_config(path, overrides)
