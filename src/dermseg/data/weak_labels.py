"""Image-level weak labels: whether a Task 2 attribute is in an image, from criteria tables.

Real datasets often say *whether* an image holds a structure without drawing where. Three
sources are read, each into one :class:`WeakLabels` (image -> {attribute: present}):

* **PH2** (Mendonca et al. 2013): its criteria file in any form :func:`dermseg.data.ph2.read_criteria`
  reads (the flat ``labels.csv``, ``PH2_dataset.txt``, ...); images are ``IMDxxx``.
* **Derm7pt** (Kawahara et al. 2018): ``meta.csv`` with the columns ``derm`` (the dermoscopic
  image's path under ``images/``, the image's key here), ``pigment_network``, ``streaks`` and
  ``dots_and_globules``; other columns are ignored.
* **a plain CSV** ``image, attribute, present``: one row per image and attribute, ``attribute``
  one of the five Task 2 names, ``present`` 0 or 1.

The criteria are mapped onto the Task 2 attributes by one table, :data:`CRITERIA_MAP`:

=========  ===================  =================  ===========  ==============================
source     criterion (column)   Task 2 attribute   absent       present
=========  ===================  =================  ===========  ==============================
ph2        dots_globules        globules           absent       typical, atypical
ph2        streaks              streaks            absent       present
ph2        pigment_network      (none)             --           typical, atypical: no absent
                                                                class, so no negative; not used
derm7pt    dots_and_globules    globules           absent       regular, irregular
derm7pt    streaks              streaks            absent       regular, irregular
derm7pt    pigment_network      pigment_network    absent       typical, atypical
=========  ===================  =================  ===========  ==============================

**No weak label** from PH2 or Derm7pt for ``milia_like_cyst`` and ``negative_network`` (neither
source grades them), nor from PH2 for ``pigment_network`` (every PH2 image is typical or
atypical: no image says the network is absent). The plain CSV may label any attribute.

Every bad row (a value outside the source's vocabulary, an unknown attribute, a missing column,
an image listed twice) is one :class:`~dermseg.errors.DataError` naming the file and the line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dermseg.attributes import ATTRIBUTES
from dermseg.data.ph2 import read_criteria
from dermseg.errors import DataError

WeakSource = Literal["ph2", "derm7pt", "csv"]


@dataclass(frozen=True)
class CriterionMapping:
    """How one criterion of a source becomes (or does not become) a Task 2 presence label.

    Attributes:
        source: ``ph2`` or ``derm7pt``.
        column: the criterion's column (PH2: the key of :class:`~dermseg.data.ph2.Ph2Criteria`).
        attribute: the Task 2 attribute it labels, or None when it gives no label.
        absent: the source's values meaning "not in the image".
        present: the source's values meaning "in the image".
    """

    source: str
    column: str
    attribute: str | None
    absent: tuple[str, ...]
    present: tuple[str, ...]


#: The one table from dermoscopic criteria to Task 2 attributes (see the module docstring).
CRITERIA_MAP: tuple[CriterionMapping, ...] = (
    CriterionMapping("ph2", "dots_globules", "globules", ("absent",), ("typical", "atypical")),
    CriterionMapping("ph2", "streaks", "streaks", ("absent",), ("present",)),
    CriterionMapping("ph2", "pigment_network", None, (), ("typical", "atypical")),
    CriterionMapping("derm7pt", "dots_and_globules", "globules", ("absent",), ("regular", "irregular")),
    CriterionMapping("derm7pt", "streaks", "streaks", ("absent",), ("regular", "irregular")),
    CriterionMapping("derm7pt", "pigment_network", "pigment_network", ("absent",), ("typical", "atypical")),
)

#: The Task 2 attributes no criteria source labels (the plain CSV may still label them).
UNLABELLED_ATTRIBUTES: tuple[str, ...] = tuple(
    a for a in ATTRIBUTES if a not in {m.attribute for m in CRITERIA_MAP}
)

#: The Derm7pt column that names the dermoscopic image (a path under ``images/``).
DERM7PT_IMAGE_COLUMN = "derm"

_PLAIN_COLUMNS = ("image", "attribute", "present")


def mappings(source: str) -> tuple[CriterionMapping, ...]:
    """The rows of :data:`CRITERIA_MAP` of one source that give a label (attribute not None)."""
    return tuple(m for m in CRITERIA_MAP if m.source == source and m.attribute is not None)


@dataclass(frozen=True)
class WeakLabels:
    """Image-level presence labels of one file.

    Attributes:
        source: ``ph2``, ``derm7pt`` or ``csv``.
        path: the file read.
        labels: ``{image: {attribute: present}}``, images in file order; an attribute the source
            does not label for an image is not a key (unknown, not absent).
    """

    source: WeakSource
    path: Path
    labels: dict[str, dict[str, bool]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def attributes(self) -> tuple[str, ...]:
        """The attributes labelled in at least one image, in Task 2 order."""
        seen = {a for per_image in self.labels.values() for a in per_image}
        return tuple(a for a in ATTRIBUTES if a in seen)

    def of_attribute(self, attribute: str) -> dict[str, bool]:
        """``{image: present}`` of the images labelled for ``attribute`` (file order)."""
        return {image: per[attribute] for image, per in self.labels.items() if attribute in per}


# --------------------------------------------------------------------------- reading CSV rows


def _csv_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``(line, {column: stripped value})`` of every non-empty row below the header."""
    if not path.is_file():
        raise DataError("weak-label file not found", path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as err:
        raise DataError(f"cannot read ({err.strerror or err})", path) from None
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text ({err.reason} at byte {err.start})", path) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"line 1: missing column(s) {', '.join(missing)} in the header", path)
        rows = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise DataError(
                    f"line {reader.line_num}: {len(cells)} cells where the header has {len(header)}", path
                )
            rows.append((reader.line_num, dict(zip(header, (c.strip() for c in cells), strict=True))))
    except csv.Error as err:
        raise DataError(f"line {reader.line_num}: not readable as CSV ({err})", path) from None
    if not rows:
        raise DataError("no rows below the header", path)
    return rows


def _first_line(lines: dict[str, int], image: str, line: int, path: Path) -> None:
    if image in lines:
        raise DataError(f"line {line}: {image} is listed twice (also on line {lines[image]})", path)
    lines[image] = line


def _map_value(mapping: CriterionMapping, value: str, line: int, image: str, path: Path) -> bool:
    low = value.strip().lower()
    if low in mapping.absent:
        return False
    if low in mapping.present:
        return True
    expected = ", ".join((*mapping.absent, *mapping.present))
    raise DataError(
        f"line {line}: {image}: unknown {mapping.column} value {value!r} (expected {expected})", path
    )


# --------------------------------------------------------------------------- the three sources


def read_ph2_weak_labels(path: str | Path) -> WeakLabels:
    """Presence labels from a PH2 criteria file (``labels.csv`` of the flat form, or any file
    :func:`~dermseg.data.ph2.read_criteria` reads), mapped by :data:`CRITERIA_MAP`.

    Args:
        path: the criteria file.

    Returns:
        ``globules`` and ``streaks`` labels of every ``IMDxxx`` image.

    Raises:
        DataError: naming the file and line: see :func:`~dermseg.data.ph2.read_criteria`.
    """
    path = Path(path)
    labels: dict[str, dict[str, bool]] = {}
    for image, (_diagnosis, criteria, _histology) in read_criteria(path).items():
        values: Mapping[str, object] = criteria
        labels[image] = {str(m.attribute): str(values[m.column]) in m.present for m in mappings("ph2")}
    return WeakLabels("ph2", path, labels)


def read_derm7pt_weak_labels(path: str | Path) -> WeakLabels:
    """Presence labels from a Derm7pt ``meta.csv``, mapped by :data:`CRITERIA_MAP`.

    Args:
        path: the ``meta.csv`` (``meta/meta.csv`` in the release).

    Returns:
        ``globules``, ``streaks`` and ``pigment_network`` labels, keyed by the ``derm`` column
        (the image's path under ``images/``).

    Raises:
        DataError: naming the file and line: a missing column, an empty or repeated ``derm``
            path, a criterion value outside the Derm7pt vocabulary.
    """
    path = Path(path)
    used = mappings("derm7pt")
    rows = _csv_rows(path, (DERM7PT_IMAGE_COLUMN, *(m.column for m in used)))
    labels: dict[str, dict[str, bool]] = {}
    lines: dict[str, int] = {}
    for line, cells in rows:
        image = cells[DERM7PT_IMAGE_COLUMN]
        if not image:
            raise DataError(f"line {line}: empty {DERM7PT_IMAGE_COLUMN} (the image path)", path)
        _first_line(lines, image, line, path)
        labels[image] = {str(m.attribute): _map_value(m, cells[m.column], line, image, path) for m in used}
    return WeakLabels("derm7pt", path, labels)


def read_plain_weak_labels(path: str | Path) -> WeakLabels:
    """Presence labels from a CSV ``image, attribute, present`` (``present`` 0 or 1).

    An image may have one row per attribute; attributes without a row are unlabelled.

    Raises:
        DataError: naming the file and line: a missing column, an empty image, an attribute
            that is not a Task 2 name, ``present`` not 0 or 1, an image and attribute given twice.
    """
    path = Path(path)
    labels: dict[str, dict[str, bool]] = {}
    lines: dict[str, int] = {}
    for line, cells in _csv_rows(path, _PLAIN_COLUMNS):
        image, attribute, present = (cells[c] for c in _PLAIN_COLUMNS)
        if not image:
            raise DataError(f"line {line}: empty image", path)
        if attribute not in ATTRIBUTES:
            raise DataError(
                f"line {line}: {image}: unknown attribute {attribute!r} "
                f"(expected one of {', '.join(ATTRIBUTES)})",
                path,
            )
        if present not in ("0", "1"):
            raise DataError(f"line {line}: {image}: present is {present!r}; expected 0 or 1", path)
        _first_line(lines, f"{image} ({attribute})", line, path)
        labels.setdefault(image, {})[attribute] = present == "1"
    return WeakLabels("csv", path, labels)


def read_derm7pt_folder(folder: str | Path) -> tuple[WeakLabels, dict[str, Path]]:
    """A Derm7pt release folder: its labels and the path of every labelled image.

    Args:
        folder: holds ``meta.csv`` or ``meta/meta.csv``, and ``images/`` with the paths of the
            ``derm`` column.

    Returns:
        ``(labels, {derm path: image file})``.

    Raises:
        DataError: no ``meta.csv``, a bad row (:func:`read_derm7pt_weak_labels`), or a listed
            image that is not under ``images/`` (naming the ``meta.csv``).
    """
    folder = Path(folder)
    found = [m for m in (folder / "meta.csv", folder / "meta" / "meta.csv") if m.is_file()]
    if not found:
        raise DataError("no meta.csv (nor meta/meta.csv) in this Derm7pt folder", folder)
    weak = read_derm7pt_weak_labels(found[0])
    images = {key: folder / "images" / key for key in weak.labels}
    absent = [key for key, path in images.items() if not path.is_file()]
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise DataError(f"image {absent[0]}{more} listed here is not under {folder / 'images'}", found[0])
    return weak, images


def detect_weak_source(path: str | Path) -> WeakSource:
    """Which reader a CSV file needs, from its header row.

    Returns:
        ``derm7pt`` (a ``derm`` column), ``csv`` (``image, attribute, present``) or ``ph2``
        (anything else: read as PH2 criteria, which reports what is missing).

    Raises:
        DataError: the file cannot be read.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            header = {h.strip().lower() for h in next(csv.reader(fh), [])}
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read the header ({err})", path) from None
    if DERM7PT_IMAGE_COLUMN in header:
        return "derm7pt"
    if set(_PLAIN_COLUMNS) <= header:
        return "csv"
    return "ph2"


def read_weak_labels(path: str | Path, source: WeakSource | None = None) -> WeakLabels:
    """Presence labels from any of the three sources.

    Args:
        path: the file.
        source: ``ph2``, ``derm7pt`` or ``csv``; None detects it (:func:`detect_weak_source`).

    Raises:
        DataError: see the reader of the source.
        ValueError: an unknown ``source``.
    """
    readers = {
        "ph2": read_ph2_weak_labels,
        "derm7pt": read_derm7pt_weak_labels,
        "csv": read_plain_weak_labels,
    }
    chosen = detect_weak_source(path) if source is None else source
    if chosen not in readers:
        raise ValueError(f"unknown weak-label source {chosen!r}; expected one of {', '.join(readers)}")
    return readers[chosen](path)


__all__ = [
    "CRITERIA_MAP",
    "DERM7PT_IMAGE_COLUMN",
    "UNLABELLED_ATTRIBUTES",
    "CriterionMapping",
    "WeakLabels",
    "WeakSource",
    "detect_weak_source",
    "mappings",
    "read_derm7pt_folder",
    "read_derm7pt_weak_labels",
    "read_plain_weak_labels",
    "read_ph2_weak_labels",
    "read_weak_labels",
]
