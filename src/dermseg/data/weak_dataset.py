"""Images with image-level labels only, and training sets that mix them with mask-labelled images.

:class:`WeakLabelDataset` reads the images of a weak-label file (:mod:`dermseg.data.weak_labels`)
through the same pipeline as the mask-labelled images (decode, background crop, transform), with
empty masks that are marked unlabelled. :class:`MixedDataset` puts both kinds in one training set,
so that every item has the same keys and a batch can hold both:

* ``labelled`` ``(C,)`` bool: which attributes have a pixel mask (all False for a weak image);
* ``weak`` ``(C,)`` bool: which attributes have an image-level label (all False for a masked image);
* ``weak_presence`` ``(C,)`` float32: that label, 1 present, 0 absent (0 where ``weak`` is False).

An attribute that is neither (e.g. ``milia_like_cyst`` of a PH2 image) is unknown and trains
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dermseg.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from dermseg.data.dataset import IsicDataset
from dermseg.data.layout import IsicSample
from dermseg.data.ph2 import IMAGES_FOLDER
from dermseg.data.shape_limits import ShapeLimits
from dermseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dermseg.data.weak_labels import WeakLabels, WeakSource, read_weak_labels
from dermseg.errors import DataError

#: Image file suffixes tried after an image key that has none (PH2 ``IMD003``, a plain CSV's stem).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")


def weak_fields(per_image: Mapping[str, bool]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(C,)`` float32 presence target and ``(C,)`` bool flag of one image's labels.

    Args:
        per_image: ``{attribute: present}`` (:attr:`WeakLabels.labels` of one image).
    """
    known = np.array([a in per_image for a in ATTRIBUTES], dtype=bool)
    presence = np.array([float(per_image.get(a, False)) for a in ATTRIBUTES], dtype=np.float32)
    return presence, known


def default_images_folder(weak: WeakLabels) -> Path:
    """Where the images of a weak-label file are looked for when ``data.weak_images`` is not set:
    the file's folder; for a Derm7pt ``meta/meta.csv``, the release folder above ``meta/``."""
    folder = weak.path.parent
    if weak.source == "derm7pt" and folder.name == "meta":
        return folder.parent
    return folder


def _candidates(folder: Path, key: str) -> list[Path]:
    """The files tried for an image key, in order (the first that exists is taken)."""
    bases = [folder / key, folder / "images" / key]
    tried = list(bases)
    if not Path(key).suffix:
        tried += [base.with_name(base.name + s) for base in bases for s in IMAGE_SUFFIXES]
        # PH2 as distributed: PH2 Dataset images/IMD003/IMD003_Dermoscopic_Image/IMD003.bmp
        tried.append(folder / IMAGES_FOLDER / key / f"{key}_Dermoscopic_Image" / f"{key}.bmp")
    return tried


def find_weak_images(weak: WeakLabels, folder: str | Path | None = None) -> dict[str, Path]:
    """The image file of every image of ``weak``.

    A key is looked for as it is (Derm7pt: ``NEL/Nel026.jpg``) and, without a suffix, with one of
    :data:`IMAGE_SUFFIXES`, in ``folder`` and in ``folder/images``; a PH2 key also in the
    distributed tree (``PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp``).

    Args:
        weak: the labels.
        folder: where the images are; ``None``: :func:`default_images_folder`.

    Returns:
        ``{image key: file}``, in the labels' order.

    Raises:
        DataError: naming the labels file: an image that is not found (the first, and how many more).
    """
    root = default_images_folder(weak) if folder is None else Path(folder)
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key in weak.labels:
        path = next((p for p in _candidates(root, key) if p.is_file()), None)
        if path is None:
            missing.append(key)
        else:
            found[key] = path
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"image {missing[0]}{more} listed here is not found under {root}", weak.path)
    return found


