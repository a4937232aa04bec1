"""A prepared-data cache: decode, crop and resize every image once, then train from a memory map.

Real ISIC images are large JPEGs (most often 4288x2848); decoding one, finding its
field of view and resizing it costs far more than a training step needs.
:func:`prepare_cache` does that work once per sample, exactly as
:class:`~dermseg.data.dataset.IsicDataset` does it (draft decoding at the working
size, background crop from the image alone), then resizes the short side to
``size`` with the evaluation transform (area interpolation when shrinking, exact
nearest neighbour for masks). A cache folder holds::

    manifest.json                       what is where, the source files' size and mtime, and a
                                        checksum of each item (:mod:`dermseg.data.cache_integrity`)
    <split>-<token>.images.u8           the split's images, (h, w, 3) uint8 each, back to back
    <split>-<token>.masks.u8            their mask stacks, np.packbits of each: (C, h, w) for the
                                        C labels of the label set (5 for Task 2), or (C + 1, h, w)
                                        with the lesion mask last where the sample has one
                                        (manifest entry ``"lesion": true``)

The manifest records the label set (for every set but Task 2's, whose caches are as they
were); preparing with another label set rebuilds the cache.

Crash safety: data files get a fresh name (``token``) whenever they are rewritten
and go through a temporary file and a rename; the manifest is written last,
atomically, so an interrupted preparation leaves the previous cache (or none)
valid and never a manifest that points into half-written data. A cache is never
used silently when stale: :func:`open_cache` compares it with the data folder. Nor when
damaged: each item is checked against its checksum when first read in a process, and by
every ``prepare``, which decodes a damaged item again.

The manifest lives in :mod:`dermseg.data.cache_manifest`, the staleness checks in
:mod:`dermseg.data.cache_sources`, the dataset in :mod:`dermseg.data.cache_dataset`;
every public name is importable from here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from dermseg.data.background import CropBox
from dermseg.data.cache_dataset import CachedIsicDataset
from dermseg.data.cache_integrity import damaged_items, digest
from dermseg.data.cache_manifest import (
    DATA_SUFFIXES,
    FORMAT_VERSION,
    MANIFEST,
    CachedSample,
    CachedSplit,
    CacheManifest,
    FileStamp,
    read_manifest,
)
from dermseg.data.cache_sources import open_cache, sample_stamps
from dermseg.data.layout import IsicLayout, IsicSample, discover
from dermseg.data.shape_limits import ShapeLimits
from dermseg.data.transforms import (
    SegmentationTransform,
    TransformConfig,
    apply,
    build_eval_transform,
)
from dermseg.errors import DataError
from dermseg.files import atomic_path
from dermseg.labels import DEFAULT, LabelSet

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "CachedIsicDataset",
    "CachedSample",
    "CachedSplit",
    "CacheManifest",
    "FileStamp",
    "open_cache",
    "prepare_cache",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- preparing


@lru_cache(maxsize=4)
def _resize_transform(size: int) -> SegmentationTransform:
    return build_eval_transform(TransformConfig(size=size, crop_size=size))


def _process(
    sample: IsicSample, size: int, crop_background: bool, limits: ShapeLimits = ShapeLimits()
) -> tuple[np.ndarray, np.ndarray, np.ndarray, CropBox, tuple[int, int]]:
    """Decode, crop and resize one sample as the uncached training path does.

    Returns:
        image ``(h, w, 3)`` uint8, packed masks (``np.packbits`` of the ``(C, h, w)`` stack of the
        sample's label set, or ``(C + 1, h, w)`` with the lesion mask last when the sample has
        one), labelled ``(C,)`` bool, crop box in original coordinates, original ``(H, W)``.
    """
    from dermseg.data.dataset import IsicDataset

    ds = IsicDataset(
        [sample],
        None,
        labels=sample.labels,
        decode_side=size,
        crop_background=crop_background,
        allow_missing_masks=True,
        lesion_masks=sample.lesion_mask_path is not None,  # no all-zero channel stored
        limits=limits,
    )
    image, masks, labelled, box, full = ds.load(0)
    image, masks = apply(_resize_transform(size), image, masks)
    assert masks is not None
    return image, np.packbits(masks.astype(bool)), labelled, box, full


def _results(
    todo: list[IsicSample], size: int, crop_background: bool, workers: int, limits: ShapeLimits
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, CropBox, tuple[int, int]]]:
    """Processed samples in ``todo`` order, in ``workers`` processes (inline when 1)."""
    if workers <= 1 or len(todo) <= 1:
        for s in todo:
            yield _process(s, size, crop_background, limits)
        return
    # Fork where there is one: a worker starts in milliseconds instead of importing torch again.
    # Workers only decode and resize (no torch ops), and leave OpenCV's thread pool as it is:
    # reconfiguring it inside a forked process is what once hung dermseg's DataLoader workers.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=context) as pool:
        n = len(todo)
        yield from pool.map(_process, todo, [size] * n, [crop_background] * n, [limits] * n, chunksize=4)


def _memmap(path: Path, nbytes: int) -> np.ndarray:
    return np.memmap(path, dtype=np.uint8, mode="r") if nbytes else np.zeros(0, np.uint8)


def _write_split(
    name: str,
    samples: list[IsicSample],
    stamps: list[tuple[FileStamp | None, ...]],
    reusable: dict[str, CachedSample],
    old_split: CachedSplit | None,
    manifest: CacheManifest,
    workers: int,
    tick: Callable[[], None],
    limits: ShapeLimits,
) -> CachedSplit:
    """Write a split's data files (new names), copying unchanged samples from the old files."""
    root = manifest.root
    token = secrets.token_hex(4)
    images_file, masks_file = f"{name}-{token}.images.u8", f"{name}-{token}.masks.u8"
    todo = [s for s in samples if s.isic_id not in reusable]
    results = _results(todo, manifest.size, manifest.crop_background, workers, limits)
    old_images = old_masks = None
    if old_split is not None and reusable:
        old_images = _memmap(root / old_split.images_file, old_split.images_bytes)
        old_masks = _memmap(root / old_split.masks_file, old_split.masks_bytes)
    entries: list[CachedSample] = []
    offset = mask_offset = 0
    with (
        atomic_path(root / images_file) as tmp_images,
        atomic_path(root / masks_file) as tmp_masks,
        open(tmp_images, "wb") as fi,
        open(tmp_masks, "wb") as fm,
    ):
        for sample, stamp in zip(samples, stamps, strict=True):
            old = reusable.get(sample.isic_id)
            if old is not None:
                assert old_images is not None and old_masks is not None
                image_buf = old_images[old.offset : old.offset + old.image_bytes]
                mask_buf = old_masks[old.mask_offset : old.mask_offset + old.mask_bytes]
                crop, original, shape, labelled = old.crop, old.original, old.shape, old.labelled
                checksums = old.checksums  # checked by _prepare before it is kept
            else:
                image, packed, flags, crop, original = next(results)
                image_buf, mask_buf = image, packed
                shape, labelled = (image.shape[0], image.shape[1]), tuple(bool(v) for v in flags)
                checksums = (digest(image), digest(packed))
                manifest.rebuilt.append(sample.isic_id)
            fi.write(np.ascontiguousarray(image_buf).tobytes())
            fm.write(np.ascontiguousarray(mask_buf).tobytes())
            image_stamp = stamp[0]
            assert image_stamp is not None
            c = manifest.labels.num_labels
            entry = CachedSample(
                isic_id=sample.isic_id,
                split=name,
                image=image_stamp,
                masks=stamp[1 : 1 + c],
                lesion_mask=stamp[1 + c],
                original=original,
                crop=crop,
                shape=shape,
                offset=offset,
                mask_offset=mask_offset,
                labelled=labelled,
                checksums=checksums,
            )
            # the stamps and the decoded channels come from the same IsicSample
            assert len(mask_buf) == entry.mask_bytes, (sample.isic_id, len(mask_buf), entry.mask_bytes)
            entries.append(entry)
            offset += entry.image_bytes
            mask_offset += entry.mask_bytes
            tick()
    del old_images, old_masks
    return CachedSplit(images_file, masks_file, offset, mask_offset, entries)


