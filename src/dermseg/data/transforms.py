"""Resizing, cropping and augmenting an image together with its masks.

Built on albumentations 2.0. Conventions:

* images are ``(H, W, 3)`` uint8 RGB;
* masks are a ``(C, H, W)`` uint8 stack (or a list of C ``(H, W)`` arrays), one per label
  of the label set (the five Task 2 attributes in :data:`dermseg.attributes.ATTRIBUTES`
  order, or one lesion mask); any non-zero value counts as 1, and the outputs are always
  exactly 0/1;
* every geometric step is applied identically to the image and all masks;
  masks are resized nearest-neighbour (centre-aligned ``INTER_NEAREST_EXACT``,
  so they stay on the image's pixel grid) and padded with 0;
* colour jitter touches the image only.

Working resolution: the image's **short side** is resized to ``size``, keeping
its aspect ratio (a 1022x767 image becomes 682x512 at ``size=512``).

* training: resize, optional random rescale, optional rotation by any angle and zoom (one
  affine warp, borders filled by reflection), a random ``crop_size`` square crop
  (zero-padded when the image is smaller), flips and 90-degree rotations, colour jitter.
  The output is always ``crop_size x crop_size``.
* evaluation: the deterministic resize only, no crop, so a prediction covers the
  whole (cropped-to-field) image and maps back by resizing it to the input size.

Random state: albumentations' ``Compose(seed=...)`` seeds every child transform
with the *same* seed, which makes e.g. the horizontal and vertical flip
decisions identical. :class:`SegmentationTransform` instead shares one generator
between all children (:meth:`SegmentationTransform.reseed`), and reseeds itself
in each new process, from the PyTorch DataLoader worker's seed when there is one,
so that workers do not all draw the same augmentations.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from dermseg.errors import ConfigError

logger = logging.getLogger(__name__)

#: ImageNet channel means and standard deviations (RGB, 0-1 scale): the default normalisation.
#: A run normalises with its encoder's own (:mod:`dermseg.models.normalization`).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Mask interpolation: nearest neighbour on the same (pixel-centre) grid as the image.
MASK_INTERPOLATION: int = cv2.INTER_NEAREST_EXACT


@dataclass(frozen=True)
class TransformConfig:
    """How images are resized and augmented.

    Attributes:
        size: working resolution: the image's short side is resized to this, keeping aspect ratio.
        crop_size: side of the random square training crop; ``<= size``.
        hflip: random horizontal flips (p=0.5) in training.
        vflip: random vertical flips (p=0.5) in training.
        rotate90: random rotations by 0/90/180/270 degrees in training.
        color_jitter: brightness, contrast and saturation factors drawn from
            ``[1 - j, 1 + j]`` and hue shifts from ``[-j/4, j/4]``; 0 disables. In ``[0, 1]``.
        scale_jitter: ``(low, high)``: in training, resize the short side to
            ``size * s`` with ``s`` drawn uniformly from this range (an image smaller
            than the crop is then zero-padded); None disables. ``0 < low <= high <= 4``.
        lesion_crop: probability that a training crop is centred on the lesion
            (:class:`~dermseg.data.lesion_crop.LesionCentredCrop`); the mask stack must then
            end with the Task 1 lesion mask. 0 disables. In ``[0, 1]``.
        rotate: in training, rotate by an angle drawn uniformly from ``[-rotate, rotate]``
            degrees, in ``[0, 180]``; 0 disables.
        scale: in training, zoom by a factor drawn uniformly from ``[1 - scale, 1 + scale]``,
            in ``[0, 1)``; 0 disables. Rotation and zoom are one affine warp of the resized
            image about its centre, before the crop, keeping its size: the image bilinear, the
            masks nearest-neighbour, both with the same matrix; what comes into view at the
            borders is the image reflected (``BORDER_REFLECT_101``), the masks likewise.

    Raises:
        ConfigError: a value is of the wrong type or out of range (the message says which).
    """

    size: int = 512
    crop_size: int = 512
    hflip: bool = True
    vflip: bool = True
    rotate90: bool = True
    color_jitter: float = 0.2
    scale_jitter: tuple[float, float] | None = None
    lesion_crop: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0

    def __post_init__(self) -> None:
        for name in ("size", "crop_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"transform.{name} must be an integer, got {value!r}")
            if value < 8:
                raise ConfigError(f"transform.{name} must be at least 8, got {value}")
            object.__setattr__(self, name, int(value))
        if self.crop_size > self.size:
            raise ConfigError(
                f"transform.crop_size ({self.crop_size}) must not exceed transform.size ({self.size}): "
                "the crop is taken from the image resized to short side = size"
            )
        for name in ("hflip", "vflip", "rotate90"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"transform.{name} must be true or false, got {getattr(self, name)!r}")
            object.__setattr__(self, name, bool(getattr(self, name)))
        jitter = self.color_jitter
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float, np.number)):
            raise ConfigError(f"transform.color_jitter must be a number, got {jitter!r}")
        if not (math.isfinite(jitter) and 0.0 <= jitter <= 1.0):
            raise ConfigError(f"transform.color_jitter must be in [0, 1], got {jitter}")
        object.__setattr__(self, "color_jitter", float(jitter))
        lesion = self.lesion_crop
        if isinstance(lesion, bool) or not isinstance(lesion, (int, float, np.number)):
            raise ConfigError(f"transform.lesion_crop must be a number, got {lesion!r}")
        if not (math.isfinite(lesion) and 0.0 <= lesion <= 1.0):
            raise ConfigError(f"transform.lesion_crop must be in [0, 1], got {lesion}")
        object.__setattr__(self, "lesion_crop", float(lesion))
        for name, high, closed in (("rotate", 180.0, True), ("scale", 1.0, False)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ConfigError(f"transform.{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value >= 0.0 and (value <= high if closed else value < high)):
                bounds = f"[0, {high:g}]" if closed else f"[0, {high:g})"
                raise ConfigError(f"transform.{name} must be in {bounds}, got {value}")
            object.__setattr__(self, name, float(value))
        if self.scale_jitter is not None:
            object.__setattr__(self, "scale_jitter", _check_scale_jitter(self.scale_jitter))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransformConfig:
        """Build from a mapping (e.g. the ``transform:`` section of a YAML config).

        Raises:
            ConfigError: unknown keys or invalid values.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"transform settings must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            names, expected = ", ".join(map(str, unknown)), ", ".join(sorted(known))
            raise ConfigError(f"unknown transform setting(s) {names}; expected {expected}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-able form, inverse of :meth:`from_dict`."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["scale_jitter"] = list(self.scale_jitter) if self.scale_jitter is not None else None
        return out


def _check_scale_jitter(value: Any) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"transform.scale_jitter must be a pair (low, high) or null, got {value!r}")
    low, high = value
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
            raise ConfigError(f"transform.scale_jitter values must be finite numbers, got {value!r}")
    if not 0.0 < low <= high <= 4.0:
        raise ConfigError(f"transform.scale_jitter must satisfy 0 < low <= high <= 4, got {value!r}")
    return float(low), float(high)


