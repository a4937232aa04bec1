"""Tiled prediction: a sliding window over the field at a chosen scale, blended with Gaussian weights.

The one-resize path shrinks the whole field to the working size and runs the network once. With
:class:`Tiling` the field is resized to a working image at a chosen scale instead, and the
network runs on overlapping square tiles of it, as nnU-Net's sliding-window predictor does:

* **scale**: :attr:`Tiling.scale` is the size of a network pixel in pixels of the one-resize
  path's working image (whose short side is the model's ``input_size``, the scale the model was
  trained at). ``1.0`` keeps that scale (the tiles then only bound memory and batch the work);
  ``0.5`` puts twice as many network pixels on each side of the field (finer detail, structures
  twice as large as in training).
* **tiles**: squares of the model's training crop (``data.crop_size`` of the checkpoint's config,
  else its ``input_size``), shrunk to the working image's side where that is shorter. Along each
  axis the tiles start at :func:`tile_starts`: the first at 0, the last ending at the edge, the
  rest spread evenly between, at most ``(1 - overlap) x tile`` apart. No tile reaches past the
  image, so there is no padding to leak into the predictions.
* **blending**: each tile's probabilities are weighted by a Gaussian centred on the tile (sigma
  1/8 of its side, :func:`gaussian_weights`): its centre, where the network sees the most
  context, counts most. The weighted sums are divided by the summed weights, so a model whose
  output is constant gives that constant everywhere.
* **memory**: the blended probabilities are accumulated at the working resolution only
  (``C + 1`` float maps of the working image); the segmenter upsamples them into the output
  frame one label at a time, as the one-resize path does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

#: Default overlap of neighbouring tiles, as a fraction of the tile side (nnU-Net's step of half a tile).
DEFAULT_OVERLAP: float = 0.5

#: Default number of tiles per forward pass.
DEFAULT_BATCH: int = 4

#: Sigma of the blending Gaussian, as a fraction of the tile side (as nnU-Net).
SIGMA_FRACTION: float = 1 / 8

#: The scales accepted: at most 4x finer (16x the pixels) or 2x coarser than the training scale (a
#: working image much smaller than training's gives the network too little to see).
SCALE_RANGE: tuple[float, float] = (0.25, 2.0)

#: The largest overlap accepted (0.9: tiles a tenth of a side apart).
MAX_OVERLAP: float = 0.9


@dataclass(frozen=True)
class Tiling:
    """How a segmenter predicts by tiles.

    Attributes:
        scale: size of a network pixel in pixels of the one-resize working image (``1.0``: the
            training scale; ``0.5``: twice the resolution), in :data:`SCALE_RANGE`.
        overlap: overlap of neighbouring tiles as a fraction of the tile side, in ``[0, 0.9]``.
        batch: tiles per forward pass, >= 1.
        size: tile side in network pixels; ``None``: the model's training crop.

    Raises:
        ValueError: a setting out of range.
    """

    scale: float = 1.0
    overlap: float = DEFAULT_OVERLAP
    batch: int = DEFAULT_BATCH
    size: int | None = None

    def __post_init__(self) -> None:
        low, high = SCALE_RANGE
        if not _number(self.scale) or not low <= self.scale <= high:
            raise ValueError(f"the tile scale must be a number in [{low:g}, {high:g}], got {self.scale!r}")
        if not _number(self.overlap) or not 0.0 <= self.overlap <= MAX_OVERLAP:
            raise ValueError(
                f"the tile overlap must be a number in [0, {MAX_OVERLAP:g}], got {self.overlap!r}"
            )
        if not _integer(self.batch) or self.batch < 1:
            raise ValueError(f"the tile batch must be an integer >= 1, got {self.batch!r}")
        if self.size is not None and (not _integer(self.size) or self.size < 1):
            raise ValueError(f"the tile size must be an integer >= 1, got {self.size!r}")

    def working_side(self, input_size: int) -> int:
        """The short side of the working image: ``input_size / scale``, rounded."""
        return max(1, round(input_size / self.scale))

    def tile_side(self, crop_size: int) -> int:
        """The tile side: :attr:`size`, else the model's training crop ``crop_size``."""
        return crop_size if self.size is None else self.size

    def description(self, input_size: int, crop_size: int) -> str:
        """E.g. ``tiles: 160 px, overlap 0.5, 4 per batch, short side 384 (scale 0.5 of the training
        scale)``."""
        return (
            f"tiles: {self.tile_side(crop_size)} px, overlap {self.overlap:g}, {self.batch} per batch, "
            f"short side {self.working_side(input_size)} (scale {self.scale:g} of the training scale)"
        )


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


