"""The PyTorch dataset of image and mask samples, for any label set (ISIC Task 2 by default).

Each item goes through the thesis pipeline, done properly: decode (at reduced
scale when the working size allows), background elimination from the image
alone, then the resize/crop/augmentation transform, identical on image and masks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dermseg.data.background import CropBox, crop, detect_field_of_view
from dermseg.data.imageio import image_size, read_image, read_mask
from dermseg.data.layout import IsicSample
from dermseg.data.lesion_box import check_margin, lesion_box
from dermseg.data.shape_limits import ShapeLimits
from dermseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD, apply, to_tensor
from dermseg.errors import ConfigError, DataError
from dermseg.labels import DEFAULT, LabelSet


def _resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a ``(H, W)`` bool mask to ``(height, width)`` with nearest-neighbour sampling."""
    if mask.shape == (height, width):
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.resize((width, height), Image.Resampling.NEAREST)) > 127


def samples_label_set(samples: Sequence[IsicSample], labels: LabelSet | None = None) -> LabelSet:
    """The label set of ``samples``: ``labels`` when given, else the one they were discovered with.

    Raises:
        ConfigError: a sample was discovered with a set of other labels (names or order) than
            ``labels`` (or than the first sample's).
    """
    chosen = labels if labels is not None else (samples[0].labels if samples else DEFAULT)
    for s in samples:
        if s.labels.names != chosen.names:
            raise ConfigError(
                f"{s.isic_id} was found with label set {s.labels.name} ({', '.join(s.labels.names)}), "
                f"not {chosen.name} ({', '.join(chosen.names)})"
            )
    return chosen


class IsicDataset(Dataset):
    """Images and ``(C, H, W)`` mask stacks of samples, one channel per label of the label set.

    Args:
        samples: the samples (from :func:`dermseg.data.layout.discover`).
        labels: their label set (C labels); ``None``: the one they were discovered with (the
            five Task 2 attributes by default).
        transform: an albumentations pipeline from :mod:`dermseg.data.transforms`
            (``None``: no resizing or augmentation).
        decode_side: decode JPEGs at reduced scale while both sides stay >= this
            (set it to the working size to go several times faster on large images).
        crop_background: crop to the dermoscope's field of view, detected from the image.
        allow_missing_masks: treat absent mask files as unlabelled (zeros, with
            ``labelled`` False) instead of an error; for partially annotated data.
        lesion_masks: append the lesion mask (zeros where a sample has none) as a last,
            ``C + 1``-th mask channel before the transform, for lesion-centred crops; it is
            dropped from the item after the transform.
        mean, std: the image normalisation (RGB, 0-1 scale), ``(x / 255 - mean) / std``: the
            encoder's (:func:`dermseg.models.normalization.encoder_normalization`); ImageNet's
            by default.
        lesion_field: crop each image further to its ground-truth lesion's box grown by this
            margin (:func:`dermseg.data.lesion_box.lesion_box`), inside the field of view, so the
            lesion, not the whole field, is resized to the working size (``data.field: lesion``);
            a sample without a lesion mask keeps its whole field. ``None``: the field of view.
        limits: the largest aspect ratio accepted, checked from each image's header before it
            is decoded (:class:`~dermseg.data.shape_limits.ShapeLimits`).

    Raises:
        DataError: a sample lacks masks and ``allow_missing_masks`` is False (and, when an item
            is read, ``ImageShapeError``: an image beyond ``limits``, named).
        ConfigError: a sample was discovered with another label set than ``labels``.

    Each item is a dict:
        ``image``: ``(3, H, W)`` float32, normalised with ``mean`` and ``std``;
        ``masks``: ``(C, H, W)`` uint8 in {0, 1}, channels in the label set's order (Task 2:
        ATTRIBUTES order, C = 5);
        ``labelled``: ``(C,)`` bool, whether each mask was annotated;
        ``id``: the image id;
        ``crop``: ``(4,)`` int64 ``top, left, bottom, right`` of the kept field in
        original pixel coordinates; ``size``: ``(2,)`` int64 original ``H, W``.
    """

    def __init__(
        self,
        samples: Sequence[IsicSample],
        transform: Callable[..., Any] | None = None,
        *,
        labels: LabelSet | None = None,
        decode_side: int | None = None,
        crop_background: bool = True,
        allow_missing_masks: bool = False,
        lesion_masks: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        lesion_field: float | None = None,
        limits: ShapeLimits = ShapeLimits(),
    ) -> None:
        self.samples = list(samples)
        self.lesion_field = None if lesion_field is None else check_margin(lesion_field)
        self.labels = samples_label_set(self.samples, labels)
        self.lesion_masks = lesion_masks
        self.mean, self.std = tuple(mean), tuple(std)
        self.transform = transform
        self.decode_side = decode_side
        self.crop_background = crop_background
        self.allow_missing_masks = allow_missing_masks
        self.limits = limits
        if not allow_missing_masks:
            for s in self.samples:
                if s.missing_labels:
                    raise DataError(
                        f"missing mask {s.mask_name(s.missing_labels[0])} "
                        "(run dermseg check for the full list)",
                        s.image_path,
                    )

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, CropBox, tuple[int, int]]:
        """Decode one sample, background removed, before the transform.

        Returns:
            image ``(h, w, 3)`` uint8, masks ``(C, h, w)`` uint8 (``(C + 1, h, w)`` with
            ``lesion_masks``, the lesion last), labelled ``(C,)`` bool, the crop box in
            original coordinates, and the original ``(H, W)``.
        """
        sample = self.samples[index]
        full_w, full_h = image_size(sample.image_path)
        self.limits.check_image(full_h, full_w, sample.image_path)
        image = read_image(sample.image_path, min_side=self.decode_side)
        h, w = image.shape[:2]
        n = self.labels.num_labels
        masks = np.zeros((n + int(self.lesion_masks), h, w), dtype=np.uint8)
        labelled = np.zeros(n, dtype=bool)
        for k, path in enumerate(sample.mask_paths):
            if path is None:
                continue
            masks[k] = _resize_nearest(read_mask(path, expected_size=(full_w, full_h)), h, w)
            labelled[k] = True
        lesion = None
        if (self.lesion_masks or self.lesion_field is not None) and sample.lesion_mask_path is not None:
            lesion = _resize_nearest(read_mask(sample.lesion_mask_path, expected_size=(full_w, full_h)), h, w)
            if self.lesion_masks:
                masks[n] = lesion
        image, masks, box = crop_to_field(
            image, masks, lesion, crop_background=self.crop_background, lesion_field=self.lesion_field
        )
        original_box = box.scaled(full_w / w, full_h / h).clipped(full_h, full_w)
        return image, masks, labelled, original_box, (full_h, full_w)

    def presence(self, index: int) -> np.ndarray:
        """``(C,)`` bool: which labels sample ``index`` holds (its masks alone are read)."""
        sample = self.samples[index]
        return np.array([p is not None and bool(read_mask(p).any()) for p in sample.mask_paths])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return make_item(
            self.samples[index].isic_id, *self.load(index), self.transform, mean=self.mean, std=self.std
        )