# --------------------------------------------------------------------------- the transform


class SegmentationTransform:
    """An albumentations pipeline applied to an image and its mask stack.

    Call it as ``image, masks = transform(image, masks)`` (see :func:`apply`).

    Args:
        compose: the albumentations pipeline.
        name: short description for logs and ``repr``.
        seed: seed of the shared random generator; None for fresh OS entropy.
    """

    def __init__(self, compose: A.Compose, name: str, seed: int | None = None) -> None:
        self.compose = compose
        self.name = name
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        """Reset the random state: one generator shared by every step of the pipeline.

        Args:
            seed: any non-negative integer, or None for fresh OS entropy.
        """
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        self.seed = int(seed)
        self._pid = os.getpid()
        self.compose.set_random_state(np.random.default_rng(self.seed), random.Random(self.seed))

    def _reseed_if_forked(self) -> None:
        """In a new process (a DataLoader worker), draw a new seed so workers differ."""
        if os.getpid() == self._pid:
            return
        info = torch.utils.data.get_worker_info()
        if info is None:
            self.reseed(None)
        else:
            self.reseed(
                int(np.random.SeedSequence([self.seed, info.seed]).generate_state(1, np.uint64)[0] >> 1)
            )
        logger.debug("%s: new process %d, reseeded to %d", self.name, self._pid, self.seed)

    def __call__(
        self, image: np.ndarray, masks: np.ndarray | Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Transform ``image`` and ``masks`` together; see :func:`apply`."""
        self._reseed_if_forked()
        image = _check_image(image)
        stack = _check_masks(masks, image.shape[:2]) if masks is not None else None
        data: dict[str, Any] = {"image": image}
        if stack is not None:
            data["masks"] = stack
        out = self.compose(**data)
        out_image = np.ascontiguousarray(out["image"], dtype=np.uint8)
        if stack is None:
            return out_image, None
        return out_image, np.ascontiguousarray(np.asarray(out["masks"]), dtype=np.uint8)

    def __repr__(self) -> str:
        return f"SegmentationTransform({self.name}, seed={self.seed})"


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got shape {image.shape} dtype {image.dtype}")
    return np.ascontiguousarray(image)


def _check_masks(masks: np.ndarray | Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Stack ``masks`` to ``(N, H, W)`` uint8 0/1, checking they match the image size."""
    if isinstance(masks, np.ndarray):
        stack = masks
    else:
        stack = np.stack([np.asarray(m) for m in masks]) if len(masks) else np.zeros((0, *size), np.uint8)
    if stack.ndim != 3 or stack.shape[0] < 1:
        raise ValueError(f"expected masks of shape (N, H, W) with N >= 1, got {stack.shape}")
    if stack.shape[1:] != tuple(size):
        raise ValueError(
            f"masks are {stack.shape[1]}x{stack.shape[2]} but the image is {size[0]}x{size[1]} (HxW)"
        )
    if stack.dtype == np.uint8 and stack.max(initial=0) <= 1:
        return np.ascontiguousarray(stack)
    return (stack > 0).astype(np.uint8)


#: Image interpolation when enlarging (bilinear) and when shrinking (area averaging); training's
#: resize (albumentations ``SmallestMaxSize(interpolation=INTER_LINEAR, area_for_downscale="image")``),
#: the prepared cache (which uses the evaluation transform) and prediction
#: (:func:`resize_short_side`) all follow this rule.
UPSCALE_INTERPOLATION: int = cv2.INTER_LINEAR
DOWNSCALE_INTERPOLATION: int = cv2.INTER_AREA


def _resize_short_side(size: int | list[int]) -> A.SmallestMaxSize:
    """Resize so the short side is ``size`` (or one of ``size``, drawn uniformly).

    Images: :data:`UPSCALE_INTERPOLATION` when enlarging, :data:`DOWNSCALE_INTERPOLATION`
    when shrinking (albumentations switches to area for a scale < 1); masks: nearest.
    """
    return A.SmallestMaxSize(
        max_size=size,
        interpolation=UPSCALE_INTERPOLATION,
        mask_interpolation=MASK_INTERPOLATION,
        area_for_downscale="image",
        p=1.0,
    )


def build_train_transform(cfg: TransformConfig, seed: int | None = None) -> SegmentationTransform:
    """The training pipeline: resize (with scale jitter), rotate/zoom, crop, flip/rotate90, colour jitter.

    Args:
        cfg: the settings.
        seed: seed of the pipeline's random state; None for fresh OS entropy.

    Returns:
        A transform whose outputs are ``(crop_size, crop_size, 3)`` images and
        ``(N, crop_size, crop_size)`` masks, whatever the input size.
    """
    if cfg.scale_jitter is None:
        steps: list[Any] = [_resize_short_side(cfg.size)]
    else:
        # One resize to a random short side (not a resize then a rescale): half the cost.
        low, high = cfg.scale_jitter
        sides = list(range(max(1, round(cfg.size * low)), max(1, round(cfg.size * high)) + 1))
        steps = [_resize_short_side(sides)]
    if cfg.rotate > 0 or cfg.scale > 0:
        # Before the crop, on the whole resized image: the crop then holds few reflected pixels.
        steps.append(
            A.Affine(
                rotate=(-cfg.rotate, cfg.rotate),
                scale=(1.0 - cfg.scale, 1.0 + cfg.scale),
                interpolation=UPSCALE_INTERPOLATION,
                mask_interpolation=cv2.INTER_NEAREST,  # a warp samples the same points for both
                border_mode=cv2.BORDER_REFLECT_101,
                p=1.0,
            )
        )
    crop_args: dict[str, Any] = {
        "height": cfg.crop_size,
        "width": cfg.crop_size,
        "pad_if_needed": True,
        "pad_position": "random",
        "border_mode": cv2.BORDER_CONSTANT,
        "fill": 0,
        "fill_mask": 0,
        "p": 1.0,
    }
    if cfg.lesion_crop > 0:
        from dermseg.data.lesion_crop import LesionCentredCrop

        steps.append(LesionCentredCrop(lesion_p=cfg.lesion_crop, **crop_args))
    else:
        steps.append(A.RandomCrop(**crop_args))
    if cfg.hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if cfg.vflip:
        steps.append(A.VerticalFlip(p=0.5))
    if cfg.rotate90:
        steps.append(A.RandomRotate90(p=1.0))
    if cfg.color_jitter > 0:
        j = cfg.color_jitter
        steps.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=j / 4.0, p=1.0))
    name = (
        f"train size={cfg.size} crop={cfg.crop_size} hflip={cfg.hflip} vflip={cfg.vflip} "
        f"rot90={cfg.rotate90} jitter={cfg.color_jitter} scale={cfg.scale_jitter} lesion={cfg.lesion_crop}"
    )
    if cfg.rotate > 0 or cfg.scale > 0:
        name += f" rotate={cfg.rotate:g} zoom={cfg.scale:g}"
    return SegmentationTransform(A.Compose(steps, p=1.0), name, seed)


