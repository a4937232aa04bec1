"""Label sets: what a model segments, as data rather than constants.

A :class:`LabelSet` says which masks a dataset holds and a model predicts: the labels (their
channel order, display names and overlay colours), how mask files are named, which official
metric scores them and which output encodings make sense. Built in:

* ``isic2018_task2``: the five ISIC 2018 Task 2 attributes, ``ISIC_<id>_attribute_<name>.png``,
  scored with the pooled Task 2 Jaccard (the default everywhere);
* ``isic2018_task1``: one ``lesion`` label, ``ISIC_<id>_segmentation.png``, scored with the
  official Task 1 metric (per-image Jaccard thresholded at 0.65, averaged over images);
* ``ph2``: one ``lesion`` label, ``IMDxxx_lesion.png`` (the PH2 database's expert lesion masks),
  scored with the Task 1 metric.

A user's own label set is a small YAML file (see :func:`load_label_set`)::

    name: veil_and_regression
    labels:
      - {name: blue_whitish_veil, display_name: Blue-whitish veil, colour: [40, 90, 220]}
      - {name: regression, display_name: Regression structures, colour: [200, 200, 200]}
    mask_pattern: "{id}_{label}.png"
    metric: isic2018_task2

Checkpoints store their label set (:meth:`LabelSet.to_meta`), so a model carries its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermseg.attributes import ATTRIBUTE_INFO
from dermseg.errors import ConfigError

#: Metrics a label set can name: the official ISIC 2018 Task 2 (pooled Jaccard over images and
#: labels, counts normalised per image) and Task 1 (per-image Jaccard, thresholded at 0.65).
METRICS: tuple[str, ...] = ("isic2018_task2", "isic2018_task1")
#: Output encodings: independent sigmoids per label, or one softmax over background + labels.
ENCODINGS: tuple[str, ...] = ("multilabel", "softmax")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MAX_YAML_BYTES = 64 * 1024


@dataclass(frozen=True)
class Label:
    """One label of a set.

    Attributes:
        index: its channel in every ``(C, H, W)`` stack of the set.
        name: file-name form (lower case, digits, ``_``).
        display_name: for tables, legends and plots.
        colour: RGB overlay colour, 0-255.
    """

    index: int
    name: str
    display_name: str
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class LabelSet:
    """What a dataset holds and a model predicts.

    Attributes:
        name: the set's name (``isic2018_task2``, ``ph2``, or a user's).
        labels: in channel order.
        mask_pattern: mask file name, with ``{id}`` (the image id) and, when there are several
            labels, ``{label}`` (a label's name): ``{id}_attribute_{label}.png``.
        metric: one of :data:`METRICS`.
        encodings: the output encodings that make sense (``softmax`` needs labels that do not
            overlap, or a priority order; a single label is always ``multilabel``: one sigmoid).
        description: one line for help texts and reports.
    """

    name: str
    labels: tuple[Label, ...]
    mask_pattern: str
    metric: str
    encodings: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        _check(self)

    @property
    def names(self) -> tuple[str, ...]:
        """Label names in channel order."""
        return tuple(lab.name for lab in self.labels)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def display_names(self) -> dict[str, str]:
        return {lab.name: lab.display_name for lab in self.labels}

    @property
    def colours(self) -> dict[str, tuple[int, int, int]]:
        return {lab.name: lab.colour for lab in self.labels}

    def index(self, name: str) -> int:
        """Channel of label ``name``.

        Raises:
            ValueError: no such label (the message lists the set's labels).
        """
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(
                f"unknown label {name!r} in label set {self.name}; expected one of {', '.join(self.names)}"
            ) from None

    def mask_name(self, image_id: str, label: str) -> str:
        """File name of ``image_id``'s mask of ``label``: ``ISIC_0000000_attribute_streaks.png``."""
        self.index(label)
        return self.mask_pattern.format(id=image_id, label=label)

    def parse_mask_name(self, filename: str) -> tuple[str, str] | None:
        """``(image id, label)`` of a mask file name of this set, or ``None`` if it is not one."""
        m = self._mask_regex().match(filename)
        if m is None:
            return None
        label = m.groupdict().get("label") or self.labels[0].name
        return m.group("id"), label

    def _mask_regex(self) -> re.Pattern[str]:
        parts = re.split(r"(\{id\}|\{label\})", self.mask_pattern)
        regex = ""
        for part in parts:
            if part == "{id}":
                regex += r"(?P<id>.+?)"
            elif part == "{label}":
                regex += "(?P<label>" + "|".join(re.escape(n) for n in self.names) + ")"
            else:
                regex += re.escape(part)
        return re.compile(f"^{regex}$")

    def to_meta(self) -> dict[str, Any]:
        """A JSON-ready description (stored in checkpoints, ONNX metadata and outputs)."""
        return {
            "name": self.name,
            "labels": [
                {"name": lab.name, "display_name": lab.display_name, "colour": list(lab.colour)}
                for lab in self.labels
            ],
            "mask_pattern": self.mask_pattern,
            "metric": self.metric,
            "encodings": list(self.encodings),
            "description": self.description,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], source: str | Path | None = None) -> LabelSet:
        """The label set described by :meth:`to_meta` output (or a user's YAML mapping).

        Raises:
            ConfigError: a field is missing or invalid (naming ``source``).
        """
        try:
            raw = meta["labels"]
            if not isinstance(raw, list) or not raw:
                raise ConfigError("labels: must be a non-empty list", source)
            labels = []
            for i, item in enumerate(raw):
                if isinstance(item, str):
                    item = {"name": item}
                if not isinstance(item, Mapping) or "name" not in item:
                    raise ConfigError(f"labels[{i}]: must be a name or a mapping with a name", source)
                name = item["name"]
                colour = item.get("colour", _DEFAULT_COLOURS[i % len(_DEFAULT_COLOURS)])
                if (
                    not isinstance(colour, (list, tuple))
                    or len(colour) != 3
                    or not all(
                        isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour
                    )
                ):
                    raise ConfigError(f"labels[{i}].colour: must be three integers 0-255", source)
                display = item.get("display_name", str(name).replace("_", " ").capitalize())
                labels.append(Label(i, str(name), str(display), (colour[0], colour[1], colour[2])))
            n = len(labels)
            encodings = meta.get("encodings", list(ENCODINGS) if n > 1 else ["multilabel"])
            return cls(
                name=str(meta["name"]),
                labels=tuple(labels),
                mask_pattern=str(meta.get("mask_pattern", "{id}_{label}.png" if n > 1 else "{id}_mask.png")),
                metric=str(meta.get("metric", "isic2018_task2" if n > 1 else "isic2018_task1")),
                encodings=tuple(encodings),
                description=str(meta.get("description", "")),
            )
        except KeyError as err:
            raise ConfigError(f"label set: missing field {err.args[0]!r}", source) from None
        except ConfigError as err:
            if err.path is None and source is not None:
                raise ConfigError(err.message, source) from None
            raise


def _is_byte(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255


def _check(ls: LabelSet) -> None:
    """Raise :class:`ConfigError` (without a file; callers add it) when ``ls`` is inconsistent."""
    if not _NAME.match(ls.name):
        raise ConfigError(f"label set name {ls.name!r}: use lower case letters, digits and _")
    seen: set[str] = set()
    for lab in ls.labels:
        if not _NAME.match(lab.name):
            raise ConfigError(f"label {lab.name!r}: use lower case letters, digits and _ (it names files)")
        if lab.name in seen:
            raise ConfigError(f"label {lab.name!r} appears twice")
        seen.add(lab.name)
    if ls.metric not in METRICS:
        raise ConfigError(f"metric {ls.metric!r} is unknown; expected one of {', '.join(METRICS)}")
    if ls.metric == "isic2018_task1" and len(ls.labels) != 1:
        raise ConfigError("metric isic2018_task1 scores one label (a lesion mask); this set has several")
    bad = [e for e in ls.encodings if e not in ENCODINGS]
    if bad or not ls.encodings:
        raise ConfigError(f"encodings {list(ls.encodings)}: expected some of {', '.join(ENCODINGS)}")
    if len(ls.labels) == 1 and "softmax" in ls.encodings:
        raise ConfigError("a single label is one sigmoid: encodings must be [multilabel]")
    if "{id}" not in ls.mask_pattern or "/" in ls.mask_pattern or not ls.mask_pattern.endswith(".png"):
        raise ConfigError(
            f"mask_pattern {ls.mask_pattern!r}: must hold {{id}}, end in .png and name a file, not a folder"
        )
    if len(ls.labels) > 1 and "{label}" not in ls.mask_pattern:
        raise ConfigError(f"mask_pattern {ls.mask_pattern!r}: several labels need {{label}} in it")
    leftover = re.sub(r"\{id\}|\{label\}", "", ls.mask_pattern)
    if "{" in leftover or "}" in leftover:
        raise ConfigError(f"mask_pattern {ls.mask_pattern!r}: only {{id}} and {{label}} may be filled in")


_DEFAULT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (255, 225, 25),
)

ISIC2018_TASK2 = LabelSet(
    name="isic2018_task2",
    labels=tuple(Label(a.index, a.name, a.display_name, a.colour) for a in ATTRIBUTE_INFO),
    mask_pattern="{id}_attribute_{label}.png",
    metric="isic2018_task2",
    encodings=ENCODINGS,
    description="ISIC 2018 Task 2: five dermoscopic structures, pooled Jaccard",
)
ISIC2018_TASK1 = LabelSet(
    name="isic2018_task1",
    labels=(Label(0, "lesion", "Lesion", (255, 64, 64)),),
    mask_pattern="{id}_segmentation.png",
    metric="isic2018_task1",
    encodings=("multilabel",),
    description="ISIC 2018 Task 1: lesion boundary, thresholded Jaccard",
)
PH2 = LabelSet(
    name="ph2",
    labels=(Label(0, "lesion", "Lesion", (255, 64, 64)),),
    mask_pattern="{id}_lesion.png",
    metric="isic2018_task1",
    encodings=("multilabel",),
    description="PH2: expert lesion masks, scored with the ISIC 2018 Task 1 metric",
)
#: The built-in label sets by name.
BUILTIN: dict[str, LabelSet] = {ls.name: ls for ls in (ISIC2018_TASK2, ISIC2018_TASK1, PH2)}
#: The default label set (dermseg's original task).
DEFAULT = ISIC2018_TASK2


#: What a model section's ``encoding`` is called among a label set's :attr:`LabelSet.encodings`.
MODEL_ENCODINGS: dict[str, str] = {"multilabel": "multilabel", "multiclass": "softmax"}


def label_set_of(meta: Mapping[str, Any]) -> LabelSet:
    """The label set a checkpoint (or an ONNX export, or an output folder) describes.

    Its ``labels`` entry (:meth:`LabelSet.to_meta`); else its config's ``data.labels`` (a
    built-in name, or a YAML file that must still be there); else Task 2's: a checkpoint
    written before label sets existed segments the five ISIC 2018 Task 2 attributes.

    Raises:
        ConfigError: the entry is invalid, or names an unknown set or an unreadable file.
    """
    raw = meta.get("labels")
    if isinstance(raw, Mapping):
        return LabelSet.from_meta(raw)
    if raw is not None:
        return load_label_set(str(raw))
    data = (meta.get("config") or {}).get("data") or {}
    named = data.get("labels") if isinstance(data, Mapping) else None
    return load_label_set(str(named)) if named is not None else DEFAULT


def load_label_set(name_or_path: str | Path) -> LabelSet:
    """A built-in label set by name, or a user's from a YAML file.

    Raises:
        ConfigError: unknown name; the file is not a small regular YAML file; a field is invalid
            (a duplicate label, an unknown metric, a bad colour or pattern). The error names the file.
    """
    key = str(name_or_path)
    if key in BUILTIN:
        return BUILTIN[key]
    path = Path(name_or_path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"label set {key!r} is neither built in ({', '.join(BUILTIN)}) nor a .yaml file")
    import yaml

    try:
        if not path.is_file():
            raise ConfigError("label set file not found (or not a regular file)", path)
        if path.stat().st_size > _MAX_YAML_BYTES:
            raise ConfigError(f"label set file is larger than {_MAX_YAML_BYTES // 1024} KiB", path)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read label set file: {err}", path) from None
    try:
        if any(getattr(event, "anchor", None) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            raise ConfigError("YAML anchors and aliases are not allowed in a label set file", path)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {str(err).splitlines()[0]}", path) from None
    if not isinstance(data, Mapping):
        raise ConfigError("a label set file is a mapping (name, labels, mask_pattern, metric)", path)
    unknown = set(data) - {"name", "labels", "mask_pattern", "metric", "encodings", "description"}
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}", path)
    try:
        return LabelSet.from_meta(data, path)
    except ConfigError as err:
        raise ConfigError(err.message, path) from None
