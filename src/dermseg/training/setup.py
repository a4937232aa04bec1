"""What a training run is built from: model arguments, the checkpoint's description,
the learning-rate schedule, the AMP dtype, the prepared cache and class weights.

Kept apart from the loop in :mod:`dermseg.training.loop` so the loop reads top to bottom.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermseg.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from dermseg.config import Config
from dermseg.data.cache import CachedIsicDataset, CacheManifest, open_cache
from dermseg.data.dataset import IsicDataset
from dermseg.data.sampling import attribute_balance_weights
from dermseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TransformConfig
from dermseg.encoding import num_output_channels
from dermseg.errors import ConfigError
from dermseg.files import atomic_path
from dermseg.losses import class_weights_from_counts, pixel_counts
from dermseg.models.normalization import encoder_normalization

logger = logging.getLogger(__name__)


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
        if kwargs.pop("presence_head"):
            raise ConfigError(f"model.presence_head is available with unet_aspp only, not {cfg.model.arch}")
    elif not kwargs["presence_head"]:
        kwargs.pop("presence_head")  # so checkpoints without the head describe themselves as before
    if cfg.model.arch in ("smp_fpn", "smp_deeplabv3plus"):
        kwargs["decoder_channels"] = int(cfg.model.decoder_channels[0])  # one decoder width
    return kwargs


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

    Args:
        cfg: the run config.
        normalization: the image normalisation the model is trained with; ``None`` for
            :func:`input_normalization` of a new run (the encoder's).
    """
    return {
        "encoding": cfg.model.encoding,
        "normalization": normalization if normalization is not None else input_normalization(cfg),
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


def open_training_cache(cfg: Config, data_dir: str | Path) -> CacheManifest:
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


def class_weights_key(cfg: Config, ids: list[str]) -> dict[str, Any]:
    """What the class weights of a run are a function of, for their cache in the run folder.

    All training ids (not a count or a prefix: a split with the same size and first images
    but other images counts other pixels), the weighting and target encoding, and every
    preprocessing setting that changes the masks counted: the working size (masks are read at
    that resolution), the background crop, and whether they come from a prepared cache
    (resized to exactly ``size``) or from the images (decoded at reduced scale, at least ``size``).
    """
    return {
        "ids": list(ids),
        "weighting": cfg.loss.class_weights,
        "encoding": cfg.model.encoding,
        "size": cfg.data.size,
        "crop_background": cfg.data.crop_background,
        "source": "prepared cache" if cfg.data.cache else "images",
    }


def class_weights(
    cfg: Config, train_set: IsicDataset | CachedIsicDataset, run_dir: Path, ids: list[str]
) -> torch.Tensor | None:
    """Inverse pixel frequency weights (the thesis), computed once per split and cached in the run dir.

    The cached weights are reused only when :func:`class_weights_key` is the same: every training
    id, in order, and every setting that changes the pixels counted.
    """
    if cfg.loss.class_weights == "none":
        return None
    cache = run_dir / "class_weights.json"
    key = class_weights_key(cfg, ids)
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            return torch.tensor(data["weights"], dtype=torch.float32)
    masks = (train_set.load(i)[1][:NUM_ATTRIBUTES] for i in range(len(train_set)))  # no lesion channel
    weights = class_weights_from_counts(pixel_counts(masks, cfg.model.encoding))
    with atomic_path(cache) as tmp:
        tmp.write_text(json.dumps({"key": key, "weights": weights.tolist()}))
    return weights


def sampling_weights(
    cfg: Config, train_set: IsicDataset | CachedIsicDataset, run_dir: Path, ids: list[str]
) -> np.ndarray | None:
    """Attribute-balanced sampling weights (``data.balance``), computed once and cached in the run dir.

    Returns:
        ``(N,)`` weights of the training images, or ``None`` for uniform sampling.
    """
    if cfg.data.balance <= 0:
        return None
    cache = run_dir / "sampling_presence.json"
    key = {"ids": ids}
    presence = None
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            presence = np.asarray(data["presence"], dtype=bool).reshape(len(ids), NUM_ATTRIBUTES)
    if presence is None:
        presence = np.stack([train_set.presence(i) for i in range(len(train_set))])
        with atomic_path(cache) as tmp:
            tmp.write_text(json.dumps({"key": key, "presence": presence.astype(int).tolist()}))
    weights = attribute_balance_weights(presence, cfg.data.balance)
    share = {a: float((weights * presence[:, k]).sum() / weights.sum()) for k, a in enumerate(ATTRIBUTES)}
    logger.info(
        "balanced sampling (power %.2f): expected share of images with each attribute %s",
        cfg.data.balance,
        share,
    )
    return weights
