"""Self-describing checkpoints that load without unpickling anything.

A checkpoint is one ``.safetensors`` file: the model's weights, and in the
file's metadata a JSON document saying how to rebuild and use the model
(architecture and its arguments, attributes, target encoding, input
normalisation, thresholds, the training config, the dermseg version). So
``predict`` needs nothing but the file.

Training state for ``--resume`` (optimiser, scheduler, scaler, RNG states) is a
separate ``.pt`` file read with ``torch.load(weights_only=True)``.
All writes go to a temporary file that is flushed and renamed into place, so an
interrupted write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from dermseg._version import __version__
from dermseg.attributes import ATTRIBUTES
from dermseg.data.imageio import BROKEN_LINK
from dermseg.errors import DataError, DermsegError
from dermseg.files import atomic_path

#: Key of the JSON document in the safetensors metadata.
META_KEY = "dermseg"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        state_dict: the model's tensors.
        meta: the JSON description (``arch``, ``model_kwargs``, ``encoding``,
            ``attributes``, ``normalization``, ``thresholds``, ``config``, ...).
        path: the file it was read from (named in errors), if any.
    """

    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path | None = None

    def build_model(self) -> nn.Module:
        """Rebuild the model described by ``meta`` and load the weights (eval mode).

        Raises:
            DataError: the description names an unknown architecture or invalid arguments,
                or the weights are not those of the model it describes (e.g. its metadata
                was edited to another encoder).
        """
        # Imported here, downward: the factory loads smp and timm (seconds), which reading a
        # checkpoint's description (read_meta, the CLI's checks) never needs.
        from dermseg.models.factory import create_model

        kwargs = dict(self.meta["model_kwargs"])
        kwargs["encoder_weights"] = "none"  # the checkpoint holds the trained weights
        described = f"{self.meta['arch']} with encoder {kwargs.get('encoder_name', '?')}"
        try:
            model = create_model(self.meta["arch"], **kwargs)
        except (DermsegError, KeyError, TypeError, ValueError, RuntimeError) as err:
            message = err.message if isinstance(err, DermsegError) else str(err)
            raise DataError(
                f"checkpoint describes a model dermseg cannot build ({message})", self.path
            ) from None
        own = model.state_dict()
        missing = sorted(set(own) - set(self.state_dict))
        unexpected = sorted(set(self.state_dict) - set(own))
        misshaped = sorted(
            k for k in set(own) & set(self.state_dict) if own[k].shape != self.state_dict[k].shape
        )
        if missing or unexpected or misshaped:
            counts = ", ".join(
                f"{len(keys)} {what}"
                for keys, what in (
                    (missing, "missing"),
                    (unexpected, "unexpected"),
                    (misshaped, "mis-shaped"),
                )
                if keys
            )
            example = (missing or unexpected or misshaped)[0]
            raise DataError(
                f"checkpoint weights do not match the model its metadata describes ({described}): "
                f"{counts} tensor(s), e.g. {example!r}; the file was edited or is from another program",
                self.path,
            )
        model.load_state_dict(self.state_dict)
        return model.eval()


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain model under DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write ``model``'s weights and ``meta`` atomically to a ``.safetensors`` file.

    ``meta`` is completed with the format version, the dermseg version, the
    attribute names and the model's ``dermseg_arch``/``dermseg_kwargs``.
    """
    model = _unwrap(model)
    full = {
        "format_version": FORMAT_VERSION,
        "dermseg_version": __version__,
        "attributes": list(ATTRIBUTES),
        "arch": getattr(model, "dermseg_arch", None),
        "model_kwargs": getattr(model, "dermseg_kwargs", None),
        **meta,
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(full)})


def read_meta(path: str | Path) -> dict[str, Any]:
    """Only the JSON description of a checkpoint (reads the header, not the weights).

    Raises:
        DataError: not a dermseg checkpoint.
    """
    from safetensors import safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(f"not a safetensors checkpoint ({str(err).splitlines()[0]})", path) from None
    return _parse_meta(metadata, path)


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise DataError("is a folder, expected a .safetensors checkpoint", path)
    if not path.exists():
        raise DataError(BROKEN_LINK if path.is_symlink() else "checkpoint not found", path)
    if path.stat().st_size == 0:
        raise DataError("empty file (0 bytes)", path)
    if not os.access(path, os.R_OK):
        raise DataError("permission denied", path)


def _parse_meta(metadata: dict[str, str], path: Path) -> dict[str, Any]:
    if META_KEY not in metadata:
        raise DataError("not a dermseg checkpoint (no dermseg metadata)", path)
    try:
        meta = json.loads(metadata[META_KEY])
    except json.JSONDecodeError:
        raise DataError("checkpoint metadata is not valid JSON", path) from None
    if not isinstance(meta, dict):
        raise DataError("checkpoint metadata is not a JSON object", path)
    for key in ("arch", "model_kwargs", "encoding", "attributes", "input_size", "normalization"):
        if key not in meta or meta[key] is None:
            raise DataError(f"checkpoint metadata lacks {key!r}", path)
    if not isinstance(meta["attributes"], list) or meta["attributes"] != list(ATTRIBUTES):
        raise DataError(f"checkpoint was trained for attributes {meta['attributes']}", path)
    if not isinstance(meta["arch"], str) or not isinstance(meta["model_kwargs"], dict):
        raise DataError("checkpoint metadata: 'arch' must be a name and 'model_kwargs' a mapping", path)
    if meta["encoding"] not in ("multilabel", "multiclass"):
        raise DataError(f"checkpoint metadata: unknown encoding {meta['encoding']!r}", path)
    size = meta["input_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DataError(f"checkpoint metadata: input_size must be a positive integer, got {size!r}", path)
    norm = meta["normalization"]
    if not (
        isinstance(norm, dict)
        and all(
            isinstance(norm.get(k), list)
            and len(norm[k]) == 3
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in norm[k])
            for k in ("mean", "std")
        )
    ):
        raise DataError("checkpoint metadata: normalization must give 3 mean and 3 std values", path)
    return meta


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        DataError: missing, empty, corrupt, or not a dermseg checkpoint (a pickle
            file is refused without being unpickled).
    """
    path = Path(path)
    meta = read_meta(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(f"corrupt checkpoint ({str(err).splitlines()[0]})", path) from None
    return Checkpoint(state_dict=tensors, meta=meta, path=path)


def save_train_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write resumable training state (tensors, numbers, strings, lists, dicts only) atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_train_state(path: str | Path) -> dict[str, Any]:
    """Read training state with ``torch.load(weights_only=True)``: no arbitrary objects are unpickled.

    Raises:
        DataError: missing, corrupt, or holding objects other than plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("training state not found", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for bad pickles
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"cannot load training state safely ({first[:200]})", path) from None


def update_checkpoint_meta(path: str | Path, updates: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write a checkpoint with the same weights and ``updates`` merged into its description.

    Args:
        path: the checkpoint.
        updates: top-level keys of the description to replace (e.g. tuned ``postprocess``).
        out: where to write; ``None`` replaces ``path`` (atomically).

    Returns:
        The path written.
    """
    ckpt = load_checkpoint(path)
    target = Path(out) if out is not None else Path(path)
    meta = {**ckpt.meta, **updates}
    with atomic_path(target) as tmp:
        save_file(ckpt.state_dict, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return target
