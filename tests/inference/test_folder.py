from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermseg import Segmenter
from dermseg.attributes import ATTRIBUTES
from dermseg.cli import main
from tests.conftest import write_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model saved as a dermseg checkpoint (prediction needs no training)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((70, 90, 3)) * 255).astype(np.uint8)).save(folder / "ISIC_0000001.jpg")
    Image.fromarray((rng.random((130, 100, 3)) * 255).astype(np.uint8)).save(folder / "lesion_b.png")
    (folder / "ISIC_0000003.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image, ignored")
    return folder


def test_one_bad_image_does_not_stop_the_others(
    checkpoint: Path, images: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(images),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--overlays",
            "--probabilities",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"{images / 'ISIC_0000003.jpg'}:" in err and "1 of 3 image(s) failed" in err
    for stem, (w, h) in (("ISIC_0000001", (90, 70)), ("lesion_b", (100, 130))):
        for name in ATTRIBUTES:
            mask = np.asarray(Image.open(out / f"{stem}_attribute_{name}.png"))
            assert mask.shape == (h, w) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
            prob = Image.open(out / f"{stem}_probability_{name}.png")
            assert prob.size == (w, h) and np.asarray(prob).dtype == np.uint16
        overlay = Image.open(out / f"{stem}_overlay.png")
        assert overlay.size[0] > 2 * w and overlay.size[1] > h  # image | prediction, legend strip below
    assert not list(out.glob("ISIC_0000003*")) and not list(out.glob("*.tmp*"))


def test_masks_agree_with_probabilities(checkpoint: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(images / "lesion_b.png"),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(out),
                "--probabilities",
            ]
        )
        == 0
    )
    seg = Segmenter.from_checkpoint(checkpoint)
    pred = seg(images / "lesion_b.png")
    for k, name in enumerate(ATTRIBUTES):
        mask = np.asarray(Image.open(out / f"lesion_b_attribute_{name}.png")) > 128
        assert np.array_equal(mask, pred.masks[k])
        prob = np.asarray(Image.open(out / f"lesion_b_probability_{name}.png")).astype(np.float64) / 65535
        assert np.abs(prob - pred.probabilities[k]).max() < 1e-4


def test_segmenter_accepts_arrays_pil_images_and_paths(checkpoint: Path, images: Path) -> None:
    seg = Segmenter.from_checkpoint(checkpoint)
    path = images / "lesion_b.png"
    a = seg(path)
    b = seg(Image.open(path))
    c = seg(np.asarray(Image.open(path)))
    assert a.probabilities.shape == (5, 130, 100) and a.masks.dtype == bool
    assert np.array_equal(a.probabilities, b.probabilities) and np.array_equal(
        a.probabilities, c.probabilities
    )
    assert a.presence.shape == (5,)
    with pytest.raises(ValueError):
        seg(np.zeros((10, 10), np.uint8))


def _dark_is_present(self: Segmenter, x: torch.Tensor) -> torch.Tensor:
    """Stands in for the network: every attribute is present where the image is dark."""
    mean = torch.tensor(self.mean).view(1, 3, 1, 1)
    std = torch.tensor(self.std).view(1, 3, 1, 1)
    brightness = (x * std + mean).mean(dim=1, keepdim=True)  # back to [0, 1]
    return (brightness < 0.5).float().expand(-1, len(ATTRIBUTES), -1, -1)


def test_exif_rotated_jpegs_are_predicted_as_displayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stored 160 x 96 with a dark block in its top-left corner; the EXIF orientation says how it
    # is displayed: 6 = turn 90 degrees clockwise, 8 = counter-clockwise, 3 = upside down
    stored = np.full((96, 160, 3), 220, np.uint8)
    stored[:32, :48] = 20
    dark = np.zeros((96, 160), bool)
    dark[:32, :48] = True
    displayed = {6: np.rot90(dark, -1), 8: np.rot90(dark, 1), 3: np.rot90(dark, 2)}
    folder = tmp_path / "in"
    folder.mkdir()
    for orientation in displayed:
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(stored).save(folder / f"exif{orientation}.jpg", quality=95, exif=exif)
    # no background crop, and the short side (96) is the input size: the masks are exactly the dark block
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.safetensors", ["data.crop_background=false"])
    monkeypatch.setattr(Segmenter, "network_probabilities", _dark_is_present)
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    for orientation, want in displayed.items():
        for name in ATTRIBUTES:
            mask = np.asarray(Image.open(out / f"exif{orientation}_attribute_{name}.png")) > 128
            assert mask.shape == want.shape, (orientation, name)
            assert np.array_equal(mask, want), (orientation, name)
