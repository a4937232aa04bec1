"""The prepared cache's manifest: what each data file holds, and which sources it was made from.

:mod:`dermseg.data.cache` writes the cache; this module describes it (dataclasses
that round-trip through ``manifest.json``) and reads it back with its data files'
sizes checked, so a damaged cache is refused with the file to blame.
:mod:`dermseg.data.cache_sources` compares it with the data folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.data.background import CropBox
from dermseg.errors import ConfigError, DataError
from dermseg.labels import BUILTIN, DEFAULT, LabelSet

#: Bumped whenever the file layout or the preprocessing changes; older caches are rebuilt.
#: 2: lesion masks (Task 1) stored as a sixth packed mask channel, and stamped. A cache of
#: another label set than Task 2's records it under ``label_set`` (its ``to_meta()``); a
#: manifest without that key is a Task 2 cache, so Task 2 caches are as they were.
#: 3: each item's image and masks checksummed (``checksums``, :mod:`dermseg.data.cache_integrity`).
FORMAT_VERSION: int = 3
MANIFEST: str = "manifest.json"
FORMAT_NAME = "dermseg-prepared-cache"
DATA_SUFFIXES = (".images.u8", ".masks.u8")


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

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> FileStamp | None:
        """The stamp of a manifest entry, ``None`` for ``null``."""
        return None if d is None else cls(str(d["path"]), int(d["size"]), int(d["mtime_ns"]))


@dataclass(frozen=True)
class CachedSample:
    """One sample of the cache.

    Attributes:
        isic_id: the image id (``ISIC_<7 digits>``, ``IMDxxx``, ...).
        split: split it came from.
        image: the source image's stamp.
        masks: one stamp per label of the cache's label set (C; Task 2: the five attributes in
            ATTRIBUTES order), ``None`` where absent.
        lesion_mask: the lesion mask's stamp, ``None`` where absent.
        original: ``(H, W)`` of the source image.
        crop: kept field of view, in original coordinates.
        shape: ``(h, w)`` of the cached image (short side = the cache's ``size``).
        offset: byte offset of the image in the split's image file.
        mask_offset: byte offset of the packed masks in the split's mask file.
        labelled: ``(C,)`` whether each mask was annotated.
        checksums: hex BLAKE2b-128 digests of the item's image bytes and of its packed mask
            bytes (:mod:`dermseg.data.cache_integrity`).
    """

    isic_id: str
    split: str
    image: FileStamp
    masks: tuple[FileStamp | None, ...]
    lesion_mask: FileStamp | None
    original: tuple[int, int]
    crop: CropBox
    shape: tuple[int, int]
    offset: int
    mask_offset: int
    labelled: tuple[bool, ...]
    checksums: tuple[str, str]

    @property
    def num_labels(self) -> int:
        """C, the label masks stored (5 for Task 2)."""
        return len(self.masks)

    @property
    def lesion(self) -> bool:
        """Whether the lesion mask is stored, as a last channel after the C label masks."""
        return self.lesion_mask is not None

    @property
    def channels(self) -> int:
        """Mask channels stored: C, or C + 1 with the lesion mask."""
        return self.num_labels + int(self.lesion)

    @property
    def image_bytes(self) -> int:
        """Bytes of the ``(h, w, 3)`` image."""
        return self.shape[0] * self.shape[1] * 3

    def packed_bytes(self, channels: int) -> int:
        """Bytes holding the first ``channels`` packed mask channels (``np.packbits`` of the stack)."""
        return (channels * self.shape[0] * self.shape[1] + 7) // 8

    @property
    def mask_bytes(self) -> int:
        """Bytes of the packed ``(channels, h, w)`` mask stack."""
        return self.packed_bytes(self.channels)

    @property
    def stamps(self) -> tuple[FileStamp | None, ...]:
        """The image stamp, the C mask stamps and the lesion mask stamp."""
        return (self.image, *self.masks, self.lesion_mask)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.isic_id,
            "split": self.split,
            "image": self.image.to_dict(),
            "masks": [m.to_dict() if m is not None else None for m in self.masks],
            "lesion": self.lesion,
            "lesion_mask": self.lesion_mask.to_dict() if self.lesion_mask is not None else None,
            "original": list(self.original),
            "crop": self.crop.to_dict(),
            "shape": list(self.shape),
            "offset": self.offset,
            "mask_offset": self.mask_offset,
            "labelled": list(self.labelled),
            "checksums": list(self.checksums),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], num_labels: int = NUM_ATTRIBUTES) -> CachedSample:
        """Parse a manifest entry of a cache of ``num_labels`` labels.

        Raises:
            KeyError, TypeError, ValueError, IndexError: a malformed entry.
        """
        image = FileStamp.from_dict(d["image"])
        if image is None:
            raise ValueError(f"{d['id']} has no image stamp")
        sample = cls(
            isic_id=str(d["id"]),
            split=str(d["split"]),
            image=image,
            masks=tuple(FileStamp.from_dict(m) for m in d["masks"]),
            lesion_mask=FileStamp.from_dict(d["lesion_mask"]),
            original=(int(d["original"][0]), int(d["original"][1])),
            crop=CropBox.from_dict(d["crop"]),
            shape=(int(d["shape"][0]), int(d["shape"][1])),
            offset=int(d["offset"]),
            mask_offset=int(d["mask_offset"]),
            labelled=tuple(bool(v) for v in d["labelled"]),
            checksums=(str(d["checksums"][0]), str(d["checksums"][1])),
        )
        if len(sample.masks) != num_labels or len(sample.labelled) != num_labels:
            raise ValueError(f"{sample.isic_id} has not {num_labels} masks")
        if d["lesion"] is not sample.lesion:
            raise ValueError(f"{sample.isic_id}: 'lesion' disagrees with 'lesion_mask'")
        return sample


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
        rebuilt: ids (re)processed by the :func:`~dermseg.data.cache.prepare_cache` call that
            returned this manifest (empty for a no-op or from
            :func:`~dermseg.data.cache_sources.open_cache`); not stored.
        damaged: ids of those whose cached bytes did not match their checksums (decoded again);
            not stored.
        labels: the label set whose C masks are stored (Task 2's by default).
    """

    root: Path
    size: int
    crop_background: bool
    data_dir: str
    splits: dict[str, CachedSplit]
    rebuilt: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    labels: LabelSet = field(default=DEFAULT, repr=False)

    @property
    def samples(self) -> list[CachedSample]:
        """All samples of all splits."""
        return [s for split in self.splits.values() for s in split.samples]

    def rebuild_hint(self) -> str:
        """The command that brings this cache up to date."""
        labels = ""
        if self.labels != DEFAULT:
            builtin = BUILTIN.get(self.labels.name) == self.labels
            labels = f" --labels {self.labels.name if builtin else '<its label set file>'}"
        return (
            f"rebuild it with `dermseg prepare {self.data_dir} --size {self.size}{labels} --out {self.root}`"
        )

    def to_dict(self) -> dict[str, Any]:
        c = self.labels.num_labels
        out: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "size": self.size,
            "crop_background": self.crop_background,
            "decode": "jpeg draft at size, background crop, short side resized to size; "
            f"masks packed as ({c}, h, w), or ({c + 1}, h, w) with the lesion mask last",
            "data_dir": self.data_dir,
        }
        if self.labels != DEFAULT:  # a Task 2 manifest is as it was before label sets
            out["label_set"] = self.labels.to_meta()
        out["splits"] = {name: split.to_dict() for name, split in self.splits.items()}
        return out


def read_manifest(cache_dir: Path) -> CacheManifest:
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
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise DataError("not a dermseg cache manifest", path)
    if data.get("version") != FORMAT_VERSION:
        raise DataError(
            f"cache format version {data.get('version')} (this dermseg reads {FORMAT_VERSION}); "
            "prepare the cache again",
            path,
        )
    try:
        labels = DEFAULT if "label_set" not in data else LabelSet.from_meta(data["label_set"])
    except (ConfigError, TypeError, AttributeError) as err:
        raise DataError(f"malformed cache manifest (label_set: {err})", path) from None
    try:
        splits = {
            name: CachedSplit(
                images_file=str(s["images_file"]),
                masks_file=str(s["masks_file"]),
                images_bytes=int(s["images_bytes"]),
                masks_bytes=int(s["masks_bytes"]),
                samples=[CachedSample.from_dict(d, labels.num_labels) for d in s["samples"]],
            )
            for name, s in data["splits"].items()
        }
        manifest = CacheManifest(
            root=cache_dir,
            size=int(data["size"]),
            crop_background=bool(data["crop_background"]),
            data_dir=str(data["data_dir"]),
            splits=splits,
            labels=labels,
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
