"""Finding ISIC 2018 Task 2 images and masks on disk and pairing them by ISIC id.

Three layouts are recognised:

* ``official``: the challenge archives unzipped side by side::

      ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg
      ISIC2018_Task2_Training_GroundTruth_v3/ISIC_0000000_attribute_globules.png
      (and the same for Validation and Test; ``ISIC2018_Task1_*_GroundTruth``
      lesion masks are picked up when present)

* ``flat``: one folder holding images and their attribute masks;
* ``images``: a folder of images only (for prediction).

Discovery looks at file names only; :mod:`dermseg.data.check` opens the files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dermseg.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from dermseg.errors import DataError, display_path

#: Split names in the order of the challenge.
SPLITS: tuple[str, ...] = ("training", "validation", "test")

ID_PATTERN = re.compile(r"ISIC_\d{7}")
_IMAGE_RE = re.compile(r"^(ISIC_\d{7})\.(jpe?g|png)$", re.IGNORECASE)
_MASK_RE = re.compile(r"^(ISIC_\d{7})_attribute_([A-Za-z_]+)\.png$")
_LESION_RE = re.compile(r"^(ISIC_\d{7})_segmentation\.png$")
_SUPERPIXELS_RE = re.compile(r"^ISIC_\d{7}_superpixels\.png$")
_INPUT_DIR_RE = re.compile(r"^ISIC2018_Task1-2_(Training|Validation|Test)_Input$")
_GT_DIR_RE = re.compile(r"^ISIC2018_Task2_(Training|Validation|Test)_GroundTruth(?:_v\d+)?$")
_LESION_DIR_RE = re.compile(r"^ISIC2018_Task1_(Training|Validation|Test)_GroundTruth$")
#: Files that ship with the archives or with any folder and are not data.
_IGNORED_SUFFIXES = {".txt", ".md", ".csv", ".json", ".yaml", ".yml", ".pdf", ".html"}
_IGNORED_NAMES = {"Thumbs.db", "desktop.ini", "LICENSE"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, tied to a file.

    Attributes:
        path: the file (or folder) concerned.
        message: what is wrong with it.
    """

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{display_path(self.path)}: {self.message}"


@dataclass(frozen=True)
class IsicSample:
    """An image and the paths of its five attribute masks.

    Attributes:
        isic_id: ``ISIC_<7 digits>``.
        image_path: the image file.
        mask_paths: one entry per attribute in :data:`~dermseg.attributes.ATTRIBUTES`
            order; ``None`` where the mask file is absent.
        lesion_mask_path: the Task 1 lesion mask, when one is present.
    """

    isic_id: str
    image_path: Path
    mask_paths: tuple[Path | None, ...] = (None,) * NUM_ATTRIBUTES
    lesion_mask_path: Path | None = None

    @property
    def missing_attributes(self) -> tuple[str, ...]:
        """Names of the attributes whose mask file is absent."""
        return tuple(a for a, p in zip(ATTRIBUTES, self.mask_paths, strict=True) if p is None)

    @property
    def has_masks(self) -> bool:
        """Whether all five masks are present."""
        return all(p is not None for p in self.mask_paths)


@dataclass
class IsicSplit:
    """The samples of one split (``training``, ``validation``, ``test`` or ``all`` for a flat folder).

    Attributes:
        name: split name.
        image_dir: folder of the images.
        mask_dir: folder of the attribute masks; ``None`` for an images-only split.
        samples: samples sorted by id.
    """

    name: str
    image_dir: Path
    mask_dir: Path | None
    samples: list[IsicSample] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [s.isic_id for s in self.samples]


@dataclass
class IsicLayout:
    """What :func:`discover` found under a folder.

    Attributes:
        root: the folder given.
        kind: ``official``, ``flat`` or ``images``.
        splits: split name -> split, in challenge order.
        problems: naming problems found while pairing (unknown files, masks
            without an image, duplicate ids, ...); missing masks are reported
            by :mod:`dermseg.data.check`, since an images-only folder has none.
    """

    root: Path
    kind: str
    splits: dict[str, IsicSplit]
    problems: list[Problem] = field(default_factory=list)

    @property
    def samples(self) -> list[IsicSample]:
        """All samples of all splits."""
        return [s for split in self.splits.values() for s in split.samples]

    def raise_for_problems(self) -> None:
        """Refuse a dataset with naming problems (for commands that build on it: prepare, train).

        A mask without its image, a file named almost like an ISIC file, a broken link or a
        folder where a file belongs means the folder is not what the user thinks it is;
        training on the rest would silently drop data.

        Raises:
            DataError: naming the first problem's file; ``dermseg check`` lists them all.
        """
        if self.problems:
            first, n = self.problems[0], len(self.problems)
            more = f" (and {n - 1} more problem(s))" if n > 1 else ""
            raise DataError(f"{first.message}{more}; run `dermseg check` for the full list", first.path)


def list_dir(folder: Path, what: str = "") -> list[os.DirEntry[str]]:
    """Entries of ``folder`` sorted by name; every failure is a one-line DataError naming it.

    Args:
        folder: the folder to list.
        what: what the folder is for the user (``"prediction"``), used in the messages.
    """
    kind = f"{what} folder" if what else "folder"
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except PermissionError:
        raise DataError("permission denied", folder) from None
    except NotADirectoryError:
        raise DataError(
            f"is a file, expected the {kind}" if what else "is a file, expected a folder", folder
        ) from None
    except FileNotFoundError:
        raise DataError(f"{kind} not found", folder) from None
    except OSError as err:
        raise DataError(f"cannot list {kind} ({err.strerror})", folder) from None


