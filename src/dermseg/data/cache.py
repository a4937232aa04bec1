"""A prepared-data cache: decode, crop and resize every image once, then train from a memory map.

Real ISIC images are large JPEGs (most often 4288x2848); decoding one, finding its
field of view and resizing it costs far more than a training step needs.
:func:`prepare_cache` does that work once per sample, exactly as
:class:`~dermseg.data.dataset.IsicDataset` does it (draft decoding at the working
size, background crop from the image alone), then resizes the short side to
``size`` with the evaluation transform (area interpolation when shrinking, exact
nearest neighbour for masks). A cache folder holds::

    manifest.json                       what is where, and the source files' size and mtime
    <split>-<token>.images.u8           the split's images, (h, w, 3) uint8 each, back to back
    <split>-<token>.masks.u8            their (5, h, w) mask stacks, np.packbits of each stack

Crash safety: data files get a fresh name (``token``) whenever they are rewritten
and go through a temporary file and a rename; the manifest is written last,
atomically, so an interrupted preparation leaves the previous cache (or none)
valid and never a manifest that points into half-written data. A cache is never
used silently when stale: :func:`open_cache` compares it with the data folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.data.background import CropBox
from dermseg.data.dataset import make_item
from dermseg.data.imageio import atomic_path
from dermseg.data.layout import IsicLayout, IsicSample, discover
from dermseg.data.transforms import (
    SegmentationTransform,
    TransformConfig,
    apply,
    build_eval_transform,
)
from dermseg.errors import DataError

logger = logging.getLogger(__name__)

#: Bumped whenever the file layout or the preprocessing changes; older caches are rebuilt.
FORMAT_VERSION: int = 1
MANIFEST: str = "manifest.json"
_FORMAT_NAME = "dermseg-prepared-cache"
_DATA_SUFFIXES = (".images.u8", ".masks.u8")


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class FileStamp:
    """A source file as it was when the cache was prepared.

    Attributes:
        path: path relative to the data folder (POSIX separators).
        size: size in bytes.
        mtime_ns: modification time, nanoseconds.
    """

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path, root: Path) -> FileStamp:
        """Stat ``path`` (a file under ``root``).

        Raises:
            DataError: the file cannot be stat'ed.
        """
        try:
            st = path.stat()
        except OSError as err:
            raise DataError(f"cannot read ({err.strerror})", path) from None
        return cls(Path(os.path.relpath(path, root)).as_posix(), st.st_size, st.st_mtime_ns)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns}


@dataclass(frozen=True)
class CachedSample:
    """One sample of the cache.

    Attributes:
        isic_id: ``ISIC_<7 digits>``.
        split: split it came from.
        image: the source image's stamp.
        masks: the five mask stamps (ATTRIBUTES order), ``None`` where absent.
        original: ``(H, W)`` of the source image.
        crop: kept field of view, in original coordinates.
        shape: ``(h, w)`` of the cached image (short side = the cache's ``size``).
        offset: byte offset of the image in the split's image file.
        mask_offset: byte offset of the packed masks in the split's mask file.
        labelled: ``(5,)`` whether each mask was annotated.
    """

    isic_id: str
    split: str
    image: FileStamp
    masks: tuple[FileStamp | None, ...]
    original: tuple[int, int]
    crop: CropBox
    shape: tuple[int, int]
    offset: int
    mask_offset: int
    labelled: tuple[bool, ...]

    @property
    def image_bytes(self) -> int:
        """Bytes of the ``(h, w, 3)`` image."""
        return self.shape[0] * self.shape[1] * 3

    @property
    def mask_bytes(self) -> int:
        """Bytes of the packed ``(5, h, w)`` mask stack."""
        return (NUM_ATTRIBUTES * self.shape[0] * self.shape[1] + 7) // 8

    @property
    def stamps(self) -> tuple[FileStamp | None, ...]:
        """The image stamp followed by the five mask stamps."""
        return (self.image, *self.masks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.isic_id,
            "split": self.split,
            "image": self.image.to_dict(),
            "masks": [m.to_dict() if m is not None else None for m in self.masks],
            "original": list(self.original),
            "crop": self.crop.to_dict(),
            "shape": list(self.shape),
            "offset": self.offset,
            "mask_offset": self.mask_offset,
            "labelled": list(self.labelled),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CachedSample:
        return cls(
            isic_id=str(d["id"]),
            split=str(d["split"]),
            image=FileStamp(**d["image"]),
            masks=tuple(FileStamp(**m) if m is not None else None for m in d["masks"]),
            original=(int(d["original"][0]), int(d["original"][1])),
            crop=CropBox.from_dict(d["crop"]),
            shape=(int(d["shape"][0]), int(d["shape"][1])),
            offset=int(d["offset"]),
            mask_offset=int(d["mask_offset"]),
            labelled=tuple(bool(v) for v in d["labelled"]),
        )


@dataclass
class CachedSplit:
    """The data files of one split and its samples.

    Attributes:
        images_file: file name (in the cache folder) of the images.
        masks_file: file name of the packed masks.
        images_bytes: expected size of ``images_file``.
        masks_bytes: expected size of ``masks_file``.
        samples: samples in file order (sorted by id).
    """

    images_file: str
    masks_file: str
    images_bytes: int
    masks_bytes: int
    samples: list[CachedSample]

    def to_dict(self) -> dict[str, Any]:
        return {
            "images_file": self.images_file,
            "masks_file": self.masks_file,
            "images_bytes": self.images_bytes,
            "masks_bytes": self.masks_bytes,
            "samples": [s.to_dict() for s in self.samples],
        }


@dataclass
class CacheManifest:
    """A prepared cache: its settings, its splits, and where it lives.

    Attributes:
        root: the cache folder.
        size: short side of every cached image, pixels.
        crop_background: whether the field of view was cropped.
        data_dir: the data folder it was prepared from (absolute, as given then).
        splits: split name -> split.
        rebuilt: ids (re)processed by the :func:`prepare_cache` call that returned
            this manifest (empty for a no-op or from :func:`open_cache`); not stored.
    """

    root: Path
    size: int
    crop_background: bool
    data_dir: str
    splits: dict[str, CachedSplit]
    rebuilt: list[str] = field(default_factory=list)

    @property
    def samples(self) -> list[CachedSample]:
        """All samples of all splits."""
        return [s for split in self.splits.values() for s in split.samples]

    def rebuild_hint(self) -> str:
        """The command that brings this cache up to date."""
        return f"rebuild it with `dermseg prepare {self.data_dir} --size {self.size} --out {self.root}`"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT_NAME,
            "version": FORMAT_VERSION,
            "size": self.size,
            "crop_background": self.crop_background,
            "decode": "jpeg draft at size, background crop, short side resized to size",
            "data_dir": self.data_dir,
            "splits": {name: split.to_dict() for name, split in self.splits.items()},
        }


def _read_manifest(cache_dir: Path) -> CacheManifest:
    """Parse and check ``cache_dir/manifest.json`` and the sizes of its data files.

    Raises:
        DataError: no manifest, unreadable or malformed manifest, another format
            version, or a data file missing or of the wrong size (truncated).
    """
    path = cache_dir / MANIFEST
    if not path.is_file():
        raise DataError(
            f"no {MANIFEST}: not a prepared cache, or its preparation did not finish; "
            "run `dermseg prepare DATA_DIR --size PX --out CACHE_DIR`",
            cache_dir,
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"unreadable cache manifest ({err}); prepare the cache again", path) from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT_NAME:
        raise DataError("not a dermseg cache manifest", path)
    if data.get("version") != FORMAT_VERSION:
        raise DataError(
            f"cache format version {data.get('version')} (this dermseg reads {FORMAT_VERSION}); "
            "prepare the cache again",
            path,
        )
    try:
        splits = {
            name: CachedSplit(
                images_file=str(s["images_file"]),
                masks_file=str(s["masks_file"]),
                images_bytes=int(s["images_bytes"]),
                masks_bytes=int(s["masks_bytes"]),
                samples=[CachedSample.from_dict(d) for d in s["samples"]],
            )
            for name, s in data["splits"].items()
        }
        manifest = CacheManifest(
            root=cache_dir,
            size=int(data["size"]),
            crop_background=bool(data["crop_background"]),
            data_dir=str(data["data_dir"]),
            splits=splits,
        )
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise DataError(f"malformed cache manifest ({type(err).__name__}: {err})", path) from None
    for split in manifest.splits.values():
        for name, expected in (
            (split.images_file, split.images_bytes),
            (split.masks_file, split.masks_bytes),
        ):
            file = cache_dir / name
            if not file.is_file():
                raise DataError(f"cache data file missing; {manifest.rebuild_hint()}", file)
            actual = file.stat().st_size
            if actual != expected:
                raise DataError(
                    f"cache data file has {actual} bytes, expected {expected} (truncated or replaced); "
                    + manifest.rebuild_hint(),
                    file,
                )
        for s in split.samples:
            if (
                s.offset + s.image_bytes > split.images_bytes
                or s.mask_offset + s.mask_bytes > split.masks_bytes
            ):
                raise DataError(f"malformed cache manifest (sample {s.isic_id} lies outside its file)", path)
    return manifest


# --------------------------------------------------------------------------- checking against the sources


def _stamps(sample: IsicSample, root: Path) -> tuple[FileStamp | None, ...]:
    """Stamps of a sample's image and five masks."""
    image = FileStamp.of(sample.image_path, root)
    return (image, *(FileStamp.of(p, root) if p is not None else None for p in sample.mask_paths))


def _difference(
    old: tuple[FileStamp | None, ...], new: tuple[FileStamp | None, ...], root: Path
) -> tuple[Path, str] | None:
    """The first source file that differs between two stamp tuples, with what changed."""
    for o, n in zip(old, new, strict=True):
        if o == n:
            continue
        if o is None and n is not None:
            return root / n.path, "added since the cache was prepared"
        if n is None and o is not None:
            return root / o.path, "removed since the cache was prepared"
        assert o is not None and n is not None
        if o.path != n.path:
            return root / n.path, f"replaces {o.path} since the cache was prepared"
        what = "size" if o.size != n.size else "modification time"
        return root / n.path, f"changed since the cache was prepared ({what} differs)"
    return None


def _check_sources(manifest: CacheManifest, data_dir: Path) -> None:
    """Raise DataError naming the first source file that differs from the cache."""
    layout = discover(data_dir)
    cached = {(s.split, s.isic_id): s for s in manifest.samples}
    current = {(name, s.isic_id): s for name, split in layout.splits.items() for s in split.samples}
    hint = manifest.rebuild_hint().replace(manifest.data_dir, str(data_dir), 1)
    for key, sample in current.items():
        if key not in cached:
            raise DataError(
                f"image not in the cache (added since it was prepared); {hint}", sample.image_path
            )
        diff = _difference(cached[key].stamps, _stamps(sample, data_dir), data_dir)
        if diff is not None:
            raise DataError(f"{diff[1]}; {hint}", diff[0])
    for key, entry in cached.items():
        if key not in current:
            raise DataError(
                f"image removed since the cache was prepared; {hint}", data_dir / entry.image.path
            )


def open_cache(cache_dir: str | Path, data_dir: str | Path | None = None) -> CacheManifest:
    """Open a prepared cache, checking its files and, when ``data_dir`` is given, its sources.

    Args:
        cache_dir: folder written by :func:`prepare_cache`.
        data_dir: the data folder; every image and mask is stat'ed (no decoding) and
            compared with the manifest's size and mtime.

    Returns:
        The manifest.

    Raises:
        DataError: not a cache, a data file missing or truncated, or (with ``data_dir``)
            a source image or mask added, removed or changed since; the message names
            the file and says how to rebuild.
    """
    manifest = _read_manifest(Path(cache_dir))
    if data_dir is not None:
        _check_sources(manifest, Path(data_dir))
    return manifest


# --------------------------------------------------------------------------- preparing


@lru_cache(maxsize=4)
def _resize_transform(size: int) -> SegmentationTransform:
    return build_eval_transform(TransformConfig(size=size, crop_size=size))


def _process(
    sample: IsicSample, size: int, crop_background: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, CropBox, tuple[int, int]]:
    """Decode, crop and resize one sample as the uncached training path does.

    Returns:
        image ``(h, w, 3)`` uint8, packed masks (``np.packbits`` of the ``(5, h, w)`` stack),
        labelled ``(5,)`` bool, crop box in original coordinates, original ``(H, W)``.
    """
    from dermseg.data.dataset import IsicDataset

    ds = IsicDataset(
        [sample], None, decode_side=size, crop_background=crop_background, allow_missing_masks=True
    )
    image, masks, labelled, box, full = ds.load(0)
    image, masks = apply(_resize_transform(size), image, masks)
    assert masks is not None
    return image, np.packbits(masks.astype(bool)), labelled, box, full


def _results(
    todo: list[IsicSample], size: int, crop_background: bool, workers: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, CropBox, tuple[int, int]]]:
    """Processed samples in ``todo`` order, in ``workers`` processes (inline when 1)."""
    if workers <= 1 or len(todo) <= 1:
        for s in todo:
            yield _process(s, size, crop_background)
        return
    # Fork where there is one: a worker starts in milliseconds instead of importing torch again.
    # Workers only decode and resize (no torch ops), and leave OpenCV's thread pool as it is:
    # reconfiguring it inside a forked process is what once hung dermseg's DataLoader workers.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=context) as pool:
        yield from pool.map(_process, todo, [size] * len(todo), [crop_background] * len(todo), chunksize=4)


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
) -> CachedSplit:
    """Write a split's data files (new names), copying unchanged samples from the old files."""
    root = manifest.root
    token = secrets.token_hex(4)
    images_file, masks_file = f"{name}-{token}.images.u8", f"{name}-{token}.masks.u8"
    todo = [s for s in samples if s.isic_id not in reusable]
    results = _results(todo, manifest.size, manifest.crop_background, workers)
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
            else:
                image, packed, flags, crop, original = next(results)
                image_buf, mask_buf = image, packed
                shape, labelled = (image.shape[0], image.shape[1]), tuple(bool(v) for v in flags)
                manifest.rebuilt.append(sample.isic_id)
            fi.write(np.ascontiguousarray(image_buf).tobytes())
            fm.write(np.ascontiguousarray(mask_buf).tobytes())
            image_stamp = stamp[0]
            assert image_stamp is not None
            entry = CachedSample(
                sample.isic_id,
                name,
                image_stamp,
                stamp[1:],
                original,
                crop,
                shape,
                offset,
                mask_offset,
                labelled,
            )
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
) -> CacheManifest:
    """Prepare (or bring up to date) a cache of every sample of every split of ``data_dir``.

    Each image is decoded in JPEG draft mode at ``size``, cropped to its field of
    view (detected from the image alone) and resized so its short side is ``size``
    (area interpolation when shrinking; masks nearest neighbour), exactly as
    :class:`~dermseg.data.dataset.IsicDataset` with ``decode_side=size`` followed by
    the evaluation transform. Missing masks are stored as empty and not labelled.

    An up-to-date cache is left untouched (only the sources are stat'ed). When
    sources were added, removed or changed, only the splits concerned are rewritten,
    and only their changed samples are decoded again. A cache of another ``size``,
    ``crop_background`` or format version is rebuilt entirely.

    Args:
        data_dir: dataset folder (official layout, flat folder, or images only).
        out_dir: cache folder (created if needed).
        size: short side of the cached images, pixels (the config's ``data.size``).
        workers: processes decoding in parallel; ``None`` for the CPU count.
        progress: called as ``progress(done, total)`` after each sample written.
        crop_background: crop to the field of view (the config's ``data.crop_background``).

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
    layout = discover(data_dir)
    layout.raise_for_problems()
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError("is a file, expected the cache folder", out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _prepare(layout, data_dir, out_dir, size, workers, progress, crop_background)
    except BaseException:
        # Splits written before the failure are referenced by no manifest: remove them.
        with contextlib.suppress(OSError):
            try:
                keep = _read_manifest(out_dir)
            except DataError:
                keep = CacheManifest(out_dir, size, crop_background, str(data_dir), {})
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
) -> CacheManifest:
    """:func:`prepare_cache` once the data folder is listed and the cache folder exists."""
    try:
        old: CacheManifest | None = _read_manifest(out_dir)
    except DataError as err:
        old = None
        if (out_dir / MANIFEST).exists():
            logger.info("rebuilding the cache: %s", err)
    if old is not None and (old.size, old.crop_background) != (size, crop_background):
        old = None
    manifest = CacheManifest(out_dir, size, crop_background, str(data_dir), {})
    total = len(layout.samples)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    changed = old is None or set(old.splits) != set(layout.splits) or old.data_dir != str(data_dir)
    for name, split in layout.splits.items():
        stamps = [_stamps(s, data_dir) for s in split.samples]
        old_split = old.splits.get(name) if old is not None else None
        old_by_id = {s.isic_id: s for s in old_split.samples} if old_split is not None else {}
        reusable = {
            s.isic_id: old_by_id[s.isic_id]
            for s, st in zip(split.samples, stamps, strict=True)
            if s.isic_id in old_by_id and old_by_id[s.isic_id].stamps == st
        }
        if old_split is not None and len(reusable) == len(split.samples) == len(old_split.samples):
            manifest.splits[name] = old_split  # unchanged: keep its files as they are
            for _ in split.samples:
                tick()
            continue
        changed = True
        manifest.splits[name] = _write_split(
            name, split.samples, stamps, reusable, old_split, manifest, workers, tick
        )
        logger.info(
            "cache split %s: %d decoded, %d kept", name, len(split.samples) - len(reusable), len(reusable)
        )
    if changed:
        with atomic_path(out_dir / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest.to_dict(), indent=1), encoding="utf-8")
    _remove_unreferenced(manifest)
    return manifest


def _remove_unreferenced(manifest: CacheManifest) -> None:
    """Delete data files of earlier versions of the cache and leftovers of interrupted writes."""
    keep = {f for s in manifest.splits.values() for f in (s.images_file, s.masks_file)}
    for path in manifest.root.iterdir():
        name = path.name
        ours = name.endswith(_DATA_SUFFIXES) or (
            name.startswith(".") and ".tmp" in name and any(x in name for x in (*_DATA_SUFFIXES, MANIFEST))
        )
        if ours and name not in keep and path.is_file():
            path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the dataset


class CachedIsicDataset(Dataset):
    """:class:`~dermseg.data.dataset.IsicDataset` items, read from a prepared cache.

    Images are read from a read-only memory map opened lazily in each process, so
    the dataset is cheap to send to DataLoader worker processes.

    Args:
        cache: from :func:`open_cache` (validated against the data folder by the caller).
        split_ids: ISIC ids of the samples, in item order (from any split of the cache).
        transform: a pipeline from :mod:`dermseg.data.transforms`, ``None`` for none.
        allow_missing_masks: accept samples whose masks were not all present.

    Raises:
        DataError: an id is not in the cache, or (without ``allow_missing_masks``) a
            sample lacks masks.

    Each item is a dict as :class:`~dermseg.data.dataset.IsicDataset` gives:
        ``image`` ``(3, h, w)`` float32 ImageNet-normalised; ``masks`` ``(5, h, w)`` uint8;
        ``labelled`` ``(5,)`` bool; ``id``; ``crop`` ``(4,)`` int64 top, left, bottom, right
        in original coordinates; ``size`` ``(2,)`` int64 original ``H, W``.
    """

    def __init__(
        self,
        cache: CacheManifest,
        split_ids: Sequence[str],
        transform: Callable[..., Any] | None = None,
        *,
        allow_missing_masks: bool = False,
    ) -> None:
        by_id = {s.isic_id: s for s in cache.samples}
        missing = [i for i in split_ids if i not in by_id]
        if missing:
            raise DataError(
                f"{len(missing)} image(s) not in the cache, e.g. {missing[0]}; {cache.rebuild_hint()}",
                cache.root,
            )
        self.root = cache.root
        self.entries = [by_id[i] for i in split_ids]
        self.files = {
            name: (cache.root / s.images_file, cache.root / s.masks_file) for name, s in cache.splits.items()
        }
        self.transform = transform
        if not allow_missing_masks:
            for e in self.entries:
                if not all(e.labelled):
                    raise DataError(f"{e.isic_id} lacks masks in the cache", self.root / e.image.path)
        self._maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_maps"], state["_pid"] = {}, -1  # each process opens its own memory maps
        return state

    def __len__(self) -> int:
        return len(self.entries)

    def _arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if self._pid != os.getpid():
            self._maps, self._pid = {}, os.getpid()
        if split not in self._maps:
            images, masks = self.files[split]
            self._maps[split] = (np.memmap(images, np.uint8, mode="r"), np.memmap(masks, np.uint8, mode="r"))
        return self._maps[split]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, CropBox, tuple[int, int]]:
        """One cached sample, before the transform.

        Returns:
            image ``(h, w, 3)`` uint8, masks ``(5, h, w)`` uint8, labelled ``(5,)`` bool,
            the crop box in original coordinates, and the original ``(H, W)``.
        """
        e = self.entries[index]
        images, masks = self._arrays(e.split)
        h, w = e.shape
        image = np.array(images[e.offset : e.offset + e.image_bytes]).reshape(h, w, 3)
        packed = np.asarray(masks[e.mask_offset : e.mask_offset + e.mask_bytes])
        stack = np.unpackbits(packed, count=NUM_ATTRIBUTES * h * w).reshape(NUM_ATTRIBUTES, h, w)
        return image, stack, np.array(e.labelled, dtype=bool), e.crop, e.original

    def __getitem__(self, index: int) -> dict[str, Any]:
        return make_item(self.entries[index].isic_id, *self.load(index), self.transform)