def build_eval_transform(cfg: TransformConfig) -> SegmentationTransform:
    """The evaluation/inference pipeline: resize the short side to ``cfg.size``, nothing else.

    Deterministic and crop-free, so a prediction covers the whole input and maps
    back to it by resizing to the input's ``(H, W)``.

    Args:
        cfg: the settings (only ``size`` is used).

    Returns:
        A transform whose outputs keep the input's aspect ratio, short side ``cfg.size``.
    """
    return SegmentationTransform(A.Compose([_resize_short_side(cfg.size)], p=1.0), f"eval size={cfg.size}", 0)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """``(h, w)`` that :func:`build_eval_transform` gives a ``height`` x ``width`` image."""
    scale = size / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_short_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an image so its short side is ``size``, as :func:`build_eval_transform` does.

    The same rule as training's resize: area averaging when shrinking, bilinear when
    enlarging (:data:`DOWNSCALE_INTERPOLATION`, :data:`UPSCALE_INTERPOLATION`), the same
    output shape (:func:`resized_shape`), and the input itself when the shape is unchanged.
    Done here with OpenCV alone (no albumentations pipeline per image) for prediction.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        size: the short side wanted.

    Returns:
        ``(h, w, 3)`` uint8 with ``min(h, w) == size`` (up to rounding of the long side).
    """
    height, width = image.shape[:2]
    rh, rw = resized_shape(height, width, size)
    if (rh, rw) == (height, width):
        return image
    shrinking = size / min(height, width) < 1.0
    interpolation = DOWNSCALE_INTERPOLATION if shrinking else UPSCALE_INTERPOLATION
    return cv2.resize(image, (rw, rh), interpolation=interpolation)


def apply(
    transform: SegmentationTransform | Callable[..., Any],
    image: np.ndarray,
    masks: np.ndarray | Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply a transform to an image and its masks.

    Args:
        transform: from :func:`build_train_transform` / :func:`build_eval_transform`,
            or a plain albumentations ``Compose``.
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(N, H, W)`` array or list of N ``(H, W)`` arrays (N = the labels of the set),
            any dtype, non-zero = 1; or None.

    Returns:
        ``(image, masks)``: ``(h, w, 3)`` uint8 and ``(N, h, w)`` uint8 with values 0/1
        (None when ``masks`` is None).

    Raises:
        ValueError: wrong shapes or dtype, or masks of another size than the image.
    """
    if isinstance(transform, SegmentationTransform):
        return transform(image, masks)
    image = _check_image(image)
    data: dict[str, Any] = {"image": image}
    if masks is not None:
        data["masks"] = _check_masks(masks, image.shape[:2])
    out = transform(**data)
    out_masks = None if masks is None else np.ascontiguousarray(np.asarray(out["masks"]), dtype=np.uint8)
    return np.ascontiguousarray(out["image"], dtype=np.uint8), out_masks


