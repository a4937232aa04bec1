"""Gathering a run report: the run folder's files plus one evaluation pass of its best checkpoint.

:func:`collect_report` returns one JSON-able dict (what ``report.json`` holds) from which
:mod:`dermseg.report.html` renders the page, so a report can be rebuilt without the model.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dermseg._version import __version__
from dermseg.data.layout import IsicSample, detect_label_set, discover
from dermseg.errors import ConfigError, DataError, display_path
from dermseg.labels import DEFAULT, LabelSet

#: Report format, bumped when ``report.json`` changes shape.
REPORT_FORMAT = 1

#: Published reference numbers the report compares a run with.
REFERENCES: dict[str, dict[str, Any]] = {
    "winner": {
        "value": 0.473,
        "label": "ISIC 2018 Task 2 winner (ensemble)",
        "note": "official Jaccard on the 2018 test set",
    },
    "single": {
        "value": 0.433,
        "label": "ISIC 2018 Task 2 best single model",
        "note": "official Jaccard on the 2018 test set",
    },
    "thesis": {
        "value": 0.0896,
        "label": "the thesis (per-image mean Jaccard)",
        "note": "a different metric: the mean over images of each image's Jaccard, not the official one",
    },
}

#: A file of this name in a data folder marks it as synthetic (see :func:`is_synthetic`).
SYNTHETIC_MARKER = "SYNTHETIC.txt"  # written by dermseg.data.synthetic.write_dataset


@dataclass(frozen=True)
class RunFiles:
    """The files of a training run folder that a report reads.

    Attributes:
        root: the run folder.
        config: ``config.yaml``.
        split: ``split.json``.
        metrics: ``metrics.jsonl``.
        checkpoint: ``checkpoints/best.safetensors``.
    """

    root: Path
    config: Path
    split: Path
    metrics: Path
    checkpoint: Path

    @classmethod
    def of(cls, run_dir: str | Path) -> RunFiles:
        """The files of ``run_dir``, checked to exist.

        Raises:
            DataError: the folder or one of its files is missing (the message names it).
        """
        root = Path(run_dir)
        if not root.is_dir():
            raise DataError("run folder not found" if not root.exists() else "not a folder", root)
        files = cls(
            root=root,
            config=root / "config.yaml",
            split=root / "split.json",
            metrics=root / "metrics.jsonl",
            checkpoint=root / "checkpoints" / "best.safetensors",
        )
        for path, what in (
            (files.config, "not found: not a dermseg run folder"),
            (files.metrics, "not found: the run has not finished an epoch"),
            (files.checkpoint, "not found: the run has no best checkpoint yet"),
            (files.split, "not found: the run's validation images are unknown"),
        ):
            if not path.is_file():
                raise DataError(what, path)
        return files


def read_records(path: Path) -> list[dict[str, Any]]:
    """The epoch records of ``metrics.jsonl``.

    Raises:
        DataError: a line is not JSON, or there is none.
    """
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise DataError(f"line {number} is not JSON", path) from None
    if not records:
        raise DataError("no epoch recorded", path)
    return records


def read_config(path: Path) -> tuple[str, dict[str, Any]]:
    """The text of ``config.yaml`` and its content.

    Raises:
        DataError: the file is not a YAML mapping.
    """
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise DataError(f"not valid YAML ({str(err).splitlines()[0]})", path) from None
    if not isinstance(data, dict):
        raise DataError("not a YAML mapping", path)
    return text, data


def data_folder(files: RunFiles, config: dict[str, Any], data: str | Path | None) -> Path:
    """``data`` if given, else the run's recorded data folder (``data.root`` of its config).

    Raises:
        ConfigError: neither is known.
        DataError: the folder does not exist.
    """
    recorded = (config.get("data") or {}).get("root")
    if data is None and not recorded:
        raise ConfigError(
            "the run does not record its data folder (data.root is empty); give --data", files.config
        )
    folder = Path(data if data is not None else recorded)
    if not folder.is_dir():
        where = "" if data is not None else f" (data.root of {files.config}; give --data)"
        raise DataError(f"data folder not found{where}", folder)
    return folder


def validation_samples(files: RunFiles, data_dir: Path, labels: LabelSet = DEFAULT) -> list[IsicSample]:
    """The run's validation images (``split.json``'s ``val`` ids, in that order) in ``data_dir``.

    Args:
        files: the run's files.
        data_dir: the dataset folder.
        labels: the label set of the run's model, which ``data_dir`` is read with.

    Raises:
        DataError: ``split.json`` is malformed, lists no validation id, or an id or one of its
            masks is not in ``data_dir``.
    """
    try:
        ids = json.loads(files.split.read_text(encoding="utf-8"))["val"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DataError("not a split file (expected JSON with a 'val' list)", files.split) from None
    if not ids:
        raise DataError("no validation ids", files.split)
    by_id = {s.isic_id: s for s in discover(data_dir, labels).samples}
    missing = [i for i in ids if i not in by_id]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(f"validation image {missing[0]}{more} of {files.split} not found", data_dir)
    samples = [by_id[i] for i in ids]
    for s in samples:
        if s.missing_labels:
            raise DataError(f"missing mask {s.mask_name(s.missing_labels[0])}", s.image_path)
    return samples


def selection_split(split_path: Path) -> str:
    """Which images selected a run's best epoch and tuned its thresholds, in words.

    From the run's ``split.json`` (its ``source``): ``the official validation set``, ``a stratified hold-out
    of the training images`` or ``fold k of n of the training images``.

    Raises:
        DataError: ``split.json`` is not a JSON object.
    """
    try:
        split = json.loads(split_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise DataError("not JSON", split_path) from None
    if not isinstance(split, dict):
        raise DataError("not a split file (expected a JSON object)", split_path)
    source = str(split.get("source", "stratified"))
    if source == "official":
        return "the official validation set"
    if source == "stratified":
        return "a stratified hold-out of the training images"
    return f"{source} of the training images" if source.startswith("fold ") else source


def is_synthetic(data_dir: Path) -> bool:
    """Whether ``data_dir`` is marked as synthetic by a :data:`SYNTHETIC_MARKER` file.

    Synthetic ids look like real ISIC ids, so the marker is the only sign; without it the report
    names the data folder and says nothing about where the images come from.
    """
    return (data_dir / SYNTHETIC_MARKER).exists()


def versions() -> dict[str, str]:
    """Versions of dermseg and of what it runs on."""
    import timm
    import torch

    return {
        "dermseg": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
    }


def _isoformat(timestamp: float | None = None) -> str:
    moment = (
        datetime.now(timezone.utc) if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc)
    )
    return moment.astimezone().isoformat(timespec="minutes")


def checkpoint_fingerprint(path: Path) -> dict[str, Any]:
    """Size and modification time of a checkpoint: tells whether a saved report still describes it."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _checkpoint_summary(meta: dict[str, Any]) -> dict[str, Any]:
    keep = ("arch", "encoding", "input_size", "epoch", "jaccard", "thresholds", "postprocess", "tuning")
    summary = {k: meta.get(k) for k in keep}
    summary["dermseg_version"] = meta.get("dermseg_version")
    summary["encoder_init"] = meta.get("encoder_init")
    summary["model_kwargs"] = meta.get("model_kwargs")
    return summary


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


