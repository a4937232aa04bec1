"""Scoring a folder of predicted masks against a ground-truth folder, as the official scorer does.

:func:`evaluate_folders` gives the numbers of ``isic_challenge_scoring.task2.score`` (version
5.6.0) bit for bit, several times faster: masks are decoded with Pillow and counted with numpy in
a thread pool (both release the GIL); the prediction folder is listed once instead of once per
truth file; and since most masks are empty and the empty masks of one size written by one
program are the same bytes, a file content already seen to decode to an empty mask is not
decoded again (decoding is most of the time). The scorer's rules, which we follow:

* it iterates the **truth** files (sorted by name); a prediction without a truth file is
  ignored, and an attribute without truth files in the folder is not scored (no key);
* each truth file ``ISIC_<id>_attribute_<name>.png`` needs one prediction of the same id and
  attribute, of the same width and height;
* both masks must be single-channel 8-bit (mode ``L``) or 1-bit (mode ``1``) images; they are
  binarised at ``value > 128`` (so 128 is negative and 129 positive);
* counts are normalised by each image's pixel count and summed image by image in truth-file
  order (the order we sum in too, so that even the last bits agree); Jaccard and Dice of
  ``TP + FP + FN == 0`` are 1.0.

Where we differ, on purpose:

* every problem (missing, mis-sized, unreadable or colour prediction, unreadable truth) is
  collected in one pass and reported together as one :class:`EvaluationError` (a
  :class:`~dermseg.errors.DataError` whose ``problems`` list names every file), where the
  scorer stops at the first;
* the ground-truth folder may also be a flat folder of images and masks: images
  (``ISIC_<id>.jpg``), lesion masks (``_segmentation.png``), superpixels, ``LICENSE.txt``,
  ``ATTRIBUTION.txt``, hidden and other text files and sub-folders are skipped, and other
  unknown files are skipped with a warning (the scorer fails on any of them);
* a prediction is found by its exact name ``ISIC_<id>_attribute_<name>.png`` (extension in any
  case); the scorer accepts any file whose name *contains* the 7 digits and the attribute name
  and fails when several do. Other files in the prediction folder are ignored.

Extras, next to the official keys: the mean of the per-attribute Jaccards, the per-image mean
Jaccard (**not** the official metric; see :func:`dermseg.evaluation.metrics.per_image_mean_jaccard`), the
image count and, per attribute, the number of images whose truth mask is not empty.
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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from dermseg.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from dermseg.data.imageio import BROKEN_LINK, MASK_THRESHOLD, too_large
from dermseg.data.layout import Problem, list_dir
from dermseg.errors import DataError, display_path
from dermseg.evaluation.metrics import dice_from_counts, jaccard_from_counts
from dermseg.files import atomic_path

log = logging.getLogger(__name__)

_MASK_NAME = re.compile(r"^(ISIC_\d{7})_attribute_([A-Za-z_]+)\.(?i:png)$")
#: Files a ground-truth or flat dataset folder holds besides attribute masks.
_SKIPPED_NAME = re.compile(
    r"^(ISIC_\d{7}\.(?i:jpe?g|png)|ISIC_\d{7}_(segmentation|superpixels)\.(?i:png)|LICENSE|ATTRIBUTION)$"
)
_SKIPPED_SUFFIXES = {".txt", ".md", ".csv", ".json", ".yaml", ".yml", ".pdf", ".html"}
_MASK_NAME_HINT = "ISIC_<7 digits>_attribute_<name>.png"
#: Columns of :meth:`EvaluationResult.to_csv_rows`.
CSV_COLUMNS: tuple[str, ...] = (
    "attribute",
    "jaccard",
    "dice",
    "images_with_attribute",
    "per_image_mean_jaccard",
)

ProgressCallback = Callable[[int, int], None]


class EvaluationError(DataError):
    """Every problem found while scoring a prediction folder, reported at once.

    ``str(err)`` names the first problem's file and says how many there are; ``problems`` lists
    all of them, each naming its file (the prediction file for a missing prediction).

    Args:
        problems: at least one problem, in truth-file order.
    """

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("EvaluationError needs at least one problem")
        self.problems = list(problems)
        first, n = problems[0], len(problems)
        super().__init__(first.message if n == 1 else f"{first.message} (first of {n} problems)", first.path)


@dataclass
class EvaluationResult:
    """The official ISIC 2018 Task 2 scores of a prediction folder, plus extras.

    Attributes:
        scores: exactly the keys and values of ``isic_challenge_scoring.task2.score``:
            ``{attribute: {"jaccard", "dice"}}`` for each attribute with truth files,
            ``"micro_average": {"jaccard", "dice"}`` and ``"overall"`` (the leaderboard number,
            the micro-average Jaccard).
        mean_attribute_jaccard: mean of the per-attribute Jaccards (of the scored attributes).
        per_image_mean_jaccard: NOT official: per scored attribute, the mean over images of each
            image's Jaccard (a pair empty in truth and prediction scores 1.0), and ``"mean"``,
            the mean of those.
        images: number of distinct ISIC ids in the ground truth.
        images_with_attribute: per scored attribute, the images whose truth mask is not empty.
        image_ids: the ids, sorted.
        per_image_counts: ``(images, 5, 4)`` float64 ``[tp, fp, fn, tn]`` of each image and
            attribute (ATTRIBUTES order) divided by the pixel count; NaN where the ground truth
            has no file for that attribute.
    """

    scores: dict[str, Any]
    mean_attribute_jaccard: float
    per_image_mean_jaccard: dict[str, float]
    images: int
    images_with_attribute: dict[str, int]
    image_ids: tuple[str, ...]
    per_image_counts: np.ndarray

    @property
    def overall(self) -> float:
        """The official leaderboard number (micro-average Jaccard)."""
        return float(self.scores["overall"])

    @property
    def attributes(self) -> tuple[str, ...]:
        """The scored attributes (those with truth files), in ATTRIBUTES order."""
        return tuple(a for a in ATTRIBUTES if a in self.scores)

    def to_dict(self) -> dict[str, Any]:
        """The official keys plus ``mean_attribute_jaccard``, ``per_image_mean_jaccard``,
        ``images`` and ``images_with_attribute``; JSON-serialisable (per-image counts left out)."""
        return {
            **copy.deepcopy(self.scores),
            "mean_attribute_jaccard": self.mean_attribute_jaccard,
            "per_image_mean_jaccard": dict(self.per_image_mean_jaccard),
            "images": self.images,
            "images_with_attribute": dict(self.images_with_attribute),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON (floats at full precision)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_csv_rows(self) -> list[dict[str, Any]]:
        """One row per scored attribute, then ``micro_average``; keys are :data:`CSV_COLUMNS`.

        The micro-average row has no ``images_with_attribute`` (empty string) and carries the
        mean of the per-image mean Jaccards.
        """
        rows = [
            {
                "attribute": name,
                "jaccard": self.scores[name]["jaccard"],
                "dice": self.scores[name]["dice"],
                "images_with_attribute": self.images_with_attribute[name],
                "per_image_mean_jaccard": self.per_image_mean_jaccard[name],
            }
            for name in self.attributes
        ]
        rows.append(
            {
                "attribute": "micro_average",
                "jaccard": self.scores["micro_average"]["jaccard"],
                "dice": self.scores["micro_average"]["dice"],
                "images_with_attribute": "",
                "per_image_mean_jaccard": self.per_image_mean_jaccard["mean"],
            }
        )
        return rows


# --------------------------------------------------------------------------- reading


R = TypeVar("R")


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _truth_files(gt_dir: Path) -> tuple[list[tuple[str, str, Path]], list[Problem]]:
    """``(id, attribute, path)`` of every truth mask, sorted by file name, and naming problems."""
    truths: list[tuple[str, str, Path]] = []
    problems: list[Problem] = []
    skipped: list[str] = []
    for entry in list_dir(gt_dir, "ground-truth"):
        name, path = entry.name, Path(entry.path)
        if name.startswith("."):
            continue
        if _is_dir(entry):
            if _MASK_NAME.match(name):  # a truth mask that cannot be read: not silently unscored
                problems.append(Problem(path, "is a folder, expected a mask file"))
            continue
        if m := _MASK_NAME.match(name):
            if m.group(2) in ATTRIBUTES:
                truths.append((m.group(1), m.group(2), path))
            else:
                problems.append(
                    Problem(path, f"unknown attribute {m.group(2)!r} (expected {', '.join(ATTRIBUTES)})")
                )
        elif not (_SKIPPED_NAME.match(name) or Path(name).suffix.lower() in _SKIPPED_SUFFIXES):
            skipped.append(name)
    if skipped:
        log.warning(
            "%s: skipped %d file(s) that are not %s, e.g. %s",
            display_path(gt_dir),
            len(skipped),
            _MASK_NAME_HINT,
            display_path(skipped[0]),
        )
    return truths, problems


def _prediction_files(pred_dir: Path) -> dict[tuple[str, str], list[Path]]:
    """``(id, attribute) -> paths`` of every file named like a mask in the prediction folder."""
    found: dict[tuple[str, str], list[Path]] = {}
    for entry in list_dir(pred_dir, "prediction"):
        if m := _MASK_NAME.match(entry.name):
            found.setdefault((m.group(1), m.group(2)), []).append(Path(entry.path))
    return found


@dataclass(frozen=True)
class _Mask:
    """A decoded mask: ``bits`` is None when no pixel is positive (then nothing needs counting)."""

    shape: tuple[int, int]  # (H, W)
    bits: np.ndarray | None
    positives: int


#: File contents already decoded to an all-negative mask -> its (H, W). Most masks are empty and
#: the empty masks of one size written by one program are the same bytes, so each is decoded once.
EmptyMasks = dict[bytes, tuple[int, int]]


def _read_mask(path: Path, what: str, empty: EmptyMasks, expected_hw: tuple[int, int] | None = None) -> _Mask:
    """Read a mask as the scorer does: mode ``L`` or ``1`` only, binarised at ``> 128``.

    Args:
        path: mask file.
        what: ``prediction`` or ``ground truth``, for messages.
        empty: cache of contents known to decode to an empty mask; updated.
        expected_hw: ``(height, width)`` the mask must have, checked before decoding.

    Returns:
        The mask.

    Raises:
        DataError: missing, unreadable, not single-channel, or of the wrong size.
    """
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
    known_empty = empty.get(data)
    if known_empty is not None:
        _check_size(path, what, known_empty, expected_hw)
        return _Mask(known_empty, None, 0)
    try:
        with Image.open(io.BytesIO(data)) as img:
            mode, (w, h) = img.mode, img.size
            if mode not in ("L", "1"):
                raise DataError(
                    f"{what} is mode {mode}; the official scorer accepts only single-channel 8-bit (L) "
                    "or 1-bit images",
                    path,
                )
            _check_size(path, what, (h, w), expected_hw)
            img.load()
            # mode 1: the scorer converts to L (0/255) first, which is the same as the bits
            bits = np.array(img, dtype=bool) if mode == "1" else np.asarray(img) > MASK_THRESHOLD
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError("not a readable image (unknown or corrupt format)", path) from None
    except Image.DecompressionBombError as err:
        raise DataError(too_large(err), path) from None
    except (OSError, ValueError, SyntaxError, IndexError, EOFError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"cannot decode image ({msg})", path) from None
    positives = int(np.count_nonzero(bits))
    if positives == 0:
        empty[data] = (h, w)
        return _Mask((h, w), None, 0)
    return _Mask((h, w), bits, positives)


def _check_size(path: Path, what: str, hw: tuple[int, int], expected_hw: tuple[int, int] | None) -> None:
    if expected_hw is not None and hw != expected_hw:
        (h, w), (eh, ew) = hw, expected_hw
        raise DataError(f"{what} is {w}x{h} but ground truth is {ew}x{eh}", path)


@dataclass
class _PairResult:
    counts: np.ndarray | None  # integer [tp, fp, fn, tn]
    truth_positive: bool
    problems: list[Problem]


def _score_pair(
    truth_path: Path, candidates: list[Path], expected_path: Path, label: str, empty: EmptyMasks
) -> _PairResult:
    """Counts of one truth mask against its prediction, or the problems that prevent them."""
    problems: list[Problem] = []
    truth: _Mask | None = None
    try:
        truth = _read_mask(truth_path, "ground truth", empty)
    except DataError as err:
        problems.append(Problem(truth_path, err.message))
    if not candidates:
        problems.append(Problem(expected_path, f"missing prediction for {label}"))
        return _PairResult(None, False, problems)
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        problems.append(Problem(candidates[0], f"several predictions for {label}: {names}"))
        return _PairResult(None, False, problems)
    try:
        pred = _read_mask(candidates[0], "prediction", empty, None if truth is None else truth.shape)
    except DataError as err:
        problems.append(Problem(candidates[0], err.message))
        return _PairResult(None, False, problems)
    if truth is None:
        return _PairResult(None, False, problems)
    tp = 0 if truth.bits is None or pred.bits is None else int(np.count_nonzero(truth.bits & pred.bits))
    fp, fn = pred.positives - tp, truth.positives - tp
    pixels = truth.shape[0] * truth.shape[1]
    counts = np.array([tp, fp, fn, pixels - tp - fp - fn], dtype=np.int64)
    return _PairResult(counts, truth.positives > 0, problems)


def default_workers() -> int:
    """Threads :func:`evaluate_folders` uses by default: the CPUs this process may use, at most 16."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(16, cpus))


