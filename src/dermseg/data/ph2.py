"""Reading the PH2 dermoscopy database (Mendonca et al., EMBC 2013): images, lesion masks, criteria.

Two forms are recognised:

* ``distributed``: the database as it is distributed (``root`` may also be the folder that
  holds ``PH2Dataset/``)::

      PH2 Dataset images/IMD003/IMD003_Dermoscopic_Image/IMD003.bmp
      PH2 Dataset images/IMD003/IMD003_lesion/IMD003_lesion.bmp
      PH2_dataset.txt      (or PH2_dataset.csv, or PH2_dataset.xlsx when openpyxl is installed)

  ``PH2_dataset.txt`` is a table drawn with ``||`` and ``|``::

      ||   Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry | Pigment Network | ...
      || IMD003 ||                        ||                  0 ||         0 |               T | ...

  with the columns Name, Histological Diagnosis (free text, often empty), Clinical Diagnosis
  (0 common nevus, 1 atypical nevus, 2 melanoma), Asymmetry (0/1/2), Pigment Network (T/AT),
  Dots/Globules (A/T/AT), Streaks, Regression Areas, Blue-Whitish Veil (A/P) and Colors (codes
  1 white, 2 red, 3 light brown, 4 dark brown, 5 blue-gray, 6 black, separated by spaces).
  Lines that do not start with ``|`` (the legend) are ignored. The spreadsheet and a CSV
  export of it have one column per diagnosis and per colour, marked ``X``.

* ``flat``: ``images/IMD003.jpg``, ``masks/IMD003_lesion.png`` and ``labels.csv`` with the
  columns ``image, histological_diagnosis, common_nevus, atypical_nevus, melanoma, asymmetry,
  pigment_network, dots_globules, streaks, regression_areas, blue_whitish_veil, white, red,
  light_brown, dark_brown, blue_gray, black`` (the spreadsheet's, in snake case).

Every image must have a criteria row and every row an image; every problem is one
:class:`~dermseg.errors.DataError` naming the file concerned. Files are checked from their
headers only (Pillow reads no pixel): an unreadable or truncated BMP, or a mask whose size
differs from its image's, is reported without decoding anything.
"""

from __future__ import annotations

import csv
import io
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypedDict, cast

from PIL import Image, UnidentifiedImageError

from dermseg.errors import DataError, display_path

Diagnosis = Literal["common_nevus", "atypical_nevus", "melanoma"]
PigmentNetwork = Literal["typical", "atypical"]
DotsGlobules = Literal["absent", "typical", "atypical"]
Presence = Literal["absent", "present"]
Ph2Form = Literal["distributed", "flat"]

#: The clinical diagnoses, in the order of their codes 0, 1, 2.
DIAGNOSES: tuple[Diagnosis, ...] = ("common_nevus", "atypical_nevus", "melanoma")

#: The colours, in the order of their codes 1 to 6.
COLOURS: tuple[str, ...] = ("white", "red", "light_brown", "dark_brown", "blue_gray", "black")

#: The folder of per-image folders in the distributed form.
IMAGES_FOLDER = "PH2 Dataset images"

#: Criteria files looked for in the distributed form, in order of preference.
CRITERIA_FILES: tuple[str, ...] = ("PH2_dataset.txt", "PH2_dataset.csv", "PH2_dataset.xlsx")

_ID_RE = re.compile(r"^IMD\d+$")
_FLAT_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_MASK_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA"}


class Ph2Criteria(TypedDict):
    """The dermoscopic criteria of one image, in one vocabulary whatever the source file.

    Keys:
        asymmetry: 0 fully symmetric, 1 symmetric about one axis, 2 fully asymmetric.
        pigment_network: ``typical`` or ``atypical`` (source codes T, AT).
        dots_globules: ``absent``, ``typical`` or ``atypical`` (A, T, AT).
        streaks, regression_areas, blue_whitish_veil: ``absent`` or ``present`` (A, P).
        colours: the colours present, in :data:`COLOURS` order.
    """

    asymmetry: int
    pigment_network: PigmentNetwork
    dots_globules: DotsGlobules
    streaks: Presence
    regression_areas: Presence
    blue_whitish_veil: Presence
    colours: tuple[str, ...]


