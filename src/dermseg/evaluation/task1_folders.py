"""Scoring a folder of predicted lesion masks with the official ISIC 2018 Task 1 metric.

:func:`evaluate_task1_folders` gives the numbers of the official scorer
(``isic_challenge_scoring.segmentation.SegmentationScore.from_dir``, version 5.6.0) on the
folders it accepts, several times faster: masks are decoded with Pillow and counted with numpy in
a thread pool (both release the GIL), the prediction folder is listed once instead of once per
truth file, and the scores come from the integer counts (:mod:`dermseg.evaluation.task1`) instead
of pandas row by row. The scorer's rules, which we follow:

* it iterates the **truth** files, sorted by name; a prediction without a truth file is ignored;
* each truth mask needs one prediction of the same id and of the same width and height;
* predictions must be single-channel 8-bit (mode ``L``) or 1-bit (mode ``1``) images, binarised
  at ``value > 128`` (so 128 is negative and 129 positive), and the truth likewise;
* every image weighs one in the means (see :mod:`dermseg.evaluation.task1` for the six scores,
  their conventions for empty masks, and the ``threshold_jaccard`` leaderboard number).

Truth folders, recognised by their names:

* ISIC 2018 Task 1 (``ISIC2018_Task1_*_GroundTruth``): ``ISIC_<id>_segmentation.png``; a flat
  folder that also holds the images, attribute masks, superpixels, ``LICENSE.txt`` and
  ``ATTRIBUTION.txt`` (the sample folders) works too: those files are skipped;
* PH2, flat form: a folder of ``IMDxxx_lesion.png`` (or ``.bmp``) masks, or the flat root
  itself (``images/``, ``masks/``, ``labels.csv``), whose ``masks/`` is then used;
* PH2, distributed form: ``PH2Dataset/`` (or the folder holding it), whose masks are
  ``PH2 Dataset images/IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp``.

A prediction is found by its exact name: ``<id>_segmentation.png`` or ``<id>_lesion.png``
(``ISIC_0000000_segmentation.png``, ``IMD003_lesion.png``; the extension in any case). Other
files in the prediction folder are ignored.

Where we differ, on purpose:

* every problem (missing, duplicated, mis-sized, unreadable, colour or 16-bit prediction;
  unreadable truth) is collected in one pass and reported together as one
  :class:`~dermseg.evaluation.folders.EvaluationError` (a :class:`~dermseg.errors.DataError`
  whose ``problems`` list names every file), where the scorer stops at the first;
* the scorer needs an ISIC id (``ISIC_<7 digits>``) in every truth file name and so cannot
  score PH2 at all; we take PH2 ids (``IMDxxx``) as well;
* truth masks are read with :func:`dermseg.data.imageio.read_mask`: besides mode ``L`` and
  ``1`` (read exactly as the scorer does), grey palette and RGB masks are accepted (the scorer
  refuses them), and a truth mask whose values are all in 1..128 (a 0/1 mask, which the scorer
  would silently read as empty) is a problem;
* the scorer accepts any prediction whose name *contains* the id's digits and fails when
  several do; we want the exact names above;
* a prediction whose values all lie in 1..128 is scored as the scorer does (empty), with a
  logged warning.

Extras, next to the official keys: the per-image scores, the image count and the number of
images whose truth mask is not empty.
"""

from __future__ import annotations

import copy
import csv
import errno
import io
import json
import logging
import os
import re
import struct
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from dermseg.data.imageio import BROKEN_LINK, MASK_THRESHOLD, read_mask, too_large
from dermseg.data.layout import Problem, list_dir
from dermseg.data.ph2 import IMAGES_FOLDER
from dermseg.errors import DataError, display_path
from dermseg.evaluation.folders import EvaluationError, score_in_parallel
from dermseg.evaluation.task1 import per_image_scores, scores_from_counts
from dermseg.files import atomic_path

log = logging.getLogger(__name__)

