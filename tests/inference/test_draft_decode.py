"""With draft decoding (opt-in), a large JPEG is read for the network at a reduced scale, as
training reads it, and predicted at its full size (Segmenter.read / Segmenter.predict,
predict's --draft-decode).

Expectations by hand: Pillow's draft mode keeps the largest power-of-two reduction whose sides
stay >= the ones asked for; stand-in models with known outputs paint known rectangles.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermseg.cli import main
from dermseg.data.imageio import decode_image, full_pixels, mask_image, read_image, read_mask
from dermseg.data.lesion_box import MIN_SIDE_FRACTION
from dermseg.data.shape_limits import ImageShapeError, ShapeLimits
from dermseg.inference.folder import predict_images
from dermseg.inference.segmenter import Segmenter
from dermseg.inference.tiling import Tiling
from tests.conftest import write_tiny_checkpoint

IDENTITY = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}

# A 2048 x 1536 photograph: black outside the dermoscope's field (columns 256..1791), skin inside,
# and a white rectangle (rows 400..1000, columns 600..1400) the stand-in model calls globules.
H, W = 1536, 2048
FIELD = (0, 256, H, 1792)  # top, left, bottom, right
RECT = (slice(400, 1000), slice(600, 1400))


class BrightGlobules(torch.nn.Module):
    """Globules where the image is bright (logit ``(mean RGB - 0.5) * 20``); nothing else."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x.mean(1, keepdim=True) - 0.5) * 20
        return torch.cat([m, torch.full_like(m, -10.0).expand(-1, 4, -1, -1)], dim=1)


def _photo() -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[:, FIELD[1] : FIELD[3]] = (150, 100, 80)
    img[RECT] = 255
    return img


def _segmenter(input_size: int = 64, postprocess: dict | None = None) -> Segmenter:
    meta = {
        "encoding": "multilabel",
        "input_size": input_size,
        "normalization": IDENTITY,
        "postprocess": {"thresholds": [0.5] * 5, **(postprocess or {})},
        "postprocess_side": input_size,
        "crop_background": True,
    }
    seg = Segmenter.from_model(BrightGlobules(), meta)
    assert seg.decode_side is None  # full scale unless asked
    seg.draft_decode = True
    return seg


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("draft") / "ISIC_0000001.jpg"
    Image.fromarray(_photo()).save(path, quality=95)
    return path


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_a_large_jpeg_is_decoded_reduced_and_knows_its_full_size(photo: Path, tmp_path: Path) -> None:
    # min side 100: 1536 // 100 = 15 -> the decoder's largest reduction keeping both sides >= 1536/15
    # and 2048/15 is 1/8: 256 x 192 (1/16 does not exist).
    decoded = decode_image(photo, 100)
    assert decoded.pixels.shape == (192, 256, 3) and decoded.size == (H, W) and decoded.reduced
    # min side 400: 1536 // 400 = 3 -> sides >= 512 x 682 -> 1/2 (1024 x 768); 1/4 would be 384 rows
    assert decode_image(photo, 400).pixels.shape == (768, 1024, 3)
    full = decode_image(photo)
    assert full.pixels.shape == (H, W, 3) and not full.reduced
    assert full_pixels(decode_image(photo, 100), photo).shape == (H, W, 3)
    # a PNG has no draft mode: full scale whatever is asked
    png = tmp_path / "p.png"
    Image.fromarray(_photo()[:400, :600]).save(png)
    assert decode_image(png, 50).pixels.shape == (400, 600, 3)


def test_the_full_size_is_as_displayed_under_exif_rotation(tmp_path: Path) -> None:
    path = tmp_path / "r.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 2048 wide x 1536 high, displayed rotated: 1536 wide x 2048 high
    Image.fromarray(_photo()).save(path, exif=exif.tobytes(), quality=90)
    decoded = decode_image(path, 100)
    assert decoded.size == (W, H)
    assert decoded.pixels.shape == (256, 192, 3)
    assert decoded.size == read_image(path).shape[:2]