# --------------------------------------------------------------------------- scoring


def score_in_parallel(
    score: Callable[..., R],
    jobs: Sequence[tuple[Any, ...]],
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[R]:
    """``[score(*job) for job in jobs]``, in order, on ``workers`` threads (default
    :func:`default_workers`; decoding PNGs releases the GIL), calling ``progress(done, total)``
    after each."""
    n_workers = workers or default_workers()
    results: list[R] = []

    def done(result: R) -> None:
        results.append(result)
        if progress is not None:
            progress(len(results), len(jobs))

    if n_workers == 1:
        for job in jobs:
            done(score(*job))
    else:
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="dermseg-eval") as pool:
            for result in pool.map(lambda job: score(*job), jobs):
                done(result)
    return results


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> EvaluationResult:
    """Score a folder of predicted masks with the official ISIC 2018 Task 2 metric.

    Args:
        pred_dir: folder of predictions ``ISIC_<id>_attribute_<name>.png`` (0/255, mode ``L`` or
            ``1``, each the size of its truth mask); other files are ignored.
        gt_dir: the official Task 2 ground-truth folder, or a flat folder of images and masks.
        workers: threads decoding and counting; None uses the available CPUs (at most 16),
            1 works in the calling thread.
        progress: called as ``progress(done, total)`` after each truth mask, in the calling
            thread.

    Returns:
        The scores; ``result.scores`` equals ``isic_challenge_scoring.task2.score(gt_dir,
        pred_dir)``.

    Raises:
        ValueError: ``workers < 1``.
        DataError: a folder is missing or unreadable, the ground truth holds no attribute mask,
            or the prediction folder holds no file named like one.
        EvaluationError: (a DataError) every missing, duplicated, mis-sized, non-single-channel
            or unreadable prediction and every unreadable truth mask or unknown attribute, in
            one error: ``str(err)`` names the first and says how many; ``err.problems`` lists
            all, each with its file.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1 or None; got {workers}")
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    truths, problems = _truth_files(gt_dir)
    if not truths and not problems:
        raise DataError(f"no ground-truth masks found (expected {_MASK_NAME_HINT} files)", gt_dir)
    predictions = _prediction_files(pred_dir)
    if not predictions:
        raise DataError(f"no prediction masks found (expected {_MASK_NAME_HINT} files)", pred_dir)

    empty: EmptyMasks = {}
    jobs = [
        (path, predictions.get((isic_id, name), []), pred_dir / path.name, f"{isic_id} {name}", empty)
        for isic_id, name, path in truths
    ]
    results = score_in_parallel(_score_pair, jobs, workers, progress)
    for result in results:
        problems.extend(result.problems)
    if problems:
        raise EvaluationError(problems)
    return _summarise(truths, [r.counts for r in results], [r.truth_positive for r in results])


def _summarise(
    truths: list[tuple[str, str, Path]], counts: list[np.ndarray | None], positive: list[bool]
) -> EvaluationResult:
    """Sum the normalised counts in truth-file order and build the result."""
    image_ids = tuple(sorted({isic_id for isic_id, _, _ in truths}))
    row_of = {isic_id: i for i, isic_id in enumerate(image_ids)}
    per_image = np.full((len(image_ids), NUM_ATTRIBUTES, 4), np.nan)
    sums: dict[str, np.ndarray] = {}
    micro = np.zeros(4)
    with_attribute: dict[str, int] = {}
    for (isic_id, name, _), raw, pos in zip(truths, counts, positive, strict=True):
        assert raw is not None  # every pair scored when there is no problem
        # one correctly rounded int / int division per count, then a running sum image by image
        # in truth-file order: the scorer's arithmetic, so the results agree to the last bit
        norm = raw / np.int64(raw.sum())
        per_image[row_of[isic_id], ATTRIBUTES.index(name)] = norm
        sums[name] = sums.get(name, np.zeros(4)) + norm
        micro = micro + norm
        with_attribute[name] = with_attribute.get(name, 0) + int(pos)

    scored = [a for a in ATTRIBUTES if a in sums]
    scores: dict[str, Any] = {
        a: {"jaccard": float(jaccard_from_counts(sums[a])), "dice": float(dice_from_counts(sums[a]))}
        for a in scored
    }
    scores["micro_average"] = {
        "jaccard": float(jaccard_from_counts(micro)),
        "dice": float(dice_from_counts(micro)),
    }
    scores["overall"] = scores["micro_average"]["jaccard"]

    per_image_jaccard: dict[str, float] = {}
    for a in scored:
        rows = per_image[:, ATTRIBUTES.index(a)]
        rows = rows[~np.isnan(rows[:, 0])]
        per_image_jaccard[a] = float(np.mean(jaccard_from_counts(rows)))  # empty pairs score 1.0
    per_image_jaccard["mean"] = float(np.mean([per_image_jaccard[a] for a in scored]))
    return EvaluationResult(
        scores=scores,
        mean_attribute_jaccard=float(np.mean([scores[a]["jaccard"] for a in scored])),
        per_image_mean_jaccard=per_image_jaccard,
        images=len(image_ids),
        images_with_attribute={a: with_attribute[a] for a in scored},
        image_ids=image_ids,
        per_image_counts=per_image,
    )


# --------------------------------------------------------------------------- writing


def write_json(path: str | Path, result: EvaluationResult) -> None:
    """Write :meth:`EvaluationResult.to_json` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(result.to_json())


def write_csv(path: str | Path, result: EvaluationResult) -> None:
    """Write :meth:`EvaluationResult.to_csv_rows` to ``path`` atomically, floats at full precision.

    Columns: :data:`CSV_COLUMNS`; one row per scored attribute, then ``micro_average``.
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
    "EvaluationError",
    "EvaluationResult",
    "default_workers",
    "evaluate_folders",
    "write_csv",
    "write_json",
]