_ISIC_TRUTH = re.compile(r"^(ISIC_\d{7})_segmentation\.(?i:png)$")
_PH2_TRUTH = re.compile(r"^(IMD\d+)_lesion\.(?i:png|bmp)$")
_PREDICTION = re.compile(r"^(ISIC_\d{7}|IMD\d+)_(?:segmentation|lesion)\.(?i:png)$")
#: A prediction named right but for its extension (``IMD003_lesion.bmp``): named in the message.
_OTHER_EXTENSION = re.compile(r"^(ISIC_\d{7}|IMD\d+)_(?:segmentation|lesion)\.[A-Za-z0-9]+$")
_PH2_ID = re.compile(r"^IMD\d+$")
#: Files a truth folder may hold besides lesion masks: images, Task 2 masks, superpixels, licences.
_SKIPPED_NAME = re.compile(
    r"^(ISIC_\d{7}\.(?i:jpe?g|png)|ISIC_\d{7}_(superpixels|attribute_[A-Za-z_]+)\.(?i:png)"
    r"|IMD\d+\.(?i:jpe?g|png|bmp)|LICENSE|ATTRIBUTION)$"
)
_SKIPPED_SUFFIXES = {".txt", ".md", ".csv", ".json", ".yaml", ".yml", ".pdf", ".html", ".xlsx"}
_TRUTH_NAME_HINT = "ISIC_<7 digits>_segmentation.png or IMDxxx_lesion.png/.bmp"
_PREDICTION_NAME_HINT = "<id>_segmentation.png or <id>_lesion.png"

#: Per-image score columns, in the order of :meth:`Task1EvaluationResult.per_image_rows`.
PER_IMAGE_COLUMNS: tuple[str, ...] = (
    "id",
    "jaccard",
    "dice",
    "threshold_jaccard",
    "accuracy",
    "sensitivity",
    "specificity",
)
#: Columns of :meth:`Task1EvaluationResult.to_csv_rows` (one row per image, then ``macro_average``).
CSV_COLUMNS: tuple[str, ...] = PER_IMAGE_COLUMNS

ProgressCallback = Callable[[int, int], None]