def crop_to_field(
    image: np.ndarray,
    masks: np.ndarray,
    lesion: np.ndarray | None,
    *,
    crop_background: bool,
    lesion_field: float | None,
) -> tuple[np.ndarray, np.ndarray, CropBox]:
    """Crop a decoded image and its masks to the part the network sees.

    Args:
        image: ``(h, w, 3)`` uint8.
        masks: ``(K, h, w)`` uint8.
        lesion: ``(h, w)`` lesion mask, or ``None`` when the sample has none.
        crop_background: crop to the dermoscope's field of view, detected from the image alone.
        lesion_field: crop further to the lesion's box grown by this margin (inside the field of
            view); ``None``, or no ``lesion``: the field of view.

    Returns:
        The cropped image and masks, and the box kept, in ``image``'s coordinates.
    """
    h, w = image.shape[:2]
    box = detect_field_of_view(image) if crop_background else CropBox.full(h, w)
    if lesion_field is not None and lesion is not None:
        found = lesion_box(lesion, lesion_field, within=box)
        box = box if found is None else found
    if not box.is_full(h, w):
        image = np.ascontiguousarray(crop(image, box, channels_last=True))
        masks = np.ascontiguousarray(crop(masks, box, channels_last=False))
    return image, masks, box


def make_item(
    isic_id: str,
    image: np.ndarray,
    masks: np.ndarray,
    labelled: np.ndarray,
    box: CropBox,
    full: tuple[int, int],
    transform: Callable[..., Any] | None,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> dict[str, Any]:
    """The dataset item (see :class:`IsicDataset`) of a decoded, background-cropped sample,
    its image normalised with ``mean`` and ``std`` (RGB, 0-1 scale).

    ``masks`` is ``(C, h, w)``, or ``(C + 1, h, w)`` with a lesion channel last, which is dropped
    after the transform; C is the length of ``labelled``.
    """
    if transform is not None:
        image, masks = apply(transform, image, masks)
    image_t, masks_t = to_tensor(image, masks[: len(labelled)], mean, std)  # drops a lesion channel
    return {
        "image": image_t,
        "masks": masks_t,
        "labelled": torch.from_numpy(labelled),
        "id": isic_id,
        "crop": torch.tensor([box.top, box.left, box.bottom, box.right], dtype=torch.int64),
        "size": torch.tensor(full, dtype=torch.int64),
    }
