"""Flip test-time augmentation averages the flipped predictions."""

from __future__ import annotations

import numpy as np
import torch

from dermseg.inference.segmenter import Segmenter


class _LeftToRight(torch.nn.Module):
    """Logits that rise from left to right whatever the image: not flip-invariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-4.0, 4.0, x.shape[-1])
        return ramp.expand(x.shape[0], 5, x.shape[-2], x.shape[-1]).clone()


def test_flip_tta_averages_the_flipped_predictions() -> None:
    meta = {
        "encoding": "multilabel",
        "input_size": 64,
        "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        "thresholds": [0.5] * 5,
        "crop_background": False,
    }
    image = np.full((64, 96, 3), 120, np.uint8)
    plain = Segmenter.from_model(_LeftToRight(), meta).probabilities(image)
    tta = Segmenter.from_model(_LeftToRight(), meta, tta=True).probabilities(image)
    # plain: (p + p + p) / 3 without flips; TTA: (p + hflip(p) + vflip(p)) / 3, by hand
    np.testing.assert_allclose(tta, (2 * plain + plain[:, :, ::-1]) / 3, atol=1e-5)
    assert plain[0, 0, -1] - plain[0, 0, 0] > 0.9  # the ramp...
    assert abs(tta[0, 0, -1] - tta[0, 0, 0]) < plain[0, 0, -1] - plain[0, 0, 0]  # ...flattened by TTA