class WeakLabelDataset(Dataset):
    """The images of a weak-label file, as training items without masks.

    Args:
        weak: the image-level labels.
        images: ``{image key: file}`` of every image of ``weak`` (:func:`find_weak_images`).
        transform: the training transform (the mask-labelled images' own, so that
            :class:`MixedDataset` reseeds one transform for both).
        decode_side, crop_background, mean, std, limits: as :class:`~dermseg.data.dataset.IsicDataset`.

    Raises:
        DataError: an image of ``weak`` is not in ``images``.

    Each item is an :class:`~dermseg.data.dataset.IsicDataset` item (``masks`` ``(5, H, W)``
    zeros, ``labelled`` all False) plus ``weak`` and ``weak_presence`` (see the module docstring).
    """

    def __init__(
        self,
        weak: WeakLabels,
        images: Mapping[str, Path],
        transform: Callable[..., Any] | None = None,
        *,
        decode_side: int | None = None,
        crop_background: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        limits: ShapeLimits = ShapeLimits(),
    ) -> None:
        absent = [key for key in weak.labels if key not in images]
        if absent:
            raise DataError(f"no image file given for {absent[0]}", weak.path)
        self.weak = weak
        self.keys = list(weak.labels)
        self.samples = [IsicSample(Path(key).stem, Path(images[key])) for key in self.keys]
        self.images = IsicDataset(
            self.samples,
            transform,
            decode_side=decode_side,
            crop_background=crop_background,
            allow_missing_masks=True,
            mean=mean,
            std=std,
            limits=limits,
        )

    @property
    def transform(self) -> Callable[..., Any] | None:
        return self.images.transform

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.images[index]
        presence, known = weak_fields(self.weak.labels[self.keys[index]])
        return {**item, "weak": torch.from_numpy(known), "weak_presence": torch.from_numpy(presence)}


class MixedDataset(Dataset):
    """Mask-labelled items (indices ``0 .. len(masked) - 1``) then weak-labelled ones, one set.

    Args:
        masked: the mask-labelled training set (items with ``labelled``).
        weak: the weak-labelled images; they must share ``masked``'s transform object, which
            :class:`~dermseg.data.sampling.SeededItems` reseeds for every item.

    Raises:
        ValueError: the two sets have different transforms, or ``masked`` is not of the five
            Task 2 attributes.
    """

    def __init__(self, masked: Any, weak: WeakLabelDataset) -> None:
        if masked.transform is not weak.transform:
            raise ValueError("the weak-labelled images must share the mask-labelled images' transform")
        if len(masked.labels.names) != NUM_ATTRIBUTES:
            raise ValueError(
                f"weak labels name the {NUM_ATTRIBUTES} Task 2 attributes, not {masked.labels.name}"
            )
        self.masked, self.weak = masked, weak

    @property
    def transform(self) -> Callable[..., Any] | None:
        return self.masked.transform

    def __len__(self) -> int:
        return len(self.masked) + len(self.weak)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index >= len(self.masked):
            return self.weak[index - len(self.masked)]
        item = self.masked[index]
        none = torch.zeros(NUM_ATTRIBUTES, dtype=torch.bool)
        return {**item, "weak": none, "weak_presence": torch.zeros(NUM_ATTRIBUTES)}


def load_weak_set(
    labels_file: str | Path,
    source: WeakSource | None,
    images_folder: str | Path | None,
    transform: Callable[..., Any] | None,
    **read: Any,
) -> WeakLabelDataset:
    """Read a weak-label file, find its images and make their dataset.

    Args:
        labels_file: the file (``data.weak_labels``).
        source: ``ph2``, ``derm7pt``, ``csv``, or ``None`` to detect it (``data.weak_format: auto``).
        images_folder: ``data.weak_images``; ``None`` for beside the file.
        transform: the training transform.
        **read: ``decode_side``, ``crop_background``, ``mean``, ``std``, ``limits``.

    Raises:
        DataError: a bad row (naming file and line) or an image not found.
    """
    weak = read_weak_labels(labels_file, source)
    return WeakLabelDataset(weak, find_weak_images(weak, images_folder), transform, **read)


__all__ = [
    "IMAGE_SUFFIXES",
    "MixedDataset",
    "WeakLabelDataset",
    "default_images_folder",
    "find_weak_images",
    "load_weak_set",
    "weak_fields",
]
