"""Run configuration: dataclasses, YAML loading and ``--set key=value`` overrides.

Configs are data, never code: YAML is read as plain data within bounds
(:mod:`dermseg.yaml_files`: a regular file of at most :data:`MAX_CONFIG_BYTES`, no aliases, no
duplicate keys), every key is checked against the dataclasses below and every value against its
rule in :data:`FIELD_RULES`, so a typo, a wrong type or a value out of range is a one-line
:class:`~dermseg.errors.ConfigError` naming the ``--set`` argument that gave it, else the file.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dermseg.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from dermseg.errors import SHOWN_CHARS, ConfigError, display_path, shown_value
from dermseg.labels import MODEL_ENCODINGS, LabelSet, load_label_set
from dermseg.yaml_files import parse_yaml, read_yaml_file


@dataclass
class DataConfig:
    """Where the data is and how it is read.

    Attributes:
        root: dataset folder (usually given on the command line with ``--data``).
        labels: what the run segments: a built-in label set (``isic2018_task2``, the five
            dermoscopic structures; ``isic2018_task1`` or ``ph2``, the lesion) or a label set
            YAML file (see :mod:`dermseg.labels`). It decides how the data folder is read, the
            number of output channels, the validation metric and the post-processing lists'
            length, and the checkpoints record it.
        val_fraction: share of the training images held out when there is no official validation split.
        split_seed: seed of that split, in ``0..2**32-1``.
        size: working resolution: images are resized so their short side is ``size``.
        crop_size: side of the random training crops (the thesis used 128; 512 is competitive).
        crop_background: crop to the dermoscope's field of view, detected from the image alone.
        workers: DataLoader worker processes.
        limit: use at most this many training images (quick experiments), ``>= 1``; ``None``
            (``null``, or left out) for all.
        cache: a folder prepared by ``dermseg prepare`` to train from instead of decoding the
            images every epoch (checked against the data folder; its size must equal ``size``).
        balance: attribute-balanced sampling, in ``[0, 1]``: images holding rare attributes
            (streaks, negative network) are drawn more often, each image weighing
            ``(1 / frequency of its rarest attribute) ** balance``; 0 samples uniformly.
        validation: what selects the model and tunes the thresholds: ``auto`` (the official
            validation split when the folder has one, else a stratified hold-out of the
            training images) or ``holdout`` (always the hold-out, so the official validation
            set stays unseen and its score is unbiased).
        folds: k > 1 trains on k - 1 folds of a stratified k-fold split of the training
            images and validates on fold ``fold`` (for k-fold ensembles; ``val_fraction``
            is then unused).
        fold: the held-out fold, ``0 <= fold < folds``.
        field: what is resized to the working size: ``fov``, the dermoscope's field of view (the
            whole image without background cropping), or ``lesion``, the box of the image's
            Task 1 lesion mask grown by ``field_margin`` (training and validation use the
            ground-truth lesion masks, which the data folder must have; prediction then needs a
            lesion model, ``--lesion-checkpoint``, to find the box the same way). Reads the
            images, not a prepared cache.
        field_margin: with ``field: lesion``, the skin kept around the lesion's box, as a fraction
            of its longer side, in ``[0, 2]``; recorded in the checkpoint as the default margin of
            prediction.
        max_aspect_ratio: the most elongated image accepted (long side / short side, >= 1); a
            longer one is refused, named, before it is decoded (its working image would be
            unbounded: :mod:`dermseg.data.shape_limits`).
        weak_labels: a file of image-level labels (PH2 criteria, a Derm7pt ``meta.csv`` or a CSV
            ``image, attribute, present``: :mod:`dermseg.data.weak_labels`) whose images are
            added to the training images: they have no masks, only "this attribute is in the
            image / is not" for the attributes their source grades, and train the presence head
            and, with ``loss.weak_mil``, the masks; ``None`` for none. Never validated on.
        weak_format: how ``weak_labels`` is read: ``auto`` (from its header), ``ph2``,
            ``derm7pt`` or ``csv``.
        weak_images: the folder of the weak-labelled images; ``None``: beside the labels file
            (for Derm7pt, the ``images/`` folder of the release).
        synthetic_mix: the fraction of each training batch drawn from the synthetic generator
            (:mod:`dermseg.data.synthetic_draws`), in ``[0, 1)``: every batch of
            ``train.batch_size`` images holds :func:`synthetic_per_batch` of them (rounded half
            up, at least one and at least one real image), generated in the DataLoader workers
            from the run's seed, epoch and batch; 0 for none. Task 2 only; never validated on.
            For real data; untested on it until someone measures it.
        synthetic_rare_only: draw only synthetic images holding streaks or negative network
            (the generator's draws at the ISIC 2018 frequencies, kept when they hold one).
        synthetic_size: the side of the synthetic images, ``>= 32``; ``None``: ``size`` (the
            working size), which the training transform then resizes and crops like a real image.
    """

    root: str | None = None
    labels: str = "isic2018_task2"
    val_fraction: float = 0.1
    split_seed: int = 0
    size: int = 512
    crop_size: int = 512
    crop_background: bool = True
    workers: int = 2
    limit: int | None = None
    cache: str | None = None
    balance: float = 0.0
    validation: str = "auto"
    folds: int = 1
    fold: int = 0
    field: str = "fov"
    field_margin: float = 0.2
    max_aspect_ratio: float = 8.0
    weak_labels: str | None = None
    weak_format: str = "auto"
    weak_images: str | None = None
    synthetic_mix: float = 0.0
    synthetic_rare_only: bool = False
    synthetic_size: int | None = None


@dataclass
class AugmentConfig:
    """Training augmentation (identical geometry on image and masks).

    Attributes:
        hflip, vflip, rotate90: random flips and quarter turns.
        color_jitter: brightness/contrast/saturation (and a quarter of it as hue) jitter.
        lesion_crop: probability that a training crop is centred on a random pixel of the
            Task 1 lesion mask (needs ``ISIC2018_Task1_*_GroundTruth`` in the data folder,
            e.g. ``dermseg download isic2018 --lesion-masks``); images without one get a
            uniform crop. 0 disables.
        rotate: rotation by an angle drawn uniformly from ``[-rotate, rotate]`` degrees (any
            angle, the corners filled by reflection), in ``[0, 180]``; 0 disables.
        scale: zoom by a factor drawn uniformly from ``[1 - scale, 1 + scale]`` (0.2: x0.8 to
            x1.2, reflection where the image shrinks), in ``[0, 1)``; 0 disables. Rotation and
            zoom are one affine warp of the resized image, before the crop.
    """

    hflip: bool = True
    vflip: bool = True
    rotate90: bool = True
    color_jitter: float = 0.2
    lesion_crop: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0


@dataclass
class ModelConfig:
    """The network: the keyword arguments of ``create_model``, except ``encoding``, from which
    the number of output channels is derived (:func:`dermseg.training.setup.model_kwargs`).

    Attributes:
        arch: ``unet_aspp`` (the thesis model) or an smp peer (``smp_unet``, ...).
        encoding: ``multilabel`` (sigmoid per attribute) or ``multiclass`` (softmax, the thesis).
        encoder_weights: ``imagenet``, ``none`` or a path to a ``.safetensors``/``.pth`` file.
        presence_head: add an image-level presence head (``unet_aspp`` only): one logit per
            attribute, trained with BCE (``loss.presence_weight``), gating the masks at prediction.
    """

    arch: str = "unet_aspp"
    encoding: str = "multilabel"
    encoder_name: str = "inception_v3"
    encoder_weights: str = "none"
    aspp_rates: list[int] = field(default_factory=lambda: [2, 3, 4])
    decoder_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 32, 16])
    presence_head: bool = False


@dataclass
class LossConfig:
    """Loss terms and their weights, e.g. ``{bce: 1.0, soft_jaccard: 1.0}``: the keyword arguments
    of :func:`dermseg.losses.build_loss`, one each.

    Attributes:
        terms: loss name -> weight.
        focal_gamma: focusing parameter of the focal term.
        class_weights: ``none`` or ``inverse_frequency`` (the thesis: inverse pixel
            frequency, normalised, computed once from the training set and cached).
        presence_weight: weight of the presence head's BCE term, the loss term ``presence``
            (it counts with ``model.presence_head`` only); it scores the masks' presence and the
            image-level labels of ``data.weak_labels``.
        weak_mil: train the mask logits on the image-level labels of ``data.weak_labels`` too
            (the loss term ``mil``): ``none``, or how each attribute's map is pooled to one
            image-level logit, ``max`` (a smooth maximum, the log-mean-exp) or ``topk`` (the
            mean of the highest ``weak_topk`` fraction of the pixels); "present" then pushes
            some pixels up, "absent" all of them down. Multilabel only.
        weak_topk: the fraction of pixels ``topk`` averages, in ``(0, 1]``.
        weak_mil_weight: weight of the ``mil`` term.
    """

    terms: dict[str, float] = field(default_factory=lambda: {"bce": 1.0, "soft_jaccard": 1.0})
    focal_gamma: float = 2.0
    class_weights: str = "none"
    presence_weight: float = 0.5
    weak_mil: str = "none"
    weak_topk: float = 0.02
    weak_mil_weight: float = 1.0


@dataclass
class TrainConfig:
    """Optimisation.

    Attributes:
        epochs: passes over the training set.
        batch_size: images per step (per process under DDP).
        lr: peak learning rate of the decoder/head (AdamW).
        encoder_lr_mult: encoder learning rate = ``lr * encoder_lr_mult`` (the thesis: 0.01).
        weight_decay: AdamW weight decay.
        warmup_epochs: linear warm-up length before the cosine decay.
        grad_clip: gradient-norm clipping (0 disables).
        amp: mixed precision on CUDA: ``auto`` (bf16 where supported, else fp16), ``bf16``, ``fp16``, ``off``.
        channels_last: use the channels-last memory format on CUDA.
        compile: wrap the model in ``torch.compile``.
        max_minutes: stop after this wall time (the demo's budget), ``> 0``; ``None`` for no limit.
        eval_every: validate every N epochs.
        max_steps_per_epoch: cap steps per epoch (quick runs), ``>= 1``; ``None`` for a full pass.
        tune_thresholds: at the end, tune per-attribute thresholds on the validation images
            (at their original size, for the official Jaccard) and store them in the best checkpoint.
        checkpoint_every: also save the resumable state every N steps within an epoch (a
            killed run then loses at most N steps); ``None`` saves at epoch ends only.
    """

    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-3
    encoder_lr_mult: float = 0.01
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    max_minutes: float | None = None
    eval_every: int = 1
    max_steps_per_epoch: int | None = None
    tune_thresholds: bool = True
    checkpoint_every: int | None = None


@dataclass
class PredictConfig:
    """How the trained model is run on whole images (threshold tuning at the end of training,
    ``dermseg reproduce``).

    Attributes:
        tta: flip test-time augmentation: average the probabilities of the image and its
            horizontal and vertical flips (3x the inference time; thresholds are tuned with it).
    """

    tta: bool = False


@dataclass
class PostprocessConfig:
    """Turning probabilities into masks.

    All sizes are in pixels at the working resolution (short side = ``data.size``) and are
    rescaled at prediction to the short side of each image's field of view, the part of the
    image resized to the working size (see :mod:`dermseg.inference.postprocess`).

    Every list has one value per label of ``data.labels``, in its channel order (the five
    attributes of Task 2 by default; one for a lesion set); a list the config does not give
    defaults to that many values.

    Attributes:
        thresholds: one probability threshold per label.
        opening: morphological opening (disk) diameter per label, 0 or odd; 0 for none
            (the thesis opened its masks to remove false positives).
        min_area: remove connected components smaller than this many pixels; 0 for none.
        presence: image-level gate: a label's mask is emptied when its maximum probability
            is below this; 0 for none.
    """

    thresholds: list[float] = field(default_factory=lambda: [0.5] * NUM_ATTRIBUTES)
    opening: list[int] = field(default_factory=lambda: [0] * NUM_ATTRIBUTES)
    min_area: list[int] = field(default_factory=lambda: [0] * NUM_ATTRIBUTES)
    presence: list[float] = field(default_factory=lambda: [0.0] * NUM_ATTRIBUTES)


@dataclass
class Config:
    """A whole run: what ``dermseg train`` reads from YAML.

    Attributes:
        seed: seeds the weights' initialisation, the training order and every augmentation;
            in ``0..2**32-1``.
        deterministic: use deterministic kernels only (``torch.use_deterministic_algorithms``):
            on CPU a run is then bit-identical for the same seed, data and thread count,
            also when it was killed and resumed; slower on GPU, where a few kernels (bilinear
            upsampling's backward) have no deterministic version and only warn.
    """

    seed: int = 0
    deterministic: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able dict."""
        return dataclasses.asdict(self)


#: The most a config file (or one ``--set`` value) may hold: shipped configs are a few KB.
MAX_CONFIG_BYTES = 2**20

#: Seeds (``seed``, ``data.split_seed``, ``--seed`` options): what NumPy's legacy seeding accepts.
MAX_SEED = 2**32 - 1

#: Loss term name -> the model encodings it works with: the names ``loss.terms`` may use (the
#: table of :data:`dermseg.losses.TERMS`, less ``presence`` and ``mil``, weighted by
#: ``loss.presence_weight`` and ``loss.weak_mil_weight``).
LOSS_TERMS: dict[str, tuple[str, ...]] = {
    "ce": ("multiclass",),
    "bce": ("multilabel",),
    "focal": ("multilabel", "multiclass"),
    "soft_jaccard": ("multilabel", "multiclass"),
    "soft_dice": ("multilabel", "multiclass"),
}


class ConfigValueError(ConfigError):
    """An invalid config value; ``keys`` are the fields concerned, the one to change first
    (``load_config`` names the ``--set`` argument or the file that gave it)."""

    def __init__(self, message: str, keys: tuple[str, ...], path: str | Path | None = None) -> None:
        super().__init__(message, path)
        self.keys = keys


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _bad(where: str, expected: str, value: Any) -> ConfigValueError:
    return ConfigValueError(f"{where}: expected {expected}, got {shown_value(value)}", (_key(where),))


def _key(where: str) -> str:
    """The field of a place in the config: ``postprocess.thresholds[2]`` -> ``postprocess.thresholds``."""
    return re.sub(r"\[\d+\]", "", where)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise _bad(where, " or ".join(_type_name(a) for a in args), value)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise _bad(where, "a list", value)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        if not isinstance(value, dict):
            raise _bad(where, "a mapping", value)
        return {_coerce(k, key_t, where): _coerce(v, val_t, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise _bad(where, "a number", value) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(where, "a number", value)
        if not (-math.inf < value < math.inf):  # nan, inf, and an int too large for a float
            raise _bad(where, "a finite number", value)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(where, "an integer", value)
        if not -(2**63) <= value < 2**63:
            raise _bad(where, "an integer of at most 64 bits", value)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad(where, "true or false", value)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _bad(where, "a string", value)
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    raise ConfigError(f"{where}: unsupported type {tp}")  # pragma: no cover - schema bug


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise _bad(where or "config", "a mapping", data)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted((k for k in data if k not in names), key=str)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else str(unknown[0])
        raise ConfigValueError(f"unknown key {_cut(key)} (valid: {', '.join(names)})", (key,))
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def config_fields(cls: type = Config, prefix: str = "") -> dict[str, Any]:
    """Every field of a run config, ``section.name`` -> its type annotation, in declaration order."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        out.update(config_fields(tp, f"{key}.") if dataclasses.is_dataclass(tp) else {key: tp})
    return out


@dataclass(frozen=True)
class Rule:
    """What a field's value must be beyond its type: ``ok(value)``, and ``must``, the words
    after "must" in the error (``be > 0``)."""

    ok: Callable[[Any], bool]
    must: str


def _between(lo: float, hi: float, must: str | None = None) -> Rule:
    return Rule(lambda v: lo <= v <= hi, must or f"be between {lo} and {hi}")


def _at_least(n: int) -> Rule:
    return Rule(lambda v: v >= n, f"be >= {n}")


def _one_of(*choices: str) -> Rule:
    return Rule(lambda v: v in choices, f"be {', '.join(choices[:-1])} or {choices[-1]}")


def _or_null(rule: Rule, null_means: str) -> Rule:
    """``rule``, or ``None`` (``null`` in YAML), which means ``null_means``."""
    return Rule(lambda v: v is None or rule.ok(v), f"{rule.must}, or null for {null_means}")


def _each(rule: Rule, must: str) -> Rule:
    return Rule(lambda v: all(rule.ok(x) for x in v), must)


_TYPE_ONLY = Rule(lambda v: True, "")  # true/false: the type is the whole check
_POSITIVE = Rule(lambda v: v > 0, "be > 0")
_NOT_NEGATIVE = _at_least(0)
_TEXT = Rule(lambda v: v.strip() != "", "not be empty")
_SEED = _between(0, MAX_SEED, f"be in 0..{MAX_SEED}")
_LIST_OF_POSITIVE = Rule(lambda v: bool(v) and all(x >= 1 for x in v), "be a non-empty list of integers >= 1")


def _weights_ok(terms: dict[str, float]) -> bool:
    return all(w >= 0 for w in terms.values()) and any(w > 0 for w in terms.values())


#: Field -> its rule: every field of :class:`Config` has one (a test checks it), so that no value
#: reaches training unchecked. Rules between fields are in :func:`validate`.
FIELD_RULES: dict[str, Rule] = {
    "seed": _SEED,
    "deterministic": _TYPE_ONLY,
    "data.root": _or_null(_TEXT, "the --data folder"),
    "data.labels": _TEXT,
    "data.val_fraction": Rule(lambda v: 0 < v < 1, "be between 0 and 1 (both excluded)"),
    "data.split_seed": _SEED,
    "data.size": _at_least(32),
    "data.crop_size": _at_least(1),
    "data.crop_background": _TYPE_ONLY,
    "data.workers": _NOT_NEGATIVE,
    "data.limit": _or_null(_at_least(1), "all images (or leave it out)"),
    "data.cache": _or_null(_TEXT, "no cache"),
    "data.balance": _between(0, 1),
    "data.validation": _one_of("auto", "holdout"),
    "data.folds": _at_least(1),
    "data.fold": _NOT_NEGATIVE,
    "data.field": _one_of("fov", "lesion"),
    "data.field_margin": _between(0, 2),
    "data.max_aspect_ratio": _at_least(1),
    "data.weak_labels": _or_null(_TEXT, "no image-level labels"),
    "data.weak_format": _one_of("auto", "ph2", "derm7pt", "csv"),
    "data.weak_images": _or_null(_TEXT, "the labels file's folder"),
    "data.synthetic_mix": Rule(lambda v: 0 <= v < 1, "be a fraction of the batch in [0, 1)"),
    "data.synthetic_rare_only": _TYPE_ONLY,
    "data.synthetic_size": _or_null(_at_least(32), "the working size, data.size"),
    "augment.hflip": _TYPE_ONLY,
    "augment.vflip": _TYPE_ONLY,
    "augment.rotate90": _TYPE_ONLY,
    "augment.color_jitter": _between(0, 1),
    "augment.lesion_crop": _between(0, 1, "be a probability, between 0 and 1"),
    "augment.rotate": _between(0, 180, "be between 0 and 180 degrees"),
    "augment.scale": Rule(lambda v: 0 <= v < 1, "be in [0, 1) (0.2 zooms by x0.8 to x1.2)"),
    "model.arch": _TEXT,
    "model.encoding": _one_of("multilabel", "multiclass"),
    "model.encoder_name": _TEXT,
    "model.encoder_weights": _TEXT,
    "model.aspp_rates": _LIST_OF_POSITIVE,
    "model.decoder_channels": _LIST_OF_POSITIVE,
    "model.presence_head": _TYPE_ONLY,
    "loss.terms": Rule(
        lambda v: set(v) <= set(LOSS_TERMS) and _weights_ok(v),
        f"map losses of {', '.join(LOSS_TERMS)} to weights >= 0, at least one > 0",
    ),
    "loss.focal_gamma": _NOT_NEGATIVE,
    "loss.class_weights": _one_of("none", "inverse_frequency"),
    "loss.presence_weight": _NOT_NEGATIVE,
    "loss.weak_mil": _one_of("none", "max", "topk"),
    "loss.weak_topk": Rule(lambda v: 0 < v <= 1, "be a fraction in (0, 1]"),
    "loss.weak_mil_weight": _NOT_NEGATIVE,
    "train.epochs": _at_least(1),
    "train.batch_size": _at_least(1),
    "train.lr": _POSITIVE,
    "train.encoder_lr_mult": _NOT_NEGATIVE,
    "train.weight_decay": _NOT_NEGATIVE,
    "train.warmup_epochs": _NOT_NEGATIVE,
    "train.grad_clip": _NOT_NEGATIVE,
    "train.amp": _one_of("auto", "bf16", "fp16", "off"),
    "train.channels_last": _TYPE_ONLY,
    "train.compile": _TYPE_ONLY,
    "train.max_minutes": _or_null(_POSITIVE, "no time limit"),
    "train.eval_every": _at_least(1),
    "train.max_steps_per_epoch": _or_null(_at_least(1), "a full pass (or leave it out)"),
    "train.tune_thresholds": _TYPE_ONLY,
    "train.checkpoint_every": _or_null(_at_least(1), "saving at epoch ends only"),
    "postprocess.thresholds": _each(_between(0, 1), "be in [0, 1]"),
    "postprocess.opening": _each(Rule(lambda k: k == 0 or (k > 0 and k % 2 == 1), ""), "be 0 or odd sizes"),
    "postprocess.min_area": _each(_NOT_NEGATIVE, "be >= 0"),
    "postprocess.presence": _each(_between(0, 1), "be in [0, 1]"),
    "predict.tta": _TYPE_ONLY,
}


def _rule_error(key: str, value: Any) -> ConfigValueError | None:
    rule = FIELD_RULES[key]
    return (
        None
        if rule.ok(value)
        else ConfigValueError(f"{key} must {rule.must}, got {shown_value(value)}", (key,))
    )


def check_value(key: str, value: Any, given_as: str) -> Any:
    """A value of the field ``key`` given outside a config (``--seed`` of a command), checked
    with the field's type and rule; returns it coerced to the type.

    Raises:
        ConfigError: ``<given_as>: <problem>``.
    """
    try:
        value = _coerce(value, config_fields()[key], key)
        error = _rule_error(key, value)
    except ConfigValueError as err:
        error = err
    if error is not None:
        raise ConfigError(f"{given_as}: {error.message.removeprefix(f'{key}: ')}")
    return value


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from a nested dict (missing keys take defaults).

    Raises:
        ConfigValueError: unknown key, wrong type, or an invalid value (``keys`` names the fields).
    """
    cfg = _build(Config, data or {}, "")
    given = (data or {}).get("postprocess") or {}
    labels = config_label_set(cfg)
    # A list the config does not give has one default value per label of the set.
    for f in dataclasses.fields(PostprocessConfig):
        if f.name not in given:
            default = getattr(PostprocessConfig(), f.name)[0]
            setattr(cfg.postprocess, f.name, [default] * labels.num_labels)
    validate(cfg)
    return cfg


def config_label_set(cfg: Config) -> LabelSet:
    """The label set a run config names (``data.labels``: a built-in name or a YAML file).

    Raises:
        ConfigValueError: ``data.labels: ...``, an unknown name or an unreadable or invalid file
            (the message names it).
    """
    try:
        return load_label_set(cfg.data.labels)
    except ConfigError as err:
        where = f"{display_path(err.path)}: " if err.path is not None else ""
        raise ConfigValueError(f"data.labels: {where}{err.message}", ("data.labels",)) from None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge section by section; a value inside a section (even a mapping like loss.terms) is replaced."""
    out = dict(base)
    for k, v in override.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _cut(text: str) -> str:
    """A user's text as an error shows it unquoted: cut to a readable length."""
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _arg(item: str) -> str:
    """A ``--set`` argument as an error names it: ``--set train.lr=0``."""
    return f"--set {_cut(item)}"


def _parse_override(item: str) -> tuple[list[str], Any]:
    """``"train.lr=0.01"`` -> ``(["train", "lr"], 0.01)`` (the value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    parts = [part.strip() for part in key.split(".")]
    if not sep or not all(parts):
        raise ConfigError(f"{_arg(item)}: must look like key=value (e.g. train.lr=0.001)")
    if len(raw.encode("utf-8", "surrogateescape")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{_arg(item)}: value longer than {MAX_CONFIG_BYTES // 2**20} MiB")
    try:
        return parts, parse_yaml(raw) if raw.strip() else None
    except ConfigError as err:
        raise ConfigError(f"{_arg(item)}: cannot parse value ({err.message})") from None


def _nest(parts: list[str], value: Any, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Set ``a.b.c = value`` in ``into``; a later key replaces a value on its way (last wins)."""
    out = {} if into is None else into
    node = out
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["train.lr=0.01", "model.aspp_rates=[1,2]"]`` into a nested dict (values parsed as YAML).

    Raises:
        ConfigError: an item without ``=`` or with an unparsable value, naming the ``--set`` argument.
    """
    out: dict[str, Any] = {}
    for item in items:
        _nest(*_parse_override(item), into=out)
    return out


def _gives(data: Any, key: str) -> bool:
    """Whether ``data`` (a config file's or one ``--set``'s nested dict) sets the field ``key``,
    or a section or value that holds it."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return True
        if part not in node:
            return ".".join(parts[i:]) in node  # a mapping key with dots (loss.terms)
        node = node[part]
    return True


def _blame(keys: tuple[str, ...], file_data: dict[str, Any], overrides: list[str]) -> str | None:
    """The ``--set`` argument that gave the first of ``keys`` given anywhere (the last such
    argument), ``"file"`` when the config file gave it, ``None`` when only defaults did."""
    for key in keys:
        for item in reversed(overrides):
            if _gives(_nest(*_parse_override(item)), key):
                return item
        if _gives(file_data, key):
            return "file"
    return None


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, max_bytes: int = MAX_CONFIG_BYTES
) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply ``--set`` overrides.

    The file must be a regular file of at most ``max_bytes`` (:mod:`dermseg.yaml_files`: no
    anchors or aliases, no key twice).

    Raises:
        ConfigError: unreadable file, invalid YAML, unknown key, wrong type or value; the message
            names the ``--set`` argument that gave the value, else the file.
    """
    overrides = list(overrides or [])
    data: dict[str, Any] = {}
    if path is not None:
        loaded = read_yaml_file(path, "config file", max_bytes)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError("config must be a mapping of sections (data, model, train, ...)", path)
        data = loaded or {}
    merged = _merge(data, parse_overrides(overrides))
    try:
        return config_from_dict(merged)
    except ConfigValueError as err:
        source = _blame(err.keys, data, overrides)
        if source is not None and source != "file":
            key = source.partition("=")[0].strip()
            raise ConfigValueError(
                f"{_arg(source)}: {err.message.removeprefix(f'{key}: ')}", err.keys
            ) from None
        if path is not None:
            raise ConfigValueError(err.message, err.keys, path) from None
        raise


def validate(cfg: Config) -> None:
    """Check every field's rule (:data:`FIELD_RULES`), then the rules between fields.

    Raises:
        ConfigValueError: the first invalid value found; ``keys`` names the fields concerned.
    """
    for key in config_fields():
        section, _, name = key.rpartition(".")
        error = _rule_error(key, getattr(getattr(cfg, section) if section else cfg, name))
        if error is not None:
            raise error
    labels = config_label_set(cfg)
    n, of = labels.num_labels, f"one per label of {labels.name}"
    encoding = cfg.model.encoding
    checks = [
        (
            ("data.crop_size", "data.size"),
            cfg.data.crop_size <= cfg.data.size,
            f"data.crop_size must be in 1..data.size ({cfg.data.size})",
        ),
        (("data.fold", "data.folds"), cfg.data.fold < cfg.data.folds, "data.fold must be in 0..data.folds-1"),
        (
            ("data.field", "data.cache"),
            cfg.data.field == "fov" or cfg.data.cache is None,
            "data.field=lesion reads the images: it cannot train from a prepared cache (data.cache)",
        ),
        (
            ("data.field", "data.labels"),
            cfg.data.field == "fov" or n > 1,
            f"data.field=lesion crops to the ground-truth lesion, which is what label set {labels.name} "
            "segments: a model of it would be trained and selected on its own answer",
        ),
        (
            ("model.encoding", "data.labels"),
            MODEL_ENCODINGS.get(encoding) in labels.encodings,
            f"model.encoding {encoding} does not fit label set {labels.name} "
            f"(it allows {', '.join(e if e != 'softmax' else 'multiclass' for e in labels.encodings)})",
        ),
        *(
            (
                ("loss.terms", "model.encoding"),
                encoding in LOSS_TERMS[term],
                f"loss.terms: {term} needs model.encoding {' or '.join(LOSS_TERMS[term])}, not {encoding}",
            )
            for term in cfg.loss.terms
        ),
        *(
            (
                (f"postprocess.{name}", "data.labels"),
                len(getattr(cfg.postprocess, name)) == n,
                f"postprocess.{name} needs {n} value(s), {of}",
            )
            for name in ("thresholds", "opening", "min_area", "presence")
        ),
        (
            ("model.presence_head", "model.arch"),
            not cfg.model.presence_head or cfg.model.arch == "unet_aspp",
            f"model.presence_head is available with unet_aspp only, not {_cut(cfg.model.arch)}",
        ),
        (
            # the presence head has one logit per Task 2 attribute (dermseg.models.heads)
            ("model.presence_head", "data.labels"),
            not cfg.model.presence_head or n == NUM_ATTRIBUTES,
            f"model.presence_head needs {NUM_ATTRIBUTES} labels; label set {labels.name} has {n}",
        ),
        (
            ("data.weak_images", "data.weak_labels"),
            cfg.data.weak_images is None or cfg.data.weak_labels is not None,
            "data.weak_images is the folder of data.weak_labels' images: set data.weak_labels too",
        ),
        (
            ("data.weak_labels", "model.presence_head", "loss.weak_mil"),
            cfg.data.weak_labels is None or cfg.model.presence_head or cfg.loss.weak_mil != "none",
            "data.weak_labels trains the presence head or the masks: set model.presence_head: true "
            "or loss.weak_mil: max or topk",
        ),
        (
            ("loss.weak_mil", "model.encoding"),
            cfg.loss.weak_mil == "none" or encoding == "multilabel",
            f"loss.weak_mil pools one sigmoid map per attribute: it needs model.encoding multilabel, "
            f"not {encoding}",
        ),
        (
            # image-level labels name the Task 2 attributes (dermseg.data.weak_labels)
            ("data.weak_labels", "data.labels"),
            cfg.data.weak_labels is None or labels.names == ATTRIBUTES,
            f"data.weak_labels labels the Task 2 attributes; label set {labels.name} has other labels",
        ),
        *_synthetic_mix_checks(cfg, labels),
    ]
    for keys, ok, message in checks:
        if not ok:
            raise ConfigValueError(message, keys)


def synthetic_per_batch(mix: float, batch_size: int) -> int:
    """How many of the ``batch_size`` images of a training batch ``data.synthetic_mix`` draws from
    the generator: ``mix * batch_size`` rounded half up (0.25 of 8: 2; 0.5 of 3: 2; 0.1 of 4: 0)."""
    return math.floor(round(mix * batch_size, 9) + 0.5)  # 0.7 * 5 is 3.4999999999999996


def _synthetic_mix_checks(cfg: Config, labels: LabelSet) -> list[tuple[tuple[str, ...], bool, str]]:
    """The rules between ``data.synthetic_mix`` and the fields it depends on (see :func:`validate`)."""
    mix, batch = cfg.data.synthetic_mix, cfg.train.batch_size
    if mix == 0:
        return []
    per_batch = synthetic_per_batch(mix, batch)
    return [
        (
            # the generator paints the five Task 2 structures (dermseg.data.synthetic)
            ("data.synthetic_mix", "data.labels"),
            labels.names == ATTRIBUTES,
            f"data.synthetic_mix draws synthetic Task 2 structures; label set {labels.name} has "
            "other labels (set data.synthetic_mix: 0)",
        ),
        (
            ("data.synthetic_mix", "train.batch_size"),
            0 < per_batch < batch,
            f"data.synthetic_mix {mix:g} of train.batch_size {batch} makes {per_batch} synthetic "
            f"images per batch; it must make 1 to {batch - 1}"
            if batch > 1
            else "data.synthetic_mix needs train.batch_size >= 2 (a real and a synthetic image)",
        ),
    ]


def dump_config(cfg: Config) -> str:
    """The config as YAML text (what a run directory records)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


#: Configs shipped with dermseg, usable by name: ``--config demo``.
BUILTIN_CONFIGS = ("seed", "isic2018", "demo", "lesion")


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config path; a built-in name (:data:`BUILTIN_CONFIGS`) maps to the shipped YAML."""
    text = str(name_or_path)
    if text in BUILTIN_CONFIGS and not Path(text).exists():
        return Path(__file__).parent / "configs" / f"{text}.yaml"
    return Path(name_or_path)