def training_crop_size(meta: dict[str, Any]) -> int:
    """The side of the crops a model was trained on: ``data.crop_size`` of the config in its
    description (an ONNX export's copy of the checkpoint's description too), else ``input_size``."""
    config = meta.get("config")
    if not isinstance(config, dict) and isinstance(meta.get("checkpoint_meta"), dict):
        config = meta["checkpoint_meta"].get("config")
    data = config.get("data") if isinstance(config, dict) else None
    crop = data.get("crop_size") if isinstance(data, dict) else None
    return int(crop) if _integer(crop) and crop > 0 else int(meta["input_size"])


def tile_starts(length: int, tile: int, overlap: float = DEFAULT_OVERLAP) -> list[int]:
    """Where the tiles along one axis start.

    The first tile starts at 0 and the last ends at ``length``; the others are spread evenly
    between, so that neighbours are at most ``(1 - overlap) * tile`` apart (at least one pixel).

    Args:
        length: the axis's length in pixels, >= 1.
        tile: the tile's length, clipped to ``length``.
        overlap: the least overlap of neighbours as a fraction of ``tile``, in ``[0, 1)``.

    Returns:
        Increasing start positions; ``[0]`` when one tile covers the axis.
    """
    tile = min(tile, length)
    step = max(1.0, (1.0 - overlap) * tile)
    gaps = math.ceil((length - tile) / step - 1e-9)
    if gaps <= 0:
        return [0]
    return [round(k * (length - tile) / gaps) for k in range(gaps + 1)]


def tile_boxes(
    height: int, width: int, tile: int, overlap: float = DEFAULT_OVERLAP
) -> list[tuple[int, int, int, int]]:
    """The tiles over a ``height`` x ``width`` image, row by row.

    Returns:
        ``(top, left, bottom, right)`` half-open boxes, each ``min(tile, height)`` x
        ``min(tile, width)``, together covering the image.
    """
    th, tw = min(tile, height), min(tile, width)
    return [
        (top, left, top + th, left + tw)
        for top in tile_starts(height, tile, overlap)
        for left in tile_starts(width, tile, overlap)
    ]


def gaussian_weights(height: int, width: int, sigma_fraction: float = SIGMA_FRACTION) -> torch.Tensor:
    """``(height, width)`` float32 blending weights: a Gaussian centred on the tile, peak 1.

    Sigma is ``sigma_fraction`` of each side; the weights are the product of one Gaussian per
    axis, symmetric about the tile's centre (so flipped tiles weigh the same), and positive
    everywhere (at a corner of a square tile with sigma 1/8 about ``exp(-16)``, 1e-7).
    """

    def axis(n: int) -> torch.Tensor:
        position = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
        return torch.exp(-0.5 * (position / (sigma_fraction * n)) ** 2)

    return (axis(height)[:, None] * axis(width)[None, :]).float()


def _batches(boxes: list[tuple[int, int, int, int]], size: int) -> Iterator[list[tuple[int, int, int, int]]]:
    for start in range(0, len(boxes), size):
        yield boxes[start : start + size]


def sliding_window(
    x: torch.Tensor,
    forward: Callable[[torch.Tensor], torch.Tensor],
    tile: int,
    overlap: float = DEFAULT_OVERLAP,
    batch: int = DEFAULT_BATCH,
) -> torch.Tensor:
    """Probabilities of a working image, predicted tile by tile and blended with Gaussian weights.

    Args:
        x: ``(1, 3, h, w)`` the normalised working image.
        forward: ``(B, 3, th, tw)`` tiles -> ``(B, C, th, tw)`` probabilities (flip TTA included).
        tile: the tile side (clipped to ``h`` and ``w``).
        overlap: least overlap of neighbouring tiles as a fraction of the side.
        batch: tiles per call of ``forward``.

    Returns:
        ``(1, C, h, w)`` float32 probabilities on ``x``'s device: the Gaussian-weighted mean of the
        tiles covering each pixel.

    Raises:
        ValueError: ``x`` is not one ``(1, 3, h, w)`` image.
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one (1, 3, h, w) image, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    boxes = tile_boxes(h, w, tile, overlap)
    weights = gaussian_weights(min(tile, h), min(tile, w)).to(x.device)
    total: torch.Tensor | None = None  # (C, h, w) weighted sums, allocated once C is known
    weight_sum = torch.zeros((h, w), dtype=torch.float32, device=x.device)
    for group in _batches(boxes, batch):
        tiles = torch.cat([x[:, :, t:b, le:r] for t, le, b, r in group])
        probs = forward(tiles).float()
        if total is None:
            total = torch.zeros((probs.shape[1], h, w), dtype=torch.float32, device=x.device)
        for (t, le, b, r), p in zip(group, probs, strict=True):
            total[:, t:b, le:r] += p * weights
            weight_sum[t:b, le:r] += weights
    assert total is not None  # tile_boxes always gives at least one tile
    return total.div_(weight_sum)[None]
