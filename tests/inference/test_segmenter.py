from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dermseg.attributes import ATTRIBUTES
from dermseg.data.imageio import read_mask
from dermseg.inference.segmenter import Segmenter, write_submission_masks

META = {
    "encoding": "multilabel",
    "input_size": 64,
    "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
    "thresholds": [0.5] * 5,
    "crop_background": True,
}


class Brightness(torch.nn.Module):
    """A stand-in model whose logits are known: channel k = (mean RGB - 0.5) * 20 * sign_k."""

    dermseg_arch = "test"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(1, keepdim=True) - 0.5
        return torch.cat([m * 20, -m * 20, m * 20, -m * 20, m * 20], dim=1)


def _image() -> np.ndarray:
    # 90 x 150 image: black bars (a dermoscope border) left and right, bright left half of the field
    img = np.zeros((90, 150, 3), np.uint8)
    img[:, 30:120] = (150, 100, 80)  # skin-coloured field: mean 0.43 -> logit -1.4 on channel 0
    img[:, 30:75] = (230, 200, 190)  # brighter half: mean 0.81 -> logit +6.2
    return img


def test_probabilities_are_mapped_back_to_the_original_frame() -> None:
    seg = Segmenter.from_model(Brightness(), META)
    probs = seg.probabilities(_image())
    assert probs.shape == (5, 90, 150) and probs.dtype == np.float32
    # the dark border is cut away before the model and filled with 0 afterwards
    assert np.all(probs[:, :, :25] == 0) and np.all(probs[:, :, 125:] == 0)
    # inside the field the known stand-in model's answer comes back at the right place
    assert probs[0, 45, 40] > 0.99 and probs[1, 45, 40] < 0.01
    assert probs[0, 45, 110] == pytest.approx(1 / (1 + np.exp(1.4)), abs=0.03)
    assert probs[1, 45, 110] == pytest.approx(1 / (1 + np.exp(-1.4)), abs=0.03)
    masks = seg.masks(_image())
    assert masks.dtype == bool and masks[0, :, 35:70].all() and not masks[0, :, 80:].any()


def test_flip_tta_keeps_geometry() -> None:
    seg = Segmenter.from_model(Brightness(), META)
    plain = seg.probabilities(_image())
    seg.tta = True
    np.testing.assert_allclose(seg.probabilities(_image()), plain, atol=1e-5)


def test_submission_masks(tmp_path: Path) -> None:
    masks = np.zeros((5, 7, 9), bool)
    masks[3, 2:4, 1:5] = True
    paths = write_submission_masks(tmp_path, "ISIC_0000042", masks)
    assert [p.name for p in paths] == [f"ISIC_0000042_attribute_{a}.png" for a in ATTRIBUTES]
    assert np.array_equal(read_mask(paths[3]), masks[3]) and not read_mask(paths[0]).any()


def test_overlay_colours_only_masked_pixels() -> None:
    from dermseg.attributes import COLOURS
    from dermseg.inference.overlay import overlay

    image = np.full((20, 20, 3), 100, np.uint8)
    masks = np.zeros((5, 20, 20), bool)
    masks[3, 5:15, 5:15] = True
    out = overlay(image, masks, alpha=1.0, outline=False)
    assert np.array_equal(out[10, 10], np.array(COLOURS["pigment_network"], np.uint8))
    assert np.array_equal(out[0, 0], image[0, 0])
    with pytest.raises(ValueError):
        overlay(image, masks[:4])


def test_checkpoint_post_processing_is_applied_at_the_image_size() -> None:
    img = np.full((80, 80, 3), (150, 100, 80), np.uint8)  # skin-coloured: channel 0 negative
    img[40:42, 40:42] = 255  # a 2x2 bright speck: channel 0 positive there
    img[5:35, 5:35] = 255  # a 30x30 bright block
    plain = Segmenter.from_model(Brightness(), {**META, "crop_background": False})
    assert plain.masks(img)[0, 40, 40] and plain.masks(img)[0, 20, 20]
    opened_meta = {
        **META,
        "crop_background": False,
        "postprocess": {"thresholds": [0.5] * 5, "opening": [5, 0, 0, 0, 0]},
        "postprocess_side": 80,
    }
    opened = Segmenter.from_model(Brightness(), opened_meta)
    masks = opened.masks(img)
    assert not masks[0, 40, 40] and masks[0, 20, 20]  # the speck is opened away, the block stays
    assert opened.thresholds.tolist() == [0.5] * 5


def test_a_checkpoint_runs_channels_last_on_the_cpu_with_the_same_probabilities(tmp_path: Path) -> None:
    from dermseg.models.checkpoint import load_checkpoint
    from tests.conftest import write_tiny_checkpoint

    path = write_tiny_checkpoint(tmp_path / "tiny.safetensors")
    seg = Segmenter.from_checkpoint(path)
    assert seg.channels_last
    conv = next(m for m in seg.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    # the same weights in the default format, loaded independently of the segmenter
    ckpt = load_checkpoint(path)
    plain = Segmenter.from_model(ckpt.build_model(), ckpt.meta)
    assert not plain.channels_last
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    got, expected = seg.probabilities(image), plain.probabilities(image)
    assert got.flags.c_contiguous and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)