@dataclass(frozen=True)
class Ph2Sample:
    """One PH2 image.

    Attributes:
        id: ``IMDxxx``.
        image_path: the dermoscopic image (RGB, about 768x560).
        mask_path: the expert lesion mask (the image's size), or None when absent and
            ``read_ph2(..., require_masks=False)``.
        diagnosis: the clinical diagnosis.
        criteria: the dermoscopic criteria.
        histological_diagnosis: free text when the lesion was excised (e.g. ``Melanoma``,
            ``Dysplastic Nevus``), else None.
    """

    id: str
    image_path: Path
    mask_path: Path | None
    diagnosis: Diagnosis
    criteria: Ph2Criteria
    histological_diagnosis: str | None = None


@dataclass(frozen=True)
class Ph2Dataset:
    """The PH2 images found under a folder, sorted by id.

    Attributes:
        root: the folder that holds the data (``PH2Dataset/`` itself in the distributed form).
        form: ``distributed`` or ``flat``.
        criteria_file: the file the diagnoses and criteria were read from.
        samples: one per image.
    """

    root: Path
    form: Ph2Form
    criteria_file: Path
    samples: list[Ph2Sample] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Ph2Sample]:
        return iter(self.samples)

    def __getitem__(self, index: int) -> Ph2Sample:
        return self.samples[index]

    @property
    def ids(self) -> list[str]:
        """The image ids, sorted."""
        return [s.id for s in self.samples]

    def get(self, image_id: str) -> Ph2Sample:
        """The sample of ``image_id``.

        Raises:
            KeyError: no such image.
        """
        for sample in self.samples:
            if sample.id == image_id:
                return sample
        raise KeyError(image_id)

    def diagnosis_counts(self) -> dict[Diagnosis, int]:
        """Number of images per diagnosis, every diagnosis listed (in :data:`DIAGNOSES` order)."""
        counts: dict[Diagnosis, int] = dict.fromkeys(DIAGNOSES, 0)
        for sample in self.samples:
            counts[sample.diagnosis] += 1
        return counts


# --------------------------------------------------------------------------- finding the form


def _distributed_base(root: Path) -> Path | None:
    for base in (root, root / "PH2Dataset"):
        if (base / IMAGES_FOLDER).is_dir():
            return base
    return None


def _is_flat(root: Path) -> bool:
    labels = root / "labels.csv"
    if not ((root / "images").is_dir() and labels.is_file()):
        return False
    try:
        with labels.open(encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    keys = {_column_key(name) for name in header}
    return {"image", "pigment_network", "dots_globules"} <= keys


def is_ph2(root: str | Path) -> bool:
    """Whether ``root`` looks like PH2 in either form (by names only; nothing is opened but
    the first line of a flat form's ``labels.csv``).

    Args:
        root: a folder.

    Returns:
        True for a distributed tree (``PH2 Dataset images/`` in ``root`` or in
        ``root/PH2Dataset``) or a flat folder (``images/`` and a PH2 ``labels.csv``).
    """
    root = Path(root)
    if not root.is_dir():
        return False
    return _distributed_base(root) is not None or _is_flat(root)


# --------------------------------------------------------------------------- criteria files


def _column_key(name: object) -> str:
    """``"Blue-Whitish Veil\\n(A/P)"`` -> ``blue_whitish_veil``; ``"Name"`` -> ``image``."""
    text = re.sub(r"\(.*?\)", " ", str(name or ""), flags=re.DOTALL)
    key = re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")
    return {"name": "image", "image_name": "image", "image_id": "image", "colors": "colours"}.get(key, key)


_LETTER_CODES: dict[str, dict[str, str]] = {
    "pigment_network": {"t": "typical", "at": "atypical"},
    "dots_globules": {"a": "absent", "t": "typical", "at": "atypical"},
    "streaks": {"a": "absent", "p": "present"},
    "regression_areas": {"a": "absent", "p": "present"},
    "blue_whitish_veil": {"a": "absent", "p": "present"},
}
_REQUIRED = ("image", "asymmetry", *_LETTER_CODES)


@dataclass
class _Row:
    line: int
    cells: dict[str, str]


def _table(rows: Sequence[tuple[int, Sequence[str]]], path: Path) -> list[_Row]:
    """Rows below the header row (the first whose first cell names the image column)."""
    starts = [_column_key(cells[0]) if cells else "" for _, cells in rows]
    header_at = starts.index("image") if "image" in starts else None
    if header_at is None:
        raise DataError("no header row found (a row starting with Name or Image Name)", path)
    keys = [_column_key(c) for c in rows[header_at][1]]
    while keys and not keys[-1]:  # empty cells after the last column (spreadsheet exports)
        keys.pop()
    missing = [k for k in _REQUIRED if k not in keys]
    if "clinical_diagnosis" not in keys and not set(DIAGNOSES) <= set(keys):
        missing.append("clinical_diagnosis (or common_nevus, atypical_nevus, melanoma)")
    if "colours" not in keys and not set(COLOURS) <= set(keys):
        missing.append("colours (or white, red, light_brown, dark_brown, blue_gray, black)")
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)} in the header", path)
    table = []
    for line, cells in rows[header_at + 1 :]:
        values = [str(c).strip() for c in cells]
        if not any(values):
            continue
        if len(values) > len(keys) and not any(values[len(keys) :]):
            values = values[: len(keys)]
        if len(values) != len(keys):
            raise DataError(f"line {line}: {len(values)} cells where the header has {len(keys)}", path)
        table.append(_Row(line, dict(zip(keys, values, strict=True))))
    return table


