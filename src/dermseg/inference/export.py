"""ONNX export of a checkpoint: its network and output activation as one graph, with its description.

The exported graph maps a normalised ``(B, 3, H, W)`` float32 image (``image``) to
``(B, 5, H, W)`` attribute **probabilities** (``probabilities``): the sigmoid (multilabel) or
the softmax without background (multiclass), and the presence gate of a model with a presence
head, are part of the graph, so a consumer needs no knowledge of the target encoding. Batch,
height and width are dynamic (sides >= 96 px).

Everything else :class:`~dermseg.inference.segmenter.Segmenter` needs (attributes, normalisation,
input size, thresholds and post-processing, background crop) is stored as JSON strings in
the model's ``metadata_props`` under :data:`~dermseg.inference.onnx_runtime.META_KEYS`, with the
full checkpoint description under ``dermseg_checkpoint_meta``, and whether the thresholds were
tuned with flip TTA under ``tuning_tta`` (the default TTA of a segmenter on the export, as for the
checkpoint). :mod:`dermseg.inference.onnx_runtime` reads such a file and runs it.

The TorchScript-based exporter traces Python: an ``int()`` of a shape or a Python ``if`` on a
shape would become a constant of the traced size. Every dermseg model's ``forward`` is written
to trace with symbolic sizes (see :mod:`dermseg.models.decoder` and
:class:`~dermseg.models.smp_models.SmpSegmenter`), so :class:`ProbabilityNet` simply calls it.
The trace uses an odd, non-square example, and :func:`export_model` checks the graph at a
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
from torch import nn

from dermseg._version import __version__
from dermseg.attributes import ATTRIBUTES
from dermseg.encoding import output_probabilities, validate_encoding
from dermseg.errors import ConfigError, DermsegError
from dermseg.files import atomic_path
from dermseg.inference.onnx_runtime import INPUT_NAME, INSTALL_HINT, META_KEYS, OUTPUT_NAME
from dermseg.inference.postprocess import postprocess_from_meta, tuned_tta
from dermseg.models.checkpoint import load_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_OPSET", "ProbabilityNet", "export_model", "export_onnx", "onnx_metadata"]

#: ONNX opset of exported graphs (Resize, Softmax on an axis, GlobalAveragePool: all in 17).
DEFAULT_OPSET = 17
#: Example input traced at export: odd and non-square, so no size coincidence is baked in.
_TRACE_SHAPE = (1, 3, 97, 130)
#: Second size the exported graph is checked at against PyTorch.
_CHECK_SHAPE = (2, 3, 113, 101)
_CHECK_TOLERANCE = 1e-3


class ProbabilityNet(nn.Module):
    """A dermseg model followed by its output activation: what an exported graph computes.

    Args:
        model: a model from :func:`dermseg.models.create_model`, returning ``(B, C, H, W)``
            logits or ``{"masks": (B, C, H, W), "presence": (B, 5)}``; its ``forward`` must
            trace with symbolic sizes (every dermseg model's does).
        encoding: ``multilabel`` or ``multiclass``.
    """

    def __init__(self, model: nn.Module, encoding: str) -> None:
        super().__init__()
        self.model = model
        self.encoding = validate_encoding(encoding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised images -> ``(B, 5, H, W)`` probabilities (presence-gated)."""
        return output_probabilities(self.model(x), self.encoding)


def onnx_metadata(meta: dict[str, Any]) -> dict[str, str]:
    """The ``metadata_props`` of an exported model: the JSON string of each key of
    :data:`~dermseg.inference.onnx_runtime.META_KEYS`.

    Args:
        meta: a checkpoint description (:attr:`dermseg.models.checkpoint.Checkpoint.meta`).
    """
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
