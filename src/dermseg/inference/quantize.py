"""INT8 static quantisation of an exported model, calibrated on training images (opt-in).

ONNX Runtime's post-training static quantisation (``onnxruntime.quantization.quantize_static``)
stores the convolution weights as signed 8-bit integers (one scale per output channel) and
rounds every activation to unsigned 8 bits with a range measured beforehand: the graph runs
once on each calibration image, prepared exactly as :class:`~dermseg.inference.segmenter.Segmenter`
prepares an image for the network (field of view, resize to the working size, normalisation),
and each tensor's min/max over them fixes its scale. The result is a QDQ graph (QuantizeLinear /
DequantizeLinear pairs that ONNX Runtime fuses into integer kernels) with the same input, output
and dermseg metadata as the float export, so ``dermseg predict --checkpoint model_int8.onnx``
runs it like any export.

The masks of an INT8 model are close to, not the same as, the float model's: rounding changes
probabilities near a threshold. ``benchmarks/predict_speed.py`` measures how much Jaccard that
costs, which is why it is never a default.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dermseg.errors import ConfigError, DataError
from dermseg.files import atomic_path
from dermseg.inference.export import export_onnx
from dermseg.inference.folder import collect_images
from dermseg.inference.onnx_runtime import INPUT_NAME, INSTALL_HINT
from dermseg.inference.segmenter import Segmenter

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_CALIBRATION_IMAGES", "calibration_images", "export_int8", "quantize_onnx"]

#: Calibration images used by default: enough for stable min/max ranges, a minute on a CPU.
DEFAULT_CALIBRATION_IMAGES = 32
#: Metadata key recording how a model was quantised (JSON), beside the export's own keys.
QUANTIZATION_KEY = "dermseg_quantization"


def calibration_images(folder: str | Path, limit: int = DEFAULT_CALIBRATION_IMAGES) -> list[Path]:
    """Up to ``limit`` images of ``folder``, evenly spaced over its images sorted by name.

    Args:
        folder: a folder of training images (e.g. ``ISIC2018_Task2_Training_Input``).
        limit: how many at most, >= 1.

    Returns:
        The chosen image files, in name order.

    Raises:
        DataError: ``folder`` is missing, not a folder, or holds no image.
        ValueError: ``limit`` < 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("calibration folder not found" if not folder.exists() else "not a folder", folder)
    images = collect_images([folder])
    step = len(images) / min(limit, len(images))
    return [images[int(k * step)] for k in range(min(limit, len(images)))]


class _CalibrationReader:
    """The calibration images as network inputs, one ``{"image": (1, 3, h, w)}`` feed at a time
    (ONNX Runtime's ``CalibrationDataReader`` protocol: ``get_next`` returns ``None`` at the end)."""

    def __init__(self, segmenter: Segmenter, images: list[Path]) -> None:
        self._feeds = self._prepare(segmenter, images)

    @staticmethod
    def _prepare(segmenter: Segmenter, images: list[Path]) -> Iterator[dict[str, np.ndarray]]:
        from dermseg.data.imageio import read_image

        for path in images:
            image = read_image(path)  # DataError naming the file when it cannot be read
            x = segmenter.network_input(image, segmenter.field_of_view(image))
            yield {INPUT_NAME: np.ascontiguousarray(x.cpu().numpy())}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantisation tools warn on the root logger about every 1-D constant they pass over
    ("Axis 1 is out-of-range for weight ..."); keep the user's terminal to real problems."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_onnx(
    onnx_path: str | Path,
    out_path: str | Path,
    calibration: str | Path,
    limit: int = DEFAULT_CALIBRATION_IMAGES,
) -> Path:
    """Quantise a float export to INT8 (static, QDQ), calibrated on images of ``calibration``.

    Args:
        onnx_path: a ``.onnx`` file written by :func:`dermseg.inference.export.export_onnx`.
        out_path: the INT8 ``.onnx`` file to write (atomically).
        calibration: a folder of training images (see :func:`calibration_images`).
        limit: calibration images to use at most.

    Returns:
        ``out_path``: same input, output and dermseg metadata as ``onnx_path``, plus
        ``dermseg_quantization`` (how it was quantised).

    Raises:
        ConfigError: onnx or onnxruntime is not installed.
        DataError: the calibration folder is missing or empty, a calibration image cannot be
            read, or ``onnx_path`` is not a dermseg export.
    """
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise ConfigError(f"INT8 quantisation needs onnx and onnxruntime: {INSTALL_HINT}") from None
    images = calibration_images(calibration, limit)  # fail on a bad folder before any work
    segmenter = Segmenter.from_onnx(onnx_path)  # DataError for a file that is not a dermseg export
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="dermseg-int8-") as tmp_dir:
        prepared = Path(tmp_dir) / "prepared.onnx"
        quantized = Path(tmp_dir) / "int8.onnx"
        with _quiet_root_logger():
            # ONNX shape inference and float graph optimisation first, as ONNX Runtime recommends;
            # its symbolic shape inference gives up on the dynamic sizes of timm encoders
            quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(quantized),
                _CalibrationReader(segmenter, images),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        proto = onnx.load(str(quantized))
    source = onnx.load(str(onnx_path), load_external_data=False)
    props: dict[str, Any] = {p.key: p.value for p in source.metadata_props}
    props[QUANTIZATION_KEY] = json.dumps(
        {
            "method": "static",
            "format": "QDQ",
            "weights": "int8 per channel",
            "activations": "uint8",
            "calibration_images": len(images),
        }
    )
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    proto.producer_name, proto.producer_version = source.producer_name, source.producer_version
    proto.doc_string = source.doc_string + " (INT8, static quantisation)"
    with atomic_path(out_path) as tmp:
        onnx.save(proto, str(tmp))
    logger.info("quantised %s to INT8 with %d calibration image(s)", onnx_path, len(images))
    return out_path


def export_int8(
    checkpoint_path: str | Path,
    out_path: str | Path,
    calibration: str | Path,
    limit: int = DEFAULT_CALIBRATION_IMAGES,
) -> Path:
    """Export a checkpoint to ONNX and quantise it to INT8 (:func:`quantize_onnx`).

    Raises:
        DataError: the checkpoint or the calibration folder is bad (the file is named).
        ConfigError: onnx or onnxruntime is not installed.
    """
    calibration_images(calibration, limit)  # a bad folder fails before the export
    with tempfile.TemporaryDirectory(prefix="dermseg-int8-") as tmp_dir:
        float_path = export_onnx(checkpoint_path, Path(tmp_dir) / "float.onnx")
        return quantize_onnx(float_path, out_path, calibration, limit)
