"""Deterministic train/validation splits stratified on multi-label attribute presence or on one label.

The five attributes overlap and some are rare (streaks on ~4 % of ISIC 2018
training images), so a plain random split can leave the validation set with
almost no streaks. :func:`stratified_split` uses iterative stratification
(Sechidis, Tsoumakas and Vlahavas, ECML-PKDD 2011): the rarest label is placed
first, each of its images going to the side that still needs that label most.

Lesion data carry one categorical label per image instead (PH2's diagnosis: common nevus,
atypical nevus or melanoma): :func:`stratified_split_by_label` and
:func:`stratified_folds_by_label` give each class its proportional share of every side or fold.
A layout with one stratum per image (:attr:`IsicLayout.strata`) is split with them.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermseg.attributes import ATTRIBUTES
from dermseg.errors import ConfigError, DataError
from dermseg.labels import DEFAULT, LabelSet, load_label_set


@dataclass(frozen=True)
class Split:
    """Ids of the two sides of a split, each sorted.

    Attributes:
        train: ids used for training.
        val: ids held out for model and threshold selection.
        source: ``stratified`` (held out from training data) or ``official`` (the challenge's folders).
    """

    train: list[str]
    val: list[str]
    source: str = "stratified"

    def to_dict(self) -> dict:
        return {"source": self.source, "train": self.train, "val": self.val}


def stratified_split(
    ids: Sequence[str],
    presence: np.ndarray,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """Split ``ids`` so that each attribute's frequency is about the same on both sides.

    Args:
        ids: sample ids, length N (their order does not change the result).
        presence: ``(N, L)`` bool, label presence per sample (L = 5 for ISIC).
        val_fraction: share of the samples held out, in ``(0, 1)``.
        seed: the same seed and inputs always give the same split.

    Returns:
        The split; ``len(val) == round(N * val_fraction)``.

    Raises:
        ConfigError: ``val_fraction`` outside ``(0, 1)``, or ids and presence disagree.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    presence = np.asarray(presence, dtype=bool)
    if presence.ndim != 2 or presence.shape[0] != len(ids):
        raise ConfigError(f"presence must be (N, L) with N = {len(ids)} ids, got shape {presence.shape}")
    if len(set(ids)) != len(ids):
        raise ConfigError("ids must be unique")
    order = np.argsort(np.asarray(ids, dtype=object))  # independent of the caller's order
    ids_sorted = [ids[i] for i in order]
    labels = presence[order]
    n = len(ids_sorted)
    rng = np.random.default_rng(seed)
    shuffle = rng.permutation(n)
    ids_sorted = [ids_sorted[i] for i in shuffle]
    labels = labels[shuffle]

    n_val = int(round(n * val_fraction))
    # desired[side] = samples still wanted; side 0 = train, 1 = val
    desired = np.array([n - n_val, n_val], dtype=float)
    desired_label = np.outer(np.array([1.0 - val_fraction, val_fraction]), labels.sum(axis=0))
    side = np.full(n, -1, dtype=int)
    remaining = labels.copy()
    unassigned = np.ones(n, dtype=bool)

    while unassigned.any():
        counts = remaining[unassigned].sum(axis=0)
        if counts.sum() == 0:
            break
        counts = np.where(counts > 0, counts, np.iinfo(np.int64).max)
        label = int(np.argmin(counts))  # rarest label still to place
        for i in np.flatnonzero(unassigned & remaining[:, label]):
            need = desired_label[:, label]
            cands = np.flatnonzero(need == need.max())
            if len(cands) > 1:
                cands = cands[desired[cands] == desired[cands].max()]
            chosen = int(cands[0]) if len(cands) == 1 else int(rng.choice(cands))
            if desired[chosen] <= 0:  # the side is full: the other takes it
                chosen = 1 - chosen
            side[i] = chosen
            unassigned[i] = False
            desired[chosen] -= 1
            desired_label[chosen] -= labels[i]
    # Samples without any label fill what each side still needs.
    # Drawing each side with probability proportional to its remaining need gives
    # exact sizes, since the needs always add up to the samples left.
    for i in np.flatnonzero(unassigned):
        chosen = 1 if rng.random() * desired.sum() < desired[1] else 0
        side[i] = chosen
        desired[chosen] -= 1
    train = sorted(ids_sorted[i] for i in np.flatnonzero(side == 0))
    val = sorted(ids_sorted[i] for i in np.flatnonzero(side == 1))
    return Split(train=train, val=val)


def stratified_folds(ids: Sequence[str], presence: np.ndarray, folds: int, seed: int = 0) -> list[list[str]]:
    """A stratified k-fold partition: fold ``i`` takes ``1 / (k - i)`` of what the folds before left.

    Each fold is cut from the remaining ids with :func:`stratified_split`, so every fold holds
    about the same share of each attribute, and the folds are disjoint and cover ``ids``.

    Args:
        ids: sample ids, length N.
        presence: ``(N, L)`` bool label presence.
        folds: k >= 2.
        seed: the same seed and inputs always give the same folds.

    Returns:
        k sorted id lists.

    Raises:
        ConfigError: ``folds`` < 2 or more folds than ids.
    """
    if folds < 2 or folds > len(ids):
        raise ConfigError(f"folds must be between 2 and the number of images ({len(ids)}), got {folds}")
    presence = np.asarray(presence, dtype=bool)
    row = {i: k for k, i in enumerate(ids)}
    remaining = list(ids)
    out: list[list[str]] = []
    for i in range(folds - 1):
        rows = presence[[row[x] for x in remaining]]
        part = stratified_split(remaining, rows, val_fraction=1.0 / (folds - i), seed=seed + i)
        out.append(part.val)
        remaining = part.train
    out.append(sorted(remaining))
    return out


def presence_table(split: Split, ids: Sequence[str], presence: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-side frequency of each attribute, for reporting how well a split is balanced."""
    index = {i: k for k, i in enumerate(ids)}
    presence = np.asarray(presence, dtype=bool)
    out: dict[str, dict[str, float]] = {}
    for side, side_ids in (("train", split.train), ("val", split.val)):
        rows = presence[[index[i] for i in side_ids]] if side_ids else np.zeros((0, presence.shape[1]))
        names = (
            ATTRIBUTES if presence.shape[1] == len(ATTRIBUTES) else [str(k) for k in range(presence.shape[1])]
        )
        out[side] = {a: float(rows[:, k].mean()) if len(rows) else 0.0 for k, a in enumerate(names)}
    return out


# --------------------------------------------------------------------------- one categorical label


def _label_groups(ids: Sequence[str], labels: Sequence[Hashable]) -> dict[Hashable, list[str]]:
    """``{label: its ids, sorted}``, labels in a fixed order (by text); checks the inputs."""
    if isinstance(labels, str):
        raise ConfigError("labels must be a sequence with one label per id, not one string")
    if len(labels) != len(ids):
        raise ConfigError(f"labels must give one label per id: {len(ids)} ids but {len(labels)} labels")
    if len(set(ids)) != len(ids):
        raise ConfigError("ids must be unique")
    if not ids:
        raise ConfigError("cannot split zero ids")
    groups: dict[Hashable, list[str]] = {}
    for image_id, label in zip(ids, labels, strict=True):
        groups.setdefault(label, []).append(image_id)
    order = sorted(groups, key=lambda label: (str(label), type(label).__name__))
    return {label: sorted(groups[label]) for label in order}


def _apportion(sizes: list[int], n: int, rng: np.random.Generator) -> list[int]:
    """How many of each class ``n`` draws take, proportionally (largest remainder method).

    Class ``c`` gets ``floor(n * sizes[c] / total)``, and the draws left over go one each to the
    classes with the largest remainders (ties in a random order drawn from ``rng``). The counts
    add up to ``n``, and each lies within one of its exact share.
    """
    total = sum(sizes)
    counts = [s * n // total for s in sizes]
    remainders = [s * n % total for s in sizes]  # integers: no rounding error decides anything
    tie_break = rng.permutation(len(sizes))
    order = sorted(range(len(sizes)), key=lambda c: (-remainders[c], tie_break[c]))
    for c in order[: n - sum(counts)]:
        counts[c] += 1
    return counts


def stratified_split_by_label(
    ids: Sequence[str],
    labels: Sequence[Hashable],
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """Split ``ids`` so that each class of a categorical label keeps its share on both sides.

    For single-label data such as PH2's diagnosis (common nevus, atypical nevus, melanoma), where
    :func:`stratified_split` (label *presence*) does not apply. The validation side takes
    ``round(N * val_fraction)`` ids, divided among the classes in proportion to their sizes by
    the largest remainder method (class ``c`` of ``n_c`` ids gets ``floor(n_val * n_c / N)``, and
    the ids left over go one each to the classes with the largest remainders, ties drawn by the
    seed); within a class, the ids are drawn at random by the seed.

    Args:
        ids: sample ids, length N, unique (their order does not change the result).
        labels: one label per id (any hashable: ``"melanoma"``, 2, ...).
        val_fraction: share of the samples held out, in ``(0, 1)``.
        seed: the same seed and inputs always give the same split.

    Returns:
        The split (``source`` is ``stratified``); ``len(val) == round(N * val_fraction)``.

    Raises:
        ConfigError: ``val_fraction`` outside ``(0, 1)`` or leaving a side empty, ids not unique,
            or ids and labels of different lengths.

    Example:
        >>> ph2 = read_ph2("ph2_sample")  # doctest: +SKIP
        >>> diagnoses = [s.diagnosis for s in ph2.samples]  # doctest: +SKIP
        >>> split = stratified_split_by_label(ph2.ids, diagnoses, val_fraction=0.3)  # doctest: +SKIP
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    groups = _label_groups(ids, labels)
    n = len(ids)
    n_val = int(round(n * val_fraction))
    if not 0 < n_val < n:
        raise ConfigError(f"val_fraction {val_fraction} of {n} ids leaves a side of the split empty")
    rng = np.random.default_rng(seed)
    members = list(groups.values())
    takes = _apportion([len(m) for m in members], n_val, rng)
    val: list[str] = []
    for group, take in zip(members, takes, strict=True):
        chosen = rng.permutation(len(group))[:take]
        val.extend(group[i] for i in chosen)
    held = set(val)
    return Split(train=sorted(i for i in ids if i not in held), val=sorted(val))


def stratified_folds_by_label(
    ids: Sequence[str], labels: Sequence[Hashable], folds: int, seed: int = 0
) -> list[list[str]]:
    """A k-fold partition stratified on a categorical label.

    Each class's ids are shuffled by the seed, the classes are laid end to end (in the order of
    their labels' text), and the ids are dealt to the folds in turn: the ``j``-th goes to fold
    ``j mod k``. So every fold holds ``floor(n_c / k)`` or ``ceil(n_c / k)`` ids of each class
    ``c`` of ``n_c`` ids, and fold sizes differ by at most one (the first ``N mod k`` folds take
    one more).

    Args:
        ids: sample ids, length N, unique (their order does not change the result).
        labels: one label per id.
        folds: k, between 2 and N.
        seed: the same seed and inputs always give the same folds.

    Returns:
        k sorted id lists, disjoint, together ``ids``.

    Raises:
        ConfigError: ``folds`` outside ``[2, N]``, ids not unique, or ids and labels of
            different lengths.
    """
    groups = _label_groups(ids, labels)
    n = len(ids)
    if not 2 <= folds <= n:
        raise ConfigError(f"folds must be between 2 and the number of images ({n}), got {folds}")
    rng = np.random.default_rng(seed)
    dealt = [group[i] for group in groups.values() for i in rng.permutation(len(group))]
    return [sorted(dealt[fold::folds]) for fold in range(folds)]


def label_table(
    split: Split, ids: Sequence[str], labels: Sequence[Hashable]
) -> dict[str, dict[Hashable, int]]:
    """Per side, the number of ids of each class (every class listed), for reporting a split.

    Raises:
        ConfigError: ids and labels of different lengths, or an id of the split not among ``ids``.
    """
    if len(labels) != len(ids):
        raise ConfigError(f"labels must give one label per id: {len(ids)} ids but {len(labels)} labels")
    label_of = dict(zip(ids, labels, strict=True))
    classes = sorted(set(labels), key=lambda label: (str(label), type(label).__name__))
    out: dict[str, dict[Hashable, int]] = {}
    for side, side_ids in (("train", split.train), ("val", split.val)):
        counts: dict[Hashable, int] = dict.fromkeys(classes, 0)
        for image_id in side_ids:
            if image_id not in label_of:
                raise ConfigError(f"{side} id {image_id} has no label")
            counts[label_of[image_id]] += 1
        out[side] = counts
    return out


def split_layout(
    root: str | Path,
    val_fraction: float = 0.1,
    seed: int = 0,
    workers: int | None = None,
    *,
    holdout: bool = False,
    folds: int = 1,
    fold: int = 0,
    labels: LabelSet = DEFAULT,
) -> Split:
    """The train/validation split of a dataset folder.

    When the folder holds the official training and validation splits (with
    their masks), those are used as such, unless ``holdout`` or ``folds > 1``.
    Otherwise the training split (or the flat folder) is split with
    :func:`stratified_split` on label presence, read from the masks; with
    ``folds > 1`` the validation side is fold ``fold`` of :func:`stratified_folds`.
    Data with strata (PH2: the diagnosis) is split within each stratum instead, every
    stratum in proportion on both sides (``source``: ``stratified on diagnosis``); the
    masks are not read (discovery has checked their headers).

    Args:
        root: dataset folder.
        val_fraction: share held out (without folds).
        seed: split seed.
        workers: threads reading the masks.
        holdout: hold out from the training images even when an official validation split
            exists (which then stays untouched for scoring).
        folds: k of a k-fold split (1: no folds).
        fold: which fold is the validation side, ``0 <= fold < folds``.
        labels: the label set the folder holds (Task 2's by default).

    Raises:
        DataError: the folder has no masks to stratify on, or a mask is missing or unreadable
            (the first problem is named; ``dermseg check`` lists them all).
    """
    from dermseg.data.check import check_sample
    from dermseg.data.layout import discover

    layout = discover(root, labels)
    splits = layout.splits
    if folds > 1 and not 0 <= fold < folds:
        raise ConfigError(f"fold must be between 0 and {folds - 1}, got {fold}")
    official = "training" in splits and "validation" in splits and splits["validation"].mask_dir is not None
    if official and not holdout and folds <= 1:
        return Split(train=splits["training"].ids, val=splits["validation"].ids, source="official")
    source = splits.get("training") or splits.get("all")
    if source is None or source.mask_dir is None:
        raise DataError("no training masks to split on", Path(root))
    if layout.strata is not None:
        how = f"stratified on {layout.strata_name or 'strata'}"
        if folds > 1:
            strata = [layout.strata[i] for i in source.ids]
            parts = [sorted(part) for part in stratified_folds_by_label(source.ids, strata, folds, seed)]
            train = sorted(i for k, part in enumerate(parts) if k != fold for i in part)
            return Split(train=train, val=parts[fold], source=f"fold {fold} of {folds}, {how}")
        split = stratified_split_by_label(
            source.ids, [layout.strata[i] for i in source.ids], val_fraction, seed
        )
        return Split(train=split.train, val=split.val, source=how)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        stats = list(pool.map(lambda s: check_sample(s, expect_masks=True), source.samples))
    problems = [p for s in stats for p in s.problems]
    if problems:
        more = f" (and {len(problems) - 1} more problems; run dermseg check)" if len(problems) > 1 else ""
        raise DataError(f"{problems[0].message}{more}", problems[0].path)
    presence = np.array([s.presence for s in stats], dtype=bool)
    if folds > 1:
        parts = stratified_folds(source.ids, presence, folds, seed=seed)
        train = sorted(i for k, part in enumerate(parts) if k != fold for i in part)
        return Split(train=train, val=parts[fold], source=f"fold {fold} of {folds}")
    return stratified_split(source.ids, presence, val_fraction=val_fraction, seed=seed)


def split_from_config(root: str | Path, data: Mapping[str, Any]) -> Split:
    """The split a run used, from its config's ``data`` section (a dict, as checkpoints store it).

    A ``labels`` entry (a label set's name or YAML file, or its ``to_meta()`` mapping) is the
    label set the data folder is read with; without one, Task 2's.
    """
    raw = data.get("labels")
    if raw is None:
        labels = DEFAULT
    elif isinstance(raw, Mapping):
        labels = LabelSet.from_meta(raw)
    else:
        labels = load_label_set(str(raw))
    return split_layout(
        root,
        val_fraction=data.get("val_fraction", 0.1),
        seed=data.get("split_seed", 0),
        holdout=data.get("validation", "auto") == "holdout",
        folds=data.get("folds", 1),
        fold=data.get("fold", 0),
        labels=labels,
    )
