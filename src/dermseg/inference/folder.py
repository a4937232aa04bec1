"""Predicting many images: submission masks, probability maps and overlays, one image at a time.

One bad image never aborts the run: it is reported and the others are written;
the caller learns how many failed. A full disk does abort it, naming the file.

An image's files are all or none: every one is written to a temporary name and flushed,
then all are renamed together (:func:`~dermseg.files.atomic_paths`), its masks last; so an
image whose masks are all there is complete, also after a kill (:func:`pending_images`
lists the others, for resuming). The temporary files a killed run leaves
(``.<name>.<random>.tmp.png``, dermseg's pattern only) are removed by the next run of the
same images into the folder, and the outputs in a folder (masks, ``_probability_`` maps,
overlays) are never taken for input images.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from dermseg.data.imageio import Decoded, full_pixels, is_image_file, mask_image
from dermseg.data.layout import list_dir
from dermseg.errors import DataError, DermsegError, OutputError, display_path
from dermseg.files import atomic_paths, remove_temporaries, writing
from dermseg.inference.overlay import overlay, side_by_side, with_legend
from dermseg.inference.pipeline import ReadAhead, WriteBehind
from dermseg.inference.segmenter import Prediction, Segmenter
from dermseg.labels import DEFAULT, LabelSet

logger = logging.getLogger(__name__)

_NOT_INPUTS = ("_segmentation", "_superpixels", "_overlay")
#: Parts of the names of outputs that are never inputs (masks and probability maps of any label).
_OUTPUT_PARTS = ("_attribute_", "_probability_")
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
    ``._*.jpg`` files macOS leaves on shared drives), masks lying beside the images and
    dermseg's own outputs (probability maps, overlays) excepted; one that is not a readable
    file (a sub-folder named ``x.jpg``, a broken link) is kept, so that predicting it fails
    and is reported rather than skipped in silence.

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
                if not any(part in p.stem for part in _OUTPUT_PARTS)
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


def probability_images(stem: str, probs: np.ndarray, labels: LabelSet = DEFAULT) -> dict[str, Image.Image]:
    """``<stem>_probability_<label>.png`` names and their 16-bit images, value = round(p * 65535).

    Args:
        stem: the image id.
        probs: ``(C, H, W)`` probabilities, one per label of ``labels``.
        labels: the label set (Task 2's five attributes by default).
    """
    return {
        name: Image.fromarray(np.round(np.clip(probs[k], 0, 1) * 65535).astype(np.uint16))
        for k, name in enumerate(probability_names(stem, labels))
    }


def mask_names(stem: str, labels: LabelSet) -> list[str]:
    """The mask files of image ``stem``, one per label of ``labels``, in channel order."""
    return [labels.mask_name(stem, name) for name in labels.names]


def output_names(stem: str, labels: LabelSet) -> set[str]:
    """Every file :func:`predict_images` may write for image ``stem``: masks, probability maps, overlay."""
    probabilities = probability_names(stem, labels)
    return {*mask_names(stem, labels), *probabilities, f"{stem}_overlay.png"}


def probability_names(stem: str, labels: LabelSet) -> list[str]:
    """The 16-bit probability maps of image ``stem``, one per label of ``labels``."""
    return [f"{stem}_probability_{name}.png" for name in labels.names]


def owns(stems: Iterable[str], labels: LabelSet) -> Callable[[str], bool]:
    """Whether a file name is an output of one of the images ``stems`` (:func:`output_names`)."""
    known = set(stems)

    def owned(name: str) -> bool:
        # the stem is a prefix ending before an "_" or a "."; stems may hold "_" themselves
        cuts = [k for k, ch in enumerate(name) if ch in "_."]
        return any(name[:k] in known and name in output_names(name[:k], labels) for k in cuts)

    return owned


def pending_images(
    images: Iterable[Path], out_dir: str | Path, labels: LabelSet, since_ns: int = 0
) -> list[Path]:
    """The images of ``images`` whose outputs in ``out_dir`` are not complete, in the order given.

    An image is complete when every one of its masks is a file there, modified at or after
    ``since_ns``: :func:`predict_images` renames an image's masks after its other files,
    so a complete mask set means all its files are there (also after a kill). ``since_ns``,
    the time the folder's manifest was written, makes the masks of an earlier run with other
    settings count as missing.

    Args:
        images: image files.
        out_dir: the output folder.
        labels: the model's label set (it names the masks).
        since_ns: oldest modification time (``st_mtime_ns``) a mask of this run may have.
    """
    out = Path(out_dir)

    def complete(path: Path) -> bool:
        for name in mask_names(path.stem, labels):
            try:
                st = os.stat(out / name)
            except OSError:
                return False
            if not stat.S_ISREG(st.st_mode) or st.st_mtime_ns < since_ns:
                return False
        return True

    return [p for p in images if not complete(p)]


def write_together(out_dir: Path, files: dict[str, Image.Image], compress_level: int | None = None) -> None:
    """Write PNG ``files`` (name -> image) into ``out_dir``: all or none, renamed in the order given.

    Args:
        out_dir: the folder.
        files: file name -> image.
        compress_level: zlib level 0-9 of the PNGs (Pillow's default, 6, when ``None``); any
            level gives the same pixels, 1 is much faster on masks and only a little larger.

    Raises:
        OutputError: one cannot be written (a full disk), named.
    """
    options = {} if compress_level is None else {"compress_level": compress_level}
    paths = [out_dir / name for name in files]
    with atomic_paths(paths) as temps:
        for path, tmp, image in zip(paths, temps, files.values(), strict=True):
            with writing(path):
                image.save(tmp, format="PNG", **options)


def image_files(
    segmenter: Segmenter, path: Path, image: Decoded, pred: Prediction, overlays: bool, probabilities: bool
) -> dict[str, Image.Image]:
    """The files :func:`predict_images` writes for one image, its masks last (name -> image).

    The overlay is drawn on the full-scale image (decoded again when the network's copy was
    reduced, :meth:`~dermseg.inference.segmenter.Segmenter.read`).
    """
    labels = segmenter.labels
    files = probability_images(path.stem, pred.probabilities, labels) if probabilities else {}
    if overlays:
        image = full_pixels(image, path)
        present = pred.masks.any(axis=(1, 2))
        drawn = overlay(image, pred.masks, labels=labels)
        panel = with_legend(side_by_side(image, drawn), present, labels)
        files[f"{path.stem}_overlay.png"] = Image.fromarray(panel)
    # the masks last: an image whose masks are all there has all its files
    names = mask_names(path.stem, labels)
    return files | {name: mask_image(m) for name, m in zip(names, pred.masks, strict=True)}


def predict_images(
    segmenter: Segmenter,
    images: list[Path],
    out_dir: str | Path,
    *,
    overlays: bool = False,
    probabilities: bool = False,
    progress: Callable[[int], None] | None = None,
    compress_level: int | None = None,
    pipeline: bool = False,
) -> FolderReport:
    """Segment ``images`` and write their submission masks (and optional extras) to ``out_dir``.

    Masks and probability maps are named as the segmenter's label set names them (Task 2:
    ``<id>_attribute_<name>.png``; ``ph2``: ``<id>_lesion.png``; ``isic2018_task1``:
    ``<id>_segmentation.png``), at each image's own size; an image's files are all or none.
    Temporary files a killed run left in ``out_dir`` for these images are removed first
    (those of other images are left: a shard sharing the folder may be writing them).

    Args:
        segmenter: the model.
        images: image files.
        out_dir: output folder (created).
        overlays: also write ``<stem>_overlay.png`` (image | prediction, with a legend).
        probabilities: also write 16-bit probability maps.
        progress: called with 1 after each image.
        compress_level: zlib level of the PNGs (:func:`write_together`; same pixels at any level).
        pipeline: decode the next images and write the last ones in background threads while the
            network runs (:mod:`dermseg.inference.pipeline`); the same files, report and progress.

    Returns:
        Which images were written and which failed (with the reason).

    Raises:
        OutputError: an output file cannot be written (a full disk), named; the run stops.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # only those of these images: a shard sharing the folder may be writing its own right now
    for left in remove_temporaries(out, owns((p.stem for p in images), segmenter.labels)):
        logger.info("removed %s, left by an interrupted run", display_path(left))
    options = (overlays, probabilities)
    if pipeline:
        return _predict_overlapped(segmenter, images, out, options, compress_level, progress)
    report = FolderReport()
    for path in images:
        try:
            image = segmenter.read(path)
            pred = segmenter.predict(image)
            write_together(out, image_files(segmenter, path, image, pred, *options), compress_level)
            report.written.append(path)
        except OutputError:
            raise  # a full disk: every next image would fail the same way
        except DermsegError as err:
            _failed(report, path, err)
        if progress is not None:
            progress(1)
    return report


def _failed(report: FolderReport, path: Path, err: DermsegError) -> None:
    report.failed.append((path, err.message if err.path == path else str(err)))
    logger.warning("skipped %s: %s", display_path(path), err.message)


def _predict_overlapped(
    segmenter: Segmenter,
    images: list[Path],
    out: Path,
    options: tuple[bool, bool],
    compress_level: int | None,
    progress: Callable[[int], None] | None,
) -> FolderReport:
    """:func:`predict_images`' loop with the next images decoded and the last ones written meanwhile.

    Every image's outcome (written, or its error) passes through the writer in order, so the
    report, the progress calls and the files are those of the one-at-a-time loop.
    """

    def write(path: Path, image: Decoded, pred: Prediction) -> DermsegError | None:
        try:
            write_together(out, image_files(segmenter, path, image, pred, *options), compress_level)
        except OutputError:
            raise
        except DermsegError as err:
            return err
        return None

    def settle(done: list[tuple[Path, DermsegError | None]]) -> None:
        for path, err in done:
            if err is None:
                report.written.append(path)
            else:
                _failed(report, path, err)
            if progress is not None:
                progress(1)

    report = FolderReport()
    with WriteBehind[Path](depth=2) as writer:
        for path, decoded in ReadAhead(segmenter.read, images, depth=2):
            try:
                image = decoded.result()
                pred = segmenter.predict(image)
            except DermsegError as err:
                settle(writer.submit(path, lambda e=err: e))
                continue
            settle(writer.submit(path, write, path, image, pred))
        settle(writer.settle())
    return report
