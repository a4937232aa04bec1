"""What a prediction folder holds: ``dermseg_predict.json``, the models and settings its masks come from.

``dermseg predict`` records it in the output folder before the first image, and a later run
into the folder (a restart, another shard of a job array, another ``torchrun`` rank) goes on
only if it would predict the same way: same model files (by size and SHA-256, wherever they
lie now), same settings, same dermseg version. Another run is refused unless told to
overwrite; then the manifest is replaced, and since every mask written before it then counts
as missing (:func:`~dermseg.inference.folder.pending_images` compares modification times with
the manifest's), the folder's images are all predicted again.

Shards share the one manifest without a lock: it holds nothing of any one shard, it is
created only where absent (:func:`~dermseg.files.write_new`: one of racing writers wins, the
others find it identical) and replaced only on ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dermseg._version import __version__
from dermseg.errors import ConfigError, DataError
from dermseg.files import atomic_path, write_new

if TYPE_CHECKING:
    from dermseg.inference.segmenter import Segmenter

#: The manifest's file name in the output folder.
MANIFEST_NAME = "dermseg_predict.json"
#: What the manifest's ``format`` field says.
FORMAT = "dermseg-predict/1"

_CHUNK = 1 << 20


def model_file(path: str | Path) -> dict[str, Any]:
    """``{"path", "size", "sha256"}`` of a checkpoint or ONNX model (the path absolute).

    Raises:
        DataError: the file cannot be read.
    """
    p = Path(path)
    digest = hashlib.sha256()
    try:
        with open(p, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
            size = os.fstat(fh.fileno()).st_size
    except OSError as err:
        raise DataError(f"cannot read ({err.strerror or err})", p) from None
    return {"path": str(p.absolute()), "size": size, "sha256": digest.hexdigest()}


def predict_settings(segmenter: Segmenter, *, overlays: bool, probabilities: bool) -> dict[str, Any]:
    """The settings that decide what ``predict`` writes for an image, beyond the model files.

    Args:
        segmenter: the model as it will run (flip TTA resolved, lesion field and limits set).
        overlays, probabilities: whether those files are written too.
    """
    members = getattr(segmenter.model, "members", None)
    field = segmenter.lesion_field
    return {
        "backend": members[0].backend if members else segmenter.backend,
        "tta": segmenter.tta,
        "labels": segmenter.labels.name,
        "lesion_margin": None if field is None else field.margin,
        "outside_lesion": None if field is None else ("empty" if field.empty_outside else "keep"),
        "max_aspect_ratio": segmenter.limits.max_aspect_ratio,
        "max_side_factor": segmenter.limits.max_side_factor,
        "tiles": None if segmenter.tiling is None else dataclasses.asdict(segmenter.tiling),
        "decode_side": segmenter.decode_side,
        "overlays": overlays,
        "probabilities": probabilities,
    }


def predict_manifest(
    checkpoints: Sequence[str | Path],
    settings: Mapping[str, Any],
    lesion_checkpoint: str | Path | None = None,
) -> dict[str, Any]:
    """The manifest of a run: its model files (:func:`model_file`), settings and dermseg version.

    Raises:
        DataError: a model file cannot be read.
    """
    return {
        "format": FORMAT,
        "dermseg": __version__,
        "checkpoints": [model_file(p) for p in checkpoints],
        "lesion_checkpoint": None if lesion_checkpoint is None else model_file(lesion_checkpoint),
        "settings": dict(settings),
    }


def _files(value: Any) -> list[str]:
    """The ``size:sha256`` of each model file record in ``value`` (where they lie does not count)."""
    records = value if isinstance(value, list) else [value] if value else []
    return [f"{r.get('size')}:{r.get('sha256')}" if isinstance(r, dict) else repr(r) for r in records]


def _short(records: Any) -> str:
    shown = [key.partition(":")[2][:12] for key in _files(records)]
    return "+".join(shown) or "none"


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two manifests, one phrase each (empty: the same run)."""
    found = []
    for key, what in (("checkpoints", "checkpoint"), ("lesion_checkpoint", "lesion checkpoint")):
        if _files(old.get(key)) != _files(new.get(key)):
            found.append(f"{what} sha256 {_short(old.get(key))}, not {_short(new.get(key))}")
    if old.get("dermseg") != new.get("dermseg"):
        found.append(f"dermseg {old.get('dermseg')}, not {new.get('dermseg')}")
    before, after = old.get("settings") or {}, new.get("settings") or {}
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            found.append(f"{key} {json.dumps(before.get(key))}, not {json.dumps(after.get(key))}")
    return found


def read_manifest(path: str | Path) -> dict[str, Any]:
    """A manifest written by :func:`claim_folder`.

    Raises:
        DataError: it cannot be read or is not a dermseg predict manifest.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_bytes())
    except OSError as err:
        raise DataError(f"cannot read ({err.strerror or err})", p) from None
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(
            f"not a dermseg predict manifest ({FORMAT}); remove it, or give --overwrite to replace it", p
        )
    return data


def claim_folder(out_dir: str | Path, manifest: Mapping[str, Any], overwrite: bool = False) -> int:
    """Record ``manifest`` in ``out_dir``, or check it is the one already there.

    Args:
        out_dir: the output folder (created).
        manifest: this run's :func:`predict_manifest`.
        overwrite: replace a manifest of another run (or a file that is none) instead of refusing.

    Returns:
        The manifest file's modification time (``st_mtime_ns``): masks older than it are not
        this run's (:func:`~dermseg.inference.folder.pending_images`).

    Raises:
        ConfigError: the folder holds predictions of another run and ``overwrite`` is false
            (one line: the manifest file and what differs).
        DataError: the manifest file is unreadable or not a manifest, and ``overwrite`` is false.
        OutputError: it cannot be written (a full disk).
    """
    path = Path(out_dir) / MANIFEST_NAME
    data = (json.dumps(manifest, indent=2) + "\n").encode()
    if not write_new(path, data):
        try:
            diff = differences(read_manifest(path), manifest)
        except DataError:
            if not overwrite:
                raise
            diff = ["not a manifest"]
        if diff and not overwrite:
            raise ConfigError(
                f"the folder holds predictions of another run ({'; '.join(diff)}); give --overwrite "
                "to predict its images again with these settings",
                path,
            )
        if diff:
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
    return os.stat(path).st_mtime_ns