def _split_txt_line(line: str) -> list[str]:
    core = line.strip().strip("|")
    return [cell.strip() for cell in re.split(r"\|\||\|", core)]


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read ({err.strerror or err})", path) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _rows_txt(path: Path) -> list[tuple[int, list[str]]]:
    return [
        (n, _split_txt_line(line))
        for n, line in enumerate(_decode(path).splitlines(), start=1)
        if line.strip().startswith("|")
    ]


def _rows_csv(path: Path) -> list[tuple[int, list[str]]]:
    try:
        return [(n, row) for n, row in enumerate(csv.reader(io.StringIO(_decode(path), newline="")), start=1)]
    except csv.Error as err:
        raise DataError(f"not a readable CSV file ({err})", path) from None


def _rows_xlsx(path: Path) -> list[tuple[int, list[str]]]:
    try:
        import openpyxl
    except ImportError:
        raise DataError(
            "reading .xlsx needs the openpyxl package; install it, or export the sheet as "
            "PH2_dataset.txt or PH2_dataset.csv beside it",
            path,
        ) from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            sheet = book.worksheets[0]
            return [
                (n, ["" if v is None else str(v) for v in row])
                for n, row in enumerate(sheet.iter_rows(values_only=True), start=1)
            ]
        finally:
            book.close()
    except DataError:
        raise
    except Exception as err:  # openpyxl raises many kinds (zip, XML, key errors) on a bad file
        raise DataError(f"cannot read the spreadsheet ({type(err).__name__}: {err})", path) from None


def _read_rows(path: Path) -> list[_Row]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return _table(_rows_txt(path), path)
    if suffix == ".xlsx":
        return _table(_rows_xlsx(path), path)
    return _table(_rows_csv(path), path)


def _is_x(value: str, row: _Row, column: str, path: Path) -> bool:
    if value.lower() == "x":
        return True
    if value == "":
        return False
    name = row.cells["image"]
    raise DataError(f"line {row.line}: {name}: {column} is {value!r}; expected X or empty", path)


def _integer(value: str) -> int | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _parse_row(row: _Row, path: Path) -> tuple[Diagnosis, Ph2Criteria, str | None]:
    cells = row.cells
    name = cells["image"]

    def bad(column: str, value: str, expected: str) -> DataError:
        message = f"line {row.line}: {name}: unknown {column} value {value!r} (expected {expected})"
        return DataError(message, path)

    if "clinical_diagnosis" in cells:
        value = cells["clinical_diagnosis"]
        code = _integer(value)
        key = _column_key(value)
        if code is not None and 0 <= code < len(DIAGNOSES):
            diagnosis = DIAGNOSES[code]
        elif key in DIAGNOSES:
            diagnosis = DIAGNOSES[[str(d) for d in DIAGNOSES].index(key)]
        else:
            raise bad("clinical diagnosis", value, "0, 1 or 2")
    else:
        marked = [d for d in DIAGNOSES if _is_x(cells[d], row, d, path)]
        if len(marked) != 1:
            raise DataError(
                f"line {row.line}: {name}: {len(marked)} diagnoses marked; expected exactly one of "
                f"{', '.join(DIAGNOSES)}",
                path,
            )
        diagnosis = marked[0]

    asymmetry = _integer(cells["asymmetry"])
    if asymmetry not in (0, 1, 2):
        raise bad("asymmetry", cells["asymmetry"], "0, 1 or 2")
    letters: dict[str, str] = {}
    for column, codes in _LETTER_CODES.items():
        value = cells[column]
        low = value.lower()
        if low in codes:
            letters[column] = codes[low]
        elif low in codes.values():
            letters[column] = low
        else:
            raise bad(column, value, " or ".join(c.upper() for c in codes))

    if "colours" in cells:
        found = set()
        for token in re.split(r"[\s,;]+", cells["colours"].strip()):
            if not token:
                continue
            code = _integer(token)
            if code is None or not 1 <= code <= len(COLOURS):
                raise bad("colour", token, "codes 1 to 6")
            found.add(COLOURS[code - 1])
    else:
        found = {c for c in COLOURS if _is_x(cells[c], row, c, path)}
    criteria: Ph2Criteria = {
        "asymmetry": asymmetry,
        "pigment_network": cast(PigmentNetwork, letters["pigment_network"]),
        "dots_globules": cast(DotsGlobules, letters["dots_globules"]),
        "streaks": cast(Presence, letters["streaks"]),
        "regression_areas": cast(Presence, letters["regression_areas"]),
        "blue_whitish_veil": cast(Presence, letters["blue_whitish_veil"]),
        "colours": tuple(c for c in COLOURS if c in found),
    }
    histological = cells.get("histological_diagnosis", "").strip() or None
    return diagnosis, criteria, histological


