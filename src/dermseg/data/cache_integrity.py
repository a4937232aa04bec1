"""Checksums of a prepared cache's items, so a damaged cache is never used silently.

Every item (one sample's image bytes, and its packed mask bytes) gets a BLAKE2b digest
(128-bit, :mod:`hashlib`, no extra dependency) in the manifest when it is written.
:class:`~dermseg.data.cache_dataset.CachedIsicDataset` checks an item the first time each
process reads it; :func:`~dermseg.data.cache.prepare_cache` checks every item it would keep
and decodes a damaged one again. Sizes and mtimes of the cache's files are not enough: a
file overwritten in place keeps its size, and its mtime can be set back.

Cost, measured (``benchmarks/cache_verify.py``, BENCHMARKS.md; 2-core Xeon shared with other
work, load average 8, files in the page cache): hashing runs at about 0.6 GB/s, 2.0 ms for a
512x683 item (1.2 MB of image and packed masks), where reading the item from the memory map
takes 0.3 ms. Each process checks an item once, so only a run's first epoch (per DataLoader
worker) pays it: about 5 s for ISIC 2018 Task 2's 2594 training images at 512 px, shared by
the workers, against minutes of training steps. A ``prepare`` re-run checks every item (0.07 s
for 32 items).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from dermseg.data.cache_manifest import CachedSample, CachedSplit
from dermseg.errors import DataError

#: What the manifest's ``checksums`` are.
ALGORITHM = "blake2b-128"


def digest(data: np.ndarray | bytes) -> str:
    """The hex BLAKE2b-128 digest of ``data``'s bytes (an array is read in C order)."""
    view = memoryview(np.ascontiguousarray(data)) if isinstance(data, np.ndarray) else data
    return hashlib.blake2b(view, digest_size=16).hexdigest()


def item_parts(entry: CachedSample, images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An item's image bytes and all of its packed mask bytes, from its split's files (memory maps)."""
    return (
        images[entry.offset : entry.offset + entry.image_bytes],
        masks[entry.mask_offset : entry.mask_offset + entry.mask_bytes],
    )


def damaged_part(entry: CachedSample, images: np.ndarray, masks: np.ndarray) -> int | None:
    """Which part of an item does not match its checksum: 0 the image, 1 the masks, ``None`` neither."""
    for k, part in enumerate(item_parts(entry, images, masks)):
        if digest(part) != entry.checksums[k]:
            return k
    return None


def check_item(
    entry: CachedSample, images: np.ndarray, masks: np.ndarray, files: tuple[Path, Path], hint: str
) -> None:
    """Raise unless an item's bytes match its checksums.

    Args:
        entry: the item.
        images, masks: its split's data files, as uint8 arrays (memory maps).
        files: their paths, for the message.
        hint: how to rebuild the cache (:meth:`CacheManifest.rebuild_hint`).

    Raises:
        DataError: one line naming the item and the file it is damaged in.
    """
    part = damaged_part(entry, images, masks)
    if part is not None:
        raise DataError(
            f"cache item {entry.isic_id}: its {('image', 'masks')[part]} do not match their checksum "
            f"(the file was changed or damaged after it was prepared); {hint}",
            files[part],
        )


def damaged_items(root: Path, split: CachedSplit) -> list[str]:
    """Ids of the items of ``split`` (in the cache folder ``root``) whose bytes do not match."""
    if not split.samples:
        return []
    images = np.memmap(root / split.images_file, np.uint8, mode="r")
    masks = np.memmap(root / split.masks_file, np.uint8, mode="r")
    return [s.isic_id for s in split.samples if damaged_part(s, images, masks) is not None]
