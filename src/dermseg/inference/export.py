"""ONNX export of a checkpoint, and the ONNX Runtime network :class:`~dermseg.inference.segmenter.Segmenter` can run.

The exported graph maps a normalised ``(B, 3, H, W)`` float32 image (``image``) to
``(B, 5, H, W)`` attribute **probabilities** (``probabilities``): the sigmoid (multilabel) or
the softmax without background (multiclass) is part of the graph, so a consumer needs no
knowledge of the target encoding. Batch, height and width are dynamic (sides >= 96 px).

Everything else :class:`~dermseg.inference.segmenter.Segmenter` needs (attributes, normalisation,
input size, thresholds and post-processing, background crop) is stored as JSON strings in
the model's ``metadata_props`` under :data:`META_KEYS`, with the full checkpoint description
under ``dermseg_checkpoint_meta``, and whether the thresholds were tuned with flip TTA under
``tuning_tta`` (the default TTA of a segmenter on the export, as for the checkpoint).

Why :class:`ProbabilityNet` re-wires the models instead of calling their ``forward``: the
TorchScript-based exporter traces Python, and ``int(tensor.shape[i])`` or a Python ``if`` on
a shape becomes a constant of the export size. UNetASPP's decoder converts skip sizes with
``int()`` and skips the resize when sizes already match; :class:`SmpSegmenter` pads only
when needed. Traced as they are, graphs exported at one size fail (or silently misalign) at
another. :class:`ProbabilityNet` runs the same modules with shapes that stay symbolic:
it always resizes to the skip's size (a bilinear resize to the same size is exact) and
always pads, by an amount computed in the graph. :func:`export_onnx` checks the graph at a
second, odd, non-square size against PyTorch before writing it.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dermseg._version import __version__
from dermseg.attributes import ATTRIBUTES
from dermseg.encoding import output_probabilities, validate_encoding
from dermseg.errors import ConfigError, DataError, DermsegError
from dermseg.files import atomic_path
from dermseg.models.checkpoint import load_checkpoint
from dermseg.models.smp_models import SmpSegmenter
from dermseg.models.unet_aspp import UNetASPP

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OPSET",
    "META_KEYS",
    "OnnxRuntimeNet",
    "ProbabilityNet",
    "export_model",
    "export_onnx",
    "onnx_metadata",
    "read_onnx_meta",
    "require_onnxruntime",
]

#: ONNX opset of exported graphs (Resize, Softmax on an axis, GlobalAveragePool: all in 17).
DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
#: Keys of ``metadata_props`` written by :func:`export_onnx`; every value is a JSON string.
META_KEYS: tuple[str, ...] = (
    "dermseg_version",
    "attributes",
    "encoding",
    "normalization_mean",
    "normalization_std",
    "input_size",
    "postprocess",
    "postprocess_side",
    "crop_background",
    "dermseg_checkpoint_meta",
    "tuning_tta",
)
#: Keys of :data:`META_KEYS` that older exports lack: such a file still loads.
OPTIONAL_META_KEYS: tuple[str, ...] = ("tuning_tta",)
#: Example input traced at export: odd and non-square, so no size coincidence is baked in.
_TRACE_SHAPE = (1, 3, 97, 130)
#: Second size the exported graph is checked at against PyTorch.
_CHECK_SHAPE = (2, 3, 113, 101)
_CHECK_TOLERANCE = 1e-3
INSTALL_HINT = "pip install 'dermseg[onnx]'"


def _reflect_pad_to_multiple(x: torch.Tensor, dim: int, multiple: int) -> torch.Tensor:
    """Reflection-pad ``x`` along ``dim`` up to a multiple of ``multiple``, with the size kept symbolic.

    Equal to ``F.pad(..., mode="reflect")`` for pads smaller than the side (inputs >= 96 px,
    multiple 32); written as an index gather so the pad amount is computed in the graph.
    """
    n = x.shape[dim]
    n = n if isinstance(n, torch.Tensor) else torch.tensor(n)  # a tensor while tracing, an int otherwise
    padded = n + torch.remainder(-n, multiple)
    idx = torch.arange(padded, device=x.device)
    idx = torch.where(idx < n, idx, 2 * (n - 1) - idx)
    return x.index_select(dim, idx)


class ProbabilityNet(nn.Module):
    """A dermseg model plus its output activation, written to trace with dynamic shapes.

    Args:
        model: a model from :func:`dermseg.models.create_model` (returning logits or a dict
            with ``"masks"``); UNetASPP and the smp models are re-wired for tracing (see the
            module docstring), any other module is called as it is.
        encoding: ``multilabel`` or ``multiclass``.
    """

    def __init__(self, model: nn.Module, encoding: str) -> None:
        super().__init__()
        self.model = model
        self.encoding = validate_encoding(encoding)

    def _unet_aspp(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        net = self.model
        features = net.encoder(x)
        y = net.aspp(features[-1])
        deepest = y
        skips: list[torch.Tensor | None] = [*features[-2::-1], None]
        for block, skip in zip(net.decoder.blocks, skips, strict=True):
            target = skip if skip is not None else x
            y = F.interpolate(y, size=target.shape[-2:], mode="bilinear", align_corners=False)
            if skip is not None:
                y = torch.cat([y, skip], dim=1)
            y = block.conv2(block.conv1(y))
        logits = net.segmentation_head.conv(y)
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if net.presence_head is None:
            return logits
        return {"masks": logits, "presence": net.presence_head(deepest)}

    def _smp(self, x: torch.Tensor) -> torch.Tensor:
        net = self.model
        h, w = x.shape[-2:]
        padded = _reflect_pad_to_multiple(_reflect_pad_to_multiple(x, 2, net.multiple), 3, net.multiple)
        out = net.model(padded)
        out = out[0] if isinstance(out, tuple) else out
        return out[:, :, :h, :w]

    def output(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """The model's output (logits, or a dict with presence logits) for normalised images."""
        if type(self.model) is UNetASPP:
            return self._unet_aspp(x)
        if type(self.model) is SmpSegmenter:
            return self._smp(x)
        return self.model(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised images -> ``(B, 5, H, W)`` probabilities (presence-gated)."""
        return output_probabilities(self.output(x), self.encoding)


def onnx_metadata(meta: dict[str, Any]) -> dict[str, str]:
    """The ``metadata_props`` of an exported model: :data:`META_KEYS` -> JSON strings.

    Args:
        meta: a checkpoint description (:attr:`dermseg.models.checkpoint.Checkpoint.meta`).
    """
    from dermseg.inference.segmenter import postprocess_from_meta, tuned_tta

    values = {
        "dermseg_version": __version__,
        "attributes": list(ATTRIBUTES),
        "encoding": meta["encoding"],
        "normalization_mean": list(meta["normalization"]["mean"]),
        "normalization_std": list(meta["normalization"]["std"]),
        "input_size": int(meta["input_size"]),
        "postprocess": postprocess_from_meta(meta).to_dict(),
        "postprocess_side": int(meta.get("postprocess_side", meta["input_size"])),
        "crop_background": bool(meta.get("crop_background", True)),
        "dermseg_checkpoint_meta": meta,
        "tuning_tta": tuned_tta(meta),  # null: the thresholds were not tuned
    }
    return {key: json.dumps(values[key]) for key in META_KEYS}


def _torch_export(net: ProbabilityNet, path: Path, opset: int, dynamic: bool) -> None:
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        # The legacy exporter announces its deprecation, and timm/smp code traces with
        # TracerWarnings about shape arithmetic; the check at a second size is the real test.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(_TRACE_SHAPE),),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes} if dynamic else None,
            do_constant_folding=True,
            dynamo=False,
        )


def _check_against_torch(net: ProbabilityNet, path: Path) -> None:
    """Run the exported graph at a size other than the traced one and compare with PyTorch."""
    try:
        import onnxruntime as ort
    except ImportError:
        logger.warning("onnxruntime not installed: the exported graph was not checked (%s)", INSTALL_HINT)
        return
    x = torch.randn(_CHECK_SHAPE, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    with torch.no_grad():
        want = net(x).numpy()
    diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    if not diff <= _CHECK_TOLERANCE:
        raise DermsegError(
            f"the exported graph disagrees with PyTorch at input {_CHECK_SHAPE} "
            f"(shape {got.shape} vs {want.shape}, max difference {diff:.3g}); this model does not export"
        )


def export_model(
    model: nn.Module,
    meta: dict[str, Any],
    out_path: str | Path,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
    check: bool = True,
) -> Path:
    """Export an in-memory model with its description to an ONNX file (written atomically).

    Args:
        model: a dermseg model (logits); it is exported in eval mode on the CPU.
        meta: its checkpoint description (encoding, normalisation, input size, post-processing, ...).
        out_path: the ``.onnx`` file to write.
        opset: ONNX opset version.
        dynamic: dynamic batch, height and width axes (else fixed to the traced ``(1, 3, 97, 130)``).
        check: with ``dynamic``, run the graph at another, odd size and compare with PyTorch.

    Returns:
        ``out_path``.

    Raises:
        ConfigError: the ``onnx`` package is missing.
        DermsegError: the exported graph disagrees with PyTorch.
    """
    try:
        import onnx
    except ImportError:
        raise ConfigError(f"ONNX export needs the onnx package: {INSTALL_HINT}") from None
    out_path = Path(out_path)
    net = ProbabilityNet(model, meta["encoding"]).to("cpu").eval()
    with tempfile.TemporaryDirectory(prefix="dermseg-onnx-") as tmp_dir:
        raw = Path(tmp_dir) / "raw.onnx"
        _torch_export(net, raw, opset, dynamic)
        if dynamic and check:
            _check_against_torch(net, raw)
        proto = onnx.load(str(raw))
    proto.producer_name = "dermseg"
    proto.producer_version = __version__
    proto.doc_string = (
        "dermseg: normalised (B, 3, H, W) float32 image -> (B, 5, H, W) attribute probabilities, "
        f"attributes {', '.join(ATTRIBUTES)}"
    )
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, onnx_metadata(meta))
    with atomic_path(out_path) as tmp:
        onnx.save(proto, str(tmp))
    return out_path


def export_onnx(
    checkpoint_path: str | Path,
    out_path: str | Path,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
    check: bool = True,
) -> Path:
    """Export a checkpoint's network, with its sigmoid/softmax, to ONNX.

    Args:
        checkpoint_path: a dermseg ``.safetensors`` checkpoint.
        out_path: the ``.onnx`` file to write (atomically).
        opset: ONNX opset version.
        dynamic: dynamic batch, height and width axes.
        check: run the exported graph at a second size and compare with PyTorch.

    Returns:
        ``out_path``: a graph ``image (B, 3, H, W) float32`` (normalised) ->
        ``probabilities (B, 5, H, W)``, with the description in ``metadata_props``.

    Raises:
        DataError: the checkpoint is missing or not a dermseg checkpoint (names the file).
        ConfigError: the ``onnx`` package is missing.
    """
    ckpt = load_checkpoint(checkpoint_path)
    return export_model(ckpt.build_model(), ckpt.meta, out_path, opset=opset, dynamic=dynamic, check=check)


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module.

    Raises:
        ConfigError: it is not installed (the message says ``pip install 'dermseg[onnx]'``).
    """
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"the onnxruntime backend needs onnxruntime: {INSTALL_HINT}") from None
    return onnxruntime


