"""What a training run is built from: :func:`build_run` turns a config, a data folder and a run
folder into a :class:`Run` (data, model, loss, optimiser, schedule, where the run stands), so the
loop in :mod:`dermseg.training.loop` only trains.

The run's label set (``data.labels``, :mod:`dermseg.labels`) is the source of truth for what is
segmented: it reads the data folder (one refused when it clearly holds another set), gives the
number of mask channels C, the output channels, the validation metric, and is recorded in every
checkpoint (``meta["labels"]``; a checkpoint without it is of the Task 2 attributes).

Each piece is built in one place from its config section: the data by
:mod:`dermseg.training.data`, the model by :func:`build_model` (:func:`model_kwargs`: the model
section, with the number of output channels derived from its encoding and the label set), the loss by
:func:`~dermseg.losses.build_loss` from the loss section (with the class weights
:func:`~dermseg.training.data.class_weights` counts on the training masks), the schedule by
:func:`lr_lambda`. :func:`save_state` writes what ``--resume`` restores.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dermseg.config import Config, config_label_set, dump_config
from dermseg.data.layout import IsicLayout, IsicSample
from dermseg.data.splits import Split, split_from_config
from dermseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dermseg.encoding import num_output_channels
from dermseg.errors import DataError
from dermseg.files import atomic_path
from dermseg.labels import LabelSet
from dermseg.losses import CombinedLoss, build_loss
from dermseg.models.checkpoint import load_train_state, save_train_state
from dermseg.models.factory import create_model, parameter_groups
from dermseg.models.normalization import encoder_normalization
from dermseg.training import distributed
from dermseg.training.data import (
    Dataset,
    TrainItems,
    TrainSampler,
    build_datasets,
    build_loaders,
    class_weights,
    sampling_weights,
    training_layout,
    training_sampler,
    with_synthetic_mix,
    with_weak_labels,
)
from dermseg.training.distributed import DistInfo
from dermseg.training.reproducibility import get_rng_state, provenance, set_rng_state

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """Everything a training run is made of, built by :func:`build_run`.

    The loop reads it and updates where the run stands (``position``, ``best``, ``best_epoch``,
    ``records``); :func:`save_state` writes that with the weights for ``--resume``.

    Attributes:
        cfg: the run config.
        info: this process's rank, world size and device.
        run_dir: the run folder.
        labels: the run's label set (``data.labels``), C labels.
        split: the train/val ids.
        val_samples: the validation images at their original size (thresholds are tuned on them).
        train_set, val_set: ``image (3, H, W)`` float32 + ``masks (C, H, W)`` uint8 items; with
            ``data.weak_labels`` the training set is the masked images followed by the
            weak-labelled ones (:class:`~dermseg.data.weak_dataset.MixedDataset`); with
            ``data.synthetic_mix`` those are followed by the generator's draws
            (:class:`~dermseg.data.synthetic_draws.WithSyntheticDraws`).
        sampler: the resumable order of the training images (with ``data.synthetic_mix``, the
            same number of draws in every batch: :mod:`dermseg.data.mix_sampling`).
        train_loader: training batches: ``image (B, 3, crop, crop)``, ``masks (B, C, crop, crop)``,
            ``labelled (B, C)``; with ``data.weak_labels`` also ``weak (B, C)`` bool and
            ``weak_presence (B, C)`` float (image-level labels).
        val_loader: this rank's shard of the validation images, one at a time.
        model: the bare model (checkpoints and validation use it).
        train_model: what the training step runs: ``model``, in DDP and ``torch.compile`` as set.
        loss_fn: the loss; called once per step on the model's whole output.
        optimizer, scheduler: AdamW (encoder and decoder groups) and its warm-up + cosine factor.
        scaler: the AMP gradient scaler (enabled for float16 only).
        amp_dtype: the autocast dtype, ``None`` for float32.
        steps_per_epoch: optimiser steps in one epoch.
        normalization: the image normalisation the model is trained with.
        meta: what every checkpoint of the run says about itself.
        position: ``epoch``, ``batch`` (done in it), ``step``, ``loss_sum`` and ``seen`` (the
            partial epoch's loss and image count).
        best, best_epoch: the best validation score so far (the label set's metric: the official
            Task 2 Jaccard, or the mean per-image Jaccard for Task 1) and its epoch (-1 before any).
        records: one dict per finished epoch.
    """

    cfg: Config
    info: DistInfo
    run_dir: Path
    labels: LabelSet
    split: Split
    val_samples: list[IsicSample]
    train_set: TrainItems
    val_set: Dataset
    sampler: TrainSampler
    train_loader: DataLoader
    val_loader: DataLoader
    model: nn.Module
    train_model: nn.Module
    loss_fn: CombinedLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    steps_per_epoch: int
    normalization: dict[str, list[float]]
    meta: dict[str, Any]
    position: dict[str, Any]
    best: float = -1.0
    best_epoch: int = -1
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"


def build_run(
    cfg: Config, data_dir: str | Path, run_dir: str | Path, info: DistInfo, *, resume: bool = False
) -> Run:
    """Build a training run from its config, and write the run folder's description.

    Checks the data (every file's header before anything is written, so a bad file fails now
    and leaves no half-made run folder), writes ``config.yaml``, ``split.json`` and
    ``provenance.json``, and with ``resume`` restores the state in ``checkpoints/last_state.pt``
    (weights, optimiser, schedule, scaler, position, every RNG).

    Args:
        cfg: the run config.
        data_dir: dataset folder (official layout or flat folder with masks).
        run_dir: the run folder.
        info: this process's place (:func:`dermseg.training.distributed.setup`).
        resume: continue the run found in ``run_dir``.

    Returns:
        The :class:`Run`.

    Raises:
        DataError: a bad data folder (one holding another label set than ``data.labels``
            included), cache or training state.
        ConfigError: no training or validation images, or a config that cannot be built.
    """
    run_dir = Path(run_dir)
    labels = config_label_set(cfg)
    layout = training_layout(data_dir, labels)
    # The official validation split when present, else a stratified hold-out (or a fold; PH2:
    # stratified on the diagnosis).
    split = split_from_config(data_dir, {**asdict(cfg.data), "labels": labels.to_meta()})
    by_id = {s.isic_id: s for s in layout.samples}
    train_ids = split.train[: cfg.data.limit] if cfg.data.limit else split.train
    val_samples = [by_id[i] for i in split.val]
    # The encoder's input normalisation; a resumed run keeps the one its state records.
    state = load_train_state(run_dir / "checkpoints" / "last_state.pt") if resume else None
    norm = input_normalization(cfg, state)
    train_set, val_set = build_datasets(cfg, data_dir, layout, train_ids, split.val, norm)
    train_items = with_weak_labels(cfg, train_set, norm)  # checked before the run folder is written
    run_provenance = _write_run_files(cfg, data_dir, run_dir, info, layout, split)

    weights = sampling_weights(cfg, train_set, run_dir, train_ids)
    if weights is not None and len(train_items) > len(weights):
        # mean 1 over the masked images: a weak-labelled image is drawn as often as an average one
        weights = np.concatenate([weights, np.ones(len(train_items) - len(weights))])
    sampler = training_sampler(cfg, info, len(train_items), len(train_set), weights)
    train_items = with_synthetic_mix(cfg, train_items, norm)  # the draws follow the real items
    train_loader, val_loader = build_loaders(cfg, info, train_items, val_set, sampler)

    model = build_model(cfg).to(info.device)
    if cfg.train.channels_last and info.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    # Rank 0 counts the class weights (and caches them in the run folder); the others read its cache.
    weights = class_weights(cfg, train_set, run_dir, train_ids) if info.is_main or not info.enabled else None
    if info.enabled and cfg.loss.class_weights != "none":
        distributed.barrier(info)
        weights = class_weights(cfg, train_set, run_dir, train_ids)
    loss_fn = build_loss(
        **{**asdict(cfg.loss), "class_weights": weights},
        encoding=cfg.model.encoding,
        num_labels=labels.num_labels,
    )
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
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lr_lambda(steps_per_epoch * cfg.train.epochs, round(cfg.train.warmup_epochs * steps_per_epoch)),
    )
    dtype = amp_dtype(cfg, info.device)
    # fp16 needs loss scaling against underflow; bf16 has float32's range and does not.
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

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
    run = Run(
        cfg=cfg,
        info=info,
        run_dir=run_dir,
        labels=labels,
        split=split,
        val_samples=val_samples,
        train_set=train_items,
        val_set=val_set,
        sampler=sampler,
        train_loader=train_loader,
        val_loader=val_loader,
        model=model,
        train_model=train_model,
        loss_fn=loss_fn.to(info.device),
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        amp_dtype=dtype,
        steps_per_epoch=steps_per_epoch,
        normalization=norm,
        meta=meta,
        position={"epoch": 0, "batch": 0, "step": 0, "loss_sum": 0.0, "seen": 0},
    )
    if state is not None:
        _restore(run, state)
    return run


def _write_run_files(
    cfg: Config, data_dir: str | Path, run_dir: Path, info: DistInfo, layout: IsicLayout, split: Split
) -> dict[str, Any]:
    """``config.yaml``, ``split.json`` and ``provenance.json`` (rank 0); returns the provenance."""
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(run_dir / "config.yaml") as tmp:
            tmp.write_text(dump_config(cfg))
        _write_json(run_dir / "split.json", split.to_dict())
    files = []
    for s in layout.samples:
        files += [s.image_path, *(p for p in s.mask_paths if p is not None)]
        if s.lesion_mask_path is not None and s.lesion_mask_path not in s.mask_paths:  # a lesion set's own
            files.append(s.lesion_mask_path)
    run_provenance = provenance(data_dir, files, info.device)
    if info.is_main:
        _write_json(run_dir / "provenance.json", run_provenance)
    distributed.barrier(info)
    return run_provenance


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def _restore(run: Run, state: dict[str, Any]) -> None:
    """Continue ``run`` from a training state of :func:`save_state` (mid-epoch too).

    Raises:
        DataError: a state of a dermseg version that did not record its position.
    """
    for stale in run.ckpt_dir.glob(".*.tmp*"):  # left by a process killed while writing
        stale.unlink(missing_ok=True)
    if "position" not in state:
        raise DataError("training state of an older dermseg version: cannot resume", run.ckpt_dir)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    pos = dict(state["position"])
    if pos["batch"] >= run.steps_per_epoch:  # saved at an epoch's end: start the next one
        pos = {"epoch": pos["epoch"] + 1, "batch": 0, "step": pos["step"], "loss_sum": 0.0, "seen": 0}
    run.position = pos
    run.best, run.best_epoch, run.records = state["best"], state["best_epoch"], state["records"]
    set_rng_state(state["rng"])
    logger.info(
        "resumed %s at epoch %d, batch %d, step %d", run.run_dir, pos["epoch"], pos["batch"], pos["step"]
    )


def save_state(run: Run) -> None:
    """Everything ``--resume`` needs, in ``checkpoints/last_state.pt``.

    Plain tensors, numbers and dicts only (no classes, so no module paths): states keep loading
    whatever moves in the code. Atomic, so a kill while writing keeps the previous one.
    """
    save_train_state(
        run.ckpt_dir / "last_state.pt",
        {
            "position": dict(run.position),
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "best": run.best,
            "best_epoch": run.best_epoch,
            "records": run.records,
            "rng": get_rng_state(),
            "normalization": run.normalization,
        },
    )


#: Fields of the model section that an arch's builder takes otherwise, until the smp peers' builders
#: take the section as it is: they have no thesis ASPP (smp's DeepLabV3+ keeps its own atrous
#: rates), and FPN's and DeepLabV3+'s decoders have one width, the section's first.
_NOT_TAKEN: dict[str, tuple[str, ...]] = {
    "smp_unet": ("aspp_rates",),
    "smp_unetplusplus": ("aspp_rates",),
    "smp_fpn": ("aspp_rates",),
    "smp_deeplabv3plus": ("aspp_rates",),
}
_ONE_WIDTH: tuple[str, ...] = ("smp_fpn", "smp_deeplabv3plus")


def model_kwargs(cfg: Config) -> dict[str, Any]:
    """The keyword arguments of :func:`~dermseg.models.factory.create_model` (``arch`` included).

    The model section as it is, except ``encoding``, which gives with the label set the one
    derived value: ``classes``, the number of output channels (C sigmoid maps for
    ``multilabel``, C + 1 softmax classes for ``multiclass``; C = 5 for the Task 2 attributes,
    1 for a lesion).
    """
    kwargs = asdict(cfg.model)
    kwargs["classes"] = num_output_channels(kwargs.pop("encoding"), config_label_set(cfg).num_labels)
    for name in _NOT_TAKEN.get(cfg.model.arch, ()):
        kwargs.pop(name)
    if cfg.model.arch in _ONE_WIDTH:
        kwargs["decoder_channels"] = int(cfg.model.decoder_channels[0])
    return kwargs


def build_model(cfg: Config) -> nn.Module:
    """The model of a run config, initialised from the global torch RNG (seed it first).

    Returns:
        A model mapping ``(B, 3, H, W)`` images to ``(B, K, H, W)`` logits (K: see
        :func:`model_kwargs`; or to ``{"masks", "presence"}`` with ``model.presence_head``),
        describing itself for checkpoints.

    Raises:
        ConfigError: an unknown arch or options it does not take.
    """
    return create_model(**model_kwargs(cfg))


def input_normalization(cfg: Config, resumed_state: dict[str, Any] | None = None) -> dict[str, list[float]]:
    """The image normalisation of a run: ``{"mean": [3 floats], "std": [3 floats]}`` (0-1 scale).

    A new run uses its encoder's pretrained normalisation
    (:func:`~dermseg.models.normalization.encoder_normalization`, from timm's pretrained config;
    e.g. mean = std = 0.5 for ``inception_v3`` and ``tf_efficientnet_lite0``). A resumed run
    keeps the normalisation it started with: the one its training state records, or ImageNet's
    for a state written before dermseg recorded it (those versions always used ImageNet's).

    Args:
        cfg: the run config.
        resumed_state: the training state being resumed (``last_state.pt``), if any.
    """
    if resumed_state is not None:
        recorded = resumed_state.get("normalization")
        if recorded is None:
            return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        return {"mean": [float(v) for v in recorded["mean"]], "std": [float(v) for v in recorded["std"]]}
    mean, std = encoder_normalization(cfg.model.encoder_name)
    return {"mean": list(mean), "std": list(std)}


def checkpoint_meta(cfg: Config, normalization: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """What a checkpoint of this run says about how to use the model (see :mod:`dermseg.models.checkpoint`).

    ``labels`` is the run's label set (:meth:`~dermseg.labels.LabelSet.to_meta`): what the
    output channels are, how their mask files are named and which metric scores them.

    Args:
        cfg: the run config.
        normalization: the image normalisation the model is trained with; ``None`` for
            :func:`input_normalization` of a new run (the encoder's).
    """
    return {
        "labels": config_label_set(cfg).to_meta(),
        "encoding": cfg.model.encoding,
        "normalization": normalization if normalization is not None else input_normalization(cfg),
        "input_size": cfg.data.size,
        "thresholds": list(cfg.postprocess.thresholds),
        "postprocess": asdict(cfg.postprocess),
        "postprocess_side": cfg.data.size,
        "crop_background": cfg.data.crop_background,
        "field": {"kind": "lesion", "margin": cfg.data.field_margin}
        if cfg.data.field == "lesion"
        else {"kind": "fov"},
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
