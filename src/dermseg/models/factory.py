"""Model factory: a name -> builder table and ``create_model(arch, **kwargs)``.

Every model it builds describes itself: ``model.dermseg_arch`` and
``model.dermseg_kwargs`` (a JSON-able dict) rebuild the same architecture with
``create_model(model.dermseg_arch, **model.dermseg_kwargs)``, so a checkpoint
needs nothing else. In that dict ``encoder_weights`` is always ``"none"``: a
checkpoint carries its trained weights, and rebuilding must neither download
nor look for a weights file that may have moved; what the encoder started from
is kept in ``model.dermseg_encoder_weights``.

The ``smp_*`` archs (rows of :data:`dermseg.models.smp_models.SMP_ARCHS`) take the same
option names where they mean the same thing and accept any input size >= 96 px, like UNetASPP.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from dermseg.errors import ConfigError
from dermseg.models.pretrained import NONE
from dermseg.models.smp_models import SMP_ARCHS
from dermseg.models.unet_aspp import UNetASPP

__all__ = ["MODELS", "UnknownArchError", "create_model", "model_spec", "parameter_groups"]


class UnknownArchError(ConfigError, KeyError):
    """An ``arch`` not in :data:`MODELS`; both a ``ConfigError`` and a ``KeyError``."""

    def __str__(self) -> str:  # KeyError would quote the message
        return ConfigError.__str__(self)


#: Arch name -> builder; ``inspect.signature`` of a builder lists the options it takes.
MODELS: dict[str, Callable[..., nn.Module]] = {"unet_aspp": UNetASPP, **SMP_ARCHS}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def create_model(arch: str, **kwargs: Any) -> nn.Module:
    """Build a segmentation model by name.

    Args:
        arch: one of :data:`MODELS` (``unet_aspp``, ``smp_unet``, ``smp_unetplusplus``,
            ``smp_fpn``, ``smp_deeplabv3plus``).
        **kwargs: the builder's keyword arguments (``encoder_name``, ``encoder_weights``,
            ``classes``, ``decoder_channels``, ...).

    Returns:
        a module mapping ``(B, in_channels, H, W)`` (``H, W >= 96``) to ``(B, classes, H, W)``
        logits, or to ``{"masks", "presence"}`` with ``presence_head=True``; it carries
        ``dermseg_arch``, ``dermseg_kwargs`` and ``dermseg_encoder_weights``.

    Raises:
        UnknownArchError: ``arch`` is unknown (the message lists the valid names).
        ConfigError: unknown keyword arguments (the message lists the accepted ones) or invalid values.
    """
    if arch not in MODELS:
        raise UnknownArchError(f"unknown model arch {arch!r}; valid archs: {', '.join(MODELS)}")
    builder = MODELS[arch]
    signature = inspect.signature(builder)
    try:
        bound = signature.bind(**kwargs)
    except TypeError as err:
        raise ConfigError(
            f"invalid options for arch {arch!r} ({err}); accepted: {', '.join(signature.parameters)}"
        ) from err
    bound.apply_defaults()
    described = {name: _jsonable(value) for name, value in bound.arguments.items()}
    described["encoder_weights"] = NONE
    try:
        json.dumps(described)
    except TypeError as err:
        raise ConfigError(
            f"options of arch {arch!r} must be plain data (numbers, strings, lists): {err}"
        ) from err
    model = builder(**kwargs)
    model.dermseg_arch = arch
    model.dermseg_kwargs = described
    weights = bound.arguments.get("encoder_weights")
    model.dermseg_encoder_weights = None if weights is None else str(weights)
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The JSON-able description of a model built by :func:`create_model`.

    Returns:
        ``{"arch": str, "kwargs": dict}``; ``create_model(spec["arch"], **spec["kwargs"])`` rebuilds it.

    Raises:
        ConfigError: the model was not built by :func:`create_model`.
    """
    if not hasattr(model, "dermseg_arch"):
        raise ConfigError(
            "this model was not built by dermseg.models.create_model; it cannot describe itself"
        )
    return {"arch": model.dermseg_arch, "kwargs": dict(model.dermseg_kwargs)}


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Split parameters for per-group learning rates.

    Args:
        model: any model with an ``encoder`` attribute (every arch of :data:`MODELS`).

    Returns:
        ``{"encoder": [...], "decoder": [...]}``; "decoder" holds everything that is not the
        encoder (ASPP, decoder, heads). Every parameter appears exactly once.

    Raises:
        ConfigError: the model has no ``encoder``.
    """
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(f"{type(model).__name__} has no .encoder; cannot split parameter groups")
    encoder_ids = {id(p) for p in encoder.parameters()}
    return {
        "encoder": list(encoder.parameters()),
        "decoder": [p for p in model.parameters() if id(p) not in encoder_ids],
    }
