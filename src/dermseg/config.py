"""Run configuration: dataclasses, YAML loading and ``--set key=value`` overrides.

Configs are data, never code: YAML is read with ``safe_load`` and every key is
checked against the dataclasses below, so a typo or a wrong type is a one-line
:class:`~dermseg.errors.ConfigError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.errors import ConfigError, display_path
from dermseg.labels import MODEL_ENCODINGS, LabelSet, load_label_set


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
        split_seed: seed of that split.
        size: working resolution: images are resized so their short side is ``size``.
        crop_size: side of the random training crops (the thesis used 128; 512 is competitive).
        crop_background: crop to the dermoscope's field of view, detected from the image alone.
        workers: DataLoader worker processes.
        limit: use at most this many training images (quick experiments); ``None`` for all.
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
        max_aspect_ratio: the most elongated image accepted (long side / short side, >= 1); a
            longer one is refused, named, before it is decoded (its working image would be
            unbounded: :mod:`dermseg.data.shape_limits`).
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
    max_aspect_ratio: float = 8.0


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
            (it counts with ``model.presence_head`` only).
    """

    terms: dict[str, float] = field(default_factory=lambda: {"bce": 1.0, "soft_jaccard": 1.0})
    focal_gamma: float = 2.0
    class_weights: str = "none"
    presence_weight: float = 0.5


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
        max_minutes: stop after this wall time (the demo's budget); ``None`` for no limit.
        eval_every: validate every N epochs.
        max_steps_per_epoch: cap steps per epoch (quick runs); ``None`` for a full pass.
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
        seed: seeds the weights' initialisation, the training order and every augmentation.
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


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


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
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {_coerce(k, key_t, where): _coerce(v, val_t, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    raise ConfigError(f"{where}: unsupported type {tp}")  # pragma: no cover - schema bug


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key {prefix}{unknown[0]} (valid: {', '.join(names)})")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from a nested dict (missing keys take defaults).

    Raises:
        ConfigError: unknown key, wrong type, or an invalid value.
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
        ConfigError: ``data.labels: ...``, an unknown name or an unreadable or invalid file
            (the message names it).
    """
    try:
        return load_label_set(cfg.data.labels)
    except ConfigError as err:
        where = f"{display_path(err.path)}: " if err.path is not None else ""
        raise ConfigError(f"data.labels: {where}{err.message}") from None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge section by section; a value inside a section (even a mapping like loss.terms) is replaced."""
    out = dict(base)
    for k, v in override.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["train.lr=0.01", "model.aspp_rates=[1,2]"]`` into a nested dict (values parsed as YAML).

    Raises:
        ConfigError: an item without ``=`` or with an unparsable value.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.lr=0.001)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: cannot parse value ({err.problem})") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply ``--set`` overrides.

    Raises:
        ConfigError: unreadable file, invalid YAML, unknown key, wrong type or value;
            the message names the file.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("config file not found", path) from None
        except IsADirectoryError:
            raise ConfigError("is a folder, expected a YAML config file", path) from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read config ({err})", path) from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"invalid YAML{at}: {getattr(err, 'problem', err)}", path) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError("config must be a mapping of sections (data, model, train, ...)", path)
        data = loaded or {}
    data = _merge(data, parse_overrides(overrides or []))
    try:
        return config_from_dict(data)
    except ConfigError as err:
        # A bad label set given with --set is that argument's fault, not the config file's.
        labels_set = [o for o in overrides or [] if o.partition("=")[0].strip() == "data.labels"]
        if labels_set and err.path is None and err.message.startswith("data.labels: "):
            reason = err.message.removeprefix("data.labels: ")
            raise ConfigError(f"--set {labels_set[-1]}: {reason}") from None
        if path is not None and err.path is None:
            raise ConfigError(err.message, path) from None
        raise


def validate(cfg: Config) -> None:
    """Check value ranges and cross-field rules.

    Raises:
        ConfigError: the first invalid value found.
    """
    labels = config_label_set(cfg)
    n, of = labels.num_labels, f"one per label of {labels.name}"
    checks = [
        (cfg.data.size >= 32, f"data.size must be >= 32, got {cfg.data.size}"),
        (
            0 < cfg.data.crop_size <= cfg.data.size,
            f"data.crop_size must be in 1..data.size ({cfg.data.size})",
        ),
        (0 < cfg.data.val_fraction < 1, "data.val_fraction must be between 0 and 1"),
        (0 <= cfg.data.balance <= 1, "data.balance must be between 0 and 1"),
        (cfg.data.validation in ("auto", "holdout"), "data.validation must be auto or holdout"),
        (cfg.data.folds >= 1, "data.folds must be >= 1"),
        (0 <= cfg.data.fold < max(1, cfg.data.folds), "data.fold must be in 0..data.folds-1"),
        (cfg.data.workers >= 0, "data.workers must be >= 0"),
        (cfg.data.max_aspect_ratio >= 1, "data.max_aspect_ratio must be >= 1"),
        (cfg.train.epochs >= 1, "train.epochs must be >= 1"),
        (cfg.train.batch_size >= 1, "train.batch_size must be >= 1"),
        (cfg.train.lr > 0, "train.lr must be > 0"),
        (cfg.train.encoder_lr_mult >= 0, "train.encoder_lr_mult must be >= 0"),
        (cfg.train.amp in ("auto", "bf16", "fp16", "off"), "train.amp must be auto, bf16, fp16 or off"),
        (
            cfg.model.encoding in ("multilabel", "multiclass"),
            "model.encoding must be multilabel or multiclass",
        ),
        (
            MODEL_ENCODINGS.get(cfg.model.encoding) in labels.encodings,
            f"model.encoding {cfg.model.encoding} does not fit label set {labels.name} "
            f"(it allows {', '.join(e if e != 'softmax' else 'multiclass' for e in labels.encodings)})",
        ),
        (0 <= cfg.augment.rotate <= 180, "augment.rotate must be between 0 and 180 degrees"),
        (0 <= cfg.augment.scale < 1, "augment.scale must be in [0, 1) (0.2 zooms by x0.8 to x1.2)"),
        (
            cfg.loss.class_weights in ("none", "inverse_frequency"),
            "loss.class_weights must be none or inverse_frequency",
        ),
        (
            len(cfg.postprocess.thresholds) == n,
            f"postprocess.thresholds needs {n} value(s), {of}",
        ),
        (all(0 <= t <= 1 for t in cfg.postprocess.thresholds), "postprocess.thresholds must be in [0, 1]"),
        (
            len(cfg.postprocess.opening) == n,
            f"postprocess.opening needs {n} value(s), {of}",
        ),
        (
            all(k == 0 or (k > 0 and k % 2 == 1) for k in cfg.postprocess.opening),
            "postprocess.opening sizes must be 0 or odd",
        ),
        (
            len(cfg.postprocess.min_area) == n,
            f"postprocess.min_area needs {n} value(s), {of}",
        ),
        (all(a >= 0 for a in cfg.postprocess.min_area), "postprocess.min_area must be >= 0"),
        (
            len(cfg.postprocess.presence) == n,
            f"postprocess.presence needs {n} value(s), {of}",
        ),
        (all(0 <= p <= 1 for p in cfg.postprocess.presence), "postprocess.presence must be in [0, 1]"),
        (bool(cfg.loss.terms), "loss.terms must name at least one loss"),
        (
            not cfg.model.presence_head or cfg.model.arch == "unet_aspp",
            f"model.presence_head is available with unet_aspp only, not {cfg.model.arch}",
        ),
        (
            # the presence head has one logit per Task 2 attribute (dermseg.models.heads)
            not cfg.model.presence_head or n == NUM_ATTRIBUTES,
            f"model.presence_head needs {NUM_ATTRIBUTES} labels; label set {labels.name} has {n}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


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