def read_criteria(path: str | Path) -> dict[str, tuple[Diagnosis, Ph2Criteria, str | None]]:
    """The diagnosis, criteria and histological diagnosis of every image in a criteria file.

    Args:
        path: ``PH2_dataset.txt`` (the distributed ``||`` table), a ``.csv`` (the flat form's
            ``labels.csv`` or an export of the spreadsheet) or ``PH2_dataset.xlsx`` (needs openpyxl).

    Returns:
        ``{image id: (diagnosis, criteria, histological diagnosis or None)}``.

    Raises:
        DataError: naming ``path``: unreadable, no header, a missing column, a row whose name is
            not ``IMDxxx``, a repeated image, or a value outside the vocabulary.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("criteria file not found", path)
    result: dict[str, tuple[Diagnosis, Ph2Criteria, str | None]] = {}
    lines: dict[str, int] = {}
    for row in _read_rows(path):
        name = row.cells["image"]
        if not _ID_RE.match(name):
            raise DataError(f"line {row.line}: image name {name!r} is not of the form IMDxxx", path)
        if name in result:
            raise DataError(f"line {row.line}: {name} is listed twice (also on line {lines[name]})", path)
        result[name] = _parse_row(row, path)
        lines[name] = row.line
    if not result:
        raise DataError("no image rows below the header", path)
    return result


# --------------------------------------------------------------------------- image headers


def _header(path: Path, what: str) -> tuple[tuple[int, int], str]:
    """Size ``(width, height)`` and mode of an image from its header; checks BMP length."""
    if not path.is_file():
        raise DataError(f"{what} not found" if not path.is_dir() else f"{what} is a folder", path)
    try:
        file_size = path.stat().st_size
        if file_size == 0:
            raise DataError(f"empty {what} (0 bytes)", path)
        with Image.open(path) as img:
            size, mode, fmt, tile = img.size, img.mode, img.format, list(img.tile)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(f"not a readable {what} (bad header or unknown format)", path) from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as err:
        raise DataError(f"unreadable {what} header ({err})", path) from None
    except Image.DecompressionBombError as err:
        raise DataError(f"{what} is too large to open ({err})", path) from None
    if fmt == "BMP" and len(tile) == 1 and tile[0][0] == "raw":
        # an uncompressed BMP: pixel data of `stride` bytes per row start at the tile's offset
        offset, args = tile[0][2], tile[0][3]
        stride = args[1] if isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], int) else 0
        needed = offset + abs(stride) * size[1]
        if stride and file_size < needed:
            raise DataError(
                f"truncated {what}: its header announces {needed} bytes, the file has {file_size}", path
            )
    return size, mode


def _check_pair(image: Path, mask: Path | None) -> None:
    size, _ = _header(image, "image")
    if mask is None:
        return
    mask_size, mode = _header(mask, "lesion mask")
    if mode not in _MASK_MODES:
        raise DataError(f"lesion mask has mode {mode}; expected an 8-bit or 1-bit mask", mask)
    if mask_size != size:
        raise DataError(
            f"lesion mask is {mask_size[0]}x{mask_size[1]} but its image is {size[0]}x{size[1]}", mask
        )


# --------------------------------------------------------------------------- the two forms


def _listed_but_absent(ids: list[str], found: set[str], criteria_file: Path, where: str) -> None:
    absent = sorted(set(ids) - found)
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise DataError(f"no image for {absent[0]}{more}, listed here; expected it in {where}", criteria_file)


def _unlisted(found: set[str], listed: set[str], criteria_file: Path) -> None:
    unlisted = sorted(found - listed)
    if unlisted:
        more = f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""
        raise DataError(f"no row for image {unlisted[0]}{more}", criteria_file)


def _read_distributed(base: Path, require_masks: bool, check_files: bool) -> Ph2Dataset:
    criteria_file = next((base / n for n in CRITERIA_FILES if (base / n).is_file()), None)
    if criteria_file is None:
        raise DataError(f"no criteria file: expected {' or '.join(CRITERIA_FILES)}", base)
    rows = read_criteria(criteria_file)
    images = base / IMAGES_FOLDER
    folders = {p.name for p in images.iterdir() if p.is_dir() and _ID_RE.match(p.name)}
    _unlisted(folders, set(rows), criteria_file)
    _listed_but_absent(list(rows), folders, criteria_file, f"{display_path(images)}/")
    samples = []
    for image_id in sorted(rows):
        folder = images / image_id
        image = folder / f"{image_id}_Dermoscopic_Image" / f"{image_id}.bmp"
        lesion = folder / f"{image_id}_lesion" / f"{image_id}_lesion.bmp"
        if not image.is_file():
            raise DataError("dermoscopic image not found", image)
        if require_masks and not lesion.is_file():
            raise DataError("lesion mask not found", lesion)
        mask = lesion if lesion.is_file() else None
        if check_files:
            _check_pair(image, mask)
        diagnosis, criteria, histological = rows[image_id]
        samples.append(Ph2Sample(image_id, image, mask, diagnosis, criteria, histological))
    return Ph2Dataset(base, "distributed", criteria_file, samples)


def _read_flat(root: Path, require_masks: bool, check_files: bool) -> Ph2Dataset:
    criteria_file = root / "labels.csv"
    rows = read_criteria(criteria_file)
    images: dict[str, Path] = {}
    for path in sorted((root / "images").iterdir()):
        if path.suffix.lower() in _FLAT_IMAGE_SUFFIXES and _ID_RE.match(path.stem):
            if path.stem in images:
                raise DataError(f"two images for {path.stem} (also {images[path.stem].name})", path)
            images[path.stem] = path
    _unlisted(set(images), set(rows), criteria_file)
    _listed_but_absent(list(rows), set(images), criteria_file, f"{display_path(root / 'images')}/")
    samples = []
    for image_id in sorted(rows):
        image = images[image_id]
        candidates = [root / "masks" / f"{image_id}_lesion{s}" for s in (".png", ".bmp")]
        mask = next((m for m in candidates if m.is_file()), None)
        if mask is None and require_masks:
            raise DataError("lesion mask not found", candidates[0])
        if check_files:
            _check_pair(image, mask)
        diagnosis, criteria, histological = rows[image_id]
        samples.append(Ph2Sample(image_id, image, mask, diagnosis, criteria, histological))
    return Ph2Dataset(root, "flat", criteria_file, samples)


def read_ph2(root: str | Path, require_masks: bool = True, check_files: bool = True) -> Ph2Dataset:
    """Read PH2 in either form (see the module docstring).

    Args:
        root: the PH2 folder: ``PH2Dataset/`` (or the folder holding it), or a flat folder.
        require_masks: a missing lesion mask is an error; with False its ``mask_path`` is None.
        check_files: open every image's and mask's header (no pixel is decoded): unreadable
            or truncated BMPs, and masks of another size than their image, are errors.

    Returns:
        The dataset, samples sorted by id.

    Raises:
        DataError: naming the file concerned: not a PH2 folder, no criteria file, an image
            without a criteria row or a row without an image, a bad criteria value, a missing
            mask, an unreadable image or mask.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("PH2 folder not found" if not root.exists() else "not a folder", root)
    base = _distributed_base(root)
    if base is not None:
        return _read_distributed(base, require_masks, check_files)
    if _is_flat(root):
        return _read_flat(root, require_masks, check_files)
    raise DataError(
        f"not a PH2 folder: expected '{IMAGES_FOLDER}/' and PH2_dataset.txt, "
        "or images/, masks/ and labels.csv",
        root,
    )


__all__ = [
    "COLOURS",
    "CRITERIA_FILES",
    "DIAGNOSES",
    "IMAGES_FOLDER",
    "Diagnosis",
    "Ph2Criteria",
    "Ph2Dataset",
    "Ph2Sample",
    "Ph2Form",
    "is_ph2",
    "read_criteria",
    "read_ph2",
]