def collect_report(
    run_dir: str | Path,
    *,
    data: str | Path | None = None,
    device: str = "cpu",
    tta: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Everything a run report shows, as a JSON-able dict.

    Args:
        run_dir: a training run folder (``dermseg train --out``).
        data: dataset folder; default the run's ``data.root``.
        device: where the evaluation pass runs (``cpu``, ``cuda``).
        tta: flip TTA of the evaluation pass; ``None``: as the checkpoint's thresholds were tuned.
        progress: called with ``(images done, images in all)`` during the evaluation pass.

    Returns:
        ``format``, ``run`` (name, folder, dates, model, data and the split that selected the
        epoch, flip TTA used and as tuned), ``config`` (YAML text and
        content), ``versions``, ``checkpoint`` (its description), ``records`` (metrics.jsonl),
        ``references`` and ``evaluation`` (see :func:`~dermseg.report.evaluation.evaluate_for_report`).
        A model of a label set other than Task 2's adds ``labels`` (the set's
        :meth:`~dermseg.labels.LabelSet.to_meta`); for a lesion set (the Task 1 metric) the
        ``evaluation`` is :func:`~dermseg.report.lesion.evaluate_lesion_for_report`'s and there are
        no ``references`` (the Task 2 leaderboard does not apply).

    Raises:
        DermsegError: a missing or malformed run file, data folder, image or mask (named); a data
            folder of another label set than the model's.
    """
    from dermseg.inference.segmenter import Segmenter, checkpoint_label_set, require_label_set
    from dermseg.models.checkpoint import read_meta
    from dermseg.report.evaluation import evaluate_for_report
    from dermseg.report.lesion import evaluate_lesion_for_report

    files = RunFiles.of(run_dir)
    config_text, config = read_config(files.config)
    records = read_records(files.metrics)
    meta = read_meta(files.checkpoint)
    labels = checkpoint_label_set(meta, files.checkpoint)
    data_dir = data_folder(files, config, data)
    held = detect_label_set(data_dir)
    if held is not None:
        require_label_set(labels, held, files.checkpoint, display_path(data_dir))
    if labels.metric == "isic2018_task2" and labels.names != DEFAULT.names:
        raise DataError(
            f"the report covers the Task 2 attributes and lesion label sets, not label set {labels.name}",
            files.checkpoint,
        )
    samples = validation_samples(files, data_dir, labels)
    selection = selection_split(files.split)
    segmenter = Segmenter.from_checkpoint(files.checkpoint, device=device, tta=tta)
    parameters = sum(p.numel() for p in segmenter.model.parameters())
    lesion = labels.metric == "isic2018_task1"
    evaluate = evaluate_lesion_for_report if lesion else evaluate_for_report
    evaluation = evaluate(segmenter, samples, progress=progress)
    model_cfg = config.get("model") or {}
    extra = {} if labels.name == DEFAULT.name else {"labels": labels.to_meta()}
    return _finite(
        {
            "format": REPORT_FORMAT,
            **extra,
            "run": {
                "name": "/".join(files.root.resolve().parts[-2:]),  # e.g. demo_run/run
                "folder": str(files.root.resolve()),
                "trained": _isoformat(files.checkpoint.stat().st_mtime),
                "generated": _isoformat(),
                "model": {
                    "arch": meta.get("arch") or model_cfg.get("arch"),
                    "encoder": model_cfg.get("encoder_name"),
                    "encoder_weights": model_cfg.get("encoder_weights"),
                    "encoding": meta.get("encoding"),
                    "input_size": meta.get("input_size"),
                    "parameters": int(parameters),
                },
                "data": {
                    "folder": str(data_dir.resolve()),
                    "synthetic": is_synthetic(data_dir),
                    "subset": "validation split of the run (split.json)",
                    "selection": selection,  # these images selected the epoch and tuned the thresholds
                    "images": len(samples),
                },
                "device": device,
                "tta": {
                    "used": segmenter.tta,
                    "tuned": segmenter.tuned_tta,
                    "description": segmenter.tta_description,
                },
                "checkpoint": str(files.checkpoint.resolve()),
                "checkpoint_fingerprint": checkpoint_fingerprint(files.checkpoint),
            },
            "config": {"text": config_text, "values": config},
            "versions": versions(),
            "checkpoint": _checkpoint_summary(meta),
            "records": records,
            "references": {} if lesion else REFERENCES,
            "evaluation": evaluation,
        }
    )
