"""The training data of a run: the data folder read with the run's label set, its datasets and
loaders, the prepared cache it may read, the images with image-level labels only that join the
training images (``data.weak_labels``), the synthetic draws mixed into every batch
(``data.synthetic_mix``), and the values counted on its training masks (class
weights for the loss, label-balanced sampling weights), each cached in the run folder."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from dermseg.config import Config, config_label_set, synthetic_per_batch
from dermseg.data.cache import CachedIsicDataset, CacheManifest, open_cache
from dermseg.data.check import check_headers
from dermseg.data.dataset import IsicDataset
from dermseg.data.layout import IsicLayout, detect_label_set, discover
from dermseg.data.lesion_box import MIN_SIDE_FRACTION
from dermseg.data.mix_sampling import SyntheticMixSampler
from dermseg.data.sampling import ResumableSampler, SeededItems, attribute_balance_weights
from dermseg.data.shape_limits import ShapeLimits
from dermseg.data.synthetic_draws import SyntheticDraws, WithSyntheticDraws
from dermseg.data.transforms import TransformConfig, build_eval_transform, build_train_transform
from dermseg.data.weak_dataset import MixedDataset, load_weak_set
from dermseg.data.weak_labels import WeakSource
from dermseg.errors import ConfigError, DataError
from dermseg.files import atomic_path
from dermseg.labels import BUILTIN, LabelSet
from dermseg.losses import class_weights_from_counts, pixel_counts
from dermseg.training.distributed import DistInfo

logger = logging.getLogger(__name__)

#: A training or validation set: decoded from the images, or read from a prepared cache.
Dataset = IsicDataset | CachedIsicDataset
#: The training items: the training set, plus weak-labelled images, plus synthetic draws.
TrainItems = Dataset | MixedDataset | WithSyntheticDraws
#: The order of the training items (with synthetic draws in every batch, or without).
TrainSampler = ResumableSampler | SyntheticMixSampler


def training_layout(data_dir: str | Path, labels: LabelSet) -> IsicLayout:
    """The data folder read with the run's label set (``data.labels``, the source of truth).

    A folder that clearly holds another built-in set (:func:`~dermseg.data.layout.detect_label_set`)
    and none of the run's masks is refused, rather than reported as "no images found": a Task 2
    config on a PH2 folder, a lesion config on a Task 2 folder. A folder holding both (the
    official ISIC layout with Task 1 and Task 2 ground truth) is read as the config says.

    Raises:
        DataError: one line naming the folder: it holds another set (and which to set), it
            holds no image of the set, or (see :meth:`IsicLayout.raise_for_problems`) a file
            is misnamed.
    """
    detected = detect_label_set(data_dir)
    other = detected is not None and detected.name != labels.name and labels.name in BUILTIN

    def mismatch() -> DataError:
        assert detected is not None
        return DataError(
            f"holds {detected.name} data ({detected.description}), not the {labels.name} data "
            f"the config's data.labels names; set data.labels: {detected.name} "
            f"(--set data.labels={detected.name}) or give a {labels.name} folder",
            Path(data_dir),
        )

    try:
        layout = discover(data_dir, labels)
    except DataError:
        if other:
            raise mismatch() from None
        raise
    if other and not any(s.has_masks for s in layout.samples):
        raise mismatch()
    layout.raise_for_problems()  # a mask without its image etc.: the folder is not what it seems
    return layout


def build_datasets(
    cfg: Config,
    data_dir: str | Path,
    layout: IsicLayout,
    train_ids: list[str],
    val_ids: list[str],
    norm: dict[str, list[float]],
) -> tuple[Dataset, Dataset]:
    """The training and validation sets, from the prepared cache or the images, with one mask
    channel per label of ``layout.labels`` (items: ``image (3, H, W)``, ``masks (C, H, W)``).

    Raises:
        ConfigError: either set is empty.
        DataError: a file whose header is bad (checked now, not in epoch 3), or a stale cache.
    """
    by_id = {s.isic_id: s for s in layout.samples}
    labels = layout.labels
    tcfg = transform_config(cfg)
    # Reseeded for every item from the sampler (see dermseg.data.sampling).
    train_transform = build_train_transform(tcfg, seed=cfg.seed)
    lesion_masks = cfg.augment.lesion_crop > 0
    train_set: Dataset
    val_set: Dataset
    if cfg.data.cache:
        # Decoded, cropped and resized once by `dermseg prepare`; the eval transform's resize
        # to data.size is then a no-op, so validation sees the same pixels as without the cache.
        cache = open_training_cache(cfg, data_dir)
        train_set = CachedIsicDataset(
            cache, train_ids, train_transform, labels=labels, lesion_masks=lesion_masks, **norm
        )
        val_set = CachedIsicDataset(cache, val_ids, build_eval_transform(tcfg), labels=labels, **norm)
    else:
        lesion_field = cfg.data.field_margin if cfg.data.field == "lesion" else None
        read = {
            "labels": labels,
            # a lesion box is at least MIN_SIDE_FRACTION of the field: decode large enough for it
            "decode_side": cfg.data.size
            if lesion_field is None
            else math.ceil(cfg.data.size / MIN_SIDE_FRACTION),
            "crop_background": cfg.data.crop_background,
            "lesion_field": lesion_field,
            "limits": ShapeLimits(cfg.data.max_aspect_ratio, aspect_setting="data.max_aspect_ratio"),
            **norm,
        }
        train_set = IsicDataset(
            [by_id[i] for i in train_ids], train_transform, lesion_masks=lesion_masks, **read
        )
        val_set = IsicDataset([by_id[i] for i in val_ids], build_eval_transform(tcfg), **read)
    if cfg.data.field == "lesion":
        without = sum(by_id[i].lesion_mask_path is None for i in [*train_ids, *val_ids])
        if without:
            logger.warning(
                "data.field=lesion but %d of %d images have no Task 1 lesion mask in %s: they are seen whole",
                without,
                len(train_ids) + len(val_ids),
                data_dir,
            )
    if lesion_masks and not any(s.lesion_mask_path for s in layout.samples):
        logger.warning(
            "augment.lesion_crop is set but %s has no Task 1 lesion masks: crops stay uniform", data_dir
        )
    if len(train_set) == 0 or len(val_set) == 0:
        raise ConfigError(f"need training and validation images; got {len(train_set)} and {len(val_set)}")
    if not cfg.data.cache:
        check_headers(
            [by_id[i] for i in [*train_ids, *val_ids]], lesion_masks=lesion_masks or lesion_field is not None
        )
    return train_set, val_set


def with_weak_labels(cfg: Config, train_set: Dataset, norm: dict[str, list[float]]) -> Dataset | MixedDataset:
    """The training set plus the images of ``data.weak_labels`` (image-level labels only), or
    ``train_set`` itself without them.

    The weak-labelled images follow the masked images (indices from ``len(train_set)``), are
    read from their files (also when the masked ones come from a prepared cache) through the
    same training transform, and every item of the result has ``weak`` and ``weak_presence``
    (:mod:`dermseg.data.weak_dataset`).

    Raises:
        DataError: a bad row of the labels file or an image not found or unreadable (every
            image's header is opened now, before training starts).
    """
    if cfg.data.weak_labels is None:
        return train_set
    fmt = cfg.data.weak_format
    source = None if fmt == "auto" else cast(WeakSource, fmt)
    weak = load_weak_set(
        cfg.data.weak_labels,
        source,
        cfg.data.weak_images,
        train_set.transform,
        decode_side=cfg.data.size,
        crop_background=cfg.data.crop_background,
        limits=ShapeLimits(cfg.data.max_aspect_ratio, aspect_setting="data.max_aspect_ratio"),
        **norm,
    )
    check_headers(weak.samples)
    if cfg.data.field == "lesion":
        logger.warning(
            "data.field=lesion: the %d weak-labelled images have no lesion mask and are seen whole", len(weak)
        )
    logger.info(
        "%d images with image-level labels (%s: %s) join the %d mask-labelled training images",
        len(weak),
        weak.weak.source,
        ", ".join(weak.weak.attributes),
        len(train_set),
    )
    return MixedDataset(train_set, weak)


def with_synthetic_mix(
    cfg: Config, train_items: Dataset | MixedDataset, norm: dict[str, list[float]]
) -> TrainItems:
    """The training items plus the synthetic generator's draws (``data.synthetic_mix``), or
    ``train_items`` itself when the mix is 0.

    The draws follow the training items (index ``len(train_items) + k`` is draw ``k``,
    :mod:`dermseg.data.synthetic_draws`): square images of ``data.synthetic_size`` (else
    ``data.size``) px, from the run's seed, read like the real images (background crop, lesion
    box with ``data.field: lesion``) and through their training transform. Only the training
    items get them: the validation set, which selects the epoch and tunes the thresholds, is
    built apart and never holds a draw.
    """
    if cfg.data.synthetic_mix == 0:
        return train_items
    size = cfg.data.synthetic_size or cfg.data.size
    draws = SyntheticDraws(
        cfg.seed,
        size,
        train_items.transform,
        rare_only=cfg.data.synthetic_rare_only,
        crop_background=cfg.data.crop_background,
        lesion_field=cfg.data.field_margin if cfg.data.field == "lesion" else None,
        lesion_masks=cfg.augment.lesion_crop > 0,
        weak=isinstance(train_items, MixedDataset),
        **norm,
    )
    logger.info(
        "data.synthetic_mix %g: %d of every %d training images are synthetic draws of %d px%s",
        cfg.data.synthetic_mix,
        synthetic_per_batch(cfg.data.synthetic_mix, cfg.train.batch_size),
        cfg.train.batch_size,
        size,
        " holding streaks or negative network" if cfg.data.synthetic_rare_only else "",
    )
    return WithSyntheticDraws(train_items, draws)


def training_sampler(
    cfg: Config, info: DistInfo, n_items: int, n_masked: int, weights: np.ndarray | None
) -> TrainSampler:
    """The resumable order of the training items, with ``data.synthetic_mix``'s draws in every batch.

    Args:
        cfg: the run config.
        info: this process's rank and world size.
        n_items: the training items (masked and weak-labelled images), the synthetic draws not counted.
        n_masked: the mask-labelled ones (an incomplete last batch is dropped when they fill one
            batch per process).
        weights: sampling weights of the ``n_items`` (``data.balance``), or ``None``.
    """
    per_batch = synthetic_per_batch(cfg.data.synthetic_mix, cfg.train.batch_size)
    real_batch = cfg.train.batch_size - per_batch
    sampler = ResumableSampler(
        n_items,
        seed=cfg.seed,
        batch_size=real_batch,
        rank=info.rank,
        world_size=info.world_size,
        drop_last=n_masked >= real_batch * info.world_size,
        weights=weights,
    )
    return sampler if per_batch == 0 else SyntheticMixSampler(sampler, per_batch, first_draw=n_items)


def build_loaders(
    cfg: Config,
    info: DistInfo,
    train_set: TrainItems,
    val_set: Dataset,
    sampler: TrainSampler,
) -> tuple[DataLoader, DataLoader]:
    """The training loader (batches in the sampler's order) and this rank's validation loader."""
    pin = info.device.type == "cuda"
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
    return train_loader, val_loader


def transform_config(cfg: Config) -> TransformConfig:
    """The preprocessing settings of a run config."""
    return TransformConfig(size=cfg.data.size, crop_size=cfg.data.crop_size, **asdict(cfg.augment))


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
    key: dict[str, Any] = {
        "ids": list(ids),
        "weighting": cfg.loss.class_weights,
        "encoding": cfg.model.encoding,
        "size": cfg.data.size,
        "crop_background": cfg.data.crop_background,
        "source": "prepared cache" if cfg.data.cache else "images",
    }
    if cfg.data.field == "lesion":  # the pixels counted are those of the lesion boxes
        key["field"] = {"kind": "lesion", "margin": cfg.data.field_margin}
    return _with_labels(key, config_label_set(cfg))


def _with_labels(key: dict[str, Any], labels: LabelSet) -> dict[str, Any]:
    """A cache key plus the label set's labels (the same images can hold Task 1 and Task 2 masks);
    Task 2's keys stay as they were before label sets, so the caches of those runs stay valid."""
    return key if labels.name == "isic2018_task2" else {**key, "labels": list(labels.names)}


def class_weights(cfg: Config, train_set: Dataset, run_dir: Path, ids: list[str]) -> torch.Tensor | None:
    """The loss's class weights, the value of ``loss.class_weights`` derived from the training masks.

    ``none``: ``None``. ``inverse_frequency`` (the thesis): normalised inverse pixel frequency,
    ``(C,)`` multilabel or ``(C + 1,)`` multiclass (C labels: 5 for Task 2, 1 for a lesion),
    computed once per split and cached in the run
    folder; the cache is reused only when :func:`class_weights_key` is the same (every training
    id, in order, and every setting that changes the pixels counted).
    """
    if cfg.loss.class_weights == "none":
        return None
    cache = run_dir / "class_weights.json"
    key = class_weights_key(cfg, ids)
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            return torch.tensor(data["weights"], dtype=torch.float32)
    n = config_label_set(cfg).num_labels
    masks = (train_set.load(i)[1][:n] for i in range(len(train_set)))  # no lesion channel
    weights = class_weights_from_counts(pixel_counts(masks, cfg.model.encoding, n))
    with atomic_path(cache) as tmp:
        tmp.write_text(json.dumps({"key": key, "weights": weights.tolist()}))
    return weights


def sampling_weights(cfg: Config, train_set: Dataset, run_dir: Path, ids: list[str]) -> np.ndarray | None:
    """Label-balanced sampling weights (``data.balance``), computed once and cached in the run dir.

    Returns:
        ``(N,)`` weights of the training images, or ``None`` for uniform sampling.
    """
    if cfg.data.balance <= 0:
        return None
    labels = config_label_set(cfg)
    names = labels.names
    cache = run_dir / "sampling_presence.json"
    key = _with_labels({"ids": ids}, labels)
    presence = None
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            presence = np.asarray(data["presence"], dtype=bool).reshape(len(ids), len(names))
    if presence is None:
        presence = np.stack([train_set.presence(i) for i in range(len(train_set))])
        with atomic_path(cache) as tmp:
            tmp.write_text(json.dumps({"key": key, "presence": presence.astype(int).tolist()}))
    weights = attribute_balance_weights(presence, cfg.data.balance, len(names))
    share = {a: float((weights * presence[:, k]).sum() / weights.sum()) for k, a in enumerate(names)}
    logger.info(
        "balanced sampling (power %.2f): expected share of images with each label %s",
        cfg.data.balance,
        share,
    )
    return weights