def to_tensor(
    image: np.ndarray,
    masks: np.ndarray | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Convert a transformed sample to PyTorch tensors.

    Args:
        image: ``(h, w, 3)`` uint8 RGB.
        masks: ``(N, h, w)`` uint8 0/1, or None.
        mean: per-channel mean on the 0-1 scale.
        std: per-channel standard deviation on the 0-1 scale (all > 0).

    Returns:
        ``(image, masks)``: ``(3, h, w)`` float32 ``(x / 255 - mean) / std`` and
        ``(N, h, w)`` uint8 (None when ``masks`` is None).
    """
    image = _check_image(image)
    mean_arr = np.asarray(mean, np.float32).reshape(3, 1, 1)
    std_arr = np.asarray(std, np.float32).reshape(3, 1, 1)
    if mean_arr.size != 3 or std_arr.size != 3 or not np.all(std_arr > 0):
        raise ValueError(f"mean and std need 3 values each, std > 0; got mean={mean}, std={std}")
    chw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    scale = torch.from_numpy(1.0 / (255.0 * std_arr))
    offset = torch.from_numpy(mean_arr / std_arr)
    tensor = chw.to(torch.float32) * scale - offset
    if masks is None:
        return tensor, None
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"masks of shape {masks.shape} do not match the image of shape {image.shape}")
    return tensor, torch.from_numpy(np.ascontiguousarray(masks, dtype=np.uint8))
