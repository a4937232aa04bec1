"""Prediction at the original image size from a self-describing checkpoint.

:class:`Segmenter` applies the same preprocessing as training (background crop
detected from the image, short side resized to the checkpoint's input size, the
normalisation the checkpoint records), runs the model, and maps the probabilities of its
label set's ``C`` labels back to the original frame (zero outside the dermoscope's field).

A segmenter carries its model's :class:`~dermseg.labels.LabelSet` (:attr:`Segmenter.labels`):
what the ``C`` channels are, how their mask files are named, and which metric scores them.
It comes from the checkpoint's ``labels`` entry (:func:`~dermseg.labels.label_set_of`); a
checkpoint without one is a Task 2 model (the five attributes).

The model is either a PyTorch module (logits; the encoding's sigmoid/softmax is applied
here) or an ONNX Runtime session (:mod:`dermseg.inference.onnx_runtime`) over a graph exported
by :mod:`dermseg.inference.export`, which returns probabilities itself; everything around the
network is the same code for both.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from dermseg.data.background import CropBox, crop, detect_field_of_view
from dermseg.data.imageio import Decoded, decode_image, read_image, write_mask
from dermseg.data.lesion_box import MIN_SIDE_FRACTION
from dermseg.data.shape_limits import ShapeLimits
from dermseg.data.transforms import resize_short_side
from dermseg.encoding import num_output_channels, output_probabilities
from dermseg.errors import ConfigError, DataError
from dermseg.inference.export import export_onnx
from dermseg.inference.lesion_field import LesionBox, LesionField, field_description, trained_field
from dermseg.inference.onnx_runtime import OnnxRuntimeNet, require_onnxruntime
from dermseg.inference.postprocess import (
    PostprocessSettings,
    apply_postprocess,
    postprocess_from_meta,
    tuned_tta,
)
from dermseg.inference.tiling import Tiling, sliding_window, training_crop_size
from dermseg.labels import DEFAULT, LabelSet, label_set_of
from dermseg.models.checkpoint import load_checkpoint

#: Inference backends of :meth:`Segmenter.from_path`.
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device named by ``device`` (``cpu``, ``cuda``, ``cuda:1``), checked to exist here.

    Raises:
        ConfigError: not a device name, or a CUDA device this machine does not have.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"--device: unknown device {str(device)!r}; expected cpu or cuda") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type != "cpu":
        raise ConfigError(f"--device {device}: expected cpu or cuda")
    return dev


@dataclass
class Prediction:
    """What :class:`Segmenter` returns for one image, at the image's own size.

    Attributes:
        probabilities: ``(C, H, W)`` float32 in ``[0, 1]``, the label set's channel order
            (``C = 5`` for Task 2, 1 for a lesion set).
        masks: ``(C, H, W)`` bool, thresholded (and post-processed where configured).
        field: the part of the image the network saw (the detected field of view, the whole
            image, or a :class:`~dermseg.inference.lesion_field.LesionBox` chosen by a lesion
            model); the post-processing sizes were scaled to its short side.
    """

    probabilities: np.ndarray
    masks: np.ndarray
    field: CropBox | None = None

    @property
    def presence(self) -> np.ndarray:
        """``(C,)`` float, the maximum probability of each label (image-level presence)."""
        return self.probabilities.reshape(len(self.probabilities), -1).max(axis=1)


@dataclass
class Segmenter:
    """A model ready to segment images.

    Attributes:
        model: a network returning logits ``(B, C, h, w)``, or an
            :class:`~dermseg.inference.onnx_runtime.OnnxRuntimeNet` or
            :class:`~dermseg.inference.ensemble.EnsembleNet` returning ``(B, C, h, w)`` probabilities.
        encoding: ``multilabel`` or ``multiclass``.
        input_size: short side the image is resized to before the network.
        mean, std: normalisation (0-1 scale).
        postprocess: thresholds and optional opening / small-component removal / presence gate.
        postprocess_side: the image side the post-processing sizes are given for (the working
            size, the short side of the field the network sees); they are rescaled to the short
            side of each image's field of view, which is what the network's input was resized from.
        crop_background: crop to the dermoscope's field first.
        device: where the model runs.
        tta: average with horizontally and vertically flipped predictions (the setting used).
        tuned_tta: whether the thresholds were tuned with flip TTA, as the checkpoint's tuning
            record says; ``None`` when no record says (untuned thresholds, or ensemble members
            tuned differently). The ``from_*`` constructors use it as the default ``tta``.
        labels: what the model segments: its ``C`` output labels, their mask names, colours and
            metric (Task 2's five attributes for a checkpoint that does not say).
        lesion_field: a lesion model choosing the field (the lesion's box) inside the field of
            view (:meth:`use_lesion_model`); ``None``: the whole field of view.
        trained_field: what the model's training resized to the working size, ``("fov", None)``
            or ``("lesion", margin)`` (:func:`~dermseg.inference.lesion_field.trained_field`).
        limits: the largest aspect ratio and working long side accepted
            (:class:`~dermseg.data.shape_limits.ShapeLimits`; beyond them ``ImageShapeError``).
        tiling: predict by overlapping tiles at a chosen scale (:mod:`dermseg.inference.tiling`);
            ``None``: resize the field to the working size and run the network once.
        crop_size: the side of the model's training crops, the default tile side
            (:func:`~dermseg.inference.tiling.training_crop_size`); ``None``: ``input_size``.
        channels_last: feed a PyTorch model NHWC tensors (its weights converted once, by
            :meth:`use_channels_last`): on the CPU about twice as fast for the convolutions of
            these encoders (BENCHMARKS.md, ``predict-speed``), numerically equal to float rounding.
        draft_decode: read a large JPEG file at a reduced scale, as training reads it
            (:attr:`decode_side`; :meth:`read`); off by default (full scale): on the synthetic
            4288x2848 benchmark it lost more official Jaccard than the 0.005 a faster path may
            (BENCHMARKS.md, ``predict-speed``), so it is opt-in (``predict --draft-decode``).
    """

    model: nn.Module | OnnxRuntimeNet | Any
    encoding: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    postprocess: PostprocessSettings
    postprocess_side: int
    crop_background: bool = True
    device: torch.device = torch.device("cpu")
    tta: bool = False
    tuned_tta: bool | None = None
    labels: LabelSet = DEFAULT
    lesion_field: LesionField | None = None
    trained_field: tuple[str, float | None] = ("fov", None)
    limits: ShapeLimits = ShapeLimits()
    tiling: Tiling | None = None
    crop_size: int | None = None
    channels_last: bool = False
    draft_decode: bool = False

    def __post_init__(self) -> None:
        torch.set_flush_denormal(True)  # denormal weights make CPU inference many times slower
        if self.postprocess.num_labels != self.labels.num_labels:
            raise ValueError(
                f"postprocess has {self.postprocess.num_labels} value(s) per setting but label set "
                f"{self.labels.name} has {self.labels.num_labels} label(s)"
            )

    @property
    def tta_description(self) -> str:
        """Which flip TTA is used and why, e.g. ``flip TTA: on (as tuned)`` or
        ``flip TTA: off (overridden; the thresholds were tuned with it on)``."""
        used = "on" if self.tta else "off"
        if self.tuned_tta is None:
            return f"flip TTA: {used} (no tuning record says how the thresholds were tuned)"
        if self.tuned_tta == self.tta:
            return f"flip TTA: {used} (as tuned)"
        tuned = "on" if self.tuned_tta else "off"
        return f"flip TTA: {used} (overridden; the thresholds were tuned with it {tuned})"

    @property
    def tiling_description(self) -> str:
        """How the network sees the field: ``one resize to 192 px`` or the tiles
        (:meth:`~dermseg.inference.tiling.Tiling.description`)."""
        if self.tiling is None:
            return f"prediction: one resize of the field to {self.input_size} px (short side)"
        return f"prediction: {self.tiling.description(self.input_size, self.crop_size or self.input_size)}"

    @property
    def field_description(self) -> str:
        """What the network is shown and whether it matches its training, e.g.
        ``field: lesion box from lesion.safetensors (margin 0.2; ...) (as trained)``."""
        return field_description(self.trained_field, self.lesion_field)

    def use_lesion_model(
        self,
        lesion: Segmenter,
        margin: float | None = None,
        empty_outside: bool = False,
        name: str = "lesion model",
    ) -> None:
        """Let a lesion model choose this model's field: the predicted lesion's box with a margin.

        Args:
            lesion: a lesion model (one label, e.g. a checkpoint trained for ``isic2018_task1``).
            margin: skin around the lesion's box, as a fraction of its longer side; ``None``: the
                margin this model was trained with (``data.field: lesion``), else
                :data:`~dermseg.data.lesion_box.DEFAULT_MARGIN`.
            empty_outside: set probabilities outside the dilated predicted lesion to 0.
            name: the lesion model's file, for messages.

        Raises:
            DataError: ``lesion`` is not a one-label model, or this model is one itself.
            ValueError: ``margin`` out of ``[0, 2]``.
        """
        if self.labels.num_labels == 1:
            raise DataError(
                f"a lesion model chooses the field of a structure model, but this model segments "
                f"label set {self.labels.name} ({', '.join(self.labels.names)}) itself",
                name,
            )
        if margin is None:
            margin = self.trained_field[1] if self.trained_field[0] == "lesion" else None
        kwargs = {} if margin is None else {"margin": margin}
        lesion.limits = self.limits  # the lesion model sees the same images: the same shape limits
        self.lesion_field = LesionField(lesion, empty_outside=empty_outside, name=name, **kwargs)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", tta: bool | None = None) -> Segmenter:
        """Build a segmenter from a checkpoint alone.

        Args:
            path: a dermseg ``.safetensors`` checkpoint.
            device: ``cpu`` or ``cuda``.
            tta: flip test-time augmentation; ``None`` (default): as the checkpoint's thresholds
                were tuned (:func:`~dermseg.inference.postprocess.tuned_tta`; off when they were not tuned).

        Raises:
            DataError: the file is not a usable dermseg checkpoint (also: its label set is invalid,
                or its model has not one output channel per label of it).
            ConfigError: ``device`` is unknown or not on this machine.
        """
        resolve_device(device)  # before reading a large file
        ckpt = load_checkpoint(path)
        labels = checkpoint_label_set(ckpt.meta, path)
        classes = (ckpt.meta.get("model_kwargs") or {}).get("classes")
        try:
            wanted = num_output_channels(ckpt.meta["encoding"], labels.num_labels)
        except ValueError as err:
            raise DataError(f"checkpoint metadata is malformed ({err})", Path(path)) from None
        if classes is not None and classes != wanted:
            raise DataError(
                f"checkpoint's model has {classes} output channel(s) but its label set {labels.name} "
                f"({labels.num_labels} label(s), {ckpt.meta['encoding']}) needs {wanted}",
                Path(path),
            )
        model = ckpt.build_model()
        try:
            segmenter = cls.from_model(model, ckpt.meta, device=device, tta=tta)
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(
                f"checkpoint metadata is malformed ({type(err).__name__}: {err})", Path(path)
            ) from None
        if segmenter.device.type == "cpu":
            segmenter.use_channels_last()
        return segmenter

    @classmethod
    def from_model(
        cls, model: nn.Module, meta: dict[str, Any], device: str = "cpu", tta: bool | None = None
    ) -> Segmenter:
        """Wrap an in-memory model with the same description a checkpoint carries.

        ``tta=None`` follows the description's tuning record, as :meth:`from_checkpoint` does.
        """
        return cls._from_meta(model.to(resolve_device(device)).eval(), meta, device=device, tta=tta)

    @classmethod
    def from_onnx(
        cls, path: str | Path, device: str = "cpu", tta: bool | None = None, threads: int | None = None
    ) -> Segmenter:
        """Build a segmenter on ONNX Runtime from an exported ``.onnx`` file.

        The file is one written by :func:`dermseg.inference.export.export_onnx`; ``tta=None``
        follows the tuning record the export carries, as :meth:`from_checkpoint` does; ``threads``:
        the session's intra-op threads (``None``: ONNX Runtime's default).

        Raises:
            ConfigError: onnxruntime is not installed (``pip install 'dermseg[onnx]'``).
            DataError: the file is missing, not an ONNX model, or not one exported by dermseg.
        """
        net = OnnxRuntimeNet(path, device=device, threads=threads)
        try:
            return cls._from_meta(net, net.meta, device=device, tta=tta)
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"ONNX metadata is malformed ({type(err).__name__}: {err})", Path(path)) from None

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        backend: str | None = None,
        device: str = "cpu",
        tta: bool | None = None,
        threads: int | None = None,
    ) -> Segmenter:
        """Build a segmenter from a ``.safetensors`` checkpoint or a ``.onnx`` export.

        Args:
            path: the model file; a ``.onnx`` file always runs on ONNX Runtime.
            backend: ``torch`` or ``onnxruntime``; ``None`` picks by the file suffix. A checkpoint
                with ``onnxruntime`` is exported to a temporary ONNX file first.
            device: ``cpu`` or ``cuda``.
            tta: flip test-time augmentation; ``None`` (default): as the model's thresholds were
                tuned (off when they were not tuned).
            threads: ONNX Runtime's intra-op threads (``None``: its default); torch's are
                process-wide (``torch.set_num_threads``).

        Raises:
            ConfigError: unknown backend, ``torch`` asked for a ``.onnx`` file, or onnxruntime missing.
            DataError: the file is not a usable model.
        """
        if backend is not None and backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        path = Path(path)
        if path.suffix.lower() == ".onnx":
            if backend == "torch":
                raise ConfigError("an ONNX model runs with the onnxruntime backend, not torch", path)
            return cls.from_onnx(path, device=device, tta=tta, threads=threads)
        if backend != "onnxruntime":
            return cls.from_checkpoint(path, device=device, tta=tta)
        require_onnxruntime()  # fail before the export when the runtime is missing
        with tempfile.TemporaryDirectory(prefix="dermseg-onnx-") as tmp:
            onnx_path = export_onnx(path, Path(tmp) / f"{path.stem}.onnx")
            return cls.from_onnx(
                onnx_path, device=device, tta=tta, threads=threads
            )  # the session holds the graph

    @classmethod
    def _from_meta(
        cls, model: nn.Module | OnnxRuntimeNet, meta: dict[str, Any], device: str, tta: bool | None
    ) -> Segmenter:
        tuned = tuned_tta(meta)
        labels = checkpoint_label_set(meta)
        return cls(
            model=model,
            encoding=meta["encoding"],
            input_size=int(meta["input_size"]),
            mean=tuple(meta["normalization"]["mean"]),
            std=tuple(meta["normalization"]["std"]),
            postprocess=postprocess_from_meta(meta, labels.num_labels),
            postprocess_side=int(meta.get("postprocess_side", meta["input_size"])),
            crop_background=bool(meta.get("crop_background", True)),
            device=torch.device(device),
            tta=bool(tuned) if tta is None else bool(tta),
            tuned_tta=tuned,
            labels=labels,
            trained_field=trained_field(meta),
            crop_size=training_crop_size(meta),
        )

    @property
    def backend(self) -> str:
        """``torch``, ``onnxruntime``, or ``ensemble of N`` (see :mod:`dermseg.inference.ensemble`)."""
        members = getattr(self.model, "members", None)
        if members is not None:
            return f"ensemble of {len(members)}"
        return "torch" if isinstance(self.model, nn.Module) else "onnxruntime"

    def use_channels_last(self) -> None:
        """Run a PyTorch model in the channels-last (NHWC) memory format from now on
        (:attr:`channels_last`); ONNX models and ensembles are left as they are."""
        if isinstance(self.model, nn.Module):
            self.model.to(memory_format=torch.channels_last)
            self.channels_last = True

    def network_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w)`` normalised images -> ``(B, C, h, w)`` probabilities (no TTA, no resizing)."""
        if not isinstance(self.model, nn.Module):  # ONNX Runtime and ensembles give probabilities
            return self.model(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        probs = output_probabilities(self.model(x), self.encoding, self.labels.num_labels)
        return probs.contiguous()  # what follows (upsampling, numpy) reads NCHW

    def _tta_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w)`` -> ``(B, C, h, w)`` probabilities, averaged with the flipped ones under TTA."""
        probs = self.network_probabilities(x)
        if self.tta:
            probs = probs + self.network_probabilities(x.flip(-1)).flip(-1)
            probs = (probs + self.network_probabilities(x.flip(-2)).flip(-2)) / 3.0
        return probs

    @property
    def decode_side(self) -> int | None:
        """The short side a JPEG file is decoded down to (at least) by :meth:`read`, or ``None``
        for full scale (the default: :attr:`draft_decode` is off).

        With :attr:`draft_decode` on, the side training decoded at (``read_image(min_side=...)``:
        a power-of-two reduction in the JPEG decoder keeping both sides >= it): the working size,
        or for a model trained on lesion boxes (``data.field: lesion``) the working size over
        :data:`~dermseg.data.lesion_box.MIN_SIDE_FRACTION`. A 4288x2848 photograph then decodes
        about 8x faster. Always full scale with tiles (they look at the image's own resolution)
        and with a lesion model (its box may be a small part of the image).
        """
        if not self.draft_decode or self.tiling is not None or self.lesion_field is not None:
            return None
        if self.trained_field[0] == "lesion":
            return math.ceil(self.input_size / MIN_SIDE_FRACTION)
        return self.input_size

    def read(self, path: str | Path) -> Decoded:
        """Decode an image file for this model (at :attr:`decode_side`), EXIF orientation applied.

        Raises:
            DataError: the file cannot be read as an image.
        """
        return decode_image(path, self.decode_side)

    def predict(self, decoded: Decoded) -> Prediction:
        """Segment a decoded image (:meth:`read`) at its full size.

        The field of view is detected on the decoded pixels and mapped to the full frame, as
        training maps it (``CropBox.scaled`` then ``clipped``); the probabilities are upsampled
        into that box of the full frame and post-processed at its scale.

        Returns:
            The :class:`Prediction` at the full size ``decoded.size``; its ``field`` in full-frame
            coordinates.
        """
        field = self.field_of_view(decoded.pixels)
        probs = self.probabilities(decoded.pixels, field, size=decoded.size)
        full = full_frame_field(field, decoded)
        return Prediction(probabilities=probs, masks=self.binarise(probs, full), field=full)

    def field_of_view(self, image: np.ndarray) -> CropBox:
        """The part of ``image`` the network sees: the detected dermoscope field, or all of it,
        or, with a lesion model (:meth:`use_lesion_model`), the lesion's box inside that.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.

        Returns:
            The crop box in ``image``'s pixel coordinates (the full frame without background
            cropping); a :class:`~dermseg.inference.lesion_field.LesionBox` with a lesion model.
        """
        h, w = image.shape[:2]
        fov = detect_field_of_view(image) if self.crop_background else CropBox.full(h, w)
        return fov if self.lesion_field is None else self.lesion_field.locate(image, fov)

    def network_input(
        self, image: np.ndarray, field: CropBox, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """What the network sees of one image: its field cropped, resized and normalised.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            field: the field of view, from :meth:`field_of_view`.
            size: ``(H, W)`` of the full image when ``image`` is a reduced decode (:meth:`read`):
                the shape limits are checked on the full image, as its header gives it.

        Returns:
            ``(1, 3, h, w)`` float32 on :attr:`device`, short side the working size (the
            tiling's scale with tiles).

        Raises:
            ImageShapeError: the image or its field is beyond the shape limits.
        """
        # With tiles, the image is resized to the tiling's scale instead of the working size.
        side = self.input_size if self.tiling is None else self.tiling.working_side(self.input_size)
        full = Decoded(image, image.shape[:2] if size is None else (int(size[0]), int(size[1])))
        # before the resize: an elongated image would take unbounded memory
        self.limits.check_image(*full.size)
        checked = full_frame_field(field, full)
        self.limits.check_working(checked.height, checked.width, side)
        cropped = np.ascontiguousarray(crop(image, field, channels_last=True))
        # Resized in uint8 exactly as training's resize does (area averaging when shrinking,
        # bilinear when enlarging), before any float copy: a full-resolution image is never
        # held as floats.
        small = resize_short_side(cropped, side)
        x = (
            torch.from_numpy(np.ascontiguousarray(small))
            .permute(2, 0, 1)[None]
            .to(self.device, torch.float32)
        )
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return (x / 255.0 - mean) / std

    @torch.no_grad()
    def probabilities(
        self, image: np.ndarray, field: CropBox | None = None, size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """Label probabilities of one image at its own size (or at its full size ``size``).

        Args:
            image: ``(h, w, 3)`` uint8 RGB.
            field: the field of view to run the network on, in ``image``'s coordinates, from
                :meth:`field_of_view` (detected here when ``None``).
            size: ``(H, W)`` of the frame to return, when ``image`` is a reduced decode of a
                larger image (:meth:`read`); ``None``: ``image``'s own size.

        Returns:
            ``(C, H, W)`` float32 in ``[0, 1]``; 0 outside the field of view (and outside the
            region a :class:`~dermseg.inference.lesion_field.LesionBox` keeps).
        """
        if isinstance(self.model, nn.Module):
            self.model.eval()
        box = self.field_of_view(image) if field is None else field
        x = self.network_input(image, box, size)
        if size is not None and tuple(size) != tuple(image.shape[:2]):
            if isinstance(box, LesionBox) and box.region is not None:
                raise ValueError("a lesion box with a region is predicted at the decoded image's own size")
            box = full_frame_field(box, Decoded(image, (int(size[0]), int(size[1]))))
        h, w = (image.shape[0], image.shape[1]) if size is None else (int(size[0]), int(size[1]))
        if self.tiling is None:
            probs = self._tta_forward(x)
        else:
            tile = self.tiling.tile_side(self.crop_size or self.input_size)
            probs = sliding_window(x, self._tta_forward, tile, self.tiling.overlap, self.tiling.batch)
        # Upsample each label straight into its box of the output frame (0 outside the field of
        # view): no full-size temporary. OpenCV's bilinear resize has the same sampling as
        # torch's bilinear with align_corners=False (half-pixel centres, edges clamped), values
        # equal to ~5e-5, and is several times faster at 4288x2848 (BENCHMARKS.md, predict-speed).
        small = probs[0].float().cpu().numpy()
        out = np.zeros((small.shape[0], h, w), dtype=np.float32)
        for k in range(small.shape[0]):
            view = out[k, box.top : box.bottom, box.left : box.right]
            up = cv2.resize(small[k], (box.width, box.height), dst=view, interpolation=cv2.INTER_LINEAR)
            if up is not view:  # OpenCV wrote elsewhere (it may, for a layout it cannot use)
                view[...] = up
        if isinstance(box, LesionBox) and box.region is not None:
            out *= box.region
        return out

    def masks(self, image: np.ndarray) -> np.ndarray:
        """Binary masks ``(C, H, W)`` bool of one image (probabilities above the thresholds)."""
        field = self.field_of_view(image)
        return self.binarise(self.probabilities(image, field), field)

    def postprocess_for(self, field: CropBox) -> PostprocessSettings:
        """The post-processing settings in pixels of an image whose field of view is ``field``.

        The configured sizes are for a field whose short side is :attr:`postprocess_side` (the
        working size the network sees); they scale with the short side of ``field``, the part of
        the image that was resized to the working size, not with the whole image's.
        """
        return self.postprocess.rescaled(self.postprocess_side, min(field.height, field.width))

    def binarise(self, probs: np.ndarray, field: CropBox) -> np.ndarray:
        """``(C, H, W)`` probabilities -> bool masks: thresholds, then the configured post-processing.

        Args:
            probs: ``(C, H, W)`` probabilities of :meth:`probabilities`.
            field: the field of view they were predicted on (:meth:`field_of_view`); opening
                kernels and minimum areas are scaled to its short side.

        Returns:
            ``(C, H, W)`` bool.
        """
        return apply_postprocess(probs, self.postprocess_for(field))

    @property
    def thresholds(self) -> np.ndarray:
        """``(C,)`` probability thresholds."""
        return np.asarray(self.postprocess.thresholds, dtype=np.float64)

    def __call__(self, image: np.ndarray | Image.Image | str | Path) -> Prediction:
        """Segment one image given as an ``(H, W, 3)`` uint8 array, a PIL image or a file path.

        A PIL image and a file are both taken as displayed: their EXIF orientation is applied.
        A file is decoded as training decodes it (:meth:`read`: a large JPEG at a reduced scale),
        an array or a PIL image is used as given; the masks are at the image's full size either way.

        Raises:
            DataError: the file cannot be read as an image.
        """
        if isinstance(image, (str, Path)):
            return self.predict(self.read(image))
        if isinstance(image, Image.Image):
            # as read_image does for a file: the image as displayed, EXIF orientation applied
            array = np.array(ImageOps.exif_transpose(image).convert("RGB"))
        else:
            array = np.asarray(image)
            if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
                raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {array.shape} {array.dtype}")
        field = self.field_of_view(array)
        probs = self.probabilities(array, field)
        return Prediction(probabilities=probs, masks=self.binarise(probs, field), field=field)

    def predict_file(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """Read an image file at full scale and return it with its ``(C, H, W)`` probabilities."""
        image = read_image(path)
        return image, self.probabilities(image)


def full_frame_field(field: CropBox, decoded: Decoded) -> CropBox:
    """A box in ``decoded.pixels``' coordinates mapped to the full image's, as training maps
    its crop boxes (rounded outwards, then clipped to the frame); ``field`` itself when the
    image was decoded at full scale."""
    if not decoded.reduced:
        return field
    (h, w), (full_h, full_w) = decoded.pixels.shape[:2], decoded.size
    return field.scaled(full_w / w, full_h / h).clipped(full_h, full_w)


def checkpoint_label_set(meta: dict[str, Any], path: str | Path | None = None) -> LabelSet:
    """The label set a checkpoint's (or an ONNX export's) description names.

    Its ``labels`` entry, else its config's ``data.labels``, else Task 2's
    (:func:`~dermseg.labels.label_set_of`): a checkpoint written before label sets is a Task 2 model.

    Raises:
        DataError: the entry is not a valid label set (naming ``path`` when given).
    """
    try:
        return label_set_of(meta)
    except ConfigError as err:
        raise DataError(f"checkpoint metadata: invalid label set ({err})", path) from None


def require_label_set(model: LabelSet, data: LabelSet, model_path: str | Path, where: str) -> None:
    """Refuse a model on data of another label set.

    Args:
        model: the model's label set (:attr:`Segmenter.labels`).
        data: the label set of the data or truth it is to be used on (given, or detected).
        model_path: the model file (named first in the message).
        where: what holds ``data``, for the message: a folder, or ``--labels ph2``.

    Raises:
        DataError: the sets differ, e.g. ``best.safetensors: segments label set isic2018_task2
            (globules, ...), not label set ph2 (lesion) of ph2_sample; use a model trained for ph2``.
    """
    if same_label_set(model, data):
        return
    raise DataError(
        f"segments label set {model.name} ({', '.join(model.names)}), not label set {data.name} "
        f"({', '.join(data.names)}) of {where}; use a model trained for {data.name}",
        model_path,
    )


def same_label_set(a: LabelSet, b: LabelSet) -> bool:
    """Whether two label sets describe the same masks: same name, labels in the same order, same
    file names and metric (display names, colours and descriptions may differ)."""
    return (a.name, a.names, a.mask_pattern, a.metric) == (b.name, b.names, b.mask_pattern, b.metric)


def write_submission_masks(
    out_dir: str | Path, isic_id: str, masks: np.ndarray, labels: LabelSet = DEFAULT
) -> list[Path]:
    """Write the masks of one image, named as ``labels`` names them (0/255 PNG, image size).

    Task 2: ``ISIC_<id>_attribute_<name>.png`` for the five attributes; ``ph2``:
    ``IMDxxx_lesion.png``; ``isic2018_task1``: ``ISIC_<id>_segmentation.png``.

    Args:
        out_dir: the folder.
        isic_id: the image id (the image file's stem).
        masks: ``(C, H, W)`` bool, one per label of ``labels``.
        labels: the label set (Task 2's by default).

    All or none: each file is written atomically, and when one cannot be written
    (disk full, ...) those already written by this call are removed again.

    Raises:
        ValueError: ``masks`` has not one channel per label.
    """
    if len(masks) != labels.num_labels:
        raise ValueError(
            f"expected {labels.num_labels} mask(s) for label set {labels.name}, got {len(masks)}"
        )
    out_dir = Path(out_dir)
    paths: list[Path] = []
    try:
        for k, name in enumerate(labels.names):
            path = out_dir / labels.mask_name(isic_id, name)
            write_mask(path, masks[k])
            paths.append(path)
    except BaseException:
        for path in paths:
            path.unlink(missing_ok=True)
        raise
    return paths
