"""Encoder weight files: safe reading, and fitting a state dict onto a timm encoder.

A file holds a state dict of either the full timm model or its ``features_only``
encoder, keys optionally prefixed (``module.``, ``model.``, ``encoder.model.``; with
``encoder.model.``, e.g. a whole UNetASPP, only the encoder part is used).
``.pth``/``.pt`` files are read with ``torch.load(weights_only=True)`` only: a file that
needs arbitrary unpickling is refused, never executed. Mismatches are reported key by
key, naming the file; classifier heads (``fc.``, ``classifier.``, ``head.``) and layers
of the full model the encoder drops (``conv_head``, ...) are ignored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from torch import nn

from dermseg.errors import ConfigError

__all__ = ["WEIGHT_SUFFIXES", "load_state_dict_into_encoder", "read_weights_file"]

_logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")
# Keys of a classification model that an encoder never uses.
_HEAD_PREFIXES = ("fc.", "classifier.", "head.", "last_linear.", "AuxLogits.")
_STRIP_PREFIXES = ("", "module.", "model.", "encoder.model.", "encoder.")
_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "encoder")


def _only_tensors(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
        for key in _CONTAINER_KEYS:  # a training checkpoint: {"state_dict": {...}, "epoch": 3}
            if isinstance(obj.get(key), Mapping):
                return _only_tensors(obj[key], path)
    raise ConfigError("the file holds no state dict (no name -> tensor entries)", path=path)


def read_weights_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or, without unpickling objects, from ``.pth``/``.pt``.

    Args:
        path: the weights file.

    Returns:
        ``{name: tensor}`` on the CPU.

    Raises:
        ConfigError: missing file, unknown suffix, unreadable file, or a ``.pth`` whose
            pickle holds anything but tensors and plain containers (refused unexecuted).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("encoder weights file not found", path=path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises SafetensorError / OSError on bad files
            raise ConfigError(f"not a readable .safetensors file ({err})", path=path) from err
    if suffix in (".pth", ".pt"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle.UnpicklingError for foreign objects, RuntimeError for junk
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(
                "refused to load: the file is not a plain tensor state dict readable with "
                f"torch.load(weights_only=True) ({first_line}). dermseg never unpickles arbitrary "
                "objects; re-save the weights as a state dict (torch.save(model.state_dict(), ...)) "
                "or as .safetensors",
                path=path,
            ) from err
        return _only_tensors(obj, path)
    raise ConfigError(f"unknown weights file type {suffix!r}; use {', '.join(WEIGHT_SUFFIXES)}", path=path)


def _norm(key: str) -> str:
    # features_only wrappers flatten module paths ("stages.0" -> "stages_0").
    return key.replace(".", "_")


def _full_model_keys(encoder_name: str) -> set[str]:
    with torch.device("meta"):
        return {_norm(k) for k in timm.create_model(encoder_name, pretrained=False).state_dict()}


def _examples(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > n else shown


def load_state_dict_into_encoder(
    target: nn.Module,
    state: Mapping[str, torch.Tensor],
    encoder_name: str,
    source: str,
    path: Path | None = None,
) -> None:
    """Load a full-model or encoder state dict into a timm ``features_only`` module.

    Args:
        target: the timm ``features_only`` module (``TimmEncoder.model``).
        state: ``{name: tensor}`` of the full timm model or of the ``features_only`` net, keys
            optionally prefixed (``module.``, ``model.``, ``encoder.model.``); with an
            ``encoder.`` prefix (a whole segmentation model), only the encoder part is used.
        encoder_name: the timm name, to recognise keys the encoder legitimately drops.
        source: words naming the weights, for messages.
        path: the file the weights came from, named in errors.

    Raises:
        ConfigError: missing keys, keys foreign to ``encoder_name``, or shape mismatches.
    """
    wanted = target.state_dict()
    prefix = max(_STRIP_PREFIXES, key=lambda p: sum(k.startswith(p) and k[len(p) :] in wanted for k in state))
    stripped = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    by_norm = {_norm(k): k for k in stripped}
    matched: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing, mismatched = [], []
    for key, template in wanted.items():
        src = key if key in stripped else by_norm.get(_norm(key))
        if src is None:
            if key.endswith("num_batches_tracked"):
                matched[key] = template  # a counter some exporters drop; keep ours
            else:
                missing.append(key)
            continue
        used.add(src)
        if tuple(stripped[src].shape) != tuple(template.shape):
            mismatched.append(f"{key} {tuple(stripped[src].shape)} vs {tuple(template.shape)}")
        matched[key] = stripped[src]
    # Keys left over, named relative to the stripped prefix. A whole segmentation model's state dict
    # ("encoder.model.*" next to "decoder.*") contributes only its encoder part.
    whole_model = prefix.startswith("encoder.")
    leftovers = {
        k: k[len(prefix) :] if k.startswith(prefix) else k
        for k in state
        if not (k.startswith(prefix) and k[len(prefix) :] in used)
        and (k.startswith(prefix) or not whole_model)
    }
    # Classifier heads, and layers of the full classifier the encoder does not keep (conv_head, ...).
    unexpected = [k for k, rel in leftovers.items() if not rel.startswith(_HEAD_PREFIXES)]
    if unexpected:
        full = _full_model_keys(encoder_name)
        unexpected = [k for k in unexpected if _norm(leftovers[k]) not in full]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {_examples(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_examples(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches (file vs model): {_examples(mismatched)}")
        raise ConfigError(f"{source} do not fit encoder {encoder_name!r}: " + "; ".join(parts), path=path)
    target.load_state_dict(matched, strict=True)
    _logger.info("loaded %s into %s (%d tensors)", source, encoder_name, len(matched))