@dataclass
class Task1EvaluationResult:
    """The official ISIC 2018 Task 1 scores of a prediction folder, with the per-image scores.

    Attributes:
        scores: exactly the keys and values of ``SegmentationScore.to_dict()``: ``"overall"`` and
            ``"validation"`` (both the macro-average ``threshold_jaccard``, the leaderboard number)
            and ``"macro_average"``: ``{accuracy, sensitivity, specificity, jaccard,
            threshold_jaccard, dice}``, each the plain mean over images.
        image_ids: the scored ids, in truth-file order (sorted by file name).
        per_image_counts: ``(images, 4)`` int64 raw ``[tp, fp, fn, tn]`` pixel counts, one row per
            id of ``image_ids``.
        images_with_lesion: the images whose truth mask is not empty.
    """

    scores: dict[str, Any]
    image_ids: tuple[str, ...]
    per_image_counts: np.ndarray
    images_with_lesion: int

    @property
    def overall(self) -> float:
        """The official leaderboard number (macro-average thresholded Jaccard)."""
        return float(self.scores["overall"])

    @property
    def images(self) -> int:
        """The number of scored images."""
        return len(self.image_ids)

    def per_image_scores(self) -> dict[str, np.ndarray]:
        """``{score name: (images,) float64}`` the six official scores of every image."""
        return per_image_scores(self.per_image_counts)

    def per_image_rows(self) -> list[dict[str, Any]]:
        """One dict per image, keys :data:`PER_IMAGE_COLUMNS` (the id, then plain floats)."""
        scores = self.per_image_scores()
        return [
            {"id": image_id, **{name: float(scores[name][k]) for name in PER_IMAGE_COLUMNS[1:]}}
            for k, image_id in enumerate(self.image_ids)
        ]

    def to_dict(self) -> dict[str, Any]:
        """The official keys, then ``images``, ``images_with_lesion`` and ``per_image`` (the rows
        of :meth:`per_image_rows`); JSON-serialisable."""
        return {
            **copy.deepcopy(self.scores),
            "images": self.images,
            "images_with_lesion": self.images_with_lesion,
            "per_image": self.per_image_rows(),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON (floats at full precision)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_csv_rows(self) -> list[dict[str, Any]]:
        """:meth:`per_image_rows`, then a row whose id is ``macro_average`` holding the official means."""
        macro = self.scores["macro_average"]
        return [
            *self.per_image_rows(),
            {"id": "macro_average", **{name: macro[name] for name in PER_IMAGE_COLUMNS[1:]}},
        ]


# --------------------------------------------------------------------------- finding the truth


@dataclass(frozen=True)
class _Truth:
    image_id: str
    path: Path


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _ph2_distributed_base(root: Path) -> Path | None:
    for base in (root, root / "PH2Dataset"):
        if (base / IMAGES_FOLDER).is_dir():
            return base
    return None


#: A problem found while listing the truth, with the id it concerns (None: no id).
_TruthProblem = tuple[str | None, Problem]


def _distributed_truths(base: Path) -> tuple[list[_Truth], list[_TruthProblem]]:
    """The lesion BMP of every ``IMDxxx`` case folder of a distributed PH2 tree, sorted by id."""
    truths: list[_Truth] = []
    problems: list[_TruthProblem] = []
    for entry in list_dir(base / IMAGES_FOLDER, "PH2 images"):
        if not (_PH2_ID.match(entry.name) and _is_dir(entry)):
            continue
        mask = _distributed_mask(base, entry.name)
        if mask.is_file():
            truths.append(_Truth(entry.name, mask))
        else:
            problems.append((entry.name, Problem(mask, "ground-truth lesion mask not found")))
    return truths, problems


def _distributed_mask(base: Path, image_id: str) -> Path:
    return base / IMAGES_FOLDER / image_id / f"{image_id}_lesion" / f"{image_id}_lesion.bmp"


def _folder_truths(gt_dir: Path) -> tuple[list[_Truth], list[_TruthProblem]]:
    """The ISIC and PH2 lesion masks of one folder, sorted by file name (the scorer's order)."""
    truths: list[_Truth] = []
    problems: list[_TruthProblem] = []
    skipped: list[str] = []
    seen: dict[str, Path] = {}
    for entry in list_dir(gt_dir, "ground-truth"):
        name, path = entry.name, Path(entry.path)
        if name.startswith("."):
            continue
        m = _ISIC_TRUTH.match(name) or _PH2_TRUTH.match(name)
        if _is_dir(entry):
            if m:  # a truth mask that cannot be read: not silently unscored
                problems.append((m.group(1), Problem(path, "is a folder, expected a mask file")))
            continue
        if m:
            image_id = m.group(1)
            if image_id in seen:
                message = f"two ground-truth masks for {image_id}: {seen[image_id].name}, {name}"
                problems.append((image_id, Problem(path, message)))
                continue
            seen[image_id] = path
            truths.append(_Truth(image_id, path))
        elif not (_SKIPPED_NAME.match(name) or Path(name).suffix.lower() in _SKIPPED_SUFFIXES):
            skipped.append(name)
    if skipped:
        log.warning(
            "%s: skipped %d file(s) that are not %s, e.g. %s",
            display_path(gt_dir),
            len(skipped),
            _TRUTH_NAME_HINT,
            display_path(skipped[0]),
        )
    return truths, problems


def _truth_files(gt_dir: Path) -> tuple[list[_Truth], list[_TruthProblem], Callable[[str], Path]]:
    """Every truth mask of ``gt_dir`` in any recognised form, the problems found listing them,
    and where the truth mask of an id would be (for messages)."""
    base = _ph2_distributed_base(gt_dir)
    if base is not None:
        truths, problems = _distributed_truths(base)
        return truths, problems, lambda image_id: _distributed_mask(base, image_id)
    flat_masks = gt_dir / "masks"
    if flat_masks.is_dir() and (gt_dir / "labels.csv").is_file():  # the PH2 flat root
        gt_dir = flat_masks
    truths, problems = _folder_truths(gt_dir)
    return truths, problems, lambda image_id: gt_dir / _lesion_name(image_id)


def _prediction_files(pred_dir: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """``id -> paths`` of every file named like a prediction, and of those named so but not PNG."""
    found: dict[str, list[Path]] = {}
    other: dict[str, list[Path]] = {}
    for entry in list_dir(pred_dir, "prediction"):
        if m := _PREDICTION.match(entry.name):
            found.setdefault(m.group(1), []).append(Path(entry.path))
        elif m := _OTHER_EXTENSION.match(entry.name):
            other.setdefault(m.group(1), []).append(Path(entry.path))
    return found, other


def _lesion_name(image_id: str) -> str:
    """The usual name of an id's lesion mask: ``IMDxxx_lesion.png`` or ``ISIC_<id>_segmentation.png``."""
    return f"{image_id}_lesion.png" if _PH2_ID.match(image_id) else f"{image_id}_segmentation.png"


# --------------------------------------------------------------------------- reading


def _read_bytes(path: Path) -> bytes:
    """The file's content; every failure a one-line DataError naming it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(BROKEN_LINK if path.is_symlink() else "file not found", path) from None
    except IsADirectoryError:
        raise DataError("is a folder, expected an image file", path) from None
    except PermissionError:
        raise DataError("permission denied", path) from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise DataError(BROKEN_LINK, path) from None
        raise DataError(f"cannot read ({err.strerror})", path) from None
    if not data:
        raise DataError("empty file (0 bytes)", path)
    return data


def _decode(
    path: Path, data: bytes, what: str, expected_hw: tuple[int, int] | None, strict: bool
) -> np.ndarray | None:
    """Decode a mode ``L`` or ``1`` mask as the scorer reads it.

    An 8-bit greyscale PNG is decoded with OpenCV (about twice as fast as Pillow, the same
    values); anything else, or a file OpenCV fails on, with Pillow (which then names the error).

    Args:
        path: the file, for messages.
        data: its content.
        what: ``prediction`` or ``ground truth``, for messages.
        expected_hw: ``(height, width)`` the mask must have, checked before decoding; None to skip.
        strict: a mode other than ``L`` and ``1`` is an error (the scorer's rule); else None is
            returned for it, without decoding.

    Returns:
        ``(H, W)`` uint8 values (mode ``L``) or bool (mode ``1``), or None (see ``strict``).

    Raises:
        DataError: unreadable, of the wrong size, or (``strict``) not single-channel.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            mode, (w, h) = img.mode, img.size
            if mode not in ("L", "1"):
                if not strict:
                    return None
                raise DataError(
                    f"{what} is mode {mode}; the official scorer accepts only single-channel 8-bit (L) "
                    "or 1-bit images",
                    path,
                )
            if expected_hw is not None and (h, w) != expected_hw:
                eh, ew = expected_hw
                raise DataError(f"{what} is {w}x{h} but ground truth is {ew}x{eh}", path)
            if mode == "L" and img.format == "PNG" and _png_intact(data):
                values = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
                if values is not None and values.dtype == np.uint8 and values.shape == (h, w):
                    return values
            img.load()
            # mode 1: the scorer converts to L (0/255) first, which is the same as the bits
            return np.array(img, dtype=bool) if mode == "1" else np.asarray(img)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError("not a readable image (unknown or corrupt format)", path) from None
    except Image.DecompressionBombError as err:
        raise DataError(too_large(err), path) from None
    except (OSError, ValueError, SyntaxError, IndexError, EOFError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"cannot decode image ({msg})", path) from None


def _png_intact(data: bytes) -> bool:
    """Whether every chunk of a PNG is whole, with a right CRC, up to ``IEND``.

    Checked before OpenCV decodes a file, so that a truncated or damaged one goes to Pillow, which
    names the error, instead of to libpng, which prints its complaint on stderr.
    """
    pos, end, view = 8, len(data), memoryview(data)
    while pos + 12 <= end:
        (length,) = struct.unpack_from(">I", data, pos)
        stop = pos + 12 + length
        if stop > end:
            return False
        (crc,) = struct.unpack_from(">I", data, stop - 4)
        if zlib.crc32(view[pos + 4 : stop - 4]) != crc:
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos = stop
    return False


@dataclass(frozen=True)
class _Mask:
    bits: np.ndarray  # (H, W) bool
    positives: int
    low_values: bool  # not empty, but every value in 1..128: the scorer reads it as empty


def _binarise(values: np.ndarray) -> _Mask:
    if values.dtype == np.bool_:
        return _Mask(values, int(np.count_nonzero(values)), False)
    bits = values > MASK_THRESHOLD
    positives = int(np.count_nonzero(bits))
    return _Mask(bits, positives, positives == 0 and bool(values.any()))


def _read_prediction(path: Path, expected_hw: tuple[int, int] | None) -> _Mask:
    """Read a prediction as the scorer does: mode ``L`` or ``1`` only, binarised at ``> 128``.

    Raises:
        DataError: missing, unreadable, not single-channel, or of another size than ``expected_hw``.
    """
    values = _decode(path, _read_bytes(path), "prediction", expected_hw, strict=True)
    assert values is not None  # strict
    return _binarise(values)


def _read_truth(path: Path) -> np.ndarray:
    """Read a truth mask: mode ``L`` and ``1`` as the scorer does, others as :func:`read_mask` does.

    Returns:
        ``(H, W)`` bool.

    Raises:
        DataError: unreadable, colour, or holding only values in 1..128 (a 0/1 mask).
    """
    values = _decode(path, _read_bytes(path), "ground truth", None, strict=False)
    if values is None:  # a palette, RGB or grey-alpha mask
        return read_mask(path)
    mask = _binarise(values)
    if mask.low_values:
        top = int(values.max())
        raise DataError(
            f"ground-truth mask holds only values in 1..{top}, none above {MASK_THRESHOLD}, so it would "
            "read as empty; save masks as 0/255",
            path,
        )
    return mask.bits


@dataclass
class _PairResult:
    counts: np.ndarray | None  # int64 [tp, fp, fn, tn]
    low_values: Path | None  # the prediction, when it holds only values in 1..128
    problems: list[Problem]


def _score_pair(truth: _Truth, candidates: list[Path], expected: Path, others: list[Path]) -> _PairResult:
    """Counts of one truth mask against its prediction, or the problems that prevent them."""
    problems: list[Problem] = []
    truth_bits: np.ndarray | None = None
    try:
        truth_bits = _read_truth(truth.path)
    except DataError as err:
        problems.append(Problem(truth.path, err.message))
    if not candidates:
        hint = ""
        if others:
            hint = f" ({', '.join(p.name for p in others)} is not a PNG file; predictions must be PNGs)"
        problems.append(Problem(expected, f"missing prediction for {truth.image_id}{hint}"))
        return _PairResult(None, None, problems)
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        problems.append(Problem(candidates[0], f"several predictions for {truth.image_id}: {names}"))
        return _PairResult(None, None, problems)
    try:
        pred = _read_prediction(candidates[0], None if truth_bits is None else truth_bits.shape)
    except DataError as err:
        problems.append(Problem(candidates[0], err.message))
        return _PairResult(None, None, problems)
    if truth_bits is None:
        return _PairResult(None, None, problems)
    truth_positives = int(np.count_nonzero(truth_bits))
    tp = int(np.count_nonzero(truth_bits & pred.bits)) if pred.positives and truth_positives else 0
    fp, fn = pred.positives - tp, truth_positives - tp
    counts = np.array([tp, fp, fn, truth_bits.size - tp - fp - fn], dtype=np.int64)
    return _PairResult(counts, candidates[0] if pred.low_values else None, problems)


# --------------------------------------------------------------------------- scoring


def evaluate_task1_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    workers: int | None = None,
    *,
    ids: Collection[str] | None = None,
    progress: ProgressCallback | None = None,
) -> Task1EvaluationResult:
    """Score a folder of predicted lesion masks with the official ISIC 2018 Task 1 metric.

    Args:
        pred_dir: folder of predictions ``<id>_segmentation.png`` or ``<id>_lesion.png`` (8-bit
            0/255 mode ``L``, or 1-bit, each the size of its truth mask); other files are ignored.
        gt_dir: an ISIC 2018 Task 1 ground-truth folder, a PH2 mask folder, or a PH2 root in the
            flat or the distributed form (see the module docstring).
        workers: threads decoding and counting; None uses the available CPUs (at most 16),
            1 works in the calling thread.
        ids: score only these images (e.g. the validation side of a split); each must have a
            truth mask. None scores every truth mask found.
        progress: called as ``progress(done, total)`` after each image, in the calling thread.

    Returns:
        The scores; on folders the official scorer accepts, ``result.scores`` equals
        ``SegmentationScore.from_dir(gt_dir, pred_dir).to_dict()`` (the per-image scores to the
        last bit; the means may differ from pandas' in the last bits, ~1e-16).

    Raises:
        ValueError: ``workers < 1``, or ``ids`` empty or a string.
        DataError: a folder is missing or unreadable, the ground truth holds no lesion mask, or
            the prediction folder holds no file named like a prediction.
        EvaluationError: (a DataError) every missing, duplicated, mis-sized, non-single-channel
            or unreadable prediction, every unreadable or duplicated truth mask and every id of
            ``ids`` without a truth mask, in one error: ``str(err)`` names the first and says how
            many; ``err.problems`` lists all, each with its file.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1 or None; got {workers}")
    if isinstance(ids, str) or (ids is not None and not ids):
        raise ValueError(f"ids must be a non-empty collection of image ids or None; got {ids!r}")
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    truths, listing_problems, truth_path = _truth_files(gt_dir)
    if ids is not None:
        wanted = set(ids)
        listing_problems = [(i, p) for i, p in listing_problems if i is None or i in wanted]
        absent = wanted - {t.image_id for t in truths} - {i for i, _ in listing_problems}
        for image_id in sorted(absent):
            listing_problems.append(
                (image_id, Problem(truth_path(image_id), f"no ground-truth mask for {image_id}"))
            )
        truths = [t for t in truths if t.image_id in wanted]
    problems = [p for _, p in listing_problems]
    if not truths and not problems:
        raise DataError(f"no ground-truth lesion masks found (expected {_TRUTH_NAME_HINT} files)", gt_dir)
    predictions, other_extensions = _prediction_files(pred_dir)
    if not predictions and not other_extensions:
        raise DataError(f"no prediction masks found (expected {_PREDICTION_NAME_HINT} files)", pred_dir)

    jobs = [
        (
            t,
            predictions.get(t.image_id, []),
            pred_dir / _lesion_name(t.image_id),
            other_extensions.get(t.image_id, []),
        )
        for t in truths
    ]
    results = score_in_parallel(_score_pair, jobs, workers, progress)
    for result in results:
        problems.extend(result.problems)
    if problems:
        raise EvaluationError(problems)
    low = [r.low_values for r in results if r.low_values is not None]
    if low:
        log.warning(
            "%d prediction(s) hold only values in 1..%d, which the official scorer reads as empty; "
            "save masks as 0/255, e.g. %s",
            len(low),
            MASK_THRESHOLD,
            display_path(low[0]),
        )
    counts = np.stack([r.counts for r in results if r.counts is not None]).astype(np.int64)
    return Task1EvaluationResult(
        scores=scores_from_counts(counts),
        image_ids=tuple(t.image_id for t in truths),
        per_image_counts=counts,
        images_with_lesion=int(np.count_nonzero(counts[:, 0] + counts[:, 2])),
    )


# --------------------------------------------------------------------------- writing


def write_json(path: str | Path, result: Task1EvaluationResult) -> None:
    """Write :meth:`Task1EvaluationResult.to_json` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(result.to_json())


def write_csv(path: str | Path, result: Task1EvaluationResult) -> None:
    """Write :meth:`Task1EvaluationResult.to_csv_rows` to ``path`` atomically, floats at full precision.

    Columns: :data:`CSV_COLUMNS`; one row per image in truth-file order, then ``macro_average``.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in result.to_csv_rows():
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


__all__ = [
    "CSV_COLUMNS",
    "PER_IMAGE_COLUMNS",
    "EvaluationError",
    "Task1EvaluationResult",
    "evaluate_task1_folders",
    "write_csv",
    "write_json",
]
