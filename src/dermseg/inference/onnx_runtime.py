"""Running an exported dermseg model on ONNX Runtime, and the contract of the exported file.

An exported graph (written by :mod:`dermseg.inference.export`) maps a normalised
``(B, 3, H, W)`` float32 image, input :data:`INPUT_NAME`, to ``(B, C, H, W)`` probabilities
of its label set's ``C`` labels, output :data:`OUTPUT_NAME`. Its ``metadata_props`` hold, as JSON strings
under :data:`META_KEYS`, everything :class:`~dermseg.inference.segmenter.Segmenter` needs
around the network; :func:`read_onnx_meta` turns them back into a checkpoint-style description.

``onnxruntime`` is an optional dependency: it is imported by :func:`require_onnxruntime`,
when a session is made, never when this module is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermseg.errors import ConfigError, DataError
from dermseg.labels import DEFAULT, LabelSet

__all__ = [
    "INPUT_NAME",
    "INSTALL_HINT",
    "META_KEYS",
    "OPTIONAL_META_KEYS",
    "OUTPUT_NAME",
    "OnnxRuntimeNet",
    "providers",
    "read_onnx_meta",
    "require_onnxruntime",
]

#: Name of the graph's input: normalised ``(B, 3, H, W)`` float32 images.
INPUT_NAME = "image"
#: Name of the graph's output: ``(B, C, H, W)`` label probabilities.
OUTPUT_NAME = "probabilities"
#: Keys of ``metadata_props`` written by the export; every value is a JSON string.
META_KEYS: tuple[str, ...] = (
    "dermseg_version",
    "attributes",
    "labels",
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
#: Keys of :data:`META_KEYS` that older exports lack: such a file still loads (without ``labels``
#: it is a Task 2 model).
OPTIONAL_META_KEYS: tuple[str, ...] = ("tuning_tta", "labels")
INSTALL_HINT = "pip install 'dermseg[onnx]'"


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


def providers(ort: Any, device: str) -> list[str]:
    """The ONNX Runtime execution providers for a torch device name, in order of preference.

    Args:
        ort: the ``onnxruntime`` module (:func:`require_onnxruntime`).
        device: ``cpu`` or ``cuda`` (``cuda:N``).

    Returns:
        ``["CPUExecutionProvider"]``, or ``["CUDAExecutionProvider", "CPUExecutionProvider"]``.

    Raises:
        ConfigError: ONNX Runtime cannot run on ``device`` here (the message lists its providers).
    """
    kind = torch.device(device).type
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ConfigError(
        f"onnxruntime cannot run on {device!r} here (providers: {', '.join(ort.get_available_providers())})"
    )


class OnnxRuntimeNet:
    """An exported dermseg model in an ONNX Runtime session, called like the exported network.

    Args:
        path: a ``.onnx`` file written by :func:`dermseg.inference.export.export_onnx`.
        device: ``cpu`` or ``cuda`` (needs onnxruntime-gpu).
        threads: intra-op threads of the session; ``None``: ONNX Runtime's default (one per
            physical core). Graph optimisation is always ONNX Runtime's full level.

    Attributes:
        meta: the description read from the file's metadata (same keys as a checkpoint's).

    Raises:
        ConfigError: onnxruntime is not installed, or cannot use ``device``.
        DataError: the file is missing, not an ONNX model, or not one exported by dermseg.
    """

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        ort = require_onnxruntime()
        path = Path(path)
        if path.is_dir():
            raise DataError("is a folder, expected a .onnx model", path)
        if not path.exists():
            raise DataError("ONNX model not found", path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or 0
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers(ort, device))
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
        """``(B, 3, H, W)`` normalised images -> ``(B, C, H, W)`` float32 probabilities on ``x``'s device."""
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]
        return torch.from_numpy(out).to(x.device)


def read_onnx_meta(props: dict[str, str], path: str | Path) -> dict[str, Any]:
    """The checkpoint-style description stored by the export in ``metadata_props``.

    Args:
        props: the model's metadata (``session.get_modelmeta().custom_metadata_map``).
        path: the file, for error messages.

    Returns:
        ``{"encoding", "input_size", "normalization", "postprocess", "postprocess_side",
        "crop_background", "attributes", "labels", "dermseg_version", "checkpoint_meta", "tuning"}``;
        ``labels`` is the label set's :meth:`~dermseg.labels.LabelSet.to_meta` (Task 2's for an
        export written before label sets); ``tuning`` is the checkpoint's tuning record with
        ``tta`` as ``tuning_tta`` says (``None`` when the thresholds were not tuned).

    Raises:
        DataError: the metadata is missing, not JSON, names an invalid label set, or attributes
            other than its label set's.
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
    raw_labels = values.get("labels")
    try:
        labels = DEFAULT if raw_labels is None else LabelSet.from_meta(raw_labels)
    except ConfigError as err:
        raise DataError(f"ONNX metadata: invalid label set ({err})", path) from None
    except (AttributeError, TypeError):
        raise DataError("ONNX metadata labels is not a label set description", path) from None
    if list(values["attributes"]) != list(labels.names):
        raise DataError(
            f"model was trained for attributes {values['attributes']} (label set {labels.name})", path
        )
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
        "labels": labels.to_meta(),
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