def test_a_reduced_decode_is_predicted_on_the_full_resolution_pixels(photo: Path) -> None:
    seg = _segmenter(input_size=192)
    assert seg.decode_side == 192
    decoded = seg.read(photo)
    assert decoded.pixels.shape == (192, 256, 3)  # 1536 // 192 = 8 -> 1/8
    pred = seg.predict(decoded)
    assert pred.masks.shape == (5, H, W) and pred.probabilities.shape == (5, H, W)
    # the rectangle lands on its full-resolution pixels, to one decoded pixel (8 px) at its edges
    rows, cols = np.nonzero(pred.masks[0])
    found = (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)
    expected = (RECT[0].start, RECT[0].stop, RECT[1].start, RECT[1].stop)
    assert all(abs(a - b) <= 8 for a, b in zip(found, expected, strict=True)), found
    truth = np.zeros((H, W), bool)
    truth[RECT] = True
    assert _iou(pred.masks[0], truth) > 0.97
    assert not pred.masks[1:].any()
    # the field of view, found on the 256 x 192 pixels, is mapped to the full frame (8 px a pixel)
    field = (pred.field.top, pred.field.left, pred.field.bottom, pred.field.right)
    assert all(abs(a - b) <= 8 for a, b in zip(field, FIELD, strict=True)), field
    outside = np.ones((H, W), bool)
    outside[pred.field.top : pred.field.bottom, pred.field.left : pred.field.right] = False
    assert not pred.probabilities[:, outside].any(), "nothing outside the field of view"
    # the same as from a full-scale decode, to a few pixels along the rectangle's edges
    seg.draft_decode = False
    full = seg(photo)
    assert not seg.read(photo).reduced
    assert _iou(full.masks[0], pred.masks[0]) > 0.97
    # a path is read the same way by __call__
    seg.draft_decode = True
    assert np.array_equal(seg(photo).masks, pred.masks)


def test_post_processing_sizes_follow_the_full_frame_field(photo: Path) -> None:
    # Minimum area 300 px at the working side 192. By hand: the full-frame field's short side is
    # 1536, so the area scales by (1536 / 192)^2 = 64 -> 19200 px: the 600 x 800 rectangle (480000 px)
    # stays. Scaled on the 192-row decoded field instead it would stay too, so add a 100 x 100 white
    # speck (10000 px): gone at full-frame scale, kept if the reduced field were used (300 px).
    image = _photo()
    image[1200:1300, 400:500] = 255
    path = photo.parent / "speck.jpg"
    Image.fromarray(image).save(path, quality=95)
    seg = _segmenter(input_size=192, postprocess={"min_area": [300, 0, 0, 0, 0]})
    pred = seg.predict(seg.read(path))
    assert pred.masks[0, 700, 1000], "the rectangle stays"
    assert not pred.masks[0, 1200:1300, 400:500].any(), "the speck is below the full-frame minimum area"
    plain = _segmenter(input_size=192).predict(seg.read(path))
    assert plain.masks[0, 1250, 450], "without the minimum area the speck is found"


def test_shape_limits_are_checked_on_the_full_image(tmp_path: Path) -> None:
    # 2048 x 800 is 2.56:1; reduced to 1/4 it is 512 x 200, also 2.56:1, but the error must name
    # the full image, as its header gives it
    path = tmp_path / "wide.jpg"
    Image.fromarray(np.full((800, 2048, 3), 200, np.uint8)).save(path)
    seg = _segmenter(input_size=192)
    seg.limits = ShapeLimits(max_aspect_ratio=2.0)
    with pytest.raises(ImageShapeError, match="2048x800"):
        seg.predict(seg.read(path))


