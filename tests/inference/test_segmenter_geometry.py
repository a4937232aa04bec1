"""Prediction geometry: post-processing sizes follow the field of view the network saw, a PIL
image is taken as displayed (EXIF orientation), and the network's input is resized as in training.

Stand-in models with known outputs; expectations are computed by hand or by independent code
(OpenCV, albumentations' evaluation transform, Pillow's EXIF handling).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dermseg.attributes import ATTRIBUTES
from dermseg.data.transforms import TransformConfig, apply, build_eval_transform
from dermseg.inference.segmenter import Segmenter

IDENTITY = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


class BrightGlobules(torch.nn.Module):
    """Globules where the image is bright: logit ``(mean RGB - 0.5) * 20``; every other attribute
    is absent (logit -10)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x.mean(1, keepdim=True) - 0.5) * 20
        return torch.cat([m, torch.full_like(m, -10.0).expand(-1, 4, -1, -1)], dim=1)


class Recorder(torch.nn.Module):
    """Remembers its input; answers 0 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return torch.zeros(x.shape[0], 5, *x.shape[-2:])


def _meta(postprocess: dict, crop_background: bool = True, input_size: int = 64) -> dict:
    return {
        "encoding": "multilabel",
        "input_size": input_size,
        "normalization": IDENTITY,
        "postprocess": {"thresholds": [0.5] * 5, **postprocess},
        "postprocess_side": 64,
        "crop_background": crop_background,
    }


# A 300 x 300 photograph whose dermoscope field is the 300 x 180 band of columns 60..239 (black
# outside): the network sees that band, resized from short side 180 to 64. On it, a bright 34 px
# square (globules) and a bright 10 px speck.
SQUARE = (slice(133, 167), slice(133, 167))
SPECK = (slice(40, 50), slice(100, 110))


def _field_image() -> np.ndarray:
    img = np.zeros((300, 300, 3), np.uint8)
    img[:, 60:240] = (150, 100, 80)  # skin: mean 0.43, globules logit -1.4
    img[SQUARE] = 255
    img[SPECK] = 255
    return img


def test_opening_is_scaled_to_the_field_of_view() -> None:
    # Opening 9 px at the working side 64. By hand: the field's short side is 180, so the disk is
    # 9 * 180 / 64 = 25.3 -> 25 px: the 34 px square stays, the 10 px speck goes. (Scaled to the
    # whole image's short side, 300, it would be 9 * 300 / 64 = 42.2 -> 43 px: the square would go.)
    seg = Segmenter.from_model(BrightGlobules(), _meta({"opening": [9, 0, 0, 0, 0]}))
    out = seg(_field_image())
    assert out.masks[0, 150, 150], "the 34 px square must survive a 25 px opening"
    assert not out.masks[0, SPECK[0], SPECK[1]].any(), "the 10 px speck must be opened away"
    assert not out.masks[1:].any()
    assert np.array_equal(seg.masks(_field_image()), out.masks)
    assert (out.field.left, out.field.right, out.field.top, out.field.bottom) == (60, 240, 0, 300)


def test_min_area_is_scaled_to_the_field_of_view() -> None:
    # min_area 100 px at side 64 is 100 * (180 / 64)**2 = 791 px on the 180 px field: the square
    # (about 34 * 34 = 1156 px) is kept, the speck (100 px) removed. Scaled to the whole image it
    # would be 100 * (300 / 64)**2 = 2197 px and the square would be removed too.
    seg = Segmenter.from_model(BrightGlobules(), _meta({"min_area": [100, 0, 0, 0, 0]}))
    masks = seg(_field_image()).masks
    assert masks[0, 150, 150]
    assert not masks[0, SPECK[0], SPECK[1]].any()


def test_evaluation_scales_post_processing_to_the_field_of_view(tmp_path: Path) -> None:
    from dermseg.evaluation.model import evaluate_checkpoint, select_samples, tune_checkpoint

    folder = tmp_path / "data"
    folder.mkdir()
    Image.fromarray(_field_image()).save(folder / "ISIC_0000001.png")
    truth = np.zeros((300, 300), np.uint8)
    truth[SQUARE] = 255
    for name in ATTRIBUTES:
        Image.fromarray(truth if name == "globules" else np.zeros_like(truth)).save(
            folder / f"ISIC_0000001_attribute_{name}.png"
        )
    samples = select_samples(folder, "all", {})
    seg = Segmenter.from_model(BrightGlobules(), _meta({"opening": [9, 0, 0, 0, 0]}))
    scores = evaluate_checkpoint(seg, samples)
    # the square is found (its edges blur a pixel or two through the 64 px network input)
    assert scores["globules"]["jaccard"] > 0.8
    steps = {s["step"]: s["overall"] for s in tune_checkpoint(seg, samples)["steps"]}
    assert steps["+ opening"] > 0.8 * steps["thresholds only"] > 0


def _exif_rotated_jpeg(path: Path) -> np.ndarray:
    """Write a 40 x 60 (h x w) JPEG whose EXIF says "rotate 90 degrees clockwise to display";
    return the image as displayed, rotated by hand (60 x 40)."""
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:, :] = (150, 100, 80)
    stored[:, :20] = 255  # bright left third: globules there
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the stored picture is shown turned 90 degrees clockwise
    Image.fromarray(stored).save(path, quality=100, exif=exif)
    return np.rot90(stored, k=-1)  # clockwise: the bright third ends up at the top


def test_a_pil_image_is_segmented_as_displayed_like_its_file(tmp_path: Path) -> None:
    path = tmp_path / "ISIC_0000001.jpg"
    displayed = _exif_rotated_jpeg(path)
    seg = Segmenter.from_model(BrightGlobules(), _meta({}, crop_background=False, input_size=40))
    from_file = seg(path)
    with Image.open(path) as img:
        from_pil = seg(img)
    assert from_pil.masks.shape == from_file.masks.shape == (5, 60, 40)  # displayed size, by hand
    np.testing.assert_array_equal(from_pil.masks, from_file.masks)
    np.testing.assert_allclose(from_pil.probabilities, from_file.probabilities, atol=1e-6)
    # the bright third is at the top of the displayed image, as the hand-rotated copy says
    assert displayed.shape == (60, 40, 3) and displayed[:20].min() > 200
    assert from_pil.masks[0, :15].all() and not from_pil.masks[0, 25:].any()


@pytest.mark.parametrize("shape", [(30, 45), (48, 52), (100, 130), (257, 300)])
def test_the_network_input_is_resized_as_in_training(shape: tuple[int, int]) -> None:
    # Smaller images are enlarged to the working size, larger ones shrunk: prediction must give
    # the network the very pixels training's evaluation resize (albumentations) gives.
    rng = np.random.default_rng(shape[0])
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    model = Recorder()
    seg = Segmenter.from_model(model, _meta({}, crop_background=False))
    seg.probabilities(image)
    seen = model.seen[0][0].permute(1, 2, 0).numpy() * 255.0
    trained, _ = apply(build_eval_transform(TransformConfig(size=64, crop_size=64)), image)
    assert seen.shape == trained.shape
    np.testing.assert_allclose(seen, trained.astype(np.float64), atol=1e-3)
    # and by hand: bilinear when enlarging, area averaging when shrinking (OpenCV)
    method = cv2.INTER_LINEAR if min(shape) < 64 else cv2.INTER_AREA
    expected = cv2.resize(image, (trained.shape[1], trained.shape[0]), interpolation=method)
    np.testing.assert_allclose(seen, expected.astype(np.float64), atol=1e-3)
