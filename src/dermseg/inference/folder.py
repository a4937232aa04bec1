"""Predicting many images: submission masks, probability maps and overlays, one file at a time.

One bad image never aborts the run: it is reported and the others are written;
the caller learns how many failed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from dermseg.data.imageio import is_image_file, read_image
from dermseg.data.layout import list_dir
from dermseg.errors import DataError, DermsegError, display_path
from dermseg.files import atomic_path
from dermseg.inference.overlay import overlay, side_by_side, with_legend
from dermseg.inference.segmenter import Segmenter, write_submission_masks
from dermseg.labels import DEFAULT, LabelSet

logger = logging.getLogger(__name__)

_NOT_INPUTS = ("_segmentation", "_superpixels", "_overlay")
_PH2_MASK = re.compile(r"^IMD\d+_lesion$")


@dataclass
class FolderReport:
    """What :func:`predict_images` did.

    Attributes:
        written: image paths whose outputs were written.
        failed: ``(image path, message)`` for every image that could not be processed.
    """

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _resolved(path: Path) -> Path:
    """``path`` resolved, or only made absolute when it cannot be (a broken link or a link loop)."""
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):
        return path.absolute()


def collect_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named directly or found (non-recursively) in folders, sorted, without duplicates.

    In a folder, every entry named like an image is an input, hidden files (``.``, e.g. the
    ``._*.jpg`` files macOS leaves on shared drives) and masks lying beside the images
    excepted; one that is not a readable file (a sub-folder named ``x.jpg``, a broken link)
    is kept, so that predicting it fails and is reported rather than skipped in silence.

    Raises:
        DataError: an input does not exist, or a folder holds no image.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = [
                Path(entry.path)
                for entry in list_dir(path, "image")
                if is_image_file(Path(entry.name)) and not entry.name.startswith(".")
            ]
            # masks lying beside the images (a flat dataset folder: Task 2, Task 1, PH2) are not inputs
            images = [
                p
                for p in images
                if "_attribute_" not in p.stem
                and not p.stem.endswith(_NOT_INPUTS)
                and not _PH2_MASK.match(p.stem)
            ]
            if not images:
                raise DataError("no images found in folder", path)
            found.extend(images)
        elif path.exists() or path.is_symlink():
            found.append(path)
        else:
            raise DataError("file not found", path)
    # One entry per file; a link keeps its own name (the masks are named after it, not after
    # whatever blob it points to).
    by_target: dict[Path, Path] = {}
    for p in found:
        by_target.setdefault(_resolved(p), p.absolute())
    unique = list(by_target.values())
    stems = [p.stem for p in unique]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise DataError(f"two inputs share the name {dup!r}; their masks would overwrite each other")
    return unique


def write_probabilities(out_dir: Path, stem: str, probs: np.ndarray, labels: LabelSet = DEFAULT) -> None:
    """``<stem>_probability_<label>.png``: 16-bit PNGs, value = round(p * 65535); all or none.

    Args:
        out_dir: the folder.
        stem: the image id.
        probs: ``(C, H, W)`` probabilities, one per label of ``labels``.
        labels: the label set (Task 2's five attributes by default).
    """
    written: list[Path] = []
    try:
        for k, name in enumerate(labels.names):
            arr = np.round(np.clip(probs[k], 0, 1) * 65535).astype(np.uint16)
            path = out_dir / f"{stem}_probability_{name}.png"
            with atomic_path(path) as tmp:
                Image.fromarray(arr).save(tmp, format="PNG")
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def predict_images(
    segmenter: Segmenter,
    images: list[Path],
    out_dir: str | Path,
    *,
    overlays: bool = False,
    probabilities: bool = False,
    progress: Callable[[int], None] | None = None,
) -> FolderReport:
    """Segment ``images`` and write their submission masks (and optional extras) to ``out_dir``.

    Masks and probability maps are named as the segmenter's label set names them (Task 2:
    ``<id>_attribute_<name>.png``; ``ph2``: ``<id>_lesion.png``; ``isic2018_task1``:
    ``<id>_segmentation.png``), at each image's own size.

    Args:
        segmenter: the model.
        images: image files.
        out_dir: output folder (created).
        overlays: also write ``<stem>_overlay.png`` (image | prediction, with a legend).
        probabilities: also write 16-bit probability maps.
        progress: called with 1 after each image.

    Returns:
        Which images were written and which failed (with the reason).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = FolderReport()
    for path in images:
        try:
            image = read_image(path)
            pred = segmenter(image)
            labels = segmenter.labels
            write_submission_masks(out, path.stem, pred.masks, labels)
            if probabilities:
                write_probabilities(out, path.stem, pred.probabilities, labels)
            if overlays:
                present = pred.masks.any(axis=(1, 2))
                drawn = overlay(image, pred.masks, labels=labels)
                panel = with_legend(side_by_side(image, drawn), present, labels)
                with atomic_path(out / f"{path.stem}_overlay.png") as tmp:
                    Image.fromarray(panel).save(tmp, format="PNG")
            report.written.append(path)
        except DermsegError as err:
            report.failed.append((path, err.message if err.path == path else str(err)))
            logger.warning("skipped %s: %s", display_path(path), err.message)
        if progress is not None:
            progress(1)
    return report