def test_upsampling_matches_torch_bilinear_without_corners() -> None:
    # the network's probabilities are upsampled (and, for small images, downsampled) into the
    # field's box as torch's bilinear interpolation with align_corners=False would
    rng = np.random.default_rng(0)
    for (h, w), (out_h, out_w) in [((24, 32), (100, 77)), ((24, 32), (13, 9)), ((5, 7), (5, 7))]:
        probs = torch.from_numpy(rng.random((1, 5, h, w), dtype=np.float32))

        class Fixed(torch.nn.Module):
            def forward(self, x: torch.Tensor, p: torch.Tensor = probs) -> torch.Tensor:
                return torch.logit(p.clamp(1e-6, 1 - 1e-6))

        seg = Segmenter.from_model(
            Fixed(),
            {
                "encoding": "multilabel",
                "input_size": 8,
                "normalization": IDENTITY,
                "postprocess": {"thresholds": [0.5] * 5},
                "crop_background": False,
            },
        )
        got = seg.probabilities(np.zeros((out_h, out_w, 3), np.uint8))
        expected = torch.nn.functional.interpolate(
            probs.clamp(1e-6, 1 - 1e-6), size=(out_h, out_w), mode="bilinear", align_corners=False
        )[0].numpy()
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_full_scale_with_tiles_or_a_lesion_model_or_when_asked() -> None:
    seg = _segmenter()
    seg.draft_decode = False
    assert seg.decode_side is None
    seg = _segmenter()
    seg.tiling = Tiling(scale=1.0)
    assert seg.decode_side is None  # tiles look at the image's own resolution
    seg = _segmenter()
    lesion = Segmenter.from_model(
        BrightGlobules(),
        {
            "encoding": "multilabel",
            "input_size": 32,
            "normalization": IDENTITY,
            "postprocess": {"thresholds": [0.5]},
            "labels": "isic2018_task1",
        },
    )
    seg.use_lesion_model(lesion)
    assert seg.decode_side is None  # its box may be a small part of the image
    # a model trained on lesion boxes decodes as its training did: large enough for the smallest box
    boxed = _segmenter()
    boxed.trained_field = ("lesion", 0.2)
    assert boxed.decode_side == math.ceil(64 / MIN_SIDE_FRACTION) > 64


def test_mask_image_is_0_255_for_any_input() -> None:
    mask = np.array([[0, 1, 7], [255, 0, 2]], dtype=np.uint8)
    assert np.array_equal(np.asarray(mask_image(mask)), [[0, 255, 255], [255, 0, 255]])
    flags = np.zeros((4, 6), bool)
    flags[1:3, 2:5] = True
    strided = flags[:, ::2]  # not contiguous
    got = np.asarray(mask_image(strided))
    assert got.dtype == np.uint8 and np.array_equal(got, np.where(strided, 255, 0))


def test_predict_writes_full_size_masks_and_records_how_it_decoded(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = write_tiny_checkpoint(tmp_path / "tiny.safetensors", ["data.size=32", "data.crop_size=32"])
    out = tmp_path / "out"
    args = ["predict", str(photo), "--checkpoint", str(ckpt), "--out", str(out), "--draft-decode"]
    assert main(args) == 0
    mask = read_mask(out / "ISIC_0000001_attribute_globules.png", expected_size=(W, H))
    assert mask.shape == (H, W)
    manifest = json.loads((out / "dermseg_predict.json").read_text())
    assert manifest["settings"]["decode_side"] == 32
    capsys.readouterr()
    # full-scale decoding (the default) is another setting: refused into the same folder
    assert main(args[:-1]) == 2
    assert "decode_side" in capsys.readouterr().err
    assert main([*args[:-1], "--overwrite"]) == 0
    assert json.loads((out / "dermseg_predict.json").read_text())["settings"]["decode_side"] is None


def test_overlays_are_drawn_on_the_full_scale_image(photo: Path, tmp_path: Path) -> None:
    seg = _segmenter(input_size=192)
    assert seg.read(photo).reduced
    report = predict_images(seg, [photo], tmp_path / "out", overlays=True)
    assert report.written == [photo] and not report.failed
    with Image.open(tmp_path / "out" / "ISIC_0000001_overlay.png") as panel:
        width, height = panel.size
    # image | prediction side by side (and a legend): at least the full image's size twice over
    assert width >= 2 * W and height >= H, (width, height)
    assert read_mask(tmp_path / "out" / "ISIC_0000001_attribute_globules.png", expected_size=(W, H)).any()