def _entry_kind(entry: os.DirEntry[str]) -> str:
    """``file``, ``dir`` or ``broken`` (dangling link, link loop, unreadable entry)."""
    try:
        if entry.is_dir():
            return "dir"
        if entry.is_file():
            return "file"
    except OSError:
        pass
    return "broken"


def _is_ignorable(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED_NAMES or Path(name).suffix.lower() in _IGNORED_SUFFIXES


def _pair(
    name: str,
    image_dir: Path,
    mask_dirs: Iterable[Path],
    lesion_dir: Path | None,
    problems: list[Problem],
) -> IsicSplit:
    """Pair the images of ``image_dir`` with the masks found in ``mask_dirs`` (and lesion masks)."""
    images: dict[str, Path] = {}
    masks: dict[str, dict[str, Path]] = {}
    lesions: dict[str, Path] = {}
    seen_dirs: set[Path] = set()
    for folder in (image_dir, *mask_dirs, *([lesion_dir] if lesion_dir else [])):
        if folder in seen_dirs:
            continue
        seen_dirs.add(folder)
        for entry in list_dir(folder):
            path = Path(entry.path)
            entry_name = entry.name
            kind = _entry_kind(entry)
            if _is_ignorable(entry_name) and kind != "broken":
                continue
            if kind == "broken":
                problems.append(
                    Problem(path, "broken link (missing target or a link loop) or unreadable entry")
                )
                continue
            if kind == "dir":
                if _IMAGE_RE.match(entry_name) or _MASK_RE.match(entry_name):
                    problems.append(Problem(path, "is a folder, expected a file"))
                continue
            if m := _IMAGE_RE.match(entry_name):
                isic_id = m.group(1)
                if folder != image_dir and m.group(2).lower() == "png":
                    problems.append(Problem(path, "image found among masks"))
                elif isic_id in images:
                    problems.append(Problem(path, f"duplicate id {isic_id} (also {images[isic_id].name})"))
                else:
                    images[isic_id] = path
            elif m := _MASK_RE.match(entry_name):
                isic_id, attribute = m.group(1), m.group(2)
                if attribute not in ATTRIBUTES:
                    problems.append(
                        Problem(path, f"unknown attribute {attribute!r} (expected {', '.join(ATTRIBUTES)})")
                    )
                else:
                    masks.setdefault(isic_id, {})[attribute] = path
            elif m := _LESION_RE.match(entry_name):
                lesions[m.group(1)] = path
            elif _SUPERPIXELS_RE.match(entry_name):
                continue
            elif entry_name.lower().startswith("isic"):
                problems.append(
                    Problem(
                        path,
                        "name does not match ISIC_<7 digits>.jpg or ISIC_<7 digits>_attribute_<name>.png",
                    )
                )
            else:
                problems.append(Problem(path, "unknown file"))
    for isic_id in sorted(set(masks) - set(images)):
        for _attribute, path in sorted(masks[isic_id].items()):
            problems.append(Problem(path, f"mask has no matching image {isic_id}"))
    samples = [
        IsicSample(
            isic_id=isic_id,
            image_path=images[isic_id],
            mask_paths=tuple(masks.get(isic_id, {}).get(a) for a in ATTRIBUTES),
            lesion_mask_path=lesions.get(isic_id),
        )
        for isic_id in sorted(images)
    ]
    # A separate ground-truth folder means masks are expected; a flat folder expects
    # them only when it holds some (otherwise it is an images-only folder).
    mask_dir = next((d for d in mask_dirs if d != image_dir), None)
    if mask_dir is None and any(masks.get(i) for i in images):
        mask_dir = image_dir
    return IsicSplit(name=name, image_dir=image_dir, mask_dir=mask_dir, samples=samples)


def discover(root: str | Path) -> IsicLayout:
    """Find and pair the images and masks under ``root``.

    Args:
        root: an official-layout folder, a flat folder of images and masks, or
            a folder of images only.

    Returns:
        The layout, with naming problems listed (see :class:`IsicLayout`).

    Raises:
        DataError: ``root`` is missing, not a folder, unreadable, or holds no ISIC image.
    """
    root = Path(root)
    if not root.exists():
        raise DataError("folder not found", root)
    if not root.is_dir():
        raise DataError("is a file, expected a dataset folder", root)
    entries = list_dir(root)
    dirs = {e.name: Path(e.path) for e in entries if _entry_kind(e) == "dir"}
    inputs = {m.group(1).lower(): p for n, p in dirs.items() if (m := _INPUT_DIR_RE.match(n))}
    problems: list[Problem] = []
    if inputs:
        gts: dict[str, list[Path]] = {}
        for n, p in sorted(dirs.items(), reverse=True):  # _v3 before the unversioned name
            if m := _GT_DIR_RE.match(n):
                gts.setdefault(m.group(1).lower(), []).append(p)
        lesion_dirs = {m.group(1).lower(): p for n, p in dirs.items() if (m := _LESION_DIR_RE.match(n))}
        splits: dict[str, IsicSplit] = {}
        for split in SPLITS:
            if split not in inputs:
                continue
            split_gts = gts.get(split, [])
            if len(split_gts) > 1:
                problems.append(
                    Problem(
                        split_gts[1], f"several ground-truth folders for {split}; using {split_gts[0].name}"
                    )
                )
            splits[split] = _pair(split, inputs[split], split_gts[:1], lesion_dirs.get(split), problems)
        kind = "official"
    else:
        split = _pair("all", root, [root], None, problems)
        splits = {"all": split}
        kind = "flat" if split.mask_dir is not None else "images"
    if not any(s.samples for s in splits.values()):
        raise DataError(
            "no ISIC images found (expected ISIC_<7 digits>.jpg files or the official layout)", root
        )
    return IsicLayout(root=root, kind=kind, splits=splits, problems=problems)