def _providers(ort: Any, device: str) -> list[str]:
    kind = torch.device(device).type
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ConfigError(
        f"onnxruntime cannot run on {device!r} here (providers: {', '.join(ort.get_available_providers())})"
    )


class OnnxRuntimeNet:
    """An exported dermseg model in an ONNX Runtime session, called like :class:`ProbabilityNet`.

    Args:
        path: a ``.onnx`` file written by :func:`export_onnx`.
        device: ``cpu`` or ``cuda`` (needs onnxruntime-gpu).

    Attributes:
        meta: the description read from the file's metadata (same keys as a checkpoint's).

    Raises:
        ConfigError: onnxruntime is not installed, or cannot use ``device``.
        DataError: the file is missing, not an ONNX model, or not one exported by dermseg.
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        ort = require_onnxruntime()
        path = Path(path)
        if path.is_dir():
            raise DataError("is a folder, expected a .onnx model", path)
        if not path.exists():
            raise DataError("ONNX model not found", path)
        try:
            self.session = ort.InferenceSession(str(path), providers=_providers(ort, device))
        except Exception as err:  # noqa: BLE001 - ORT raises its own exception types (InvalidProtobuf, Fail)
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            raise DataError(f"not a valid ONNX model ({first})", path) from None
        self.path = path
        self.device = torch.device(device)
        self.meta = read_onnx_meta(self.session.get_modelmeta().custom_metadata_map, path)
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != [INPUT_NAME]:
            raise DataError(f"expected one input named {INPUT_NAME!r}, found {inputs}", path)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised images -> ``(B, 5, H, W)`` float32 probabilities on ``x``'s device."""
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]
        return torch.from_numpy(out).to(x.device)


