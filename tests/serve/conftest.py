"""Fixtures of the web-app tests: a stand-in model whose masks are known, and test images."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dermseg.inference.segmenter import Segmenter
from tests.browser import chromium_browser, new_page  # noqa: F401  (fixtures)

pytest.importorskip("starlette", reason="the serve extra is not installed (pip install -e '.[serve]')")

META = {
    "arch": "stand-in",
    "model_kwargs": {"encoder_name": "brightness"},
    "encoding": "multilabel",
    "input_size": 64,
    "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
    "thresholds": [0.5] * 5,
    "crop_background": False,
    "config": {"data": {"root": "/data/isic2018_task2"}},
}


class Brightness(torch.nn.Module):
    """Logits (mean RGB - 0.5) * 20 * (+1, -1, +1, -1, +1): bright pixels are globules,
    negative network and streaks; dark ones milia-like cysts and pigment network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(1, keepdim=True) - 0.5
        return torch.cat([m * 20, -m * 20, m * 20, -m * 20, m * 20], dim=1)


@pytest.fixture(scope="session")
def segmenter() -> Segmenter:
    return Segmenter.from_model(Brightness(), META)


def square_image(
    side: int, width: int = 160, height: int = 120, at: tuple[int, int] = (20, 20)
) -> np.ndarray:
    """A dark ``(height, width, 3)`` image with a bright ``side`` x ``side`` square at ``at`` (x, y)."""
    img = np.full((height, width, 3), 40, np.uint8)
    x, y = at
    img[y : y + side, x : x + side] = 230
    return img


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()