def prepare_cache(
    data_dir: str | Path,
    out_dir: str | Path,
    size: int,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    crop_background: bool = True,
    labels: LabelSet = DEFAULT,
    limits: ShapeLimits = ShapeLimits(),
) -> CacheManifest:
    """Prepare (or bring up to date) a cache of every sample of every split of ``data_dir``.

    Each image is decoded in JPEG draft mode at ``size``, cropped to its field of
    view (detected from the image alone) and resized so its short side is ``size``
    (area interpolation when shrinking; masks nearest neighbour), exactly as
    :class:`~dermseg.data.dataset.IsicDataset` with ``decode_side=size`` followed by
    the evaluation transform: one mask channel per label of ``labels`` (C). Missing masks
    are stored as empty and not labelled. Where a sample has a lesion mask it is stored
    too, as a last channel (``IsicDataset(lesion_masks=True)``), for lesion-centred
    training crops.

    An up-to-date cache is left untouched (the sources are stat'ed, the cached items checked
    against their checksums). When sources were added, removed or changed, or a cached item
    was damaged, only the splits concerned are rewritten, and only those samples are decoded
    again (a damaged one is listed in the manifest's ``damaged`` and logged). A cache of another ``size``,
    ``crop_background``, label set (its name, labels or mask pattern) or format version
    is rebuilt entirely.

    Args:
        data_dir: dataset folder (official layout, flat folder, or images only).
        out_dir: cache folder (created if needed).
        size: short side of the cached images, pixels (the config's ``data.size``).
        workers: processes decoding in parallel; ``None`` for the CPU count.
        progress: called as ``progress(done, total)`` after each sample written.
        crop_background: crop to the field of view (the config's ``data.crop_background``).
        labels: the label set the data folder is read with (Task 2's by default); recorded
            in the manifest.
        limits: the largest aspect ratio accepted (an image beyond it fails, named).

    Returns:
        The manifest written (its ``rebuilt`` lists the ids decoded by this call).

    Raises:
        DataError: the data folder has naming problems (a mask without its image, a broken
            link, ...: see :meth:`~dermseg.data.layout.IsicLayout.raise_for_problems`), or one
            of its files is unreadable or malformed. Nothing is left behind: the previous cache
            (or none, and no new folder) stays as it was.
        ValueError: ``size`` < 1.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    layout = discover(data_dir, labels)
    layout.raise_for_problems()
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError("is a file, expected the cache folder", out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _prepare(layout, data_dir, out_dir, size, workers, progress, crop_background, limits)
    except BaseException:
        # Splits written before the failure are referenced by no manifest: remove them.
        with contextlib.suppress(OSError):
            try:
                keep = read_manifest(out_dir)
            except DataError:
                keep = CacheManifest(out_dir, size, crop_background, str(data_dir), {}, labels=labels)
            _remove_unreferenced(keep)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only when nothing is left in it
        raise


def _prepare(
    layout: IsicLayout,
    data_dir: Path,
    out_dir: Path,
    size: int,
    workers: int,
    progress: Callable[[int, int], None] | None,
    crop_background: bool,
    limits: ShapeLimits,
) -> CacheManifest:
    """:func:`prepare_cache` once the data folder is listed and the cache folder exists."""
    try:
        old: CacheManifest | None = read_manifest(out_dir)
    except DataError as err:
        old = None
        if (out_dir / MANIFEST).exists():
            logger.info("rebuilding the cache: %s", err)
    labels = layout.labels
    if old is not None and (old.size, old.crop_background, _label_key(old.labels)) != (
        size,
        crop_background,
        _label_key(labels),
    ):
        old = None
    manifest = CacheManifest(out_dir, size, crop_background, str(data_dir), {}, labels=labels)
    total = len(layout.samples)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    changed = (
        old is None
        or set(old.splits) != set(layout.splits)
        or old.data_dir != str(data_dir)
        or old.labels != labels  # display names or colours: the data stays, the manifest is rewritten
    )
    for name, split in layout.splits.items():
        stamps = [sample_stamps(s, data_dir) for s in split.samples]
        old_split = old.splits.get(name) if old is not None else None
        old_by_id = {s.isic_id: s for s in old_split.samples} if old_split is not None else {}
        # An item whose cached bytes changed (overwritten in place: same size, any mtime) is redone.
        damaged = set(damaged_items(out_dir, old_split)) if old_split is not None else set()
        for isic_id in sorted(damaged):
            logger.warning("cache item %s does not match its checksum: decoding it again", isic_id)
        manifest.damaged.extend(sorted(damaged))
        reusable = {
            s.isic_id: old_by_id[s.isic_id]
            for s, st in zip(split.samples, stamps, strict=True)
            if s.isic_id in old_by_id and old_by_id[s.isic_id].stamps == st and s.isic_id not in damaged
        }
        if old_split is not None and len(reusable) == len(split.samples) == len(old_split.samples):
            manifest.splits[name] = old_split  # unchanged: keep its files as they are
            for _ in split.samples:
                tick()
            continue
        changed = True
        manifest.splits[name] = _write_split(
            name, split.samples, stamps, reusable, old_split, manifest, workers, tick, limits
        )
        logger.info(
            "cache split %s: %d decoded, %d kept", name, len(split.samples) - len(reusable), len(reusable)
        )
    if changed:
        with atomic_path(out_dir / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest.to_dict(), indent=1), encoding="utf-8")
    _remove_unreferenced(manifest)
    return manifest


def _label_key(labels: LabelSet) -> tuple[str, tuple[str, ...], str]:
    """What of a label set the cached data depends on (not display names or colours)."""
    return labels.name, labels.names, labels.mask_pattern


def _remove_unreferenced(manifest: CacheManifest) -> None:
    """Delete data files of earlier versions of the cache and leftovers of interrupted writes."""
    keep = {f for s in manifest.splits.values() for f in (s.images_file, s.masks_file)}
    for path in manifest.root.iterdir():
        name = path.name
        ours = name.endswith(DATA_SUFFIXES) or (
            name.startswith(".") and ".tmp" in name and any(x in name for x in (*DATA_SUFFIXES, MANIFEST))
        )
        if ours and name not in keep and path.is_file():
            path.unlink(missing_ok=True)