def read_onnx_meta(props: dict[str, str], path: str | Path) -> dict[str, Any]:
    """The checkpoint-style description stored by :func:`export_onnx` in ``metadata_props``.

    Args:
        props: the model's metadata (``session.get_modelmeta().custom_metadata_map``).
        path: the file, for error messages.

    Returns:
        ``{"encoding", "input_size", "normalization", "postprocess", "postprocess_side",
        "crop_background", "attributes", "dermseg_version", "checkpoint_meta", "tuning"}``;
        ``tuning`` is the checkpoint's tuning record with ``tta`` as ``tuning_tta`` says
        (``None`` when the thresholds were not tuned).

    Raises:
        DataError: the metadata is missing, not JSON, or for other attributes.
    """
    missing = [key for key in META_KEYS if key not in props and key not in OPTIONAL_META_KEYS]
    if len(missing) == len(META_KEYS) - len(OPTIONAL_META_KEYS):
        raise DataError("not a dermseg ONNX model (no dermseg metadata)", path)
    if missing:
        raise DataError(f"ONNX metadata lacks {', '.join(missing)}", path)
    try:
        values = {key: json.loads(props[key]) for key in META_KEYS if key in props}
    except json.JSONDecodeError:
        raise DataError("ONNX metadata is not valid JSON", path) from None
    if list(values["attributes"]) != list(ATTRIBUTES):
        raise DataError(f"model was trained for attributes {values['attributes']}", path)
    checkpoint_meta = values["dermseg_checkpoint_meta"]
    if not isinstance(checkpoint_meta, dict):
        raise DataError("ONNX metadata dermseg_checkpoint_meta is not a mapping", path)
    tuning = checkpoint_meta.get("tuning")
    tuning = dict(tuning) if isinstance(tuning, dict) else None
    tta = values.get("tuning_tta")
    if tta is not None and not isinstance(tta, bool):
        raise DataError(f"ONNX metadata tuning_tta is {tta!r}, expected true, false or null", path)
    if tta is not None:  # the explicit key wins over the copy of the checkpoint's description
        tuning = {**(tuning or {}), "tta": tta}
    return {
        "attributes": values["attributes"],
        "encoding": values["encoding"],
        "input_size": values["input_size"],
        "normalization": {"mean": values["normalization_mean"], "std": values["normalization_std"]},
        "postprocess": values["postprocess"],
        "postprocess_side": values["postprocess_side"],
        "crop_background": values["crop_background"],
        "dermseg_version": values["dermseg_version"],
        "checkpoint_meta": checkpoint_meta,
        "tuning": tuning,
    }
