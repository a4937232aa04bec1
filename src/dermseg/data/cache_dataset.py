"""The dataset of a prepared cache: :class:`~dermseg.data.dataset.IsicDataset` items from a memory map."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from dermseg.data.background import CropBox
from dermseg.data.cache_integrity import check_item
from dermseg.data.cache_manifest import CacheManifest
from dermseg.data.dataset import make_item
from dermseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dermseg.errors import DataError
from dermseg.labels import LabelSet


class CachedIsicDataset(Dataset):
    """:class:`~dermseg.data.dataset.IsicDataset` items, read from a prepared cache.

    Images are read from a read-only memory map opened lazily in each process, so
    the dataset is cheap to send to DataLoader worker processes. Each item is checked
    against its checksum the first time a process reads it (about 2 ms for a 512 px item:
    :mod:`dermseg.data.cache_integrity`).

    Args:
        cache: from :func:`~dermseg.data.cache.open_cache` (validated against the data
            folder by the caller).
        split_ids: image ids of the samples, in item order (from any split of the cache).
        transform: a pipeline from :mod:`dermseg.data.transforms`, ``None`` for none.
        labels: the label set the caller expects (C labels); ``None``: the cache's
            (``cache.labels``). A cache of other labels is refused.
        allow_missing_masks: accept samples whose masks were not all present.
        lesion_masks: append the lesion mask (zeros where a sample has none) as a last,
            ``C + 1``-th mask channel before the transform, for lesion-centred crops
            (:class:`~dermseg.data.lesion_crop.LesionCentredCrop`); it is dropped from the
            item after the transform, as with ``IsicDataset(lesion_masks=True)``.
        mean, std: the image normalisation (RGB, 0-1 scale), as for
            :class:`~dermseg.data.dataset.IsicDataset`.

    Raises:
        DataError: an id is not in the cache, the cache holds another label set than
            ``labels``, or (without ``allow_missing_masks``) a sample lacks masks; when an
            item is read, its cached bytes do not match their checksum (naming the item and
            its file).

    Each item is a dict as :class:`~dermseg.data.dataset.IsicDataset` gives:
        ``image`` ``(3, h, w)`` float32 normalised with ``mean`` and ``std``; ``masks`` ``(C, h, w)``
        uint8; ``labelled`` ``(C,)`` bool; ``id``; ``crop`` ``(4,)`` int64 top, left, bottom, right
        in original coordinates; ``size`` ``(2,)`` int64 original ``H, W``.
    """

    def __init__(
        self,
        cache: CacheManifest,
        split_ids: Sequence[str],
        transform: Callable[..., Any] | None = None,
        *,
        labels: LabelSet | None = None,
        allow_missing_masks: bool = False,
        lesion_masks: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.mean, self.std = tuple(mean), tuple(std)
        if labels is not None and (labels.name, labels.names) != (cache.labels.name, cache.labels.names):
            raise DataError(
                f"the cache holds label set {cache.labels.name} ({', '.join(cache.labels.names)}), "
                f"not {labels.name} ({', '.join(labels.names)}); {cache.rebuild_hint()}",
                cache.root,
            )
        self.labels = cache.labels
        by_id = {s.isic_id: s for s in cache.samples}
        missing = [i for i in split_ids if i not in by_id]
        if missing:
            raise DataError(
                f"{len(missing)} image(s) not in the cache, e.g. {missing[0]}; {cache.rebuild_hint()}",
                cache.root,
            )
        self.root = cache.root
        self.hint = cache.rebuild_hint()
        self.entries = [by_id[i] for i in split_ids]
        self.files = {
            name: (cache.root / s.images_file, cache.root / s.masks_file) for name, s in cache.splits.items()
        }
        self.transform = transform
        self.lesion_masks = lesion_masks
        if not allow_missing_masks:
            for e in self.entries:
                if not all(e.labelled):
                    raise DataError(f"{e.isic_id} lacks masks in the cache", self.root / e.image.path)
        self._maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._checked: set[int] = set()
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # each process opens its own memory maps and checks the items it reads
        state["_maps"], state["_checked"], state["_pid"] = {}, set(), -1
        return state

    def __len__(self) -> int:
        return len(self.entries)

    def _arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if self._pid != os.getpid():
            self._maps, self._checked, self._pid = {}, set(), os.getpid()
        if split not in self._maps:
            images, masks = self.files[split]
            self._maps[split] = (np.memmap(images, np.uint8, mode="r"), np.memmap(masks, np.uint8, mode="r"))
        return self._maps[split]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, CropBox, tuple[int, int]]:
        """One cached sample, before the transform.

        Returns:
            image ``(h, w, 3)`` uint8, masks ``(C, h, w)`` uint8 (``(C + 1, h, w)`` with
            ``lesion_masks``, the lesion last, zeros where the sample has none),
            labelled ``(C,)`` bool, the crop box in original coordinates, and the
            original ``(H, W)``.
        """
        e = self.entries[index]
        images, masks = self._arrays(e.split)
        if index not in self._checked:
            check_item(e, images, masks, self.files[e.split], self.hint)
            self._checked.add(index)
        h, w = e.shape
        image = np.array(images[e.offset : e.offset + e.image_bytes]).reshape(h, w, 3)
        # The stack is packed channel after channel, so the label masks are the first
        # C*h*w bits whether or not the lesion mask follows them.
        channels = e.num_labels + int(self.lesion_masks and e.lesion)
        packed = np.asarray(masks[e.mask_offset : e.mask_offset + e.packed_bytes(channels)])
        stack = np.unpackbits(packed, count=channels * h * w).reshape(channels, h, w)
        if self.lesion_masks and not e.lesion:
            stack = np.concatenate([stack, np.zeros((1, h, w), np.uint8)])
        return image, stack, np.array(e.labelled, dtype=bool), e.crop, e.original

    def presence(self, index: int) -> np.ndarray:
        """``(C,)`` bool: which labels sample ``index`` holds."""
        masks = self.load(index)[1][: self.entries[index].num_labels]  # not a lesion channel
        return masks.reshape(len(masks), -1).any(axis=1)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return make_item(
            self.entries[index].isic_id, *self.load(index), self.transform, mean=self.mean, std=self.std
        )
