"""Finding images and masks on disk and pairing them by image id, for any label set.

What a folder holds is read through a :class:`~dermseg.labels.LabelSet` (the ISIC 2018 Task 2
attributes by default): its mask file names, and which image ids it allows (``ISIC_<7 digits>``
for the ISIC sets, ``IMDxxx`` for PH2, any file stem for a user's set). Layouts:

* ``official``: the ISIC challenge archives unzipped side by side::

      ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg
      ISIC2018_Task2_Training_GroundTruth_v3/ISIC_0000000_attribute_globules.png   (Task 2)
      ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png            (Task 1)

  (and the same for Validation and Test). With the Task 2 set, the Task 1 lesion masks are
  picked up too when present (:attr:`IsicSample.lesion_mask_path`); with the Task 1 set the
  Task 2 folders are not looked at.
* ``flat``: one folder holding images and their masks, named by the label set's pattern (or,
  for any set but Task 2, ``images/`` beside ``masks/``);
* ``images``: a folder of images only (for prediction);
* ``ph2``: the PH2 database (label set ``ph2``), distributed (``PH2 Dataset images/IMDxxx/...``
  BMPs and ``PH2_dataset.txt``) or flat (``images/``, ``masks/IMDxxx_lesion.png``,
  ``labels.csv``), read by :mod:`dermseg.data.ph2`; one split ``all``, and each image's
  diagnosis as its stratum (:attr:`IsicLayout.strata`).

Discovery looks at file names only (PH2 excepted: its reader checks every file's header);
:mod:`dermseg.data.check` opens the files. :func:`detect_label_set` tells which built-in set a
folder holds, for commands that are not told.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.errors import DataError, display_path
from dermseg.labels import BUILTIN, DEFAULT, ISIC2018_TASK1, ISIC2018_TASK2, PH2, LabelSet, load_label_set

#: Split names in the order of the challenge.
SPLITS: tuple[str, ...] = ("training", "validation", "test")

ID_PATTERN = re.compile(r"ISIC_\d{7}")
_IMAGE_RE = re.compile(r"^(ISIC_\d{7})\.(jpe?g|png)$", re.IGNORECASE)
_MASK_RE = re.compile(r"^(ISIC_\d{7})_attribute_([A-Za-z_]+)\.png$")
_LESION_RE = re.compile(r"^(ISIC_\d{7})_segmentation\.png$")
_PH2_LESION_RE = re.compile(r"^(IMD\d+)_lesion\.(?i:png|bmp)$")
_SUPERPIXELS_RE = re.compile(r"^ISIC_\d{7}_superpixels\.png$")
_PH2_ID = re.compile(r"IMD\d+")
_ANY_IMAGE_RE = re.compile(r"^(.+)\.(jpe?g|png|bmp|tiff?|webp)$", re.IGNORECASE)
_PH2_IMAGE_RE = re.compile(r"^(IMD\d+)\.(jpe?g|png|bmp)$", re.IGNORECASE)
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
    """An image and the paths of its masks, one per label of its label set.

    Attributes:
        isic_id: the image id (the name is historical): ``ISIC_<7 digits>`` for the ISIC sets,
            ``IMDxxx`` for PH2, the image's file stem for a user's set.
        image_path: the image file.
        mask_paths: one entry per label of ``labels``, in channel order (for the default set,
            :data:`~dermseg.attributes.ATTRIBUTES` order); ``None`` where the mask file is absent.
        lesion_mask_path: the lesion mask, when one is present: with the Task 2 set the Task 1
            ``_segmentation.png`` beside it; with a lesion set (``isic2018_task1``, ``ph2``) the
            set's own lesion mask (the same file as ``mask_paths[0]``); ``None`` for a user's set.
        labels: the label set the masks were found for.

    Raises:
        ValueError: ``mask_paths`` has not one entry per label.
    """

    isic_id: str
    image_path: Path
    mask_paths: tuple[Path | None, ...] = (None,) * NUM_ATTRIBUTES
    lesion_mask_path: Path | None = None
    labels: LabelSet = field(default=DEFAULT, repr=False)

    def __post_init__(self) -> None:
        if len(self.mask_paths) != self.labels.num_labels:
            raise ValueError(
                f"{self.isic_id}: {len(self.mask_paths)} mask paths for the {self.labels.num_labels} "
                f"labels of label set {self.labels.name}"
            )

    @property
    def missing_labels(self) -> tuple[str, ...]:
        """Names of the labels whose mask file is absent."""
        return tuple(a for a, p in zip(self.labels.names, self.mask_paths, strict=True) if p is None)

    @property
    def missing_attributes(self) -> tuple[str, ...]:
        """:attr:`missing_labels` (the name it had when every set was Task 2's attributes)."""
        return self.missing_labels

    @property
    def has_masks(self) -> bool:
        """Whether every label's mask is present."""
        return all(p is not None for p in self.mask_paths)

    def mask_name(self, label: str) -> str:
        """The file name of this image's mask of ``label`` (``ISIC_0000000_attribute_streaks.png``)."""
        return self.labels.mask_name(self.isic_id, label)


@dataclass
class IsicSplit:
    """The samples of one split (``training``, ``validation``, ``test`` or ``all`` for a flat folder).

    Attributes:
        name: split name.
        image_dir: folder of the images (PH2 distributed: ``PH2 Dataset images/``).
        mask_dir: folder of the masks; ``None`` for an images-only split.
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
        kind: ``official``, ``flat``, ``images`` or ``ph2`` (see the module docstring).
        splits: split name -> split, in challenge order.
        problems: naming problems found while pairing (unknown files, masks
            without an image, duplicate ids, ...); missing masks are reported
            by :mod:`dermseg.data.check`, since an images-only folder has none.
        labels: the label set the folder was read with; every sample's ``mask_paths`` has one
            entry per label.
        strata: image id -> stratum (PH2: the clinical diagnosis, ``common_nevus``,
            ``atypical_nevus`` or ``melanoma``), for stratified splits; ``None`` when the data
            has no strata.
        strata_name: what the strata are (``diagnosis``), ``None`` without strata.
    """

    root: Path
    kind: str
    splits: dict[str, IsicSplit]
    problems: list[Problem] = field(default_factory=list)
    labels: LabelSet = field(default=DEFAULT, repr=False)
    strata: dict[str, str] | None = None
    strata_name: str | None = None

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


# --------------------------------------------------------------------------- naming per label set


def _builtin_name(labels: LabelSet) -> str | None:
    """The built-in set ``labels`` names files as (``isic2018_task2``, ...), ``None`` for a user's."""
    builtin = BUILTIN.get(labels.name)
    if builtin is not None and (builtin.names, builtin.mask_pattern) == (labels.names, labels.mask_pattern):
        return builtin.name
    return None


@dataclass(frozen=True)
class _Naming:
    """How the files of a label set are named.

    Attributes:
        labels: the set.
        image: an image file name; group 1 the id, group 2 the extension.
        image_id: what the set allows as an image id (full match).
        loose_mask: a mask name with any label word (group 1 id, group 2 label), for naming an
            unknown label; ``None`` where such names cannot be told from images.
        lesion: a Task 1 lesion mask to pick up beside the set's masks (group 1 the id).
        skip: known files of the layout that are not this set's data.
        near_miss: lower-case prefix of names meant as this set's (they get a naming problem
            instead of ``unknown file``); ``None`` for none.
        expected: the names expected, for the near-miss message.
        word: what a label is called in messages (``attribute`` for Task 2).
        lesion_is_label: the set's one label is the lesion (``lesion_mask_path`` = its mask).
        any_image_among_masks: an image of any format in a mask folder is a problem (the ISIC
            sets flag only PNGs there, as they always did).
    """

    labels: LabelSet
    image: re.Pattern[str]
    image_id: re.Pattern[str]
    loose_mask: re.Pattern[str] | None = None
    lesion: re.Pattern[str] | None = None
    skip: tuple[re.Pattern[str], ...] = ()
    near_miss: str | None = None
    expected: str = ""
    word: str = "label"
    lesion_is_label: bool = False
    any_image_among_masks: bool = True

    def mask(self, name: str) -> tuple[str, str] | None:
        """``(image id, label)`` of a mask file name of the set, or ``None``."""
        parsed = self.labels.parse_mask_name(name)
        if parsed is None or not self.image_id.fullmatch(parsed[0]):
            return None
        return parsed


def _naming(labels: LabelSet) -> _Naming:
    builtin = _builtin_name(labels)
    if builtin in ("isic2018_task2", "isic2018_task1"):
        task2 = builtin == "isic2018_task2"
        example = labels.mask_pattern.format(id="ISIC_<7 digits>", label="<name>")
        return _Naming(
            labels=labels,
            image=_IMAGE_RE,
            image_id=ID_PATTERN,
            loose_mask=_MASK_RE if task2 else None,
            lesion=_LESION_RE if task2 else None,
            skip=(_SUPERPIXELS_RE,) if task2 else (_SUPERPIXELS_RE, _MASK_RE),
            near_miss="isic",
            expected=f"ISIC_<7 digits>.jpg or {example}",
            word="attribute" if task2 else "label",
            lesion_is_label=not task2,
            any_image_among_masks=False,
        )
    if builtin == "ph2":
        return _Naming(
            labels=labels,
            image=_PH2_IMAGE_RE,
            image_id=_PH2_ID,
            near_miss="imd",
            expected="IMDxxx.jpg (or .bmp, .png) or " + labels.mask_pattern.format(id="IMDxxx", label=""),
            lesion_is_label=True,
        )
    return _Naming(labels=labels, image=_ANY_IMAGE_RE, image_id=re.compile(r".+"))


def _pair(
    name: str,
    image_dir: Path,
    mask_dirs: Iterable[Path],
    lesion_dir: Path | None,
    problems: list[Problem],
    naming: _Naming,
) -> IsicSplit:
    """Pair the images of ``image_dir`` with the masks found in ``mask_dirs`` (and lesion masks)."""
    labels = naming.labels
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
            loose = naming.loose_mask.match(entry_name) if naming.loose_mask is not None else None
            if kind == "dir":
                if naming.image.match(entry_name) or naming.mask(entry_name) or loose:
                    problems.append(Problem(path, "is a folder, expected a file"))
                continue
            # masks first: a user's set's images and masks may both be PNGs
            if parsed := naming.mask(entry_name):
                masks.setdefault(parsed[0], {})[parsed[1]] = path
            elif m := naming.image.match(entry_name):
                isic_id = m.group(1)
                among_masks = naming.any_image_among_masks or m.group(2).lower() == "png"
                if folder != image_dir and among_masks:
                    problems.append(Problem(path, "image found among masks"))
                elif isic_id in images:
                    problems.append(Problem(path, f"duplicate id {isic_id} (also {images[isic_id].name})"))
                else:
                    images[isic_id] = path
            elif loose:
                label = loose.group(2)
                problems.append(
                    Problem(path, f"unknown {naming.word} {label!r} (expected {', '.join(labels.names)})")
                )
            elif naming.lesion is not None and (m := naming.lesion.match(entry_name)):
                lesions[m.group(1)] = path
            elif any(p.match(entry_name) for p in naming.skip):
                continue
            elif naming.near_miss is not None and entry_name.lower().startswith(naming.near_miss):
                problems.append(Problem(path, f"name does not match {naming.expected}"))
            else:
                problems.append(Problem(path, "unknown file"))
    for isic_id in sorted(set(masks) - set(images)):
        for _label, path in sorted(masks[isic_id].items()):
            problems.append(Problem(path, f"mask has no matching image {isic_id}"))
    samples = []
    for isic_id in sorted(images):
        found = masks.get(isic_id, {})
        mask_paths = tuple(found.get(a) for a in labels.names)
        lesion = mask_paths[0] if naming.lesion_is_label else lesions.get(isic_id)
        samples.append(IsicSample(isic_id, images[isic_id], mask_paths, lesion, labels))
    # A separate ground-truth folder means masks are expected; a flat folder expects
    # them only when it holds some (otherwise it is an images-only folder).
    mask_dir = next((d for d in mask_dirs if d != image_dir), None)
    if mask_dir is None and any(masks.get(i) for i in images):
        mask_dir = image_dir
    return IsicSplit(name=name, image_dir=image_dir, mask_dir=mask_dir, samples=samples)


# --------------------------------------------------------------------------- discovery


def _official(
    dirs: dict[str, Path], inputs: dict[str, Path], naming: _Naming, problems: list[Problem]
) -> dict[str, IsicSplit]:
    """The splits of the official ISIC layout (Task 2 or Task 1 ground truth)."""
    task2 = _builtin_name(naming.labels) == "isic2018_task2"
    gts: dict[str, list[Path]] = {}
    for n, p in sorted(dirs.items(), reverse=True):  # _v3 before the unversioned name
        if m := (_GT_DIR_RE if task2 else _LESION_DIR_RE).match(n):
            gts.setdefault(m.group(1).lower(), []).append(p)
    lesion_dirs = (
        {m.group(1).lower(): p for n, p in dirs.items() if (m := _LESION_DIR_RE.match(n))} if task2 else {}
    )
    splits: dict[str, IsicSplit] = {}
    for split in SPLITS:
        if split not in inputs:
            continue
        split_gts = gts.get(split, [])
        if len(split_gts) > 1:
            problems.append(
                Problem(split_gts[1], f"several ground-truth folders for {split}; using {split_gts[0].name}")
            )
        splits[split] = _pair(split, inputs[split], split_gts[:1], lesion_dirs.get(split), problems, naming)
    return splits


def _subfolder_form(root: Path, entries: list[os.DirEntry[str]], naming: _Naming) -> bool:
    """Whether a flat dataset keeps its images in ``images/`` (and masks in ``masks/``): there
    is an ``images/`` folder and no image or mask of the set beside it."""
    if not any(e.name == "images" and _entry_kind(e) == "dir" for e in entries):
        return False
    return not any(
        _entry_kind(e) == "file" and (naming.image.match(e.name) or naming.mask(e.name))
        for e in entries
        if not _is_ignorable(e.name)
    )


def _ph2_layout(root: Path, labels: LabelSet) -> IsicLayout:
    """A PH2 folder in either form, read (every header checked) by :mod:`~dermseg.data.ph2`."""
    from dermseg.data.ph2 import IMAGES_FOLDER, read_ph2

    data = read_ph2(root, require_masks=True, check_files=True)
    if data.form == "distributed":
        image_dir = mask_dir = data.root / IMAGES_FOLDER
    else:
        image_dir, mask_dir = data.root / "images", data.root / "masks"
    samples = [IsicSample(s.id, s.image_path, (s.mask_path,), s.mask_path, labels) for s in data.samples]
    split = IsicSplit("all", image_dir, mask_dir, samples)
    strata = {s.id: str(s.diagnosis) for s in data.samples}
    return IsicLayout(root, "ph2", {"all": split}, [], labels, strata, "diagnosis")


def _nothing_found(naming: _Naming) -> str:
    builtin = _builtin_name(naming.labels)
    if builtin == "isic2018_task2":
        return "no ISIC images found (expected ISIC_<7 digits>.jpg files or the official layout)"
    if builtin == "isic2018_task1":
        return (
            "no ISIC images found (expected ISIC_<7 digits>.jpg files and ISIC_<7 digits>_segmentation.png "
            "masks, or the official layout)"
        )
    if builtin == "ph2":
        return (
            "no PH2 images found (expected 'PH2 Dataset images/' and PH2_dataset.txt, images/ + masks/ + "
            "labels.csv, or IMDxxx.jpg files)"
        )
    return (
        f"no images found for label set {naming.labels.name} (expected images and masks named "
        f"{naming.labels.mask_pattern}, in the folder or in images/ and masks/)"
    )


def discover(root: str | Path, labels: LabelSet = DEFAULT) -> IsicLayout:
    """Find and pair the images and masks under ``root``, as ``labels`` names them.

    Args:
        root: an official ISIC layout (the Task 2 or Task 1 ground truth, as ``labels`` says), a
            flat folder of images and masks (for any set but Task 2 also ``images/`` beside
            ``masks/``), a folder of images only, or (set ``ph2``) a PH2 folder in either form.
        labels: the label set; each sample gets one mask path per label. Task 2's by default.

    Returns:
        The layout, with naming problems listed (see :class:`IsicLayout`); for PH2 with the
        diagnoses as :attr:`IsicLayout.strata`.

    Raises:
        DataError: ``root`` is missing, not a folder, unreadable, or holds no image of the set;
            for PH2 also the first bad file (a missing lesion mask, an unreadable image or mask
            header, a mask of another size than its image, a bad criteria file), named.
    """
    root = Path(root)
    if not root.exists():
        raise DataError("folder not found", root)
    if not root.is_dir():
        raise DataError("is a file, expected a dataset folder", root)
    naming = _naming(labels)
    if _builtin_name(labels) == "ph2":
        from dermseg.data.ph2 import is_ph2

        if is_ph2(root):
            return _ph2_layout(root, labels)
    entries = list_dir(root)
    dirs = {e.name: Path(e.path) for e in entries if _entry_kind(e) == "dir"}
    isic = _builtin_name(labels) in ("isic2018_task2", "isic2018_task1")
    inputs = {m.group(1).lower(): p for n, p in dirs.items() if (m := _INPUT_DIR_RE.match(n))} if isic else {}
    problems: list[Problem] = []
    if inputs:
        splits = _official(dirs, inputs, naming, problems)
        kind = "official"
    else:
        image_dir, mask_dirs = root, [root]
        if _builtin_name(labels) != "isic2018_task2" and _subfolder_form(root, entries, naming):
            image_dir = dirs["images"]
            mask_dirs = [dirs["masks"]] if "masks" in dirs else [image_dir]
        split = _pair("all", image_dir, mask_dirs, None, problems, naming)
        splits = {"all": split}
        kind = "flat" if split.mask_dir is not None else "images"
    if not any(s.samples for s in splits.values()):
        raise DataError(_nothing_found(naming), root)
    return IsicLayout(root=root, kind=kind, splits=splits, problems=problems, labels=labels)


def _names(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return [e.name for e in it]
    except OSError:
        return []


def detect_label_set(root: str | Path) -> LabelSet | None:
    """The built-in label set a dataset folder holds, told from names only (for commands not told).

    Args:
        root: a dataset folder.

    Returns:
        ``ph2`` for PH2 in either form; ``isic2018_task2`` when there are ``_attribute_`` masks
        (or Task 2 ground-truth folders); ``isic2018_task1`` when there is Task 1 ground truth
        (``_segmentation.png`` masks or folders) and no Task 2 masks; ``ph2`` also for a folder
        of PH2 lesion masks alone (``IMDxxx_lesion.png``, e.g. a PH2 ``masks/`` folder or
        predictions); ``None`` otherwise (images only, a user's set, not a folder).
    """
    from dermseg.data.ph2 import is_ph2

    root = Path(root)
    if not root.is_dir():
        return None
    if is_ph2(root):
        return PH2
    names = _names(root)
    if any(_GT_DIR_RE.match(n) for n in names):
        return ISIC2018_TASK2
    task1 = any(_LESION_DIR_RE.match(n) for n in names)
    ph2 = False
    folders = [root] + [root / n for n in ("images", "masks") if n in names and (root / n).is_dir()]
    for folder in folders:
        files = names if folder == root else _names(folder)
        if any(_MASK_RE.match(n) for n in files):
            return ISIC2018_TASK2
        task1 = task1 or any(_LESION_RE.match(n) for n in files)
        ph2 = ph2 or any(_PH2_LESION_RE.match(n) for n in files)
    if task1:
        return ISIC2018_TASK1
    return PH2 if ph2 else None


def label_set_for(root: str | Path, labels: str | Path | LabelSet | None = None) -> LabelSet:
    """The label set to read ``root`` with, as commands choose it (their ``--labels``).

    Args:
        root: the dataset folder.
        labels: a label set, a built-in set's name or a user's YAML file; ``None``: the set
            :func:`detect_label_set` tells from ``root``, else the default (Task 2's).

    Raises:
        ConfigError: an unknown name, or a label set file that is unreadable or invalid (named).
    """
    if isinstance(labels, LabelSet):
        return labels
    if labels is not None:
        return load_label_set(labels)
    return detect_label_set(root) or DEFAULT
