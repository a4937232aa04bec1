"""Validating a dataset (of any label set; ISIC Task 2 by default) in one pass and summarising it.

:func:`check_dataset` opens every image and mask, collects **every** problem
(each naming its file) instead of stopping at the first, and returns a
:class:`DatasetReport` with the statistics a user wants to see before training.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dermseg.data.imageio import check_mask_header, image_size, mask_values, read_image, read_mask
from dermseg.data.layout import IsicLayout, IsicSample, Problem, discover
from dermseg.errors import DataError
from dermseg.labels import DEFAULT, LabelSet

#: Images are decoded at reduced scale when checked: enough to detect truncation.
_CHECK_DECODE_SIDE = 64


@dataclass
class SampleStats:
    """What checking one sample found.

    Attributes:
        isic_id: the sample's id.
        size: ``(width, height)`` of the image, or ``None`` when unreadable.
        presence: ``(C,)`` bool, label present (``False`` where the mask is missing or bad); C is
            the number of labels of the sample's label set (5 for Task 2).
        area: ``(C,)`` float, mask area as a fraction of the image's pixels.
        labelled: ``(C,)`` bool, the mask exists and could be read.
        problems: problems found in this sample's files.
    """

    isic_id: str
    size: tuple[int, int] | None
    presence: np.ndarray
    area: np.ndarray
    labelled: np.ndarray
    problems: list[Problem] = field(default_factory=list)


@dataclass
class DatasetReport:
    """Summary and problems of a dataset.

    Attributes:
        layout: what discovery found.
        samples: per-sample results, by split.
        problems: every problem found, naming problems first.
    """

    layout: IsicLayout
    samples: dict[str, list[SampleStats]]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems

    def summary(self) -> dict:
        """JSON-able summary: counts, presence, areas, sizes, problems.

        ``label_set`` (its name) is there for every set but the default Task 2 one (whose
        summary is as it always was), and ``strata`` (``{"name": "diagnosis", "counts":
        {stratum: images}}``) for data with strata (PH2).
        """
        labels = self.layout.labels
        out: dict = {"root": str(self.layout.root), "layout": self.layout.kind}
        if labels != DEFAULT:
            out["label_set"] = labels.name
        if self.layout.strata is not None:
            counts: dict[str, int] = {}
            for stratum in self.layout.strata.values():
                counts[stratum] = counts.get(stratum, 0) + 1
            out["strata"] = {"name": self.layout.strata_name, "counts": dict(sorted(counts.items()))}
        out["splits"] = {}
        out["problems"] = [{"path": str(p.path), "message": p.message} for p in self.problems]
        for name, stats in self.samples.items():
            out["splits"][name] = split_summary(stats, labels)
        return out


def split_summary(stats: list[SampleStats], labels: LabelSet = DEFAULT) -> dict:
    """Statistics of one split.

    Args:
        stats: the split's samples.
        labels: their label set (C labels).

    Returns:
        ``images``; per label (under ``attributes``, the key it always had): ``labelled``
        (images whose mask exists), ``present`` (images where it is non-empty), ``mean_area`` (mean
        size-normalised area over labelled images) and ``mean_area_when_present``;
        ``images_without_attribute``; ``sizes``: min/median/max width and height
        and the most common sizes.
    """
    n, c = len(stats), labels.num_labels
    presence = np.array([s.presence for s in stats], dtype=bool).reshape(n, c)
    labelled = np.array([s.labelled for s in stats], dtype=bool).reshape(n, c)
    area = np.array([s.area for s in stats], dtype=float).reshape(n, c)
    attributes = {}
    for k, name in enumerate(labels.names):
        lab = labelled[:, k]
        pres = presence[:, k]
        attributes[name] = {
            "labelled": int(lab.sum()),
            "present": int(pres.sum()),
            "mean_area": float(area[lab, k].mean()) if lab.any() else None,
            "mean_area_when_present": float(area[pres, k].mean()) if pres.any() else None,
        }
    fully_labelled = labelled.all(axis=1)
    sizes = [s.size for s in stats if s.size is not None]
    size_info: dict = {}
    if sizes:
        w = np.array([s[0] for s in sizes])
        h = np.array([s[1] for s in sizes])
        size_info = {
            "width": {"min": int(w.min()), "median": float(np.median(w)), "max": int(w.max())},
            "height": {"min": int(h.min()), "median": float(np.median(h)), "max": int(h.max())},
            "most_common": [{"size": f"{a}x{b}", "count": c} for (a, b), c in Counter(sizes).most_common(3)],
        }
    return {
        "images": n,
        "attributes": attributes,
        "images_without_attribute": int((~presence[fully_labelled]).all(axis=1).sum()),
        "fully_labelled_images": int(fully_labelled.sum()),
        "sizes": size_info,
    }


def check_sample(sample: IsicSample, expect_masks: bool) -> SampleStats:
    """Open an image and its masks and record what is wrong with them.

    Args:
        sample: the sample to check (its masks are those of its label set, ``sample.labels``).
        expect_masks: whether missing masks are problems (``False`` for images-only folders).

    Returns:
        The sample's statistics and problems; never raises for a bad file.
    """
    problems: list[Problem] = []
    n = sample.labels.num_labels
    presence = np.zeros(n, dtype=bool)
    labelled = np.zeros(n, dtype=bool)
    area = np.zeros(n, dtype=float)
    size: tuple[int, int] | None = None
    try:
        size = image_size(sample.image_path)
        read_image(sample.image_path, min_side=_CHECK_DECODE_SIDE)  # full decode: catches truncation
    except DataError as err:
        problems.append(Problem(sample.image_path, err.message))
        size = None
    for k, (name, path) in enumerate(zip(sample.labels.names, sample.mask_paths, strict=True)):
        if path is None:
            if expect_masks:
                problems.append(Problem(sample.image_path, f"missing mask {sample.mask_name(name)}"))
            continue
        try:
            mask = read_mask(path, expected_size=size)
            values = mask_values(path)
        except DataError as err:
            problems.append(Problem(path, err.message))
            continue
        extra = sorted(set(values.tolist()) - {0, 255})
        if extra:
            shown = ", ".join(str(v) for v in extra[:5]) + (", ..." if len(extra) > 5 else "")
            problems.append(Problem(path, f"mask is not binary 0/255 (also holds {shown})"))
        labelled[k] = True
        presence[k] = bool(mask.any())
        area[k] = float(mask.mean())
    return SampleStats(sample.isic_id, size, presence, area, labelled, problems)


def check_dataset(
    root: str | Path,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    labels: LabelSet = DEFAULT,
    layout: IsicLayout | None = None,
) -> DatasetReport:
    """Validate every file of a dataset and summarise it.

    Args:
        root: dataset folder (any layout :func:`~dermseg.data.layout.discover` reads).
        workers: threads used to decode files (default: CPU count).
        progress: called with 1 after each sample.
        labels: the label set the folder holds (Task 2's by default).
        layout: ``discover(root, labels)`` when the caller has it already (not listed again).

    Returns:
        The report; ``report.ok`` is ``False`` when any problem was found.

    Raises:
        DataError: ``root`` itself is unusable (missing, not a folder, no images).
    """
    if layout is None:
        layout = discover(root, labels)
    workers = workers or os.cpu_count() or 1
    results: dict[str, list[SampleStats]] = {}
    problems = list(layout.problems)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for name, split in layout.splits.items():
            expect = split.mask_dir is not None

            def run(sample: IsicSample, expect: bool = expect) -> SampleStats:
                stats = check_sample(sample, expect)
                if progress is not None:
                    progress(1)
                return stats

            results[name] = list(pool.map(run, split.samples))
            problems.extend(p for s in results[name] for p in s.problems)
    return DatasetReport(layout=layout, samples=results, problems=problems)


def check_headers(
    samples: Sequence[IsicSample], workers: int | None = None, *, lesion_masks: bool = False
) -> None:
    """Open the header of every image and mask of ``samples`` (nothing is decoded).

    For commands that would otherwise find a bad file only after writing part of their output
    (training writes its run folder first): a few milliseconds per file catch missing, empty,
    unreadable, oversized and non-image files, broken links, and masks of the wrong size or of
    a 16-bit mode. A file truncated after its header is found only when decoded.

    Args:
        samples: the samples to look at.
        workers: threads (default: CPU count).
        lesion_masks: also the lesion masks (for training with lesion-centred crops).

    Raises:
        DataError: naming the first bad file, in sample order.
    """

    def one(sample: IsicSample) -> None:
        size = image_size(sample.image_path)
        lesion = (sample.lesion_mask_path,) if lesion_masks else ()
        for path in (*sample.mask_paths, *lesion):
            if path is not None:
                check_mask_header(path, expected_size=size)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for _ in pool.map(one, samples):  # re-raises the first error, in order
            pass
